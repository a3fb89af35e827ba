"""The texture of a written OBJ: ``<stem>.png`` and ``<stem>.mtl`` next to it, and the ``vt``
and ``f v/vt`` lines that map the faces into the image."""

from __future__ import annotations

from pathlib import Path

import imageio.v3 as iio
import numpy as np

from softjax.io.lines import rows

__all__ = ["textured_face_lines", "to_uint8", "write_texture"]

MATERIAL = "material_0"


def to_uint8(image: np.ndarray) -> np.ndarray:
    """``[H, W, 3]`` float in [0, 1] -> uint8 ``round(255 x)`` (clipped; NaN reads as white)."""
    x = np.clip(np.nan_to_num(np.asarray(image, np.float64), nan=1.0), 0.0, 1.0)
    return np.rint(x * 255.0).astype(np.uint8)


def write_texture(path: Path, image: np.ndarray) -> list[str]:
    """Writes ``<stem>.png`` (``image``: ``[H, W, 3]`` uint8, row 0 at the top, which is also
    the PNG's first row) and ``<stem>.mtl`` (material ``material_0``: ``Kd 1 1 1`` and
    ``map_Kd <stem>.png``) next to the OBJ ``path``; returns the OBJ's ``mtllib`` line."""
    stem = path.stem
    iio.imwrite(path.with_name(stem + ".png"), image)
    path.with_name(stem + ".mtl").write_text(
        f"# written by softjax\nnewmtl {MATERIAL}\nKa 0 0 0\nKd 1 1 1\nKs 0 0 0\nd 1\n"
        f"illum 1\nmap_Kd {stem}.png\n",
        encoding="utf-8",
    )
    return [f"mtllib {stem}.mtl\n"]


def textured_face_lines(faces: np.ndarray, face_uvs: np.ndarray) -> list[str]:
    """OBJ text of textured faces: the ``vt`` lines, ``usemtl material_0`` and ``f v/vt``.

    Args:
      faces: ``[F, 3]`` int, 1-based vertex indices.
      face_uvs: ``[F, 3, 2]`` float ``(u, v)`` of each face corner, finite.

    Returns:
      Lines: one ``vt`` per distinct uv (9 significant digits: float32 round-trips exactly),
      in order of first use, then the faces in their order and winding.

    Raises:
      ValueError: ``face_uvs`` has NaN or infinite values.
    """
    uv = np.asarray(face_uvs).reshape(-1, 2)
    if not np.all(np.isfinite(uv)):
        raise ValueError("save_obj: face_uvs has NaN or infinite values; an OBJ cannot hold them")
    distinct, first, inverse = np.unique(uv, axis=0, return_index=True, return_inverse=True)
    order = np.argsort(first)  # distinct uvs in order of first use (readable, stable output)
    rank = np.empty_like(order)
    rank[order] = np.arange(order.size)
    vt = (rank[inverse.reshape(-1)] + 1).reshape(-1, 3)
    return [
        rows("vt %.9g %.9g\n", distinct[order]),
        f"usemtl {MATERIAL}\n",
        rows("f %d/%d %d/%d %d/%d\n", np.stack([faces, vt], -1).reshape(-1, 6)),
    ]
