"""Argument checking and the static / traced split of ``soft_rasterize``'s options."""

from __future__ import annotations

import numbers
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from softjax.concrete import concrete_value
from softjax.ops.pixel_face import AGGR_ALPHA, AGGR_RGB, DIST_FUNCS, TEXTURE_TYPES

BACKENDS = ("auto", "xla", "pallas", "reference")


class StaticOptions(NamedTuple):
    """Options that select code paths or shapes (hashable; static under ``jit``)."""

    image_size: int
    background: tuple[float, float, float]
    dist_func: str
    aggr_rgb: str
    aggr_alpha: str
    texture_type: str


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
):
    """Validates ``soft_rasterize``'s arguments; returns (fv, tex, StaticOptions, Scalars, backend).

    Raises:
      ValueError: naming the offending argument and what was expected.
    """
    _check_choice("dist_func", dist_func, DIST_FUNCS)
    _check_choice("aggr_func_rgb", aggr_func_rgb, AGGR_RGB)
    _check_choice("aggr_func_alpha", aggr_func_alpha, AGGR_ALPHA)
    _check_choice("texture_type", texture_type, TEXTURE_TYPES)
    _check_choice("backend", backend, BACKENDS)
    if isinstance(image_size, bool) or not isinstance(image_size, numbers.Integral):
        raise ValueError(f"image_size must be a positive int, got {image_size!r}")
    if image_size <= 0:
        raise ValueError(f"image_size must be a positive int, got {image_size}")
    bg = tuple(float(v) for v in np.asarray(background_color, dtype=np.float64).reshape(-1))
    if len(bg) != 3:
        raise ValueError(
            f"background_color must have 3 values (R, G, B), got {len(bg)}: {background_color!r}"
        )

    if not hasattr(face_vertices, "shape") or not hasattr(face_vertices, "dtype"):
        face_vertices = np.asarray(face_vertices)
    if not hasattr(textures, "shape") or not hasattr(textures, "dtype"):
        textures = np.asarray(textures)
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
    if texture_type == "vertex":
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

    dtype = jnp.result_type(face_vertices.dtype, textures.dtype)
    face_vertices = jnp.asarray(face_vertices, dtype)
    textures = jnp.asarray(textures, dtype)
    statics = StaticOptions(
        image_size=int(image_size),
        background=bg,
        dist_func=dist_func,
        aggr_rgb=aggr_func_rgb,
        aggr_alpha=aggr_func_alpha,
        texture_type=texture_type,
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
