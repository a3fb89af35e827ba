"""Silhouette IoU losses and the Laplacian / flatten mesh regularisers."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from softjax.losses import (
    flatten_edges,
    flatten_loss,
    iou_loss,
    laplacian_loss,
    mesh_edges,
    multiview_iou_loss,
)
from softjax.mesh import _icosphere_np

# ----------------------------------------------------------------------------- IoU


def _iou_loss_np(p, t, eps=1e-6):
    p, t = np.asarray(p, np.float64), np.asarray(t, np.float64)
    vals = []
    for pb, tb in zip(p, t, strict=True):
        vals.append((pb * tb).sum() / ((pb + tb - pb * tb).sum() + eps))
    return 1.0 - np.mean(vals)


def test_iou_loss_hand_computed():
    # one 2x2 image: intersection 0.5*1 + 0.25*0 = 0.5,
    # union (0.5 + 1 - 0.5) + (0.25 + 0 - 0) + (0 + 1 - 0) + 0 = 2.25
    p = np.array([[[0.5, 0.25], [0.0, 0.0]]], np.float32)
    t = np.array([[[1.0, 0.0], [1.0, 0.0]]], np.float32)
    np.testing.assert_allclose(iou_loss(p, t), 1 - 0.5 / (2.25 + 1e-6), rtol=1e-6)


def test_iou_loss_random_batch_overlap_and_disjoint():
    rng = np.random.default_rng(0)
    p = rng.uniform(0, 1, (3, 8, 9)).astype(np.float32)
    t = rng.uniform(0, 1, (3, 8, 9)).astype(np.float32)
    loss = iou_loss(p, t)
    assert loss.shape == () and loss.dtype == jnp.float32
    np.testing.assert_allclose(loss, _iou_loss_np(p, t), rtol=1e-5)

    mask = (rng.uniform(0, 1, (2, 8, 8)) > 0.5).astype(np.float32)
    np.testing.assert_allclose(iou_loss(mask, mask), 0.0, atol=1e-6)
    np.testing.assert_allclose(iou_loss(mask, 1 - mask), 1.0, atol=1e-6)
    # bool targets are accepted
    np.testing.assert_allclose(iou_loss(mask, mask.astype(bool)), 0.0, atol=1e-6)
    # two empty silhouettes: eps keeps it finite (IoU 0)
    np.testing.assert_allclose(iou_loss(np.zeros((1, 4, 4)), np.zeros((1, 4, 4))), 1.0)


def test_iou_loss_grad_and_jit():
    rng = np.random.default_rng(1)
    p = jnp.asarray(rng.uniform(0, 1, (2, 6, 6)), jnp.float32)
    t = jnp.asarray(rng.uniform(0, 1, (2, 6, 6)) > 0.5, jnp.float32)
    g = jax.grad(iou_loss)(p, t)
    assert g.shape == p.shape and np.all(np.isfinite(g))
    np.testing.assert_allclose(jax.jit(iou_loss)(p, t), iou_loss(p, t), rtol=1e-6)
    with pytest.raises(ValueError):
        iou_loss(p, t[:1])


def test_multiview_iou_loss():
    rng = np.random.default_rng(2)
    preds = [rng.uniform(0, 1, (2, 5, 5, 4)).astype(np.float32) for _ in range(4)]
    ta = rng.uniform(0, 1, (2, 5, 5, 4)).astype(np.float32)
    tb = rng.uniform(0, 1, (2, 5, 5, 4)).astype(np.float32)
    want = (
        _iou_loss_np(preds[0][..., 3], ta[..., 3])
        + _iou_loss_np(preds[1][..., 3], ta[..., 3])
        + _iou_loss_np(preds[2][..., 3], tb[..., 3])
        + _iou_loss_np(preds[3][..., 3], tb[..., 3])
    ) / 4
    np.testing.assert_allclose(multiview_iou_loss(preds, ta, tb), want, rtol=1e-5)
    # silhouette targets, a stacked prediction array, a tuple
    np.testing.assert_allclose(multiview_iou_loss(preds, ta[..., 3], tb[..., 3]), want, rtol=1e-5)
    np.testing.assert_allclose(multiview_iou_loss(np.stack(preds), ta, tb), want, rtol=1e-5)
    np.testing.assert_allclose(multiview_iou_loss(tuple(preds), ta, tb), want, rtol=1e-5)
    # only the alpha channel matters
    noisy = [
        np.concatenate([rng.uniform(0, 1, p.shape[:-1] + (3,)), p[..., 3:]], -1) for p in preds
    ]
    np.testing.assert_allclose(multiview_iou_loss(noisy, ta, tb), want, rtol=1e-5)
    perfect = multiview_iou_loss([ta, ta, tb, tb], ta, tb)
    assert perfect < 0.7  # soft values: not 0, but lower than for random predictions
    binary_a = (ta > 0.5).astype(np.float32)
    binary_b = (tb > 0.5).astype(np.float32)
    np.testing.assert_allclose(
        multiview_iou_loss([binary_a, binary_a, binary_b, binary_b], binary_a, binary_b),
        0.0,
        atol=1e-6,
    )
    g = jax.grad(lambda p: multiview_iou_loss(p, ta, tb))(jnp.stack(preds))
    assert np.all(np.isfinite(g)) and np.all(g[..., :3] == 0)
    with pytest.raises(ValueError):
        multiview_iou_loss(preds[:3], ta, tb)


# ----------------------------------------------------------------------------- Laplacian


def _dense_laplacian(faces, nv):
    a = np.zeros((nv, nv))
    for f in faces:
        for i, j in ((0, 1), (1, 2), (2, 0)):
            if f[i] != f[j]:
                a[f[i], f[j]] = a[f[j], f[i]] = 1
    deg = a.sum(1)
    return np.eye(nv) - a / np.where(deg > 0, deg, 1)[:, None] * (deg > 0)[:, None], deg


def test_laplacian_matches_dense_numpy():
    v, f = _icosphere_np(1)
    nv = v.shape[0]
    rng = np.random.default_rng(3)
    verts = v[None] + rng.normal(0, 0.05, (3, nv, 3))
    lap, deg = _dense_laplacian(f, nv)
    assert set(deg) == {5, 6}
    want = ((lap @ verts) ** 2).sum(axis=(1, 2))
    loss = laplacian_loss(f, nv)
    got = loss(jnp.asarray(verts, jnp.float32))
    assert got.shape == (3,) and got.dtype == jnp.float32
    np.testing.assert_allclose(got, want, rtol=1e-5)
    # [1, F, 3] faces, jit, vmap, grad
    loss1 = laplacian_loss(f[None], nv)
    np.testing.assert_allclose(jax.jit(loss1)(verts.astype(np.float32)), want, rtol=1e-5)
    np.testing.assert_allclose(
        jax.vmap(loss)(verts[:, None].astype(np.float32))[:, 0], want, rtol=1e-5
    )
    g = jax.grad(lambda x: loss(x).sum())(jnp.asarray(verts, jnp.float32))
    assert g.shape == verts.shape and np.all(np.isfinite(g))
    # gradient of sum |L v|^2 is 2 L^T L v
    np.testing.assert_allclose(g, 2 * lap.T @ lap @ verts, rtol=1e-4, atol=1e-5)


def test_laplacian_float64(float64):
    v, f = _icosphere_np(1)
    rng = np.random.default_rng(4)
    verts = v[None].astype(np.float64) + rng.normal(0, 0.05, (2,) + v.shape)
    lap, _ = _dense_laplacian(f, v.shape[0])
    got = laplacian_loss(f, v.shape[0])(jnp.asarray(verts))
    assert got.dtype == jnp.float64
    np.testing.assert_allclose(got, ((lap @ verts) ** 2).sum(axis=(1, 2)), rtol=1e-12)


def test_laplacian_regular_icosahedron_known_value():
    # every vertex of the icosahedron has 5 neighbours at angle arccos(1/sqrt 5): their mean is
    # v / sqrt(5), so L v = (1 - 1/sqrt 5) v (parallel to v) and the loss is 12 (1 - 1/sqrt 5)^2
    v, f = _icosphere_np(0)
    loss = laplacian_loss(f, 12)(jnp.asarray(v[None]))
    np.testing.assert_allclose(loss, [12 * (1 - 5**-0.5) ** 2], rtol=1e-5)
    # and for a sphere with 5- and 6-valent vertices: sum |v - mean of neighbours|^2 by a loop
    v1, f1 = _icosphere_np(2)
    nbrs = [set() for _ in range(v1.shape[0])]
    for a, b, c in f1:
        nbrs[a] |= {b, c}
        nbrs[b] |= {a, c}
        nbrs[c] |= {a, b}
    want = sum(np.sum((v1[i] - v1[sorted(n)].mean(0)) ** 2) for i, n in enumerate(nbrs))
    got = laplacian_loss(f1, v1.shape[0])(jnp.asarray(v1[None] * 2.0))
    np.testing.assert_allclose(got, [4 * want], rtol=1e-4)


def test_laplacian_isolated_vertex_and_errors():
    f = np.array([[0, 1, 2]])
    loss = laplacian_loss(f, 4)  # vertex 3 is unused: no contribution
    v = jnp.asarray([[[0.0, 0, 0], [1, 0, 0], [0, 1, 0], [5, 5, 5]]])
    # v0 - (v1 + v2)/2 = (-.5, -.5, 0), v1 - (v0 + v2)/2 = (1, -.5, 0), v2 - ... = (-.5, 1, 0)
    want = 0.5 + 1.25 + 1.25
    np.testing.assert_allclose(loss(v), [want], rtol=1e-6)
    with pytest.raises(ValueError):
        laplacian_loss(f, 2)  # index 2 out of range
    with pytest.raises(ValueError):
        laplacian_loss(f.astype(np.float32), 3)
    with pytest.raises(ValueError):
        loss(v[:, :3])
    assert mesh_edges(np.array([[0, 1, 2], [2, 1, 3]])).tolist() == [
        [0, 1],
        [0, 2],
        [1, 2],
        [1, 3],
        [2, 3],
    ]


# ----------------------------------------------------------------------------- flatten


def _grid(n, fold=0.0):
    """``(n+1)^2`` vertices of the unit square in z = 0, two triangles per cell; ``fold`` lifts
    z by ``fold * |x - 0.5|`` (a crease along x = 0.5 when ``n`` is even)."""
    xs = np.linspace(0, 1, n + 1)
    x, y = np.meshgrid(xs, xs, indexing="ij")
    v = np.stack([x, y, fold * np.abs(x - 0.5)], -1).reshape(-1, 3)
    faces = []
    for i in range(n):
        for j in range(n):
            a, b = i * (n + 1) + j, (i + 1) * (n + 1) + j
            c, d = a + 1, b + 1
            faces += [[a, b, d], [a, d, c]]
    return v.astype(np.float32), np.asarray(faces, np.int32)


def _flatten_np(verts, faces, eps=1e-6):
    """Straightforward loop: every edge shared by exactly two faces, v2 / v3 from the first /
    second face in face order."""
    owners: dict[tuple[int, int], list[int]] = {}
    for fi, face in enumerate(faces):
        for k in range(3):
            e = tuple(sorted((int(face[k]), int(face[(k + 1) % 3]))))
            owners.setdefault(e, []).append(fi)
    out = []
    for v in np.asarray(verts, np.float64):
        total = 0.0
        for (i0, i1), fs in owners.items():
            if len(fs) != 2:
                continue
            i2 = [x for x in faces[fs[0]] if x not in (i0, i1)][0]
            i3 = [x for x in faces[fs[1]] if x not in (i0, i1)][0]
            v0, v1, v2, v3 = v[i0], v[i1], v[i2], v[i3]
            a1 = v1 - v0
            a1l2 = a1 @ a1
            a1l1 = np.sqrt(a1l2 + eps)
            cbs = []
            for b in (v2 - v0, v3 - v0):
                bl2 = b @ b
                bl1 = np.sqrt(bl2 + eps)
                ab = a1 @ b
                cos = ab / (a1l1 * bl1 + eps)
                sin = np.sqrt(1 - cos**2 + eps)
                cbs.append((b - a1 * (ab / (a1l2 + eps)), bl1 * sin))
            cos = (cbs[0][0] @ cbs[1][0]) / (cbs[0][1] * cbs[1][1] + eps)
            total += (cos + 1) ** 2
        out.append(total)
    return np.asarray(out)


def test_flatten_flat_grid_is_zero_and_fold_positive():
    v, f = _grid(6)
    loss = flatten_loss(f)
    edges = flatten_edges(f)
    # interior edges of a 6x6 grid: 5*6 horizontal + 5*6 vertical + 36 diagonals
    assert edges.shape == (96, 4)
    flat = loss(jnp.asarray(v[None]))
    assert flat.shape == (1,)
    # not exactly 0: the eps regularisers leave cos ~1e-4 above -1 on edges of length 1/6
    assert float(flat[0]) < 1e-5
    np.testing.assert_allclose(flat, _flatten_np(v[None], f), rtol=0.05, atol=1e-7)
    vf, _ = _grid(6, fold=1.0)
    folded = loss(jnp.asarray(vf[None]))
    np.testing.assert_allclose(folded, _flatten_np(vf[None], f), rtol=1e-4)
    # the crease x = 0.5 (6 edges) is a right angle: the in-face normals to the edge are
    # (-1, 0, 1) / sqrt 2 and (1, 0, 1) / sqrt 2, cos = 0, (cos + 1)^2 = 1 each; the rest is flat
    np.testing.assert_allclose(folded, [6.0], rtol=1e-4)
    # a fully folded sheet (both faces on the same side) gives (cos + 1)^2 = 4 per edge
    two = np.array([[0.0, 0, 0], [1, 0, 0], [0, 1, 0], [0, 1, 0.01]], np.float32)
    np.testing.assert_allclose(
        flatten_loss(np.array([[0, 1, 2], [1, 0, 3]]))(jnp.asarray(two[None])), [4.0], rtol=1e-3
    )


def test_flatten_matches_numpy_loop_and_composes():
    v, f = _icosphere_np(1)
    rng = np.random.default_rng(5)
    verts = (v[None] + rng.normal(0, 0.05, (2,) + v.shape)).astype(np.float32)
    loss = flatten_loss(f)
    assert flatten_edges(f).shape == (3 * f.shape[0] // 2, 4)  # closed: every edge interior
    want = _flatten_np(verts, f)
    np.testing.assert_allclose(loss(verts), want, rtol=1e-4)
    np.testing.assert_allclose(jax.jit(loss)(verts), want, rtol=1e-4)
    np.testing.assert_allclose(flatten_loss(f[None])(verts), want, rtol=1e-4)
    g = jax.grad(lambda x: loss(x).sum())(jnp.asarray(verts))
    assert g.shape == verts.shape and np.all(np.isfinite(g)) and np.any(g != 0)
    # an open grid with noise: boundary edges are skipped
    vg, fg = _grid(4)
    vg = (vg[None] + rng.normal(0, 0.03, (3,) + vg.shape)).astype(np.float32)
    np.testing.assert_allclose(flatten_loss(fg)(vg), _flatten_np(vg, fg), rtol=1e-4)


def test_flatten_float64(float64):
    v, f = _icosphere_np(1)
    rng = np.random.default_rng(6)
    verts = v[None].astype(np.float64) + rng.normal(0, 0.05, (2,) + v.shape)
    np.testing.assert_allclose(
        flatten_loss(f)(jnp.asarray(verts)), _flatten_np(verts, f), rtol=1e-10
    )


def test_flatten_edge_cases():
    # a single face has no interior edge; degenerate faces are ignored
    loss = flatten_loss(np.array([[0, 1, 2], [0, 0, 1]]))
    out = loss(jnp.zeros((2, 3, 3)))
    assert out.shape == (2,) and np.all(out == 0)
    with pytest.raises(ValueError):
        flatten_loss(np.zeros((4, 2), np.int32))
