"""Plain NumPy reference of SoftRas's solid voxeliser, written independently of ``softjax``.

It follows ``soft_renderer.functional.voxelization`` (and its CUDA kernels) step by step, with
every floating-point operation rounded on its own in the input's precision (NumPy never fuses a
multiply and an add), so the tests can compare ``softjax.voxelize`` with it voxel for voxel:

1. ``p = ((v * 1.0 * (size - 1)) / size + 0.5) * size`` (``examples/recon/models.py`` then
   ``voxelization(..., normalize=False)``).
2. Projection along each axis ``dim``: the corners are reordered to ``(Y, X, Z)`` =
   ``(c2, c1, c0)``, ``(c0, c2, c1)``, ``(c0, c1, c2)`` for ``dim`` = 0, 1, 2; for every integer
   column ``(y, x)`` in ``0 .. size - 1`` that lies in the projected triangle (barycentric
   ``t1, t2 >= 0``, ``t1 + t2 <= 1``; triangles with a zero determinant are skipped) the depth
   ``d = floor(t1 z1d + t2 z2d + Z0)`` marks the voxels ``(y, x, d)``, ``(y - 1, x, d)``,
   ``(y, x - 1, d)``, ``(y - 1, x - 1, d)`` that are in the grid, in the reordered axes.
3. Every corner marks the voxel ``floor(p)``.
4. Empty voxels 6-connected (through empty voxels) to an empty border voxel are outside; all
   other voxels are occupied.
5. NMR axis order: ``transpose(0, 2, 1, 3)[:, :, :, ::-1]``.

Triangles with a non-finite coordinate are skipped in step 2 and non-finite corners in step 3
(the original converts ``floor(NaN)`` to ``int``, which C leaves undefined).

Slow (a Python loop over triangles, NumPy over the columns of one triangle): for tests only.
"""

from __future__ import annotations

from collections import deque

import numpy as np

# corner coordinate order (Y, X, Z) of the projection along axis 0, 1, 2
_ORDER = ((2, 1, 0), (0, 2, 1), (0, 1, 2))


def to_voxel_units(face_vertices: np.ndarray, size: int) -> np.ndarray:
    """``[..., 3]`` float world coordinates -> voxel units, one rounding per operation."""
    v = np.asarray(face_vertices)
    dt = v.dtype.type
    v = v * dt(1.0)
    v = v * dt(size - 1)
    v = v / dt(size)
    v = v + dt(0.5)
    return v * dt(size)


def _project_axis(tris: np.ndarray, size: int, dim: int, out: np.ndarray) -> None:
    """Marks into ``out`` ``[size]^3`` bool (indexed ``[c0, c1, c2]``) the voxels of step 2 for
    the projection along axis ``dim``; ``tris`` ``[F, 3, 3]`` voxel-unit corners of one mesh."""
    dt = tris.dtype.type
    ys, xs = np.meshgrid(np.arange(size), np.arange(size), indexing="ij")
    yc, xc = ys.ravel(), xs.ravel()  # int columns
    yf, xf = yc.astype(tris.dtype), xc.astype(tris.dtype)
    order = _ORDER[dim]
    for tri in tris:
        if not np.all(np.isfinite(tri)):
            continue
        f = tri[:, order]  # rows: corners; columns: Y, X, Z
        y1d, x1d, z1d = f[1, 0] - f[0, 0], f[1, 1] - f[0, 1], f[1, 2] - f[0, 2]
        y2d, x2d, z2d = f[2, 0] - f[0, 0], f[2, 1] - f[0, 1], f[2, 2] - f[0, 2]
        det = x1d * y2d - x2d * y1d
        if det == 0:
            continue
        ypd = yf - f[0, 0]
        xpd = xf - f[0, 1]
        t1 = (y2d * xpd - x2d * ypd) / det
        t2 = (-y1d * xpd + x1d * ypd) / det
        with np.errstate(invalid="ignore"):
            keep = ~(t1 < 0) & ~(t2 < 0) & ~(dt(1) < t1 + t2)
            depth = np.floor(t1 * z1d + t2 * z2d + f[0, 2])
            keep &= (depth >= 0) & (depth < size)
        for y, x, d in zip(yc[keep], xc[keep], depth[keep].astype(np.int64), strict=True):
            for yi, xi in ((y, x), (y - 1, x), (y, x - 1), (y - 1, x - 1)):
                if 0 <= yi < size and 0 <= xi < size:
                    idx = [0, 0, 0]
                    # (yi, xi, d) are coordinates (order[0], order[1], order[2])
                    idx[order[0]], idx[order[1]], idx[order[2]] = yi, xi, d
                    out[tuple(idx)] = True


def _flood_outside(occupied: np.ndarray) -> np.ndarray:
    """Empty voxels reachable from an empty border voxel through empty voxels (6-connected)."""
    n = occupied.shape[0]
    outside = np.zeros_like(occupied)
    queue: deque[tuple[int, int, int]] = deque()
    for i in range(n):
        for j in range(n):
            for k in range(n):
                on_border = min(i, j, k) == 0 or max(i, j, k) == n - 1
                if on_border and not occupied[i, j, k]:
                    outside[i, j, k] = True
                    queue.append((i, j, k))
    while queue:
        i, j, k = queue.popleft()
        for di, dj, dk in ((1, 0, 0), (-1, 0, 0), (0, 1, 0), (0, -1, 0), (0, 0, 1), (0, 0, -1)):
            a, b, c = i + di, j + dj, k + dk
            if 0 <= a < n and 0 <= b < n and 0 <= c < n:
                if not occupied[a, b, c] and not outside[a, b, c]:
                    outside[a, b, c] = True
                    queue.append((a, b, c))
    return outside


def surface_voxels_units(tris: np.ndarray, size: int = 32) -> np.ndarray:
    """Steps 2-3 for one mesh already in voxel units: ``tris`` ``[F, 3, 3]`` float ->
    ``[size]^3`` bool indexed ``[c0, c1, c2]``."""
    tris = np.asarray(tris)
    out = np.zeros((size, size, size), bool)
    for dim in range(3):
        _project_axis(tris, size, dim, out)
    for corner in tris.reshape(-1, 3):
        if np.all(np.isfinite(corner)):
            c = np.floor(corner)
            if np.all((c >= 0) & (c < size)):
                out[tuple(c.astype(np.int64))] = True
    return out


def surface_voxels_numpy(face_vertices: np.ndarray, size: int = 32) -> np.ndarray:
    """Steps 1-3 for one mesh: ``face_vertices`` ``[F, 3, 3]`` float world coordinates ->
    ``[size]^3`` bool indexed ``[c0, c1, c2]`` (no NMR transpose)."""
    return surface_voxels_units(to_voxel_units(face_vertices, size), size)


def voxelize_numpy(face_vertices: np.ndarray, size: int = 32) -> np.ndarray:
    """SoftRas's voxelisation of a batch: ``[B, F, 3, 3]`` float (float32 like the original, or
    float64) world coordinates -> ``[B, size, size, size]`` bool in the NMR axis order."""
    fv = np.asarray(face_vertices)
    out = np.zeros((fv.shape[0], size, size, size), bool)
    for b in range(fv.shape[0]):
        surface = surface_voxels_numpy(fv[b], size)
        out[b] = ~_flood_outside(surface)
    return out.transpose(0, 2, 1, 3)[:, :, :, ::-1]
