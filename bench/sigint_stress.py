"""Ctrl-C stress test of ``recon.train``: SIGINTs at random moments, then exact resume.

``python bench/sigint_stress.py --runs 30 [--mode time|mixed] [--seed 0] [--out DIR]``

On the tiny config (``configs/tiny.py``) the script first trains an uninterrupted reference run,
then runs the same ``python -m recon.train`` command again and again in one work directory,
each time sending SIGINT at a random (seeded) moment:

* ``--mode time`` (default): ``U(0.5, --max-delay)`` seconds (default 16) after the process
  started (imports, dataset, restore, compile or training, whatever it is doing then; not before
  the tool's signal handlers are installed, a few hundred milliseconds in);
* ``--mode mixed``: every other run like ``time``; the others ``U(0, 1.5)`` s after the run has
  logged 1 to 3 new training steps (the signal then always finds trained work to save).

For each run it records the exit code, the seconds from the signal to the exit, whether a
checkpoint was saved (and is on disk, complete) or there was nothing to save, and whether a
traceback was printed. When a run finishes before its signal, the chain is complete: its final
parameters and per-step losses must equal the reference's exactly, and a new chain starts in a
fresh work directory. At the end a last run completes the current chain (no signal) and is
compared too. The compilation cache (``JAX_COMPILATION_CACHE_DIR``, under ``--out``) makes the
restarts cheap. Results: a line per run and a summary on stdout, and ``sigint_stress.json`` in
``--out`` (default: a temporary folder, removed at the end). Exit status 1 if a signalled run
did not exit with 130 (143) or a completed chain differs from the reference.

``run_chain`` and its helpers are also used by ``tests/test_interrupt.py``.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
# Per-process safety net: a run that neither exits after its signal nor finishes within this
# many seconds is killed and reported as hung (the pass criteria are the recorded figures).
SAFETY_S = 600.0
SAVED = re.compile(r"saved the checkpoint of step (\d+)")
RESUMING = re.compile(r"resuming at step (\d+)")
HANDLED = (signal.SIGINT, signal.SIGTERM)


def cache_env(cache_dir: str | Path) -> dict[str, str]:
    """The environment of the runs: JAX's persistent compilation cache in ``cache_dir`` (every
    executable, however fast to compile), and the repository on ``PYTHONPATH``."""
    env = dict(os.environ)
    env.update(
        JAX_COMPILATION_CACHE_DIR=str(cache_dir),
        JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS="0",
        JAX_PERSISTENT_CACHE_MIN_ENTRY_SIZE_BYTES="0",
        PYTHONPATH=str(ROOT) + os.pathsep + env.get("PYTHONPATH", ""),
    )
    return env


def train_command(workdir: str | Path, data_dir: str | Path, **overrides: Any) -> list[str]:
    """``python -m recon.train`` on the tiny config with ``--config.<key>=<value>`` overrides."""
    cmd = [
        sys.executable,
        "-m",
        "recon.train",
        "--config",
        str(ROOT / "configs" / "tiny.py"),
        "--workdir",
        str(workdir),
        f"--config.data_dir={data_dir}",
    ]
    return cmd + [f"--config.{k}={v}" for k, v in overrides.items()]


@contextlib.contextmanager
def logged_process(
    cmd: list[str], log: str | Path, env: dict[str, str] | None = None
) -> Iterator[subprocess.Popen]:
    """``cmd`` running in the repository root with its stdout and stderr in the file ``log`` (a
    file, not a pipe: the tool's output can never block it); killed when the block is left
    while it still runs."""
    with Path(log).open("wb") as out:
        proc = subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=out, stderr=subprocess.STDOUT)
        try:
            yield proc
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()


def logged_steps(workdir: str | Path) -> list[int]:
    """Steps of the training records in ``metrics.jsonl`` (a line being written is skipped)."""
    path = Path(workdir) / "metrics.jsonl"
    steps = []
    try:
        lines = path.read_text().splitlines()
    except FileNotFoundError:
        return steps
    for line in lines:
        try:
            record = json.loads(line)
        except json.JSONDecodeError:
            continue
        if "loss" in record:
            steps.append(int(record["step"]))
    return steps


def complete_checkpoints(workdir: str | Path) -> list[int]:
    """Steps with a finished (renamed) orbax checkpoint directory."""
    folder = Path(workdir) / "checkpoints"
    if not folder.is_dir():
        return []
    return sorted(int(p.name) for p in folder.iterdir() if p.name.isdigit() and p.is_dir())


def wait_for(
    condition: Callable[[], bool], proc: subprocess.Popen, timeout: float, poll: float = 0.05
) -> bool:
    """Polls ``condition`` until it holds (True) or ``proc`` exits or ``timeout`` passes."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return True
        if proc.poll() is not None:
            return condition()
        time.sleep(poll)
    return False


def handlers_installed(pid: int, signals: tuple[int, ...] = HANDLED) -> bool:
    """Whether process ``pid`` catches ``signals`` (Linux: the ``SigCgt`` mask of
    ``/proc/<pid>/status``), i.e. the tool's handlers are installed and a signal now tests them
    rather than Python's start-up."""
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return False
    mask = int(re.search(r"^SigCgt:\s*([0-9a-f]+)", status, re.M).group(1), 16)
    return all(mask >> (s - 1) & 1 for s in signals)


def run_once(
    cmd: list[str],
    env: dict[str, str],
    workdir: Path,
    log: Path,
    moment: tuple[str, float, int],
    signum: int = signal.SIGINT,
) -> dict[str, Any]:
    """One run of ``cmd``, signalled at ``moment``: ``('time', seconds, 0)`` after the start, or
    ``('steps', seconds, k)`` after it logged ``k`` new training steps (``None`` moment kind
    ``'none'``: no signal). Returns the record of the run."""
    kind, delay, k = moment
    before = max(complete_checkpoints(workdir), default=0)  # where the run will resume
    t0 = time.monotonic()
    with logged_process(cmd, log, env) as proc:
        finished_first = False
        # Signals sent before the interpreter reached the tool's first line would test
        # Python's start-up, not the tool: the moments count from the start, but not before.
        wait_for(lambda: handlers_installed(proc.pid), proc, SAFETY_S, poll=0.01)
        if kind == "time":
            try:
                proc.wait(timeout=max(delay - (time.monotonic() - t0), 0.0))
                finished_first = True
            except subprocess.TimeoutExpired:
                pass
        elif kind == "steps":
            reached = wait_for(
                lambda: max(logged_steps(workdir), default=0) >= before + k, proc, SAFETY_S
            )
            if reached and proc.poll() is None:
                try:
                    proc.wait(timeout=delay)
                    finished_first = True
                except subprocess.TimeoutExpired:
                    pass
            else:
                finished_first = True
        else:
            proc.wait(timeout=SAFETY_S)
            finished_first = True
        t_signal = time.monotonic()
        if not finished_first:
            proc.send_signal(signum)
        try:
            proc.wait(timeout=SAFETY_S)
            hung = False
        except subprocess.TimeoutExpired:
            hung = True
            proc.kill()
            proc.wait()
    t_exit = time.monotonic()
    returncode = proc.returncode
    text = log.read_text(errors="replace")
    name = signal.Signals(signum).name
    if not finished_first and not hung and proc.returncode == -signum:
        # Killed by the signal's default action without the tool's "<SIGNAL> received" line:
        # it landed after the tool's last line, once CPython's shutdown had reset the handlers.
        # Like a signal before the tool's first line, that tests Python, not the tool: the run
        # completed first (its result is checked as any completed run's).
        if f"{name} received" not in text and "Traceback" not in text:
            finished_first, returncode = True, 0
    saved = SAVED.findall(text)
    resumed = RESUMING.findall(text)
    record = {
        "moment": kind,
        "delay_s": round(delay, 3),
        "after_steps": k,
        "start_step": before,
        "printed_resume": int(resumed[0]) if resumed else None,
        "signalled": not finished_first,
        "signal_at_s": round(t_signal - t0, 2),
        "returncode": -9 if hung else returncode,
        "hung": hung,
        "exit_after_signal_s": round(t_exit - t_signal, 2) if not finished_first else None,
        "saved_step": int(saved[-1]) if saved else None,
        "nothing_to_save": "nothing to save" in text,
        "traceback": "Traceback" in text,
        "checkpoints": complete_checkpoints(workdir),
        "log": str(log),
    }
    record["checkpoint_on_disk"] = (
        record["saved_step"] in record["checkpoints"] if record["saved_step"] is not None else None
    )
    return record


def final_state(workdir: str | Path) -> tuple[list[np.ndarray], int, list[float]]:
    """The latest checkpoint's variables and step, and the per-step losses of ``metrics.jsonl``."""
    import jax

    from recon import checkpoints

    _, _, state = checkpoints.load_trained(workdir)
    lines = (Path(workdir) / "metrics.jsonl").read_text().splitlines()
    losses = [json.loads(x)["loss"] for x in lines if x.strip() and "loss" in json.loads(x)]
    return jax.tree.leaves(jax.device_get(state.variables)), int(state.step), losses


def same_run(a: str | Path, b: str | Path) -> tuple[bool, str]:
    """Whether two work directories hold the same run: equal final step, parameters (exactly)
    and per-step losses (exactly)."""
    pa, sa, la = final_state(a)
    pb, sb, lb = final_state(b)
    if sa != sb:
        return False, f"final steps differ: {sa} != {sb}"
    if la != lb:
        return False, f"losses differ: {la} != {lb}"
    for i, (x, y) in enumerate(zip(pa, pb, strict=True)):
        if not np.array_equal(x, y):
            return False, f"parameter leaf {i} differs"
    return True, "equal"


def moments(seed: int, mode: str, max_delay: float = 16.0) -> Iterator[tuple[str, float, int]]:
    """The seeded signal moments of the runs, one per run (see the module docstring)."""
    rng = np.random.default_rng(seed)
    i = 0
    while True:
        if mode == "time" or i % 2 == 0:
            yield ("time", float(rng.uniform(0.5, max_delay)), 0)
        else:
            yield ("steps", float(rng.uniform(0.0, 1.5)), int(rng.integers(1, 4)))
        i += 1


def run_chain(
    out: Path,
    data_dir: str | Path,
    runs: int,
    seed: int = 0,
    mode: str = "time",
    signum: int = signal.SIGINT,
    max_delay: float = 16.0,
    progress: Callable[[dict[str, Any]], None] | None = None,
    **overrides: Any,
) -> dict[str, Any]:
    """The whole experiment (see the module docstring) in folder ``out``; returns
    ``{'reference_s', 'runs': [records], 'chains': [{'runs', 'equal', 'detail'}]}``."""
    out.mkdir(parents=True, exist_ok=True)
    env = cache_env(out / "jax_cache")
    reference = out / "reference"
    if not complete_checkpoints(reference):
        shutil.rmtree(reference, ignore_errors=True)
        t0 = time.monotonic()
        proc = subprocess.run(
            train_command(reference, data_dir, **overrides),
            cwd=ROOT,
            env=env,
            capture_output=True,
            text=True,
            timeout=SAFETY_S,
        )
        if proc.returncode != 0:
            raise RuntimeError(f"the reference run failed:\n{proc.stdout[-3000:]}")
        reference_s = time.monotonic() - t0
    else:
        reference_s = 0.0
    records: list[dict[str, Any]] = []
    chains: list[dict[str, Any]] = []
    chain, chain_runs = 0, 0

    def workdir() -> Path:
        return out / f"chain{chain}"

    def finish_chain() -> None:
        nonlocal chain, chain_runs
        equal, detail = same_run(reference, workdir())
        chains.append({"chain": chain, "runs": chain_runs, "equal": equal, "detail": detail})
        chain, chain_runs = chain + 1, 0

    shutil.rmtree(workdir(), ignore_errors=True)
    plan = moments(seed, mode, max_delay)
    signalled, i = 0, 0
    while True:
        # `runs` signalled runs (a run that completes its chain before its signal does not
        # count), then one without a signal that completes the last chain
        moment = next(plan) if signalled < runs else ("none", 0.0, 0)
        if moment[0] == "none" and chain_runs == 0:
            break  # the last signalled run completed its chain: nothing left to finish
        cmd = train_command(workdir(), data_dir, **overrides)
        record = run_once(cmd, env, workdir(), out / f"run{i:03d}.log", moment, signum)
        record.update(run=i, chain=chain)
        records.append(record)
        signalled += record["signalled"]
        chain_runs += 1
        i += 1
        if progress:
            progress(record)
        if record["returncode"] == 0:  # the run completed: compare, then a fresh chain
            finish_chain()
            shutil.rmtree(workdir(), ignore_errors=True)
            if moment[0] == "none":
                break
        elif record["hung"] or record["returncode"] not in (130, 143):
            break  # a failure: keep the directory as it is for a look
    return {"reference_s": round(reference_s, 1), "runs": records, "chains": chains}


def summary(result: dict[str, Any], signum: int = signal.SIGINT) -> dict[str, Any]:
    """The figures of :func:`run_chain`'s result."""
    signalled = [r for r in result["runs"] if r["signalled"]]
    times = [r["exit_after_signal_s"] for r in signalled if not r["hung"]]
    code = 128 + signum
    return {
        "signals": len(signalled),
        "right_exit_code": sum(r["returncode"] == code for r in signalled),
        "hung": sum(r["hung"] for r in signalled),
        "crashed": sum(r["returncode"] not in (code, 0) and not r["hung"] for r in signalled),
        "tracebacks": sum(r["traceback"] for r in result["runs"]),
        "saved_checkpoint": sum(r["saved_step"] is not None for r in signalled),
        "checkpoint_on_disk": sum(bool(r["checkpoint_on_disk"]) for r in signalled),
        "nothing_to_save": sum(r["nothing_to_save"] for r in signalled),
        "exit_after_signal_s": {
            "median": float(np.median(times)) if times else None,
            "max": float(np.max(times)) if times else None,
        },
        "chains_completed": len(result["chains"]),
        "chains_equal_to_reference": sum(c["equal"] for c in result["chains"]),
    }


def _print_record(r: dict[str, Any]) -> None:
    what = (
        f"saved step {r['saved_step']}"
        if r["saved_step"] is not None
        else ("nothing to save" if r["nothing_to_save"] else "-")
    )
    when = (
        f"{r['delay_s']:5.1f} s after start"
        if r["moment"] == "time"
        else (f"{r['after_steps']} steps + {r['delay_s']:.1f} s" if r["moment"] == "steps" else "")
    )
    exit_s = r["exit_after_signal_s"]
    print(
        f"run {r['run']:3d} chain {r['chain']} from step {r['start_step']:3d}: "
        f"{'signal ' + when if r['signalled'] else 'no signal (completed)':34s} "
        f"exit {r['returncode']:4d} "
        f"{'' if exit_s is None else f'{exit_s:5.2f} s after it':16s} {what}"
        f"{' TRACEBACK' if r['traceback'] else ''}",
        flush=True,
    )


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--runs", type=int, default=30, help="signalled runs")
    p.add_argument("--mode", choices=("time", "mixed"), default="time")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--max-delay", type=float, default=16.0, help="latest signal time (s)")
    p.add_argument("--signal", choices=("SIGINT", "SIGTERM"), default="SIGINT")
    p.add_argument("--num-steps", type=int, default=20, help="steps of one chain")
    p.add_argument("--out", help="work folder (default: a temporary folder, removed)")
    p.add_argument("--data-dir", help="TFDS folder with the tiny dataset (default: under --out)")
    args = p.parse_args(argv)
    signum = signal.Signals[args.signal]
    tmp = None
    if args.out:
        out = Path(args.out)
    else:
        tmp = tempfile.mkdtemp(prefix="sigint_stress_")
        out = Path(tmp)
    data_dir = args.data_dir or str(out / "tfds")
    overrides = dict(num_steps=args.num_steps, checkpoint_every=5, sample_every=4, decay_step=8)
    try:
        result = run_chain(
            out,
            data_dir,
            args.runs,
            args.seed,
            args.mode,
            signum,
            args.max_delay,
            _print_record,
            **overrides,
        )
        result["summary"] = summary(result, signum)
        result["args"] = vars(args)
        print(json.dumps(result["summary"], indent=2))
        (out / "sigint_stress.json").write_text(json.dumps(result, indent=2) + "\n")
        s = result["summary"]
        ok = (
            s["right_exit_code"] == s["signals"]
            and s["chains_equal_to_reference"] == s["chains_completed"]
        )
        return 0 if ok else 1
    finally:
        if tmp:
            shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
