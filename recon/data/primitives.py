"""Closed triangle-mesh primitives in NumPy: boxes, cylinders, frusta, cones, spheres, extruded
and lofted polygons, and the helpers to place, measure and normalise them.

Conventions:
  * Right-handed world, ``y`` up. Axial solids are built along the local ``+y`` axis and then
    turned onto their ``axis`` ('x', 'y', 'z', '-x', '-y', '-z'), rotated by ``rotation`` and
    moved to ``center``.
  * Faces are counter-clockwise seen from outside (outward normals by the right-hand rule), so
    every primitive has positive signed volume (:func:`signed_volume`).
  * A mesh is a :data:`TriMesh`: vertices ``[V, 3]`` float64 and faces ``[F, 3]`` int64.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence

import numpy as np

TriMesh = tuple[np.ndarray, np.ndarray]  # (vertices [V, 3] float64, faces [F, 3] int64)


def rotation_matrix(axis: str | Sequence[float], angle: float) -> np.ndarray:
    """``[3, 3]`` rotation by ``angle`` radians about ``axis`` ('x', 'y', 'z' or a vector),
    counter-clockwise when looking down the axis towards the origin (right-hand rule)."""
    if isinstance(axis, str):
        axis = {"x": (1.0, 0.0, 0.0), "y": (0.0, 1.0, 0.0), "z": (0.0, 0.0, 1.0)}[axis]
    a = np.asarray(axis, np.float64)
    a = a / np.linalg.norm(a)
    k = np.array([[0.0, -a[2], a[1]], [a[2], 0.0, -a[0]], [-a[1], a[0], 0.0]])
    return np.eye(3) + np.sin(angle) * k + (1.0 - np.cos(angle)) * (k @ k)


# Proper rotations taking the local +y axis to the named axis.
_Y_TO = {
    "y": np.eye(3),
    "x": rotation_matrix("z", -np.pi / 2),
    "z": rotation_matrix("x", np.pi / 2),
    "-y": rotation_matrix("x", np.pi),
    "-x": rotation_matrix("z", np.pi / 2),
    "-z": rotation_matrix("x", -np.pi / 2),
}


def _place(
    v: np.ndarray, center: Sequence[float], rotation: np.ndarray | None, axis: str = "y"
) -> np.ndarray:
    """Local frame (built along +y) -> world: ``R_axis``, then ``rotation``, then translate."""
    v = v @ _Y_TO[axis].T
    if rotation is not None:
        v = v @ np.asarray(rotation, np.float64).T
    return v + np.asarray(center, np.float64)


def loft(bottom: np.ndarray, top: np.ndarray) -> TriMesh:
    """Closed solid between two rings of N points (``[N, 3]`` each, ring i above ring i).

    The rings must be star-shaped about their centroids and ordered counter-clockwise seen
    from above (+y); both caps are fans around an added centroid vertex.
    Returns ``([2N + 2, 3], [4N, 3])``.
    """
    bottom = np.asarray(bottom, np.float64)
    top = np.asarray(top, np.float64)
    n = len(bottom)
    v = np.concatenate([bottom, top, bottom.mean(0, keepdims=True), top.mean(0, keepdims=True)])
    i = np.arange(n)
    j = (i + 1) % n
    cb, ct = 2 * n, 2 * n + 1
    side1 = np.stack([i, j, n + j], 1)
    side2 = np.stack([i, n + j, n + i], 1)
    cap_t = np.stack([np.full(n, ct), n + i, n + j], 1)
    cap_b = np.stack([np.full(n, cb), j, i], 1)
    return v, np.concatenate([side1, side2, cap_t, cap_b]).astype(np.int64)


def _ccw_xz(poly: np.ndarray) -> np.ndarray:
    """2-D polygon ``[N, 2]`` of (x, z) -> ``[N, 3]`` ring at y=0, made CCW seen from +y."""
    poly = np.asarray(poly, np.float64)
    x, z = poly[:, 0], poly[:, 1]
    # y-component of the summed cross products; > 0 means counter-clockwise seen from +y.
    area = np.sum(z * np.roll(x, -1) - x * np.roll(z, -1))
    if area < 0:
        poly = poly[::-1]
    return np.stack([poly[:, 0], np.zeros(len(poly)), poly[:, 1]], 1)


def extrude(
    polygon_xz: np.ndarray,
    y0: float,
    y1: float,
    *,
    center: Sequence[float] = (0.0, 0.0, 0.0),
    rotation: np.ndarray | None = None,
    top_scale: float | Sequence[float] = 1.0,
) -> TriMesh:
    """Prism of a star-shaped polygon ``[N, 2]`` of (x, z) between heights ``y0 < y1``.

    ``top_scale`` (scalar or (sx, sz)) scales the top ring about the polygon centroid
    (tapered prisms, frusta). The solid is then rotated by ``rotation`` and moved by
    ``center``.
    """
    ring = _ccw_xz(polygon_xz)
    c = ring.mean(0)
    s = np.ones(3)
    s[[0, 2]] = np.broadcast_to(np.asarray(top_scale, np.float64), (2,))
    bottom = ring + np.array([0.0, y0, 0.0])
    top = (ring - c) * s + c + np.array([0.0, y1, 0.0])
    v, f = loft(bottom, top)
    return _place(v, center, rotation), f


def box(
    center: Sequence[float],
    size: Sequence[float],
    rotation: np.ndarray | None = None,
    top_scale: float | Sequence[float] = 1.0,
) -> TriMesh:
    """Axis-aligned box of ``size`` (sx, sy, sz) centred at ``center`` (then ``rotation``
    about the centre). ``top_scale`` shrinks the top face (tapered box / frustum)."""
    sx, sy, sz = (float(s) for s in size)
    rect = np.array([[-sx, -sz], [sx, -sz], [sx, sz], [-sx, sz]]) / 2
    return extrude(rect, -sy / 2, sy / 2, center=center, rotation=rotation, top_scale=top_scale)


def _circle(radius: float, segments: int) -> np.ndarray:
    t = np.linspace(0.0, 2 * np.pi, segments, endpoint=False)
    return radius * np.stack([np.cos(t), np.sin(t)], 1)


def cylinder(
    center: Sequence[float],
    radius: float,
    height: float,
    axis: str = "y",
    segments: int = 16,
    rotation: np.ndarray | None = None,
    radius_top: float | None = None,
) -> TriMesh:
    """Closed cylinder centred at ``center`` with its axis along ``axis`` ('x', 'y', 'z', '-x',
    ...), ``segments`` sides; a frustum if ``radius_top`` is given (the '+' end gets it), a cone
    if ``radius_top`` is 0 (see :data:`cone`).

    Returns ``([2N + 2, 3], [4N, 3])``; for the cone ``([N + 2, 3], [2N, 3])``.
    """
    if radius_top == 0:
        # One apex vertex instead of a collapsed top ring: no zero-area faces.
        ring = _ccw_xz(_circle(radius, segments))
        n = len(ring)
        base = ring + np.array([0.0, -height / 2, 0.0])
        v = np.concatenate([base, [[0.0, height / 2, 0.0]], [[0.0, -height / 2, 0.0]]])
        i = np.arange(n)
        j = (i + 1) % n
        f = np.concatenate(
            [np.stack([i, j, np.full(n, n)], 1), np.stack([np.full(n, n + 1), j, i], 1)]
        ).astype(np.int64)
    else:
        scale = 1.0 if radius_top is None else radius_top / radius
        v, f = extrude(_circle(radius, segments), -height / 2, height / 2, top_scale=scale)
    return _place(v, center, rotation, axis), f


# A cone is a cylinder whose top radius is 0: same parameters, one implementation.
cone = functools.partial(cylinder, radius_top=0.0)
cone.__doc__ = (
    "Closed cone ``cone(center, radius, height, axis='y', segments=16, rotation=None)``: "
    ":func:`cylinder` with ``radius_top=0``, base radius ``radius``, ``center`` the middle of its "
    "axis, the apex towards ``+axis``. Returns ``([N + 2, 3], [2N, 3])``."
)


def sphere(
    center: Sequence[float],
    radius: float | Sequence[float],
    segments: int = 16,
    rotation: np.ndarray | None = None,
) -> TriMesh:
    """Closed UV sphere (ellipsoid if ``radius`` = (rx, ry, rz)) with ``segments``
    longitudes and ``segments // 2`` latitudes. Returns ``([S*(S//2-1)+2, 3], ...)``."""
    r = np.broadcast_to(np.asarray(radius, np.float64), (3,))
    stacks = max(segments // 2, 2)
    lat = np.linspace(0.0, np.pi, stacks + 1)[1:-1]  # polar angle from +y
    lon = np.linspace(0.0, 2 * np.pi, segments, endpoint=False)
    la, lo = np.meshgrid(lat, lon, indexing="ij")
    # CCW seen from +y: x = cos, z = -sin.
    ring = np.stack([np.sin(la) * np.cos(lo), np.cos(la), -np.sin(la) * np.sin(lo)], -1)
    v = np.concatenate([ring.reshape(-1, 3), [[0.0, 1.0, 0.0], [0.0, -1.0, 0.0]]]) * r
    m = len(lat)
    north, south = m * segments, m * segments + 1
    faces = []
    j = np.arange(segments)
    k = (j + 1) % segments
    faces.append(np.stack([np.full(segments, north), j, k], 1))
    for a in range(m - 1):
        up, dn = a * segments, (a + 1) * segments
        faces.append(np.stack([up + j, dn + j, dn + k], 1))
        faces.append(np.stack([up + j, dn + k, up + k], 1))
    last = (m - 1) * segments
    faces.append(np.stack([np.full(segments, south), last + k, last + j], 1))
    return _place(v, center, rotation), np.concatenate(faces).astype(np.int64)


def signed_volume(vertices: np.ndarray, faces: np.ndarray) -> float:
    """Signed volume of a closed triangle mesh (> 0 for outward, CCW-from-outside faces)."""
    t = np.asarray(vertices, np.float64)[np.asarray(faces)]
    return float(np.einsum("fi,fi->f", t[:, 0], np.cross(t[:, 1], t[:, 2])).sum() / 6.0)


def normalize_unit_cube(vertices: np.ndarray, margin: float = 0.02) -> np.ndarray:
    """Centres the bounding box of ``vertices [V, 3]`` at the origin and scales uniformly
    so that its longest side is ``1 - 2 * margin`` (the object fits in [-0.5, 0.5]^3 with
    ``margin`` to spare on the longest axis)."""
    v = np.asarray(vertices, np.float64)
    lo, hi = v.min(0), v.max(0)
    extent = float((hi - lo).max())
    if extent <= 0:
        raise ValueError("cannot normalise a degenerate (zero-size) set of vertices")
    return (v - (lo + hi) / 2) * ((1.0 - 2.0 * margin) / extent)
