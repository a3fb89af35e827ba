"""The tiled XLA backend: its per-pass loops for :mod:`softjax.ops.streamed`.

Each pass cuts every tile's face list into windows of ``window`` faces and runs ``group`` such
(tile, window) items per step, so every step is full whatever the tiles' loads; the largest
live array is ``group * tile**2 * window`` pairs. The backward takes ``jax.grad`` of the shared
surrogate over ``group * bwd_window`` of the pass's sorted pairs at a time, whatever their tiles
(the surrogate is a sum over pairs), so its steps are full even where the windows are not.
UV textures are read with a gather from the ``[B, H, W, 3]`` images; the backward scatter-adds
the image's gradient to the texels each pair's bilinear taps read.
``docs/pipeline.md`` describes the flow, ``docs/gradients.md`` the backward.
"""

from __future__ import annotations

import itertools
import math
from typing import NamedTuple

import jax
import jax.numpy as jnp

from softjax.ops import aggregate, binning, streamed
from softjax.ops.aggregate import mask_terms, terms_with_options
from softjax.ops.binning import TilingConfig
from softjax.ops.options import Scalars, StaticOptions, UVTexture
from softjax.ops.pixel_face import FaceData, corners, face_color, face_setup, uv_color

__all__ = ["TilingConfig", "rasterize_tiled", "setup_vjp"]

_FLOAT_FIELDS = ("a", "b", "c", "x", "y", "z", "inv_z", "inv_len2")


def _float_fields(face: FaceData) -> tuple[jax.Array, ...]:
    return tuple(getattr(face, k) for k in _FLOAT_FIELDS)


def _tex_per_face(tex):
    """The per-face texture data: ``[N, T, 3]``, or a UV texture's ``(face_uvs, face_tint)``
    (the image is per mesh)."""
    return (tex.face_uvs, tex.face_tint) if isinstance(tex, UVTexture) else tex


def _gather(ctx: streamed.Context, fidx):
    """Float fields, facing and per-face textures of window ``fidx`` ([G, K], -1 = empty
    slot), shaped [G, 1, K, ...]."""
    safe = jnp.maximum(fidx, 0)
    fields = tuple(f[safe][:, None] for f in ctx.extra)
    tex_g = jax.tree.map(lambda t: t[safe][:, None], _tex_per_face(ctx.tex))
    return fields, ctx.face.front[safe][:, None], tex_g


def _terms(px, py, face, scalars: Scalars, opts: StaticOptions, fidx):
    """Masked pair terms ``[G, P, K]``; ``px``, ``py``: ``[G, P, 1]`` (a tile per item) or
    ``[G, P, K]`` (a tile per slot)."""
    terms = terms_with_options(px, py, face, opts, scalars)
    return mask_terms(terms, (fidx >= 0)[:, None, :])


def _channels(colors):
    return tuple(colors[..., c] for c in range(colors.shape[-1]))


def _colors(ctx: streamed.Context, t, face: FaceData, tex_g, fidx, delta=None):
    """3 channel arrays ``[G, P, K]``: the window's colours, and for UV textures the bilinear
    taps (else ``None``).

    ``delta`` (UV only, the backward): ``[4, G, P, K, 3]`` zeros added to the texels each tap
    reads; the gradient with respect to it is the gradient with respect to those texels,
    which the backward scatter-adds into the image's gradient (differentiating with respect to
    the whole image instead would build an image-sized gradient per window).
    """
    opts = ctx.opts
    if opts.texture_type != "uv":
        return _channels(face_color(t.w_clip, tex_g, opts.texture_type)), None
    uvs, tint = tex_g  # [G, 1, K, 3, 2], [G, 1, K, 3]
    height, width = ctx.tex.image.shape[1:3]
    texels = ctx.tex.image.reshape(-1, 3)  # [B H W, 3]
    base = _image_index(ctx, fidx)[:, None, :] * height  # [G, 1, K]

    def fetch(tap, rows, cols):
        # one flat row index: XLA's CPU gather is several times faster than with (b, i, j);
        # the taps' indices are always in range
        texel = texels.at[(base + rows) * width + cols].get(mode="promise_in_bounds")
        if delta is not None:
            texel = texel + delta[tap]
        return _channels(texel)  # 3 x [G, P, K]

    return uv_color(
        t.w_clip,
        face.inv_z,
        t.depth,
        (uvs[..., 0], uvs[..., 1]),
        corners(tint),
        fetch,
        (height, width),
        opts.uv_wrap,
    )


