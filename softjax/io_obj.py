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
  (:func:`texel_barycentrics`); barycentric weight ``k`` belongs to face corner ``k``.
"""

from __future__ import annotations

import math
import os
import re
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import NoReturn

import imageio.v3 as iio
import jax.numpy as jnp
import numpy as np

from softjax.mesh import Mesh
from softjax.ops.pixel_face import TEXTURE_TYPES, face_color

__all__ = [
    "ObjError",
    "ObjWarning",
    "load_obj",
    "sample_image",
    "save_obj",
    "texel_barycentrics",
]

SAMPLING_MODES = ("nearest", "bilinear")

# Statements that are valid OBJ but carry nothing a triangle Mesh can use.
_IGNORED = frozenset(
    "vn vp g o s l p mg cstype deg bmat step curv curv2 surf parm trim hole scrv sp end con "
    "bevel c_interp d_interp lod usemap maplib shadow_obj trace_obj ctech stech call csh".split()
)

# map_Kd options and how many arguments they take (ranges for -o / -s / -t: 1 to 3 numbers).
_MAP_OPTIONS = {
    "-blendu": (1, 1),
    "-blendv": (1, 1),
    "-bm": (1, 1),
    "-boost": (1, 1),
    "-cc": (1, 1),
    "-clamp": (1, 1),
    "-imfchan": (1, 1),
    "-texres": (1, 1),
    "-type": (1, 1),
    "-mm": (2, 2),
    "-o": (1, 3),
    "-s": (1, 3),
    "-t": (1, 3),
}

_ATLAS_PAD = 1.0  # distance (pixels) from an atlas cell's border to its triangle


class ObjError(ValueError):
    """Malformed OBJ or MTL input.

    The message names the file, the 1-based line number and the offending line text (when the
    problem belongs to a line). Attributes ``path``, ``lineno`` and ``line`` hold them too.
    """

    def __init__(
        self,
        message: str,
        path: str | os.PathLike | None = None,
        lineno: int | None = None,
        line: str | None = None,
    ):
        self.path = None if path is None else str(path)
        self.lineno = lineno
        self.line = line
        text = message
        if path is not None:
            where = f"{path}" if lineno is None else f"{path}, line {lineno}"
            text = f"{where}: {message}"
            if line is not None:
                text += f': "{line}"'
        super().__init__(text)


class ObjWarning(UserWarning):
    """Recoverable OBJ / MTL problem (missing material library or texture image, unknown
    material or statement); loading goes on with the documented fallback."""


def texel_barycentrics(texture_res: int) -> np.ndarray:
    """Barycentric weights of the centres of a face's ``R x R`` texels.

    Args:
      texture_res: ``R >= 1``.

    Returns:
      ``[R*R, 3]`` float64 ``(w0, w1, w2)``, row ``t`` for texel ``t``: the centroid of the
      texel's sub-triangle in the layout of :func:`softjax.ops.pixel_face.face_color`. Texel
      ``t = jj * R + ii`` with ``ii + jj <= R - 1`` is the lower sub-triangle of cell
      ``(ii, jj)``: ``w0 = (ii + 1/3) / R``, ``w1 = (jj + 1/3) / R``; otherwise it is the upper
      sub-triangle of cell ``(i, j) = (R-1-ii, R-1-jj)``: ``w0 = (i + 2/3) / R``,
      ``w1 = (j + 2/3) / R``. Always ``w2 = 1 - w0 - w1``.
    """
    r = _check_res(texture_res, "texture_res")
    t = np.arange(r * r)
    ii, jj = t % r, t // r
    lower = ii + jj <= r - 1
    w0 = np.where(lower, (ii + 1.0 / 3.0) / r, (r - 1 - ii + 2.0 / 3.0) / r)
    w1 = np.where(lower, (jj + 1.0 / 3.0) / r, (r - 1 - jj + 2.0 / 3.0) / r)
    return np.stack([w0, w1, 1.0 - w0 - w1], axis=-1)


def _check_res(value, name: str, minimum: int = 1) -> int:
    if isinstance(value, bool) or not isinstance(value, int | np.integer) or value < minimum:
        raise ValueError(f"{name} must be an int >= {minimum}, got {value!r}")
    return int(value)


# ----------------------------------------------------------------------------------------------
# Reading


def _logical_lines(path: Path):
    """Yields ``(lineno, text)``: lines without their newline, backslash continuations joined
    (numbered by their first physical line)."""
    with open(path, encoding="utf-8", errors="replace") as fh:
        pending: str | None = None
        start = 0
        for lineno, raw in enumerate(fh, 1):
            line = raw.rstrip("\r\n")
            if pending is None:
                start = lineno
            else:
                line = pending + " " + line
            if line.endswith("\\"):
                pending = line[:-1]
                continue
            pending = None
            yield start, line
        if pending is not None:
            yield start, pending


def _line_text(path: Path, lineno: int) -> str:
    for n, text in _logical_lines(path):
        if n == lineno:
            return text
    return ""


def _floats(tokens: list[str]) -> list[float]:
    return [float(t) for t in tokens]


def _index(token: str, count: int) -> int:
    """0-based index from a 1-based (or negative, relative) OBJ index; ``-1`` marks 0 or a
    relative index before the first element. Raises ValueError for a non-integer."""
    k = int(token)
    if k > 0:
        return k - 1
    if k < 0 and count + k >= 0:
        return count + k
    return -1


@dataclass
class _Parsed:
    vertices: np.ndarray  # [V, 3] float64
    colors: np.ndarray | None  # [V, 3] float64 in [0, 1], or None
    uvs: np.ndarray  # [T, 2] float64
    faces: np.ndarray  # [F, 3] int64
    face_uv: np.ndarray  # [F, 3] int64, -1 where the face has no (complete) vt indices
    face_mat: np.ndarray  # [F] int64 index into material_names, -1 for none
    material_names: list[str]
    mtllibs: list[tuple[str, int, str]]  # (argument, lineno, line)


def _parse_obj(path: Path) -> _Parsed:
    verts: list[list[float]] = []
    colors: list[list[float] | None] = []
    uvs: list[list[float]] = []
    tri_v: list[int] = []
    tri_t: list[int] = []
    tri_m: list[int] = []
    tri_line: list[int] = []
    mat_index: dict[str, int] = {}
    mtllibs: list[tuple[str, int, str]] = []
    current_mat = -1
    unknown: set[str] = set()

    for lineno, line in _logical_lines(path):
        body = line.split("#", 1)[0].strip()
        if not body:
            continue
        tokens = body.split()
        key, args = tokens[0], tokens[1:]

        def fail(msg: str, _n: int = lineno, _line: str = line) -> NoReturn:
            raise ObjError(msg, path, _n, _line) from None

        if key == "v":
            try:
                nums = _floats(args)
            except ValueError:
                fail("vertex coordinates must be numbers")
            if len(nums) < 3:
                fail(f"a vertex needs 3 coordinates, got {len(nums)}")
            verts.append(nums[:3])
            # 'v x y z' / 'v x y z w' / 'v x y z r g b [a]' (the common vertex-colour extension)
            colors.append(nums[3:6] if len(nums) >= 6 else None)
        elif key == "vt":
            try:
                nums = _floats(args)
            except ValueError:
                fail("texture coordinates must be numbers")
            if not nums:
                fail("a texture coordinate needs at least u")
            uvs.append([nums[0], nums[1] if len(nums) > 1 else 0.0])
        elif key == "f":
            if len(args) < 3:
                fail(f"a face needs at least 3 vertices, got {len(args)}")
            vi: list[int] = []
            ti: list[int] = []
            for tok in args:
                parts = tok.split("/")
                if len(parts) > 3 or not parts[0]:
                    fail(f"bad face vertex {tok!r} (expected i, i/t, i//n or i/t/n)")
                try:
                    a = _index(parts[0], len(verts))
                except ValueError:
                    fail(f"non-integer vertex index {parts[0]!r}")
                if a < 0:
                    fail(
                        f"vertex index {parts[0]} out of range (indices start at 1; "
                        f"{len(verts)} vertices so far)"
                    )
                vi.append(a)
                t = -1
                if len(parts) > 1 and parts[1]:
                    try:
                        t = _index(parts[1], len(uvs))
                    except ValueError:
                        fail(f"non-integer texture coordinate index {parts[1]!r}")
                    if t < 0:
                        fail(
                            f"texture coordinate index {parts[1]} out of range "
                            f"({len(uvs)} texture coordinates so far)"
                        )
                ti.append(t)
                if len(parts) > 2 and parts[2]:
                    try:
                        int(parts[2])
                    except ValueError:
                        fail(f"non-integer normal index {parts[2]!r}")
            has_t = min(ti) >= 0
            for k in range(1, len(vi) - 1):
                tri_v += (vi[0], vi[k], vi[k + 1])
                tri_t += (ti[0], ti[k], ti[k + 1]) if has_t else (-1, -1, -1)
                tri_m.append(current_mat)
                tri_line.append(lineno)
        elif key == "usemtl":
            name = body[len(key) :].strip()
            current_mat = mat_index.setdefault(name, len(mat_index)) if name else -1
        elif key == "mtllib":
            mtllibs.append((body[len(key) :].strip(), lineno, line))
        elif key not in _IGNORED and key not in unknown:
            unknown.add(key)
            warnings.warn(
                f"{path}, line {lineno}: ignoring unknown OBJ statement {key!r}",
                ObjWarning,
                stacklevel=3,
            )

    if not tri_v:
        raise ObjError("the file has no faces ('f' statements); a mesh needs at least one", path)
    faces = np.asarray(tri_v, np.int64).reshape(-1, 3)
    face_uv = np.asarray(tri_t, np.int64).reshape(-1, 3)
    for arr, count, what in (
        (faces, len(verts), "vertex"),
        (face_uv, len(uvs), "texture coordinate"),
    ):
        bad = np.nonzero(arr.max(axis=1) >= count)[0]
        if bad.size:
            n = tri_line[int(bad[0])]
            kind = "vertices" if what == "vertex" else "texture coordinates"
            raise ObjError(
                f"{what} index {int(arr[bad[0]].max()) + 1} out of range (the file defines "
                f"{count} {kind})",
                path,
                n,
                _line_text(path, n),
            )

    vc = None
    if any(c is not None for c in colors):
        vc = np.asarray([c if c is not None else [np.nan] * 3 for c in colors], np.float64)
        finite = vc[np.isfinite(vc)]
        if finite.size and finite.max() > 1.0:  # 0..255 colours
            vc = vc / 255.0
        vc = np.clip(np.nan_to_num(vc, nan=1.0), 0.0, 1.0)
    return _Parsed(
        vertices=np.asarray(verts, np.float64).reshape(-1, 3),
        colors=vc,
        uvs=np.asarray(uvs, np.float64).reshape(-1, 2),
        faces=faces,
        face_uv=face_uv,
        face_mat=np.asarray(tri_m, np.int64),
        material_names=list(mat_index),
        mtllibs=mtllibs,
    )


@dataclass
class _Material:
    kd: np.ndarray | None = None  # [3] in [0, 1]
    map_path: Path | None = None  # existing image file
    map_name: str | None = None  # as written in the MTL file
    scale: np.ndarray = field(default_factory=lambda: np.ones(2))  # map_Kd -s
    offset: np.ndarray = field(default_factory=lambda: np.zeros(2))  # map_Kd -o
    image: tuple[np.ndarray, float] | None = None  # (_image_rgb result), loaded lazily


def _is_float(token: str) -> bool:
    try:
        float(token)
    except ValueError:
        return False
    return True


def _parse_map_args(rest: str) -> tuple[str, np.ndarray, np.ndarray]:
    """Splits ``map_Kd`` arguments into (file name, uv scale, uv offset); the file name is
    everything after the options, inner spaces included."""
    tokens = list(re.finditer(r"\S+", rest))
    scale, offset = np.ones(2), np.zeros(2)
    i = 0
    while i < len(tokens) and tokens[i].group().lower() in _MAP_OPTIONS:
        opt = tokens[i].group().lower()
        lo, hi = _MAP_OPTIONS[opt]
        i += 1
        values: list[str] = []
        while len(values) < hi and i < len(tokens) - 1:  # always leave a file name
            tok = tokens[i].group()
            if len(values) >= lo and not _is_float(tok):
                break
            values.append(tok)
            i += 1
        nums = [float(v) for v in values if _is_float(v)]
        if opt == "-s" and nums:
            scale = np.asarray([nums[0], nums[1] if len(nums) > 1 else 1.0])
        elif opt == "-o" and nums:
            offset = np.asarray([nums[0], nums[1] if len(nums) > 1 else 0.0])
    name = rest[tokens[i].start() :].strip() if i < len(tokens) else ""
    return name, scale, offset


def _find_file(name: str, folders: list[Path]) -> Path | None:
    name = name.strip().strip('"')
    candidates = [name, name.replace("\\", "/")]
    for cand in candidates:
        p = Path(cand)
        if p.is_absolute() and p.is_file():
            return p
        for folder in folders:
            if (folder / cand).is_file():
                return folder / cand
    base = Path(name.replace("\\", "/")).name
    for folder in folders:
        if base and (folder / base).is_file():
            return folder / base
    return None


def _parse_mtl(path: Path, obj_dir: Path, materials: dict[str, _Material]) -> None:
    current: _Material | None = None
    for lineno, line in _logical_lines(path):
        body = line.split("#", 1)[0].strip()
        if not body:
            continue
        tokens = body.split()
        key = tokens[0].lower()
        if key == "newmtl":
            current = materials[body[len(tokens[0]) :].strip()] = _Material()
        elif current is None:
            continue
        elif key == "kd":
            args = tokens[1:]
            if args and args[0].lower() in ("spectral", "xyz"):
                continue  # not supported: keep the default
            try:
                nums = _floats(args)
            except ValueError:
                raise ObjError("Kd needs numbers r g b", path, lineno, line) from None
            if not nums:
                raise ObjError("Kd needs numbers r g b", path, lineno, line)
            rgb = (nums + nums[-1:] * 2)[:3] if len(nums) < 3 else nums[:3]
            current.kd = np.clip(np.asarray(rgb, np.float64), 0.0, 1.0)
        elif key == "map_kd":
            name, scale, offset = _parse_map_args(body[len(tokens[0]) :])
            if not name:
                raise ObjError("map_Kd needs a file name", path, lineno, line)
            current.map_name = name
            current.map_path = _find_file(name, [path.parent, obj_dir])
            current.scale, current.offset = scale, offset
            if current.map_path is None:
                warnings.warn(
                    f"{path}, line {lineno}: texture image {name!r} not found (looked in "
                    f"{path.parent} and {obj_dir}); the material uses its Kd colour (white "
                    "without Kd)",
                    ObjWarning,
                    stacklevel=4,
                )


def _image_rgb(arr: np.ndarray) -> tuple[np.ndarray, float]:
    """Any image array -> (``[H, W, 3]`` RGB view in its own dtype, value of full intensity).

    Alpha is dropped and grey repeated without copying; conversion to [0, 1] floats happens
    on the sampled values only (images can be large)."""
    a = np.asarray(arr)
    if a.ndim == 4:  # animated / multi-page: first frame
        a = a[0]
    if a.ndim == 2:
        a = a[..., None]
    if a.ndim != 3 or a.shape[0] == 0 or a.shape[1] == 0 or a.shape[2] == 0:
        raise ValueError(f"not an image array: shape {np.shape(arr)}")
    top = 1.0
    if a.dtype == bool:
        a = a.view(np.uint8)
    elif a.dtype == np.uint8:
        top = 255.0
    elif np.issubdtype(a.dtype, np.integer):
        top = 65535.0 if a.dtype == np.uint16 or a.max() <= 65535 else np.iinfo(a.dtype).max
    elif not np.issubdtype(a.dtype, np.floating):
        raise ValueError(f"unsupported image dtype {a.dtype}")
    if a.shape[-1] < 3:
        a = np.broadcast_to(a[..., :1], a.shape[:2] + (3,))
    return a[..., :3], float(top)


def _wrap(t: np.ndarray) -> np.ndarray:
    t = np.nan_to_num(t)
    return np.where((t >= 0.0) & (t <= 1.0), t, t - np.floor(t))


def sample_image(image: np.ndarray, uv: np.ndarray, sampling: str = "nearest") -> np.ndarray:
    """Samples an image at texture coordinates.

    Args:
      image: ``[H, W, C]`` array.
      uv: ``[..., 2]`` float, ``u`` right and ``v`` up; values outside ``[0, 1]`` wrap around
        (repeat).
      sampling: ``'nearest'`` (the texel containing row ``(1 - v) H``, column ``u W``) or
        ``'bilinear'`` (texel centres at half-integer rows and columns, wrapping at borders).

    Returns:
      ``[..., C]`` float64, in the image's units (e.g. 0..255 for uint8).
    """
    img = np.asarray(image)
    h, w = img.shape[:2]
    u = _wrap(np.asarray(uv[..., 0], np.float64))
    v = _wrap(np.asarray(uv[..., 1], np.float64))
    if sampling == "nearest":
        col = np.clip(np.floor(u * w), 0, w - 1).astype(np.int64)
        row = np.clip(np.floor((1.0 - v) * h), 0, h - 1).astype(np.int64)
        return img[row, col].astype(np.float64)
    if sampling != "bilinear":
        raise ValueError(f"sampling must be one of {list(SAMPLING_MODES)}, got {sampling!r}")
    x = u * w - 0.5
    y = (1.0 - v) * h - 0.5
    x0, y0 = np.floor(x), np.floor(y)
    fx, fy = (x - x0)[..., None], (y - y0)[..., None]
    c0, r0 = x0.astype(np.int64) % w, y0.astype(np.int64) % h
    c1, r1 = (c0 + 1) % w, (r0 + 1) % h

    def at(r, c):
        return img[r, c].astype(np.float64)

    top = at(r0, c0) * (1.0 - fx) + at(r0, c1) * fx
    bottom = at(r1, c0) * (1.0 - fx) + at(r1, c1) * fx
    return top * (1.0 - fy) + bottom * fy


def _material_image(mat: _Material) -> tuple[np.ndarray, float] | None:
    if mat.image is None and mat.map_path is not None:
        try:
            mat.image = _image_rgb(iio.imread(mat.map_path))
        except Exception as e:  # unreadable image: same fallback as a missing one
            warnings.warn(
                f"could not read texture image {str(mat.map_path)!r} ({e}); the material uses "
                "its Kd colour (white without Kd)",
                ObjWarning,
                stacklevel=4,
            )
            mat.map_path = None
    return mat.image


def _sample_rgb(image: tuple[np.ndarray, float], uv: np.ndarray, sampling: str) -> np.ndarray:
    data, top = image
    return np.clip(np.nan_to_num(sample_image(data, uv, sampling) / top), 0.0, 1.0)


def _load_materials(parsed: _Parsed, path: Path) -> list[_Material | None]:
    """Materials in the order of ``parsed.material_names`` (None: undefined)."""
    materials: dict[str, _Material] = {}
    all_found = True
    for arg, lineno, _line in parsed.mtllibs:
        found = _find_file(arg, [path.parent])
        names = [arg] if found is not None else arg.split()
        for name in names:
            mtl = found if found is not None else _find_file(name, [path.parent])
            if mtl is None:
                all_found = False
                warnings.warn(
                    f"{path}, line {lineno}: material library {name!r} not found in "
                    f"{path.parent}; faces using its materials fall back to white",
                    ObjWarning,
                    stacklevel=3,
                )
                continue
            _parse_mtl(mtl, path.parent, materials)
    out: list[_Material | None] = []
    for name in parsed.material_names:
        mat = materials.get(name)
        if mat is None and all_found:
            warnings.warn(
                f"{path}: material {name!r} is used but not defined; its faces are white",
                ObjWarning,
                stacklevel=3,
            )
        out.append(mat)
    return out


def _corner_uv(parsed: _Parsed, sel: np.ndarray, mat: _Material) -> np.ndarray:
    uv = parsed.uvs[parsed.face_uv[sel]]  # [n, 3, 2]
    return uv * mat.scale + mat.offset


def _surface_textures(
    parsed: _Parsed, materials: list[_Material | None], res: int, sampling: str
) -> np.ndarray:
    w = texel_barycentrics(res)  # [T, 3]
    num_faces = parsed.faces.shape[0]
    tex = np.ones((num_faces, res * res, 3))
    if parsed.colors is not None:
        tex = np.einsum("tk,fkc->ftc", w, parsed.colors[parsed.faces])
    for m, mat in enumerate(materials):
        if mat is None:
            continue
        sel = parsed.face_mat == m
        if parsed.colors is None:
            tex[sel] = 1.0 if mat.kd is None else mat.kd
        image = _material_image(mat)
        if image is None:
            continue
        sel &= parsed.face_uv[:, 0] >= 0
        if np.any(sel):
            uv = np.einsum("tk,nkc->ntc", w, _corner_uv(parsed, sel, mat))
            tex[sel] = _sample_rgb(image, uv, sampling)
    return tex


def _vertex_textures(
    parsed: _Parsed, materials: list[_Material | None], sampling: str
) -> np.ndarray:
    if parsed.colors is not None:
        return parsed.colors
    num_faces, num_verts = parsed.faces.shape[0], parsed.vertices.shape[0]
    corner = np.ones((num_faces, 3, 3))
    for m, mat in enumerate(materials):
        if mat is None:
            continue
        sel = parsed.face_mat == m
        corner[sel] = 1.0 if mat.kd is None else mat.kd
        image = _material_image(mat)
        if image is None:
            continue
        sel &= parsed.face_uv[:, 0] >= 0
        if np.any(sel):
            corner[sel] = _sample_rgb(image, _corner_uv(parsed, sel, mat), sampling)
    sums = np.zeros((num_verts, 3))
    counts = np.zeros(num_verts)
    np.add.at(sums, parsed.faces.reshape(-1), corner.reshape(-1, 3))
    np.add.at(counts, parsed.faces.reshape(-1), 1.0)
    return np.where(counts[:, None] > 0, sums / np.maximum(counts, 1.0)[:, None], 1.0)


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
      texture_res: ``R``, texels per face side for ``texture_type='surface'``.
      texture_type: ``'surface'``: ``textures`` ``[1, F, R*R, 3]``, texel ``t`` sampled at
        :func:`texel_barycentrics` (the rasterizer's texel layout); ``'vertex'``:
        ``textures`` ``[1, V, 3]``, the ``v`` line colours if present, else, per vertex, the
        mean over the face corners at that vertex of the colour sampled at the corner's uv (or
        the material's Kd); vertices used by no face are white.
      sampling: image lookup, ``'nearest'`` (default; exact for :func:`save_obj` atlases) or
        ``'bilinear'``; uv outside [0, 1] wraps around (repeat).

    Returns:
      :class:`~softjax.mesh.Mesh` with batch size 1: vertices ``[1, V, 3]`` float32, faces
      ``[1, F, 3]`` int32 (0-based), textures float32 in [0, 1] as above.

    Raises:
      FileNotFoundError: ``path`` does not exist.
      ObjError: (a ValueError) malformed input: a ``v`` with fewer than 3 numbers or
        non-numbers, a ``vt`` with non-numbers, an ``f`` with fewer than 3 vertices or a
        non-integer index, an index of 0 or beyond the vertices / texture coordinates defined,
        a file without faces, or a bad ``Kd`` / ``map_Kd`` line in an MTL file. The message
        names the file, the 1-based line number and the line's text.
      ValueError: bad arguments.

    Missing MTL files and missing or unreadable texture images are not errors: an
    :class:`ObjWarning` names the file and the affected faces fall back to Kd (or white).
    """
    res = _check_res(texture_res, "texture_res")
    if texture_type not in TEXTURE_TYPES:
        raise ValueError(f"texture_type must be one of {list(TEXTURE_TYPES)}, got {texture_type!r}")
    if sampling not in SAMPLING_MODES:
        raise ValueError(f"sampling must be one of {list(SAMPLING_MODES)}, got {sampling!r}")
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"OBJ file not found: {str(path)!r}")

    parsed = _parse_obj(path)
    v = parsed.vertices.copy()
    if normalization:
        v -= v.min(axis=0)
        v /= np.abs(v).max()
        v *= 2.0
        v -= v.max(axis=0) / 2.0

    if not load_texture:
        shape = (parsed.faces.shape[0], res * res, 3) if texture_type == "surface" else v.shape
        tex = np.ones(shape)
    else:
        materials = _load_materials(parsed, path)
        if texture_type == "surface":
            tex = _surface_textures(parsed, materials, res, sampling)
        else:
            tex = _vertex_textures(parsed, materials, sampling)
    return Mesh.create(
        v.astype(np.float32)[None],
        parsed.faces.astype(np.int32)[None],
        np.clip(tex, 0.0, 1.0).astype(np.float32)[None],
        texture_type=texture_type,
    )


