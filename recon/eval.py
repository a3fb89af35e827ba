"""Voxel IoU of a trained reconstruction model, SoftRas's protocol (``softras-spec.md`` §7).

``python -m recon.eval --workdir runs/quickstart`` (latest checkpoint) or
``--checkpoint runs/quickstart/checkpoints/400``: reconstructs a mesh from every view of every
object of the split, voxelises it at 32^3 (surface + enclosed voxels, NMR axis order), and
averages the IoU with the object's voxels per class (x100), then over the classes. Prints a
table, writes ``eval_<split>.json`` and, per class, the input PNG and reconstructed OBJ of the
first object's view 0 under ``eval_<split>/``.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any

import imageio.v2 as imageio
import jax
import numpy as np
from tqdm import tqdm

from recon.data.classes import CLASS_NAMES, SOFTRAS_IOU, SOFTRAS_MEAN_IOU
from recon.data.loader import SplitSource, eval_batches
from recon.inference import Predictor
from softjax.io_obj import save_obj
from softjax.voxel import voxel_iou, voxelize

VOXEL_SIZE = 32


@jax.jit
def _batch_iou(face_vertices, voxels):
    return voxel_iou(voxelize(face_vertices, VOXEL_SIZE), voxels)


def evaluate(
    predictor: Predictor,
    source: SplitSource,
    *,
    batch_size: int = 96,
    max_objects: int = 0,
    sample_dir: str | Path | None = None,
    progress: bool = True,
) -> dict[str, Any]:
    """Voxel IoU of ``predictor`` on every (object, view) of ``source``.

    Args:
      predictor: the trained network (:class:`recon.inference.Predictor`).
      source: the split (:func:`recon.data.loader.load_split`).
      batch_size: images per step.
      max_objects: objects per class (0 = all).
      sample_dir: where to write each class's sample input PNG and OBJ (None = nowhere).
      progress: show a progress bar (stderr).

    Returns:
      ``{'mean_iou': float, 'classes': {class_id: {'name', 'iou', 'objects', 'views'}}}``, IoU
      in percent (the mean over each class's images, then over the classes).
    """
    results: dict[str, Any] = {}
    total = sum(min(int(n), max_objects) if max_objects else int(n) for n in source.counts) * 24
    bar = tqdm(total=total, desc="eval", unit="img", disable=not progress, file=sys.stderr)
    for class_id in source.class_ids:
        ious, objects = [], set()
        for i, batch in enumerate(eval_batches(source, batch_size, class_id, max_objects)):
            vertices, colors = predictor(batch["images"])
            fv = predictor.face_vertices(vertices)
            n = fv.shape[0]
            if n < batch_size:  # pad to one compiled shape
                fv = np.concatenate([fv, np.repeat(fv[-1:], batch_size - n, 0)])
                vox = np.concatenate(
                    [batch["voxels"], np.repeat(batch["voxels"][-1:], batch_size - n, 0)]
                )
            else:
                vox = batch["voxels"]
            ious.append(np.asarray(_batch_iou(fv, vox))[:n])
            objects.update(int(o) for o in batch["object"])
            bar.update(n)
            if i == 0 and sample_dir is not None:
                _write_sample(predictor, Path(sample_dir), class_id, batch, vertices, colors)
        iou = np.concatenate(ious) if ious else np.zeros(0)
        results[class_id] = {
            "name": CLASS_NAMES[class_id],
            "iou": float(iou.mean() * 100) if iou.size else float("nan"),
            "objects": len(objects),
            "views": int(iou.size),
        }
    bar.close()
    mean = float(np.mean([r["iou"] for r in results.values()])) if results else float("nan")
    return {"mean_iou": mean, "classes": results}


def _write_sample(predictor, folder: Path, class_id, batch, vertices, colors) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    stem = folder / f"{class_id}_{CLASS_NAMES[class_id].lower()}"
    image = (np.clip(batch["images"][0], 0, 1) * 255).round().astype(np.uint8)
    imageio.imwrite(f"{stem}_input.png", image)
    mesh = predictor.mesh(vertices[0], None if colors is None else colors[0])
    save_obj(f"{stem}.obj", mesh, save_texture=colors is not None)


def format_table(results: dict[str, Any], title: str = "") -> str:
    """The per-class IoU table (SoftRas's numbers next to ours), then the mean over classes."""
    lines = []
    if title:
        lines.append(title)
    header = f"{'class':<10} {'name':<12} {'objects':>7} {'views':>6} {'IoU':>6} {'SoftRas':>8}"
    lines += [header, "-" * len(header)]
    for class_id, r in results["classes"].items():
        ref = SOFTRAS_IOU.get(class_id, float("nan"))
        lines.append(
            f"{class_id:<10} {r['name']:<12} {r['objects']:>7} {r['views']:>6} "
            f"{r['iou']:>6.1f} {ref:>8.1f}"
        )
    lines.append("-" * len(header))
    n = len(results["classes"])
    lines.append(
        f"{'mean':<10} {f'{n} classes':<12} {'':>7} {'':>6} {results['mean_iou']:>6.1f} "
        f"{SOFTRAS_MEAN_IOU:>8.1f}"
    )
    return "\n".join(lines)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m recon.eval", description=__doc__.split("\n")[0])
    where = p.add_mutually_exclusive_group(required=True)
    where.add_argument("--workdir", help="a recon.train work directory (latest checkpoint)")
    where.add_argument("--checkpoint", help="one checkpoint: <workdir>/checkpoints/<step>")
    p.add_argument("--split", default="test", help="dataset split (default: test)")
    p.add_argument("--data-dir", help="TFDS data directory (default: the run's config)")
    p.add_argument("--max-objects", type=int, default=0, help="objects per class (0 = all)")
    p.add_argument("--batch-size", type=int, default=96)
    p.add_argument("--out", help="results folder (default: the work directory)")
    p.add_argument(
        "--untrained",
        action="store_true",
        help="evaluate the untrained network (the template sphere baseline)",
    )
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> dict[str, Any]:
    from recon.checkpoints import load_trained
    from recon.data.loader import load_split
    from recon.state import init_state

    args = parse_args(argv)
    config, spec, state = load_trained(args.workdir, args.checkpoint)
    workdir = Path(args.workdir) if args.workdir else Path(args.checkpoint).parent.parent
    step = int(state.step)
    if args.untrained:
        state, step = init_state(config, spec), 0
    out = Path(args.out) if args.out else workdir
    data_dir = args.data_dir or config.data_dir
    source = load_split(
        config.dataset,
        args.split,
        data_dir,
        manual_dir=config.manual_dir,
        in_memory=config.in_memory,
        **dict(config.dataset_kwargs),
    )
    predictor = Predictor(spec, state.variables, batch_size=args.batch_size)
    t0 = time.perf_counter()
    suffix = "_untrained" if args.untrained else ""
    results = evaluate(
        predictor,
        source,
        batch_size=args.batch_size,
        max_objects=args.max_objects,
        sample_dir=out / f"eval_{args.split}{suffix}",
    )
    results.update(
        step=step,
        split=args.split,
        dataset=source.name,
        seconds=round(time.perf_counter() - t0, 1),
        untrained=bool(args.untrained),
    )
    title = f"voxel IoU x100, {source.name}, step {step}" + (" (untrained)" if suffix else "")
    print(format_table(results, title))
    out.mkdir(parents=True, exist_ok=True)
    path = out / f"eval_{args.split}{suffix}.json"
    path.write_text(json.dumps(results, indent=2) + "\n")
    print(f"wrote {path} and {out / f'eval_{args.split}{suffix}'}/")
    return results


if __name__ == "__main__":
    try:
        main()
    except (FileNotFoundError, ValueError) as e:  # no checkpoint, missing data: say which
        sys.exit(f"recon.eval: error: {e}")
