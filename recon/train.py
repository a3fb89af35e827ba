"""Training of the single-view reconstruction model (Flax examples style).

``python -m recon.train --config configs/quickstart.py [--workdir DIR] [--config.key=value]``

:func:`train_and_evaluate` runs the protocol of ``docs/reconstruction.md``: each step draws
``batch_size`` objects and two views ``a``, ``b`` of each, reconstructs a mesh from every image,
renders each mesh from both viewpoints (4 silhouettes per object) and minimises the mean
silhouette IoU loss + Laplacian + flatten (+ the colour loss of the shading variant) with Adam.

* Data parallel over every device of every host: the batch is split along a ``'data'`` mesh
  axis (``jax.sharding``) and the step runs under ``jax.shard_map``: gradients, losses and the
  batch-norm statistics are averaged over the axis, so any device count computes the same step.
  ``config.distributed=True`` calls ``jax.distributed.initialize()`` for several hosts; each
  host then reads its rows of every batch.
* Exact resume: batch ``k`` is a pure function of ``(seed, k)`` and the checkpoint holds the
  whole state, so a resumed run repeats the uninterrupted one. Orbax checkpoints every
  ``checkpoint_every`` steps (the last ``keep_checkpoints`` are kept) and at the end; orbax
  writes each to a temporary directory and renames it, so a ``kill -9`` at any moment leaves the
  previous checkpoints intact and the same command resumes from the newest complete one.
* Ctrl-C / SIGTERM (:mod:`recon.interrupt`): a signal never raises into JAX. During start-up
  (dataset build, restore, compile of the first step) nothing would be lost and the command
  exits at once (130 / 143); once a step has been trained the signal is a flag, checked between
  steps: the checkpoint of the last completed step is saved, and the command exits 130 / 143. A
  second signal exits at once without saving.
* Records in the work directory: ``config.json``, ``metrics.jsonl``, ``train_loss.png``,
  ``samples/step_*.png`` (inputs above rendered silhouettes) and ``samples/step_*.obj``.
"""

# ruff: noqa: E402  (the signal handlers are installed before the heavy imports)

from __future__ import annotations

from recon import interrupt

# Installed before JAX is imported: Ctrl-C at any moment of `python -m recon.train` is handled.
_INTERRUPTS = interrupt.install("recon.train") if __name__ == "__main__" else None

import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import imageio.v2 as imageio
import jax
import jax.numpy as jnp
import numpy as np
import optax
from absl import flags
from jax.sharding import NamedSharding
from jax.sharding import PartitionSpec as P
from ml_collections import config_flags
from tqdm import tqdm

from recon import checkpoints, cli, protocol
from recon.data.loader import TrainBatches, load_config_split
from recon.inference import Predictor
from recon.losses import reconstruction_loss
from recon.models import ModelSpec, meshes, model_spec, render_eye_sets
from recon.records import LOSS_PLOT, MetricsLog, plot_loss, sample_grid
from recon.state import TrainState, init_state, learning_rate, make_optimizer, sigma
from softjax.io import save_obj

BATCH_KEYS = ("images_a", "images_b", "viewpoints_a", "viewpoints_b")
AXIS = "data"


def data_mesh(devices: list | None = None) -> jax.sharding.Mesh:
    """A 1-D device mesh with axis ``'data'`` over ``devices`` (default: all, every host)."""
    devices = jax.devices() if devices is None else devices
    return jax.sharding.Mesh(np.asarray(devices), (AXIS,))


