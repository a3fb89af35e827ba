"""``bench/gpu_check.py --smoke`` runs every section end to end on this machine (the Pallas
kernels in the interpreter) and writes the summary a GPU user will paste into a report."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow  # trains models or builds datasets (see pyproject.toml)

ROOT = Path(__file__).resolve().parent.parent


def test_gpu_check_smoke_runs_every_section(tmp_path, data_dir):
    out = tmp_path / "out"
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    env.pop("SOFTJAX_BACKEND", None)
    proc = subprocess.run(
        [
            sys.executable,
            str(ROOT / "bench" / "gpu_check.py"),
            "--smoke",
            "--out",
            str(out),
            "--workdir",
            str(tmp_path / "work"),
            "--data-dir",
            data_dir,  # the tests' tiny dataset, as the smoke's training section uses
        ],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=1500,  # a safety net only: the script's own watchdog ends it at 1200 s
    )
    summary = json.loads((out / "summary.json").read_text())
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    sections = summary["sections"]
    assert list(sections) == ["environment", "correctness", "benchmark", "train_step", "training"]
    assert all(s["status"] == "ok" for s in sections.values()), sections
    assert summary["finished"] and not summary.get("timed_out")

    env_info = sections["environment"]["result"]
    assert env_info["versions"]["jax"] and env_info["devices"]
    cor = sections["correctness"]["result"]
    assert cor["modes_checked"] >= 2 and cor["modes_failed"] == 0
    for row in cor["rows"]:  # the kernels (interpreted) and XLA agree with the reference
        assert row["ok"] and row["pallas_fwd_max_diff"] <= cor["tolerances"]["forward_atol"]
    assert cor["auto"] and all(a["backend"] == "xla" for a in cor["auto"])  # not a GPU here
    rows = sections["benchmark"]["result"]["rows"]
    assert {r["backend"] for r in rows} == {"xla", "pallas"}
    assert all(r["fwd_bwd_median_ms"] > 0 and r["grad_finite"] for r in rows)
    for r in rows:  # the kernels agree with XLA but for pixel centres on shared edges
        if r["backend"] == "pallas":
            assert 0 <= r["pixels_differing_vs_xla"] <= 0.01 * r["pixels_compared"], r
    steps = sections["train_step"]["result"]["rows"]
    assert [r["backend"] for r in steps] == ["xla", "pallas"]
    assert all(r["median_s"] > 0 and abs(r["loss"]) < 10 for r in steps)
    training = sections["training"]["result"]
    assert training["steps"] == 2 and 0.0 <= training["mean_iou"] <= 100.0

    md = (out / "summary.md").read_text()
    for heading in ("| section | status |", "## Correctness", "## Benchmark", "| pixels > 0.001 |"):
        assert heading in md
    assert "mean voxel IoU" in md
