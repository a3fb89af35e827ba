"""The geometry suite: scenes whose faces fall on the screen tiles in very different ways, and
the pair counts that say how much work each one really holds.

Every scene is screen-space face vertices ``[B, F, 3, 3]`` with 1-texel textures, an image
size and a sigma. ``pair_counts`` counts the *useful* (pixel, face) pairs (the face passes the
``dist_eps`` test at the pixel: what any rasterizer must evaluate) and the *candidate* pairs
(the (tile, face) pairs the binning keeps, and the pixels of those tiles), so a benchmark can
report time per useful pair and candidates per useful pair.
"""

from __future__ import annotations

import functools
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

import softjax as sj
from bench.meshes import sphere_scene
from softjax.ops import binning
from softjax.ops.pixel_face import face_setup, pair_terms, pixel_centers

DISTANCE, ELEVATION, VIEWING_ANGLE = 2.732, 30.0, 15.0  # the demos' and the protocol's camera


class Scene(NamedTuple):
    name: str
    fv: np.ndarray  # [B, F, 3, 3] float32 screen space
    tex: np.ndarray  # [B, F, 1, 3] float32
    image_size: int
    sigma: float


def _screen(vertices: np.ndarray, faces: np.ndarray, azimuths, elevation=ELEVATION):
    """Face vertices ``[len(azimuths) * B, F, 3, 3]`` of meshes ``[B, V, 3]`` seen by the demos'
    look_at camera from each azimuth (views outer, meshes inner)."""
    cfg = sj.RenderConfig(camera_mode="look_at", viewing_angle=VIEWING_ANGLE)
    out = []
    for az in azimuths:
        eye = sj.get_points_from_angles(DISTANCE, elevation, float(az))
        screen = sj.project(jnp.asarray(vertices, jnp.float32), cfg, eye=eye)
        out.append(np.asarray(jax.vmap(lambda s, f: s[f])(screen, jnp.asarray(faces))))
    return np.concatenate(out).astype(np.float32)


