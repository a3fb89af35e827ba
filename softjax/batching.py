"""Running a jitted function over many rows in chunks of one fixed size (one compilation)."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from typing import Any

import jax
import numpy as np


def map_padded(
    fn: Callable[..., Any],
    arrays: Sequence[Any],
    batch_size: int,
    progress: Callable[[Iterable[int]], Iterable[int]] | None = None,
) -> list[Any]:
    """``fn`` applied to consecutive chunks of ``batch_size`` rows of ``arrays`` (all ``[N, ...]``).

    The last chunk is padded to ``batch_size`` rows by repeating its last row, so a jitted
    ``fn`` compiles once for every chunk; the padded rows' results are dropped.

    Args:
      fn: takes one ``[batch_size, ...]`` chunk of each of ``arrays``; returns a pytree of
        ``[batch_size, ...]`` arrays (or ``None`` leaves).
      arrays: NumPy or JAX arrays with the same leading size ``N``.
      batch_size: rows per call (> 0).
      progress: wraps the iterable of chunk starts (e.g. a ``tqdm`` progress bar); ``None``:
        none.

    Returns:
      one output per chunk: ``fn``'s pytree as NumPy arrays cut to the chunk's real rows
      (``None`` leaves stay ``None``); ``[]`` when ``N == 0``.
    """
    starts: Iterable[int] = range(0, arrays[0].shape[0], batch_size)
    outputs = []
    for start in progress(starts) if progress else starts:
        chunk = [np.asarray(a[start : start + batch_size]) for a in arrays]
        n = chunk[0].shape[0]
        if n < batch_size:
            chunk = [np.concatenate([c, np.repeat(c[-1:], batch_size - n, 0)]) for c in chunk]
        outputs.append(jax.tree.map(lambda x, n=n: np.asarray(x)[:n], fn(*chunk)))
    return outputs
