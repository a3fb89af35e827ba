"""Texture atlases: several textures drawn into one image, with the uv mapping into it.

``build_atlas`` draws per-face surface textures as one cell per face (for writing an OBJ +
MTL + PNG); ``pack_images`` places whole images side by side (one image for the materials of
a ``texture_type='uv'`` mesh) and ``region_uv`` maps a packed image's uvs into the atlas.
"""

from __future__ import annotations

import math

import jax.numpy as jnp
import numpy as np

from softjax.ops.pixel_face import face_color

__all__ = ["build_atlas", "pack_images", "region_uv"]

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


def pack_images(images: list[np.ndarray], gutter: int) -> tuple[np.ndarray, np.ndarray]:
    """Packs images into one atlas image, in shelves (rows of images, tallest first).

    Each image gets a border of ``gutter`` pixels copied from its opposite side (``np.pad``
    ``'wrap'``): a bilinear lookup near a region's edge then reads the texels a repeating
    (wrapping) lookup of the image alone would read, never a neighbouring region. Pixels no
    image covers are 1 (white).

    Args:
      images: ``N >= 1`` arrays ``[h_i, w_i, 3]`` float (one dtype), ``h_i, w_i >= 1``.
      gutter: border width in pixels (>= 0).

    Returns:
      ``(atlas, origins)``: ``[H, W, 3]`` atlas in the images' dtype and ``[N, 2]`` int64
      ``(row, column)`` of each image's top-left pixel in it (inside its border). The layout
      only depends on the image sizes (deterministic).
    """
    sizes = np.asarray([im.shape[:2] for im in images], np.int64) + 2 * gutter  # [N, 2]
    # shelves about as wide as a square of the total area, at least as wide as every image
    width = max(int(sizes[:, 1].max()), math.ceil(math.sqrt(float(np.prod(sizes, 1).sum()))))
    order = sorted(range(len(images)), key=lambda i: (-sizes[i, 0], i))
    corners = np.zeros((len(images), 2), np.int64)  # (row, column) of each padded image
    row = col = shelf = 0
    for i in order:
        if col + sizes[i, 1] > width:  # next shelf
            row, col, shelf = row + shelf, 0, 0
        corners[i] = row, col
        col += sizes[i, 1]
        shelf = max(shelf, int(sizes[i, 0]))
    height = int((corners[:, 0] + sizes[:, 0]).max())
    width = int((corners[:, 1] + sizes[:, 1]).max())
    atlas = np.ones((height, width, 3), images[0].dtype)
    for im, (r, c), (h, w) in zip(images, corners, sizes, strict=True):
        atlas[r : r + h, c : c + w] = np.pad(
            im, ((gutter, gutter), (gutter, gutter), (0, 0)), "wrap"
        )
    return atlas, corners + gutter


def region_uv(
    uv: np.ndarray, origin: np.ndarray, size: tuple[int, int], atlas_size: tuple[int, int]
) -> np.ndarray:
    """Texture coordinates of an image packed into an atlas, in the atlas.

    Args:
      uv: ``[..., 2]`` float (``u`` right, ``v`` up) in the packed image, inside [0, 1].
      origin: ``[..., 2]`` int ``(row, column)`` of the image's top-left pixel in the atlas
        (broadcast against ``uv[..., 0]``).
      size: ``(h, w)`` of the image; atlas_size: ``(H, W)`` of the atlas.

    Returns:
      ``[..., 2]`` float64 atlas coordinates of the same image point: pixel ``(row, column)``
      of the image is pixel ``(origin + (row, column))`` of the atlas (texel centres go to
      texel centres, so nearest and bilinear lookups read the same texels).
    """
    uv = np.asarray(uv, np.float64)
    origin = np.asarray(origin)
    x = origin[..., 1] + uv[..., 0] * size[1]
    y = origin[..., 0] + (1.0 - uv[..., 1]) * size[0]
    return np.stack([x / atlas_size[1], 1.0 - y / atlas_size[0]], -1)
