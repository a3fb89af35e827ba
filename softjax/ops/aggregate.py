"""Online aggregation over faces and its backward surrogate, shared by the tiled XLA path and the
Pallas kernels.

Both fast paths stream the faces that can reach a set of pixels in *windows* of ``K`` faces.
Per pixel they keep a small state (a dict of arrays shaped like the pixels, ``[..., P]``):

* alpha: ``log1m`` = running ``sum log(1 - D)`` (``prod``), ``asum`` = running ``sum D``
  (``sum``) or ``ahard`` = 0/1 "some D > 0.5" (``hard``);
* colour, ``softmax``: running maximum ``zmax`` of the scaled depths (starting at the
  background's ``eps / gamma``), ``wsum`` = sum of weights, ``acc0..2`` = weighted colours,
  all relative to ``exp(zmax)`` (online softmax: no overflow for tiny gamma);
* colour, ``hard``: depth ``zbest``, flattened face id ``fbest`` (-1: none) and colour
  ``rgb0..2`` of the nearest candidate.

Colours are tuples of 3 channel arrays (no trailing axis of 3, which Triton blocks cannot hold).
Pair arrays (:class:`~softjax.ops.pixel_face.PairTerms`) are ``[..., P, K]``.

The backward pass recomputes each window's pair terms and differentiates, with respect to the
window's face data only, the linear surrogate :func:`surrogate_total` built from the saved
per-pixel aggregates (:func:`backward_consts`); its gradient is exactly the window's share of
the gradient of the loss.
"""

from __future__ import annotations

import functools
from collections.abc import Callable

import jax
import jax.numpy as jnp

from softjax.ops.options import Scalars, StaticOptions
from softjax.ops.pixel_face import PairTerms

SAVED_KEYS = ("log1m", "zmax", "wsum", "fbest")


def mask_terms(terms: PairTerms, present) -> PairTerms:
    """Drops pairs whose face slot is empty (``present`` False, broadcasts to ``[.., P, K]``)."""
    return terms._replace(
        valid=terms.valid & present,
        rgb_ok=terms.rgb_ok & present,
        znorm_g=jnp.where(present, terms.znorm_g, 0.0),
    )


def init_state(shape, opts: StaticOptions, sc: Scalars, dtype) -> dict[str, jax.Array]:
    """The per-pixel state before any face, arrays of ``shape`` (``fbest`` int32)."""
    st = {}
    if opts.aggr_alpha == "prod":
        st["log1m"] = jnp.zeros(shape, dtype)
    elif opts.aggr_alpha == "sum":
        st["asum"] = jnp.zeros(shape, dtype)
    else:
        st["ahard"] = jnp.zeros(shape, dtype)
    if opts.aggr_rgb == "softmax":
        st["zmax"] = jnp.full(shape, sc.eps / sc.gamma, dtype)
        st["wsum"] = jnp.ones(shape, dtype)
        for c in range(3):
            st[f"acc{c}"] = jnp.full(shape, opts.background[c], dtype)
    else:
        st["zbest"] = jnp.full(shape, jnp.inf, dtype)
        st["fbest"] = jnp.full(shape, -1, jnp.int32)
        for c in range(3):
            st[f"rgb{c}"] = jnp.full(shape, opts.background[c], dtype)
    return st


