"""Work directories: the run's config (and the dataset splits it names), orbax checkpoints, and
loading a trained model.

Layout of a work directory::

    config.json          the training config (ml_collections, JSON)
    checkpoints/<step>/  orbax checkpoints of the TrainState (the last few are kept)
    metrics.jsonl        one JSON object per logged step (and per evaluation)
    train_loss.png       the loss curve
    samples/             input / silhouette PNG pairs and demo OBJs

A process killed at any moment (``kill -9`` included) leaves a resumable directory: orbax writes
each checkpoint to ``<step>.orbax-checkpoint-tmp...`` and renames it when complete (only
complete ones are listed and restored), ``config.json`` and ``metrics.jsonl`` are replaced
atomically, and a ``metrics.jsonl`` line cut short by a kill is skipped on resume
(``tests/test_interrupt.py``).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import jax
import ml_collections
import orbax.checkpoint as ocp

from recon.models import ModelSpec, model_spec
from recon.records import write_atomic
from recon.state import TrainState, init_state

CONFIG_FILE = "config.json"
CHECKPOINT_DIR = "checkpoints"


def save_config(workdir: str | Path, config: ml_collections.ConfigDict) -> None:
    """Writes ``config`` to ``workdir/config.json``."""
    path = Path(workdir) / CONFIG_FILE
    path.parent.mkdir(parents=True, exist_ok=True)
    # atomic: a run killed while writing it must still be resumable (its config is checked)
    write_atomic(path, config.to_json_best_effort(indent=2, sort_keys=True) + "\n")


def load_config(workdir: str | Path) -> ml_collections.ConfigDict:
    """The config a run was trained with (``workdir/config.json``)."""
    path = Path(workdir) / CONFIG_FILE
    if not path.is_file():
        raise FileNotFoundError(f"{path} not found: {workdir} is not a recon.train work directory")
    return _to_config(json.loads(path.read_text()))


def _to_config(d: dict) -> ml_collections.ConfigDict:
    def tuples(x):
        if isinstance(x, dict):
            return {k: tuples(v) for k, v in x.items()}
        if isinstance(x, list):
            return tuple(tuples(v) for v in x)
        return x

    return ml_collections.ConfigDict(tuples(d))


def manager(
    workdir: str | Path, config: Any | None = None, read_only: bool = False
) -> ocp.CheckpointManager:
    """The orbax manager of ``workdir/checkpoints`` (keeps ``config.keep_checkpoints``)."""
    options = ocp.CheckpointManagerOptions(
        max_to_keep=None if config is None else int(config.keep_checkpoints),
        create=not read_only,  # read-only use never saves, so nothing is deleted either
    )
    return ocp.CheckpointManager(Path(workdir).absolute() / CHECKPOINT_DIR, options=options)


def abstract_state(config: Any, spec: ModelSpec) -> TrainState:
    """Shapes and dtypes of the :class:`TrainState` of ``config`` (nothing is computed)."""
    return jax.eval_shape(lambda: init_state(config, spec))


def save(mngr: ocp.CheckpointManager, state: TrainState, force: bool = False) -> bool:
    """Saves ``state`` at its step (asynchronously; ``mngr.wait_until_finished()`` to wait)."""
    step = int(state.step)
    if step in mngr.all_steps():
        return False
    return mngr.save(step, args=ocp.args.StandardSave(state), force=force)


def restore(mngr: ocp.CheckpointManager, target: TrainState, step: int | None = None):
    """The state saved at ``step`` (default the latest), or None when there is none."""
    step = mngr.latest_step() if step is None else step
    if step is None:
        return None
    return mngr.restore(step, args=ocp.args.StandardRestore(target))


def load_trained(
    workdir: str | Path | None = None, checkpoint: str | Path | None = None
) -> tuple[ml_collections.ConfigDict, ModelSpec, TrainState]:
    """Loads a trained model for evaluation or reconstruction.

    Args:
      workdir: a ``recon.train`` work directory (its latest checkpoint is used), or
      checkpoint: one checkpoint, ``<workdir>/checkpoints/<step>``.

    Returns:
      ``(config, spec, state)``.
    """
    if (workdir is None) == (checkpoint is None):
        raise ValueError("give exactly one of workdir and checkpoint")
    step = None
    if checkpoint is not None:
        checkpoint = Path(checkpoint)
        if not checkpoint.is_dir() or not checkpoint.name.isdigit():
            raise FileNotFoundError(
                f"{checkpoint} is not a checkpoint: expected <workdir>/{CHECKPOINT_DIR}/<step>"
            )
        step = int(checkpoint.name)
        workdir = checkpoint.parent.parent
    config = load_config(workdir)
    spec = model_spec(config)
    mngr = manager(workdir, read_only=True)
    state = restore(mngr, abstract_state(config, spec), step)
    if state is None:
        raise FileNotFoundError(f"no checkpoint in {Path(workdir) / CHECKPOINT_DIR}")
    return config, spec, state
