"""Per-face texel layout: which barycentric point each texel of an ``R x R`` texture samples."""

from __future__ import annotations

import numpy as np

__all__ = ["check_res", "texel_barycentrics"]


def check_res(value, name: str, minimum: int = 1) -> int:
    """``value`` as an int; ValueError (naming ``name``) unless it is an int >= ``minimum``."""
    if isinstance(value, bool) or not isinstance(value, int | np.integer) or value < minimum:
        raise ValueError(f"{name} must be an int >= {minimum}, got {value!r}")
    return int(value)


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
    r = check_res(texture_res, "texture_res")
    t = np.arange(r * r)
    ii, jj = t % r, t // r
    lower = ii + jj <= r - 1
    w0 = np.where(lower, (ii + 1.0 / 3.0) / r, (r - 1 - ii + 2.0 / 3.0) / r)
    w1 = np.where(lower, (jj + 1.0 / 3.0) / r, (r - 1 - jj + 2.0 / 3.0) / r)
    return np.stack([w0, w1, 1.0 - w0 - w1], axis=-1)