def make_train_step(config: Any, spec: ModelSpec, mesh: jax.sharding.Mesh):
    """The jitted step ``(state, batch) -> (state, metrics)`` over ``mesh``'s ``'data'`` axis.

    ``batch``: ``images_a``, ``images_b`` ``[B, S, S, 4]`` and ``viewpoints_a``,
    ``viewpoints_b`` ``[B, 3]``, sharded along ``'data'``; ``state`` replicated. ``metrics``:
    the loss terms averaged over the whole batch, and the step's ``lr`` and ``sigma``.
    """
    net = spec.network(axis_name=AXIS)
    tx = make_optimizer(config)

    def per_device(state: TrainState, batch: dict[str, jax.Array]):
        s = sigma(config, state.step)

        def loss_fn(params):
            images = jnp.concatenate([batch["images_a"], batch["images_b"]])
            (vertices, colors), updates = net.apply(
                {"params": params, "batch_stats": state.batch_stats},
                images,
                train=True,
                mutable=["batch_stats"],
            )
            loss, terms = reconstruction_loss(spec, vertices, colors, batch, sigma=s)
            return loss, (terms, updates["batch_stats"])

        (_, (terms, batch_stats)), grads = jax.value_and_grad(loss_fn, has_aux=True)(state.params)
        grads = jax.lax.pmean(grads, AXIS)
        terms = jax.lax.pmean(terms, AXIS)
        updates, opt_state = tx.update(grads, state.opt_state, state.params)
        params = optax.apply_updates(state.params, updates)
        terms["lr"] = learning_rate(config, state.step)
        terms["sigma"] = s
        return TrainState(state.step + 1, params, batch_stats, opt_state), terms

    # check_vma=False: the rasterizer's loops start from fresh (unvarying) carries; every output
    # is made replicated explicitly above (pmean), and batch norm averages over AXIS.
    step = jax.shard_map(
        per_device,
        mesh=mesh,
        in_specs=(P(), P(AXIS)),
        out_specs=(P(), P()),
        check_vma=False,
    )
    return jax.jit(step)


def check_config(config: Any, num_devices: int) -> None:
    """Clear errors for configs that cannot run."""
    if config.batch_size < 1 or config.batch_size % num_devices:
        raise ValueError(
            f"batch_size {config.batch_size} must be a positive multiple of the "
            f"{num_devices} devices"
        )
    for key in ("num_steps", "log_every", "checkpoint_every", "sample_every", "keep_checkpoints"):
        if int(config[key]) < (0 if key in ("num_steps",) else 1):
            raise ValueError(f"config.{key} must be >= 1 (num_steps >= 0), got {config[key]}")
    if config.image_size != protocol.IMAGE_SIZE:
        raise ValueError(
            f"image_size must be {protocol.IMAGE_SIZE} (the NMR renderings), got "
            f"{config.image_size}"
        )


def _check_resumable(workdir: Path, config: Any) -> None:
    try:
        saved = checkpoints.load_config(workdir)
    except FileNotFoundError:
        return
    # the architecture only: the backend and the initialisation may differ on resume
    if (
        model_spec(saved).architecture() != model_spec(config).architecture()
        or saved.dataset != config.dataset
    ):
        raise ValueError(
            f"{workdir} holds a run with a different model or dataset (see its config.json); "
            "use another --workdir"
        )


def _global_batch(mesh, local: dict[str, np.ndarray], batch_size: int) -> dict[str, jax.Array]:
    sharding = NamedSharding(mesh, P(AXIS))
    return {
        k: jax.make_array_from_process_local_data(
            sharding, local[k], (batch_size,) + local[k].shape[1:]
        )
        for k in BATCH_KEYS
    }


class _Samples:
    """Input / silhouette PNG pairs and a demo OBJ every ``sample_every`` steps."""

    def __init__(self, spec: ModelSpec, folder: Path, count: int):
        self.spec = spec
        self.folder = folder
        self.count = count
        self.predictor = Predictor(spec, {}, batch_size=count)
        config = spec.silhouette_config()
        self._render = jax.jit(
            lambda v, eyes: render_eye_sets(meshes(spec, v), eyes[None], config)[0, ..., 3]
        )

    def write(self, state: TrainState, batch: dict[str, np.ndarray], step: int) -> None:
        self.folder.mkdir(parents=True, exist_ok=True)
        self.predictor.variables = state.variables
        images = batch["images_a"][: self.count]
        vertices, colors = self.predictor(images)
        sil = np.asarray(self._render(vertices, batch["viewpoints_a"][: len(images)]))
        imageio.imwrite(self.folder / f"step_{step:07d}.png", sample_grid(images, sil))
        mesh = self.predictor.mesh(vertices[0], None if colors is None else colors[0])
        save_obj(self.folder / f"step_{step:07d}.obj", mesh, save_texture=colors is not None)


