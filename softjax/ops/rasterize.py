"""The public ``soft_rasterize`` op: argument checking and backend dispatch (the whole flow:
``docs/pipeline.md``)."""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp

from softjax.concrete import concrete_value
from softjax.ops import binning, dispatch
from softjax.ops.binning import TilingConfig
from softjax.ops.options import UVTexture, check_face_counts, check_inputs
from softjax.ops.pallas_kernels import UV_OFFSET_LIMIT, rasterize_pallas, resolve_config
from softjax.ops.reference import rasterize_reference
from softjax.ops.xla_tiled import rasterize_tiled


def soft_rasterize(
    face_vertices,
    textures,
    *,
    image_size: int = 256,
    background_color=(0.0, 0.0, 0.0),
    near=1.0,
    far=100.0,
    fill_back=True,
    eps=1e-3,
    sigma_val=1e-5,
    dist_func: str = "euclidean",
    dist_eps=1e-4,
    gamma_val=1e-4,
    aggr_func_rgb: str = "softmax",
    aggr_func_alpha: str = "prod",
    texture_type: str = "surface",
    face_uvs=None,
    face_tint=None,
    uv_wrap: str = "repeat",
    face_counts=None,
    backend: str | None = None,
    tiling: TilingConfig | None = None,
    pallas_config: TilingConfig | None = None,
) -> jax.Array:
    """Soft-rasterizes screen-space triangles into RGBA images (SoftRas semantics).

    Args:
      face_vertices: ``[B, F, 3, 3]`` float. Corner k of face f is ``face_vertices[b, f, k]`` =
        (x, y, z): x right and y **up** in normalised device coordinates ([-1, 1] spans the
        image), z the camera-space depth (positive in front of the camera). A face is
        front-facing when it is clockwise on screen.
      textures: ``[B, F, R*R, 3]`` float for ``texture_type='surface'`` (R texels a side per
        face), ``[B, F, 3, 3]`` for ``'vertex'`` (an RGB colour per corner), or for ``'uv'``
        one RGB texture image per mesh, ``[B, H, W, 3]``: row 0 is the top of the image
        (``v = 1``), column 0 its left edge (``u = 0``); texel centres at
        ``u = (j + 0.5) / W``, ``v = 1 - (i + 0.5) / H``.
      image_size: S, the output is S x S pixels; pixel (row r, column c) has its centre at
        ``x = (2c + 1 - S) / S``, ``y = (S - 1 - 2r) / S`` (row 0 is the top row).
      background_color: RGB of the background (static).
      near, far: depth range of faces that contribute colour (faces outside still contribute
        alpha). May be traced scalars.
      fill_back: when true both windings count as front-facing. May be a traced bool.
      eps: background depth offset of the softmax colour aggregation. May be traced.
      sigma_val: sharpness of the coverage probability D. May be traced (> 0).
      dist_func: ``'hard'``, ``'barycentric'`` or ``'euclidean'``.
      dist_eps: faces whose probability would be below ``dist_eps`` are skipped; in (0, 0.5).
      gamma_val: temperature of the softmax depth aggregation. May be traced (> 0).
      aggr_func_rgb: ``'softmax'`` or ``'hard'`` (nearest face).
      aggr_func_alpha: ``'prod'`` (1 - prod(1 - D)), ``'sum'`` (sum(D) / F) or ``'hard'``.
      texture_type: ``'surface'``, ``'vertex'`` or ``'uv'``.
      face_uvs: ``texture_type='uv'`` only, required: ``[B, F, 3, 2]`` float, the (u, v) of
        each face corner. A pair samples the image bilinearly at the perspective-correct
        interpolation of its face's corner UVs (``docs/semantics.md``).
      face_tint: ``texture_type='uv'`` only: ``[B, F, 3]`` float RGB factor multiplied into
        each face's sampled colour (``render`` passes the flat lighting here); ``None``: ones.
      uv_wrap: ``texture_type='uv'`` only (static): ``'repeat'`` (the default: coordinates
        wrap, like OpenGL's ``GL_REPEAT``) or ``'clamp'`` (clamped to the border texels).
      face_counts: ``None`` (every face is real) or ``[B]`` int, the number of real faces of
        each mesh of a padded batch (:func:`softjax.pad_meshes`): faces ``f >= face_counts[b]``
        of image ``b`` are padding, skipped at binning; they add nothing to colour, alpha or
        gradients, and alpha ``'sum'`` divides by ``face_counts[b]``. May be traced.
      backend: ``None`` (the default): the environment variable ``SOFTJAX_BACKEND``
        (``'auto'``, ``'xla'`` or ``'pallas'``; unset or empty: ``'auto'``; anything else
        raises ``ValueError``). ``'auto'``: off a GPU the tiled XLA path; on a GPU the Pallas
        kernels for a set of static options (distance function, aggregations, texture type,
        texels per face, dtype, ``pallas_config``) once they have passed a self-check in this
        process: run once per option set (even when this call is being traced under
        ``jit`` / ``grad`` / ``vmap``; it takes a few compilations), it compares their image
        and gradients on a tiny fixed scene with those options to the XLA path. If the kernels
        raise (lowering, compilation, launch) or disagree, one
        :class:`softjax.BackendFallbackWarning` names the options and the error, and the XLA
        path serves that option set from then on. :func:`softjax.backend_report` tells which
        path serves each option set and why. ``'xla'``: the tiled XLA path on any platform.
        ``'pallas'``: the Pallas/Triton kernels without a check (raises if this JAX has no
        Triton backend for Pallas; on a platform other than a GPU they run in the Pallas
        interpreter, exact but very slow: meant for testing). ``'reference'``: dense,
        ``O(B S^2 F)`` memory, for testing.
      tiling: performance knobs of the tiled backends (:class:`softjax.TilingConfig`: tile,
        windows, pair capacity; the XLA path's tile group and gradient step; the Pallas
        kernels' warps and ``interpret`` to force or forbid the interpreter); ``None`` or 0
        fields: the running backend's defaults. Results do not depend on them
        (``docs/pipeline.md``).
      pallas_config: the same type (``softjax.PallasConfig`` is ``softjax.TilingConfig``), for
        the Pallas kernels only; when given, the kernels use it instead of ``tiling``.

    Returns:
      ``[B, S, S, 4]`` RGBA image (channels last) in the dtype of the inputs (float32 unless
      float64 inputs are given with x64 enabled). Differentiable with respect to
      ``face_vertices``, ``textures``, ``face_uvs``, ``face_tint``, ``sigma_val``,
      ``gamma_val``, ``near``, ``far``, ``eps``. Under ``jax.vmap`` the tiled backends run
      once on the mapped images folded into the batch, forward and backward, unless the
      scalars differ per element (``docs/pipeline.md``, section 5).

    Raises:
      ValueError: on malformed arguments, naming the argument and what was expected, or a bad
        ``SOFTJAX_BACKEND``.
      RuntimeError: ``backend='pallas'`` (or ``SOFTJAX_BACKEND=pallas``) where this JAX has no
        Triton backend for Pallas.
    """
    from_env = backend is None
    backend = dispatch.requested_backend(backend)
    fv, tex, opts, scalars, backend = check_inputs(
        face_vertices,
        textures,
        image_size=image_size,
        background_color=background_color,
        near=near,
        far=far,
        fill_back=fill_back,
        eps=eps,
        sigma_val=sigma_val,
        dist_func=dist_func,
        dist_eps=dist_eps,
        gamma_val=gamma_val,
        aggr_func_rgb=aggr_func_rgb,
        aggr_func_alpha=aggr_func_alpha,
        texture_type=texture_type,
        backend=backend,
        face_uvs=face_uvs,
        face_tint=face_tint,
        uv_wrap=uv_wrap,
    )
    counts = check_face_counts(face_counts, *fv.shape[:2])
    pallas_tiling = tiling if pallas_config is None else pallas_config
    if backend == "auto" and isinstance(tex, UVTexture) and tex.image.size >= UV_OFFSET_LIMIT:
        backend = "xla"  # the kernels address the image with int32 offsets
    if fv.shape[1] > 0:  # without faces every backend draws the background: nothing to check
        backend = dispatch.choose_backend(
            backend, from_env, opts, _num_texels(tex), fv.dtype, pallas_tiling
        )
    elif backend == "auto":
        backend = "xla"
    if backend == "pallas":
        cfg = resolve_config(pallas_tiling)
    else:
        cfg = tiling or TilingConfig()
    concrete_counts = None if counts is None else concrete_value(counts)
    if concrete_counts is not None and backend in binning.BACKENDS:
        b, f = fv.shape[:2]
        real = int(concrete_counts.sum())
        cfg = binning.padded_batch_capacity(cfg, backend, opts.image_size, b, f, real)
    return _rasterize(fv, tex, scalars, opts, backend, cfg, counts)


def _num_texels(tex) -> int:
    """The texel count of the backend self-check's key (0 for UV textures: the kernels' code
    does not depend on the image size)."""
    return 0 if isinstance(tex, UVTexture) else tex.shape[2]


@functools.partial(jax.jit, static_argnums=(3, 4, 5))
def _rasterize(fv, tex, scalars, opts, backend: str, cfg: TilingConfig, face_counts):
    bsz, nf = fv.shape[:2]
    s = opts.image_size
    if nf == 0 or bsz == 0:  # nothing to draw: the background, fully transparent
        rgb = jnp.broadcast_to(jnp.asarray(opts.background, fv.dtype), (bsz, s, s, 3))
        return jnp.concatenate([rgb, jnp.zeros((bsz, s, s, 1), fv.dtype)], -1)
    # every backend's entry point takes the same arguments
    raster = {"reference": rasterize_reference, "pallas": rasterize_pallas}.get(
        backend, rasterize_tiled
    )
    return raster(fv, tex, scalars, opts, cfg, face_counts)