def update_state(st: dict, t: PairTerms, colors: tuple, fid, opts: StaticOptions) -> dict:
    """Folds one window of faces into the state.

    Args:
      st: state dict, arrays ``[..., P]``.
      t: masked pair terms ``[..., P, K]``; colors: 3 arrays ``[..., P, K]``.
      fid: ``[..., 1, K]`` int32 flattened face ids (any value where the slot is empty).
    """
    new = {}
    if opts.aggr_alpha == "prod":
        new["log1m"] = st["log1m"] + jnp.sum(jnp.where(t.valid, t.log1m_prob, 0.0), -1)
    elif opts.aggr_alpha == "sum":
        new["asum"] = st["asum"] + jnp.sum(jnp.where(t.valid, t.prob, 0.0), -1)
    else:
        hit = jnp.max(jnp.where(t.valid & (t.prob > 0.5), 1.0, 0.0), -1)
        new["ahard"] = jnp.maximum(st["ahard"], hit.astype(st["ahard"].dtype))
    if opts.aggr_rgb == "softmax":
        zmax = jnp.maximum(st["zmax"], jnp.max(jnp.where(t.rgb_ok, t.znorm_g, -jnp.inf), -1))
        scale = jnp.exp(st["zmax"] - zmax)
        e = jnp.exp(jnp.where(t.rgb_ok, t.znorm_g - zmax[..., None], 0.0))
        w = jnp.where(t.rgb_ok, t.prob * e, 0.0)
        new["zmax"] = zmax
        new["wsum"] = st["wsum"] * scale + jnp.sum(w, -1)
        for c in range(3):
            new[f"acc{c}"] = st[f"acc{c}"] * scale + jnp.sum(w * colors[c], -1)
    else:
        depth = jnp.where(t.rgb_ok & t.inside, t.depth, jnp.inf)
        dmin = jnp.min(depth, -1)
        # the first slot at the minimum (argmin without an arg-reduction, for Triton)
        k = jnp.arange(depth.shape[-1], dtype=jnp.int32)
        first = jnp.min(jnp.where(depth == dmin[..., None], k, depth.shape[-1]), -1)
        sel = k == first[..., None]
        better = dmin < st["zbest"]
        new["zbest"] = jnp.where(better, dmin, st["zbest"])
        fsel = jnp.sum(jnp.where(sel, fid, 0), -1).astype(jnp.int32)
        new["fbest"] = jnp.where(better, fsel, st["fbest"])
        for c in range(3):
            col = jnp.sum(jnp.where(sel, colors[c], 0.0), -1)
            new[f"rgb{c}"] = jnp.where(better, col, st[f"rgb{c}"])
    return new


def finalize(st: dict, opts: StaticOptions, faces_per_image: int) -> tuple:
    """RGBA (4 arrays shaped like the pixels) from the final state."""
    if opts.aggr_alpha == "prod":
        alpha = -jnp.expm1(st["log1m"])
    elif opts.aggr_alpha == "sum":
        alpha = st["asum"] / faces_per_image
    else:
        alpha = st["ahard"]
    if opts.aggr_rgb == "softmax":
        inv = 1.0 / st["wsum"]
        rgb = tuple(st[f"acc{c}"] * inv for c in range(3))
    else:
        rgb = tuple(st[f"rgb{c}"] for c in range(3))
    return rgb + (alpha,)


def backward_consts(saved: dict, out, g, opts: StaticOptions, faces_per_image: int) -> dict:
    """Per-pixel constants of the backward surrogate.

    Args:
      saved: the forward's state entries named in :data:`SAVED_KEYS` (those present).
      out: forward RGBA, ``[..., P, 4]``; g: cotangent of the RGBA, ``[..., P, 4]``.

    Returns:
      dict of ``[..., P]`` arrays: ``c_rgb0..2``, ``c_w``, ``zmax`` (softmax) or ``g_rgb0..2``,
      ``fbest`` (hard); ``c_a`` for the smooth alpha modes.
    """
    consts = {}
    if opts.aggr_rgb == "softmax":
        inv = 1.0 / saved["wsum"]
        for c in range(3):
            consts[f"c_rgb{c}"] = g[..., c] * inv
        consts["c_w"] = -jnp.sum(g[..., :3] * out[..., :3], -1) * inv
        consts["zmax"] = saved["zmax"]
    else:
        for c in range(3):
            consts[f"g_rgb{c}"] = g[..., c]
        consts["fbest"] = saved["fbest"]
    if opts.dist_func != "hard":
        if opts.aggr_alpha == "prod":
            consts["c_a"] = -g[..., 3] * jnp.exp(saved["log1m"])
        elif opts.aggr_alpha == "sum":
            consts["c_a"] = g[..., 3] / faces_per_image
    return consts


