"""MTL material libraries: diffuse colours (``Kd``) and texture images (``map_Kd``)."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path

import imageio.v3 as iio
import numpy as np

from softjax.io.errors import ObjError, warn
from softjax.io.lines import floats, statements
from softjax.io.sampling import image_rgb

__all__ = ["Material", "load_materials", "material_image"]

# map_Kd options and how many arguments they take (ranges for -o / -s / -t: 1 to 3 numbers).
_MAP_OPTIONS = {
    **dict.fromkeys(
        ("-blendu", "-blendv", "-bm", "-boost", "-cc", "-clamp", "-imfchan", "-texres", "-type"),
        (1, 1),
    ),
    "-mm": (2, 2),
    **dict.fromkeys(("-o", "-s", "-t"), (1, 3)),
}


@dataclass
class Material:
    """One ``newmtl`` entry."""

    kd: np.ndarray | None = None  # [3] in [0, 1]
    map_path: Path | None = None  # existing image file
    map_name: str | None = None  # as written in the MTL file
    scale: np.ndarray = field(default_factory=lambda: np.ones(2))  # map_Kd -s
    offset: np.ndarray = field(default_factory=lambda: np.zeros(2))  # map_Kd -o
    image: tuple[np.ndarray, float] | None = None  # (image_rgb result), loaded lazily


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
    """An existing file named ``name`` (absolute, or relative to one of ``folders``, Windows
    separators accepted), else the same base name in one of ``folders``, else None."""
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


def _parse_kd(mat: Material, args: list[str], path: Path, lineno: int, line: str) -> None:
    if args and args[0].lower() in ("spectral", "xyz"):
        return  # not supported: keep the default
    try:
        nums = floats(args)
    except ValueError:
        raise ObjError("Kd needs numbers r g b", path, lineno, line) from None
    if not nums:
        raise ObjError("Kd needs numbers r g b", path, lineno, line)
    rgb = (nums + nums[-1:] * 2)[:3] if len(nums) < 3 else nums[:3]
    mat.kd = np.clip(np.asarray(rgb, np.float64), 0.0, 1.0)


def _parse_map_kd(
    mat: Material, rest: str, path: Path, obj_dir: Path, lineno: int, line: str
) -> None:
    name, scale, offset = _parse_map_args(rest)
    if not name:
        raise ObjError("map_Kd needs a file name", path, lineno, line)
    mat.map_name = name
    mat.map_path = _find_file(name, [path.parent, obj_dir])
    mat.scale, mat.offset = scale, offset
    if mat.map_path is None:
        warn(
            f"{path}, line {lineno}: texture image {name!r} not found (looked in "
            f"{path.parent} and {obj_dir}); the material uses its Kd colour (white "
            "without Kd)"
        )


def _parse_mtl(path: Path, obj_dir: Path, materials: dict[str, Material]) -> None:
    """Adds the materials of the MTL file ``path`` to ``materials`` (later ones win)."""
    current: Material | None = None
    for lineno, line, body in statements(path):
        keyword = body.split()[0]
        key, rest = keyword.lower(), body[len(keyword) :]
        if key == "newmtl":
            current = materials[rest.strip()] = Material()
        elif current is None:
            continue
        elif key == "kd":
            _parse_kd(current, rest.split(), path, lineno, line)
        elif key == "map_kd":
            _parse_map_kd(current, rest, path, obj_dir, lineno, line)


def load_materials(
    mtllibs: list[tuple[str, int, str]], material_names: list[str], obj_path: Path
) -> list[Material | None]:
    """The materials named ``material_names`` (None where undefined), read from the
    ``mtllib`` statements ``(argument, lineno, line)`` of the OBJ file ``obj_path``.

    A missing library, or a material used but defined nowhere (when every library was found),
    is an :class:`~softjax.io.errors.ObjWarning`: its faces fall back to white.
    """
    materials: dict[str, Material] = {}
    all_found = True
    for arg, lineno, _line in mtllibs:
        # one file name with spaces, or several names separated by spaces
        found = _find_file(arg, [obj_path.parent])
        names = [arg] if found is not None else arg.split()
        for name in names:
            mtl = found if found is not None else _find_file(name, [obj_path.parent])
            if mtl is None:
                all_found = False
                warn(
                    f"{obj_path}, line {lineno}: material library {name!r} not found in "
                    f"{obj_path.parent}; faces using its materials fall back to white"
                )
                continue
            _parse_mtl(mtl, obj_path.parent, materials)
    out: list[Material | None] = []
    for name in material_names:
        mat = materials.get(name)
        if mat is None and all_found:
            warn(f"{obj_path}: material {name!r} is used but not defined; its faces are white")
        out.append(mat)
    return out


def material_image(mat: Material) -> tuple[np.ndarray, float] | None:
    """The material's ``map_Kd`` image as :func:`~softjax.io.sampling.image_rgb` gives it,
    read on first use; None without one (an unreadable image warns and is dropped)."""
    if mat.image is None and mat.map_path is not None:
        try:
            mat.image = image_rgb(iio.imread(mat.map_path))
        except Exception as e:  # unreadable image: same fallback as a missing one
            warn(
                f"could not read texture image {str(mat.map_path)!r} ({e}); the material uses "
                "its Kd colour (white without Kd)"
            )
            mat.map_path = None
    return mat.image
