"""render: composition of shade, camera and soft_rasterize; vmap over eyes; grads."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import softjax as sj

CFG = sj.RenderConfig(image_size=32, camera_mode="look_at", viewing_angle=15, sigma_val=1e-4)


def _sphere():
    m = sj.icosphere(2)
    return m.replace(
        vertices=m.vertices * 0.5,
        textures=jnp.broadcast_to(jnp.array([0.9, 0.4, 0.1]), m.textures.shape),
    )


def test_render_matches_manual_composition():
    m = _sphere()
    eye = sj.get_points_from_angles(2.732, 30.0, 20.0)
    img = sj.render(m, CFG, eye=eye)
    lit = sj.shade(m)
    screen = sj.perspective(sj.look_at(lit.vertices, eye), 15)
    fv = jax.vmap(lambda v, f: v[f])(screen, lit.faces)
    want = sj.soft_rasterize(fv, lit.textures, image_size=32, sigma_val=1e-4)
    np.testing.assert_allclose(np.asarray(img), np.asarray(want), atol=1e-6)
    alpha = np.asarray(img[0, ..., 3])
    assert 0.1 < (alpha > 0.5).mean() < 0.6


def test_vmap_over_eyes_and_grads():
    m = _sphere()
    eyes = sj.get_points_from_angles(2.732, 30.0, jnp.array([0.0, 90.0, 200.0]))
    imgs = jax.jit(jax.vmap(lambda e: sj.render(m, CFG, eye=e)))(eyes)
    assert imgs.shape == (3, 1, 32, 32, 4)
    one = sj.render(m, CFG, eye=eyes[1])
    np.testing.assert_allclose(np.asarray(imgs[1]), np.asarray(one), atol=1e-6)

    def loss(vertices, textures, eye, lights):
        mesh = m.replace(vertices=vertices, textures=textures)
        return jnp.sum(sj.render(mesh, CFG, eye=eye, lights=lights)[..., :3] ** 2)

    g = jax.grad(loss, (0, 1, 2, 3))(m.vertices, m.textures, eyes[0], sj.Lights.create())
    for leaf in jax.tree.leaves(g):
        assert np.isfinite(np.asarray(leaf)).all()
    assert np.abs(np.asarray(g[0])).max() > 0 and np.abs(np.asarray(g[2])).max() > 0
    assert abs(float(g[3].ambient_intensity)) > 0


@pytest.mark.parametrize("mode", ["look", "projection", "orthogonal"])
def test_camera_modes(mode):
    m = _sphere()
    if mode == "look":
        cfg = CFG.replace(camera_mode="look")
        img = sj.render(m, cfg, eye=(0.0, 0.0, -2.732), camera_direction=(0.0, 0.0, 1.0))
        ref = sj.render(m, CFG, eye=(0.0, 0.0, -2.732))
        np.testing.assert_allclose(np.asarray(img), np.asarray(ref), atol=1e-4)
    elif mode == "orthogonal":
        cfg = CFG.replace(perspective=False, viewing_scale=1.5)
        img = sj.render(m, cfg, eye=(0.0, 0.0, -2.732))
        # orthographic sphere of radius 0.5 scaled by 1.5: a disc of radius 0.75 in NDC
        frac = (np.asarray(img[0, ..., 3]) > 0.5).mean()
        assert abs(frac - np.pi * 0.75**2 / 4) < 0.03
    else:
        f = 32.0
        P = np.array([[[f, 0, 16, 0], [0, f, 16, 0], [0, 0, 1, 3.0]]], np.float32)
        cfg = CFG.replace(camera_mode="projection", orig_size=32)
        img = sj.render(m, cfg, P=P, dist_coeffs=np.zeros((1, 5), np.float32))
        assert np.isfinite(np.asarray(img)).all() and (np.asarray(img[..., 3]) > 0.5).any()
        with pytest.raises(ValueError, match="needs a camera matrix P"):
            sj.render(m, cfg)


def test_anti_aliasing_and_no_lighting():
    m = _sphere()
    aa = sj.render(m, CFG.replace(anti_aliasing=True, lighting=False), eye=(0.0, 0.0, -2.732))
    big = sj.render(m, CFG.replace(image_size=64, lighting=False), eye=(0.0, 0.0, -2.732))
    want = np.asarray(big).reshape(1, 32, 2, 32, 2, 4).mean(axis=(2, 4))
    np.testing.assert_allclose(np.asarray(aa), want, atol=1e-6)
    # unlit: the sphere's centre pixel has the raw texture colour
    np.testing.assert_allclose(np.asarray(big[0, 32, 32, :3]), [0.9, 0.4, 0.1], atol=1e-3)


def test_bad_config():
    with pytest.raises(ValueError, match="camera_mode must be one of"):
        sj.RenderConfig(camera_mode="fisheye")
