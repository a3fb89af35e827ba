"""Gradients: the hand-written backward of the tiled path against JAX autodiff of the dense
reference (float64 and float32), and the reference against finite differences."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from helpers import MODES, SMALL_TILING, mode_kwargs, random_scene, weighted_loss, x64
from jax.test_util import check_grads

import softjax as sj


def _scalars(dtype):
    return tuple(np.asarray(v, dtype) for v in (1e-3, 1e-2, 1.0, 6.0, 1e-3))


NAMES = ("face_vertices", "textures", "sigma", "gamma", "near", "far", "eps")


@pytest.mark.parametrize("dist,rgb,alpha,tex", MODES)
def test_tiled_gradients_match_reference_float64(dist, rgb, alpha, tex):
    with x64():
        fv, stex, vtex = random_scene(11, batch=2, faces=8)
        t = stex if tex == "surface" else vtex
        weights = np.random.default_rng(1).normal(size=(2, 12, 12, 4))
        kw = {
            k: v
            for k, v in mode_kwargs(dist, rgb, alpha, tex, image_size=12, fill_back=False).items()
            if k not in ("sigma_val", "gamma_val", "near", "far")
        }
        args = (fv, t) + _scalars(np.float64)
        argnums = tuple(range(7))
        want = jax.grad(weighted_loss(kw, weights, "reference"), argnums)(*args)
        got = jax.grad(weighted_loss(kw, weights, "xla", tiling=SMALL_TILING), argnums)(*args)
        for name, w, g in zip(NAMES, want, got, strict=True):
            assert g.dtype == np.float64 and g.shape == np.shape(w)
            scale = max(float(np.max(np.abs(w))), 1.0)
            np.testing.assert_allclose(g, w, atol=1e-9 * scale, err_msg=name)
        # smooth modes really do produce vertex gradients (the test is not vacuous)
        if dist != "hard" and alpha != "hard":
            assert np.abs(np.asarray(want[0])).max() > 1e-3


SMOOTH = [m for m in MODES if m[0] != "hard" and m[1] == "softmax" and m[2] != "hard"]


@pytest.mark.parametrize("dist,rgb,alpha,tex", SMOOTH)
def test_tiled_gradients_match_reference_float32(dist, rgb, alpha, tex):
    fv, stex, vtex = random_scene(12, batch=1, faces=10)
    t = (stex if tex == "surface" else vtex).astype(np.float32)
    fv = fv.astype(np.float32)
    weights = np.random.default_rng(2).normal(size=(1, 16, 16, 4)).astype(np.float32)
    kw = {
        k: v
        for k, v in mode_kwargs(dist, rgb, alpha, tex, image_size=16).items()
        if k not in ("sigma_val", "gamma_val", "near", "far")
    }
    args = (fv, t) + _scalars(np.float32)
    want = jax.grad(weighted_loss(kw, weights, "reference"), (0, 1))(*args)
    got = jax.grad(weighted_loss(kw, weights, "xla"), (0, 1))(*args)
    for name, w, g in zip(NAMES, want, got, strict=False):
        assert g.dtype == np.float32
        scale = float(np.max(np.abs(w)))
        assert scale > 1e-3
        np.testing.assert_allclose(g, w, atol=2e-4 * scale, err_msg=name)


@pytest.mark.parametrize(
    "dist,rgb,alpha,tex",
    [
        ("euclidean", "softmax", "prod", "vertex"),
        ("barycentric", "softmax", "sum", "surface"),
        ("euclidean", "hard", "prod", "vertex"),
    ],
)
def test_reference_check_grads(dist, rgb, alpha, tex):
    """Autodiff of the reference against finite differences (jax.test_util.check_grads)."""
    with x64():
        # large, well-separated triangles: no culling decision or texel boundary lies within
        # the finite-difference step of a pixel centre
        fv = np.array(
            [
                [
                    [[-0.713, -0.618, 2.0], [-0.091, 0.737, 3.0], [0.527, -0.511, 2.5]],
                    [[0.633, 0.589, 4.0], [-0.217, -0.093, 3.5], [0.741, -0.723, 3.0]],
                ]
            ]
        )
        rng = np.random.default_rng(3)
        t = rng.uniform(size=(1, 2, 3, 3)) if tex == "vertex" else rng.uniform(size=(1, 2, 4, 3))
        weights = rng.normal(size=(1, 8, 8, 4))
        kw = mode_kwargs(dist, rgb, alpha, tex, image_size=8, sigma_val=2e-2, gamma_val=0.1)

        def f(fv, t):
            return jnp.sum(sj.soft_rasterize(fv, t, backend="reference", **kw) * weights)

        check_grads(f, (fv, t), order=1, modes=("rev",), eps=1e-6, atol=1e-5, rtol=1e-5)


def test_gradients_respond_to_all_coordinates():
    """x, y and z of the vertices all receive gradient (z through the softmax depth weights)."""
    fv, tex, _ = random_scene(13, batch=1, faces=6)
    fv, tex = fv.astype(np.float32), tex.astype(np.float32)
    kw = mode_kwargs("euclidean", "softmax", "prod", "surface", image_size=16)
    g = jax.grad(lambda v: jnp.sum(sj.soft_rasterize(v, tex, **kw)[..., :3] ** 2))(fv)
    g = np.asarray(g)
    for axis in range(3):
        assert np.abs(g[..., axis]).max() > 1e-4, axis
