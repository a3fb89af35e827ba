"""Interruption of the recon tools: Ctrl-C / SIGTERM at any moment, and kill -9.

The subprocess tests wait on events (the tool's handlers appearing in ``/proc/<pid>/status``, a
line of ``metrics.jsonl``, a marker file); the only clock in a pass criterion is the issue's own
"ends within 20 s of the signal". The runs share JAX's persistent compilation cache (in a temporary
folder, set through the environment of the subprocesses only), so a restart costs the imports and
cache loads rather than a compilation.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from bench import sigint_stress as stress
from configs import tiny
from recon import interrupt
from recon.data.loader import load_config_split

pytestmark = pytest.mark.slow  # trains models or builds datasets (see pyproject.toml)

ROOT = Path(__file__).resolve().parents[1]
EXIT_WITHIN_S = 20.0  # the bound from the signal to the exit
SAFETY_S = 900.0  # only against a hang; never the expected duration
# One short chain: 12 steps, lr / sigma decay at 8, periodic checkpoints and samples on the way
OVERRIDES = dict(num_steps=12, checkpoint_every=5, sample_every=4, decay_step=8)


@pytest.fixture(scope="module")
def out(tmp_path_factory):
    """The folder of the reference run and of the compilation cache shared by the tests."""
    return tmp_path_factory.mktemp("interrupt_runs")


def _assert_prompt_exit(record, code):
    assert not record["hung"], record
    assert record["returncode"] == code, (record, Path(record["log"]).read_text()[-3000:])
    assert record["exit_after_signal_s"] <= EXIT_WITHIN_S, record
    assert not record["traceback"], Path(record["log"]).read_text()[-3000:]


# ---------------------------------------------------------------- the mechanism


def test_dirty_signal_sets_the_flag_and_uninstall_restores():
    before = signal.getsignal(signal.SIGTERM)
    interrupts = interrupt.Interrupts("test").install()
    try:
        interrupts.set_dirty(True)
        os.kill(os.getpid(), signal.SIGTERM)
        deadline = time.monotonic() + SAFETY_S
        while not interrupts.requested and time.monotonic() < deadline:
            time.sleep(0.01)  # the watcher thread records it
        assert interrupts.signum == signal.SIGTERM and interrupts.exit_code == 143
        with pytest.raises(interrupt.Interrupted) as e:
            interrupts.check()
        assert e.value.exit_code == 143 and isinstance(e.value, KeyboardInterrupt)
    finally:
        interrupts.uninstall()
    assert signal.getsignal(signal.SIGTERM) == before


_PROGRAM = """
import sys, time
from recon import interrupt
interrupts = interrupt.install("prog")
interrupts.set_dirty(sys.argv[1] == "dirty")
print("ready", flush=True)
time.sleep(3600)
"""


@pytest.mark.parametrize(
    "mode, signals, code, message",
    [
        ("clean", [signal.SIGTERM], 143, "prog: SIGTERM received; nothing to save, exiting"),
        ("clean", [signal.SIGINT], 130, "prog: SIGINT received; nothing to save, exiting"),
        ("dirty", [signal.SIGINT, signal.SIGINT], 130, "prog: second SIGINT; exiting at once"),
    ],
)
def test_exits_at_once_when_nothing_to_save_or_on_a_second_signal(mode, signals, code, message):
    proc = subprocess.Popen(
        [sys.executable, "-c", _PROGRAM, mode],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stdout.readline() == "ready\n"
        seen = ""
        for i, s in enumerate(signals):
            if i:  # two signals sent back to back can merge into one delivery: wait for the first
                while "stopping after the current step" not in seen:
                    line = proc.stderr.readline()
                    assert line, seen  # the program ended before reporting the first signal
                    seen += line
            proc.send_signal(s)
        _, err = proc.communicate(timeout=SAFETY_S)
        err = seen + err
    finally:
        proc.kill()
    assert proc.returncode == code, err
    assert message in err and "Traceback" not in err, err
    if mode == "dirty":
        assert "stopping after the current step" in err


_TOOL = """
import os, sys, time
from recon import cli, interrupt

class SlowTeardown:  # stands for JAX's teardown, which can take seconds
    def __del__(self):
        time.sleep(30)

sys.modules["slow_teardown"] = SlowTeardown()
interrupt.install("prog")

def run(flags):
    print("output of the work")  # not flushed: exit_process must flush it
    if os.environ["OUTCOME"] == "bad":
        raise ValueError("a bad value")
    print("done", file=sys.stderr, flush=True)

