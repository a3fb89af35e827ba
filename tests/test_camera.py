"""Cameras and lighting against hand-computed values of the spec's formulas."""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import softjax as sj


def test_get_points_from_angles():
    p = np.asarray(sj.get_points_from_angles(2.0, 30.0, 45.0))
    e, a = math.radians(30), math.radians(45)
    np.testing.assert_allclose(
        p,
        [2 * math.cos(e) * math.sin(a), 2 * math.sin(e), -2 * math.cos(e) * math.cos(a)],
        rtol=1e-6,
    )
    batch = sj.get_points_from_angles(2.732, 30.0, jnp.array([0.0, -15.0, -30.0]))
    assert batch.shape == (3, 3)
    np.testing.assert_allclose(np.linalg.norm(batch, axis=-1), 2.732, rtol=1e-6)
    rad = sj.get_points_from_angles(1.0, math.pi / 2, 0.0, degrees=False)
    np.testing.assert_allclose(rad, [0, 1, 0], atol=1e-6)


def test_look_at_frame():
    eye = np.array([0.0, 0.0, -5.0])
    v = np.array([[[1.0, 2.0, 3.0]]])
    out = np.asarray(sj.look_at(v, eye))
    # camera on -z looking at the origin: axes aligned with the world's, depth = z + 5
    np.testing.assert_allclose(out, [[[1.0, 2.0, 8.0]]], atol=1e-5)
    # a general eye: R is orthonormal, the eye maps to the origin and `at` to (0, 0, |at-eye|)
    eye = np.array([1.0, 2.0, -3.0])
    pts = np.array([[eye, [0.0, 0.0, 0.0]]])
    out = np.asarray(sj.look_at(pts, eye))
    np.testing.assert_allclose(out[0, 0], 0, atol=1e-6)
    np.testing.assert_allclose(out[0, 1], [0, 0, np.linalg.norm(eye)], atol=1e-5)
    # hand-computed frame
    z = -eye / np.linalg.norm(eye)
    x = np.cross([0, 1, 0], z)
    x /= np.linalg.norm(x)
    y = np.cross(z, x)
    q = np.array([[[0.3, -0.2, 0.5]]])
    want = np.stack([x, y, z]) @ (q[0, 0] - eye)
    np.testing.assert_allclose(np.asarray(sj.look_at(q, eye))[0, 0], want, atol=1e-5)


def test_look_uses_direction():
    eye = np.array([0.0, 0.0, -2.0])
    v = np.array([[[0.5, 0.5, 1.0]]])
    np.testing.assert_allclose(
        np.asarray(sj.look(v, eye, direction=(0, 0, 1))),
        np.asarray(sj.look_at(v, eye, at=(0, 0, 0))),
        atol=1e-6,
    )


def test_perspective_and_orthogonal():
    v = np.array([[[1.0, -2.0, 4.0]]])
    t = math.tan(math.radians(30))
    np.testing.assert_allclose(
        np.asarray(sj.perspective(v, 30.0)), [[[1 / (4 * t), -2 / (4 * t), 4]]], rtol=1e-6
    )
    np.testing.assert_allclose(np.asarray(sj.orthogonal(v, 0.5)), [[[0.5, -1.0, 4.0]]])


def test_projection_with_distortion():
    rng = np.random.default_rng(0)
    v = rng.normal(size=(2, 5, 3))
    v[..., 2] += 6
    P = np.concatenate(
        [
            np.eye(3)[None].repeat(2, 0) * [[[200.0], [200.0], [1.0]]],
            np.array([[[256.0], [256.0], [0.0]]]).repeat(2, 0),
        ],
        -1,
    )
    dc = np.array([[0.1, -0.05, 0.01, 0.02, 0.003], [0.0, 0.0, 0.0, 0.0, 0.0]])
    out = np.asarray(sj.projection(v, P, dc, orig_size=512))
    for b in range(2):
        for i in range(5):
            p = P[b] @ np.append(v[b, i], 1.0)
            x, y = p[0] / (p[2] + 1e-5), p[1] / (p[2] + 1e-5)
            k1, k2, p1, p2, k3 = dc[b]
            r2 = x * x + y * y
            rad = 1 + k1 * r2 + k2 * r2**2 + k3 * r2**3
            xd = x * rad + 2 * p1 * x * y + p2 * (r2 + 2 * x * x)
            yd = y * rad + p1 * (r2 + 2 * y * y) + 2 * p2 * x * y
            want = [2 * (xd - 256) / 512, 2 * (yd - 256) / 512, p[2]]
            np.testing.assert_allclose(out[b, i], want, rtol=1e-5, atol=1e-5)


def test_camera_gradients_finite():
    v = jnp.array([[[0.1, 0.2, 0.3], [0.0, 0.0, 0.0]]])

    def f(v, eye, angle):
        return jnp.sum(sj.perspective(sj.look_at(v, eye), angle) ** 2)

    g = jax.grad(f, (0, 1, 2))(v, jnp.array([0.0, 1.0, -3.0]), 15.0)
    for x in g:
        assert np.isfinite(np.asarray(x)).all() and np.abs(np.asarray(x)).max() > 0
    P = jnp.eye(3, 4)[None]
    gp = jax.grad(lambda P: jnp.sum(sj.projection(v + 2.0, P, jnp.zeros(5), 2) ** 2))(P)
    assert np.isfinite(np.asarray(gp)).all()


def test_bad_camera_input():
    with pytest.raises(ValueError, match="eye must have shape"):
        sj.look_at(np.zeros((1, 3, 3)), np.zeros(4))
    with pytest.raises(ValueError, match="P must have shape"):
        sj.projection(np.zeros((1, 3, 3)), np.zeros((3, 3)))
    with pytest.raises(ValueError, match="vertices must have shape"):
        sj.perspective(np.zeros((3, 2)))


def test_lighting_values():
    # one face with normal +y (counter-clockwise seen from above)
    v = np.array([[[0.0, 0.0, 0.0], [0.0, 0.0, 1.0], [1.0, 0.0, 0.0]]], np.float32)
    f = np.array([[[0, 1, 2]]], np.int32)
    mesh = sj.Mesh.create(v, f, np.full((1, 1, 1, 3), 0.8, np.float32))
    np.testing.assert_allclose(np.asarray(mesh.surface_normals)[0, 0], [0, 1, 0], atol=1e-6)
    lit = sj.shade(mesh)  # ambient 0.5 + directional 0.5 along +y
    np.testing.assert_allclose(np.asarray(lit.textures), 0.8, atol=1e-6)
    lights = sj.Lights.create(
        0.2, (1.0, 0.5, 0.0), (0.6, 1.0), ((1, 1, 1), (0, 0, 1)), ((0, 1, 1), (0, -1, 0))
    )
    lit = sj.shade(mesh, lights)
    want = 0.8 * (0.2 * np.array([1, 0.5, 0]) + 0.6 * 1.0 * np.ones(3) + 0.0)
    np.testing.assert_allclose(np.asarray(lit.textures)[0, 0, 0], want, atol=1e-6)
    vmesh = sj.Mesh.create(v, f, np.ones((1, 3, 3), np.float32), texture_type="vertex")
    vlit = sj.shade(vmesh, lights)
    np.testing.assert_allclose(np.asarray(vlit.textures)[0], np.tile(want / 0.8, (3, 1)), atol=1e-6)
    g = jax.grad(lambda l: jnp.sum(sj.shade(mesh, l).textures))(lights)
    assert float(g.intensities[0]) > 0 and float(g.ambient_intensity) > 0
