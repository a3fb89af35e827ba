"""Memory-bounded soft rasterization in plain XLA, with a hand-written ``custom_vjp``.

Faces are binned into screen tiles (:mod:`softjax.ops.binning`). Tiles are processed in groups
of ``group`` tiles (the busiest tiles first), and each group streams its faces in windows of
``window`` faces, so the largest live array is ``group * tile**2 * window`` pairs. Aggregation
over faces is online: a running maximum and sum for the softmax, a running ``sum log(1 - D)``
for the alpha product, the running nearest face for the hard modes.

The backward pass re-bins and streams the same windows. It uses the per-pixel aggregates saved
by the forward pass (softmax maximum and sum, the output colour, ``sum log(1 - D)``, nearest
face) to form, per window, a linear surrogate whose gradient with respect to the window's face
data is exactly that window's share of the true gradient; JAX differentiates the shared
per-(pixel, face) formulas of :mod:`softjax.ops.pixel_face` for that local step only. Memory
is ``O(B S^2 + B F + pair capacity + one window)`` in both passes.
"""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp

from softjax.ops import aggregate, binning
from softjax.ops.aggregate import mask_terms
from softjax.ops.options import Scalars, StaticOptions, terms_with_options
from softjax.ops.pixel_face import FaceData, face_color, face_setup


class TilingConfig(NamedTuple):
    """Static performance knobs of the tiled path (0 = chosen automatically).

    Results do not depend on them (up to float rounding): any capacity is exact, pairs that do
    not fit are processed in further passes.
    """

    tile: int = 0  # pixels per tile side; auto: 8, or 4 for dense meshes (< 8 pixels per face)
    group: int = 0  # tiles processed together; auto: about 1024 pixels per step
    window: int = 16  # faces streamed per step
    capacity: int = 0  # (tile, face) pairs per binning pass; auto: 8 per face + 4 per tile