def train_and_evaluate(
    config: Any, workdir: str | Path, interrupts: interrupt.Interrupts | None = None
) -> dict[str, Any]:
    """Trains (or resumes) the run in ``workdir``; returns the last metrics record.

    Args:
      config: an ml_collections config (see ``configs/softras.py`` for every field).
      workdir: where checkpoints and records go; a work directory with a checkpoint resumes.
      interrupts: the installed signal handling of the command line (:mod:`recon.interrupt`):
        the loop marks itself dirty once a step is trained and stops between steps when a
        signal arrived. None (library use): signals keep their handlers; a
        ``KeyboardInterrupt`` raised in the loop still saves a checkpoint.

    Raises:
      KeyboardInterrupt (:class:`recon.interrupt.Interrupted` for a signal), after saving the
      checkpoint of the last completed step.
    """
    stop: Callable[[], None] = interrupts.check if interrupts else (lambda: None)
    if config.distributed:
        jax.distributed.initialize()
    workdir = Path(workdir)
    lead = jax.process_index() == 0
    mesh = data_mesh()
    check_config(config, mesh.size)
    _check_resumable(workdir, config)
    if lead:
        checkpoints.save_config(workdir, config)
    spec = model_spec(config)

    source = load_config_split(config, config.train_split)
    batches = TrainBatches(source, config.batch_size, seed=config.seed, sampling=config.sampling)
    local = config.batch_size // jax.process_count()
    rows = slice(jax.process_index() * local, (jax.process_index() + 1) * local)

    mngr = checkpoints.manager(workdir, config)
    state = checkpoints.restore(mngr, checkpoints.abstract_state(config, spec))
    if state is None:
        state = init_state(config, spec)
    start = int(state.step)
    replicated = NamedSharding(mesh, P())
    state = jax.device_put(state, replicated)
    log = MetricsLog(workdir, start, write=lead)
    if lead:
        verb = f"resuming at step {start}" if start else "starting"
        print(
            f"recon.train: {verb}; {source.name} ({source.num_objects} objects), batch "
            f"{config.batch_size} on {mesh.size} device(s) ({jax.devices()[0].platform}), "
            f"{config.num_steps} steps, work directory {workdir}",
            file=sys.stderr,
        )
    train_step = make_train_step(config, spec, mesh)
    samples = _Samples(spec, workdir / "samples", int(config.num_samples))
    evaluator = (
        _Evaluator(config, spec, workdir) if (config.eval_every or config.final_eval) else None
    )

    bar = tqdm(
        total=config.num_steps,
        initial=start,
        desc="train",
        unit="step",
        disable=not lead,
        file=sys.stderr,
        dynamic_ncols=True,
    )
    sums: dict[str, float] = {}
    count, t_log, step = 0, time.perf_counter(), start
    record: dict[str, Any] = {}
    try:
        for local_batch in batches.iterate(
            start, max(config.num_steps - start, 0), config.prefetch, rows
        ):
            state, terms = train_step(state, _global_batch(mesh, local_batch, config.batch_size))
            step += 1
            terms = {k: float(v) for k, v in terms.items()}  # waits for the step
            if interrupts and step == start + 1:
                # From now on the process holds a step that is not on disk: a signal only sets
                # the flag (until now it ended the process at once, start-up has nothing to save)
                interrupts.set_dirty(True)
            for k, v in terms.items():
                sums[k] = sums.get(k, 0.0) + v
            count += 1
            bar.update(1)
            bar.set_postfix(
                loss=f"{terms['loss']:.4f}", lr=f"{terms['lr']:.1e}", sigma=f"{terms['sigma']:.1e}"
            )
            if step % config.log_every == 0 or step == config.num_steps:
                now = time.perf_counter()
                record = {"step": step, **{k: v / count for k, v in sums.items()}}
                record["steps_per_sec"] = count / (now - t_log)
                log.append(record)
                if lead:
                    plot_loss(log.train_records(), workdir / LOSS_PLOT)
                sums, count, t_log = {}, 0, time.perf_counter()
            stop()  # a signal: skip the side work, save this step and exit
            t_side = time.perf_counter()  # side work is left out of steps_per_sec
            if step % config.checkpoint_every == 0:
                checkpoints.save(mngr, state)
            if lead and step % config.sample_every == 0:
                samples.write(state, local_batch, step)
            if evaluator and config.eval_every and step % config.eval_every == 0:
                log.append(evaluator(state, step, stop))
            t_log += time.perf_counter() - t_side
            stop()
        checkpoints.save(mngr, state, force=True)
        mngr.wait_until_finished()
        stop()  # a signal during the last save: it is on disk now, exit as interrupted
    except KeyboardInterrupt:
        bar.close()
        checkpoints.save(mngr, state, force=True)
        mngr.wait_until_finished()
        mngr.close()
        print(
            f"\nrecon.train: interrupted; saved the checkpoint of step {int(state.step)} in "
            f"{workdir / checkpoints.CHECKPOINT_DIR}. Run the same command again to resume.",
            file=sys.stderr,
        )
        raise
    finally:
        bar.close()
    if interrupts:
        interrupts.set_dirty(False)  # everything is saved: the final evaluation may be cut
    if (
        evaluator
        and config.final_eval
        and not (config.eval_every and step % config.eval_every == 0 and step > start)
    ):
        log.append(evaluator(state, step))
    mngr.close()
    return log.records[-1] if log.records else record


