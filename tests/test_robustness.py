"""Degenerate and extreme inputs: finite outputs and gradients, alpha in [0, 1]."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from helpers import random_scene

import softjax as sj


def _check_finite(fv, tex, **kw):
    kw.setdefault("image_size", 16)

    def loss(v, t):
        img = sj.soft_rasterize(v, t, **kw)
        return jnp.sum(img * jnp.linspace(-1.0, 1.0, img.size).reshape(img.shape)), img

    (val, img), grads = jax.value_and_grad(loss, (0, 1), has_aux=True)(fv, tex)
    img = np.asarray(img)
    assert np.isfinite(img).all()
    assert img[..., 3].min() >= 0.0 and img[..., 3].max() <= 1.0
    for g in grads:
        assert np.isfinite(np.asarray(g)).all()
    return img


def _tex(fv):
    return np.full(fv.shape[:2] + (1, 3), 0.5, np.float32)


@pytest.mark.parametrize("dist", ["hard", "barycentric", "euclidean"])
def test_degenerate_faces(dist):
    fv = np.array(
        [
            [
                [[0.1, 0.1, 2.0], [0.1, 0.1, 2.0], [0.1, 0.1, 2.0]],  # a point
                [[-0.5, -0.5, 2.0], [0.0, 0.0, 2.0], [0.5, 0.5, 2.0]],  # collinear
                [[-0.5, 0.2, 2.0], [0.5, 0.2, 2.0], [0.5, 0.2, 3.0]],  # zero area, two equal
                [[-0.3, -0.3, 0.0], [0.3, -0.3, 0.0], [0.0, 0.3, 0.0]],  # at z = 0
                [[-0.3, -0.3, -2.0], [0.3, -0.3, 2.0], [0.0, 0.3, 1e-12]],  # crossing z = 0
            ]
        ],
        np.float32,
    )
    for backend in ("xla", "reference"):
        _check_finite(fv, _tex(fv), dist_func=dist, backend=backend)


@pytest.mark.parametrize("sigma,gamma", [(1e-6, 1e-6), (1.0, 1.0), (1e-6, 1.0), (1.0, 1e-6)])
def test_extreme_sigma_gamma(sigma, gamma):
    fv, tex, _ = random_scene(31, batch=1, faces=10)
    fv, tex = fv.astype(np.float32), tex.astype(np.float32)
    img = _check_finite(fv, tex, sigma_val=sigma, gamma_val=gamma, near=1.0, far=6.0)
    ref = np.asarray(
        sj.soft_rasterize(
            fv,
            tex,
            image_size=16,
            sigma_val=sigma,
            gamma_val=gamma,
            near=1.0,
            far=6.0,
            backend="reference",
        )
    )
    np.testing.assert_allclose(img, ref, atol=1e-4)


def test_huge_and_tiny_triangles():
    fv = np.array(
        [
            [
                [[-50.0, -50.0, 3.0], [0.0, 80.0, 3.0], [50.0, -50.0, 3.0]],  # covers everything
                [[0.2, 0.2, 2.0], [0.2001, 0.2002, 2.0], [0.2002, 0.2, 2.0]],  # sub-pixel
                [[-1e6, -1e6, 2.0], [0.0, 1e6, 2.0], [1e6, -1e6, 2.0]],
            ]
        ],
        np.float32,
    )
    img = _check_finite(fv, _tex(fv), image_size=16)
    assert img[..., 3].min() > 0.99
    ref = np.asarray(sj.soft_rasterize(fv, _tex(fv), image_size=16, backend="reference"))
    np.testing.assert_allclose(img, ref, atol=1e-5)


def test_all_faces_culled():
    fv, tex, _ = random_scene(32, batch=2, faces=6)
    fv = fv.astype(np.float32)
    fv[..., 0] += 10.0  # everything off screen to the right
    img = _check_finite(fv, tex.astype(np.float32), background_color=(0.1, 0.2, 0.3))
    np.testing.assert_allclose(
        img[..., :3], np.broadcast_to((0.1, 0.2, 0.3), img[..., :3].shape), atol=1e-6
    )
    assert img[..., 3].max() == 0.0


@pytest.mark.parametrize("backend", ["xla", "reference"])
def test_no_faces(backend):
    fv = np.zeros((2, 0, 3, 3), np.float32)
    tex = np.zeros((2, 0, 1, 3), np.float32)
    img = _check_finite(fv, tex, background_color=(0.5, 0.5, 0.5), backend=backend)
    assert img.shape == (2, 16, 16, 4)
    np.testing.assert_allclose(img[..., :3], 0.5)
    assert img[..., 3].max() == 0.0


def test_many_faces_in_one_tile_are_all_counted():
    """100 stacked faces over one pixel: every one counts in the alpha product (no face is
    dropped when a tile's bin is far over the window and pass capacities)."""
    base = np.array([[-0.2, -0.2, 2.0], [0.0, 0.2, 2.0], [0.2, -0.2, 2.0]], np.float32)
    fv = np.broadcast_to(base, (1, 100, 3, 3)).copy()
    fv[..., 2] += np.linspace(0, 1, 100, dtype=np.float32)[None, :, None]
    tex = np.zeros((1, 100, 1, 3), np.float32)
    kw = dict(image_size=8, dist_func="barycentric", sigma_val=0.05, aggr_func_alpha="sum")
    out = np.asarray(
        sj.soft_rasterize(fv, tex, tiling=sj.TilingConfig(window=4, capacity=64), **kw)
    )
    ref = np.asarray(sj.soft_rasterize(fv, tex, backend="reference", **kw))
    np.testing.assert_allclose(out, ref, atol=1e-6)
