"""Bad input gets a ValueError naming the argument and what was expected."""

from __future__ import annotations

import numpy as np
import pytest

import softjax as sj

FV = np.zeros((1, 2, 3, 3), np.float32)
TEX = np.zeros((1, 2, 1, 3), np.float32)


@pytest.mark.parametrize(
    "fv,tex,kw,match",
    [
        (np.zeros((2, 3, 3), np.float32), TEX, {}, r"face_vertices must have shape \[B, F, 3, 3\]"),
        (np.zeros((1, 2, 3, 2), np.float32), TEX, {}, r"face_vertices must have shape"),
        (np.zeros((1, 2, 4, 3), np.float32), TEX, {}, r"face_vertices must have shape"),
        (np.zeros((1, 2, 3, 3), np.int32), TEX, {}, r"face_vertices must be a floating-point"),
        (
            FV,
            np.zeros((1, 2, 3, 3), np.int32),
            {"texture_type": "vertex"},
            "textures must be a floating",
        ),
        (
            FV,
            np.zeros((1, 2, 3), np.float32),
            {},
            r"texture_type='surface' textures must have shape",
        ),
        (FV, np.zeros((1, 2, 5, 3), np.float32), {}, r"R\*R"),
        (FV, np.zeros((1, 3, 1, 3), np.float32), {}, r"B=1, F=2"),
        (
            FV,
            np.zeros((1, 2, 4, 3), np.float32),
            {"texture_type": "vertex"},
            r"texture_type='vertex'",
        ),
        (FV, TEX, {"image_size": 0}, "image_size must be a positive int"),
        (FV, TEX, {"image_size": -3}, "image_size must be a positive int"),
        (FV, TEX, {"image_size": 16.0}, "image_size must be a positive int"),
        (
            FV,
            TEX,
            {"dist_func": "manhattan"},
            r"dist_func must be one of \['hard', 'barycentric', 'euclidean'\]",
        ),
        (FV, TEX, {"aggr_func_rgb": "max"}, "aggr_func_rgb must be one of"),
        (FV, TEX, {"aggr_func_alpha": "min"}, "aggr_func_alpha must be one of"),
        (FV, TEX, {"texture_type": "spherical"}, "texture_type must be one of"),
        (FV, TEX, {"backend": "cuda"}, "backend must be one of"),
        (FV, TEX, {"sigma_val": 0.0}, "sigma_val must be > 0"),
        (FV, TEX, {"gamma_val": -1.0}, "gamma_val must be > 0"),
        (FV, TEX, {"dist_eps": 0.7}, r"dist_eps must be in \(0, 0.5\)"),
        (FV, TEX, {"near": 5.0, "far": 1.0}, "far must be greater than near"),
        (FV, TEX, {"background_color": (1.0, 0.0)}, "background_color must have 3 values"),
        (FV, TEX, {"near": float("nan")}, "near must be finite"),
    ],
)
def test_bad_input(fv, tex, kw, match):
    with pytest.raises(ValueError, match=match):
        sj.soft_rasterize(fv, tex, **kw)


def test_pallas_config_must_use_powers_of_two():
    with pytest.raises(ValueError, match="powers of two"):
        sj.soft_rasterize(FV, TEX, backend="pallas", pallas_config=sj.PallasConfig(window=12))


def test_xla_backward_rejects_pair_entries_past_int32():
    """The XLA backward queues (pair, pixel) entries as ``slot * tile**2 + pixel`` in int32:
    a capacity and tile past that range are refused by name when the gradient is traced (no
    overflowed index reaches a gather)."""
    import jax
    import jax.numpy as jnp

    fv = jnp.asarray(
        np.tile([[[-0.5, -0.5, 2.0], [0.5, -0.5, 2.0], [0.0, 0.5, 2.0]]], (1, 1, 1, 1))
    )
    tex = jnp.ones((1, 1, 1, 3))
    cfg = sj.TilingConfig(tile=16, capacity=2**23)  # 2**23 * 256 = 2**31

    def loss(v):
        return sj.soft_rasterize(v, tex, image_size=16, backend="xla", tiling=cfg).sum()

    with pytest.raises(ValueError, match=r"capacity \* tile\*\*2 must be below 2\*\*31"):
        jax.jit(jax.grad(loss)).lower(fv)
    ok = sj.TilingConfig(tile=16, capacity=2**22)
    jax.jit(jax.grad(lambda v: sj.soft_rasterize(v, tex, image_size=16, tiling=ok).sum())).lower(fv)
