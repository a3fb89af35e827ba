"""Every float32 contraction in the renderer asks for full float32 precision.

XLA's default precision for a float32 ``dot_general`` on NVIDIA GPUs rounds the operands to
TF32 (10-bit mantissa). On the first H200 run that put the XLA path and the dense reference
about 3e-4 away from the Pallas kernels (and from SoftRas, whose PyTorch matmuls are float32) in
every colour. A CPU computes float32 either way, so these tests read the traced programs: each
contraction of the reference, the tiled XLA path (forward and backward), the camera transforms
and the lighting must carry ``Precision.HIGHEST``.
"""

from __future__ import annotations

import jax
import jax.extend
import jax.numpy as jnp
import numpy as np
import pytest
from helpers import mode_kwargs, random_scene

import softjax as sj


def _contractions(closed_jaxpr) -> list:
    """Every ``dot_general`` equation of a jaxpr, sub-jaxprs (jit, custom_vjp, scan...) too."""
    found = []

    def walk(jaxpr):
        for eqn in jaxpr.eqns:
            if eqn.primitive.name == "dot_general":
                found.append(eqn)
            for sub in jax.extend.core.jaxprs_in_params(eqn.params):
                walk(sub)

    walk(closed_jaxpr.jaxpr)
    return found


def _assert_exact(fn, *args) -> int:
    eqns = _contractions(jax.make_jaxpr(fn)(*args))
    loose = [e for e in eqns if e.params["precision"] != (jax.lax.Precision.HIGHEST,) * 2]
    assert not loose, f"{len(loose)} of {len(eqns)} contractions without HIGHEST: {loose[:2]}"
    return len(eqns)


@pytest.mark.parametrize("backend", ["reference", "xla"])
@pytest.mark.parametrize("tex", ["surface", "vertex"])
def test_rasterizer_contractions_are_float32(backend, tex):
    fv, surface, vertex = random_scene(0, batch=1, faces=4)
    t = jnp.asarray(surface if tex == "surface" else vertex, jnp.float32)
    fv = jnp.asarray(fv, jnp.float32)
    kw = mode_kwargs("euclidean", "softmax", "prod", tex, image_size=8, backend=backend)

    def loss(v, tt):
        return jnp.sum(sj.soft_rasterize(v, tt, **kw))

    # the texture lookup is a contraction in these layouts: the check must find it
    assert _assert_exact(loss, fv, t) >= 1
    assert _assert_exact(jax.grad(loss, (0, 1)), fv, t) >= 2


def test_camera_and_lighting_contractions_are_float32():
    mesh = sj.icosphere(1)
    eye = sj.get_points_from_angles(2.7, 30.0, 20.0)
    cfg = sj.RenderConfig(image_size=8, camera_mode="look_at")

    def image(vertices):
        return jnp.sum(sj.render(mesh.replace(vertices=vertices), cfg, eye=eye))

    assert _assert_exact(image, mesh.vertices) >= 3  # rotation, two lighting terms
    assert _assert_exact(jax.grad(image), mesh.vertices) >= 3

    v = jnp.asarray(np.random.default_rng(0).normal(size=(1, 5, 3)) + [0, 0, 4], jnp.float32)
    P = jnp.asarray(np.random.default_rng(1).normal(size=(1, 3, 4)), jnp.float32)
    assert _assert_exact(lambda x: sj.projection(x, P), v) >= 1
