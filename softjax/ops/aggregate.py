"""Aggregation over faces, written once for both streamed backends: the per-pixel online state,
its update by one window of faces, the final RGBA, and the backward's linear surrogate.

``docs/pipeline.md`` describes where these run; ``docs/gradients.md`` derives the state, the
surrogate and its constants. Colours are tuples of 3 channel arrays (no trailing axis of 3,
which Triton blocks cannot hold); per-pixel arrays are ``[..., P]`` and pair arrays
(:class:`~softjax.ops.pixel_face.PairTerms`) ``[..., P, K]``.
"""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp

from softjax.ops.options import Scalars, StaticOptions
from softjax.ops.pixel_face import PairTerms, pair_terms


class AggState(NamedTuple):
    """Per-pixel state of the online aggregation; the fields a mode does not use are ``None``.

    Fields are in alphabetical order, so that the state flattens (e.g. as a loop carry) in the
    same order as the string-keyed dict it replaced.
    """

    acc: tuple[jax.Array, ...] | None = None  # softmax: weighted colours, relative to e^zmax
    ahard: jax.Array | None = None  # alpha 'hard': 0/1, "some D > 0.5"
    asum: jax.Array | None = None  # alpha 'sum': running sum of D
    fbest: jax.Array | None = None  # rgb 'hard': int32 flattened id of the nearest face (-1)
    log1m: jax.Array | None = None  # alpha 'prod': running sum of log(1 - D)
    rgb: tuple[jax.Array, ...] | None = None  # rgb 'hard': colour of the nearest face
    wsum: jax.Array | None = None  # softmax: sum of the weights, relative to e^zmax
    zbest: jax.Array | None = None  # rgb 'hard': depth of the nearest face
    zmax: jax.Array | None = None  # softmax: running maximum of the scaled depths


class BackwardConsts(NamedTuple):
    """Per-pixel constants of the backward surrogate (``None`` where a mode has none)."""

    c_rgb: tuple[jax.Array, ...] | None = None  # softmax: g_c / wsum
    c_w: jax.Array | None = None  # softmax: -sum_c g_c out_c / wsum
    zmax: jax.Array | None = None  # softmax: the forward's final zmax
    g_rgb: tuple[jax.Array, ...] | None = None  # rgb 'hard': the colour cotangents
    fbest: jax.Array | None = None  # rgb 'hard': the forward's nearest face
    c_a: jax.Array | None = None  # smooth alpha 'prod' / 'sum': the alpha weight


def terms_with_options(px, py, face, opts: StaticOptions, scalars: Scalars) -> PairTerms:
    """:func:`softjax.ops.pixel_face.pair_terms` with the options of a ``soft_rasterize`` call.

    Args:
      px, py: pixel centres broadcasting against the face axis, e.g. ``[..., P, 1]``.
      face: :class:`~softjax.ops.pixel_face.FaceData` shaped as ``pair_terms`` takes it.
      opts: static options; scalars: the traced scalar options.

    Returns:
      :class:`~softjax.ops.pixel_face.PairTerms`, ``[..., P, K]``.
    """
    return pair_terms(
        px,
        py,
        face,
        dist_func=opts.dist_func,
        sigma_val=scalars.sigma_val,
        dist_eps=scalars.dist_eps,
        gamma_val=scalars.gamma_val,
        near=scalars.near,
        far=scalars.far,
        fill_back=scalars.fill_back,
    )


def mask_terms(terms: PairTerms, present) -> PairTerms:
    """Drops pairs whose face slot is empty (``present`` False, broadcasts to ``[.., P, K]``)."""
    return terms._replace(
        valid=terms.valid & present,
        rgb_ok=terms.rgb_ok & present,
        znorm_g=jnp.where(present, terms.znorm_g, 0.0),
    )


def init_state(shape, opts: StaticOptions, scalars: Scalars, dtype) -> AggState:
    """The per-pixel state before any face.

    Args:
      shape: the pixels' shape; opts, scalars: the call's options; dtype: float dtype.

    Returns:
      :class:`AggState` of arrays of ``shape`` (``fbest`` int32).
    """
    bg = tuple(jnp.full(shape, opts.background[c], dtype) for c in range(3))
    st = empty_state(shape, opts, dtype)
    if opts.aggr_rgb == "softmax":
        # the background is the first candidate: weight 1 at the shift eps / gamma_val
        zmax = jnp.full(shape, scalars.eps / scalars.gamma_val, dtype)
        return st._replace(zmax=zmax, wsum=jnp.ones(shape, dtype), acc=bg)
    return st._replace(rgb=bg)


