"""Property tests (hypothesis) on small random scenes: the tiled path equals the reference and
outputs are well-formed for any geometry."""

from __future__ import annotations

import numpy as np
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

import softjax as sj

F = 5
coord = st.floats(-1.5, 1.5, allow_nan=False, width=32)
depth = st.floats(0.25, 10.0, allow_nan=False, width=32)
xy = arrays(np.float32, (1, F, 3, 2), elements=coord)
zs = arrays(np.float32, (1, F, 3, 1), elements=depth)
colours = arrays(np.float32, (1, F, 4, 3), elements=st.floats(0, 1, width=32))
SETTINGS = settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
KW = dict(image_size=10, near=1.0, far=6.0, sigma_val=1e-3, gamma_val=1e-2)


@SETTINGS
@given(xy=xy, z=zs, tex=colours, fill_back=st.booleans())
def test_tiled_equals_reference(xy, z, tex, fill_back):
    fv = np.concatenate([xy, z], -1)
    ref = np.asarray(sj.soft_rasterize(fv, tex, backend="reference", fill_back=fill_back, **KW))
    out = np.asarray(
        sj.soft_rasterize(
            fv, tex, fill_back=fill_back, tiling=sj.TilingConfig(tile=4, window=2), **KW
        )
    )
    np.testing.assert_allclose(out, ref, atol=2e-5)


@SETTINGS
@given(xy=xy, z=zs, tex=colours, dist=st.sampled_from(["hard", "barycentric", "euclidean"]))
def test_output_well_formed(xy, z, tex, dist):
    fv = np.concatenate([xy, z], -1)
    out = np.asarray(
        sj.soft_rasterize(fv, tex, dist_func=dist, background_color=(0.5, 0.5, 0.5), **KW)
    )
    assert np.isfinite(out).all()
    assert (out[..., 3] >= 0).all() and (out[..., 3] <= 1).all()
    # RGB is a convex combination of texel colours and the background
    assert (out[..., :3] >= -1e-6).all() and (out[..., :3] <= 1 + 1e-6).all()
