"""Meshes made in code for the tools' no-argument defaults (no files needed)."""

from __future__ import annotations

import jax.numpy as jnp
import numpy as np

from softjax.io import texel_barycentrics
from softjax.mesh import Mesh, icosphere

__all__ = ["target_shape", "textured_blob"]


def _blob_colors(p: np.ndarray) -> np.ndarray:
    """``[F, 3]`` colours at surface points ``p`` ``[F, 3]``: longitude hues, latitude stripes."""
    lon = np.arctan2(p[:, 0], p[:, 2])
    stripe = 0.5 + 0.5 * np.sign(np.sin(p[:, 1] * 18.0))
    hue = np.stack(
        [0.5 + 0.5 * np.cos(lon), 0.5 + 0.5 * np.cos(lon - 2.1), 0.5 + 0.5 * np.cos(lon + 2.1)],
        -1,
    )
    return 0.25 + 0.75 * hue * (0.55 + 0.45 * stripe[:, None])


def textured_blob(level: int = 4, texture_res: int = 4) -> Mesh:
    """A bumpy, textured sphere.

    Args:
      level: icosphere subdivision level (4: 2562 vertices, 5120 faces).
      texture_res: ``R``, texels per face side.

    Returns:
      Mesh with batch size 1: radius ``0.5 (1 + 0.15 sin(3x) sin(4y) sin(2z))``, surface
      textures ``[1, F, R*R, 3]`` of latitude stripes and longitude hues.
    """
    base = icosphere(level)
    v = np.asarray(base.vertices[0], np.float64)
    r = 1.0 + 0.15 * np.sin(3 * v[:, 0]) * np.sin(4 * v[:, 1]) * np.sin(2 * v[:, 2])
    v = v * r[:, None] * 0.5
    f = np.asarray(base.faces[0])
    corners = v[f]  # [F, 3, 3]
    w = texel_barycentrics(texture_res)  # [R*R, 3]
    tex = np.zeros((len(f), len(w), 3))
    for t, (w0, w1, w2) in enumerate(w):
        p = w0 * corners[:, 0] + w1 * corners[:, 1] + w2 * corners[:, 2]
        tex[:, t] = _blob_colors(p)
    return Mesh.create(v.astype(np.float32), f, jnp.asarray(tex[None], jnp.float32))


def target_shape(level: int = 4) -> Mesh:
    """A rounded box with a bump on top (superquadric, exponent 6), inside the unit cube; the
    shape the ``deform`` tool fits when given no data.

    Args:
      level: icosphere subdivision level of the underlying sphere.

    Returns:
      Untextured Mesh with batch size 1.
    """
    base = icosphere(level)
    d = np.asarray(base.vertices[0], np.float64)
    half = np.array([0.42, 0.26, 0.32])
    p = 6.0
    # scale each unit direction d onto the superquadric |x/a|^p + |y/b|^p + |z/c|^p = 1
    s = np.sum(np.abs(d / half) ** p, axis=-1) ** (-1.0 / p)
    v = d * s[:, None]
    bump = 0.12 * np.exp(-((v[:, 0] + 0.15) ** 2 + v[:, 2] ** 2) / 0.02) * (v[:, 1] > 0)
    v[:, 1] += bump
    return Mesh.create(v.astype(np.float32), np.asarray(base.faces[0]))


# The pose target's features: unit directions (in the mesh's frame) of its two bumps, their
# heights and angular widths. Two bumps of different sizes off every symmetry plane of the
# ellipsoid leave no rotation (other than the identity) that maps the shape onto itself.
_BUMPS = (
    ((0.55, 0.75, 0.35), 0.3, 0.1),  # the "head": large, up and to the right
    ((-0.7, -0.1, 0.7), 0.2, 0.06),  # the "tail": smaller, back and to the left
)
_SEMI_AXES = (0.5, 0.32, 0.26)  # a three-axis ellipsoid: no rotational symmetry of the body


def _asymmetric_radius(d: np.ndarray) -> np.ndarray:
    """``[N]`` distance from the origin of the asymmetric blob's surface along unit ``d``
    ``[N, 3]``."""
    r = 1.0 / np.sqrt(np.sum((d / np.asarray(_SEMI_AXES)) ** 2, -1))
    for direction, height, width in _BUMPS:
        h = np.asarray(direction) / np.linalg.norm(direction)
        r = r + height * np.exp(-(1.0 - d @ h) / width)
    return r


def _direction_colors(d: np.ndarray) -> np.ndarray:
    """``[N, 3]`` colours of unit directions ``d`` ``[N, 3]``: red grows along +x, green along
    +y, blue along +z (smooth, so every side has its own colour), with darker bands every 45
    degrees of longitude (texture detail)."""
    lon = np.arctan2(d[:, 0], d[:, 2])
    band = 0.8 + 0.2 * np.sign(np.cos(4.0 * lon))
    return np.clip((0.5 + 0.42 * d) * band[:, None], 0.0, 1.0)


def asymmetric_blob(level: int = 2, texture_res: int = 2) -> Mesh:
    """A textured shape with no rotational symmetry, for pose fitting (``softjax fit-pose``).

    A three-axis ellipsoid (semi-axes 0.5, 0.32, 0.26) with two bumps of different sizes at
    directions off its symmetry planes; the colour encodes the surface direction (red along +x,
    green along +y, blue along +z, with darker longitude bands), so that both the silhouette and
    the colours tell the pose.

    Args:
      level: icosphere subdivision level (2: 162 vertices, 320 faces, enough for its shape and
        quick to fit; 3: 642 vertices, 1280 faces).
      texture_res: ``R``, texels per face side.

    Returns:
      Mesh with batch size 1, centred near the origin inside the cube ``[-0.6, 0.6]^3``:
      vertices ``[1, V, 3]`` float32, surface textures ``[1, F, R*R, 3]`` float32.
    """
    base = icosphere(level)
    d = np.asarray(base.vertices[0], np.float64)
    v = d * _asymmetric_radius(d)[:, None]
    f = np.asarray(base.faces[0])
    w = texel_barycentrics(texture_res)  # [R*R, 3]
    # colour each texel by the direction of its point on the underlying sphere
    p = np.einsum("tk,fkc->ftc", w, d[f])  # [F, R*R, 3]
    p /= np.linalg.norm(p, axis=-1, keepdims=True)
    tex = _direction_colors(p.reshape(-1, 3)).reshape(p.shape)
    return Mesh.create(v.astype(np.float32), f, jnp.asarray(tex[None], jnp.float32))


__all__ += ["asymmetric_blob"]
