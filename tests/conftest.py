"""Fixtures shared by the tests: float64 mode and the tiny synthetic dataset of a run (plain
helpers are in ``helpers.py``)."""

from __future__ import annotations

import fcntl
import os

# No persistent compilation cache here: with one shared by the test run, a worker crashed in
# JAX's cache write (a segmentation fault while serializing an executable, in a full run), so
# every test compiles afresh.
import jax
import pytest


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