def _image_index(ctx: streamed.Context, fidx):
    """The image (mesh) each face slot of ``fidx`` belongs to (empty slots: 0)."""
    return jnp.maximum(fidx, 0) // ctx.grid.faces_per_image


class _WorkItems(NamedTuple):
    """One binning pass cut into work items: item ``i`` is faces ``[chunk[i] * K, (chunk[i] + 1)
    * K)`` of tile ``tile[i]``'s list, items ordered by tile, then chunk (so by face id)."""

    tile: jax.Array  # [W + G] int32; the sentinel tile NT past the last item
    chunk: jax.Array  # [W + G] int32
    count: jax.Array  # scalar int32, the items of this pass


def _work_items(bins: binning.Bins, grid: binning.TileGrid, cap: int, k_size: int, g_size):
    """The pass's (tile, chunk) items: every step then holds ``G`` full windows whatever the
    tiles' loads (tiles visited in groups would each pay for the busiest tile of its group)."""
    nt = grid.num_tiles
    chunks = (bins.count[:nt] + k_size - 1) // k_size  # [NT]
    inclusive = binning.running(jnp.add, chunks.astype(jnp.int32))
    # every tile has at most one partial chunk: sum ceil(c / K) <= cap / K + NT
    size = -(-cap // k_size) + nt + g_size
    item = jnp.arange(size, dtype=jnp.int32)
    # each tile with items marks its first item, the sentinel NT the end, and a running maximum
    # spreads the marks (a binary search per item was a loop of 11 steps on a 1,024-tile call)
    first = inclusive - chunks
    at = jnp.concatenate([jnp.where(chunks > 0, first, size), inclusive[-1:]])  # size: dropped
    tile = binning.spread_marks(at, jnp.arange(nt + 1, dtype=jnp.int32), size)  # NT past the end
    first = first[jnp.minimum(tile, nt - 1)]
    return _WorkItems(tile, item - first, inclusive[-1])


def _sweep(ctx: streamed.Context, bins: binning.Bins, carry, step_fn, k_size: int):
    """Runs ``step_fn(carry, tiles, px, py, fidx)`` over the work items of a binning pass, ``G``
    items (``tiles`` ``[G]``, face ids ``fidx`` ``[G, K]``, -1 = empty slot) per step."""
    grid, cap, g_size = ctx.grid, ctx.capacity, ctx.cfg.group
    items = _work_items(bins, grid, cap, k_size, g_size)
    count = jnp.concatenate([bins.count[: grid.num_tiles], jnp.zeros((1,), jnp.int32)])
    start = jnp.concatenate([bins.start[: grid.num_tiles], jnp.zeros((1,), jnp.int32)])
    lanes = jnp.arange(k_size, dtype=jnp.int32)

    def step(si, carry):
        tiles = jax.lax.dynamic_slice(items.tile, (si * g_size,), (g_size,))
        chunk = jax.lax.dynamic_slice(items.chunk, (si * g_size,), (g_size,))
        slot = chunk[:, None] * k_size + lanes[None, :]
        ok = slot < count[tiles][:, None]  # the sentinel tile has no faces
        pos = jnp.clip(start[tiles][:, None] + slot, 0, cap - 1)
        fidx = jnp.where(ok, bins.faces[pos], -1)
        px, py = binning.tile_pixel_coords(tiles, grid, ctx.fv.dtype)
        return step_fn(carry, tiles, px, py, fidx)

    return jax.lax.fori_loop(0, (items.count + g_size - 1) // g_size, step, carry)


def _sweep_pairs(ctx: streamed.Context, bins: binning.Bins, carry, step_fn, k_size: int):
    """Runs ``step_fn(carry, tiles, fidx)`` over the pairs of a binning pass in their sorted
    order, ``G * K`` pairs per step whatever tile each belongs to: ``tiles`` and ``fidx``
    ``[G, K]`` (-1 = empty slot, its tile the sentinel).

    For the backward, whose surrogate is a sum over pairs: every step is full, where
    :func:`_sweep`'s windows are as full as the tiles' face counts allow (often two thirds)."""
    grid, cap, g_size = ctx.grid, ctx.capacity, ctx.cfg.group
    per_step = g_size * k_size
    slots = jnp.arange(per_step, dtype=jnp.int32).reshape(g_size, k_size)

    def step(si, carry):
        slot = si * per_step + slots
        ok = slot < bins.pairs
        pos = jnp.minimum(slot, cap - 1)
        fidx = jnp.where(ok, bins.faces[pos], -1)
        return step_fn(carry, jnp.where(ok, bins.tile[pos], grid.num_tiles), fidx)

    return jax.lax.fori_loop(0, (bins.pairs + per_step - 1) // per_step, step, carry)


def _forward_pass(ctx: streamed.Context, bins, state: aggregate.AggState) -> aggregate.AggState:
    opts = ctx.opts

    def step_fn(state, tiles, px, py, fidx):
        fields, front, tex_g = _gather(ctx, fidx)
        face = FaceData(*fields, front=front)
        t = _terms(px[..., None], py[..., None], face, ctx.scalars, opts, fidx)
        colors, _ = _colors(ctx, t, face, tex_g, fidx)  # 3 x [G, P, K]
        part = aggregate.window_state(t, colors, fidx[:, None, :], opts)
        # a tile may own several items of the step (padding items: the sentinel row)
        return aggregate.fold_rows(state, tiles, part, opts)

    return _sweep(ctx, bins, state, step_fn, ctx.cfg.window)


def _diff_scalars(scalars: Scalars) -> tuple:
    return (scalars.sigma_val, scalars.gamma_val, scalars.near, scalars.far)


def _face_grad_layout(ctx: streamed.Context):
    """The per-face values the backward differentiates (float fields, per-face textures) and
    their widths once flattened: the gradients of all of them accumulate in one ``[N + 1, C]``
    array, one scatter per step instead of one per field."""
    leaves, treedef = jax.tree.flatten((ctx.extra, _tex_per_face(ctx.tex)))
    widths = [math.prod(v.shape[1:]) for v in leaves]
    return leaves, treedef, widths


def _backward_init(ctx: streamed.Context):
    """The per-face gradients ``[N + 1, C]`` (a sentinel row for empty slots), the scalars'
    sums and (UV textures; else ``None``) the images' gradient ``[B H W, 3]``."""
    dtype = ctx.fv.dtype
    uv = isinstance(ctx.tex, UVTexture)
    _, _, widths = _face_grad_layout(ctx)
    return (
        jnp.zeros((ctx.grid.num_faces + 1, sum(widths)), dtype),
        tuple(jnp.zeros((), dtype) for _ in _diff_scalars(ctx.scalars)),
        jnp.zeros_like(ctx.tex.image).reshape(-1, 3) if uv else None,
    )


def _pixel_table(ctx: streamed.Context, consts: aggregate.BackwardConsts):
    """What a pair reads of its pixel, per tile: ``[NT + 1, P, C]`` float (centre x, centre y,
    the float constants), and a function from the rows gathered for ``[G, K]`` slots to
    ``(px, py, consts)`` laid out ``[G, P, K]``. One gather per step fetches all of it."""
    nt = ctx.grid.num_tiles
    xs, ys = binning.tile_pixel_coords(jnp.arange(nt + 1), ctx.grid, ctx.fv.dtype)
    leaves, treedef = jax.tree.flatten(consts)
    is_float = [jnp.issubdtype(v.dtype, jnp.floating) for v in leaves]
    table = jnp.stack([xs, ys] + [v for v, f in zip(leaves, is_float, strict=True) if f], -1)

    def unpack(tiles):
        cols = jnp.transpose(table[tiles], (3, 0, 2, 1))  # [C, G, P, K]
        px, py, rest = cols[0], cols[1], iter(cols[2:])
        out = [
            next(rest) if f else v[tiles].swapaxes(1, 2)
            for v, f in zip(leaves, is_float, strict=True)
        ]
        return px, py, jax.tree.unflatten(treedef, out)

    return unpack


def _backward_pass(ctx: streamed.Context, consts: aggregate.BackwardConsts, bins, acc):
    opts, scalars = ctx.opts, ctx.scalars
    unpack = _pixel_table(ctx, consts)

    def surrogate(leaves, front_g, c, px, py, fidx):
        face_leaves, tex_g, scal, delta = leaves
        face_g = FaceData(*face_leaves, front=front_g)
        s2 = scalars._replace(sigma_val=scal[0], gamma_val=scal[1], near=scal[2], far=scal[3])
        t = _terms(px, py, face_g, s2, opts, fidx)
        colors, taps = _colors(ctx, t, face_g, tex_g, fidx, delta)
        total = aggregate.surrogate_total(t, colors, c, fidx[:, None, :], opts)
        return total, None if taps is None else (taps.rows, taps.cols)

    grad_fn = jax.grad(surrogate, has_aux=True)
    uv = isinstance(ctx.tex, UVTexture)

    def step_fn(acc, tiles, fidx):
        fields, front, tex_g = _gather(ctx, fidx)
        px, py, c = unpack(tiles)  # [G, P, K]
        delta = None
        if uv:  # the texels the taps read (zeros): see _colors
            delta = jnp.zeros((4,) + px.shape + (3,), ctx.fv.dtype)
        g, k = fidx.shape
        p = px.shape[1]
        # Differentiating w.r.t. per-pixel copies and summing once afterwards is cheaper
        # than letting the gradient reduce each field over pixels separately.
        wide = jax.tree.map(lambda v: jnp.broadcast_to(v, (g, p) + v.shape[2:]), (fields, tex_g))
        leaves = (wide[0], wide[1], _diff_scalars(scalars), delta)
        gl, taps = grad_fn(leaves, front, c, px, py, fidx)
        per_face = jax.tree.leaves((gl[0], gl[1]))  # each [G, P, K, ...]
        face_rows = jnp.sum(
            jnp.concatenate([d.reshape(g, p, k, -1) for d in per_face], -1), axis=1
        )  # [G, K, C]
        dst = jnp.where(fidx >= 0, fidx, ctx.grid.num_faces)
        g_face = acc[0].at[dst].add(face_rows)
        g_sc = tuple(a + d for a, d in zip(acc[1], gl[2], strict=True))
        g_image = acc[2]
        if uv:  # empty slots have a zero cotangent: adding it to image 0 changes nothing
            rows, cols = (jnp.stack(x) for x in taps)  # [4, G, P, K]
            height, width = ctx.tex.image.shape[1:3]
            base = _image_index(ctx, fidx)[None, :, None, :] * height  # [1, G, 1, K]
            flat = (base + rows) * width + cols  # as _colors reads them
            g_image = g_image.at[flat].add(gl[3], mode="promise_in_bounds")
        return g_face, g_sc, g_image

    return _sweep_pairs(ctx, bins, acc, step_fn, ctx.cfg.bwd_window)


def _backward_result(ctx: streamed.Context, acc):
    g_face, g_sc, g_image = acc
    leaves, treedef, widths = _face_grad_layout(ctx)
    parts = jnp.split(g_face[:-1], list(itertools.accumulate(widths))[:-1], axis=1)
    g_fields, g_tex = jax.tree.unflatten(
        treedef, [p.reshape(v.shape) for p, v in zip(parts, leaves, strict=True)]
    )
    g_fv = setup_vjp(ctx.fv, tuple(g_fields))
    if g_image is not None:
        g_tex = UVTexture(g_image.reshape(ctx.tex.image.shape), *g_tex)
    return g_fv, g_tex, g_sc


def setup_vjp(fv: jax.Array, g_fields: tuple) -> jax.Array:
    """Back through the per-face setup (inverse matrix etc.): ``[N, 3, 3]`` vertex gradient
    from the gradients of the float fields of :class:`FaceData` (each ``[N, 3]``)."""
    _, vjp = jax.vjp(lambda v: _float_fields(face_setup(v)), fv)
    return vjp(tuple(g_fields))[0]


def _setup(ctx: streamed.Context) -> tuple[jax.Array, ...]:
    return _float_fields(ctx.face)


# backend, sentinel_tile (padded tiles of a group read and write an extra row), then the hooks
PASSES = streamed.Passes(
    "xla", True, _setup, _forward_pass, _backward_init, _backward_pass, _backward_result
)

rasterize_tiled = streamed.streamed_rasterizer(
    PASSES,
    """Tiled soft rasterization in XLA; same arguments and result as the dense reference.

    Args:
      face_vertices: ``[B, F, 3, 3]`` float, F >= 1.
      textures: ``[B, F, T, 3]``, or a :class:`~softjax.ops.options.UVTexture`.
      scalars: :class:`Scalars` (``fill_back`` as a float 0/1 scalar).
      opts: :class:`StaticOptions`.
      cfg: :class:`TilingConfig` (0 fields: the XLA path's defaults).
      face_counts: ``None`` or ``[B]`` int32, the real faces of each image of a padded batch.

    Returns:
      ``[B, S, S, 4]`` RGBA.
    """,
)
