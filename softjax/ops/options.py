"""Argument checking and the static / traced split of ``soft_rasterize``'s options."""

from __future__ import annotations

import numbers
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from softjax.concrete import check_face_counts as counts_checked
from softjax.concrete import concrete_value
from softjax.ops.pixel_face import AGGR_ALPHA, AGGR_RGB, DIST_FUNCS, TEXTURE_TYPES, UV_WRAPS

BACKENDS = ("auto", "xla", "pallas", "reference")


class StaticOptions(NamedTuple):
    """Options that select code paths or shapes (hashable; static under ``jit``)."""

    image_size: int
    background: tuple[float, float, float]
    dist_func: str
    aggr_rgb: str
    aggr_alpha: str
    texture_type: str
    uv_wrap: str = "repeat"  # texture_type='uv' only: addressing outside [0, 1]


class UVTexture(NamedTuple):
    """The textures of ``texture_type='uv'`` (a pytree: every field receives gradients)."""

    image: jax.Array  # [B, H, W, 3] one texture image per mesh, row 0 = v of 1 (the top)
    face_uvs: jax.Array  # [B, F, 3, 2] (u, v) of each face corner
    face_tint: jax.Array  # [B, F, 3] RGB factor of each face (ones: the image's colours)


class Scalars(NamedTuple):
    """Options that may be traced values (and receive gradients where meaningful); named as
    ``soft_rasterize``'s arguments, each a scalar of the inputs' dtype."""

    sigma_val: jax.Array
    gamma_val: jax.Array
    near: jax.Array
    far: jax.Array
    eps: jax.Array
    dist_eps: jax.Array
    fill_back: jax.Array  # 0. or 1. (a float so that it is a valid custom_vjp primal)


def _check_choice(name: str, value: Any, choices: tuple[str, ...]) -> str:
    if not isinstance(value, str) or value not in choices:
        raise ValueError(f"{name} must be one of {list(choices)}, got {value!r}")
    return value


def _check_scalar(name: str, value, *, positive: bool = False, half: bool = False):
    concrete = concrete_value(value)
    if isinstance(value, bool) or (
        concrete is not None and not isinstance(value, numbers.Real) and concrete.ndim != 0
    ):
        raise ValueError(f"{name} must be a real scalar, got {value!r}")
    if concrete is not None:
        v = float(concrete)
        if not np.isfinite(v):
            raise ValueError(f"{name} must be finite, got {v}")
        if positive and v <= 0:
            raise ValueError(f"{name} must be > 0, got {v}")
        if half and not 0.0 < v < 0.5:
            raise ValueError(f"{name} must be in (0, 0.5) so that ln(1/{name} - 1) > 0, got {v}")
    elif jnp.ndim(value) != 0:
        raise ValueError(f"{name} must be a scalar, got shape {jnp.shape(value)}")
    return value


def _as_array(x):
    return x if hasattr(x, "shape") and hasattr(x, "dtype") else np.asarray(x)


def _check_uv(image, face_uvs, face_tint, b: int, f: int):
    """Shapes and dtypes of the ``texture_type='uv'`` inputs; returns (face_uvs, face_tint)
    with the default tint (ones) filled in."""
    if image.ndim != 4 or image.shape[0] != b or image.shape[3] != 3 or min(image.shape[1:3]) < 1:
        raise ValueError(
            "with texture_type='uv' textures must be one RGB texture image per mesh, shape "
            f"[B, H, W, 3] with B={b} and H, W >= 1, got {tuple(image.shape)}"
        )
    if face_uvs is None:
        raise ValueError("texture_type='uv' needs face_uvs, the [B, F, 3, 2] corner UVs")
    face_uvs = _as_array(face_uvs)
    if tuple(face_uvs.shape) != (b, f, 3, 2):
        raise ValueError(
            f"face_uvs must have shape [B, F, 3, 2] = {(b, f, 3, 2)} ((u, v) per face corner), "
            f"got {tuple(face_uvs.shape)}"
        )
    if face_tint is None:
        face_tint = jnp.ones((b, f, 3), jnp.result_type(image.dtype, face_uvs.dtype))
    face_tint = _as_array(face_tint)
    if tuple(face_tint.shape) != (b, f, 3):
        raise ValueError(
            f"face_tint must have shape [B, F, 3] = {(b, f, 3)} (an RGB factor per face), "
            f"got {tuple(face_tint.shape)}"
        )
    for name, x in (("face_uvs", face_uvs), ("face_tint", face_tint)):
        if not jnp.issubdtype(x.dtype, jnp.floating):
            raise ValueError(f"{name} must be a floating-point array, got dtype {x.dtype}")
    return face_uvs, face_tint


def check_face_counts(face_counts, batch: int, faces: int):
    """``None``, or the checked ``[B]`` face counts as int32 (see
    :func:`softjax.concrete.check_face_counts`)."""
    if face_counts is None:
        return None
    return jnp.asarray(counts_checked(face_counts, batch, faces), jnp.int32)


