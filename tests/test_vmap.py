"""``jax.vmap`` of ``soft_rasterize`` runs the tiled backends once on the folded batch.

Every case compares with a Python loop of single calls, in float64: the folded forward and
backward (and their fallbacks: per-element scalars, a single call's pullback mapped over
cotangents) must give each element exactly what its own call gives, scalar gradients
included.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from helpers import SMALL_TILING, random_scene

import softjax as sj
from softjax.ops import streamed

A, B, F, S = 3, 2, 9, 16
SCALARS = (3e-3, 2e-2, 1.0, 6.0, 1e-3)  # sigma, gamma, near, far, eps


def _scene(seed: int = 0):
    fv, tex, vtex = random_scene(seed, batch=A * B, faces=F)
    shape = (A, B, F)
    return (
        fv.reshape(shape + fv.shape[2:]),
        tex.reshape(shape + tex.shape[2:]),
        vtex.reshape(shape + vtex.shape[2:]),
    )


def _loss(weights, **kw):
    """The weighted image of one element as a function of its arrays and the scalars."""

    def loss(fv, tex, w, sigma, gamma, near, far, eps, counts=None):
        img = sj.soft_rasterize(
            fv,
            tex,
            image_size=S,
            sigma_val=sigma,
            gamma_val=gamma,
            near=near,
            far=far,
            eps=eps,
            face_counts=counts,
            backend="xla",
            **kw,
        )
        return jnp.sum(img * w), img

    return loss


def _close(got, want, what):
    for g, w in zip(jax.tree.leaves(got), jax.tree.leaves(want), strict=True):
        np.testing.assert_allclose(g, w, rtol=1e-9, atol=1e-9 * max(1.0, np.abs(w).max()))
    assert len(jax.tree.leaves(got)) > 0, what


@pytest.fixture
def folded_batches(monkeypatch):
    """The batch sizes the streamed forward and backward are traced with (a folded ``vmap``
    also traces single calls, for shapes, and the unread per-element scalar gradients)."""
    seen = []
    forward, backward = streamed._forward, streamed._backward

    def fwd(passes, fv, *args):
        seen.append(("forward", fv.shape[0]))
        return forward(passes, fv, *args)

    def bwd(passes, fv, *args):
        seen.append(("backward", fv.shape[0]))
        return backward(passes, fv, *args)

    monkeypatch.setattr(streamed, "_forward", fwd)
    monkeypatch.setattr(streamed, "_backward", bwd)
    return seen


@pytest.mark.parametrize(
    "options",
    [
        dict(),
        dict(
            tiling=SMALL_TILING,
            dist_func="barycentric",
            aggr_func_rgb="hard",
            aggr_func_alpha="sum",
            texture_type="vertex",
        ),
    ],
    ids=["default", "small-tiling-bary-hard-sum-vertex"],
)
def test_vmap_of_the_gradient_folds_and_matches_single_calls(float64, folded_batches, options):
    fv, tex, vtex = _scene(1)
    if options.get("texture_type") == "vertex":
        tex = vtex
    w = np.random.default_rng(2).normal(size=(A, B, S, S, 4))
    loss = _loss(w, **options)
    argnums = (0, 1, 3, 4, 5, 6, 7)
    grad = jax.grad(loss, argnums, has_aux=True)
    single = jax.jit(grad)
    want = [single(fv[a], tex[a], w[a], *SCALARS) for a in range(A)]
    want = jax.tree.map(lambda *x: np.stack(x), *want)
    folded_batches.clear()
    got = jax.jit(jax.vmap(grad, (0, 0, 0) + (None,) * 5))(fv, tex, w, *SCALARS)
    _close(got, want, "vmap(grad)")
    # the forward and the backward were traced on all A * B images at once
    assert ("forward", A * B) in folded_batches and ("backward", A * B) in folded_batches

    # grad of the vmapped sum: the scalars' gradients add up over the elements
    def total(fv, tex, *scalars):
        per = jax.vmap(loss, (0, 0, 0) + (None,) * 5)(fv, tex, w, *scalars)
        return jnp.sum(per[0]), per[1]

    got = jax.jit(jax.grad(total, (0, 1, 2, 3, 4, 5, 6), has_aux=True))(fv, tex, *SCALARS)
    summed = want[0][:2] + tuple(np.sum(g, 0) for g in want[0][2:])
    _close(got, (summed, want[1]), "grad(vmap)")


def test_per_element_scalars_fall_back_to_a_plain_vmap(float64, folded_batches):
    fv, tex, _ = _scene(3)
    w = np.random.default_rng(4).normal(size=(A, B, S, S, 4))
    sigmas = np.array([3e-3, 1e-2, 5e-3])
    grad = jax.grad(_loss(w), (0, 1, 3), has_aux=True)
    single = jax.jit(grad)
    want = [single(fv[a], tex[a], w[a], sigmas[a], *SCALARS[1:]) for a in range(A)]
    want = jax.tree.map(lambda *x: np.stack(x), *want)
    folded_batches.clear()
    axes = (0, 0, 0, 0) + (None,) * 4
    got = jax.jit(jax.vmap(grad, axes))(fv, tex, w, sigmas, *SCALARS[1:])
    _close(got, want, "per-element sigma")
    assert ("forward", A * B) not in folded_batches


def test_pullback_of_one_call_mapped_over_cotangents(float64):
    """``jax.jacrev``'s pattern: one forward, its pullback under ``vmap`` (the saved state is
    the single call's, so the backward keeps its bins and maps)."""
    fv, tex, _ = _scene(5)
    kw = dict(image_size=S, sigma_val=SCALARS[0], backend="xla")
    img, pull = jax.vjp(lambda v, t: sj.soft_rasterize(v, t, **kw), fv[0], tex[0])
    cots = np.random.default_rng(6).normal(size=(4,) + img.shape)
    want = jax.tree.map(lambda *x: np.stack(x), *[pull(c) for c in cots])
    _close(jax.vmap(pull)(cots), want, "mapped pullback")
    jac = jax.jacrev(lambda v: sj.soft_rasterize(v, tex[0], **kw)[0, 5, 6:8, 3])(fv[0])
    for j in range(2):
        one_hot = np.zeros(img.shape)
        one_hot[0, 5, 6 + j, 3] = 1.0
        _close(jac[j], pull(one_hot)[0], "jacrev")


