"""Dense reference soft rasterizer: every pixel against every face, differentiated by autodiff.

This is the ground truth that the fast paths and their hand-written gradients are tested
against. It materialises ``[B, S*S, F]`` arrays, so it is only practical for small images and
meshes. It shares the per-(pixel, face) formulas with every other path
(:mod:`softjax.ops.pixel_face`) and aggregates over faces with plain reductions.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from softjax.ops.aggregate import terms_with_options
from softjax.ops.binning import TilingConfig
from softjax.ops.options import Scalars, StaticOptions
from softjax.ops.pixel_face import face_color, face_setup, pixel_centers


def rasterize_reference(
    face_vertices: jax.Array,
    textures: jax.Array,
    scalars: Scalars,
    opts: StaticOptions,
    cfg: TilingConfig | None = None,
) -> jax.Array:
    """Dense soft rasterization (the argument order of every backend's entry point).

    Args:
      face_vertices: ``[B, F, 3, 3]`` screen-space face vertices (float).
      textures: ``[B, F, T, 3]`` per-face textures (``T = R*R`` surface, ``3`` vertex).
      scalars: scalar options; opts: static options (see :mod:`softjax.ops.options`).
      cfg: ignored (the dense path does not tile).

    Returns:
      ``[B, S, S, 4]`` RGBA image, row 0 at the top.
    """
    s = opts.image_size
    bsz, nf = face_vertices.shape[:2]
    dtype = face_vertices.dtype
    xs, ys = pixel_centers(s, dtype)
    px = xs.reshape(1, -1, 1)  # [1, P, 1]
    py = ys.reshape(1, -1, 1)
    face = face_setup(face_vertices)
    face = jax.tree.map(lambda t: t[:, None], face)  # [B, 1, F, ...]
    terms = terms_with_options(px, py, face, opts, scalars)
    valid = terms.valid
    prob = terms.prob

    if opts.aggr_alpha == "prod":
        alpha = 1.0 - jnp.prod(jnp.where(valid, 1.0 - prob, 1.0), axis=-1)
    elif opts.aggr_alpha == "sum":
        alpha = jnp.sum(jnp.where(valid, prob, 0.0), axis=-1) / max(nf, 1)
    else:
        alpha = jnp.any(valid & (prob > 0.5), axis=-1).astype(dtype)

    colors = face_color(terms.w_clip, textures[:, None], opts.texture_type)  # [B, P, F, 3]
    bg = jnp.asarray(opts.background, dtype)
    if opts.aggr_rgb == "softmax":
        zg = terms.znorm_g
        eps_g = scalars.eps / scalars.gamma_val
        # the result does not depend on the shift zmax (it only prevents overflow)
        zmax = jax.lax.stop_gradient(
            jnp.maximum(jnp.max(jnp.where(terms.rgb_ok, zg, -jnp.inf), axis=-1), eps_g)
        )
        weight = jnp.where(
            terms.rgb_ok, prob * jnp.exp(jnp.where(terms.rgb_ok, zg - zmax[..., None], 0.0)), 0.0
        )
        w_bg = jnp.exp(eps_g - zmax)
        num = jnp.sum(weight[..., None] * colors, axis=-2) + w_bg[..., None] * bg
        rgb = num / (jnp.sum(weight, axis=-1) + w_bg)[..., None]
    else:
        cand = terms.rgb_ok & terms.inside
        depth = jnp.where(cand, terms.depth, jnp.inf)
        best = jnp.argmin(depth, axis=-1)
        chosen = jnp.take_along_axis(colors, best[..., None, None], axis=-2)[..., 0, :]
        rgb = jnp.where(jnp.any(cand, axis=-1)[..., None], chosen, bg)

    out = jnp.concatenate([rgb, alpha[..., None]], axis=-1)
    return out.reshape(bsz, s, s, 4)
