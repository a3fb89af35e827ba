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
