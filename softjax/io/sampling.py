"""Image sampling at texture coordinates (``u`` right, ``v`` up, wrapping outside [0, 1])."""

from __future__ import annotations

import numpy as np

__all__ = ["SAMPLING_MODES", "image_rgb", "sample_image", "sample_rgb"]

SAMPLING_MODES = ("nearest", "bilinear")


def image_rgb(arr: np.ndarray) -> tuple[np.ndarray, float]:
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
    # [0, 1] itself is kept as is so that u = 1 / v = 0 still reach the last column / row
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


def sample_rgb(image: tuple[np.ndarray, float], uv: np.ndarray, sampling: str) -> np.ndarray:
    """Colours in [0, 1] ``[..., 3]`` of an :func:`image_rgb` result sampled at ``uv``."""
    data, top = image
    return np.clip(np.nan_to_num(sample_image(data, uv, sampling) / top), 0.0, 1.0)
