"""Two levels of tiles (XLA path): faces with large grown boxes are binned on coarse tiles after
all the others, in another pixel layout; images and gradients still match the dense reference,
and the hard colour still takes the first of equally near faces."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from helpers import mode_kwargs, random_scene, weighted_loss

import softjax as sj
from softjax.ops import aggregate, binning
from softjax.ops.options import StaticOptions
from softjax.ops.pixel_face import face_setup

S = 45  # odd: the padded square has partial tiles at both levels
FACES = 80  # 25 pixels per face: 2-pixel fine tiles, 8-pixel coarse ones
SCALARS = (1e-3, 1e-2, 1.0, 6.0, 1e-3)  # sigma, gamma, near, far, eps (as mode_kwargs)
CONFIGS = [
    sj.TilingConfig(),
    # several passes, windows and steps at both levels
    sj.TilingConfig(tile=2, coarse_tile=4, window=3, group=5, capacity=97),
]


def _level_faces(fv, cfg: sj.TilingConfig, sigma: float, counts=None) -> tuple[int, int]:
    """Faces listed by the fine and by the coarse level of a scene (euclidean)."""
    b, f = fv.shape[:2]
    cfg = binning.resolve_tiling(cfg, "xla", S, f)
    grid = binning.make_grid(S, cfg.tile, b, f, cfg.coarse_tile)
    present = binning.face_present(None if counts is None else jnp.asarray(counts), grid)
    face = face_setup(jnp.asarray(fv).reshape(-1, 3, 3))
    ft = binning.face_tiles(face, sigma, 1e-4, grid, present, "euclidean")
    coarse = np.asarray(binning.coarse_faces(ft, grid))
    listed = np.asarray(ft.count) > 0
    return int(np.sum(listed & ~coarse)), int(np.sum(listed & coarse))


def _scale(fv, factor):
    centre = fv[..., :2].mean(-2, keepdims=True)
    out = fv.copy()
    out[..., :2] = centre + (fv[..., :2] - centre) * factor
    return out


def _scene(seed: int = 3):
    """Random faces: the first 20 of each mesh grown to large ones (listing most of the fine
    tiles' box pairs), the others shrunk to a few pixels."""
    fv, tex, vtex = random_scene(seed, batch=2, faces=FACES)
    fv[:, :20] = _scale(fv[:, :20], 2.0)
    fv[:, 20:] = _scale(fv[:, 20:], 0.15)
    return fv, tex, vtex


def _check(kw, fv, tex, tiling=None, **data):
    """``data``: ``soft_rasterize`` inputs besides ``fv`` and ``tex`` (``face_counts``, UVs)."""
    weights = np.random.default_rng(1).normal(size=(2, S, S, 4))
    args = (fv, tex) + tuple(np.float64(v) for v in SCALARS)
    argnums = tuple(range(len(args)))
    kw = {k: v for k, v in kw.items() if k not in ("sigma_val", "gamma_val", "near", "far")}
    want = jax.grad(weighted_loss(kw, weights, "reference", **data), argnums)(*args)
    got = jax.grad(weighted_loss(kw, weights, "xla", tiling=tiling, **data), argnums)(*args)
    for i, (w, g) in enumerate(zip(jax.tree.leaves(want), jax.tree.leaves(got), strict=True)):
        scale = max(float(np.max(np.abs(w))), 1.0)
        np.testing.assert_allclose(g, w, atol=1e-9 * scale, err_msg=f"gradient {i}")
    assert max(np.abs(np.asarray(w)).max() for w in want[:2]) > 1e-2  # not vacuous
    render = dict(kw, sigma_val=SCALARS[0], gamma_val=SCALARS[1], near=SCALARS[2], far=SCALARS[3])
    img_want = sj.soft_rasterize(fv, tex, backend="reference", **data, **render)
    img_got = sj.soft_rasterize(fv, tex, backend="xla", tiling=tiling, **data, **render)
    np.testing.assert_allclose(img_got, img_want, atol=1e-10)


def test_scene_fills_both_levels():
    fv, _, _ = _scene()
    for cfg in CONFIGS:
        fine, coarse = _level_faces(fv, cfg, SCALARS[0])
        assert fine > 50 and coarse > 5, (cfg, fine, coarse)


@pytest.mark.parametrize(
    "dist,rgb,alpha,tex",
    [
        ("euclidean", "softmax", "prod", "surface"),
        ("barycentric", "hard", "sum", "vertex"),
        ("hard", "hard", "hard", "surface"),
    ],
)
@pytest.mark.parametrize("config", [0, 1])
def test_two_levels_match_reference(float64, dist, rgb, alpha, tex, config):
    """Image and the gradients of the vertices, textures and every traced scalar."""
    fv, stex, vtex = _scene()
    kw = mode_kwargs(dist, rgb, alpha, tex, image_size=S)
    _check(kw, fv, vtex if tex == "vertex" else stex, CONFIGS[config])


def test_two_levels_padded_batch_match_reference(float64):
    """``face_counts``: the padding faces belong to neither level."""
    fv, tex, _ = _scene(5)
    counts = np.array([FACES, 57], np.int32)
    fine, coarse = _level_faces(fv, CONFIGS[0], SCALARS[0], counts)
    assert coarse > 5
    kw = mode_kwargs("euclidean", "softmax", "sum", "surface", image_size=S)
    _check(kw, fv, tex, CONFIGS[1], face_counts=counts)


def test_two_levels_uv_texture_match_reference(float64):
    fv, _, _ = _scene(7)
    rng = np.random.default_rng(8)
    image = rng.uniform(size=(2, 6, 5, 3))
    uvs = rng.uniform(-0.6, 1.6, (2, FACES, 3, 2))
    tint = rng.uniform(0.5, 1.5, (2, FACES, 3))
    assert _level_faces(fv, CONFIGS[0], SCALARS[0])[1] > 5
    kw = mode_kwargs("euclidean", "softmax", "prod", "uv:clamp", image_size=S)
    _check(kw, fv, image, face_uvs=uvs, face_tint=tint)


def test_one_level_when_large_faces_are_few():
    """Large faces go to the coarse tiles only when they list a quarter of the fine tiles' box
    pairs: one among 400 small faces stays (a coarse level would cost it more than its extra
    fine tiles), eight go."""
    fv, _, _ = random_scene(3, batch=1, faces=400, res=1)
    fv = _scale(fv, 0.15)
    fine, coarse = _level_faces(fv, CONFIGS[0], SCALARS[0])
    assert fine > 300 and coarse == 0
    large = np.array([[-0.8, -0.8, 3.0], [0.8, -0.7, 3.0], [0.0, 0.8, 3.0]])  # 36 x 36 pixels
    fv[0, :1] = large
    assert _level_faces(fv, CONFIGS[0], SCALARS[0])[1] == 0
    fv[0, :8] = large
    assert _level_faces(fv, CONFIGS[0], SCALARS[0])[1] == 8


def test_vmap_over_views_with_and_without_coarse_faces():
    """Under ``vmap`` the skip of an empty coarse level becomes a select: views with and
    without large faces render as they do alone."""
    fv, tex, _ = _scene()
    small = _scale(fv[:1], 0.15)
    views = np.concatenate([fv[:1], small]).astype(np.float32)
    tex = tex[:1].repeat(2, 0).astype(np.float32)
    kw = mode_kwargs("euclidean", "softmax", "prod", "surface", image_size=S)
    one = jax.vmap(lambda v, t: sj.soft_rasterize(v[None], t[None], backend="xla", **kw)[0])
    alone = [
        sj.soft_rasterize(views[i : i + 1], tex[i : i + 1], backend="xla", **kw)[0]
        for i in range(2)
    ]
    np.testing.assert_allclose(jax.jit(one)(views, tex), np.stack(alone), atol=2e-6)


def test_coarse_tile_must_be_a_multiple_of_tile():
    fv, tex, _ = _scene()
    with pytest.raises(ValueError, match="coarse_tile must be a multiple of tile, got 6 and 4"):
        sj.soft_rasterize(fv, tex, image_size=S, tiling=sj.TilingConfig(tile=4, coarse_tile=6))


def test_combine_takes_the_lower_face_id_of_equally_near_faces():
    """The coarse level's faces fold in after all of the fine level's, whatever their ids."""
    opts = StaticOptions(4, (0.0, 0.0, 0.0), "hard", "hard", "hard", "surface")

    def state(fbest, zbest, red):
        n = len(fbest)
        return aggregate.AggState(
            ahard=jnp.zeros(n),
            fbest=jnp.asarray(fbest, jnp.int32),
            zbest=jnp.asarray(zbest, jnp.float32),
            rgb=(jnp.full(n, red), jnp.zeros(n), jnp.zeros(n)),
        )

    inf = np.inf
    st = state([5, 5, 5, -1, 5], [1.0, 1.0, 1.0, inf, 2.0], 0.25)
    later = state([3, 7, 3, 2, 9], [1.0, 1.0, 0.5, inf, 3.0], 0.75)
    out = aggregate.combine(st, later, opts)
    np.testing.assert_array_equal(out.fbest, [3, 5, 3, -1, 5])
    np.testing.assert_array_equal(out.rgb[0], [0.75, 0.25, 0.75, 0.25, 0.25])


def test_geometry_counts_follow_both_levels():
    """The benchmark's candidate counts are those of the levels the call runs: every useful
    pair lies in a kept tile of its face's level."""
    from bench import geometry

    scene = geometry.slivers(300, 48)
    counts = geometry.pair_counts(scene)
    assert (counts["tile"], counts["coarse_tile"]) == (2, 8)
    assert geometry.tile_label(counts) == "2+8"
    assert 0 < counts["coarse_faces"] < 300
    assert counts["useful"] <= counts["candidate_pixels"] < 16 * counts["useful"]
    # the kept tiles include every tile where a face is useful (else binning would drop pairs)
    assert counts["useful"] <= counts["floor_pixels"] <= counts["candidate_pixels"]
    assert counts["candidate_tiles"] < counts["box_tiles"]
    one = geometry.pair_counts(scene._replace(fv=scene.fv[:, :15], tex=scene.tex[:, :15]))
    assert (one["tile"], one["coarse_tile"]) == (8, 0)  # 154 pixels per face: one level
    assert one["useful"] <= one["floor_pixels"] <= one["candidate_pixels"]


def test_geometry_counts_whole_windows():
    """``window_pixels`` counts whole windows of 16 faces per tile: 17 copies of one face fill
    two windows in each of its tiles, one copy one."""
    from bench import geometry

    face = np.array([[[-0.3, -0.2, 0.5], [0.3, -0.25, 0.5], [0.0, 0.35, 0.5]]], np.float32)
    for copies, windows in ((1, 1), (16, 1), (17, 2)):
        fv = np.repeat(face[None], copies, axis=1)
        scene = geometry.Scene("copies", fv, np.ones(fv.shape[:2] + (1, 3), np.float32), 32, 1e-4)
        counts = geometry.pair_counts(scene)
        tiles = counts["candidate_tiles"] // copies  # the tiles one copy lists
        assert tiles > 0 and counts["candidate_tiles"] == tiles * copies
        assert counts["window_pixels"] == tiles * windows * 16 * counts["tile"] ** 2
