"""Pixel and winding conventions, and composition with jit / vmap / grad."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from helpers import mode_kwargs, random_scene

import softjax as sj

# clockwise on screen with y up: front-facing
CW = np.array([[-0.9, 0.1, 2.0], [-0.5, 0.9, 2.0], [-0.1, 0.1, 2.0]], np.float32)
CCW = CW[[0, 2, 1]]


def _one(face, colour=(1.0, 0.0, 0.0)):
    tex = np.broadcast_to(np.asarray(colour, np.float32), (1, 1, 1, 3))
    return face[None, None], np.ascontiguousarray(tex)


@pytest.mark.parametrize("backend", ["xla", "reference"])
def test_top_left_quadrant_is_top_left_of_image(backend):
    fv, tex = _one(CW)
    img = np.asarray(sj.soft_rasterize(fv, tex, image_size=16, backend=backend))[0]
    alpha = img[..., 3] > 0.5
    rows, cols = np.nonzero(alpha)
    assert rows.size > 10
    assert rows.max() < 8 and cols.max() < 8  # top-left quadrant only
    # the triangle's apex (y = 0.9) is at the top: higher rows hold more pixels
    assert alpha[6].sum() > alpha[2].sum() > 0
    np.testing.assert_allclose(img[alpha][:, :3], [[1, 0, 0]] * int(alpha.sum()), atol=1e-5)


def test_pixel_centres():
    # a tiny triangle around the centre of pixel (row 2, column 5) of an 8x8 image
    s, r, c = 8, 2, 5
    x, y = (2 * c + 1 - s) / s, (s - 1 - 2 * r) / s
    d = 0.05
    face = np.array([[x - d, y - d, 2.0], [x, y + d, 2.0], [x + d, y - d, 2.0]], np.float32)
    fv, tex = _one(face)
    img = np.asarray(sj.soft_rasterize(fv, tex, image_size=s, dist_func="hard"))[0]
    assert np.argwhere(img[..., 3] > 0).tolist() == [[r, c]]


@pytest.mark.parametrize("backend", ["xla", "reference"])
def test_winding_decides_front_and_back(backend):
    bg = (0.0, 0.0, 1.0)
    kw = dict(image_size=16, background_color=bg, backend=backend, fill_back=False)
    front = np.asarray(sj.soft_rasterize(*_one(CW), **kw))[0]
    back = np.asarray(sj.soft_rasterize(*_one(CCW), **kw))[0]
    both = np.asarray(sj.soft_rasterize(*_one(CCW), **{**kw, "fill_back": True}))[0]
    mask = front[..., 3] > 0.99
    assert mask.sum() > 10
    np.testing.assert_allclose(front[mask][:, :3], np.tile([1, 0, 0], (mask.sum(), 1)), atol=1e-4)
    # a back face still covers the pixels (alpha) but does not paint them
    np.testing.assert_allclose(back[..., 3], front[..., 3], atol=1e-6)
    np.testing.assert_allclose(back[mask][:, :3], np.tile(bg, (mask.sum(), 1)), atol=1e-4)
    np.testing.assert_allclose(both, front, atol=1e-6)


def test_near_far_and_background():
    fv, tex = _one(CW)
    kw = dict(image_size=16, background_color=(0.25, 0.5, 0.75))
    behind = fv.copy()
    behind[..., 2] = 0.5  # in front of near = 1
    img = np.asarray(sj.soft_rasterize(behind, tex, **kw))[0]
    assert img[..., 3].max() > 0.99  # alpha still counts the face
    np.testing.assert_allclose(
        img[..., :3].reshape(-1, 3), np.tile((0.25, 0.5, 0.75), (256, 1)), atol=1e-6
    )
    far = fv.copy()
    far[..., 2] = 150.0
    img = np.asarray(sj.soft_rasterize(far, tex, **kw))[0]
    np.testing.assert_allclose(
        img[..., :3].reshape(-1, 3), np.tile((0.25, 0.5, 0.75), (256, 1)), atol=1e-6
    )


def test_jit_vmap_grad_compose():
    fv, tex, _ = random_scene(21, batch=3, faces=8)
    fv, tex = fv.astype(np.float32), tex.astype(np.float32)
    kw = mode_kwargs("euclidean", "softmax", "prod", "surface", image_size=12)

    def render_one(v, t, sigma):
        out = sj.soft_rasterize(v[None], t[None], **{**kw, "sigma_val": sigma})
        return out[0]

    direct = sj.soft_rasterize(fv, tex, **kw)
    vm = jax.jit(jax.vmap(render_one, in_axes=(0, 0, None)))(fv, tex, 1e-3)
    np.testing.assert_allclose(np.asarray(vm), np.asarray(direct), atol=1e-6)

    def loss(v, t, sigma):
        return jnp.sum(jax.vmap(render_one, in_axes=(0, 0, None))(v, t, sigma) ** 2)

    g_vmap = jax.jit(jax.grad(loss, (0, 1, 2)))(fv, tex, 1e-3)
    g_ref = jax.grad(
        lambda v, t, s: jnp.sum(
            sj.soft_rasterize(v, t, backend="reference", **{**kw, "sigma_val": s}) ** 2
        ),
        (0, 1, 2),
    )(fv, tex, 1e-3)
    for a, b in zip(g_vmap, g_ref, strict=True):
        scale = float(np.abs(np.asarray(b)).max())
        np.testing.assert_allclose(np.asarray(a), np.asarray(b), atol=2e-4 * scale + 1e-6)


def test_traced_options_under_jit():
    fv, tex, _ = random_scene(22, batch=1, faces=8)
    fv, tex = fv.astype(np.float32), tex.astype(np.float32)

    @jax.jit
    def f(sigma, gamma, near, far, eps, fill_back):
        return sj.soft_rasterize(
            fv,
            tex,
            image_size=12,
            sigma_val=sigma,
            gamma_val=gamma,
            near=near,
            far=far,
            eps=eps,
            fill_back=fill_back,
        )

    got = f(1e-3, 1e-2, 1.0, 6.0, 1e-3, False)
    want = sj.soft_rasterize(
        fv,
        tex,
        image_size=12,
        sigma_val=1e-3,
        gamma_val=1e-2,
        near=1.0,
        far=6.0,
        eps=1e-3,
        fill_back=False,
        backend="reference",
    )
    np.testing.assert_allclose(np.asarray(got), np.asarray(want), atol=1e-5)