def test_nested_vmaps_fold_in_turn(float64, folded_batches):
    fv, tex, _ = _scene(7)
    fv, tex = fv.reshape((1, A) + fv.shape[1:]), tex.reshape((1, A) + tex.shape[1:])
    fv = np.concatenate([fv, fv[:, ::-1] * np.array([1.0, -1.0, 1.0])], 0)  # [2, A, B, F, 3, 3]
    tex = np.concatenate([tex, tex[:, ::-1]], 0)
    w = np.random.default_rng(8).normal(size=(2, A, B, S, S, 4))
    grad = jax.grad(_loss(w), (0, 1, 3), has_aux=True)
    single = jax.jit(grad)
    want = [[single(fv[i, a], tex[i, a], w[i, a], *SCALARS) for a in range(A)] for i in range(2)]
    want = jax.tree.map(lambda *x: np.stack(x).reshape((2, A) + x[0].shape), *sum(want, []))
    folded_batches.clear()
    axes = (0, 0, 0) + (None,) * 5
    got = jax.jit(jax.vmap(jax.vmap(grad, axes), axes))(fv, tex, w, *SCALARS)
    _close(got, want, "nested")
    assert ("forward", 2 * A * B) in folded_batches and ("backward", 2 * A * B) in folded_batches


def test_unmapped_vertices_and_mapped_face_counts(float64, folded_batches):
    """Arguments the vmap does not map are broadcast into the fold; padded batches too."""
    fv, tex, _ = _scene(9)
    counts = np.array([[F, F - 3], [F - 5, F], [2, F - 1]], np.int32)
    w = np.random.default_rng(10).normal(size=(A, B, S, S, 4))
    # the scalars are not differentiated here: the backward skips their per-element gradients
    grad = jax.grad(_loss(w), (0, 1), has_aux=True)
    single = jax.jit(grad)
    want = [single(fv[0], tex[a], w[a], *SCALARS, counts[a]) for a in range(A)]
    want = jax.tree.map(lambda *x: np.stack(x), *want)
    folded_batches.clear()
    axes = (None, 0, 0) + (None,) * 5 + (0,)
    got = jax.jit(jax.vmap(grad, axes))(fv[0], tex, w, *SCALARS, counts)
    # the gradient of the unmapped vertices is each element's own (stacked by the vmap)
    _close(got, want, "broadcast vertices, mapped counts")
    assert ("backward", A * B) in folded_batches


def test_pallas_kernels_fold_too(float64):
    """The Pallas kernels (interpreted) share the folding: vmap(grad) matches single calls."""
    cfg = sj.PallasConfig(tile=4, window=4, bwd_window=2, capacity=23, interpret=True)
    fv, tex, _ = _scene(11)
    fv, tex = fv[:2, :1], tex[:2, :1]
    w = np.random.default_rng(12).normal(size=(2, 1, S, S, 4))

    def loss(v, t, ww, sigma):
        img = sj.soft_rasterize(
            v, t, image_size=S, sigma_val=sigma, backend="pallas", pallas_config=cfg
        )
        return jnp.sum(img * ww)

    grad = jax.grad(loss, (0, 1, 3))
    single = jax.jit(grad)
    want = [single(fv[a], tex[a], w[a], 3e-3) for a in range(2)]
    want = jax.tree.map(lambda *x: np.stack(x), *want)
    _close(jax.vmap(grad, (0, 0, 0, None))(fv, tex, w, 3e-3), want, "pallas")


def test_empty_vmap_and_empty_batch():
    """No image to draw: an empty result (and zero gradients), not an error."""
    fv, tex, _ = _scene(13)
    fv, tex = fv.astype(np.float32), tex.astype(np.float32)
    kw = dict(image_size=S, sigma_val=SCALARS[0], backend="xla")

    def draw(v, t):
        return sj.soft_rasterize(v, t, **kw)

    assert draw(fv[0, :0], tex[0, :0]).shape == (0, S, S, 4)
    assert jax.vmap(draw)(fv[:0], tex[:0]).shape == (0, B, S, S, 4)
    g = jax.grad(lambda v: jnp.sum(jax.vmap(draw)(v, tex[:0])))(fv[:0])
    assert g.shape == (0, B, F, 3, 3)