def resolve_tiling(cfg: TilingConfig, image_size: int, faces_per_image: int) -> TilingConfig:
    """Fills in the automatic fields of ``cfg`` for the given problem size."""
    tile = cfg.tile or (8 if image_size * image_size >= 8 * max(faces_per_image, 1) else 4)
    group = cfg.group or max(1, 1024 // (tile * tile))
    return cfg._replace(tile=tile, group=group, window=max(cfg.window, 1))


def _capacity(cfg: TilingConfig, grid: binning.TileGrid) -> int:
    if cfg.capacity > 0:
        return cfg.capacity
    return binning.default_capacity(grid)


_FLOAT_FIELDS = ("a", "b", "c", "x", "y", "z", "inv_z", "inv_len2")


def _float_fields(face: FaceData) -> tuple[jax.Array, ...]:
    return tuple(getattr(face, k) for k in _FLOAT_FIELDS)


def _gather_faces(fields, front, tex, fidx):
    """Face data of window ``fidx`` ([G, K], -1 = empty slot), shaped [G, 1, K, ...]."""
    safe = jnp.maximum(fidx, 0)
    g = [f[safe][:, None] for f in fields]
    face = FaceData(*g, front=front[safe][:, None])
    return face, tex[safe][:, None]


def _terms(px, py, face, sc: Scalars, opts: StaticOptions, fidx):
    terms = terms_with_options(px[..., None], py[..., None], face, opts, sc)
    return mask_terms(terms, (fidx >= 0)[:, None, :])


def _channels(colors):
    return tuple(colors[..., c] for c in range(colors.shape[-1]))


def _sweep(ft, grid, cfg, carry, window_fn, dtype):
    """Runs ``window_fn(carry, tiles, px, py, fidx)`` over every (tile group, face window)."""
    cap = _capacity(cfg, grid)
    g_size, k_size = cfg.group, cfg.window

    def pass_body(p, carry):
        bins = binning.bin_pass(ft, p, cap, grid, g_size)
        n_groups = (bins.active_tiles + g_size - 1) // g_size

        def group_body(gi, carry):
            tiles = jax.lax.dynamic_slice(bins.order, (gi * g_size,), (g_size,))
            tcount = bins.count[tiles]
            tstart = bins.start[tiles]
            px, py = binning.tile_pixel_coords(tiles, grid, dtype)
            n_win = (jnp.max(tcount) + k_size - 1) // k_size

            def win_body(w, carry):
                slot = w * k_size + jnp.arange(k_size, dtype=jnp.int32)
                ok = slot[None, :] < tcount[:, None]
                pos = jnp.clip(tstart[:, None] + slot[None, :], 0, cap - 1)
                fidx = jnp.where(ok, bins.faces[pos], -1)
                return window_fn(carry, tiles, px, py, fidx)

            return jax.lax.fori_loop(0, n_win, win_body, carry)

        return jax.lax.fori_loop(0, n_groups, group_body, carry)

    return jax.lax.fori_loop(0, binning.num_passes(ft, cap), pass_body, carry)


def _prepare(face_vertices, textures, sc: Scalars, opts: StaticOptions, cfg: TilingConfig):
    """Tiling, per-face data and per-face tile ranges shared by the forward and backward."""
    bsz, nf = face_vertices.shape[:2]
    cfg = resolve_tiling(cfg, opts.image_size, nf)
    grid = binning.make_grid(opts.image_size, cfg.tile, bsz, nf)
    fv = face_vertices.reshape(grid.num_faces, 3, 3)
    face = face_setup(fv)
    ft = binning.face_tiles(face, sc.sigma, sc.dist_eps, grid)
    tex = textures.reshape((grid.num_faces,) + textures.shape[2:])
    return cfg, grid, fv, face, ft, tex


def _forward(face_vertices, textures, sc: Scalars, opts: StaticOptions, cfg: TilingConfig):
    nf = face_vertices.shape[1]
    dtype = face_vertices.dtype
    cfg, grid, fv, face, ft, tex = _prepare(face_vertices, textures, sc, opts, cfg)
    fields = _float_fields(face)
    state = aggregate.init_state((grid.num_tiles + 1, grid.tile_pixels), opts, sc, dtype)

    def window_fn(state, tiles, px, py, fidx):
        face_g, tex_g = _gather_faces(fields, face.front, tex, fidx)
        t = _terms(px, py, face_g, sc, opts, fidx)
        st = {k: v[tiles] for k, v in state.items()}
        colors = _channels(face_color(t.w_clip, tex_g, opts.texture_type))  # 3 x [G, P, K]
        new = aggregate.update_state(st, t, colors, fidx[:, None, :], opts)
        return {k: state[k].at[tiles].set(new[k]) for k in state}

    state = _sweep(ft, grid, cfg, state, window_fn, dtype)
    state = {k: v[:-1] for k, v in state.items()}  # drop the sentinel tile
    out = jnp.stack(aggregate.finalize(state, opts, nf), -1)
    image = binning.tiles_to_image(out, grid)
    saved = {k: state[k] for k in aggregate.SAVED_KEYS if k in state}
    saved["out"] = out
    return image, saved


def _backward(face_vertices, textures, sc, opts, cfg, saved, g_image):
    nf = face_vertices.shape[1]
    dtype = face_vertices.dtype
    cfg, grid, fv, face, ft, tex = _prepare(face_vertices, textures, sc, opts, cfg)
    fields = _float_fields(face)

    g = binning.image_to_tiles(g_image.astype(dtype), grid)  # [NT, P, 4]
    consts = aggregate.backward_consts(saved, saved["out"], g, opts, nf)
    # one sentinel tile at the end, as in the forward state
    consts_s = {k: jnp.concatenate([v, jnp.zeros_like(v[:1])], 0) for k, v in consts.items()}

    diff_sc = (sc.sigma, sc.gamma, sc.near, sc.far)

    def surrogate(leaves, front_g, tiles, px, py, fidx):
        face_leaves, tex_g, scal = leaves
        face_g = FaceData(*face_leaves, front=front_g)
        s2 = sc._replace(sigma=scal[0], gamma=scal[1], near=scal[2], far=scal[3])
        t = _terms(px, py, face_g, s2, opts, fidx)
        c = {k: v[tiles] for k, v in consts_s.items()}
        colors = _channels(face_color(t.w_clip, tex_g, opts.texture_type))
        return aggregate.surrogate_total(t, colors, c, fidx[:, None, :], opts)

    grad_fn = jax.grad(surrogate)
    nfp = grid.num_faces + 1  # one sentinel face row for empty slots
    acc0 = (
        tuple(jnp.zeros((nfp,) + f.shape[1:], dtype) for f in fields),
        jnp.zeros((nfp,) + tex.shape[1:], dtype),
        tuple(jnp.zeros((), dtype) for _ in diff_sc),
    )

    def window_fn(acc, tiles, px, py, fidx):
        safe = jnp.maximum(fidx, 0)
        leaves = (tuple(f[safe][:, None] for f in fields), tex[safe][:, None], diff_sc)
        gl = grad_fn(leaves, face.front[safe][:, None], tiles, px, py, fidx)
        dst = jnp.where(fidx >= 0, fidx, grid.num_faces)
        g_fields = tuple(a.at[dst].add(d[:, 0]) for a, d in zip(acc[0], gl[0], strict=True))
        g_tex = acc[1].at[dst].add(gl[1][:, 0])
        g_sc = tuple(a + d for a, d in zip(acc[2], gl[2], strict=True))
        return g_fields, g_tex, g_sc

    g_fields, g_tex, g_sc = _sweep(ft, grid, cfg, acc0, window_fn, dtype)
    g_fields = tuple(f[:-1] for f in g_fields)
    g_fv = setup_vjp(fv, g_fields)
    g_scalars = aggregate.scalar_grads(g_sc, consts, sc, opts, dtype)
    return g_fv.reshape(face_vertices.shape), g_tex[:-1].reshape(textures.shape), g_scalars


def setup_vjp(fv: jax.Array, g_fields: tuple) -> jax.Array:
    """Back through the per-face setup (inverse matrix etc.): ``[N, 3, 3]`` vertex gradient
    from the gradients of the float fields of :class:`FaceData` (each ``[N, 3]``)."""
    _, vjp = jax.vjp(lambda v: _float_fields(face_setup(v)), fv)
    return vjp(tuple(g_fields))[0]


rasterize_tiled = aggregate.streamed_vjp(
    _forward,
    _backward,
    """Tiled soft rasterization; same arguments and result as the dense reference.

    Args:
      face_vertices: ``[B, F, 3, 3]`` float, F >= 1.
      textures: ``[B, F, T, 3]``.
      sc: :class:`Scalars` (``fill_back`` as a float 0/1 scalar).
      opts: :class:`StaticOptions`; cfg: :class:`TilingConfig`.

    Returns:
      ``[B, S, S, 4]`` RGBA.
    """,
)