class _Evaluator:
    """Voxel IoU on ``config.eval_split`` during training (a metrics record)."""

    def __init__(self, config: Any, spec: ModelSpec, workdir: Path):
        self.config = config
        self.workdir = workdir
        self.source = load_config_split(config, config.eval_split)
        self.predictor = Predictor(spec, {}, batch_size=int(config.eval_batch_size))

    def __call__(
        self, state: TrainState, step: int, stop: Callable[[], None] | None = None
    ) -> dict[str, Any]:
        """The evaluation record of ``state``; ``stop`` is called between batches (it raises to
        abandon the evaluation when a signal arrived)."""
        from recon.eval import evaluate, format_table

        self.predictor.variables = jax.device_get(state.variables)
        results = evaluate(
            self.predictor,
            self.source,
            batch_size=int(self.config.eval_batch_size),
            max_objects=int(self.config.eval_max_objects),
            progress=False,
            stop=stop,
        )
        if jax.process_index() == 0:
            print(
                "\n" + format_table(results, f"step {step}: voxel IoU x100 on {self.source.name}"),
                file=sys.stderr,
            )
        return {
            "step": step,
            "eval_split": self.config.eval_split,
            "eval_mean_iou": results["mean_iou"],
            "eval_class_iou": {k: r["iou"] for k, r in results["classes"].items()},
        }


def define_flags(flag_values: flags.FlagValues) -> None:
    """``--config`` (a config file, ``--config.key=value`` overrides a field) and ``--workdir``."""
    config_flags.DEFINE_config_file(
        "config",
        None,
        "training config file (configs/NAME.py)",
        flag_values=flag_values,
        lock_config=True,
    )
    flags.DEFINE_string(
        "workdir", None, "work directory (default: runs/<config.name>)", flag_values=flag_values
    )
    flags.mark_flags_as_required(["config"], flag_values=flag_values)


def run(
    options: flags.FlagValues, interrupts: interrupt.Interrupts | None = None
) -> dict[str, Any]:
    """Trains as the parsed command line ``options`` says; returns the last metrics record."""
    config = options.config
    workdir = options.workdir or str(Path("runs") / config.name)
    return train_and_evaluate(config, workdir, interrupts)


def main(argv: list[str]) -> dict[str, Any]:
    """``python -m recon.train`` from Python (no signal handling): ``argv`` holds its arguments,
    e.g. ``['--config', 'configs/tiny.py', '--workdir', 'runs/tiny']``."""
    return run(cli.parse_flags(argv, define_flags))


if __name__ == "__main__":
    cli.run_main("recon.train", define_flags, lambda options: run(options, _INTERRUPTS))
