"""Benchmark meshes: geodesic spheres seen through a simple perspective camera."""

from __future__ import annotations

import numpy as np

from softjax.mesh import ICOSAHEDRON_FACES as _ICO_F
from softjax.mesh import ICOSAHEDRON_VERTICES as _ICO_V


def geodesic_sphere(freq: int) -> np.ndarray:
    """Unit sphere with ``20 * freq**2`` faces: face vertices ``[F, 3, 3]`` (not indexed).

    freq 8, 16, 32 give the 1280 / 5120 / 20480 faces of icospheres of level 3, 4, 5.
    """
    out = []
    for a, b, c in _ICO_V[_ICO_F]:
        pts = {}
        for i in range(freq + 1):
            for j in range(freq + 1 - i):
                p = a + (b - a) * i / freq + (c - a) * j / freq
                pts[i, j] = p / np.linalg.norm(p)
        for i in range(freq):
            for j in range(freq - i):
                out.append([pts[i, j], pts[i + 1, j], pts[i, j + 1]])
                if j < freq - i - 1:
                    out.append([pts[i + 1, j], pts[i + 1, j + 1], pts[i, j + 1]])
    return np.asarray(out)


def sphere_scene(
    num_faces: int, batch: int = 1, distance: float = 2.732, fov_deg: float = 30.0, seed: int = 0
):
    """Screen-space face vertices ``[B, F, 3, 3]`` and 1-texel textures of a geodesic sphere
    with about ``num_faces`` faces, centred, radius 1 at ``distance`` (covers ~30% of the
    frame with the default field of view)."""
    freq = max(1, int(round((num_faces / 20) ** 0.5)))
    fv = geodesic_sphere(freq)
    z = fv[..., 2] + distance
    t = np.tan(np.deg2rad(fov_deg))
    screen = np.stack([fv[..., 0] / (z * t), fv[..., 1] / (z * t), z], -1).astype(np.float32)
    rng = np.random.default_rng(seed)
    tex = rng.uniform(0, 1, (batch, len(fv), 1, 3)).astype(np.float32)
    return np.broadcast_to(screen, (batch,) + screen.shape).copy(), tex
