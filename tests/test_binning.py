"""Binning: every (tile, face) pair whose grown bounding box overlaps the tile is listed exactly
once over all passes, with either sort strategy."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from helpers import random_scene

import softjax as sj
from softjax.ops import binning
from softjax.ops.pixel_face import face_setup, threshold


def _expected_pairs(fv, sigma, dist_eps, s, tile):
    grow = float(np.sqrt(threshold(sigma, dist_eps)))
    n = -(-s // tile)
    pairs = set()
    bsz, nf = fv.shape[:2]
    centres = (2 * np.arange(s) + 1 - s) / s
    for b in range(bsz):
        for f in range(nf):
            x, y = fv[b, f, :, 0], fv[b, f, :, 1]
            cols = np.nonzero((centres >= x.min() - grow) & (centres <= x.max() + grow))[0]
            rows = np.nonzero(
                (centres[::-1] >= y.min() - grow) & (centres[::-1] <= y.max() + grow)
            )[0]
            for r in rows:
                for c in cols:
                    pairs.add((b * n * n + (r // tile) * n + c // tile, b * nf + f))
    return pairs, n


@pytest.mark.parametrize("composite", [True, False])
@pytest.mark.parametrize("capacity", [7, 40, 10_000])
@pytest.mark.parametrize("chunk", [1 << 16, 3, 16])
def test_every_overlapping_pair_listed_once(monkeypatch, composite, capacity, chunk):
    """Also when a pass is enumerated a few slots at a time (``chunk``: partial last chunks,
    chunks smaller than a face's pairs) and some faces list no pair (off screen)."""
    monkeypatch.setattr(binning, "_ENUM_CHUNK", chunk)
    if not composite:
        monkeypatch.setattr(binning, "COMPOSITE_KEY_LIMIT", 0)
    fv, _, _ = random_scene(41, batch=2, faces=9)
    fv[0, 2, :, 0] += 10.0  # off screen: one face, two in a row, the last face
    fv[1, 4:6, :, 0] -= 10.0
    fv[1, 8, :, 1] += 10.0
    s, tile, sigma, dist_eps = 20, 4, 1e-3, 1e-4
    want, n = _expected_pairs(fv, sigma, dist_eps, s, tile)
    grid = binning.make_grid(s, tile, 2, 9)
    face = face_setup(jnp.asarray(fv.reshape(-1, 3, 3), jnp.float32))
    ft = binning.face_tiles(face, sigma, dist_eps, grid)
    got = []
    for p in range(int(binning.num_passes(ft, capacity))):
        bins = binning.bin_pass(ft, p, capacity, grid)
        start, count, faces = map(np.asarray, (bins.start, bins.count, bins.faces))
        for t in range(grid.num_tiles):
            got += [(t, int(faces[start[t] + k])) for k in range(count[t])]
        # each slot's tile (the backward's flat sweep reads it): the pass's pairs, then junk
        want_tile = np.repeat(np.arange(grid.num_tiles + 1), np.asarray(bins.count))
        tile = np.asarray(bins.tile)
        assert len(want_tile) == int(bins.pairs)
        np.testing.assert_array_equal(tile[: int(bins.pairs)], want_tile)
        assert (tile[int(bins.pairs) :] == grid.num_tiles).all()
    # the rounding margin may list extra pairs, never miss one or repeat one
    assert len(got) == len(set(got))
    assert want <= set(got)
    assert len(got) <= 2 * len(want)


def test_numpy_sort_search_matches_xla():
    """The CPU's sort (NumPy, through a callback) and the one other platforms run (XLA) agree,
    with duplicate keys, under ``jit`` and under ``vmap`` (the callback sees a batch)."""
    rng = np.random.default_rng(3)
    keys = rng.integers(0, 50, (3, 200)).astype(np.int32)
    keys[:, 150:] = 60  # the pairs dropped from a pass share the largest key
    bounds = jnp.asarray([0, 10, 10, 25, 49, 50, 61], jnp.int32)
    want = [binning._lax_sort_search(jnp.asarray(k), bounds) for k in keys]
    got = jax.jit(jax.vmap(binning.sort_search, in_axes=(0, None)))(jnp.asarray(keys), bounds)
    for i, (k, pos) in enumerate(want):
        np.testing.assert_array_equal(np.asarray(got[0][i]), np.sort(keys[i]))
        np.testing.assert_array_equal(np.asarray(got[0][i]), np.asarray(k))
        np.testing.assert_array_equal(np.asarray(got[1][i]), np.asarray(pos))
    # a callback may be handed jax.Arrays
    direct = binning._numpy_sort_search(jnp.asarray(keys), bounds)
    np.testing.assert_array_equal(direct[0], np.asarray(got[0]))
    single = jax.jit(binning.sort_search)(jnp.asarray(keys[0]), bounds)
    np.testing.assert_array_equal(np.asarray(single[1]), np.asarray(want[0][1]))
    assert np.asarray(want[0][1]).tolist() == np.searchsorted(np.sort(keys[0]), bounds).tolist()


@pytest.mark.parametrize("in_place", [True, False])
def test_sort_search_sorts_only_the_used_prefix(monkeypatch, in_place):
    """``used``: the keys before it are sorted, those after (junk, no smaller) are left; under
    jit and under vmap with a count per row, through the in-place buffer callback and through
    ``pure_callback`` (JAX versions without one)."""
    if not in_place:
        monkeypatch.setattr(binning, "_buffer_callback", None)
    rng = np.random.default_rng(6)
    junk = 1000
    used = np.array([0, 1, 37, 120, 200], np.int32)
    keys = np.full((5, 200), junk, np.int32)
    for row, u in zip(keys, used, strict=True):
        row[:u] = rng.integers(0, junk + 1, u)  # junk may also sit in the prefix
    bounds = jnp.asarray([0, 10, 500, 999, 1000, 1001], jnp.int32)
    batched = jax.jit(jax.vmap(binning.sort_search, in_axes=(0, None, 0)))
    got, pos = batched(jnp.asarray(keys), bounds, jnp.asarray(used))
    for i, k in enumerate(keys):
        np.testing.assert_array_equal(np.asarray(got[i]), np.sort(k))
        np.testing.assert_array_equal(np.asarray(pos[i]), np.searchsorted(np.sort(k), bounds))
    one, one_pos = jax.jit(binning.sort_search)(jnp.asarray(keys[2]), bounds, used[2])
    np.testing.assert_array_equal(np.asarray(one), np.sort(keys[2]))
    np.testing.assert_array_equal(np.asarray(one_pos), np.searchsorted(np.sort(keys[2]), bounds))
    # the input is not changed by the in-place sort (XLA copies what it aliases when needed)
    arg = jnp.asarray(keys[3])
    jax.block_until_ready(jax.jit(binning.sort_search)(arg, bounds, used[3]))
    np.testing.assert_array_equal(np.asarray(arg), keys[3])


@pytest.mark.parametrize(
    "low, high", [(0, 1 << 16), (0, 2**31 - 1), (2**31 - 3000, 2**31 - 1), (-40, 40)]
)
def test_numpy_sort_is_a_sort_for_any_key_range(low, high):
    """The CPU sort over key ranges below and above 2^16, near the int32 limit, and negative."""
    rng = np.random.default_rng(4)
    keys = rng.integers(low, high, 5000, dtype=np.int64).astype(np.int32)
    keys[::7] = keys[3]  # duplicates
    bounds = np.sort(rng.integers(low, high, 9, dtype=np.int64)).astype(np.int32)
    got, pos = binning._numpy_sort_search(keys, bounds)
    np.testing.assert_array_equal(got, np.sort(keys))
    np.testing.assert_array_equal(pos, np.searchsorted(np.sort(keys), bounds))


def _enumerated_keys(rng, images: int, faces: int, tiles: int) -> np.ndarray:
    """Keys ``tile * faces + face`` in the binning's enumeration order: image by image, face by
    face, each face's tiles ascending; some pairs culled."""
    keys = []
    for b in range(images):
        for f in range(faces):
            lo = rng.integers(0, tiles)
            span = rng.integers(0, 6)
            for t in range(lo, min(lo + span, tiles)):
                if rng.uniform() < 0.8:
                    keys.append((b * tiles + t) * faces + f)
    return np.asarray(keys, np.int32)


@pytest.mark.parametrize("images, faces, tiles", [(1, 40, 16), (30, 25, 64), (3, 7, 1 << 17)])
def test_sort_search_sorts_enumerated_keys_in_every_order(images, faces, tiles):
    """The CPU's sort through the callback, under jit and vmap, of keys as the binning
    enumerates them (image by image, face by face) with the junk keys of dropped pairs, and of
    the same keys shuffled and descending: always a sort, and the bounds' insertion points."""
    rng = np.random.default_rng(5)
    keys = _enumerated_keys(rng, images, faces, tiles)
    orders = [keys, rng.permutation(keys), np.sort(keys)[::-1].copy()]
    junk = (images * tiles) * faces
    batch = np.stack([np.concatenate([k, np.full(7, junk, np.int32)]) for k in orders])
    bounds = jnp.arange(0, images * tiles + 2, max(1, tiles // 4), dtype=jnp.int32) * faces
    fn = jax.vmap(lambda k: binning.sort_search(k, bounds))
    got, pos = jax.jit(fn)(jnp.asarray(batch))
    for i, k in enumerate(batch):
        np.testing.assert_array_equal(np.asarray(got[i]), np.sort(k))
        np.testing.assert_array_equal(np.asarray(pos[i]), np.searchsorted(np.sort(k), bounds))


def test_fallback_sort_gives_same_image(monkeypatch):
    fv, tex, _ = random_scene(42, batch=2, faces=9)
    fv, tex = fv.astype(np.float32), tex.astype(np.float32)
    kw = dict(image_size=12, sigma_val=1e-3, tiling=sj.TilingConfig(tile=4, capacity=50))
    a = np.asarray(sj.soft_rasterize(fv, tex, **kw))
    monkeypatch.setattr(binning, "COMPOSITE_KEY_LIMIT", 0)
    # a different (static) capacity forces a new trace that sees the patched limit
    b = np.asarray(
        sj.soft_rasterize(fv, tex, **{**kw, "tiling": sj.TilingConfig(tile=4, capacity=51)})
    )
    np.testing.assert_allclose(a, b, atol=1e-6)


def _valid_pairs(px, py, face, dist_func, sigma, dist_eps) -> np.ndarray:
    """Whether the pair terms of pixels ``(px, py)`` with ``face`` are valid (broadcasting)."""
    from softjax.ops.pixel_face import pair_terms

    terms = pair_terms(
        px,
        py,
        face,
        dist_func=dist_func,
        sigma_val=sigma,
        dist_eps=dist_eps,
        gamma_val=1e-4,
        near=1.0,
        far=100.0,
        fill_back=True,
    )
    return np.asarray(terms.valid)


def _useful_tile_pairs(fv, sigma, dist_eps, s, tile, dist_func, dtype=jnp.float64):
    """(tile, face) pairs with at least one pixel whose pair terms are valid (in ``dtype``)."""
    from softjax.ops.pixel_face import pixel_centers

    n = -(-s // tile)
    xs, ys = (np.asarray(c).reshape(-1) for c in pixel_centers(s, dtype))
    rows, cols = np.divmod(np.arange(s * s), s)
    tiles = (rows // tile) * n + cols // tile
    pairs = set()
    bsz, nf = fv.shape[:2]
    face = face_setup(jnp.asarray(fv.reshape(-1, 3, 3), dtype))
    px, py = jnp.asarray(xs)[:, None], jnp.asarray(ys)[:, None]
    valid = _valid_pairs(px, py, face, dist_func, sigma, dist_eps)  # [S*S, B*F]
    for p, f in zip(*np.nonzero(valid), strict=True):
        pairs.add((int(f // nf) * n * n + int(tiles[p]), int(f)))
    return pairs


def _binned_pairs(ft, capacity, grid):
    got = []
    for p in range(int(binning.num_passes(ft, capacity))):
        bins = binning.bin_pass(ft, p, capacity, grid)
        start, count, faces = map(np.asarray, (bins.start, bins.count, bins.faces))
        assert int(bins.pairs) == int(count.sum())
        for t in range(grid.num_tiles):
            got += [(t, int(faces[start[t] + k])) for k in range(count[t])]
    return got


def _slivers(seed, count, s):
    rng = np.random.default_rng(seed)
    centre = rng.uniform(-0.5, 0.5, (1, count, 1, 2))
    angle = rng.uniform(0, np.pi, (1, count, 1))
    d = np.stack([np.cos(angle), np.sin(angle)], -1)
    nrm = np.stack([-np.sin(angle), np.cos(angle)], -1)
    xy = np.concatenate([centre - 0.6 * d, centre + 0.6 * d, centre + 0.1 * d + nrm / s], 2)
    return np.concatenate([xy, rng.uniform(2.0, 4.0, (1, count, 3, 1))], -1)


@pytest.mark.parametrize("dist_func", ["euclidean", "barycentric", "hard"])
def test_edge_line_culling_keeps_every_useful_pair(float64, dist_func):
    """The pairs the edge lines drop are exactly useless ones: every (tile, face) pair with a
    valid pixel is still listed, once, and thin diagonal faces lose many bounding-box tiles."""
    s, tile, sigma, dist_eps = 24, 4, 2e-3, 1e-4
    random_fv, _, _ = random_scene(43, batch=1, faces=10)
    fv = np.concatenate([random_fv, _slivers(5, 10, s)], 1)
    fv[0, 3] = [[0.1, 0.1, 2.0], [0.1, 0.1, 2.0], [0.5, -0.3, 3.0]]  # degenerate: a segment
    fv[0, 4] = [[-0.2, 0.4, 2.0], [-0.2, 0.4, 2.0], [-0.2, 0.4, 2.0]]  # a point
    grid = binning.make_grid(s, tile, 1, fv.shape[1])
    face = face_setup(jnp.asarray(fv.reshape(-1, 3, 3)))
    box = binning.face_tiles(face, sigma, dist_eps, grid)
    culled = binning.face_tiles(face, sigma, dist_eps, grid, None, dist_func)
    want = _useful_tile_pairs(fv, sigma, dist_eps, s, tile, dist_func)
    box_pairs = _binned_pairs(box, 37, grid)
    got = _binned_pairs(culled, 37, grid)
    assert len(got) == len(set(got))
    assert want <= set(got) <= set(box_pairs)
    assert len(got) < 0.8 * len(box_pairs), (len(got), len(box_pairs))


@pytest.mark.parametrize("dist_func", [None, "euclidean", "barycentric"])
def test_grown_box_on_pixel_centres_in_float32_loses_no_pair(dist_func):
    """Faces whose grown box ends on a pixel centre, give or take a few float32 ulps, with the
    extreme corner level with that centre (the one pixel the box decides about): the binning
    (a margin of a fraction of a pixel against rounding) still lists the tile of every pixel
    the float32 pair math keeps."""
    s, tile, sigma, dist_eps, nf = 32, 2, 1e-4, 1e-4, 240
    grow = np.float32(np.sqrt(threshold(np.float32(sigma), np.float32(dist_eps))))
    rng = np.random.default_rng(5)
    centres = ((2 * np.arange(s) + 1 - s) / s).astype(np.float32)
    fv = np.zeros((1, nf, 3, 3), np.float32)
    fv[..., 2] = 2.0
    for i in range(nf):
        axis, sign = i % 2, (-1.0, 1.0)[(i // 2) % 2]  # which side of the box: x/y, low/high
        edge = np.float32(centres[rng.integers(4, s - 4)] - sign * grow)
        for _ in range(int(rng.integers(0, 4))):  # a few ulps either way
            edge = np.nextafter(edge, np.float32(rng.choice([-10, 10])), dtype=np.float32)
        level = centres[rng.integers(4, s - 4)]
        size = rng.uniform(0.02, 1.0)
        inward = -sign * size * rng.uniform(0.2, 1.0, 2)
        across = size * rng.uniform(-1.0, 1.0, 2)
        fv[0, i, :, axis] = [edge, edge + inward[0], edge + inward[1]]
        fv[0, i, :, 1 - axis] = [level, level + across[0], level + across[1]]
    grid = binning.make_grid(s, tile, 1, nf)
    face = face_setup(jnp.asarray(fv.reshape(-1, 3, 3)))
    ft = binning.face_tiles(face, sigma, dist_eps, grid, None, dist_func)
    want = _useful_tile_pairs(fv, sigma, dist_eps, s, tile, dist_func or "euclidean", jnp.float32)
    got = _binned_pairs(ft, 1 << 16, grid)
    assert want and want <= set(got)


def _faces_grazing_pixels(rng, centres, reach, count, scale):
    """``[1, count, 3, 3]`` float32 faces, each with an edge whose line passes ``reach(h)`` (h:
    the face's height over that edge) beyond a pixel centre, give or take a few ulps, on the
    side away from the face, at a random angle; edges and heights of about ``scale``."""
    fv = np.zeros((1, count, 3, 3), np.float32)
    fv[..., 2] = 2.0
    for i in range(count):
        p = np.array([rng.choice(centres[4:-4]), rng.choice(centres[4:-4])])
        angle = rng.uniform(0, 2 * np.pi)
        n = np.array([np.cos(angle), np.sin(angle)])  # from the pixel towards the face
        u = np.array([-n[1], n[0]])
        height = scale * rng.uniform(0.3, 1.0)
        q = p + reach(height) * n * (1 + rng.integers(-4, 5) * 2.0**-22)
        corners = [q + scale * rng.uniform(0.05, 1) * u, q - scale * rng.uniform(0.05, 1) * u]
        corners.append(q + height * n + scale * rng.uniform(-1, 1) * u)
        if rng.integers(2):  # either winding
            corners = corners[::-1]
        fv[0, i, :, :2] = np.array(corners, np.float32)
    return fv


@pytest.mark.parametrize("dist_func", ["euclidean", "barycentric", "hard"])
@pytest.mark.parametrize("scale", [1e-5, 0.3, 60.0])
def test_edge_lines_in_float32_lose_no_pair(dist_func, scale):
    """Faces whose edge line passes the culling threshold's reach from a pixel centre, give or
    take a few float32 ulps (the one pixel the line decides about), with tiny edges, ordinary
    ones and corners far off screen: the binning still lists the tile of every pixel the
    float32 pair math keeps, and the lines still cull (the margin is a fraction of a pixel)."""
    s, tile, sigma, dist_eps, nf = 32, 2, 1e-4, 1e-4, 300
    grow = float(np.sqrt(threshold(np.float32(sigma), np.float32(dist_eps))))
    reach = {
        "euclidean": lambda h: grow,
        "barycentric": lambda h: grow * h,  # w_k = -distance / height
        "hard": lambda h: 0.0,
    }[dist_func]
    centres = ((2 * np.arange(s) + 1 - s) / s).astype(np.float32)
    fv = _faces_grazing_pixels(np.random.default_rng(11), centres, reach, nf, scale)
    grid = binning.make_grid(s, tile, 1, nf)
    face = face_setup(jnp.asarray(fv.reshape(-1, 3, 3)))
    ft = binning.face_tiles(face, sigma, dist_eps, grid, None, dist_func)
    box = binning.face_tiles(face, sigma, dist_eps, grid)
    want = _useful_tile_pairs(fv, sigma, dist_eps, s, tile, dist_func, jnp.float32)
    got = _binned_pairs(ft, 1 << 16, grid)
    assert want <= set(got)
    if scale < 0.1:  # one tile per face: nothing to cull; the grazing pixels fall either way
        assert len(want) > nf // 4 or dist_func != "euclidean"  # the others' reach: ~0
    else:
        assert len(want) > nf // 4 and len(got) < 0.9 * int(box.total), (len(want), len(got))


@pytest.mark.parametrize(
    "dist, rgb, alpha", [("euclidean", "softmax", "prod"), ("hard", "hard", "hard")]
)
def test_crowded_tile_split_across_steps_matches_reference(float64, dist, rgb, alpha):
    """Hundreds of faces in one tile: the tile's list is cut into many (tile, window) items, several
    per step and runs across steps; identical coplanar faces tie for the hard colour, which the
    first face must win as in the reference."""
    from helpers import mode_kwargs

    rng = np.random.default_rng(7)
    base = np.array([[-0.3, -0.3, 2.0], [0.3, -0.2, 2.5], [0.0, 0.35, 3.0]])
    crowd = base + rng.normal(0, 0.02, (300, 3, 3)) * np.array([1, 1, 0])
    crowd[100:110] = base  # ten identical faces: a tie at every pixel they cover
    others, _, _ = random_scene(44, batch=1, faces=20)
    fv = np.concatenate([crowd[None], others], 1)
    tex = rng.uniform(0, 1, fv.shape[:2] + (1, 3))
    kw = mode_kwargs(dist, rgb, alpha, "surface", image_size=16)
    want = np.asarray(sj.soft_rasterize(fv, tex, backend="reference", **kw))
    for cfg in (sj.TilingConfig(window=4, group=3), sj.TilingConfig(window=16, group=5)):
        got = np.asarray(sj.soft_rasterize(fv, tex, backend="xla", tiling=cfg, **kw))
        np.testing.assert_allclose(got, want, atol=1e-10)


def test_auto_tile_follows_pixels_per_face():
    assert binning.auto_tile(64, 32) == 8  # exactly 128 pixels per face
    assert binning.auto_tile(64, 33) == 4
    assert binning.auto_tile(64, 128) == 4  # exactly 32
    assert binning.auto_tile(64, 129) == 2
    assert binning.auto_tile(64, 1280) == 2
    assert binning.auto_tile(256, 1280) == 4  # 51 pixels per face
    assert binning.auto_tile(512, 1280) == 8
    assert binning.auto_tile(16, 0) == 8
    cfg = binning.resolve_tiling(sj.TilingConfig(), "pallas", 64, 20480)
    assert cfg.tile == 8  # the Pallas kernels keep their own default


def test_very_dense_mesh_two_pixel_tiles_match_reference(float64):
    """Faces smaller than 4 pixels take 2-pixel tiles (an odd image size leaves a partial tile);
    image and gradients match the dense reference."""
    s, nf, sigma = 15, 300, 1e-4
    rng = np.random.default_rng(11)
    centre = rng.uniform(-0.9, 0.9, (1, nf, 1, 2))
    xy = centre + rng.normal(0.0, 0.04, (1, nf, 3, 2))
    fv = np.concatenate([xy, rng.uniform(2.0, 4.0, (1, nf, 3, 1))], -1)
    tex = rng.uniform(0, 1, (1, nf, 1, 3))
    assert binning.resolve_tiling(sj.TilingConfig(), "xla", s, nf).tile == 2
    weights = rng.normal(size=(1, s, s, 4))

    def loss(v, t, backend):
        img = sj.soft_rasterize(v, t, image_size=s, sigma_val=sigma, backend=backend)
        return jnp.sum(img * weights)

    for argnum in (0, 1):
        want = jax.grad(loss, argnum)(fv, tex, "reference")
        got = jax.grad(loss, argnum)(fv, tex, "xla")
        np.testing.assert_allclose(got, want, rtol=1e-7, atol=1e-9)
    np.testing.assert_allclose(
        sj.soft_rasterize(fv, tex, image_size=s, sigma_val=sigma, backend="xla"),
        sj.soft_rasterize(fv, tex, image_size=s, sigma_val=sigma, backend="reference"),
        atol=1e-10,
    )


def test_two_pixel_tiles_default_capacity_holds_a_flat_ellipsoid_in_one_pass():
    """A flattened ellipsoid of 5,120 faces at 128^2, seen from 30 degrees, lists more than 8
    pairs per face with 2-pixel tiles: the default capacity of small tiles still holds them in
    one pass (a second pass would sort again)."""
    from bench.geometry import flat_ellipsoid

    scene = flat_ellipsoid()[1]
    nf = scene.fv.shape[1]
    cfg = binning.resolve_tiling(sj.TilingConfig(), "xla", scene.image_size, nf)
    assert cfg.tile == 2
    grid = binning.make_grid(scene.image_size, cfg.tile, 1, nf)
    face = face_setup(jnp.asarray(scene.fv.reshape(-1, 3, 3)))
    ft = binning.face_tiles(face, scene.sigma, 1e-4, grid, None, "euclidean")
    capacity = binning.pair_capacity(cfg, grid, "xla")
    assert int(ft.total) > 8 * nf + 4 * grid.num_tiles  # the larger tiles' default
    assert int(binning.num_passes(ft, capacity)) == 1


def test_float_divmod_is_exact():
    """The binning's float-quotient divmod equals integer division for any ``a >= 0`` and
    ``b >= 1``: exact multiples, one below them, and values up to the int32 limit."""
    rng = np.random.default_rng(8)
    top = 2**31 - 1
    b = np.concatenate(
        [np.arange(1, 300), rng.integers(1, 1 << 12, 3000), rng.integers(1, top, 3000)]
    ).astype(np.int64)
    q = rng.integers(0, top, b.shape) // b
    a = np.concatenate([q * b, np.maximum(q * b - 1, 0), rng.integers(0, top, b.shape)])
    a = np.concatenate([a, np.full(b.shape, top), np.arange(b.shape[0])]).astype(np.int32)
    b = np.tile(b, 5).astype(np.int32)
    got_q, got_r = jax.jit(binning._divmod)(jnp.asarray(a), jnp.asarray(b))
    np.testing.assert_array_equal(np.asarray(got_q), a // b)
    np.testing.assert_array_equal(np.asarray(got_r), a % b)


@pytest.mark.parametrize("op, want", [(jnp.add, np.cumsum), (jnp.maximum, np.maximum.accumulate)])
def test_running_matches_numpy(op, want):
    x = np.random.default_rng(9).integers(-50, 50, 1001).astype(np.int32)
    np.testing.assert_array_equal(np.asarray(jax.jit(lambda v: binning.running(op, v))(x)), want(x))


@pytest.mark.parametrize("dist_func", ["euclidean", "barycentric", "hard"])
def test_backward_pair_test_keeps_every_pair_the_terms_keep(dist_func):
    """The XLA backward differentiates only the (pixel, face) pairs its pixel test keeps: on
    faces grazing pixel centres within a few float32 ulps of the threshold, every pair whose
    float32 terms are valid must be kept (a dropped one would lose its share of the
    gradient), and the test must still drop most of the tiles' other pixels."""
    from softjax.ops import streamed, xla_tiled
    from softjax.ops.options import Scalars, StaticOptions

    s, sigma, dist_eps, nf = 32, 1e-4, 1e-4, 300
    grow = float(np.sqrt(threshold(np.float32(sigma), np.float32(dist_eps))))
    reach = {"euclidean": lambda h: grow, "barycentric": lambda h: grow * h}.get(
        dist_func, lambda h: 0.0
    )
    centres = ((2 * np.arange(s) + 1 - s) / s).astype(np.float32)
    fv = jnp.asarray(_faces_grazing_pixels(np.random.default_rng(12), centres, reach, nf, 0.3))
    tex = jnp.ones((1, nf, 1, 3), jnp.float32)
    opts = StaticOptions(s, (0.0, 0.0, 0.0), dist_func, "softmax", "prod", "surface")
    scalars = Scalars(*(jnp.float32(v) for v in (sigma, 1e-4, 1.0, 100.0, 1e-3, dist_eps, 1.0)))
    cfg = sj.TilingConfig(tile=2, coarse_tile=2)  # one level of tiles
    (ctx,) = streamed.prepare(xla_tiled.PASSES, fv, tex, scalars, opts, cfg, None)
    nt = ctx.grid.num_tiles
    tiles = jnp.broadcast_to(jnp.arange(nt, dtype=jnp.int32)[:, None], (nt, nf))
    fidx = jnp.broadcast_to(jnp.arange(nf, dtype=jnp.int32)[None, :], (nt, nf))
    kept = np.asarray(jax.jit(lambda t, f: xla_tiled._kept_pairs(ctx, t, f))(tiles, fidx))

    xs, ys = binning.tile_pixel_coords(jnp.arange(nt), ctx.grid, jnp.float32)  # [NT, P]
    face = jax.tree.map(lambda v: v[None, None], face_setup(fv[0]))
    valid = _valid_pairs(
        xs[..., None], ys[..., None], face, dist_func, sigma, dist_eps
    )  # [NT, P, F]
    assert valid.sum() > nf // 2
    assert np.all(kept[valid]), int((valid & ~kept).sum())
    # tight: the loose threshold adds few pairs; the tiles' other pixels are dropped
    assert kept.sum() <= 1.05 * valid.sum() + 8, (int(kept.sum()), int(valid.sum()))
