"""Wavefront OBJ (+ MTL) reading and writing for :class:`softjax.mesh.Mesh`.

Conventions shared by :func:`load_obj` and :func:`save_obj`:

* OBJ indices are 1-based (negative indices count back from the last vertex defined so far);
  the returned ``Mesh`` uses 0-based int32 indices. Polygons are fan-triangulated:
  ``(a, b, c), (a, c, d), ...``.
* Texture coordinates: ``u`` to the right, ``v`` up. A point ``(u, v)`` of an ``H x W`` image
  lies at image row ``(1 - v) * H`` and column ``u * W`` (row 0 is the top row). Coordinates
  outside ``[0, 1]`` wrap around (repeat, like most viewers); ``[0, 1]`` itself is used as is.
* Surface textures ``[1, F, R*R, 3]`` use the rasterizer's texel layout
  (:func:`softjax.ops.pixel_face.face_color`): texel ``t = jj * R + ii`` is the "lower"
  sub-triangle of cell ``(ii, jj)`` of the face's barycentric ``(w0, w1)`` grid when
  ``ii + jj <= R - 1``, otherwise the "upper" sub-triangle of cell ``(R-1-ii, R-1-jj)``. Each
  texel's colour is the image sampled at the centre of its sub-triangle
  (:func:`~softjax.io.texels.texel_barycentrics`); barycentric weight ``k`` belongs to face
  corner ``k``.
* UV textures (``texture_type='uv'``) keep the image: ``textures`` ``[1, H, W, 3]`` (row 0 at
  the top, ``v = 1``, like the PNG's first row) and ``face_uvs`` ``[1, F, 3, 2]``.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from softjax.io.atlas import build_atlas
from softjax.io.bake import surface_textures, vertex_textures
from softjax.io.lines import rows
from softjax.io.mtl import load_materials
from softjax.io.obj_parser import parse_obj
from softjax.io.sampling import SAMPLING_MODES
from softjax.io.texels import check_res
from softjax.io.texture_files import textured_face_lines, to_uint8, write_texture
from softjax.io.uv_texture import uv_texture
from softjax.mesh import Mesh, unpad_meshes
from softjax.ops.pixel_face import TEXTURE_TYPES

__all__ = ["load_obj", "save_obj"]


def load_obj(
    path: str | os.PathLike,
    normalization: bool = False,
    load_texture: bool = False,
    texture_res: int = 1,
    texture_type: str = "surface",
    *,
    sampling: str = "nearest",
) -> Mesh:
    """Reads a Wavefront OBJ file (and its MTL materials and texture images) into a Mesh.

    Understood statements: ``v x y z [w]`` and the vertex-colour extension ``v x y z r g b``
    (colours in [0, 1], or 0..255 when any exceeds 1), ``vt u [v [w]]``, ``f`` with vertices
    ``i``, ``i/t``, ``i//n`` or ``i/t/n`` (1-based or negative = relative indices; polygons
    fan-triangulated ``(a, b, c), (a, c, d), ...``), ``mtllib``, ``usemtl``, comments (``#``),
    blank lines and backslash line continuations. ``vn``, ``g``, ``o``, ``s``, ``l``, ``p``,
    ``vp`` and the other geometry statements are ignored; unknown statements are ignored with
    one :class:`ObjWarning` each.

    Args:
      path: the ``.obj`` file.
      normalization: if True, rescale the vertices like SoftRas: ``v -= v.min(0);
        v /= abs(v).max(); v *= 2; v -= v.max(0) / 2`` (fits the mesh in [-1, 1], centred).
      load_texture: if False every texture is white (ones). If True, colours come from, in
        order of priority: the material's ``map_Kd`` image (for faces with ``vt`` indices on
        every corner; the image replaces ``Kd`` like SoftRas, ``-s``/``-o`` options scale and
        offset the uv), else the ``v x y z r g b`` vertex colours (interpolated for surface
        textures), else the material's ``Kd``; faces without a (defined) material, and
        materials without ``Kd``, are white. MTL files are looked up relative to the OBJ's
        folder, images relative to the MTL's folder, then the OBJ's folder.
      texture_res: ``R``, texels per face side for ``texture_type='surface'`` (ignored
        otherwise).
      texture_type: ``'surface'``: ``textures`` ``[1, F, R*R, 3]``, texel ``t`` sampled at
        :func:`texel_barycentrics` (the rasterizer's texel layout); ``'vertex'``:
        ``textures`` ``[1, V, 3]``, the ``v`` line colours if present, else, per vertex, the
        mean over the face corners at that vertex of the colour sampled at the corner's uv (or
        the material's Kd); vertices used by no face are white. ``'uv'`` (needs
        ``load_texture=True``): the images are kept, not sampled: ``textures`` ``[1, H, W, 3]``
        (an image's pixels exactly, e.g. uint8 ``k`` -> ``k / 255``) and ``face_uvs``
        ``[1, F, 3, 2]``, each face corner's ``vt`` (``-s`` / ``-o`` applied). If every face
        samples one image file, that image and the file's uvs are kept as they are (uvs
        outside [0, 1] too: tiling works with a wrapping lookup). Otherwise one atlas image
        holds every image used (each with a 2-pixel border copied from its opposite side, so
        wrapping bilinear lookups at a region's edge stay exact), a 1 x 1 block per flat colour
        (``Kd``, or white: faces without an image or ``vt``, whose uvs all point at the block's
        centre) and, for vertex-coloured faces without an image, one small cell per face (2 x
        2 texels of the interpolated colours, rounded to 1/255); uvs are mapped into their
        region, after moving each face by whole repeats of its image into [0, 1]; faces whose
        uvs cross the image's border (tiling inside a face) are wrapped corner by corner,
        with an :class:`ObjWarning` (the tiling across them is lost). A mesh with one flat
        colour and no image gets a 1 x 1 image, uvs 0.5.
      sampling: image lookup, ``'nearest'`` (default; exact for :func:`save_obj` atlases) or
        ``'bilinear'``; uv outside [0, 1] wraps around (repeat). Unused by ``'uv'``, which
        keeps the images (the renderer samples them).

    Returns:
      :class:`~softjax.mesh.Mesh` with batch size 1: vertices ``[1, V, 3]`` float32, faces
      ``[1, F, 3]`` int32 (0-based), textures float32 in [0, 1] (and ``face_uvs`` float32)
      as above.

    Raises:
      FileNotFoundError: ``path`` does not exist.
      ObjError: (a ValueError) malformed input: a ``v`` with fewer than 3 numbers or
        non-numbers, a ``vt`` with non-numbers, an ``f`` with fewer than 3 vertices or a
        non-integer index, an index of 0 or beyond the vertices / texture coordinates defined,
        a file without faces, or a bad ``Kd`` / ``map_Kd`` line in an MTL file. The message
        names the file, the 1-based line number and the line's text.
      ValueError: bad arguments, or ``texture_type='uv'`` without ``load_texture=True``
        (there is no image to keep; for a white mesh use ``'surface'`` or ``Mesh.create``).

    Missing MTL files and missing or unreadable texture images are not errors: an
    :class:`ObjWarning` names the file and the affected faces fall back to Kd (or white).
    """
    res = check_res(texture_res, "texture_res")
    if texture_type not in TEXTURE_TYPES:
        raise ValueError(f"texture_type must be one of {list(TEXTURE_TYPES)}, got {texture_type!r}")
    if sampling not in SAMPLING_MODES:
        raise ValueError(f"sampling must be one of {list(SAMPLING_MODES)}, got {sampling!r}")
    if texture_type == "uv" and not load_texture:
        # load_texture=False means "white": a uv mesh of it (1 x 1 white image) would drop the
        # file's uvs silently, so the caller says which one they want
        raise ValueError(
            "texture_type='uv' keeps the OBJ's texture images and uvs and needs "
            "load_texture=True; for an untextured (white) mesh use texture_type='surface' or "
            "'vertex', or Mesh.create(..., texture_type='uv') for a white 1 x 1 image"
        )
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"OBJ file not found: {str(path)!r}")

    parsed = parse_obj(path)
    v = _normalized(parsed.vertices) if normalization else parsed.vertices.copy()
    if texture_type == "uv":
        materials = load_materials(parsed.mtllibs, parsed.material_names, path)
        image, face_uvs = uv_texture(parsed, materials, path)
        return Mesh.create(
            v.astype(np.float32)[None],
            parsed.faces.astype(np.int32)[None],
            image[None],
            texture_type="uv",
            face_uvs=face_uvs.astype(np.float32)[None],
        )
    if not load_texture:
        shape = (parsed.faces.shape[0], res * res, 3) if texture_type == "surface" else v.shape
        tex = np.ones(shape)
    else:
        materials = load_materials(parsed.mtllibs, parsed.material_names, path)
        if texture_type == "surface":
            tex = surface_textures(parsed, materials, res, sampling)
        else:
            tex = vertex_textures(parsed, materials, sampling)
    return Mesh.create(
        v.astype(np.float32)[None],
        parsed.faces.astype(np.int32)[None],
        np.clip(tex, 0.0, 1.0).astype(np.float32)[None],
        texture_type=texture_type,
    )


def _normalized(vertices: np.ndarray) -> np.ndarray:
    """SoftRas's rescaling into [-1, 1], centred (see ``load_obj``'s ``normalization``)."""
    v = vertices.copy()
    v -= v.min(axis=0)
    v /= np.abs(v).max()
    v *= 2.0
    v -= v.max(axis=0) / 2.0
    return v


def save_obj(
    path: str | os.PathLike,
    mesh: Mesh,
    save_texture: bool = False,
    texture_res_out: int = 16,
) -> None:
    """Writes a mesh (batch element 0) as a Wavefront OBJ file.

    Always writes ``v x y z`` (9 significant digits: float32 round-trips exactly) and 1-based
    ``f`` lines, faces in the mesh's order and winding. Parent folders are created.

    With ``save_texture=True``:

    * surface textures ``[1, F, R*R, 3]``: also writes ``<stem>.mtl`` (one material
      ``material_0`` with ``Kd 1 1 1`` and ``map_Kd <stem>.png``) and ``<stem>.png``, a uint8
      RGB texture atlas of ``ceil(sqrt(F))`` cells a side (rows: as many as needed), each
      ``texture_res_out`` pixels square, face ``f`` in cell ``(f // cols, f % cols)`` (row 0
      at the top). The face's triangle is a right triangle in its cell, 1 pixel from the
      cell's border, mapped by three ``vt`` per face; every pixel of the cell holds the texel
      the rasterizer picks (:func:`softjax.ops.pixel_face.face_color`) at the pixel centre's
      clipped barycentric weights, so nearest or bilinear lookups inside the triangle never
      read a neighbouring face's cell. Colours are rounded to 1/255.
    * uv textures (``texture_type='uv'``, image ``[1, H, W, 3]``): writes ``<stem>.mtl`` (as
      above) and the image as ``<stem>.png``, uint8 ``round(255 x)`` (load_obj reads it back
      exactly to that rounding), its row 0 the PNG's first (top) row; one ``vt`` per distinct
      corner uv (``face_uvs``, 9 significant digits) and ``f v/vt`` lines.
      ``texture_res_out`` is unused.
    * vertex colours ``[1, V, 3]``: writes ``v x y z r g b`` lines instead (no MTL / image).

    Args:
      path: the ``.obj`` file to write; the ``.mtl`` / ``.png`` go next to it, named after its
        stem.
      mesh: a :class:`~softjax.mesh.Mesh` with batch size 1 (padded or not: the padding of
        :func:`softjax.pad_meshes` is not written).
      save_texture: write colours as above (otherwise geometry only).
      texture_res_out: atlas cell size in pixels (>= 4). Each texel keeps a footprint of about
        ``(texture_res_out / R)^2 / 2`` pixels; with ``texture_res_out >= 3 * R`` (the default
        16: ``R <= 5``) ``load_obj(..., texture_res=R)`` with nearest sampling gives every
        texel back within the 1/255 rounding; bilinear sampling needs about twice that.

    Raises:
      TypeError: ``mesh`` is not a Mesh. ValueError: batch size other than 1, a bad
      ``texture_res_out``, or non-finite ``face_uvs``.
    """
    if not isinstance(mesh, Mesh):
        raise TypeError(f"save_obj needs a softjax Mesh, got {type(mesh).__name__}")
    if mesh.batch_size != 1:
        raise ValueError(
            f"save_obj writes a single mesh, but the mesh has batch size {mesh.batch_size}; "
            "save each batch element separately (softjax.unpad_meshes splits a padded batch)"
        )
    if mesh.face_counts is not None:  # a padded batch of one: write the mesh, not its padding
        mesh = unpad_meshes(mesh)[0]
    path = Path(path)
    vertices = np.asarray(mesh.vertices[0], np.float64)
    faces = np.asarray(mesh.faces[0], np.int64) + 1
    textures = np.asarray(mesh.textures[0], np.float64)
    surface = save_texture and mesh.texture_type == "surface"
    if surface:
        cell = check_res(texture_res_out, "texture_res_out", minimum=4)
    uv_faces = None
    if save_texture and mesh.texture_type == "uv":  # built (and checked) before any write
        uv_faces = textured_face_lines(faces, np.asarray(mesh.face_uvs[0]))
    path.parent.mkdir(parents=True, exist_ok=True)

    out = [f"# {vertices.shape[0]} vertices, {faces.shape[0]} faces; written by softjax\n"]
    if surface:
        out += _textured_lines(path, vertices, faces, textures, cell)
    elif uv_faces is not None:
        out += write_texture(path, to_uint8(textures))
        out += [rows("v %.9g %.9g %.9g\n", vertices)] + uv_faces
    else:
        out += _plain_lines(vertices, faces, textures if save_texture else None)
    path.write_text("".join(out), encoding="utf-8")


def _textured_lines(
    path: Path, vertices: np.ndarray, faces: np.ndarray, textures: np.ndarray, cell: int
) -> list[str]:
    """Writes ``<stem>.png`` (the atlas) and ``<stem>.mtl``; returns the OBJ text after the
    header. ``faces`` are 1-based, ``textures`` ``[F, R*R, 3]``."""
    atlas, uv = build_atlas(textures, cell)  # every face's triangle has three vt of its own
    return (
        write_texture(path, atlas)
        + [rows("v %.9g %.9g %.9g\n", vertices)]
        + textured_face_lines(faces, uv)
    )


def _plain_lines(vertices: np.ndarray, faces: np.ndarray, colors: np.ndarray | None) -> list[str]:
    """OBJ text after the header: ``v`` lines (with ``r g b`` when ``colors`` ``[V, 3]`` is
    given) and 1-based ``f`` lines."""
    if colors is None:
        v = rows("v %.9g %.9g %.9g\n", vertices)
    else:
        rgb = np.clip(np.nan_to_num(colors, nan=1.0), 0.0, 1.0)
        v = rows("v %.9g %.9g %.9g %.6f %.6f %.6f\n", np.hstack([vertices, rgb]))
    return [v, rows("f %d %d %d\n", faces)]