def empty_state(shape, opts: StaticOptions, dtype) -> AggState:
    """The state of no face (no background either): what :func:`window_state` gives a window
    without faces, and what :func:`combine` and :func:`fold_rows` leave unchanged.

    Args:
      shape: the pixels' shape; opts: the call's options; dtype: float dtype.
    """
    zeros = jnp.zeros(shape, dtype)
    st = {}
    if opts.aggr_alpha == "prod":
        st["log1m"] = zeros
    elif opts.aggr_alpha == "sum":
        st["asum"] = zeros
    else:
        st["ahard"] = zeros
    if opts.aggr_rgb == "softmax":
        st["zmax"] = jnp.full(shape, -jnp.inf, dtype)
        st["wsum"] = zeros
        st["acc"] = (zeros, zeros, zeros)
    else:
        st["zbest"] = jnp.full(shape, jnp.inf, dtype)
        st["fbest"] = jnp.full(shape, -1, jnp.int32)
        st["rgb"] = (zeros, zeros, zeros)
    return AggState(**st)


def window_state(t: PairTerms, colors: tuple, fid, opts: StaticOptions) -> AggState:
    """The state of one window of faces on its own (as if no face came before it).

    Args:
      t: masked pair terms ``[..., P, K]``.
      colors: 3 arrays ``[..., P, K]``, the faces' colours at the pixels.
      fid: ``[..., 1, K]`` int32 flattened face ids (any value where the slot is empty).
      opts: static options.

    Returns:
      :class:`AggState` of ``[..., P]`` arrays: the softmax sums relative to the window's own
      ``zmax`` (``-inf`` where no face takes part), the hard colour of its nearest face (depth
      ``inf`` where none).
    """
    new = {}
    if opts.aggr_alpha == "prod":
        new["log1m"] = jnp.sum(jnp.where(t.valid, t.log1m_prob, 0.0), -1)
    elif opts.aggr_alpha == "sum":
        new["asum"] = jnp.sum(jnp.where(t.valid, t.prob, 0.0), -1)
    else:
        hit = jnp.max(jnp.where(t.valid & (t.prob > 0.5), 1.0, 0.0), -1)
        new["ahard"] = hit.astype(t.prob.dtype)
    if opts.aggr_rgb == "softmax":
        zmax = jnp.max(jnp.where(t.rgb_ok, t.znorm_g, -jnp.inf), -1)
        e = jnp.exp(jnp.where(t.rgb_ok, t.znorm_g - zmax[..., None], 0.0))
        w = jnp.where(t.rgb_ok, t.prob * e, 0.0)
        new["zmax"] = zmax
        new["wsum"] = jnp.sum(w, -1)
        new["acc"] = tuple(jnp.sum(w * colors[c], -1) for c in range(3))
    else:
        depth = jnp.where(t.rgb_ok & t.inside, t.depth, jnp.inf)
        dmin = jnp.min(depth, -1)
        # the first slot at the minimum (argmin without an arg-reduction, for Triton)
        k = jnp.arange(depth.shape[-1], dtype=jnp.int32)
        first = jnp.min(jnp.where(depth == dmin[..., None], k, depth.shape[-1]), -1)
        sel = k == first[..., None]
        new["zbest"] = dmin
        new["fbest"] = jnp.sum(jnp.where(sel, fid, 0), -1).astype(jnp.int32)
        new["rgb"] = tuple(jnp.sum(jnp.where(sel, colors[c], 0.0), -1) for c in range(3))
    return AggState(**new)


def combine(st: AggState, later: AggState, opts: StaticOptions) -> AggState:
    """The state of the faces of ``st`` followed by those of ``later`` (an associative merge:
    states of consecutive windows can be combined in any grouping, not only left to right).

    Args:
      st, later: states of ``[..., P]`` arrays (e.g. :func:`init_state` or
        :func:`window_state` results), the faces of ``later`` after those of ``st``; of two
        equally near faces the hard colour takes the one with the lower id.
      opts: static options.
    """
    new = {}
    if opts.aggr_alpha == "prod":
        new["log1m"] = st.log1m + later.log1m
    elif opts.aggr_alpha == "sum":
        new["asum"] = st.asum + later.asum
    else:
        new["ahard"] = jnp.maximum(st.ahard, later.ahard)
    if opts.aggr_rgb == "softmax":
        # rescale both sums to the larger maximum; two empty states stay empty (not NaN)
        zmax = jnp.maximum(st.zmax, later.zmax)
        shift = jnp.where(zmax == -jnp.inf, 0.0, zmax)
        s_a, s_b = jnp.exp(st.zmax - shift), jnp.exp(later.zmax - shift)
        new["zmax"] = zmax
        new["wsum"] = st.wsum * s_a + later.wsum * s_b
        new["acc"] = tuple(st.acc[c] * s_a + later.acc[c] * s_b for c in range(3))
    else:
        # the nearest face, and of equally near ones the first (lowest id): the reference's
        # order. Faces of `later` usually come after, but a coarse level of tiles
        # (streamed.prepare) folds its faces after all those of the fine level.
        tie = (later.zbest == st.zbest) & (later.fbest < st.fbest) & (later.zbest < jnp.inf)
        better = (later.zbest < st.zbest) | tie
        new["zbest"] = jnp.where(better, later.zbest, st.zbest)
        new["fbest"] = jnp.where(better, later.fbest, st.fbest)
        new["rgb"] = tuple(jnp.where(better, later.rgb[c], st.rgb[c]) for c in range(3))
    return AggState(**new)


