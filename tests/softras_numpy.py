"""An independent float64 NumPy re-implementation of SoftRas's forward rasterizer.

Written from ``docs/semantics.md`` (conventions, per-pixel terms, aggregation) as plain loops
over pixels and faces, the way the original CUDA kernel is organised, sharing no code with
softjax. It is slow and only meant for tiny scenes in tests.
"""

from __future__ import annotations

import math

import numpy as np


def _sigmoid(x: float) -> float:
    if x >= 0:
        return 1.0 / (1.0 + math.exp(-x))
    e = math.exp(x)
    return e / (1.0 + e)


def _barycentric(face, x, y):
    (x0, y0, _), (x1, y1, _), (x2, y2, _) = face
    det = x0 * (y1 - y2) + x1 * (y2 - y0) + x2 * (y0 - y1)
    det = max(det, 1e-10) if det > 0 else min(det, -1e-10)
    m = np.array(
        [
            [y1 - y2, x2 - x1, x1 * y2 - x2 * y1],
            [y2 - y0, x0 - x2, x2 * y0 - x0 * y2],
            [y0 - y1, x1 - x0, x0 * y1 - x1 * y0],
        ]
    )
    return m @ np.array([x, y, 1.0]) / det


def _point_segment_dist2(x, y, a, b):
    ex, ey = b[0] - a[0], b[1] - a[1]
    l2 = ex * ex + ey * ey
    t = 0.0 if l2 == 0 else min(max(((x - a[0]) * ex + (y - a[1]) * ey) / l2, 0.0), 1.0)
    dx, dy = x - a[0] - t * ex, y - a[1] - t * ey
    return dx * dx + dy * dy


def _texture(face_tex, w, texture_type):
    if texture_type == "vertex":
        return sum(w[k] * face_tex[k] for k in range(3))
    r = int(round(len(face_tex) ** 0.5))
    i = min(int(math.floor(w[0] * r)), r - 1)
    j = min(int(math.floor(w[1] * r)), r - 1)
    if (1.0 - w[2]) * r - i - j <= 1:
        k = j * r + i
    else:
        k = (r - 1 - j) * r + (r - 1 - i)
    return face_tex[k]


def soft_rasterize_numpy(
    face_vertices,
    textures,
    *,
    image_size,
    background_color=(0.0, 0.0, 0.0),
    near=1.0,
    far=100.0,
    fill_back=True,
    eps=1e-3,
    sigma_val=1e-5,
    dist_func="euclidean",
    dist_eps=1e-4,
    gamma_val=1e-4,
    aggr_func_rgb="softmax",
    aggr_func_alpha="prod",
    texture_type="surface",
):
    fvs = np.asarray(face_vertices, np.float64)
    texs = np.asarray(textures, np.float64)
    bsz, nf = fvs.shape[:2]
    s = image_size
    bg = np.asarray(background_color, np.float64)
    thr = sigma_val * math.log(1.0 / dist_eps - 1.0)
    grow = math.sqrt(thr)
    out = np.zeros((bsz, s, s, 4))
    for b in range(bsz):
        for r in range(s):
            for c in range(s):
                x = (2 * c + 1 - s) / s
                y = (s - 1 - 2 * r) / s
                alpha = 1.0 if aggr_func_alpha == "prod" else 0.0
                rgb = bg.copy()
                zmax = eps / gamma_val
                terms = []  # (D, znorm, colour) for softmax
                best_z = math.inf
                for f in range(nf):
                    face = fvs[b, f]
                    xs, ys, zs = face[:, 0], face[:, 1], face[:, 2]
                    if not (
                        xs.min() - grow <= x <= xs.max() + grow
                        and ys.min() - grow <= y <= ys.max() + grow
                    ):
                        continue
                    w = _barycentric(face, x, y)
                    inside = all(0.0 <= wk <= 1.0 for wk in w)
                    if dist_func == "hard":
                        if not inside:
                            continue
                        prob = 1.0
                    elif dist_func == "barycentric":
                        m = min(w)
                        d = m * m if m > 0 else -m * m
                        if -d >= thr:
                            continue
                        prob = _sigmoid(d / sigma_val)
                    else:
                        d2 = min(
                            _point_segment_dist2(x, y, face[0], face[1]),
                            _point_segment_dist2(x, y, face[1], face[2]),
                            _point_segment_dist2(x, y, face[2], face[0]),
                        )
                        sign = 1.0 if all(0.0 < wk < 1.0 for wk in w) else -1.0
                        if sign < 0 and d2 >= thr:
                            continue
                        prob = _sigmoid(sign * d2 / sigma_val)
                    if aggr_func_alpha == "prod":
                        alpha *= 1.0 - prob
                    elif aggr_func_alpha == "sum":
                        alpha += prob / nf
                    elif prob > 0.5:
                        alpha = 1.0
                    wc = np.clip(w, 0.0, 1.0)
                    wc = wc / max(wc.sum(), 1e-5)
                    zp = 1.0 / (wc[0] / zs[0] + wc[1] / zs[1] + wc[2] / zs[2])
                    if zp < near or zp > far:
                        continue
                    cross = (xs[1] - xs[0]) * (ys[2] - ys[0]) - (ys[1] - ys[0]) * (xs[2] - xs[0])
                    if not (fill_back or cross < 0):
                        continue
                    colour = _texture(texs[b, f], wc, texture_type)
                    if aggr_func_rgb == "hard":
                        if inside and zp < best_z:
                            best_z = zp
                            rgb = np.array(colour, np.float64)
                    else:
                        zn = (far - zp) / (far - near)
                        zmax = max(zmax, zn / gamma_val)
                        terms.append((prob, zn, np.asarray(colour)))
                if aggr_func_rgb == "softmax":
                    wbg = math.exp(eps / gamma_val - zmax)
                    num = wbg * bg
                    den = wbg
                    for prob, zn, colour in terms:
                        wt = prob * math.exp(zn / gamma_val - zmax)
                        num = num + wt * colour
                        den += wt
                    rgb = num / den
                if aggr_func_alpha == "prod":
                    alpha = 1.0 - alpha
                out[b, r, c, :3] = rgb
                out[b, r, c, 3] = alpha
    return out
