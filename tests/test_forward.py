"""Forward results: the tiled XLA path and the dense reference against an independent float64
implementation of SoftRas, for every mode combination."""

from __future__ import annotations

import numpy as np
import pytest
from helpers import MODES, SMALL_TILING, mode_kwargs, random_scene
from softras_numpy import soft_rasterize_numpy

import softjax as sj


@pytest.mark.parametrize("dist,rgb,alpha,tex", MODES)
def test_every_mode_matches_independent_float64(dist, rgb, alpha, tex):
    """Reference, tiled XLA path and the tiled path with a tiny tiling (several binning passes,
    padded tile groups, several face windows) against the float64 loops, in float32."""
    for seed in (0, 1):
        fv, stex, vtex = random_scene(seed, batch=2, faces=9, res=3)
        t = stex if tex == "surface" else vtex
        for fill_back in (True, False):
            kw = mode_kwargs(dist, rgb, alpha, tex, fill_back=fill_back, image_size=12)
            want = soft_rasterize_numpy(fv, t, **kw)
            f32 = (fv.astype(np.float32), t.astype(np.float32))
            ref = np.asarray(sj.soft_rasterize(*f32, backend="reference", **kw))
            fast = np.asarray(sj.soft_rasterize(*f32, backend="xla", **kw))
            small = np.asarray(sj.soft_rasterize(*f32, backend="xla", tiling=SMALL_TILING, **kw))
            assert ref.dtype == np.float32 and fast.shape == (2, 12, 12, 4)
            np.testing.assert_allclose(ref, want, atol=2e-5, err_msg="reference")
            np.testing.assert_allclose(fast, want, atol=2e-5, err_msg="xla")
            np.testing.assert_allclose(small, want, atol=2e-5, err_msg="xla small tiling")
            # the scene is not trivial: faces and the background both show
            assert want[..., 3].max() > 0.1 and want[..., 3].min() < 1e-3
            painted = np.abs(want[..., :3] - np.array(kw["background_color"])).max(-1) > 0.05
            assert 0 < painted.mean() < 1


def test_default_options_match_reference():
    """SoftRas defaults (sigma 1e-5, gamma 1e-4, near 1, far 100) on a 64x64 image."""
    fv, tex, _ = random_scene(4, batch=2, faces=30)
    fv[..., 2] += 1.0
    fv, tex = fv.astype(np.float32), tex.astype(np.float32)
    ref = np.asarray(sj.soft_rasterize(fv, tex, image_size=64, backend="reference"))
    out = np.asarray(sj.soft_rasterize(fv, tex, image_size=64))
    # With gamma = 1e-4 the colour is as sensitive to depth as 1 / (gamma (far - near)) ~ 100
    # per unit; float32 depths carry ~1e-6 of rounding, so pixels where two faces are at nearly
    # the same depth differ by ~1e-4 between any two float32 implementations.
    np.testing.assert_allclose(out, ref, atol=1e-3)
    assert np.median(np.abs(out - ref)) < 1e-6
    assert (out[..., 3] > 0.5).mean() > 0.05


def test_batch_elements_are_independent():
    fv, tex, _ = random_scene(5, batch=3, faces=10)
    fv, tex = fv.astype(np.float32), tex.astype(np.float32)
    kw = mode_kwargs("euclidean", "softmax", "prod", "surface", image_size=16)
    full = np.asarray(sj.soft_rasterize(fv, tex, **kw))
    for b in range(3):
        one = np.asarray(sj.soft_rasterize(fv[b : b + 1], tex[b : b + 1], **kw))
        np.testing.assert_allclose(full[b : b + 1], one, atol=1e-6)


def test_image_size_not_multiple_of_tile():
    fv, tex, _ = random_scene(6, batch=1, faces=10)
    fv, tex = fv.astype(np.float32), tex.astype(np.float32)
    kw = mode_kwargs("euclidean", "softmax", "prod", "surface", image_size=13)
    ref = np.asarray(sj.soft_rasterize(fv, tex, backend="reference", **kw))
    out = np.asarray(sj.soft_rasterize(fv, tex, **kw))
    assert out.shape == (1, 13, 13, 4)
    np.testing.assert_allclose(out, ref, atol=1e-5)
