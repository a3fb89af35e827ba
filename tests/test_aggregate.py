"""The online aggregation's merges: ``fold_rows`` (many parts into rows at once) against
``combine`` applied part after part."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from softjax.ops import aggregate
from softjax.ops.options import Scalars, StaticOptions

ROWS, PARTS, PIXELS = 5, 12, 6


def _parts(rng, opts: StaticOptions, n: int) -> aggregate.AggState:
    """``n`` random window states of ``PIXELS`` pixels, some without any face."""
    shape = (n, PIXELS)
    empty = rng.uniform(size=shape) < 0.25
    st = {}
    if opts.aggr_alpha == "prod":
        st["log1m"] = np.where(empty, 0.0, -rng.uniform(0, 2, shape))
    elif opts.aggr_alpha == "sum":
        st["asum"] = np.where(empty, 0.0, rng.uniform(0, 2, shape))
    else:
        st["ahard"] = np.where(empty, 0.0, rng.integers(0, 2, shape).astype(float))
    if opts.aggr_rgb == "softmax":
        st["zmax"] = np.where(empty, -np.inf, rng.uniform(-3, 3, shape))
        st["wsum"] = np.where(empty, 0.0, rng.uniform(0.1, 2, shape))
        st["acc"] = tuple(np.where(empty, 0.0, rng.uniform(0, 2, shape)) for _ in range(3))
    else:
        # few distinct depths: ties between parts and with the rows' own faces
        st["zbest"] = np.where(empty, np.inf, rng.integers(1, 4, shape).astype(float))
        # unique ids per pixel (a face is in one part of a row); an empty part's id is junk
        st["fbest"] = np.argsort(rng.uniform(size=shape), axis=0).astype(np.int32) + 10
        st["rgb"] = tuple(rng.uniform(0, 1, shape) for _ in range(3))
    return aggregate.AggState(**jax.tree.map(jnp.asarray, st))


def _rows_state(rng, opts: StaticOptions) -> aggregate.AggState:
    """Rows that already hold faces: softmax maxima below and above the parts', hard depths
    tying with theirs (ids below the parts')."""
    st = aggregate.init_state((ROWS, PIXELS), opts, _scalars(), jnp.float32)
    shape = (ROWS, PIXELS)
    if opts.aggr_rgb == "softmax":
        return st._replace(
            zmax=jnp.asarray(rng.uniform(-4, 4, shape), jnp.float32),
            wsum=jnp.asarray(rng.uniform(0.5, 2, shape), jnp.float32),
        )
    held = rng.uniform(size=shape) < 0.5
    return st._replace(
        zbest=jnp.where(held, rng.integers(1, 4, shape).astype(np.float32), np.inf),
        fbest=jnp.where(held, rng.integers(0, 10, shape), -1).astype(jnp.int32),
    )


def _scalars() -> Scalars:
    f = jnp.float32
    return Scalars(f(1e-4), f(1e-4), f(1.0), f(100.0), f(1e-3), f(1e-4), f(0.0))


@pytest.mark.parametrize(
    "rgb, alpha", [("softmax", "prod"), ("softmax", "sum"), ("hard", "hard"), ("hard", "prod")]
)
def test_fold_rows_matches_combine_part_by_part(rgb, alpha):
    opts = StaticOptions(4, (0.1, 0.2, 0.3), "euclidean", rgb, alpha, "surface")
    rng = np.random.default_rng(0)
    rows = jnp.asarray(rng.integers(0, ROWS - 1, PARTS), jnp.int32)  # the last row: untouched
    st = _rows_state(rng, opts)
    parts = _parts(rng, opts, PARTS)
    got = aggregate.fold_rows(st, rows, parts, opts)

    want = st
    for g in range(PARTS):
        r = int(rows[g])
        row = jax.tree.map(lambda v, r=r: v[r], want)
        merged = aggregate.combine(row, jax.tree.map(lambda v, g=g: v[g], parts), opts)
        want = jax.tree.map(lambda v, m, r=r: v.at[r].set(m), want, merged)

    for name in aggregate.AggState._fields:
        w, o = getattr(want, name), getattr(got, name)
        if w is None:
            assert o is None, name
            continue
        for a, b in zip(jax.tree.leaves(w), jax.tree.leaves(o), strict=True):
            np.testing.assert_allclose(np.asarray(b), np.asarray(a), rtol=1e-5, err_msg=name)
    if rgb == "hard":  # ties occurred, so the id rule was exercised
        assert np.any(np.asarray(parts.zbest)[None] == np.asarray(st.zbest)[np.asarray(rows)])
