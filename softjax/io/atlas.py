"""Texture atlases: per-face surface textures drawn as one image for an OBJ + MTL + PNG."""

from __future__ import annotations

import math

import jax.numpy as jnp
import numpy as np

from softjax.ops.pixel_face import face_color

__all__ = ["build_atlas"]

_ATLAS_PAD = 1.0  # distance (pixels) from an atlas cell's border to its triangle


def _cell_corners(cell: int) -> np.ndarray:
    """Face corners 0, 1, 2 inside an atlas cell, ``[3, 2]`` (x right, y down, in pixels):
    a right triangle with its right angle at corner 0, ``_ATLAS_PAD`` pixels from the border."""
    lo, hi = _ATLAS_PAD, cell - _ATLAS_PAD
    return np.asarray([[lo, hi], [hi, hi], [lo, lo]], np.float64)


def _cell_texel_map(cell: int, res: int) -> np.ndarray:
    """``[cell, cell]`` texel index the rasterizer picks at each pixel centre of an atlas cell
    (pixels outside the triangle: clipped, normalised barycentrics, as the rasterizer does)."""
    corners = _cell_corners(cell)
    c = np.arange(cell) + 0.5
    px, py = np.meshgrid(c, c)  # [row, column]
    p = np.stack([px, py], -1).reshape(-1, 2)
    m = np.stack([corners[1] - corners[0], corners[2] - corners[0]], -1)  # columns e1, e2
    w12 = np.linalg.solve(m, (p - corners[0]).T).T  # [P, 2]
    w = np.concatenate([1.0 - w12.sum(-1, keepdims=True), w12], -1)
    w = np.clip(w, 0.0, 1.0)
    w = w / np.maximum(w.sum(-1, keepdims=True), 1e-5)
    # ask the rasterizer's own texel choice (texel ids as colours) rather than re-deriving it
    ids = jnp.arange(res * res, dtype=jnp.float32).reshape(1, 1, -1, 1)
    texel = face_color(jnp.asarray(w, jnp.float32)[:, None, :], ids, "surface")  # [P, 1, 1]
    return np.rint(np.asarray(texel)).astype(np.int64).reshape(cell, cell)


def build_atlas(textures: np.ndarray, cell: int) -> tuple[np.ndarray, np.ndarray]:
    """Texture atlas of per-face surface textures.

    Args:
      textures: ``[F, R*R, 3]`` float colours in [0, 1] (NaN reads as white).
      cell: atlas cell size in pixels.

    Returns:
      ``(atlas, uv)``: ``[H, W, 3]`` uint8 image with face ``f`` in cell
      ``(f // cols, f % cols)`` (``cols = ceil(sqrt(F))``, row 0 at the top), and
      ``[F, 3, 2]`` float64 corner uvs (``u`` right, ``v`` up) of each face's triangle.
    """
    num_faces, num_texels = textures.shape[:2]
    res = int(round(math.sqrt(num_texels)))
    cols = max(1, math.ceil(math.sqrt(num_faces)))
    rows = max(1, math.ceil(num_faces / cols))
    texel_map = _cell_texel_map(cell, res)
    rgb = np.rint(np.clip(np.nan_to_num(textures, nan=1.0), 0.0, 1.0) * 255.0).astype(np.uint8)
    cells = np.full((rows * cols, cell, cell, 3), 255, np.uint8)
    cells[:num_faces] = rgb[:, texel_map]
    atlas = cells.reshape(rows, cols, cell, cell, 3).transpose(0, 2, 1, 3, 4)
    atlas = atlas.reshape(rows * cell, cols * cell, 3)
    f = np.arange(num_faces)
    origin = np.stack([(f % cols) * cell, (f // cols) * cell], -1).astype(np.float64)  # [F, 2]
    xy = origin[:, None, :] + _cell_corners(cell)[None]  # [F, 3, 2]
    uv = np.stack([xy[..., 0] / (cols * cell), 1.0 - xy[..., 1] / (rows * cell)], -1)
    return atlas, uv
