"""The ``softjax`` command: ``softjax render ...``, ``softjax deform ...`` and
``softjax fit-pose ...``."""

from __future__ import annotations

import argparse
import sys


def main(argv=None) -> int:
    from softjax.tools import deform_tool, fit_pose_tool, render_tool

    parser = argparse.ArgumentParser(prog="softjax", description="softjax tools")
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("render", help="turntable and blur GIFs of a mesh, and a textured OBJ")
    render_tool.add_arguments(p)
    p.set_defaults(run=render_tool.run)
    p = sub.add_parser("deform", help="fit a template sphere to multi-view silhouettes")
    deform_tool.add_arguments(p)
    p.set_defaults(run=deform_tool.run)
    p = sub.add_parser(
        "fit-pose", help="recover a mesh's rotation, translation (and scale) from target images"
    )
    fit_pose_tool.add_arguments(p)
    p.set_defaults(run=fit_pose_tool.run)
    args = parser.parse_args(argv)
    try:
        code = args.run(args)
    except (ValueError, FileNotFoundError) as e:
        print(f"softjax {args.command}: error: {e}", file=sys.stderr)
        return 2
    # a tool may return its exit code (fit-pose: 130 / 143 when stopped by SIGINT / SIGTERM);
    # the others return a result or None: success
    return code if type(code) is int else 0


if __name__ == "__main__":
    sys.exit(main())
