"""The Pallas kernels (run by the Pallas interpreter on the CPU) against the dense reference:
every mode forward, gradients for a covering subset, tiny pair capacities (many binning passes),
and the Triton (GPU) lowering of both kernels via ``jax.export`` (no GPU needed)."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from helpers import ALPHA, DIST, RGB, mode_kwargs, random_scene, weighted_loss, x64

import softjax as sj
from softjax.ops import binning
from softjax.ops.binning import pair_capacity
from softjax.ops.options import check_inputs
from softjax.ops.pallas_kernels import rasterize_pallas
from softjax.ops.pixel_face import face_setup

# tiny tiles and windows, and a capacity that forces several binning passes on these scenes
INTERP = sj.PallasConfig(tile=4, window=4, bwd_window=2, capacity=37, interpret=True)


@pytest.mark.parametrize("dist", DIST)
@pytest.mark.parametrize("rgb", RGB)
@pytest.mark.parametrize("alpha", ALPHA)
def test_forward_every_mode_matches_reference(dist, rgb, alpha):
    """Both texture types, fill_back on and off (one compilation: fill_back is traced), faces
    behind near and beyond far, several binning passes; float32 against the reference."""
    fv, stex, vtex = random_scene(0, batch=2, faces=9, res=2)  # 2x2 texels: both halves
    fv = fv.astype(np.float32)
    for tex, t in (("surface", stex), ("vertex", vtex)):
        t = t.astype(np.float32)
        for fill_back in (True, False):
            kw = mode_kwargs(dist, rgb, alpha, tex, fill_back=fill_back, image_size=12)
            want = np.asarray(sj.soft_rasterize(fv, t, backend="reference", **kw))
            got = sj.soft_rasterize(fv, t, backend="pallas", pallas_config=INTERP, **kw)
            assert got.dtype == np.float32 and got.shape == (2, 12, 12, 4)
            np.testing.assert_allclose(got, want, atol=2e-5, err_msg=f"{tex} {fill_back}")
            assert want[..., 3].max() > 0.1 and want[..., 3].min() < 1e-3


NAMES = ("face_vertices", "textures", "sigma", "gamma", "near", "far", "eps")


# every dist_func, rgb and alpha aggregation and texture type at least once
GRAD_MODES = [
    ("euclidean", "softmax", "prod", "surface", False),
    ("barycentric", "softmax", "sum", "vertex", True),
    ("euclidean", "hard", "prod", "vertex", False),
    ("hard", "hard", "hard", "surface", True),
    ("barycentric", "hard", "sum", "surface", False),
]


@pytest.mark.parametrize("dist,rgb,alpha,tex,fill_back", GRAD_MODES)
def test_gradients_match_reference_float64(dist, rgb, alpha, tex, fill_back):
    """Gradients of face vertices, textures and the traced scalars, float64, against autodiff
    of the dense reference, with a capacity that forces several passes."""
    with x64():
        fv, stex, vtex = random_scene(11, batch=2, faces=8)
        t = stex if tex == "surface" else vtex
        weights = np.random.default_rng(1).normal(size=(2, 12, 12, 4))
        kw = {
            k: v
            for k, v in mode_kwargs(
                dist, rgb, alpha, tex, image_size=12, fill_back=fill_back
            ).items()
            if k not in ("sigma_val", "gamma_val", "near", "far")
        }
        args = (fv, t) + tuple(np.float64(v) for v in (1e-3, 1e-2, 1.0, 6.0, 1e-3))
        argnums = tuple(range(7))
        want = jax.grad(weighted_loss(kw, weights, "reference"), argnums)(*args)
        cfg = INTERP._replace(capacity=23)
        got = jax.grad(weighted_loss(kw, weights, "pallas", pallas_config=cfg), argnums)(*args)
        for name, w, g in zip(NAMES, want, got, strict=True):
            assert g.dtype == np.float64 and g.shape == np.shape(w), name
            scale = max(float(np.max(np.abs(w))), 1.0)
            np.testing.assert_allclose(g, w, atol=1e-9 * scale, err_msg=name)
        if dist != "hard" and alpha != "hard":
            assert np.abs(np.asarray(want[0])).max() > 1e-3  # not vacuous


def test_tiny_capacity_loses_no_face():
    """30 faces stacked over one tile, a pair capacity of 5 and windows of 2 faces: many
    binning passes, every face still counts (alpha = 1 - prod(1 - D) over all of them)."""
    rng = np.random.default_rng(7)
    n = 30
    centre = rng.uniform(-0.2, 0.2, (1, n, 1, 2))
    xy = centre + rng.normal(0.0, 0.25, (1, n, 3, 2))
    fv = np.concatenate([xy, rng.uniform(2.0, 5.0, (1, n, 3, 1))], -1).astype(np.float32)
    tex = rng.uniform(size=(1, n, 1, 3)).astype(np.float32)
    kw = mode_kwargs("euclidean", "softmax", "prod", "surface", image_size=8, sigma_val=3e-2)
    cfg = sj.PallasConfig(tile=4, window=2, bwd_window=4, capacity=5, interpret=True)
    # the configuration really needs many passes
    _, _, opts, sc, _ = check_inputs(fv, tex, backend="pallas", **_check_kw(kw))
    grid = binning.make_grid(8, 4, 1, n)
    ft = binning.face_tiles(face_setup(jnp.asarray(fv[0])), sc.sigma_val, sc.dist_eps, grid)
    assert int(binning.num_passes(ft, pair_capacity(cfg, grid, "pallas"))) >= 10

    want = sj.soft_rasterize(fv, tex, backend="reference", **kw)
    got = sj.soft_rasterize(fv, tex, backend="pallas", pallas_config=cfg, **kw)
    np.testing.assert_allclose(got, want, atol=2e-5)
    weights = rng.normal(size=(1, 8, 8, 4)).astype(np.float32)

    def loss(backend, cfg=None):
        return lambda v: jnp.sum(
            sj.soft_rasterize(v, tex, backend=backend, pallas_config=cfg, **kw) * weights
        )

    g_want = jax.grad(loss("reference"))(fv)
    g_got = jax.grad(loss("pallas", cfg))(fv)
    np.testing.assert_allclose(g_got, g_want, atol=2e-4 * float(np.abs(g_want).max()))


BUSY_MODES = [
    ("euclidean", "softmax", "prod", "surface"),
    ("barycentric", "hard", "sum", "vertex"),
    ("hard", "hard", "hard", "surface"),
]


@pytest.mark.parametrize("dist,rgb,alpha,tex", BUSY_MODES)
def test_busy_tile_split_over_programs(dist, rgb, alpha, tex):
    """40 faces over one 4-pixel tile with windows of 2 faces: the tile's list is cut into
    programs of PROGRAM_WINDOWS windows (3 here, 2 in the backward's windows of 4), whose states
    XLA folds together. The second 20 faces repeat the first 20 (same place and depth, other
    colours), so the hard colour's ties between programs must still go to the lowest id.
    Forward and gradients (float64) against the reference."""
    from softjax.ops.pallas_kernels import PROGRAM_WINDOWS

    with x64():
        rng = np.random.default_rng(3)
        half = 20
        xy = rng.uniform(-0.2, 0.2, (1, half, 1, 2)) + rng.normal(0.0, 0.3, (1, half, 3, 2))
        z = rng.uniform(2.0, 5.0, (1, half, 3, 1))
        fv = np.concatenate([xy, z], -1)
        fv = np.concatenate([fv, fv], 1)  # [1, 40, 3, 3]
        res = 1 if tex == "surface" else 2
        t = rng.uniform(size=(1, 2 * half, res**3 if tex == "surface" else 3, 3))
        cfg = sj.PallasConfig(tile=4, window=2, bwd_window=4, interpret=True)
        kw = mode_kwargs(dist, rgb, alpha, tex, image_size=8, sigma_val=3e-2)
        # the tile really holds more faces than one program takes
        _, _, _, sc, _ = check_inputs(fv, t, backend="pallas", **_check_kw(kw))
        grid = binning.make_grid(8, 4, 1, 2 * half)
        ft = binning.face_tiles(face_setup(jnp.asarray(fv[0])), sc.sigma_val, sc.dist_eps, grid)
        bins = binning.bin_pass(ft, 0, pair_capacity(cfg, grid, "pallas"), grid)
        assert int(bins.count.max()) > 2 * PROGRAM_WINDOWS * cfg.window

        want = sj.soft_rasterize(fv, t, backend="reference", **kw)
        got = sj.soft_rasterize(fv, t, backend="pallas", pallas_config=cfg, **kw)
        np.testing.assert_allclose(got, want, atol=1e-9)
        assert float(np.asarray(want)[..., 3].max()) > 0.1  # not vacuous

        weights = rng.normal(size=(1, 8, 8, 4))
        kw = {k: v for k, v in kw.items() if k not in ("sigma_val", "gamma_val", "near", "far")}
        args = (fv, t) + tuple(np.float64(v) for v in (3e-2, 1e-2, 1.0, 6.0, 1e-3))
        argnums = tuple(range(7))
        g_want = jax.grad(weighted_loss(kw, weights, "reference"), argnums)(*args)
        g_got = jax.grad(weighted_loss(kw, weights, "pallas", pallas_config=cfg), argnums)(*args)
        for name, w, g in zip(NAMES, g_want, g_got, strict=True):
            scale = max(float(np.max(np.abs(w))), 1.0)
            np.testing.assert_allclose(g, w, atol=1e-9 * scale, err_msg=name)


def _check_kw(kw):
    names = {
        "image_size",
        "background_color",
        "near",
        "far",
        "fill_back",
        "eps",
        "sigma_val",
        "dist_func",
        "dist_eps",
        "gamma_val",
        "aggr_func_rgb",
        "aggr_func_alpha",
        "texture_type",
    }
    defaults = dict(fill_back=True, eps=1e-3, dist_eps=1e-4)
    return {**defaults, **{k: v for k, v in kw.items() if k in names}}


def test_auto_backend_is_xla_off_gpu():
    fv, tex, _ = random_scene(3, batch=1, faces=4)
    fv, tex = fv.astype(np.float32), tex.astype(np.float32)
    jaxpr = str(jax.make_jaxpr(lambda v: sj.soft_rasterize(v, tex, image_size=8))(fv))
    assert ("pallas_call" in jaxpr) == (jax.default_backend() == "gpu")


def test_bad_pallas_config():
    fv, tex, _ = random_scene(3, batch=1, faces=4)
    fv, tex = fv.astype(np.float32), tex.astype(np.float32)
    with pytest.raises(ValueError, match="powers of two"):
        sj.soft_rasterize(fv, tex, backend="pallas", pallas_config=sj.PallasConfig(tile=6))


def _triton_lowering_without_gpu() -> str:
    """Why Pallas's Triton lowering cannot run here ('' when it can).

    jaxlib 0.10.2 embeds the Triton IR in the HLO custom call and compiles it only when XLA
    compiles for a GPU; later jaxlibs compile it with the CUDA plugin while lowering.
    """
    import importlib.util

    version = tuple(int(v) for v in jax.__version__.split(".")[:3])
    plugin = any(importlib.util.find_spec(f"jax_cuda{v}_plugin") is not None for v in (12, 13))
    if version <= (0, 10, 2) or plugin:
        return ""
    return f"jax {jax.__version__} compiles Triton kernels while lowering: needs the CUDA plugin"


TRITON_CALLS = ("__gpu$xla.gpu.triton", "triton_kernel_call_ffi")  # jaxlib 0.10.2 / later

# Triton lowering: both kernels, every dist_func / aggregation / texture type at least once
EXPORT_MODES = [
    ("euclidean", "softmax", "prod", "surface"),
    ("barycentric", "hard", "sum", "vertex"),
    ("hard", "softmax", "hard", "surface"),
]


@pytest.mark.skipif(bool(_triton_lowering_without_gpu()), reason=_triton_lowering_without_gpu())
@pytest.mark.parametrize("dist,rgb,alpha,tex", EXPORT_MODES)
def test_kernels_lower_to_triton(dist, rgb, alpha, tex):
    """``jax.export`` for the CUDA platform runs Pallas's Triton lowering of the forward and
    backward kernels without a GPU (float32, the default GPU configuration, 3x3 texels)."""
    fv, stex, vtex = random_scene(0, batch=2, faces=9, res=3)
    t = (stex if tex == "surface" else vtex).astype(np.float32)
    kw = _check_kw(mode_kwargs(dist, rgb, alpha, tex, image_size=32))
    f, t, opts, sc, _ = check_inputs(fv.astype(np.float32), t, backend="pallas", **kw)
    cfg = sj.PallasConfig(interpret=False)

    def loss(f, t, sc):
        return jnp.sum(rasterize_pallas(f, t, sc, opts, cfg))

    exported = jax.export.export(
        jax.jit(jax.value_and_grad(loss, (0, 1, 2))),
        platforms=["cuda"],
        disabled_checks=[jax.export.DisabledSafetyCheck.custom_call(n) for n in TRITON_CALLS],
    )(f, t, sc)
    text = exported.mlir_module()
    # the forward and the backward kernel
    assert sum(text.count(f"@{n}(") for n in TRITON_CALLS) == 2
