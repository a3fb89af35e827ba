"""OBJ statement parsing: a file's vertices, texture coordinates and triangulated faces."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import NoReturn

import numpy as np

from softjax.io.errors import ObjError, warn
from softjax.io.lines import floats, line_text, statements

__all__ = ["ParsedObj", "parse_obj"]

# Statements that are valid OBJ but carry nothing a triangle Mesh can use.
_IGNORED = frozenset(
    "vn vp g o s l p mg cstype deg bmat step curv curv2 surf parm trim hole scrv sp end con "
    "bevel c_interp d_interp lod usemap maplib shadow_obj trace_obj ctech stech call csh".split()
)


@dataclass
class ParsedObj:
    """The arrays of one OBJ file, indices 0-based."""

    vertices: np.ndarray  # [V, 3] float64
    colors: np.ndarray | None  # [V, 3] float64 in [0, 1], or None
    uvs: np.ndarray  # [T, 2] float64
    faces: np.ndarray  # [F, 3] int64
    face_uv: np.ndarray  # [F, 3] int64, -1 where the face has no (complete) vt indices
    face_mat: np.ndarray  # [F] int64 index into material_names, -1 for none
    material_names: list[str]
    mtllibs: list[tuple[str, int, str]]  # (argument, lineno, line)


def _index(token: str, count: int) -> int:
    """0-based index from a 1-based (or negative, relative) OBJ index; ``-1`` marks 0 or a
    relative index before the first element. Raises ValueError for a non-integer."""
    k = int(token)
    if k > 0:
        return k - 1
    if k < 0 and count + k >= 0:
        return count + k
    return -1


def _vertex_colors(colors: list[list[float] | None]) -> np.ndarray | None:
    """``[V, 3]`` colours in [0, 1] from the ``v x y z r g b`` extension (white where a vertex
    has none), or None when no vertex has one."""
    if all(c is None for c in colors):
        return None
    vc = np.asarray([c if c is not None else [np.nan] * 3 for c in colors], np.float64)
    finite = vc[np.isfinite(vc)]
    if finite.size and finite.max() > 1.0:  # 0..255 colours
        vc = vc / 255.0
    return np.clip(np.nan_to_num(vc, nan=1.0), 0.0, 1.0)


class _ObjReader:
    """Collects an OBJ file's statements, one logical line at a time."""

    def __init__(self, path: Path):
        self.path = path
        self.verts: list[list[float]] = []
        self.colors: list[list[float] | None] = []
        self.uvs: list[list[float]] = []
        self.tri_v: list[int] = []
        self.tri_t: list[int] = []
        self.tri_m: list[int] = []
        self.tri_line: list[int] = []
        self.mat_index: dict[str, int] = {}
        self.mtllibs: list[tuple[str, int, str]] = []
        self.current_mat = -1
        self.unknown: set[str] = set()
        self.lineno = 0
        self.line = ""

    def fail(self, msg: str) -> NoReturn:
        """Raises :class:`ObjError` for the current line (``from None``: the parse error
        behind it says nothing more)."""
        raise ObjError(msg, self.path, self.lineno, self.line) from None

    def statement(self, lineno: int, line: str, body: str) -> None:
        """Handles one logical line; ``body`` is ``line`` without its comment."""
        self.lineno, self.line = lineno, line
        key, *args = body.split()
        if key == "v":
            self.vertex(args)
        elif key == "vt":
            self.tex_coord(args)
        elif key == "f":
            self.face(args)
        elif key == "usemtl":
            name = body[len(key) :].strip()
            self.current_mat = self.mat_index.setdefault(name, len(self.mat_index)) if name else -1
        elif key == "mtllib":
            self.mtllibs.append((body[len(key) :].strip(), lineno, line))
        elif key not in _IGNORED and key not in self.unknown:
            self.unknown.add(key)
            warn(f"{self.path}, line {lineno}: ignoring unknown OBJ statement {key!r}")

    def vertex(self, args: list[str]) -> None:
        try:
            nums = floats(args)
        except ValueError:
            self.fail("vertex coordinates must be numbers")
        if len(nums) < 3:
            self.fail(f"a vertex needs 3 coordinates, got {len(nums)}")
        self.verts.append(nums[:3])
        # 'v x y z' / 'v x y z w' / 'v x y z r g b [a]' (the common vertex-colour extension)
        self.colors.append(nums[3:6] if len(nums) >= 6 else None)

    def tex_coord(self, args: list[str]) -> None:
        try:
            nums = floats(args)
        except ValueError:
            self.fail("texture coordinates must be numbers")
        if not nums:
            self.fail("a texture coordinate needs at least u")
        self.uvs.append([nums[0], nums[1] if len(nums) > 1 else 0.0])

    def face(self, args: list[str]) -> None:
        if len(args) < 3:
            self.fail(f"a face needs at least 3 vertices, got {len(args)}")
        vi, ti = zip(*(self.corner(tok) for tok in args), strict=True)
        has_t = min(ti) >= 0
        for k in range(1, len(vi) - 1):  # fan triangulation
            self.tri_v += (vi[0], vi[k], vi[k + 1])
            self.tri_t += (ti[0], ti[k], ti[k + 1]) if has_t else (-1, -1, -1)
            self.tri_m.append(self.current_mat)
            self.tri_line.append(self.lineno)

    def corner(self, tok: str) -> tuple[int, int]:
        """0-based (vertex, texture coordinate) of a face vertex ``i``, ``i/t``, ``i//n`` or
        ``i/t/n``; the texture coordinate is -1 when absent."""
        parts = tok.split("/")
        if len(parts) > 3 or not parts[0]:
            self.fail(f"bad face vertex {tok!r} (expected i, i/t, i//n or i/t/n)")
        v = self.index(parts[0], len(self.verts), "vertex index")
        if v < 0:
            self.fail(
                f"vertex index {parts[0]} out of range (indices start at 1; "
                f"{len(self.verts)} vertices so far)"
            )
        t = -1
        if len(parts) > 1 and parts[1]:
            t = self.index(parts[1], len(self.uvs), "texture coordinate index")
            if t < 0:
                self.fail(
                    f"texture coordinate index {parts[1]} out of range "
                    f"({len(self.uvs)} texture coordinates so far)"
                )
        if len(parts) > 2 and parts[2]:
            self.index(parts[2], 0, "normal index")  # normals are dropped, but must be ints
        return v, t

    def index(self, token: str, count: int, what: str) -> int:
        """:func:`_index` of ``token``; a non-integer fails, naming it as ``what``."""
        try:
            return _index(token, count)
        except ValueError:
            self.fail(f"non-integer {what} {token!r}")

    def finish(self) -> ParsedObj:
        if not self.tri_v:
            raise ObjError(
                "the file has no faces ('f' statements); a mesh needs at least one", self.path
            )
        faces = np.asarray(self.tri_v, np.int64).reshape(-1, 3)
        face_uv = np.asarray(self.tri_t, np.int64).reshape(-1, 3)
        # indices may point forward while reading, so the range is only known at the end
        self.check_range(faces, len(self.verts), "vertex", "vertices")
        self.check_range(face_uv, len(self.uvs), "texture coordinate", "texture coordinates")
        return ParsedObj(
            vertices=np.asarray(self.verts, np.float64).reshape(-1, 3),
            colors=_vertex_colors(self.colors),
            uvs=np.asarray(self.uvs, np.float64).reshape(-1, 2),
            faces=faces,
            face_uv=face_uv,
            face_mat=np.asarray(self.tri_m, np.int64),
            material_names=list(self.mat_index),
            mtllibs=self.mtllibs,
        )

    def check_range(self, tris: np.ndarray, count: int, what: str, plural: str) -> None:
        """Fails on the first triangle whose index in ``tris`` is ``count`` or more."""
        bad = np.nonzero(tris.max(axis=1) >= count)[0]
        if bad.size:
            n = self.tri_line[int(bad[0])]
            raise ObjError(
                f"{what} index {int(tris[bad[0]].max()) + 1} out of range (the file defines "
                f"{count} {plural})",
                self.path,
                n,
                line_text(self.path, n),
            )


def parse_obj(path: Path) -> ParsedObj:
    """Reads the OBJ statements of ``path``; raises :class:`ObjError` for malformed lines and
    warns once per unknown statement."""
    reader = _ObjReader(path)
    for lineno, line, body in statements(path):
        reader.statement(lineno, line, body)
    return reader.finish()
