"""An OBJ's colours as one texture image and per-corner uvs, for ``texture_type='uv'``.

The counterpart of ``bake`` (which samples the images into per-face texels or vertex
colours): here the images are kept, packed into one atlas when the faces need more than one.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from softjax.io.atlas import build_atlas, pack_images, region_uv
from softjax.io.bake import corner_uv, material_faces
from softjax.io.errors import warn
from softjax.io.mtl import Material
from softjax.io.obj_parser import ParsedObj
from softjax.io.texels import texel_barycentrics

__all__ = ["uv_texture"]

# Border (pixels) around each atlas region, copied from the region's opposite side: enough
# for a bilinear lookup at a region's edge to read what a wrapping lookup of the image alone
# reads.
_GUTTER = 2
# Vertex-coloured faces without an image: one build_atlas cell of this many pixels a side per
# face, holding _CELL_RES x _CELL_RES texels of the interpolated vertex colours.
_CELL = 8
_CELL_RES = 2


def _image_float(image: tuple[np.ndarray, float]) -> np.ndarray:
    """``[H, W, 3]`` float32 in [0, 1] of an ``image_rgb`` result (uint8 ``k`` -> ``k / 255``,
    computed in float32, which equals the float64 quotient rounded to float32)."""
    data, top = image
    rgb = np.asarray(data, np.float32) / np.float32(top)
    return np.clip(np.nan_to_num(rgb), 0.0, 1.0)


def _one_repeat(uv: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Corner uvs ``[n, 3, 2]`` moved into [0, 1] for an atlas region.

    Each face moves by whole repeats of the image (exact for a wrapping lookup) so that its
    lowest corner lies in [0, 1); a face that still reaches past 1 crosses the image's border
    (a tiled texture), and its corners past 1 are wrapped one by one.

    Returns:
      ``(uv, crossing)``: ``[n, 3, 2]`` float64 in [0, 1] and ``[n]`` bool, the faces whose
      corners were wrapped one by one.
    """
    uv = np.nan_to_num(np.asarray(uv, np.float64))
    uv = uv - np.floor(uv.min(axis=1, keepdims=True))
    crossing = np.any(uv > 1.0, axis=(1, 2))
    return np.where(uv > 1.0, uv - np.floor(uv), uv), crossing


def uv_texture(
    parsed: ParsedObj, materials: list[Material | None], path: Path
) -> tuple[np.ndarray, np.ndarray]:
    """One texture image for all the faces of an OBJ, and each face corner's uv in it.

    Face colours follow the priorities of ``load_obj``: the material's ``map_Kd`` image (faces
    with ``vt`` on every corner; ``-s`` / ``-o`` applied to the uvs), else the ``v x y z r g b``
    vertex colours, else the material's ``Kd``, else white.

    * When every face samples one image (one file, through one material or several), that
      image is returned as it is and the uvs as the file gives them, outside [0, 1] included
      (tiling survives, with a wrapping lookup at render time).
    * Otherwise the images (each file once), one 1 x 1 block per distinct flat colour and, for
      vertex-coloured faces, a ``build_atlas`` image of one cell per face (``_CELL_RES^2``
      texels, colours rounded to 1/255) are packed into one atlas (``pack_images``), and each
      face's uvs are mapped into its region (flat colours: the block's centre). Image uvs
      outside [0, 1] are first moved by whole repeats per face; faces that cross the image's
      border get their corners wrapped one by one, with an :class:`ObjWarning`.
    * A single flat colour (no image) gives a 1 x 1 image, uvs 0.5.

    Args:
      parsed: the OBJ's arrays.
      materials: ``parsed.material_names``' materials (None where undefined).
      path: the OBJ file, named in warnings.

    Returns:
      ``(image, face_uvs)``: ``[H, W, 3]`` float32 in [0, 1] (row 0 at the top, ``v = 1``) and
      ``[F, 3, 2]`` float64 ``(u, v)`` of each face corner.
    """
    num_faces = parsed.faces.shape[0]
    uvs = np.full((num_faces, 3, 2), 0.5)
    source = np.full(num_faces, -1, np.int64)  # index into `images`, -1: no image
    flat = np.ones((num_faces, 3))  # Kd (white without one) of the faces without an image
    images: list[tuple[np.ndarray, float]] = []
    files: dict[Path, int] = {}
    for mat, faces, image, textured in material_faces(parsed, materials):
        flat[faces] = 1.0 if mat.kd is None else mat.kd
        if np.any(textured):
            # materials naming one file share one region (their -s / -o live in the uvs)
            k = files.setdefault(mat.map_path.resolve(), len(images))
            if k == len(images):
                images.append(image)
            source[textured] = k
            uvs[textured] = corner_uv(parsed, textured, mat)
    if len(images) == 1 and np.all(source == 0):
        return _image_float(images[0]), uvs

    entries = [_image_float(im) for im in images]
    textured = source >= 0
    uvs[textured], crossing = _one_repeat(uvs[textured])
    if np.any(crossing):
        names = sorted(
            {p.name for p, k in files.items() if np.any(crossing & (source[textured] == k))}
        )
        warn(
            f"{path}: {int(crossing.sum())} face(s) textured with {', '.join(map(repr, names))} "
            "have texture coordinates that cross the border of the image (a tiled texture); "
            "packed into one atlas image with the other materials' colours, each of their "
            "corners is wrapped into [0, 1] on its own, so the tiling across these faces is "
            "lost (an OBJ whose faces all sample one image keeps its texture coordinates)"
        )
    rest = ~textured
    cells = None  # (entry, [n, 3, 2] uvs in it) of the vertex-coloured faces
    flat_entry = np.zeros(0, np.int64)  # entry of each face in `rest` with a flat colour
    if np.any(rest) and parsed.colors is not None:
        tex = np.einsum(
            "tk,fkc->ftc", texel_barycentrics(_CELL_RES), parsed.colors[parsed.faces[rest]]
        )
        cell_image, cell_uv = build_atlas(tex, _CELL)
        cells = (len(entries), cell_uv)
        entries.append(cell_image.astype(np.float32) / np.float32(255.0))
    elif np.any(rest):
        colours, inverse = np.unique(flat[rest], axis=0, return_inverse=True)
        flat_entry = len(entries) + inverse.reshape(-1)
        entries += [c.reshape(1, 1, 3).astype(np.float32) for c in colours]

    if len(entries) == 1:  # one flat colour, or only vertex-coloured faces: nothing to pack
        atlas, origins = entries[0], np.zeros((1, 2), np.int64)
    else:
        atlas, origins = pack_images(entries, _GUTTER)
    shape = atlas.shape[:2]
    for k in range(len(images)):
        sel = source == k
        uvs[sel] = region_uv(uvs[sel], origins[k], entries[k].shape[:2], shape)
    if cells is not None:
        k, cell_uv = cells
        uvs[rest] = region_uv(cell_uv, origins[k], entries[k].shape[:2], shape)
    elif np.any(rest):  # the centre of each face's 1 x 1 block
        uvs[rest] = region_uv(
            np.full((rest.sum(), 3, 2), 0.5), origins[flat_entry][:, None], (1, 1), shape
        )
    return atlas, uvs