# ----------------------------------------------------------------------------------------------
# Writing


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
    ids = jnp.arange(res * res, dtype=jnp.float32).reshape(1, 1, -1, 1)
    texel = face_color(jnp.asarray(w, jnp.float32)[:, None, :], ids, "surface")  # [P, 1, 1]
    return np.rint(np.asarray(texel)).astype(np.int64).reshape(cell, cell)


def _atlas(textures: np.ndarray, cell: int) -> tuple[np.ndarray, np.ndarray]:
    """Texture atlas ``[H, W, 3]`` uint8 and per-face corner uvs ``[F, 3, 2]`` for surface
    textures ``[F, R*R, 3]``: face ``f`` fills cell ``(f // cols, f % cols)``."""
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


def _rows(fmt: str, arr: np.ndarray) -> str:
    return "".join(fmt % tuple(row) for row in arr.tolist())


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
    * vertex colours ``[1, V, 3]``: writes ``v x y z r g b`` lines instead (no MTL / image).

    Args:
      path: the ``.obj`` file to write; the ``.mtl`` / ``.png`` go next to it, named after its
        stem.
      mesh: a :class:`~softjax.mesh.Mesh` with batch size 1.
      save_texture: write colours as above (otherwise geometry only).
      texture_res_out: atlas cell size in pixels (>= 4). Each texel keeps a footprint of about
        ``(texture_res_out / R)^2 / 2`` pixels; with ``texture_res_out >= 3 * R`` (the default
        16: ``R <= 5``) ``load_obj(..., texture_res=R)`` with nearest sampling gives every
        texel back within the 1/255 rounding; bilinear sampling needs about twice that.

    Raises:
      TypeError: ``mesh`` is not a Mesh. ValueError: batch size other than 1, or a bad
      ``texture_res_out``.
    """
    if not isinstance(mesh, Mesh):
        raise TypeError(f"save_obj needs a softjax Mesh, got {type(mesh).__name__}")
    if mesh.batch_size != 1:
        raise ValueError(
            f"save_obj writes a single mesh, but the mesh has batch size {mesh.batch_size}; "
            "save each batch element separately"
        )
    path = Path(path)
    vertices = np.asarray(mesh.vertices[0], np.float64)
    faces = np.asarray(mesh.faces[0], np.int64) + 1
    textures = np.asarray(mesh.textures[0], np.float64)
    surface = save_texture and mesh.texture_type == "surface"
    if surface:
        cell = _check_res(texture_res_out, "texture_res_out", minimum=4)
    path.parent.mkdir(parents=True, exist_ok=True)

    out = [f"# {vertices.shape[0]} vertices, {faces.shape[0]} faces; written by softjax\n"]
    if surface:
        stem = path.stem
        atlas, uv = _atlas(textures, cell)
        iio.imwrite(path.with_name(stem + ".png"), atlas)
        path.with_name(stem + ".mtl").write_text(
            "# written by softjax\nnewmtl material_0\nKa 0 0 0\nKd 1 1 1\nKs 0 0 0\nd 1\n"
            f"illum 1\nmap_Kd {stem}.png\n",
            encoding="utf-8",
        )
        out.append(f"mtllib {stem}.mtl\n")
        out.append(_rows("v %.9g %.9g %.9g\n", vertices))
        out.append(_rows("vt %.9g %.9g\n", uv.reshape(-1, 2)))
        out.append("usemtl material_0\n")
        t = np.arange(1, 3 * faces.shape[0] + 1).reshape(-1, 3)
        out.append(_rows("f %d/%d %d/%d %d/%d\n", np.stack([faces, t], -1).reshape(-1, 6)))
    else:
        if save_texture:  # vertex colours
            rgb = np.clip(np.nan_to_num(textures, nan=1.0), 0.0, 1.0)
            out.append(_rows("v %.9g %.9g %.9g %.6f %.6f %.6f\n", np.hstack([vertices, rgb])))
        else:
            out.append(_rows("v %.9g %.9g %.9g\n", vertices))
        out.append(_rows("f %d %d %d\n", faces))
    path.write_text("".join(out), encoding="utf-8")
