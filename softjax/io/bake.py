"""Baking of OBJ colours (images, ``Kd``, vertex colours) into a Mesh's texture arrays."""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np

from softjax.io.mtl import Material, material_image
from softjax.io.obj_parser import ParsedObj
from softjax.io.sampling import sample_rgb
from softjax.io.texels import texel_barycentrics

__all__ = ["corner_uv", "material_faces", "surface_textures", "vertex_textures"]


def corner_uv(parsed: ParsedObj, sel: np.ndarray, mat: Material) -> np.ndarray:
    """``[n, 3, 2]`` uv of the corners of the selected faces, with the ``map_Kd`` -s / -o."""
    uv = parsed.uvs[parsed.face_uv[sel]]
    return uv * mat.scale + mat.offset


def material_faces(
    parsed: ParsedObj, materials: list[Material | None]
) -> Iterator[tuple[Material, np.ndarray, tuple[np.ndarray, float] | None, np.ndarray]]:
    """Yields ``(material, faces, image, textured)`` for each defined material: ``[F]`` bool
    masks of its faces and of those among them that sample its ``map_Kd`` image (all False
    when it has none; faces need ``vt`` on every corner), and the image (or None)."""
    for m, mat in enumerate(materials):
        if mat is None:
            continue
        faces = parsed.face_mat == m
        image = material_image(mat)
        textured = faces & (parsed.face_uv[:, 0] >= 0) & (image is not None)
        yield mat, faces, image, textured


def surface_textures(
    parsed: ParsedObj, materials: list[Material | None], res: int, sampling: str
) -> np.ndarray:
    """``[F, R*R, 3]`` texel colours, each sampled at its :func:`texel_barycentrics` point:
    the ``map_Kd`` image where the face has uvs, else the interpolated vertex colours, else
    the material's ``Kd``, else white."""
    w = texel_barycentrics(res)  # [T, 3]
    num_faces = parsed.faces.shape[0]
    tex = np.ones((num_faces, res * res, 3))
    if parsed.colors is not None:
        tex = np.einsum("tk,fkc->ftc", w, parsed.colors[parsed.faces])
    for mat, faces, image, textured in material_faces(parsed, materials):
        if parsed.colors is None:
            tex[faces] = 1.0 if mat.kd is None else mat.kd
        if np.any(textured):
            uv = np.einsum("tk,nkc->ntc", w, corner_uv(parsed, textured, mat))
            tex[textured] = sample_rgb(image, uv, sampling)
    return tex


def vertex_textures(
    parsed: ParsedObj, materials: list[Material | None], sampling: str
) -> np.ndarray:
    """``[V, 3]`` vertex colours: the ``v`` line colours if any, else per vertex the mean over
    its face corners of the image (or ``Kd``, or white) colour at the corner."""
    if parsed.colors is not None:
        return parsed.colors
    num_faces, num_verts = parsed.faces.shape[0], parsed.vertices.shape[0]
    corner = np.ones((num_faces, 3, 3))
    for mat, faces, image, textured in material_faces(parsed, materials):
        corner[faces] = 1.0 if mat.kd is None else mat.kd
        if np.any(textured):
            corner[textured] = sample_rgb(image, corner_uv(parsed, textured, mat), sampling)
    sums = np.zeros((num_verts, 3))
    counts = np.zeros(num_verts)
    np.add.at(sums, parsed.faces.reshape(-1), corner.reshape(-1, 3))
    np.add.at(counts, parsed.faces.reshape(-1), 1.0)
    return np.where(counts[:, None] > 0, sums / np.maximum(counts, 1.0)[:, None], 1.0)
