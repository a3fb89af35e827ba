"""Dense reference soft rasterizer: every pixel against every face, differentiated by autodiff.

This is the ground truth that the fast paths and their hand-written gradients are tested
against. It materialises ``[B, S*S, F]`` arrays, so it is only practical for small images and
meshes. It shares the per-(pixel, face) formulas with every other path
(:mod:`softjax.ops.pixel_face`) and aggregates over faces with plain reductions.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from softjax.ops.aggregate import mask_terms, terms_with_options
from softjax.ops.binning import TilingConfig
from softjax.ops.options import Scalars, StaticOptions, UVTexture
from softjax.ops.pixel_face import (
    FaceData,
    PairTerms,
    face_color,
    face_setup,
    pixel_centers,
    uv_color,
)


def rasterize_reference(
    face_vertices: jax.Array,
    textures: jax.Array,
    scalars: Scalars,
    opts: StaticOptions,
    cfg: TilingConfig | None = None,
    face_counts: jax.Array | None = None,
) -> jax.Array:
    """Dense soft rasterization (the argument order of every backend's entry point).

    Args:
      face_vertices: ``[B, F, 3, 3]`` screen-space face vertices (float).
      textures: ``[B, F, T, 3]`` per-face textures (``T = R*R`` surface, ``3`` vertex), or
        for ``texture_type='uv'`` a :class:`~softjax.ops.options.UVTexture` (image
        ``[B, H, W, 3]``, face_uvs ``[B, F, 3, 2]``, face_tint ``[B, F, 3]``).
      scalars: scalar options; opts: static options (see :mod:`softjax.ops.options`).
      cfg: ignored (the dense path does not tile).
      face_counts: ``None`` or ``[B]`` int32 real faces per image (the rest is padding).

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
    divisor = max(nf, 1)
    if face_counts is not None:  # padding faces take no part
        terms = mask_terms(terms, (jnp.arange(nf) < face_counts[:, None])[:, None, :])
        divisor = jnp.maximum(face_counts, 1).astype(dtype)[:, None]
    valid = terms.valid
    prob = terms.prob

    if opts.aggr_alpha == "prod":
        alpha = 1.0 - jnp.prod(jnp.where(valid, 1.0 - prob, 1.0), axis=-1)
    elif opts.aggr_alpha == "sum":
        alpha = jnp.sum(jnp.where(valid, prob, 0.0), axis=-1) / divisor
    else:
        alpha = jnp.any(valid & (prob > 0.5), axis=-1).astype(dtype)

    if opts.texture_type == "uv":
        colors = _uv_colors(terms, face, textures, opts)
    else:
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


def _uv_colors(terms: PairTerms, face: FaceData, tex: UVTexture, opts: StaticOptions):
    """``[B, P, F, 3]`` colours of UV-textured faces (``face`` fields ``[B, 1, F, 3]``); the
    image is read with a gather, whose autodiff transpose scatters the image's gradient."""
    image = tex.image
    bidx = jnp.arange(image.shape[0])[:, None, None]  # [B, 1, 1]: the pair's image

    def fetch(tap, rows, cols):
        texel = image[bidx, rows, cols]  # [B, P, F, 3]
        return tuple(texel[..., c] for c in range(3))

    uvs = tex.face_uvs[:, None]  # [B, 1, F, 3, 2]
    colors, _ = uv_color(
        terms.w_clip,
        face.inv_z,
        terms.depth,
        (uvs[..., 0], uvs[..., 1]),
        tex.face_tint[:, None],
        fetch,
        image.shape[1:3],
        opts.uv_wrap,
    )
    return jnp.stack(colors, -1)
