"""Voxel IoU of a trained reconstruction model, SoftRas's protocol (``docs/reconstruction.md``).

``python -m recon.eval --workdir=runs/quickstart`` (latest checkpoint) or
``--checkpoint=runs/quickstart/checkpoints/400`` [``--split=test --data_dir=DIR
--max_objects=N --batch_size=96 --out=DIR --untrained``]: reconstructs a mesh from every view of
every object of the split, voxelises it at 32^3 (surface + enclosed voxels, NMR axis order), and
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

import json
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import imageio.v2 as imageio
import jax
import numpy as np
from absl import flags
from tqdm import tqdm

from recon import cli, protocol
from recon.data.classes import CLASS_NAMES
from recon.data.loader import SplitSource, eval_batches
from recon.inference import Predictor
from softjax.batching import map_padded
from softjax.io import save_obj
from softjax.voxel import voxel_iou, voxelize


@jax.jit
def _batch_iou(face_vertices, voxels):
    return voxel_iou(voxelize(face_vertices, protocol.VOXEL_SIZE), voxels)


def voxel_ious(face_vertices: np.ndarray, voxels: np.ndarray, batch_size: int) -> np.ndarray:
    """Voxel IoU (in [0, 1]) of each mesh ``face_vertices [n, F, 3, 3]`` with ``voxels
    [n, 32, 32, 32]`` (NMR axis order): the meshes are voxelised at 32^3 by
    :func:`softjax.voxelize` (surface + enclosed voxels, NMR axis order). ``n <= batch_size``;
    the batch is padded to ``batch_size`` so that one compilation serves every batch."""
    n = face_vertices.shape[0]
    if n > batch_size:
        raise ValueError(f"{n} meshes in a batch of {batch_size}")
    (ious,) = map_padded(_batch_iou, [face_vertices, voxels], batch_size)
    return ious


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
    objects = sum(min(int(n), max_objects) if max_objects else int(n) for n in source.counts)
    total = objects * protocol.NUM_VIEWS
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
        ref = protocol.SOFTRAS_IOU.get(class_id, float("nan"))
        lines.append(
            f"{class_id:<10} {r['name']:<12} {r['objects']:>7} {r['views']:>6} "
            f"{r['iou']:>6.1f} {ref:>8.1f}"
        )
    lines.append("-" * len(header))
    n = len(results["classes"])
    lines.append(
        f"{'mean':<10} {f'{n} classes':<12} {'':>7} {'':>6} {results['mean_iou']:>6.1f} "
        f"{protocol.SOFTRAS_MEAN_IOU:>8.1f}"
    )
    return "\n".join(lines)


def define_flags(flag_values: flags.FlagValues) -> None:
    """The command line's flags (see the module docstring)."""
    cli.define_checkpoint_flags(flag_values)
    flags.adopt_module_key_flags(cli, flag_values=flag_values)  # listed by --help
    flags.DEFINE_string("split", "test", "dataset split", flag_values=flag_values)
    flags.DEFINE_string(
        "data_dir", None, "TFDS data directory (default: the run's config)", flag_values=flag_values
    )
    flags.DEFINE_integer(
        "max_objects", 0, "objects per class (0 = all)", lower_bound=0, flag_values=flag_values
    )
    flags.DEFINE_integer(
        "batch_size", 96, "images per step", lower_bound=1, flag_values=flag_values
    )
    flags.DEFINE_string(
        "out", None, "results folder (default: the work directory)", flag_values=flag_values
    )
    flags.DEFINE_bool(
        "untrained",
        False,
        "evaluate the untrained network (the template sphere baseline)",
        flag_values=flag_values,
    )


def run(options: flags.FlagValues) -> dict[str, Any]:
    """Evaluates as the parsed command line ``options`` says; returns the results written."""
    from recon.checkpoints import load_trained
    from recon.data.loader import load_config_split
    from recon.records import write_atomic
    from recon.state import init_state

    config, spec, state = load_trained(options.workdir, options.checkpoint)
    if options.workdir:
        workdir = Path(options.workdir)
    else:
        workdir = Path(options.checkpoint).parent.parent  # <workdir>/checkpoints/<step>
    step = int(state.step)
    if options.untrained:
        state, step = init_state(config, spec), 0
    out = Path(options.out) if options.out else workdir
    source = load_config_split(config, options.split, options.data_dir)
    predictor = Predictor(spec, state.variables, batch_size=options.batch_size)
    t0 = time.perf_counter()
    name = f"eval_{options.split}" + ("_untrained" if options.untrained else "")
    results = evaluate(
        predictor,
        source,
        batch_size=options.batch_size,
        max_objects=options.max_objects,
        sample_dir=out / name,
    )
    results.update(
        step=step,
        split=options.split,
        dataset=source.name,
        seconds=round(time.perf_counter() - t0, 1),
        untrained=bool(options.untrained),
    )
    title = f"voxel IoU x100, {source.name}, step {step}"
    print(format_table(results, title + (" (untrained)" if options.untrained else "")))
    out.mkdir(parents=True, exist_ok=True)
    path = out / f"{name}.json"
    write_atomic(path, json.dumps(results, indent=2) + "\n")
    print(f"wrote {path} and {out / name}/")
    return results


def main(argv: Sequence[str]) -> dict[str, Any]:
    """``python -m recon.eval`` from Python (no signal handling): ``argv`` holds its arguments,
    e.g. ``['--workdir', 'runs/quickstart', '--batch_size', '48']``; returns the results written.
    """
    return run(cli.parse_flags(argv, define_flags))


if __name__ == "__main__":
    cli.run_main("recon.eval", define_flags, run)
