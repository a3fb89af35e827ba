"""Solid voxelisation (SoftRas's rule, flood fill, NMR axis convention) and voxel IoU.

``softjax.voxelize`` is compared voxel for voxel with ``tests/voxel_numpy.py``, an independent
plain NumPy port of SoftRas's ``voxelization``."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from voxel_numpy import surface_voxels_numpy, surface_voxels_units, to_voxel_units, voxelize_numpy

import softjax
from softjax.mesh import _icosphere_np, gather_faces
from softjax.voxel import (
    _surface_units,
    _to_units,
    _voxelize,
    fill_enclosed,
    surface_voxels,
    voxel_iou,
    voxelize,
)

S = 32

BOX_FACES = np.array(
    [
        [0, 2, 1], [1, 2, 3],  # z = lo
        [4, 5, 6], [5, 7, 6],  # z = hi
        [0, 1, 4], [1, 5, 4],  # y = lo
        [2, 6, 3], [3, 6, 7],  # y = hi
        [0, 4, 2], [2, 4, 6],  # x = lo
        [1, 3, 5], [3, 7, 5],  # x = hi
    ],
    np.int32,
)  # fmt: skip


def box(lo, hi):
    """``[12, 3, 3]`` triangles of the closed axis-aligned box ``[lo, hi]``."""
    lo, hi = np.broadcast_to(lo, 3), np.broadcast_to(hi, 3)
    corners = np.array(
        [[(hi if (n >> a) & 1 else lo)[a] for a in range(3)] for n in range(8)], np.float32
    )
    return corners[BOX_FACES]


def test_box_fills_exactly_its_voxels():
    # [-0.3, 0.3] maps to [6.7, 25.3]: voxels 6..25 along each axis, symmetric under the NMR flip
    vox = np.asarray(voxelize(box(-0.3, 0.3)[None], S))
    assert vox.shape == (1, S, S, S) and vox.dtype == bool
    want = np.zeros((S, S, S), bool)
    want[6:26, 6:26, 6:26] = True
    np.testing.assert_array_equal(vox[0], want)
    # the surface alone is the hollow shell
    shell = np.asarray(surface_voxels(jnp.asarray(box(-0.3, 0.3)[None]), S))[0]
    hollow = want.copy()
    hollow[7:25, 7:25, 7:25] = False
    np.testing.assert_array_equal(shell, hollow)


def test_sphere_volume():
    v, f = _icosphere_np(4)  # 5120 faces
    fv = (v * 0.5)[f][None]
    vox = np.asarray(voxelize(fv, S))[0]
    # the analytic sphere: radius 0.5 * 31/32 in the unit cube
    analytic = 4 / 3 * np.pi * (0.5 * (S - 1) / S) ** 3
    frac = vox.mean()
    # occupied = interior + the surface voxels, which stick out of the sphere by about half a
    # voxel on average (+14% here)
    assert analytic < frac < 1.2 * analytic
    # exactly: the voxels whose unit cube meets the ball (radius 15.5 about (16, 16, 16))
    c = np.arange(S)
    d = np.maximum(np.maximum(c - 16, 0), 16 - (c + 1)).astype(np.float64)
    meets = d[:, None, None] ** 2 + d[None, :, None] ** 2 + d[None, None, :] ** 2 <= 15.5**2
    assert not np.any(vox & ~meets)  # nothing outside the sphere
    # the rule marks voxels around grid lines the surface crosses: a few cubes that it only
    # clips between grid lines are not marked
    assert np.sum(meets & ~vox) < 0.01 * meets.sum()
    # the solid interior is complete: cubes whose farthest corner is inside
    far = np.maximum(np.abs(c - 16), np.abs(c + 1 - 16)).astype(np.float64)
    inside = far[:, None, None] ** 2 + far[None, :, None] ** 2 + far[None, None, :] ** 2 < 15.4**2
    assert inside.sum() > 10000 and np.all(vox[inside])


def test_axis_convention():
    # a small box at large +x, then +y, then +z: out[b, j, i, S - 1 - k] = vox[b, i, j, k]
    lo, hi = np.array([0.3, -0.05, -0.05]), np.array([0.4, 0.05, 0.05])
    fvs = np.stack([box(np.roll(lo, a), np.roll(hi, a)) for a in range(3)])
    out = np.asarray(voxelize(fvs, S))
    # x = 0.3..0.4 -> voxel units 25.3..28.4 -> indices 25..28; -0.05..0.05 -> 14..17
    big, mid, flipped = (25, 28), (14, 17), (S - 1 - 28, S - 1 - 25)

    def span(o, axis):  # first and last occupied index along an output spatial axis
        hit = np.nonzero(o.any(axis=tuple(a for a in range(3) if a != axis)))[0]
        return int(hit[0]), int(hit[-1])

    assert [span(out[0], a) for a in range(3)] == [mid, big, mid]  # +x -> output axis 2
    assert [span(out[1], a) for a in range(3)] == [big, mid, mid]  # +y -> output axis 1
    assert [span(out[2], a) for a in range(3)] == [mid, mid, flipped]  # +z -> axis 3, reversed
    assert out.sum((1, 2, 3)).tolist() == [4**3] * 3


def test_empty_and_outside():
    inside = box(-0.2, 0.2)
    outside = inside + np.float32(3.0)  # entirely outside the grid
    out = np.asarray(voxelize(np.stack([inside, outside]), S))
    assert out[0].sum() == 14**3  # [-0.2, 0.2] -> [9.8, 22.2] -> voxels 9..22
    assert not out[1].any()
    assert not np.asarray(voxelize(np.zeros((2, 0, 3, 3), np.float32), 8)).any()
    # a non-finite triangle is skipped; the rest is unaffected
    bad = np.concatenate([inside, np.full((1, 3, 3), np.nan, np.float32)])
    np.testing.assert_array_equal(np.asarray(voxelize(bad[None], S))[0], out[0])


def test_triangles_larger_than_the_grid():
    # the plane z = 0 as two triangles 10 times larger than the cube: the whole layer k = 16
    # (voxel units 16.0) is hit, and nothing is enclosed
    big = np.array(
        [[[-5, -5, 0], [5, -5, 0], [5, 5, 0]], [[-5, -5, 0], [5, 5, 0], [-5, 5, 0]]], np.float32
    )
    out = np.asarray(voxelize(big[None], S))[0]
    want = np.zeros((S, S, S), bool)
    want[:, :, S - 1 - 16] = True
    np.testing.assert_array_equal(out, want)
    # a closed box slightly larger than the grid is outside it: nothing to fill
    assert not np.asarray(voxelize(box(-0.6, 0.6)[None], S)).any()


def test_flood_fill_does_not_leak_and_fills_cavities():
    # a hollow box (outer shell with an open-topped inner box carved out) and a tilted cube
    s = np.zeros((1, 12, 12, 12), bool)
    s[0, 2:10, 2:10, 2:10] = True
    s[0, 3:9, 3:9, 3:9] = False  # closed shell: the inside is filled
    filled = np.asarray(fill_enclosed(jnp.asarray(s)))
    assert filled[0, 2:10, 2:10, 2:10].all() and filled.sum() == 8**3
    s[0, 5, 5, 9] = False  # a hole: the cavity is reachable from outside
    np.testing.assert_array_equal(np.asarray(fill_enclosed(jnp.asarray(s))), s)
    # randomly rotated closed boxes (large tilted triangles) stay watertight
    rng = np.random.default_rng(0)
    for _ in range(2):
        q, _ = np.linalg.qr(rng.normal(size=(3, 3)))
        fv = (box(-0.22, 0.22) @ q.T.astype(np.float32))[None]
        vox = np.asarray(voxelize(fv, S))[0]
        # the rotated cube's volume, (0.44 * 31)^3 voxels, plus a surface shell of at most
        # ~0.9 voxel^3 per voxel^2 of area; a leak would leave only the shell (< the volume)
        core, area = (0.44 * 31) ** 3, 6 * (0.44 * 31) ** 2
        assert core < vox.sum() < core + 1.2 * area


def test_jit_vmap_and_dtypes():
    v, f = _icosphere_np(2)
    fv = jnp.asarray((v * 0.45)[f][None])
    ref = voxelize(fv, 16)
    jitted = jax.jit(voxelize, static_argnames=("size", "chunk_size"))
    np.testing.assert_array_equal(jitted(fv, 16), ref)
    np.testing.assert_array_equal(voxelize(fv, 16, chunk_size=100), ref)  # many loop iterations
    stacked = jnp.stack([fv, fv * 0.5])
    batched = jax.vmap(lambda x: voxelize(x, 16))(stacked)
    np.testing.assert_array_equal(batched[0], ref)
    np.testing.assert_array_equal(batched[1], voxelize(fv * 0.5, 16))
    # bfloat16 input is computed in float32 (its rounded coordinates may move a few voxels)
    assert voxel_iou(voxelize(fv.astype(jnp.bfloat16), 16), ref)[0] > 0.9
    # a face-vertex gather from a Mesh's arrays works as input
    np.testing.assert_array_equal(
        voxelize(gather_faces(jnp.asarray(v[None] * 0.45), jnp.asarray(f[None])), 16), ref
    )
    with pytest.raises(ValueError):
        voxelize(fv[0], 16)
    with pytest.raises(ValueError):
        voxelize(fv, 0)


def test_voxel_iou():
    rng = np.random.default_rng(1)
    a = rng.uniform(size=(3, 8, 8, 8)) > 0.5
    b = rng.uniform(size=(3, 8, 8, 8)) > 0.5
    iou = voxel_iou(a, b)
    assert iou.shape == (3,) and iou.dtype == jnp.float32
    np.testing.assert_allclose(iou, (a & b).sum((1, 2, 3)) / (a | b).sum((1, 2, 3)), rtol=1e-6)
    np.testing.assert_allclose(voxel_iou(a, a), 1.0)
    np.testing.assert_allclose(voxel_iou(a, ~a), 0.0)
    np.testing.assert_allclose(voxel_iou(a.astype(np.int32), b.astype(np.float32)), iou)
    empty = np.zeros((2, 4, 4, 4), bool)
    np.testing.assert_allclose(voxel_iou(empty, empty), 1.0)  # two empty grids are identical
    np.testing.assert_allclose(voxel_iou(empty, ~empty), 0.0)
    with pytest.raises(ValueError):
        voxel_iou(a, b[:2])


# --- voxel for voxel against the NumPy port of SoftRas's voxelization ------------------------

PAD_B, PAD_F = 4, 1280  # every comparison runs at this shape: one compilation for all of them


def padded_voxelize(meshes: list[np.ndarray], **kw) -> list[np.ndarray]:
    """``voxelize`` of each ``[F, 3, 3]`` float32 mesh (``F <= PAD_F``), run as batches of
    ``PAD_B`` meshes padded with NaN faces (skipped by the rule)."""
    out = []
    for i in range(0, len(meshes), PAD_B):
        batch = np.full((PAD_B, PAD_F, 3, 3), np.nan, np.float32)
        for j, m in enumerate(meshes[i : i + PAD_B]):
            batch[j, : len(m)] = m
        vox = np.asarray(voxelize(batch, S, **kw))
        out += list(vox[: len(meshes[i : i + PAD_B])])
    return out


def assert_matches_reference(meshes: list[np.ndarray], **kw) -> list[np.ndarray]:
    got = padded_voxelize(meshes, **kw)
    for i, (m, g) in enumerate(zip(meshes, got, strict=True)):
        want = voxelize_numpy(m[None], S)[0]
        assert np.array_equal(g, want), f"mesh {i}: {np.sum(g != want)} voxels differ"
    return got


def blob(level: int, rng: np.random.Generator, noise: float = 0.0) -> np.ndarray:
    """A closed star-shaped blob: the icosphere with a random low-frequency radius, anisotropic
    scale and centre, plus optional per-vertex noise (in world units)."""
    v, f = _icosphere_np(level)
    terms = np.stack([v[:, 0], v[:, 1], v[:, 2], v[:, 0] * v[:, 1], v[:, 1] * v[:, 2]], 1)
    radius = 1 + 0.3 * np.tanh(terms @ rng.normal(size=5))
    scale = rng.uniform(0.2, 0.4, size=3)
    verts = v * radius[:, None] * scale + rng.uniform(-0.08, 0.08, size=3)
    verts = verts + noise * rng.normal(size=verts.shape)
    return verts[f].astype(np.float32)


def test_matches_reference_on_closed_blobs():
    rng = np.random.default_rng(2)
    meshes = [blob(2, rng) for _ in range(3)] + [blob(2, rng, noise=1 / 32)]
    got = assert_matches_reference(meshes)
    # closed blobs are filled: far more occupied voxels than the surface alone
    surf = surface_voxels_numpy(meshes[0], S)
    assert got[0].sum() > 2 * surf.sum()


def test_matches_reference_on_triangle_soups():
    # random triangles from a tenth of a voxel to twice the grid, thin slivers (badly
    # conditioned projections: whole-grid path), triangles sticking out of the grid, and
    # non-finite corners (the triangle is skipped, its finite corners still mark their voxel)
    rng = np.random.default_rng(3)
    meshes = []
    for _ in range(3):
        n = 300
        centre = rng.uniform(-0.6, 0.6, size=(n, 1, 3))
        size = np.exp(rng.uniform(np.log(0.1), np.log(64), size=(n, 1, 1))) / 32
        tris = centre + size * rng.normal(size=(n, 3, 3))
        sliver = rng.uniform(size=n) < 0.2  # third corner almost on the first edge
        t = rng.uniform(-0.5, 1.5, size=(n, 1))
        off = rng.normal(size=(n, 3)) * 10.0 ** rng.uniform(-7, -3, size=(n, 1))
        tris[sliver, 2] = (tris[:, 0] + t * (tris[:, 1] - tris[:, 0]) + off)[sliver]
        tris[:3, 1, 0] = [np.nan, np.inf, -np.inf]
        meshes.append(tris.astype(np.float32))
    assert_matches_reference(meshes)


def exact_world(target: np.ndarray) -> np.ndarray:
    """float32 world coordinates that map exactly to ``target`` voxel units (the nearest float
    to ``(target - 16) / 31`` or a neighbour); asserts that one exists for every value."""
    target = np.asarray(target, np.float32)
    v = ((target.astype(np.float64) - 16) / 31).astype(np.float32)
    best = v.copy()
    for step in (0, 1, -1, 2, -2, 3, -3):
        cand = v
        for _ in range(abs(step)):
            cand = np.nextafter(cand, np.float32(np.sign(step) * np.inf))
        hit = to_voxel_units(cand, S) == target
        best = np.where(hit & (to_voxel_units(best, S) != target), cand, best)
    assert np.array_equal(to_voxel_units(best, S), target), "no exact world coordinate"
    return best


def test_matches_reference_on_grid_aligned_meshes():
    # corners exactly on integer and half-integer voxel coordinates: columns on edges and
    # corners (t1 or t2 exactly 0, t1 + t2 exactly 1), depths exactly integer, faces exactly on
    # grid planes (zero projected determinant) and on voxel boundaries
    rng = np.random.default_rng(4)
    meshes = []
    for step in (1.0, 0.5):
        grid_pts = rng.integers(2, 30, size=(250, 3, 3)) + (step < 1) * rng.integers(
            0, 2, size=(250, 3, 3)
        ) * np.float32(0.5)
        meshes.append(exact_world(grid_pts.astype(np.float32)))
    # a box with integer corners, and an octahedron with integer vertices
    lo, hi = exact_world(np.float32(7)), exact_world(np.float32(24))
    meshes.append(box(lo, hi))
    octa_v = exact_world(
        np.float32(
            [[16, 16, 5], [16, 16, 27], [5, 16, 16], [27, 16, 16], [16, 5, 16], [16, 27, 16]]
        )
    )
    octa_f = [
        [0, 2, 4],
        [0, 4, 3],
        [0, 3, 5],
        [0, 5, 2],
        [1, 4, 2],
        [1, 3, 4],
        [1, 5, 3],
        [1, 2, 5],
    ]
    meshes.append(octa_v[np.array(octa_f)])
    for m in meshes:
        assert np.all(to_voxel_units(m, S) * 2 == np.round(to_voxel_units(m, S) * 2))
    got = assert_matches_reference(meshes)
    # the box [7, 24]^3 in voxel units: the face on the plane c = 7 (or 24) crosses the grid
    # lines 7..24 of the other two axes at depth 7 (24), and each crossing marks the voxels on
    # both sides of its line: 6..24; the inside 7..24 is filled
    want = np.zeros((S, S, S), bool)
    for axis in range(3):
        for plane in (7, 24):
            face = [slice(6, 25)] * 3
            face[axis] = plane
            want[tuple(face)] = True
    want[7:25, 7:25, 7:25] = True
    np.testing.assert_array_equal(got[2], want.transpose(1, 0, 2)[:, :, ::-1])  # NMR order


def test_matches_reference_on_the_template_sphere():
    mesh = np.asarray(softjax.icosphere(3).face_vertices[0])  # 642 vertices, 1280 faces
    for scale in (0.5, 0.25):
        got = assert_matches_reference([mesh * np.float32(scale)])[0]
        assert got.sum() > 0


def test_matches_reference_at_the_grid_border():
    # a box exactly filling the cube [-0.5, 0.5] (voxel units [0.5, 31.5]: every voxel), one a
    # little larger (its faces outside the grid: nothing), a sphere centred on a grid corner and
    # a blob pushed through a face of the grid
    v, f = _icosphere_np(2)
    rng = np.random.default_rng(5)
    meshes = [
        box(-0.5, 0.5),
        box(-0.52, 0.52),
        (v * 0.4 + 0.5)[f].astype(np.float32),
        blob(2, rng) + np.float32([0.3, 0, 0]),
    ]
    got = assert_matches_reference(meshes)
    assert got[0].all() and not got[1].any() and got[2].any()


def test_batch_and_paths_agree():
    # the same meshes in one batch, alone, through the whole-grid path only (no blocks), and
    # with few pairs per loop iteration
    rng = np.random.default_rng(6)
    meshes = np.stack([blob(2, rng, noise=0.01) for _ in range(3)])  # [3, 320, 3, 3]
    batch = np.asarray(voxelize(meshes, S))
    for i in range(3):
        np.testing.assert_array_equal(batch[i], np.asarray(voxelize(meshes[i : i + 1], S))[0])
        np.testing.assert_array_equal(batch[i], voxelize_numpy(meshes[i : i + 1], S)[0])
    whole = np.asarray(_voxelize(jnp.asarray(meshes), S, 1 << 12, ()))
    np.testing.assert_array_equal(whole, batch)
    np.testing.assert_array_equal(np.asarray(voxelize(meshes, S, chunk_size=37)), batch)


def test_voxel_units_are_rounded_like_the_original():
    # (v * 31) / 32 + 0.5 then * 32, each rounded: a fused multiply-add or a multiplication by
    # the reciprocal of 24 would change about a third of these values
    rng = np.random.default_rng(7)
    v = rng.uniform(-0.7, 0.7, size=(1, 4096, 3, 3)).astype(np.float32)
    for size in (32, 24):
        got = np.asarray(jax.jit(_to_units, static_argnums=1)(jnp.asarray(v), size))
        np.testing.assert_array_equal(got, to_voxel_units(v, size))


def test_columns_exactly_on_edges_with_rounded_products():
    # Triangles (in voxel units) whose edge from corner 0 passes exactly through an integer
    # column, at a point where the barycentric numerator y2d xpd - x2d ypd is exactly 0 because
    # the two products are the same real number, though neither is a float32: unfused, both
    # round alike and t1 = 0 (the column is inside); a fused multiply-add would leave the
    # rounding error of one product instead, negative half of the time.
    rng = np.random.default_rng(8)
    n = 400
    col = rng.integers(4, 28, size=(n, 2)).astype(np.float32)
    direction = rng.integers(1, 8, size=(n, 2)) * rng.choice([-1, 1], size=(n, 2))
    c = (rng.integers(2**14, 2**16, size=(n, 1)) | 1) / np.float32(2**16)  # 16-bit fractions
    e = c * rng.uniform(1.5, 3.0, size=(n, 1))
    e = np.round(e * 2**14) / 2**14  # edge length beyond the column, 14-bit fraction
    p0 = col - direction * c
    p2 = p0 + direction * e
    p1 = p0 + rng.uniform(-3, 3, size=(n, 2))
    yx = np.stack([p0, p1, p2], 1).astype(np.float32)  # [n, corner, (y, x)]
    depth = rng.uniform(4, 28, size=(n, 3, 1)).astype(np.float32)
    on_t2 = rng.uniform(size=n) < 0.5  # also the edge from corner 0 to corner 1 (t2 = 0)
    yx[on_t2] = yx[on_t2][:, [0, 2, 1]]
    tris = np.concatenate([yx, depth], axis=2)  # projected along c2: (y, x) = (c0, c1)
    # the construction is exact, and fusing would matter for many of these columns
    y0, x0 = tris[:, 0, 0], tris[:, 0, 1]
    ypd, xpd = col[:, 0] - y0, col[:, 1] - x0
    assert np.array_equal(ypd.astype(np.float64), col[:, 0].astype(np.float64) - y0)
    (y1d, x1d), (y2d, x2d) = (tris[:, k, :2].T - np.stack([y0, x0]) for k in (1, 2))
    n1 = np.where(on_t2, x1d * ypd - y1d * xpd, y2d * xpd - x2d * ypd)  # float32, unfused
    assert np.all(n1 == 0)
    exact = np.where(
        on_t2,
        x1d.astype(np.float64) * ypd - (y1d * xpd).astype(np.float64),
        y2d.astype(np.float64) * xpd - (x2d * ypd).astype(np.float64),
    )
    assert np.mean(exact != 0) > 0.5
    batch = np.full((1, 512, 3, 3), np.nan, np.float32)
    batch[0, :n] = tris
    got = np.asarray(jax.jit(_surface_units, static_argnums=(1, 2, 3))(batch, S, 1 << 14, (3,)))
    want = surface_voxels_units(tris, S)
    np.testing.assert_array_equal(got[0], want)
    # the columns are inside (t1 or t2 exactly 0): each marks a voxel of its column
    assert np.all(want[col[:, 0].astype(int), col[:, 1].astype(int)].any(axis=-1))


# --- padded batches of meshes of different sizes (face_counts) -------------------------------

S16 = 16


def ragged_meshes() -> list[np.ndarray]:
    """Four ``[F_b, 3, 3]`` float32 meshes of different sizes: the level-1 and level-2
    icospheres (80 and 320 faces), an open deformed blob (200 faces) and an empty mesh."""
    v1, f1 = _icosphere_np(1)
    v2, f2 = _icosphere_np(2)
    rng = np.random.default_rng(20)
    return [
        (v1 * 0.4)[f1].astype(np.float32),
        (v2 * 0.3 + np.float32([0.1, -0.05, 0.02]))[f2].astype(np.float32),
        blob(2, rng, noise=0.01)[:200],
        np.zeros((0, 3, 3), np.float32),
    ]


def pad_face_vertices(meshes, extra=0, seed=0):
    """``([B, F, 3, 3], [B] int32)``: the meshes padded to the largest plus ``extra`` faces with
    garbage that would mark voxels if it were read: random triangles inside the grid, planes
    larger than the grid, and non-finite corners."""
    rng = np.random.default_rng(seed)
    f = max(len(m) for m in meshes) + extra
    fv = rng.uniform(-0.6, 0.6, (len(meshes), f, 3, 3)).astype(np.float32)
    fv[:, ::7] = np.float32([[-5, -5, 0.1], [5, -5, 0.1], [0, 5, 0.1]])  # a whole layer
    fv[:, 3::11, 1, 2] = np.nan
    for b, m in enumerate(meshes):
        fv[b, : len(m)] = m
    return fv, np.array([len(m) for m in meshes], np.int32)


def alone(meshes) -> np.ndarray:
    """``[B, S16, S16, S16]``: each mesh voxelised on its own by the NumPy port of SoftRas's
    voxelization (no compilation)."""
    return np.stack([voxelize_numpy(m[None], S16)[0] for m in meshes])


def nan_padded(meshes, f):
    """The meshes padded to ``f`` faces with NaN triangles, which the rule skips: each row
    voxelises as the mesh alone, without face_counts."""
    fv = np.full((len(meshes), f, 3, 3), np.nan, np.float32)
    for b, m in enumerate(meshes):
        fv[b, : len(m)] = m
    return fv


@pytest.mark.parametrize("extra", [0, 37])
def test_padded_batch_equals_each_mesh_alone(extra):
    meshes = ragged_meshes()
    fv, counts = pad_face_vertices(meshes, extra, seed=extra)
    got = np.asarray(voxelize(fv, S16, face_counts=counts))
    assert got.shape == (4, S16, S16, S16) and got.dtype == bool
    np.testing.assert_array_equal(got, alone(meshes))
    assert got[:3].sum((1, 2, 3)).min() > 0 and not got[3].any()  # the empty mesh: no voxel
    if extra == 0:
        # literally voxelize of the mesh alone (a compilation per shape: two meshes suffice)
        for b in (0, 3):
            want = np.asarray(voxelize(fv[b : b + 1, : counts[b]], S16))[0]
            np.testing.assert_array_equal(got[b], want)


def test_padded_batch_int32_slices(monkeypatch):
    # a batch too large for int32 indices is run a slice at a time: the counts follow
    meshes = ragged_meshes()
    fv, counts = pad_face_vertices(meshes, seed=1)
    monkeypatch.setattr(softjax.voxel, "_INDEX_LIMIT", 2 * 4 * S16**3)  # 2 meshes per slice
    got = np.asarray(voxelize(fv, S16, face_counts=counts))
    np.testing.assert_array_equal(got, alone(meshes))


def test_padded_batch_traced_counts():
    meshes = ragged_meshes()
    fv, counts = pad_face_vertices(meshes, seed=2)
    f = fv.shape[1]
    full = np.full(4, f, np.int32)
    want = alone(meshes)
    jitted = jax.jit(lambda x, c: voxelize(x, S16, face_counts=c))
    np.testing.assert_array_equal(np.asarray(jitted(fv, counts)), want)
    # counts F: every face is real (NaN padding is skipped by the rule itself)
    np.testing.assert_array_equal(np.asarray(jitted(nan_padded(meshes, f), full)), want)
    # the garbage padding would have marked voxels (mesh 1 has no padding)
    marked = np.asarray(jitted(fv, full)).sum((1, 2, 3)) > want.sum((1, 2, 3))
    assert marked.tolist() == [True, False, True, True]
    # traced counts outside [0, F] are not checked: they act clipped
    wild = np.array([-3, f + 5, 0, f], np.int32)
    clipped = np.asarray(jitted(fv, np.clip(wild, 0, f)))
    np.testing.assert_array_equal(np.asarray(jitted(fv, wild)), clipped)
    assert not clipped[0].any() and not clipped[2].any()
    # vmap over batches with their own counts
    both = jax.jit(jax.vmap(lambda x, c: voxelize(x, S16, face_counts=c)))
    out = np.asarray(both(np.stack([fv, fv]), np.stack([counts, wild])))
    np.testing.assert_array_equal(out[0], want)
    np.testing.assert_array_equal(out[1], clipped)


def test_padded_batch_surface_voxels():
    meshes = ragged_meshes()
    fv, counts = pad_face_vertices(meshes, seed=3)
    surf = jax.jit(lambda x, c: surface_voxels(x, S16, face_counts=c))
    got = np.asarray(surf(fv, counts))
    for b, m in enumerate(meshes):
        np.testing.assert_array_equal(got[b], surface_voxels_numpy(m, S16))
    full = np.full(4, fv.shape[1], np.int32)
    np.testing.assert_array_equal(np.asarray(surf(nan_padded(meshes, fv.shape[1]), full)), got)


_FV = np.zeros((2, 5, 3, 3), np.float32)


@pytest.mark.parametrize(
    "counts, match",
    [
        (np.array([1, 2, 3]), r"face_counts must have shape \[B\] = \[2\]"),
        (np.array([[1, 2]]), r"face_counts must have shape \[B\] = \[2\]"),
        (np.int32(3), r"face_counts must have shape \[B\] = \[2\]"),
        (np.array([1.0, 2.0]), "face_counts must be integers"),
        (np.array([True, False]), "face_counts must be integers"),
        (np.array([-1, 2]), r"face_counts must lie in \[0, F\] = \[0, 5\]"),
        (np.array([6, 2]), r"face_counts must lie in \[0, F\] = \[0, 5\]"),
    ],
)
def test_padded_batch_errors(counts, match):
    with pytest.raises(ValueError, match=match):
        voxelize(_FV, S16, face_counts=counts)
    with pytest.raises(ValueError, match=match):
        surface_voxels(_FV, S16, face_counts=counts)


@pytest.mark.parametrize(
    "counts, match",
    [
        (jnp.array([1, 2, 3]), r"face_counts must have shape \[B\] = \[2\]"),
        (jnp.array([1.0, 2.0]), "face_counts must be integers"),
    ],
)
def test_padded_batch_errors_traced(counts, match):
    with pytest.raises(ValueError, match=match):
        jax.jit(lambda c: voxelize(_FV, S16, face_counts=c))(counts)
