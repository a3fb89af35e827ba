"""Fixtures shared by the tests: float64 mode and the tiny synthetic dataset of a run (plain
helpers are in ``helpers.py``)."""

from __future__ import annotations

import fcntl
import gc
import os
import subprocess
import sys

# No persistent compilation cache here: with one shared by the test run, a worker crashed in
# JAX's cache write (a segmentation fault while serializing an executable, in a full run), so
# every test compiles afresh. The tests spend most of their time compiling small programs, and
# these flags make XLA's CPU backend compile them about 2x faster (test_gradients' tiled
# programs: 5-7 s -> 2.6-3.2 s each): no LLVM optimisation passes, the older fusion emitter (the
# MLIR one compiles each of a program's hundreds of fusions separately) and one codegen task.
# The subprocesses the tests start inherit them. The run's numbers are not the library's:
# benchmarks run without them.
_FAST_COMPILE = "--xla_backend_optimization_level=0 --xla_llvm_disable_expensive_passes=true"
_FAST_CODEGEN = "--xla_cpu_use_fusion_emitters=false --xla_cpu_parallel_codegen_split_count=1"


def _xla_accepts(flags: str) -> bool:
    """Whether this jaxlib's XLA knows every flag of ``flags``: it aborts a process on an
    unknown one, and flags come and go between releases."""
    env = dict(os.environ, XLA_FLAGS=flags, JAX_PLATFORMS="cpu")
    probe = "import jax.numpy as jnp; jnp.zeros(1).block_until_ready()"
    try:
        done = subprocess.run(
            [sys.executable, "-c", probe], env=env, capture_output=True, timeout=300
        )
    except subprocess.TimeoutExpired:
        return False
    return done.returncode == 0


# pytest-xdist's workers inherit the variable from the main process, which probed once
for _flags in (_FAST_COMPILE, _FAST_CODEGEN):
    if _flags not in os.environ.get("XLA_FLAGS", "") and _xla_accepts(_flags):
        os.environ["XLA_FLAGS"] = f"{os.environ.get('XLA_FLAGS', '')} {_flags}".strip()

import jax  # noqa: E402
import pytest  # noqa: E402

# Every compiled XLA CPU executable (eager ops included) holds about three memory maps until
# JAX's caches drop it. A test worker compiles tens of thousands, and at the kernel's limit
# (vm.max_map_count, 65,530 by default) the next compilation crashes the process (seen: a
# segmentation fault or an abort inside XLA's compiler, late in full runs). So a test that
# leaves its worker above this many maps clears JAX's caches after it.
_MAX_MAPS = 16_000


def _memory_maps() -> int:
    try:
        with open("/proc/self/maps", "rb") as maps:
            return maps.read().count(b"\n")
    except OSError:  # not Linux: no such limit to stay under
        return 0


@pytest.fixture(autouse=True)
def _bounded_memory_maps():
    yield
    if _memory_maps() > _MAX_MAPS:
        jax.clear_caches()
        gc.collect()


@pytest.fixture
def float64():
    with jax.enable_x64(True):
        yield


@pytest.fixture(scope="session")
def data_dir(tmp_path_factory) -> str:
    """TFDS directory of the tiny ``synthetic_shapes`` of ``configs/tiny.py`` (every split),
    built once per test run: the xdist workers of a run share it (the first to get the lock
    builds it, the others then find it prepared)."""
    from configs import tiny
    from recon.data.loader import load_config_split

    base = tmp_path_factory.getbasetemp()
    root = base.parent if os.environ.get("PYTEST_XDIST_WORKER") else base  # the run's folder
    directory = root / "tfds_tiny"
    with open(root / "tfds_tiny.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        load_config_split(tiny.get_config(), "train", str(directory))
    return str(directory)