def surrogate_total(t: PairTerms, colors: tuple, c: dict, fid, opts: StaticOptions):
    """The window's linear surrogate (a scalar); its gradient with respect to the window's face
    data is the window's share of the loss gradient.

    Args:
      t: masked pair terms ``[..., P, K]``; colors: 3 arrays ``[..., P, K]``.
      c: :func:`backward_consts` entries for these pixels, ``[..., P]``.
      fid: ``[..., 1, K]`` int32 face ids, negative for empty slots.
    """
    total = 0.0
    if opts.aggr_rgb == "softmax":
        e = jnp.exp(jnp.where(t.rgb_ok, t.znorm_g - c["zmax"][..., None], 0.0))
        w = jnp.where(t.rgb_ok, t.prob * e, 0.0)
        lin = c["c_w"][..., None] + c["c_rgb0"][..., None] * colors[0]
        lin = lin + c["c_rgb1"][..., None] * colors[1] + c["c_rgb2"][..., None] * colors[2]
        total = total + jnp.sum(w * lin)
    else:
        hit = (fid == c["fbest"][..., None]) & (fid >= 0)
        lin = c["g_rgb0"][..., None] * colors[0] + c["g_rgb1"][..., None] * colors[1]
        lin = lin + c["g_rgb2"][..., None] * colors[2]
        total = total + jnp.sum(jnp.where(hit, lin, 0.0))
    if "c_a" in c:
        val = t.log1m_prob if opts.aggr_alpha == "prod" else t.prob
        total = total + jnp.sum(jnp.where(t.valid, val, 0.0) * c["c_a"][..., None])
    return total


def scalar_grads(g_sc, consts: dict, sc: Scalars, opts: StaticOptions, dtype) -> Scalars:
    """Gradients of the traced scalars: the faces' share ``g_sc`` = (sigma, gamma, near, far)
    summed over all windows, plus the background weight's share (eps, gamma)."""
    g_sigma, g_gamma, g_near, g_far = g_sc
    g_eps = jnp.zeros((), dtype)
    if opts.aggr_rgb == "softmax":
        # background weight exp(eps / gamma - zmax) (zmax held constant: the result is
        # invariant to it)
        bg = opts.background
        k_bg = consts["c_w"] + sum(consts[f"c_rgb{c}"] * bg[c] for c in range(3))

        def bg_term(eps, gamma):
            return jnp.sum(k_bg * jnp.exp(eps / gamma - consts["zmax"]))

        d_eps, d_gamma = jax.grad(bg_term, argnums=(0, 1))(sc.eps, sc.gamma)
        g_eps = g_eps + d_eps
        g_gamma = g_gamma + d_gamma
    return Scalars(
        sigma=g_sigma,
        gamma=g_gamma,
        near=g_near,
        far=g_far,
        eps=g_eps,
        dist_eps=jnp.zeros((), dtype),
        fill_back=jnp.zeros_like(sc.fill_back),
    )


def streamed_vjp(forward: Callable, backward: Callable, doc: str) -> Callable:
    """The ``custom_vjp`` op of a streamed implementation (the XLA path, the Pallas kernels).

    ``forward(face_vertices, textures, sc, opts, cfg) -> (image, saved)`` computes the image and
    the per-pixel aggregates; ``backward(face_vertices, textures, sc, opts, cfg, saved, g)``
    returns the cotangents of ``(face_vertices, textures, sc)``. ``opts`` and ``cfg`` are static.
    """

    @functools.partial(jax.custom_vjp, nondiff_argnums=(3, 4))
    def op(face_vertices, textures, sc: Scalars, opts: StaticOptions, cfg):
        return forward(face_vertices, textures, sc, opts, cfg)[0]

    def fwd(face_vertices, textures, sc, opts, cfg):
        image, saved = forward(face_vertices, textures, sc, opts, cfg)
        return image, (face_vertices, textures, sc, saved)

    def bwd(opts, cfg, res, g):
        face_vertices, textures, sc, saved = res
        return backward(face_vertices, textures, sc, opts, cfg, saved, g)

    op.defvjp(fwd, bwd)
    op.__doc__ = doc
    return op
