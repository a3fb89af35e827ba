"""Fixtures shared by the tests: float64 mode and the tiny synthetic dataset of a run (plain
helpers are in ``helpers.py``)."""

from __future__ import annotations

import fcntl
import os
import shutil
import tempfile
from pathlib import Path

# One persistent compilation cache per test run, set before JAX is imported: the recon tests
# build the same training and evaluation programs in many tests (and in subprocesses, which
# inherit the variable), and a cache hit replaces a recompilation. The xdist workers of a run
# share the controller's folder (their parent's pid), which removes it at the end.
_RUN_PID = os.getppid() if os.environ.get("PYTEST_XDIST_WORKER") else os.getpid()
_JAX_CACHE = Path(tempfile.gettempdir()) / f"softjax-tests-jax-cache-{_RUN_PID}"
os.environ.setdefault("JAX_COMPILATION_CACHE_DIR", str(_JAX_CACHE))

import jax  # noqa: E402
import pytest  # noqa: E402


def pytest_unconfigure(config):
    if not os.environ.get("PYTEST_XDIST_WORKER"):
        shutil.rmtree(_JAX_CACHE, ignore_errors=True)


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
