"""Training records: ``metrics.jsonl``, the loss-curve PNG and sample images."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np

METRICS_FILE = "metrics.jsonl"
LOSS_PLOT = "train_loss.png"


class MetricsLog:
    """``workdir/metrics.jsonl``: one JSON object per line, appended as training goes.

    On resume from step ``start`` the records of later steps (written after the checkpoint the
    run resumes from) are dropped, so the file always describes one uninterrupted run.
    """

    def __init__(self, workdir: str | Path, start_step: int = 0, write: bool = True):
        self.path = Path(workdir) / METRICS_FILE
        self.write_enabled = write
        self.records: list[dict[str, Any]] = []
        if self.path.is_file():
            for line in self.path.read_text().splitlines():
                try:
                    record = json.loads(line) if line.strip() else None
                except json.JSONDecodeError:
                    # a line cut short by a kill -9 during the append: its step is after the
                    # checkpoint (records are written before the checkpoint of their step)
                    continue
                if record is not None and record.get("step", 0) <= start_step:
                    self.records.append(record)
        if write:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            write_atomic(self.path, "".join(json.dumps(r) + "\n" for r in self.records))

    def append(self, record: dict[str, Any]) -> None:
        self.records.append(record)
        if self.write_enabled:
            with self.path.open("a") as f:
                f.write(json.dumps(record) + "\n")

    def train_records(self) -> list[dict[str, Any]]:
        return [r for r in self.records if "loss" in r]


def write_atomic(path: str | Path, text: str) -> None:
    """Writes ``text`` to ``path`` through a temporary file and a rename, so that a process
    killed at any moment leaves either the old or the new file, never half of one."""
    path = Path(path)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(text)
    tmp.replace(path)


def plot_loss(records: list[dict[str, Any]], path: str | Path) -> None:
    """Writes the loss curve (total loss and the silhouette IoU loss against the step)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    steps = [r["step"] for r in records]
    fig, ax = plt.subplots(figsize=(6, 3.5), dpi=100)
    ax.plot(steps, [r["loss"] for r in records], label="loss")
    ax.plot(steps, [r["iou_loss"] for r in records], label="silhouette IoU loss")
    ax.set_xlabel("step")
    ax.set_ylabel("loss")
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    tmp = Path(path).with_suffix(".tmp.png")
    fig.savefig(tmp)
    plt.close(fig)
    tmp.replace(path)  # readers never see a half-written file


def sample_grid(inputs: np.ndarray, silhouettes: np.ndarray) -> np.ndarray:
    """Input RGBA images ``[N, S, S, 4]`` (top row, over white) above rendered silhouettes
    ``[N, S, S]`` (bottom row): uint8 ``[2S, N*S, 3]``."""
    rgb, alpha = inputs[..., :3], inputs[..., 3:]
    top = rgb + (1 - alpha)  # NMR images are rendered over black (premultiplied)
    bottom = np.repeat(1 - silhouettes[..., None], 3, -1)
    grid = np.concatenate([np.concatenate(list(top), 1), np.concatenate(list(bottom), 1)], 0)
    return (np.clip(grid, 0, 1) * 255).round().astype(np.uint8)