cli.run_main("prog", lambda flag_values: None, run)
"""


@pytest.mark.parametrize("outcome", ["ok", "bad"])
def test_a_tool_ends_with_its_handlers_installed(outcome):
    """A signal right after a tool's work finds the tool's handler or no process: never the
    default disposition that interpreter teardown puts back (status -signum, no message)."""
    proc = subprocess.Popen(
        [sys.executable, "-c", _TOOL],
        cwd=ROOT,
        env={**os.environ, "OUTCOME": outcome},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        if outcome == "ok":
            assert proc.stderr.readline() == "done\n"
            proc.send_signal(signal.SIGTERM)
        out, err = proc.communicate(timeout=SAFETY_S)
    finally:
        proc.kill()
    assert out == "output of the work\n", (out, err)
    if outcome == "bad":
        assert proc.returncode == 1 and err == "prog: error: a bad value\n", (proc.returncode, err)
    else:  # 0: exited before the signal; 143: the handler saw it (finished work: nothing to save)
        assert proc.returncode in (0, 143), (proc.returncode, err)
        assert proc.returncode == 0 or "nothing to save" in err, err


# ---------------------------------------------------------------- recon.train


def test_sigint_at_random_moments_then_resume_equals_an_uninterrupted_run(data_dir, out):
    """4 SIGINTs at seeded random moments (``bench/sigint_stress.py --runs 30`` runs more):
    every other one 0.5-16 s after the start (start-up, compile or training, whatever comes),
    the others 0-1.5 s after 1-3 new training steps.
    Each run exits 130 within 20 s of its signal, without a traceback, with the checkpoint of
    its last step saved when it had trained one; the chain of resumed runs ends equal (losses
    and parameters, exactly) to an uninterrupted run."""
    result = stress.run_chain(out, data_dir, runs=4, seed=1, mode="mixed", **OVERRIDES)
    signalled = [r for r in result["runs"] if r["signalled"]]
    assert len(signalled) == 4, result["runs"]
    for r in signalled:
        _assert_prompt_exit(r, 130)
        if r["saved_step"] is not None:
            assert r["checkpoint_on_disk"], r
            assert r["saved_step"] > r["start_step"], r
        else:
            assert r["nothing_to_save"], r
        if r["moment"] == "steps":  # trained steps were there to save
            assert r["saved_step"] is not None and r["saved_step"] >= r["start_step"] + 1, r
    assert result["runs"][-1]["returncode"] == 0  # the last run completed its chain
    assert result["chains"] and all(c["equal"] for c in result["chains"]), result["chains"]


def test_sigterm_saves_and_exits_143(data_dir, out, tmp_path):
    workdir = tmp_path / "run"
    record = stress.run_once(
        stress.train_command(workdir, data_dir, **OVERRIDES),
        stress.cache_env(out / "jax_cache"),
        workdir,
        tmp_path / "log.txt",
        ("steps", 0.0, 2),
        signal.SIGTERM,
    )
    _assert_prompt_exit(record, 143)
    assert record["saved_step"] is not None and record["saved_step"] >= 2, record
    assert record["checkpoints"][-1] == record["saved_step"]


_PAUSE_FINAL_RENAME = """
import asyncio, runpy, sys
from pathlib import Path
from orbax.checkpoint._src.path import atomicity

marker, step = Path(sys.argv[1]), sys.argv[2]
real = atomicity.AtomicRenameTemporaryPath.finalize

async def finalize(self):
    # checkpoint `step` is written in full but not renamed: kill -9 lands here
    if self._final_path.name == step:
        marker.write_text(str(self.get()))
        await asyncio.sleep(3600)
    await real(self)

