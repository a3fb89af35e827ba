"""Cameras: world coordinates to the screen space of :func:`softjax.soft_rasterize`.

Conventions (SoftRas, ``docs/semantics.md``, Cameras): angles in degrees; after a
camera, x and y are normalised device coordinates (x right, y up) and z is the camera-space
depth. All functions are batched over a leading axis ``B`` and differentiable with respect to
every floating-point argument. Vertices are ``[B, V, 3]`` (or any ``[B, ..., 3]``).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

_NORM_EPS = 1e-5  # F.normalize(eps=1e-5) in SoftRas: x / max(|x|, eps)
_PROJ_EPS = 1e-5  # x / (z + eps) in the projection camera
# camera matrices in float32, not TF32 (XLA's default on GPUs moves vertices by about 5e-4)
_EXACT = jax.lax.Precision.HIGHEST


def normalize(v: jax.Array, eps: float) -> jax.Array:
    """Unit vectors along the last axis, ``v / max(|v|, eps)`` (PyTorch's ``F.normalize``).

    Args:
      v: ``[..., C]`` float vectors.
      eps: floor of the norm; callers keep SoftRas's values (cameras 1e-5, normals 1e-6).

    Returns:
      ``[..., C]``, of norm 1 where ``|v| > eps``.
    """
    n = jnp.sqrt(jnp.sum(v * v, axis=-1, keepdims=True))
    return v / jnp.where(n > eps, n, eps)


def _batched_vec(x, batch: int, dtype, name: str) -> jax.Array:
    """``[3]`` or ``[B, 3]`` -> ``[B, 3]``."""
    x = jnp.asarray(x, dtype)
    if x.ndim == 1:
        x = jnp.broadcast_to(x, (batch, x.shape[0]))
    if x.ndim != 2 or x.shape[-1] != 3 or x.shape[0] not in (1, batch):
        raise ValueError(f"{name} must have shape [3] or [B, 3] with B={batch}, got {x.shape}")
    return jnp.broadcast_to(x, (batch, 3))


def _check_vertices(vertices) -> jax.Array:
    v = jnp.asarray(vertices)
    if v.ndim < 2 or v.shape[-1] != 3:
        raise ValueError(f"vertices must have shape [B, ..., 3], got {v.shape}")
    if not jnp.issubdtype(v.dtype, jnp.floating):
        raise ValueError(f"vertices must be floating point, got dtype {v.dtype}")
    return v


def get_points_from_angles(distance, elevation, azimuth, degrees: bool = True) -> jax.Array:
    """Camera positions on a sphere around the origin.

    Args:
      distance, elevation, azimuth: scalars or broadcastable arrays (degrees unless
        ``degrees=False``).

    Returns:
      ``[..., 3]`` = (d cos(e) sin(a), d sin(e), -d cos(e) cos(a)).
    """
    d = jnp.asarray(distance, jnp.result_type(float, distance))
    e = jnp.asarray(elevation, d.dtype)
    a = jnp.asarray(azimuth, d.dtype)
    if degrees:
        e, a = jnp.deg2rad(e), jnp.deg2rad(a)
    d, e, a = jnp.broadcast_arrays(d, e, a)
    return jnp.stack(
        [d * jnp.cos(e) * jnp.sin(a), d * jnp.sin(e), -d * jnp.cos(e) * jnp.cos(a)], -1
    )


def _rotate(vertices, eye, z_axis, up):
    x_axis = normalize(jnp.cross(up, z_axis), _NORM_EPS)
    y_axis = normalize(jnp.cross(z_axis, x_axis), _NORM_EPS)
    r = jnp.stack([x_axis, y_axis, z_axis], axis=1)  # [B, 3, 3], rows x, y, z
    b = vertices.shape[0]
    flat = vertices.reshape(b, -1, 3) - eye[:, None, :]
    return jnp.einsum("bij,bvj->bvi", r, flat, precision=_EXACT).reshape(vertices.shape)


def look_at(vertices, eye, at=(0.0, 0.0, 0.0), up=(0.0, 1.0, 0.0)) -> jax.Array:
    """Camera at ``eye`` looking at ``at``: vertices become ``R (v - eye)``.

    Args:
      vertices: ``[B, ..., 3]``; eye, at, up: ``[3]`` or ``[B, 3]``.

    Returns:
      ``[B, ..., 3]`` camera coordinates; R has rows x = normalize(up x z), y = normalize(z x x),
      z = normalize(at - eye).
    """
    v = _check_vertices(vertices)
    b = v.shape[0]
    eye = _batched_vec(eye, b, v.dtype, "eye")
    at = _batched_vec(at, b, v.dtype, "at")
    up = _batched_vec(up, b, v.dtype, "up")
    return _rotate(v, eye, normalize(at - eye, _NORM_EPS), up)


def look(vertices, eye, direction=(0.0, 1.0, 0.0), up=(0.0, 1.0, 0.0)) -> jax.Array:
    """Camera at ``eye`` looking along ``direction`` (same frame as :func:`look_at` with
    z = normalize(direction)). Note SoftRas's default direction (0, 1, 0) is parallel to the
    default up vector; pass a direction that is not."""
    v = _check_vertices(vertices)
    b = v.shape[0]
    eye = _batched_vec(eye, b, v.dtype, "eye")
    direction = _batched_vec(direction, b, v.dtype, "direction")
    up = _batched_vec(up, b, v.dtype, "up")
    return _rotate(v, eye, normalize(direction, _NORM_EPS), up)


def perspective(vertices, angle=30.0) -> jax.Array:
    """Perspective division: ``(x / (z tan(angle)), y / (z tan(angle)), z)``.

    Args:
      vertices: ``[B, ..., 3]`` camera coordinates; angle: half the field of view in degrees
        (scalar or ``[B]``).
    """
    v = _check_vertices(vertices)
    width = jnp.tan(jnp.deg2rad(jnp.asarray(angle, v.dtype)))
    width = jnp.reshape(width, (-1,) + (1,) * (v.ndim - 2)) if jnp.ndim(width) else width
    z = v[..., 2]
    z_safe = jnp.where(jnp.abs(z) < 1e-10, jnp.where(z < 0, -1e-10, 1e-10), z)
    return jnp.stack([v[..., 0] / (z_safe * width), v[..., 1] / (z_safe * width), z], -1)


def orthogonal(vertices, scale=1.0) -> jax.Array:
    """Orthographic camera: ``(x s, y s, z)``; ``scale`` scalar or ``[B]``."""
    v = _check_vertices(vertices)
    s = jnp.asarray(scale, v.dtype)
    s = jnp.reshape(s, (-1,) + (1,) * (v.ndim - 2)) if jnp.ndim(s) else s
    return jnp.stack([v[..., 0] * s, v[..., 1] * s, v[..., 2]], -1)


def projection(vertices, P, dist_coeffs=None, orig_size=512) -> jax.Array:
    """Projection with a 3x4 camera matrix and Brown-Conrady distortion.

    Args:
      vertices: ``[B, V, 3]`` world coordinates.
      P: ``[B, 3, 4]`` (or ``[3, 4]``) camera matrix mapping homogeneous world points to pixels.
      dist_coeffs: ``[B, 5]`` (or ``[5]``) = (k1, k2, p1, p2, k3); None = no distortion.
      orig_size: the image size in pixels that ``P`` maps to.

    Returns:
      ``[B, V, 3]``: x' = x / (z + 1e-5), y' likewise; distortion with r^2 = x'^2 + y'^2:
      x'' = x'(1 + k1 r^2 + k2 r^4 + k3 r^6) + 2 p1 x' y' + p2 (r^2 + 2 x'^2),
      y'' = y'(1 + k1 r^2 + k2 r^4 + k3 r^6) + p1 (r^2 + 2 y'^2) + 2 p2 x' y';
      then NDC = 2 (u - orig_size / 2) / orig_size; z kept.
    """
    v = _check_vertices(vertices)
    b = v.shape[0]
    P = jnp.asarray(P, v.dtype)
    if P.ndim == 2:
        P = P[None]
    if P.shape[-2:] != (3, 4) or P.shape[0] not in (1, b):
        raise ValueError(f"P must have shape [B, 3, 4] or [3, 4] with B={b}, got {P.shape}")
    P = jnp.broadcast_to(P, (b, 3, 4))
    if dist_coeffs is None:
        dist_coeffs = jnp.zeros((b, 5), v.dtype)
    dc = jnp.asarray(dist_coeffs, v.dtype)
    if dc.ndim == 1:
        dc = dc[None]
    if dc.shape[-1] != 5 or dc.shape[0] not in (1, b):
        raise ValueError(f"dist_coeffs must have shape [B, 5] or [5], got {dc.shape}")
    dc = jnp.broadcast_to(dc, (b, 5))
    hom = jnp.concatenate([v, jnp.ones_like(v[..., :1])], -1)
    p = jnp.einsum("bij,bvj->bvi", P, hom, precision=_EXACT)
    x, y, z = p[..., 0], p[..., 1], p[..., 2]
    x_ = x / (z + _PROJ_EPS)
    y_ = y / (z + _PROJ_EPS)
    k1, k2, p1, p2, k3 = (dc[:, i, None] for i in range(5))
    r2 = x_ * x_ + y_ * y_
    radial = 1 + k1 * r2 + k2 * r2 * r2 + k3 * r2 * r2 * r2
    x__ = x_ * radial + 2 * p1 * x_ * y_ + p2 * (r2 + 2 * x_ * x_)
    y__ = y_ * radial + p1 * (r2 + 2 * y_ * y_) + 2 * p2 * x_ * y_
    x__ = 2 * (x__ - orig_size / 2.0) / orig_size
    y__ = 2 * (y__ - orig_size / 2.0) / orig_size
    return jnp.stack([x__, y__, z], -1)


def default_eye(viewing_angle: float = 30.0) -> tuple[float, float, float]:
    """SoftRas's default eye for look / look_at: (0, 0, -(1 / tan(viewing_angle) + 1))."""
    import math

    return (0.0, 0.0, -(1.0 / math.tan(math.radians(viewing_angle)) + 1.0))