def fold_rows(st: AggState, rows, parts: AggState, opts: StaticOptions) -> AggState:
    """Folds the states ``parts`` (arrays ``[G, P]``) into rows ``rows`` (``[G]`` int32) of
    ``st`` (arrays ``[R, P]``), several parts possibly into one row: the result of
    :func:`combine` over each row's parts, in any order, with a constant number of scatters
    (an associative scan over the parts took one level per doubling of ``G``).

    Of equally near faces the hard colour takes the lowest id, as :func:`combine`; the sums
    are added in another order (float rounding). Rows not in ``rows`` are unchanged.
    """
    new = {}
    if opts.aggr_alpha == "prod":
        new["log1m"] = st.log1m.at[rows].add(parts.log1m)
    elif opts.aggr_alpha == "sum":
        new["asum"] = st.asum.at[rows].add(parts.asum)
    else:
        new["ahard"] = st.ahard.at[rows].max(parts.ahard)
    if opts.aggr_rgb == "softmax":
        zmax = st.zmax.at[rows].max(parts.zmax)
        z = zmax[rows]
        shift = jnp.where(z == -jnp.inf, 0.0, z)
        s_old = jnp.exp(st.zmax[rows] - shift)
        s_new = jnp.exp(parts.zmax - shift)

        def fold(total, part):  # rescale the row once (repeated rows write equal values), add
            return total.at[rows].set(total[rows] * s_old).at[rows].add(part * s_new)

        new["zmax"] = zmax
        new["wsum"] = fold(st.wsum, parts.wsum)
        new["acc"] = tuple(fold(st.acc[c], parts.acc[c]) for c in range(3))
    else:
        zbest = st.zbest.at[rows].min(parts.zbest)
        z = zbest[rows]
        # the nearest face's id: the row's own if it is still the nearest, else the lowest of
        # the parts' as near (never a part without faces: its depth is inf)
        none = jnp.iinfo(jnp.int32).max
        kept = jnp.where(st.zbest[rows] == z, st.fbest[rows], none)
        cand = jnp.where((parts.zbest == z) & (z < jnp.inf), parts.fbest, none)
        fbest = st.fbest.at[rows].set(kept).at[rows].min(cand)
        # the colour of the one part holding that face, if any (else the row keeps its own)
        won = (cand == fbest[rows]) & (cand != none)
        dst = jnp.where(won, rows[:, None], st.zbest.shape[0])  # out of range: dropped
        pix = jnp.arange(z.shape[-1])[None, :]
        new["zbest"] = zbest
        new["fbest"] = fbest
        new["rgb"] = tuple(st.rgb[c].at[dst, pix].set(parts.rgb[c], mode="drop") for c in range(3))
    return AggState(**new)


def update_state(st: AggState, t: PairTerms, colors: tuple, fid, opts: StaticOptions) -> AggState:
    """Folds one window of faces into the state: ``combine(st, window_state(...))``.

    Args:
      st: the state, arrays ``[..., P]``.
      t, colors, fid, opts: as for :func:`window_state`.

    Returns:
      the new :class:`AggState`.
    """
    return combine(st, window_state(t, colors, fid, opts), opts)


def finalize(st: AggState, opts: StaticOptions, faces_per_image) -> tuple:
    """RGBA (4 arrays shaped like the pixels) from the final state; ``faces_per_image`` (the
    alpha ``'sum'`` divisor) is an int or an array broadcasting against the pixels."""
    if opts.aggr_alpha == "prod":
        alpha = -jnp.expm1(st.log1m)
    elif opts.aggr_alpha == "sum":
        alpha = st.asum / faces_per_image
    else:
        alpha = st.ahard
    if opts.aggr_rgb == "softmax":
        inv = 1.0 / st.wsum
        rgb = tuple(st.acc[c] * inv for c in range(3))
    else:
        rgb = st.rgb
    return tuple(rgb) + (alpha,)


def saved_state(st: AggState) -> AggState:
    """The part of the final state the backward needs (``log1m``, ``zmax``, ``wsum``,
    ``fbest``, those the mode has); the RGBA output is saved next to it."""
    return AggState(log1m=st.log1m, zmax=st.zmax, wsum=st.wsum, fbest=st.fbest)


