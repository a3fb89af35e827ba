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
from softjax.mesh import _icosphere_np, icosphere_arrays

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


# ----------------------------------------------------------------------------- padded batches


def _ragged_meshes():
    """Three different meshes ``(vertices [V_b, 3] float32, faces [F_b, 3] int32)``: the
    icospheres of levels 1 and 2, and a noisy open cap of the level-2 one (its first 200 faces:
    boundary edges, and vertices that no face uses)."""
    rng = np.random.default_rng(10)
    v1, f1 = icosphere_arrays(1)
    v2, f2 = icosphere_arrays(2)
    v3 = (v2 * 0.7 + rng.normal(0, 0.03, v2.shape)).astype(np.float32)
    return [(np.array(v1), np.array(f1)), (np.array(v2), np.array(f2)), (v3, np.array(f2[:200]))]


def _pad(meshes, extra_faces=0, extra_vertices=0, seed=0):
    """``(vertices [B, V, 3], faces [B, F, 3], face_counts [B])`` padded to the largest mesh
    plus the extras, the padding filled with garbage: random coordinates, random in-range
    vertex indices."""
    rng = np.random.default_rng(seed)
    nv = max(v.shape[0] for v, _ in meshes) + extra_vertices
    nf = max(f.shape[0] for _, f in meshes) + extra_faces
    verts = rng.normal(0, 3, (len(meshes), nv, 3)).astype(np.float32)
    faces = rng.integers(0, nv, (len(meshes), nf, 3)).astype(np.int32)
    for b, (v, f) in enumerate(meshes):
        verts[b, : v.shape[0]] = v
        faces[b, : f.shape[0]] = f
    counts = np.array([f.shape[0] for _, f in meshes], np.int32)
    return verts, faces, counts


def _loss_and_grad(loss, verts):
    """``loss(verts)`` and the gradient of its sum, in one jitted call (eager, every primitive
    would be compiled on its own for each new shape: seconds per mesh)."""
    return jax.jit(lambda x: (loss(x), jax.grad(lambda y: loss(y).sum())(x)))(jnp.asarray(verts))


def _dense_laplacian_loss(v, f):
    """float64 loss of one mesh from its dense Laplacian, the rows of unused vertices zeroed."""
    lap, deg = _dense_laplacian(f, v.shape[0])
    lap[deg == 0] = 0
    return ((lap @ v.astype(np.float64)) ** 2).sum()


@pytest.mark.parametrize("extra_faces", [0, 37])
def test_padded_laplacian_equals_each_mesh_alone(extra_faces):
    meshes = _ragged_meshes()
    verts, faces, counts = _pad(meshes, extra_faces, extra_vertices=5, seed=extra_faces)
    nv = verts.shape[1]
    loss = laplacian_loss(faces, nv, face_counts=counts)
    got, g = _loss_and_grad(loss, verts)
    assert got.shape == (3,) and got.dtype == jnp.float32
    alone = [_loss_and_grad(laplacian_loss(f, v.shape[0]), v[None]) for v, f in meshes]
    np.testing.assert_allclose(got, [a[0][0] for a in alone], rtol=1e-5)
    # against the dense Laplacian of each mesh (float64 NumPy)
    for b, (v, f) in enumerate(meshes):
        np.testing.assert_allclose(got[b], _dense_laplacian_loss(v, f), rtol=1e-5)

    for b, (v, _) in enumerate(meshes):
        np.testing.assert_allclose(g[b, : v.shape[0]], alone[b][1][0], rtol=1e-4, atol=1e-6)
        assert np.all(g[b, v.shape[0] :] == 0)  # padded vertices: exactly zero
    # leading axes and vmap over them
    stacked = jnp.stack([verts, verts * 2])
    np.testing.assert_allclose(jax.jit(loss)(stacked), [got, 4 * got], rtol=1e-5)
    np.testing.assert_allclose(jax.jit(jax.vmap(loss))(stacked), [got, 4 * got], rtol=1e-5)