def _tex(fv: np.ndarray, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return rng.uniform(0, 1, fv.shape[:2] + (1, 3)).astype(np.float32)


def _sphere_mesh(level: int):
    mesh = sj.icosphere(level)
    return np.asarray(mesh.vertices[0]) * 0.5, np.asarray(mesh.faces[0])


def spheres() -> list[Scene]:
    """Centred spheres of 1,280 / 5,120 / 20,480 faces at 64^2 (sigma 1e-4) and 256^2
    (sigma 1e-5)."""
    out = []
    for size, sigma in ((64, 1e-4), (256, 1e-5)):
        for faces in (1280, 5120, 20480):
            fv, tex = sphere_scene(faces)
            out.append(Scene(f"sphere {faces} @{size}", fv, tex, size, sigma))
    return out


def flat_ellipsoid() -> list[Scene]:
    """A sphere of 5,120 faces squashed to a disk 20 times thinner than wide, seen edge-on
    (elevation 0) and from 30 degrees above its plane, at 128^2."""
    v, f = _sphere_mesh(4)
    v = v * np.array([1.6, 0.08, 1.6])
    out = []
    for el in (0.0, 30.0):
        fv = _screen(v[None], f[None], [30.0], elevation=el)
        out.append(Scene(f"flat ellipsoid {el:.0f} deg", fv, _tex(fv), 128, 1e-4))
    return out


def deform_start() -> Scene:
    """``softjax deform``'s template (642 vertices, 1,280 faces, scaled by 0.5) from its 24
    views at 64^2, sigma 1e-4: the first iteration of the demo."""
    v, f = _sphere_mesh(3)
    fv = _screen(v[None], f[None], np.arange(24) * 15.0)
    return Scene("deform start 24 views", fv, _tex(fv), 64, 1e-4)


def deform_target() -> Scene:
    """``softjax deform``'s built-in target (a rounded box with a bump, 5,120 faces) from its 24
    views at 64^2, sigma 1e-4 (the demo's settings)."""
    from softjax.tools.default_meshes import target_shape

    mesh = target_shape()
    az = np.arange(24) * 15.0
    fv = _screen(np.asarray(mesh.vertices), np.asarray(mesh.faces), az)
    return Scene("deform target 24 views", fv, _tex(fv), 64, 1e-4)


def recon_batch(batch: int = 64, views: int = 4) -> Scene:
    """The reconstruction training batch: ``batch`` template spheres (642 vertices, 1,280
    faces) with smooth random deformations, each from ``views`` azimuths, 64^2, sigma 1e-4."""
    v, f = _sphere_mesh(3)
    rng = np.random.default_rng(0)
    k = rng.normal(size=(batch, 3, 3))
    stretch = np.exp(0.4 * rng.normal(size=(batch, 1, 3)))
    bend = 0.15 * np.sin(v[None] @ k)
    verts = (v[None] + bend) * stretch
    verts = verts / np.abs(verts).max(axis=(1, 2), keepdims=True) * 0.5
    faces = np.broadcast_to(f, (batch,) + f.shape)
    fv = _screen(verts, faces, np.arange(views) * (360.0 / views))
    return Scene(f"recon batch {batch}x{views} views", fv, _tex(fv), 64, 1e-4)


def slivers(count: int = 2000, size: int = 128) -> Scene:
    """Long thin triangles: ``count`` slivers across most of the image, each about a pixel
    high, at random angles and depths."""
    rng = np.random.default_rng(1)
    centre = rng.uniform(-0.3, 0.3, (count, 1, 2))
    angle = rng.uniform(0, np.pi, (count, 1))
    d = np.stack([np.cos(angle), np.sin(angle)], -1)  # [count, 1, 2]
    n = np.stack([-np.sin(angle), np.cos(angle)], -1)
    half = rng.uniform(0.5, 0.9, (count, 1, 1))
    width = 2.0 / size
    xy = np.concatenate(
        [centre - half * d, centre + half * d, centre + 0.3 * half * d + width * n], axis=1
    )
    z = rng.uniform(2.0, 4.0, (count, 3, 1))
    fv = np.concatenate([xy, z], -1)[None].astype(np.float32)
    return Scene(f"slivers {count}", fv, _tex(fv), size, 1e-4)


def suite() -> list[Scene]:
    """Every scene of the geometry suite, cheapest first within each group."""
    scenes = [*spheres(), *flat_ellipsoid(), deform_start(), deform_target()]
    return [*scenes, recon_batch(), slivers()]


def _useful_and_floor(
    c: jax.Array, coarse: jax.Array, scene: Scene, tiles: tuple[int, int], dist_eps
):
    """Useful pairs of the faces ``c`` ``[K, 3, 3]`` (NaN rows: none) with every pixel, and the
    pixels of the tiles that hold at least one of each face's useful pixels: tiles of side
    ``tiles[1]`` for the faces ``coarse`` ``[K]`` marks, else ``tiles[0]``."""
    s = scene.image_size
    xs, ys = pixel_centers(s, c.dtype)
    face = jax.tree.map(lambda t: t[None], face_setup(c))  # [1, K, ...]
    terms = pair_terms(
        xs.reshape(-1, 1),
        ys.reshape(-1, 1),
        face,
        dist_func="euclidean",
        sigma_val=scene.sigma,
        dist_eps=dist_eps,
        gamma_val=1e-4,
        near=1.0,
        far=100.0,
        fill_back=True,
    )
    valid = terms.valid.reshape(s, s, -1)  # [S, S, K]
    floor = {}
    for t in set(tiles):
        n = -(-s // t)
        v = jnp.pad(valid, ((0, n * t - s), (0, n * t - s), (0, 0))).reshape(n, t, n, t, -1)
        floor[t] = t * t * jnp.sum(jnp.any(v, axis=(1, 3)), axis=(0, 1), dtype=jnp.int32)
    per_face = jnp.where(coarse, floor[tiles[1]], floor[tiles[0]])
    return jnp.sum(valid, dtype=jnp.int32), jnp.sum(per_face)


def pair_counts(scene: Scene, dist_eps: float = 1e-4, backend: str = "xla") -> dict:
    """Useful and candidate pair counts of a scene (euclidean distance), with the tiles the
    backend picks by default.

    Args:
      scene: the scene; dist_eps: the culling probability; backend: whose default tiles.

    Returns:
      ``useful``: (pixel, face) pairs that pass the ``dist_eps`` test; ``tile``: the tile size;
      ``coarse_tile`` and ``coarse_faces``: the coarse level's tile size and faces (0 and 0 when
      the call runs on one level, :func:`softjax.ops.binning.coarse_faces`); ``box_tiles``:
      (tile, face) pairs of the faces' grown bounding boxes; ``candidate_tiles``: those the
      edge-line culling keeps (what the passes evaluate); ``candidate_pixels``: their pixels;
      ``floor_pixels``: the pixels of the tiles (of each face's level) that hold at least one
      useful pixel of the face, the fewest candidates any culling of whole tiles can leave;
      ``window_pixels``: the (pixel, face) slots the forward evaluates, each tile's face list
      cut into windows of ``TilingConfig.window`` faces (the last one padded).
    """
    fv = jnp.asarray(scene.fv)
    b, f = fv.shape[:2]
    cfg = binning.resolve_tiling(binning.TilingConfig(), backend, scene.image_size, f)
    span = cfg.coarse_tile
    grid = binning.make_grid(scene.image_size, cfg.tile, b, f, span)
    face = face_setup(fv.reshape(-1, 3, 3))
    ft = binning.face_tiles(face, scene.sigma, dist_eps, grid, None, "euclidean")
    levels = [(grid, None)]
    coarse = np.zeros(b * f, bool)
    if span > cfg.tile:
        coarse = np.asarray(binning.coarse_faces(ft, grid))
        if coarse.any():
            coarse_grid = binning.make_grid(scene.image_size, span, b, f, span)
            levels = [(grid, jnp.asarray(~coarse)), (coarse_grid, jnp.asarray(coarse))]
    box = kept = pixels = windows = 0
    for g, faces in levels:
        ft = binning.face_tiles(face, scene.sigma, dist_eps, g, faces, "euclidean")
        box_l = int(ft.total)
        kept_pairs = functools.partial(binning.bin_pass, capacity=max(box_l, 1), grid=g)
        counted = jax.jit(functools.partial(_kept_and_windows, kept_pairs, g, cfg.window))
        kept_l, windows_l = (int(n) for n in counted(ft))
        box, kept, pixels = box + box_l, kept + kept_l, pixels + kept_l * g.tile_pixels
        windows += windows_l * cfg.window * g.tile_pixels
    chunk = max(1, (1 << 22) // scene.image_size**2)  # about 4M pairs per step
    pad = -(b * f) % chunk
    flat = jnp.pad(fv.reshape(-1, 3, 3), ((0, pad), (0, 0), (0, 0)), constant_values=np.nan)
    marks = jnp.pad(jnp.asarray(coarse), (0, pad)).reshape(-1, chunk)
    two = len(levels) > 1
    tiles = (cfg.tile, span if two else cfg.tile)
    count = jax.jit(
        lambda x, m: jax.tree.map(
            jnp.sum,
            jax.lax.map(lambda a: _useful_and_floor(a[0], a[1], scene, tiles, dist_eps), (x, m)),
        )
    )
    useful, floor = count(flat.reshape(-1, chunk, 3, 3), marks)
    return {
        "useful": int(useful),
        "tile": cfg.tile,
        "coarse_tile": span if two else 0,
        "coarse_faces": int(coarse.sum()) if two else 0,
        "box_tiles": box,
        "candidate_tiles": kept,
        "candidate_pixels": pixels,
        "floor_pixels": int(floor),
        "window_pixels": windows,
    }


def _kept_and_windows(kept_pairs, grid: binning.TileGrid, window: int, ft):
    """The first pass's kept pairs, and the windows of ``window`` faces its tiles' lists fill:
    the forward's work items (it evaluates whole windows: a tile of 17 faces costs two windows
    of 16)."""
    bins = kept_pairs(ft, 0)
    size = binning.most_items(int(bins.faces.shape[0]), grid.num_tiles, window)
    return bins.pairs, binning.work_items(bins, grid, window, size).count


def tile_label(counts: dict) -> str:
    """``'2'``, or ``'2+8'`` when some faces go to coarse tiles (:func:`pair_counts`' dict)."""
    coarse = f"+{counts['coarse_tile']}" if counts["coarse_tile"] else ""
    return f"{counts['tile']}{coarse}"


# Untimed calls after the compile run: on the 2-core CPU the first few calls of a freshly
# compiled program ran up to 1.6x slower than the steady state (the 1,280-face sphere at 64^2:
# 9.6, 10.0, 10.5 ms, then 6.0-6.5 ms), which inflated the small scenes' figures.
WARMUP_CALLS = 5


def _timed_calls(scene: Scene, backend: str) -> dict:
    """``{'fwd': f, 'fwd_bwd': g}``: jitted calls of ``soft_rasterize`` on a scene (the
    backward: ``jax.grad`` of a fixed random weighting of the image w.r.t. the vertices and
    textures), each compiled and then run ``WARMUP_CALLS`` times untimed; ``f()`` runs one call
    to the end."""
    kw = dict(image_size=scene.image_size, sigma_val=scene.sigma, backend=backend)
    b, s = scene.fv.shape[0], scene.image_size
    weights = jnp.asarray(np.random.default_rng(0).normal(size=(b, s, s, 4)), jnp.float32)
    fwd = jax.jit(lambda v, t: sj.soft_rasterize(v, t, **kw))
    grad = jax.jit(jax.grad(lambda v, t: jnp.sum(sj.soft_rasterize(v, t, **kw) * weights), (0, 1)))
    fv, tex = jnp.asarray(scene.fv), jnp.asarray(scene.tex)
    calls = {"fwd": _runner(fwd, fv, tex), "fwd_bwd": _runner(grad, fv, tex)}
    for call in calls.values():
        for _ in range(1 + WARMUP_CALLS):
            call()
    return calls


def _runner(fn, *args):
    return lambda: jax.block_until_ready(fn(*args))


def _seconds(call, repeats: int) -> list[float]:
    import time

    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        call()
        times.append(time.perf_counter() - t0)
    return times


def time_scene(scene: Scene, repeats: int = 3, backend: str = "xla") -> dict:
    """Median forward and forward+backward milliseconds of ``soft_rasterize`` on a scene, after
    a compile run and ``WARMUP_CALLS`` untimed calls (:func:`_timed_calls`)."""
    calls = _timed_calls(scene, backend)
    return {f"{k}_ms": 1e3 * float(np.median(_seconds(c, repeats))) for k, c in calls.items()}


def time_interleaved(
    scenes: list[Scene], rounds: int, backend: str = "xla", calls_per_round: int = 3, log=print
) -> list[dict]:
    """The scenes timed in one process, round by round: each round runs every scene's forward
    and forward+backward ``calls_per_round`` times and keeps the fastest, so a slow spell of a
    shared machine falls on all the scenes of a round alike rather than on whichever scene ran
    then. Returns per scene ``{'fwd_ms', 'fwd_bwd_ms'}`` (medians over the rounds) and
    ``'rounds_fwd_bwd_ms'`` (the round's figures, in order), from which ratios between scenes
    can be taken within each round."""
    all_calls = []
    for i, scene in enumerate(scenes):
        log(f"  compiling {i + 1}/{len(scenes)}: {scene.name}")
        all_calls.append(_timed_calls(scene, backend))
    per = [{"fwd": [], "fwd_bwd": []} for _ in scenes]
    for r in range(rounds):
        for calls, out in zip(all_calls, per, strict=True):
            for k, c in calls.items():
                out[k].append(1e3 * min(_seconds(c, calls_per_round)))
        log(f"  round {r + 1}/{rounds} done")
    return [
        {
            "fwd_ms": float(np.median(p["fwd"])),
            "fwd_bwd_ms": float(np.median(p["fwd_bwd"])),
            "rounds_fwd_bwd_ms": p["fwd_bwd"],
        }
        for p in per
    ]