def check_inputs(
    face_vertices,
    textures,
    *,
    image_size,
    background_color,
    near,
    far,
    fill_back,
    eps,
    sigma_val,
    dist_func,
    dist_eps,
    gamma_val,
    aggr_func_rgb,
    aggr_func_alpha,
    texture_type,
    backend,
    face_uvs=None,
    face_tint=None,
    uv_wrap="repeat",
):
    """Validates ``soft_rasterize``'s arguments; returns (fv, tex, StaticOptions, Scalars, backend).

    ``tex`` is the ``textures`` array, or for ``texture_type='uv'`` a :class:`UVTexture`.

    Raises:
      ValueError: naming the offending argument and what was expected.
    """
    _check_choice("dist_func", dist_func, DIST_FUNCS)
    _check_choice("aggr_func_rgb", aggr_func_rgb, AGGR_RGB)
    _check_choice("aggr_func_alpha", aggr_func_alpha, AGGR_ALPHA)
    _check_choice("texture_type", texture_type, TEXTURE_TYPES)
    _check_choice("backend", backend, BACKENDS)
    _check_choice("uv_wrap", uv_wrap, UV_WRAPS)
    if isinstance(image_size, bool) or not isinstance(image_size, numbers.Integral):
        raise ValueError(f"image_size must be a positive int, got {image_size!r}")
    if image_size <= 0:
        raise ValueError(f"image_size must be a positive int, got {image_size}")
    bg = tuple(float(v) for v in np.asarray(background_color, dtype=np.float64).reshape(-1))
    if len(bg) != 3:
        raise ValueError(
            f"background_color must have 3 values (R, G, B), got {len(bg)}: {background_color!r}"
        )

    face_vertices = _as_array(face_vertices)
    textures = _as_array(textures)
    if face_vertices.ndim != 4 or face_vertices.shape[-2:] != (3, 3):
        raise ValueError(
            "face_vertices must have shape [B, F, 3, 3] (batch, faces, corners, xyz), "
            f"got {tuple(face_vertices.shape)}"
        )
    if not jnp.issubdtype(face_vertices.dtype, jnp.floating):
        raise ValueError(
            f"face_vertices must be a floating-point array, got dtype {face_vertices.dtype}"
        )
    if not jnp.issubdtype(textures.dtype, jnp.floating):
        raise ValueError(f"textures must be a floating-point array, got dtype {textures.dtype}")
    b, f = face_vertices.shape[:2]
    if texture_type != "uv" and (face_uvs is not None or face_tint is not None):
        raise ValueError(
            f"face_uvs and face_tint belong to texture_type='uv', got texture_type={texture_type!r}"
        )
    if texture_type == "uv":
        face_uvs, face_tint = _check_uv(textures, face_uvs, face_tint, b, f)
    elif texture_type == "vertex":
        if textures.ndim != 4 or tuple(textures.shape) != (b, f, 3, 3):
            raise ValueError(
                "with texture_type='vertex' textures must have shape [B, F, 3, 3] = "
                f"{(b, f, 3, 3)} (an RGB colour per face corner), got {tuple(textures.shape)}"
            )
    else:
        ok = textures.ndim == 4 and tuple(textures.shape[:2]) == (b, f) and textures.shape[3] == 3
        r = int(round(textures.shape[2] ** 0.5)) if textures.ndim == 4 else 0
        if not ok or r < 1 or r * r != textures.shape[2]:
            raise ValueError(
                "with texture_type='surface' textures must have shape [B, F, R*R, 3] "
                f"with B={b}, F={f} and R >= 1 texels a side, got {tuple(textures.shape)}"
            )

    _check_scalar("sigma_val", sigma_val, positive=True)
    _check_scalar("gamma_val", gamma_val, positive=True)
    _check_scalar("near", near)
    _check_scalar("far", far)
    _check_scalar("eps", eps)
    _check_scalar("dist_eps", dist_eps, half=True)
    near_value, far_value = concrete_value(near), concrete_value(far)
    if near_value is not None and far_value is not None and float(far_value) <= float(near_value):
        raise ValueError(f"far must be greater than near, got near={near}, far={far}")

    if texture_type == "uv":
        parts = (textures, face_uvs, face_tint)
        dtype = jnp.result_type(face_vertices.dtype, *(x.dtype for x in parts))
        textures = UVTexture(*(jnp.asarray(x, dtype) for x in parts))
    else:
        dtype = jnp.result_type(face_vertices.dtype, textures.dtype)
        textures = jnp.asarray(textures, dtype)
    face_vertices = jnp.asarray(face_vertices, dtype)
    statics = StaticOptions(
        image_size=int(image_size),
        background=bg,
        dist_func=dist_func,
        aggr_rgb=aggr_func_rgb,
        aggr_alpha=aggr_func_alpha,
        texture_type=texture_type,
        uv_wrap=uv_wrap,
    )
    scalars = Scalars(
        sigma_val=jnp.asarray(sigma_val, dtype),
        gamma_val=jnp.asarray(gamma_val, dtype),
        near=jnp.asarray(near, dtype),
        far=jnp.asarray(far, dtype),
        eps=jnp.asarray(eps, dtype),
        dist_eps=jnp.asarray(dist_eps, dtype),
        fill_back=jnp.asarray(fill_back, dtype),
    )
    return face_vertices, textures, statics, scalars, backend