def test_padded_laplacian_float64_and_padding_amount(float64):
    meshes = _ragged_meshes()
    results = []
    for extra, seed in ((0, 1), (37, 2)):
        verts, faces, counts = _pad(meshes, extra, extra_vertices=extra, seed=seed)
        nv = verts.shape[1]
        got = jax.jit(laplacian_loss(faces, nv, face_counts=counts))(
            jnp.asarray(verts, jnp.float64)
        )
        assert got.dtype == jnp.float64
        results.append(np.asarray(got))
    for b, (v, f) in enumerate(meshes):
        want = _dense_laplacian_loss(v, f)
        np.testing.assert_allclose([r[b] for r in results], [want, want], rtol=1e-12)


@pytest.mark.parametrize("extra_faces", [0, 37])
def test_padded_flatten_equals_each_mesh_alone(extra_faces):
    meshes = _ragged_meshes()
    verts, faces, counts = _pad(meshes, extra_faces, extra_vertices=5, seed=3 + extra_faces)
    loss = flatten_loss(faces, face_counts=counts)
    got, g = _loss_and_grad(loss, verts)
    assert got.shape == (3,) and got.dtype == jnp.float32
    alone = [_loss_and_grad(flatten_loss(f), v[None]) for v, f in meshes]
    np.testing.assert_allclose(got, [a[0][0] for a in alone], rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(got[2], _flatten_np(meshes[2][0][None], meshes[2][1])[0], rtol=1e-4)

    assert np.all(np.isfinite(g))
    for b, (v, _) in enumerate(meshes):
        np.testing.assert_allclose(g[b, : v.shape[0]], alone[b][1][0], rtol=1e-4, atol=1e-5)
        assert np.all(g[b, v.shape[0] :] == 0)
    both = jax.jit(jax.vmap(loss))(jnp.stack([verts, verts]))
    np.testing.assert_allclose(both, [got, got], rtol=1e-5)  # float32 sums, fused anew


def test_padded_flatten_float64(float64):
    meshes = _ragged_meshes()
    verts, faces, counts = _pad(meshes, 11, seed=4)
    got = jax.jit(flatten_loss(faces, face_counts=counts))(jnp.asarray(verts, jnp.float64))
    assert got.dtype == jnp.float64
    for b, (v, f) in enumerate(meshes):
        np.testing.assert_allclose(got[b], _flatten_np(v[None], f)[0], rtol=1e-10)


def test_padded_losses_all_padding_mesh_and_wild_padding():
    # mesh 1 has no face at all; its row and all padding hold huge, inf and NaN values and
    # out-of-range indices, which must never be read
    v1, f1 = (np.array(a) for a in icosphere_arrays(1))
    nv, nf = v1.shape[0] + 3, f1.shape[0] + 4
    verts = np.full((2, nv, 3), np.nan, np.float32)
    verts[:, -1] = np.inf
    verts[0, : v1.shape[0]] = v1
    faces = np.full((2, nf, 3), -7, np.int32)
    faces[:, -1] = 10**6
    faces[0, : f1.shape[0]] = f1
    counts = np.array([f1.shape[0], 0], np.int32)
    for make, alone in (
        (lambda: laplacian_loss(faces, nv, face_counts=counts), laplacian_loss(f1, v1.shape[0])),
        (lambda: flatten_loss(faces, face_counts=counts), flatten_loss(f1)),
    ):
        out, g = _loss_and_grad(make(), verts)
        np.testing.assert_allclose(out[0], jax.jit(alone)(v1[None])[0], rtol=1e-5)
        assert out[1] == 0
        assert np.all(np.isfinite(g[0, : v1.shape[0]])) and np.any(g[0] != 0)
        assert np.all(g[0, v1.shape[0] :] == 0) and np.all(g[1] == 0)
    # every mesh empty
    zero = jax.jit(laplacian_loss(faces, nv, face_counts=np.zeros(2, np.int64)))(verts)
    assert zero.shape == (2,) and np.all(zero == 0)
    assert np.all(jax.jit(flatten_loss(faces, face_counts=[0, 0]))(verts) == 0)


def test_batched_faces_without_face_counts():
    # [B, F, 3] faces, all real: each mesh its own connectivity (same F, different faces)
    v2, f2 = (np.array(a) for a in icosphere_arrays(2))
    fa, fb = f2[:150], f2[100:250]
    rng = np.random.default_rng(11)
    verts = (v2[None] + rng.normal(0, 0.05, (2,) + v2.shape)).astype(np.float32)
    faces = np.stack([fa, fb])
    nv = v2.shape[0]
    lap = jax.jit(laplacian_loss(faces, nv))(verts)
    want = [jax.jit(laplacian_loss(f, nv))(verts[i : i + 1])[0] for i, f in enumerate((fa, fb))]
    np.testing.assert_allclose(lap, want, rtol=1e-5)
    flat = jax.jit(flatten_loss(faces))(verts)
    want = [jax.jit(flatten_loss(f))(verts[i : i + 1])[0] for i, f in enumerate((fa, fb))]
    np.testing.assert_allclose(flat, want, rtol=1e-5, atol=1e-6)
    # face_counts equal to F is the same
    full = np.full(2, faces.shape[1], np.int32)
    full_loss = jax.jit(flatten_loss(faces, face_counts=full))
    np.testing.assert_allclose(full_loss(verts), flat, rtol=1e-6)


def _traced_counts(make):
    jax.jit(make)(jnp.array([1, 1], jnp.int32))


_F2 = np.array([[[0, 1, 2], [1, 2, 3], [9, 9, 9]], [[0, 2, 3], [0, 1, 3], [1, 2, 3]]], np.int32)


@pytest.mark.parametrize("which", ["laplacian", "flatten"])
@pytest.mark.parametrize(
    "faces, counts, match",
    [
        (_F2, np.array([1, 2, 3]), r"face_counts must have shape \[B\] = \[2\]"),
        (_F2, np.array([[1, 2]]), r"face_counts must have shape \[B\]"),
        (_F2, np.array([1.0, 2.0]), "face_counts must be integers"),
        (_F2, np.array([True, False]), "face_counts must be integers"),
        (_F2, np.array([-1, 2]), r"face_counts must lie in \[0, F\] = \[0, 3\]"),
        (_F2, np.array([4, 2]), r"face_counts must lie in \[0, F\] = \[0, 3\]"),
        (_F2[0], np.array([2]), r"padded faces must have shape \[B, F, 3\]"),
        (_F2.astype(np.float32), np.array([2, 3]), "faces must be integer vertex indices"),
        (np.where(_F2 == 3, -1, _F2), np.array([2, 3]), "faces of mesh 0 hold negative"),
    ],
)
def test_padded_loss_errors(which, faces, counts, match):
    with pytest.raises(ValueError, match=match):
        if which == "laplacian":
            laplacian_loss(faces, 4, face_counts=counts)
        else:
            flatten_loss(faces, face_counts=counts)


def test_padded_loss_errors_index_batch_and_traced():
    # index 9 is in mesh 0's padding (count 2): ignored; counted, it is out of range
    laplacian_loss(_F2, 4, face_counts=[2, 3])
    with pytest.raises(ValueError, match="faces of mesh 0 index vertex 9 but num_vertices is 4"):
        laplacian_loss(_F2, 4, face_counts=[3, 3])
    with pytest.raises(ValueError, match="faces of mesh 0 index vertex 9 but num_vertices is 4"):
        laplacian_loss(_F2, 4)  # no face_counts: every face is real
    # vertices with another batch size than the faces
    verts = jnp.zeros((3, 4, 3))
    with pytest.raises(ValueError, match=r"with B = 2 \(the meshes of faces\)"):
        laplacian_loss(_F2, 4, face_counts=[2, 3])(verts)
    with pytest.raises(ValueError, match=r"with B = 2 \(the meshes of faces\)"):
        flatten_loss(_F2, face_counts=[2, 3])(verts)
    with pytest.raises(ValueError, match=r"with B = 2 \(the meshes of faces\)"):
        flatten_loss(_F2, face_counts=[2, 3])(jnp.zeros((4, 3)))
    # flatten: vertices must hold every index of a real face's interior edges
    with pytest.raises(ValueError, match=r"V >= 4"):
        flatten_loss(_F2, face_counts=[2, 3])(jnp.zeros((2, 3, 3)))
    # the counts must be concrete: the tables are built in NumPy
    with pytest.raises(ValueError, match="face_counts must be concrete"):
        _traced_counts(lambda c: laplacian_loss(_F2, 4, face_counts=c)(jnp.zeros((2, 4, 3))))
    with pytest.raises(ValueError, match="face_counts must be concrete"):
        _traced_counts(lambda c: flatten_loss(_F2, face_counts=c)(jnp.zeros((2, 4, 3))))
