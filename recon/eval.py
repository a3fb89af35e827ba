"""Voxel IoU of a trained reconstruction model, SoftRas's protocol (``softras-spec.md`` §7).

``python -m recon.eval --workdir runs/quickstart`` (latest checkpoint) or
``--checkpoint runs/quickstart/checkpoints/400``: reconstructs a mesh from every view of every
object of the split, voxelises it at 32^3 (surface + enclosed voxels, NMR axis order), and
averages the IoU with the object's voxels per class (x100), then over the classes. Prints a
table, writes ``eval_<split>.json`` and, per class, the input PNG and reconstructed OBJ of the
first object's view 0 under ``eval_<split>/``.
"""

# ruff: noqa: E402  (the signal handlers are installed before the heavy imports)

from __future__ import annotations

from recon import interrupt

# Installed before JAX is imported: Ctrl-C or SIGTERM at any moment exits at once with 130 / 143
# and one line (evaluation has nothing to save), never a traceback from inside JAX.
_INTERRUPTS = interrupt.install("recon.eval") if __name__ == "__main__" else None

import argparse
import json
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import imageio.v2 as imageio
import jax
import numpy as np
from tqdm import tqdm

from recon.data.classes import CLASS_NAMES
from recon.data.loader import SplitSource, eval_batches
from recon.inference import Predictor
from recon.protocol import SOFTRAS_IOU, SOFTRAS_MEAN_IOU
from softjax.io_obj import save_obj
from softjax.voxel import voxel_iou, voxelize

VOXEL_SIZE = 32


@jax.jit
def _batch_iou(face_vertices, voxels):
    return voxel_iou(voxelize(face_vertices, VOXEL_SIZE), voxels)


def voxel_ious(face_vertices: np.ndarray, voxels: np.ndarray, batch_size: int) -> np.ndarray:
    """Voxel IoU (in [0, 1]) of each mesh ``face_vertices [n, F, 3, 3]`` with ``voxels
    [n, 32, 32, 32]`` (NMR axis order): the meshes are voxelised at 32^3 by
    :func:`softjax.voxelize` (surface + enclosed voxels, NMR axis order). ``n <= batch_size``;
    the batch is padded to ``batch_size`` so that one compilation serves every batch."""
    n = face_vertices.shape[0]
    if n > batch_size:
        raise ValueError(f"{n} meshes in a batch of {batch_size}")
    if n < batch_size:  # pad to one compiled shape
        face_vertices = np.concatenate(
            [face_vertices, np.repeat(face_vertices[-1:], batch_size - n, 0)]
        )
        voxels = np.concatenate([voxels, np.repeat(voxels[-1:], batch_size - n, 0)])
    return np.asarray(_batch_iou(face_vertices, voxels))[:n]


MeshFn = Callable[[dict[str, np.ndarray]], tuple[np.ndarray, Any]]


def evaluate_meshes(
    meshes_of: MeshFn,
    source: SplitSource,
    *,
    batch_size: int = 96,
    max_objects: int = 0,
    on_first_batch: Callable[[str, dict[str, np.ndarray], Any], None] | None = None,
    progress: bool = True,
    stop: Callable[[], None] | None = None,
) -> dict[str, Any]:
    """Voxel IoU of the meshes ``meshes_of`` gives for every (object, view) of ``source``.

    The one scoring path of :func:`evaluate` (predictions), also used for other meshes (the
    dataset's own ground-truth meshes in the tests): same batches, voxeliser, axis order and
    per-class means.

    Args:
      meshes_of: ``batch`` (of :func:`recon.data.loader.eval_batches`) -> ``(face_vertices
        [b, F, 3, 3], extra)``: one mesh per image of the batch; ``extra`` is passed on to
        ``on_first_batch``.
      source: the split (:func:`recon.data.loader.load_split`).
      batch_size: images per step.
      max_objects: objects per class (0 = all).
      on_first_batch: called as ``(class_id, batch, extra)`` with each class's first batch.
      progress: show a progress bar (stderr).
      stop: called between batches; it may raise to abandon the evaluation (an interrupt).

    Returns:
      ``{'mean_iou': float, 'classes': {class_id: {'name', 'iou', 'objects', 'views'}}}``, IoU
      in percent (the mean over each class's images, then over the classes).
    """
    results: dict[str, Any] = {}
    total = sum(min(int(n), max_objects) if max_objects else int(n) for n in source.counts) * 24
    bar = tqdm(total=total, desc="eval", unit="img", disable=not progress, file=sys.stderr)
    try:
        for class_id in source.class_ids:
            ious, objects = [], set()
            for i, batch in enumerate(eval_batches(source, batch_size, class_id, max_objects)):
                if stop is not None:
                    stop()
                fv, extra = meshes_of(batch)
                ious.append(voxel_ious(np.asarray(fv), batch["voxels"], batch_size))
                objects.update(int(o) for o in batch["object"])
                bar.update(len(fv))
                if i == 0 and on_first_batch is not None:
                    on_first_batch(class_id, batch, extra)
            iou = np.concatenate(ious) if ious else np.zeros(0)
            results[class_id] = {
                "name": CLASS_NAMES[class_id],
                "iou": float(iou.mean() * 100) if iou.size else float("nan"),
                "objects": len(objects),
                "views": int(iou.size),
            }
    finally:
        bar.close()
    mean = float(np.mean([r["iou"] for r in results.values()])) if results else float("nan")
    return {"mean_iou": mean, "classes": results}


def evaluate(
    predictor: Predictor,
    source: SplitSource,
    *,
    batch_size: int = 96,
    max_objects: int = 0,
    sample_dir: str | Path | None = None,
    progress: bool = True,
    stop: Callable[[], None] | None = None,
) -> dict[str, Any]:
    """Voxel IoU of ``predictor`` on every (object, view) of ``source``.

    Args:
      predictor: the trained network (:class:`recon.inference.Predictor`).
      source: the split (:func:`recon.data.loader.load_split`).
      batch_size: images per step.
      max_objects: objects per class (0 = all).
      sample_dir: where to write each class's sample input PNG and OBJ (None = nowhere).
      progress: show a progress bar (stderr).
      stop: called between batches; it may raise to abandon the evaluation (an interrupt).

    Returns:
      as :func:`evaluate_meshes`.
    """

    def predicted(batch):
        vertices, colors = predictor(batch["images"])
        return predictor.face_vertices(vertices), (vertices, colors)

    def sample(class_id, batch, extra):
        _write_sample(predictor, Path(sample_dir), class_id, batch, *extra)

    return evaluate_meshes(
        predicted,
        source,
        batch_size=batch_size,
        max_objects=max_objects,
        on_first_batch=None if sample_dir is None else sample,
        progress=progress,
        stop=stop,
    )


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
    """The command line (see the module docstring); returns the results written."""
    from recon.checkpoints import load_trained
    from recon.data.loader import load_split
    from recon.records import write_atomic
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
    write_atomic(path, json.dumps(results, indent=2) + "\n")
    print(f"wrote {path} and {out / f'eval_{args.split}{suffix}'}/")
    return results


if __name__ == "__main__":
    try:
        main()
    except KeyboardInterrupt:  # not from a signal (those exit in recon.interrupt); be quiet too
        sys.exit(130)
    except (FileNotFoundError, ValueError) as e:  # no checkpoint, missing data: say which
        sys.exit(f"recon.eval: error: {e}")
