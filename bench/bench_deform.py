"""Per-iteration time of ``softjax deform`` with its defaults (the built-in target's 24
silhouettes of 64^2, the 642-vertex template, all views per step; ``--level 4``: 2,562 vertices).

The fitted shape grows flat and thin as it approaches the target, which is the case the tiled
rasterizer must not slow down on: the table compares the first iterations (after compilation)
with the last ones. Prints a table and JSON (``--json`` also writes it to a file).

    python bench/bench_deform.py [--iterations 150] [--window 10] [--json FILE]
"""

from __future__ import annotations

import argparse
import functools
import json
import platform
import sys
import time

import jax
import jax.numpy as jnp
import numpy as np

from softjax.mesh import icosphere
from softjax.tools.deform_tool import Deformer, check_data, silhouette_config, synthetic_data
from softjax.transform import get_points_from_angles


def main(argv: list[str] | None = None) -> dict:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--iterations", type=int, default=150)
    p.add_argument("--window", type=int, default=10, help="iterations averaged at each end")
    p.add_argument("--level", type=int, default=3, help="template icosphere subdivisions")
    p.add_argument("--json", help="also write the JSON result to this file")
    args = p.parse_args(argv)
    if args.iterations < 2 * args.window + 1:
        p.error(f"--iterations must be at least 2 * --window + 1 = {2 * args.window + 1}")

    images, cameras = synthetic_data()
    target, cameras = check_data(images, cameras)
    model = Deformer(icosphere(args.level))
    config = silhouette_config(target.shape[1])
    eyes = get_points_from_angles(cameras[:, 0], cameras[:, 1], cameras[:, 2])
    target = jnp.asarray(target)
    optimizer = model.optimizer()
    step = jax.jit(functools.partial(model.step, optimizer, config))
    params = model.init()
    state = optimizer.init(params)

    times, losses = [], []
    for it in range(args.iterations):
        t0 = time.perf_counter()
        params, state, loss = step(params, state, eyes, target)
        loss = float(loss)  # waits for the step
        times.append(time.perf_counter() - t0)
        losses.append(loss)
        if it % 25 == 0:
            print(f"iteration {it}: {times[-1] * 1e3:.0f} ms, loss {loss:.4f}", file=sys.stderr)

    w = args.window
    first = float(np.median(times[1 : 1 + w]))  # iteration 0 compiles
    last = float(np.median(times[-w:]))
    result = {
        "machine": platform.machine(),
        "backend": jax.default_backend(),
        "jax": jax.__version__,
        "iterations": args.iterations,
        "template_faces": int(model.faces.shape[0]),
        "first_ms": first * 1e3,
        "last_ms": last * 1e3,
        "last_over_first": last / first,
        "compile_s": times[0],
        "loss_first": losses[0],
        "loss_last": losses[-1],
    }
    print(f"| iterations | first {w} (median ms) | last {w} (median ms) | last / first | loss |")
    print("|---|---|---|---|---|")
    print(
        f"| {args.iterations} | {first * 1e3:.1f} | {last * 1e3:.1f} | {last / first:.2f} "
        f"| {losses[0]:.4f} -> {losses[-1]:.4f} |"
    )
    text = json.dumps(result, indent=2)
    print(text)
    if args.json:
        with open(args.json, "w") as f:
            f.write(text + "\n")
    return result


if __name__ == "__main__":
    main()