atomicity.AtomicRenameTemporaryPath.finalize = finalize
sys.argv = ["recon.train"] + sys.argv[3:]
runpy.run_module("recon.train", run_name="__main__")
"""


def test_kill_9_during_a_checkpoint_write_resumes_from_the_newest_complete(data_dir, out, tmp_path):
    """kill -9 while orbax writes checkpoint 2 (in full, before the rename that completes it):
    the temporary directory is ignored and the same command resumes from checkpoint 1 and ends
    equal to an uninterrupted run."""
    stress.run_chain(out, data_dir, runs=0, **OVERRIDES)  # the reference (kept in `out`)
    workdir, marker = tmp_path / "run", tmp_path / "paused"
    cmd = stress.train_command(workdir, data_dir, **{**OVERRIDES, "checkpoint_every": 1})
    env = stress.cache_env(out / "jax_cache")
    paused = [sys.executable, "-c", _PAUSE_FINAL_RENAME, str(marker), "2"] + cmd[3:]
    with stress.logged_process(paused, tmp_path / "killed.log", env) as proc:
        assert stress.wait_for(marker.is_file, proc, SAFETY_S), (
            tmp_path / "killed.log"
        ).read_text()[-3000:]
        proc.kill()  # SIGKILL
        proc.wait(timeout=SAFETY_S)
    tmp_dir = Path(marker.read_text())
    assert tmp_dir.is_dir() and tmp_dir.name.startswith("2.orbax-checkpoint-tmp"), tmp_dir
    assert stress.complete_checkpoints(workdir) == [1]
    done = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=SAFETY_S)
    assert done.returncode == 0, done.stderr[-3000:]
    assert "resuming at step 1" in done.stderr
    equal, detail = stress.same_run(out / "reference", workdir)
    assert equal, detail


def test_sigint_during_the_dataset_build_then_the_next_run_rebuilds(tmp_path):
    """SIGINT while TFDS writes the dataset: exit 130 at once, nothing to save; TFDS leaves only
    an ``.incomplete`` folder, and the next ``load_split`` builds the dataset again."""
    data_dir = tmp_path / "tfds"
    workdir = tmp_path / "run"
    config = tiny.get_config()
    builder_dir = data_dir / "synthetic_shapes"
    env = stress.cache_env(tmp_path / "jax_cache")

    def versions():  # <config>/<version>[.incomplete...] (TFDS also keeps a .config folder)
        return [p for p in builder_dir.glob("*/*") if not p.parent.name.startswith(".")]

    def incomplete():
        return [p for p in versions() if "incomplete" in p.name]

    cmd = stress.train_command(workdir, data_dir)
    with stress.logged_process(cmd, tmp_path / "log.txt", env) as proc:
        assert stress.wait_for(lambda: bool(incomplete()), proc, SAFETY_S, poll=0.02)
        t0 = time.monotonic()
        proc.send_signal(signal.SIGINT)
        proc.wait(timeout=SAFETY_S)
        waited = time.monotonic() - t0
    text = (tmp_path / "log.txt").read_text()
    assert proc.returncode == 130 and waited <= EXIT_WITHIN_S, text[-3000:]
    assert "nothing to save" in text and "Traceback" not in text, text[-3000:]
    assert not (workdir / "checkpoints").is_dir() or not stress.complete_checkpoints(workdir)
    left = versions()
    assert left and all("incomplete" in p.name for p in left), left
    source = load_config_split(config, "train", data_dir)
    assert source.num_objects == 4
    assert source.images([0, 3], [0, 23]).shape == (2, 64, 64, 4)


# ---------------------------------------------------------------- recon.eval, recon.reconstruct


# What each tool prints last when it completes its work
DONE = {"eval": "wrote ", "reconstruct": "reconstructed "}


@pytest.mark.parametrize("tool, signum", [("eval", signal.SIGINT), ("reconstruct", signal.SIGTERM)])
def test_eval_and_reconstruct_exit_cleanly(tool, signum, data_dir, out, tmp_path):
    """A signal as soon as the tool handles signals (then later, during its work: the same
    path): exit 128 + signal within 20 s, one line, no traceback."""
    stress.run_chain(out, data_dir, runs=0, **OVERRIDES)  # a trained work directory
    reference = out / "reference"
    image = tmp_path / "in.png"
    if tool == "eval":
        args = ["--workdir", str(reference), "--data_dir", str(data_dir), "--out", str(tmp_path)]
    else:
        import imageio.v2 as imageio
        import numpy as np

        imageio.imwrite(image, np.zeros((64, 64, 4), np.uint8))
        args = ["--workdir", str(reference), "--image", str(image), "--out", str(tmp_path / "o")]
    for delay in (0.0, 3.0):
        proc = subprocess.Popen(
            [sys.executable, "-m", f"recon.{tool}", *args],
            cwd=ROOT,
            env=stress.cache_env(out / "jax_cache"),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        try:
            assert stress.wait_for(lambda p=proc: stress.handlers_installed(p.pid), proc, SAFETY_S)
            if delay:
                try:
                    proc.wait(timeout=delay)
                except subprocess.TimeoutExpired:
                    pass
            if proc.poll() is not None:
                continue  # finished before the second signal: nothing left to interrupt
            t0 = time.monotonic()
            proc.send_signal(signum)
            output, err = proc.communicate(timeout=SAFETY_S)
            waited = time.monotonic() - t0
        finally:
            if proc.poll() is None:
                proc.kill()
        if delay and proc.returncode == 0:
            # The work ended between poll() and the signal (the process was already tearing
            # down): a finished run, as in the `continue` above. Only a complete one may exit 0.
            assert DONE[tool] in output, (output[-3000:], err[-3000:])
            continue
        assert proc.returncode == 128 + signum, err[-3000:]
        assert waited <= EXIT_WITHIN_S
        assert f"recon.{tool}: {signal.Signals(signum).name} received" in err, err[-3000:]
        assert "Traceback" not in err, err[-3000:]