def backward_consts(
    saved: AggState, out, g, opts: StaticOptions, faces_per_image
) -> BackwardConsts:
    """Per-pixel constants of the backward surrogate.

    Args:
      saved: :func:`saved_state` of the forward, arrays ``[..., P]``.
      out: forward RGBA, ``[..., P, 4]``; g: cotangent of the RGBA, ``[..., P, 4]``.
      opts: static options; faces_per_image: F (alpha 'sum' divides by it; an int, or per
        image of a padded batch an array broadcasting against the pixels).

    Returns:
      :class:`BackwardConsts` of ``[..., P]`` arrays.
    """
    consts = {}
    if opts.aggr_rgb == "softmax":
        inv = 1.0 / saved.wsum
        consts["c_rgb"] = tuple(g[..., c] * inv for c in range(3))
        # a sum over the 3 channels written out: as a reduction of a minor axis of 3 it
        # became a library (YNNPACK) fusion on the CPU that cost 0.2-0.3 ms at 64^2
        dot = g[..., 0] * out[..., 0] + g[..., 1] * out[..., 1] + g[..., 2] * out[..., 2]
        consts["c_w"] = -dot * inv
        consts["zmax"] = saved.zmax
    else:
        consts["g_rgb"] = tuple(g[..., c] for c in range(3))
        consts["fbest"] = saved.fbest
    if opts.dist_func != "hard":
        if opts.aggr_alpha == "prod":
            consts["c_a"] = -g[..., 3] * jnp.exp(saved.log1m)
        elif opts.aggr_alpha == "sum":
            consts["c_a"] = g[..., 3] / faces_per_image
    return BackwardConsts(**consts)


def surrogate_total(t: PairTerms, colors: tuple, c: BackwardConsts, fid, opts: StaticOptions):
    """The window's linear surrogate (a scalar); its gradient with respect to the window's face
    data is the window's share of the loss gradient.

    Args:
      t: masked pair terms ``[..., P, K]``; colors: 3 arrays ``[..., P, K]``.
      c: :func:`backward_consts` of each pair's pixel, broadcasting against the terms:
        ``[..., P, 1]`` when a window's faces share one tile, ``[..., P, K]`` when each slot
        has its own.
      fid: ``[..., 1, K]`` int32 face ids, negative for empty slots.
      opts: static options.
    """
    total = 0.0
    if opts.aggr_rgb == "softmax":
        e = jnp.exp(jnp.where(t.rgb_ok, t.znorm_g - c.zmax, 0.0))
        w = jnp.where(t.rgb_ok, t.prob * e, 0.0)
        lin = c.c_w + c.c_rgb[0] * colors[0] + c.c_rgb[1] * colors[1] + c.c_rgb[2] * colors[2]
        total = total + jnp.sum(w * lin)
    else:
        hit = (fid == c.fbest) & (fid >= 0)
        lin = c.g_rgb[0] * colors[0] + c.g_rgb[1] * colors[1] + c.g_rgb[2] * colors[2]
        total = total + jnp.sum(jnp.where(hit, lin, 0.0))
    if c.c_a is not None:
        val = t.log1m_prob if opts.aggr_alpha == "prod" else t.prob
        total = total + jnp.sum(jnp.where(t.valid, val, 0.0) * c.c_a)
    return total


def scalar_grads(
    g_sc, consts: BackwardConsts, scalars: Scalars, opts: StaticOptions, dtype
) -> Scalars:
    """Gradients of the traced scalars.

    Args:
      g_sc: the faces' share, ``(sigma_val, gamma_val, near, far)`` summed over all windows.
      consts: :func:`backward_consts` of every pixel; scalars: the call's scalars.
      opts: static options; dtype: float dtype.

    Returns:
      :class:`Scalars` of gradients: the faces' share plus the background weight's share
      (``eps``, ``gamma_val``); zero for ``dist_eps`` and ``fill_back``.
    """
    g_sigma, g_gamma, g_near, g_far = g_sc
    g_eps = jnp.zeros((), dtype)
    if opts.aggr_rgb == "softmax":
        # background weight exp(eps / gamma_val - zmax) (zmax held constant: the result is
        # invariant to it)
        bg = opts.background
        k_bg = consts.c_w + sum(consts.c_rgb[c] * bg[c] for c in range(3))

        def bg_term(eps, gamma_val):
            return jnp.sum(k_bg * jnp.exp(eps / gamma_val - consts.zmax))

        d_eps, d_gamma = jax.grad(bg_term, argnums=(0, 1))(scalars.eps, scalars.gamma_val)
        g_eps = g_eps + d_eps
        g_gamma = g_gamma + d_gamma
    return Scalars(
        sigma_val=g_sigma,
        gamma_val=g_gamma,
        near=g_near,
        far=g_far,
        eps=g_eps,
        dist_eps=jnp.zeros((), dtype),
        fill_back=jnp.zeros_like(scalars.fill_back),
    )
