"""Solid voxelisation (surface sampling, flood fill, NMR axis convention) and voxel IoU."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from softjax.mesh import _icosphere_np, gather_faces
from softjax.voxel import fill_enclosed, surface_voxels, voxel_iou, voxelize

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
    # occupied = interior + every voxel the surface passes through: the surface voxels stick out
    # of the sphere by half a voxel on average, ~0.75 voxel^3 per voxel^2 of area (+14% here)
    assert analytic < frac < 1.2 * analytic
    # exactly: the voxels whose unit cube meets the ball (radius 15.5 about (16, 16, 16))
    c = np.arange(S)
    d = np.maximum(np.maximum(c - 16, 0), 16 - (c + 1)).astype(np.float64)
    meets = d[:, None, None] ** 2 + d[None, :, None] ** 2 + d[None, None, :] ** 2 <= 15.5**2
    assert not np.any(vox & ~meets)  # nothing outside the sphere
    # a few cubes that the surface only clips near a corner are missed by the sampling
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
