"""The tiled XLA backend: its per-pass loops for :mod:`softjax.ops.streamed`.

Each pass cuts every tile's face list into windows of ``window`` faces and runs ``group`` such
(tile, window) items per step, so every step is full whatever the tiles' loads; the largest
live array is ``group * tile**2 * window`` pairs. The backward's gradient is a sum over
(pixel, face) pairs, and only those the distance test keeps add to it: it tests the pixels of
``group * bwd_window`` of the pass's sorted pairs at a time (whatever their tiles), queues the
kept (pixel, face) pairs, and differentiates the shared surrogate over ``grad_pairs`` queued
pairs at a time, each with its own pixel and face, so that its cost follows the useful pairs
rather than the tiles' pixels.
UV textures are read with a gather from the ``[B, H, W, 3]`` images; the backward scatter-adds
the image's gradient to the texels each pair's bilinear taps read.
``docs/pipeline.md`` describes the flow, ``docs/gradients.md`` the backward.
"""

from __future__ import annotations

import itertools
import math

import jax
import jax.numpy as jnp

from softjax.ops import aggregate, binning, streamed
from softjax.ops.aggregate import mask_terms, terms_with_options
from softjax.ops.binning import TilingConfig
from softjax.ops.options import Scalars, StaticOptions, UVTexture
from softjax.ops.pixel_face import FaceData, corners, face_color, face_setup, uv_color

__all__ = ["TilingConfig", "rasterize_tiled", "setup_vjp"]

_FLOAT_FIELDS = ("a", "b", "c", "x", "y", "z", "inv_z", "inv_len2")
# the backward's pair test takes a distance threshold this much larger than the terms' (a
# superset of their pairs whatever the rounding; the terms mask the extra pairs out)
_LOOSE = 1.0 + 2.0**-8
_HARD_REACH = 2.0**-13
# the backward's rounds test about this many gradient steps' worth of pixels
_ROUND_STEPS = 4


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


def _terms(px, py, face, scalars: Scalars, opts: StaticOptions, fid):
    """Masked pair terms: ``px``, ``py`` and the face fields broadcast to the pairs, ``fid``
    the pairs' face ids (negative: an empty slot) broadcasting against them."""
    terms = terms_with_options(px, py, face, opts, scalars)
    return mask_terms(terms, fid >= 0)


def _channels(colors):
    return tuple(colors[..., c] for c in range(colors.shape[-1]))


def _colors(ctx: streamed.Context, t, face: FaceData, tex_g, fid, delta=None):
    """3 channel arrays shaped like the pairs: the colours, and for UV textures the bilinear
    taps (else ``None``). ``fid``: the pairs' face ids, broadcasting against the pairs (``[G,
    1, K]`` for a window, ``[M]`` for a list of pairs; negative: empty).

    ``delta`` (UV only, the backward): ``[4, *pairs, 3]`` zeros added to the texels each tap
    reads; the gradient with respect to it is the gradient with respect to those texels,
    which the backward scatter-adds into the image's gradient (differentiating with respect to
    the whole image instead would build an image-sized gradient per window).
    """
    opts = ctx.opts
    if opts.texture_type != "uv":
        return _channels(face_color(t.w_clip, tex_g, opts.texture_type)), None
    uvs, tint = tex_g  # per face [..., 3, 2], [..., 3]
    height, width = ctx.tex.image.shape[1:3]
    texels = ctx.tex.image.reshape(-1, 3)  # [B H W, 3]
    base = _image_index(ctx, fid) * height

    def fetch(tap, rows, cols):
        # one flat row index: XLA's CPU gather is several times faster than with (b, i, j);
        # the taps' indices are always in range
        texel = texels.at[(base + rows) * width + cols].get(mode="promise_in_bounds")
        if delta is not None:
            texel = texel + delta[tap]
        return _channels(texel)  # 3 x pairs

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


def _sweep(ctx: streamed.Context, bins: binning.Bins, carry, step_fn, k_size: int):
    """Runs ``step_fn(carry, tiles, px, py, fidx)`` over the work items of a binning pass, ``G``
    items (``tiles`` ``[G]``, face ids ``fidx`` ``[G, K]``, -1 = empty slot) per step."""
    grid, cap, g_size = ctx.grid, ctx.capacity, ctx.cfg.group
    size = binning.most_items(cap, grid.num_tiles, k_size) + g_size
    items = binning.work_items(bins, grid, k_size, size)
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


def _pair_slots(ctx: streamed.Context, bins: binning.Bins, si, k_size: int):
    """Step ``si`` of the pass's pairs in their sorted order, ``G * K`` pairs per step whatever
    tile each belongs to: ``(tiles, fidx)``, each ``[G, K]`` (-1 = empty slot, its tile the
    sentinel)."""
    g_size = ctx.cfg.group
    per_step = g_size * k_size
    slot = si * per_step + jnp.arange(per_step, dtype=jnp.int32).reshape(g_size, k_size)
    ok = slot < bins.pairs
    pos = jnp.minimum(slot, ctx.capacity - 1)
    return jnp.where(ok, bins.tile[pos], ctx.grid.num_tiles), jnp.where(ok, bins.faces[pos], -1)


def _forward_pass(ctx: streamed.Context, bins, state: aggregate.AggState) -> aggregate.AggState:
    opts = ctx.opts

    def step_fn(state, tiles, px, py, fidx):
        fields, front, tex_g = _gather(ctx, fidx)
        face = FaceData(*fields, front=front)
        t = _terms(px[..., None], py[..., None], face, ctx.scalars, opts, fidx[:, None, :])
        colors, _ = _colors(ctx, t, face, tex_g, fidx[:, None, :])  # 3 x [G, P, K]
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
    """What a pair reads of its pixel: a function from flat pixel ids (``tile * P + i``, any
    shape) to ``(px, py, consts)`` of that shape. The float values (centre x, centre y, the
    float constants) sit side by side in one ``[(NT + 1) P, C]`` table: one gather per step."""
    nt = ctx.grid.num_tiles
    xs, ys = binning.tile_pixel_coords(jnp.arange(nt + 1), ctx.grid, ctx.fv.dtype)
    leaves, treedef = jax.tree.flatten(consts)
    is_float = [jnp.issubdtype(v.dtype, jnp.floating) for v in leaves]
    cols = [xs, ys] + [v for v, f in zip(leaves, is_float, strict=True) if f]
    table = jnp.stack([v.reshape(-1) for v in cols], -1)

    def unpack(pix):
        rows = table[pix]
        px, py, rest = rows[..., 0], rows[..., 1], (rows[..., i] for i in range(2, len(cols)))
        out = [
            next(rest) if f else v.reshape(-1)[pix] for v, f in zip(leaves, is_float, strict=True)
        ]
        return px, py, jax.tree.unflatten(treedef, out)

    return unpack


def _kept_pairs(ctx: streamed.Context, tiles, fidx):
    """``[G, P, K]`` bool: which pixels of the slots ``(tiles, fidx)`` (``[G, K]``, -1 = empty)
    the backward evaluates. A superset of the pairs the terms keep (every pair that adds to
    the surrogate): the same test with a distance threshold ``_LOOSE`` times larger, so that
    the rounding of another fusion cannot drop a pair; ``'hard'`` faces (the closed triangle)
    are tested as barycentric ones within ``_HARD_REACH`` of it in weight."""
    fields, front, _ = _gather(ctx, fidx)
    face = FaceData(*fields, front=front)
    xs, ys = binning.tile_pixel_coords(tiles, ctx.grid, ctx.fv.dtype)  # [G, K, P]
    sc = ctx.scalars
    if ctx.opts.dist_func == "hard":  # threshold() = sigma * log(1 / dist_eps - 1)
        sigma = _HARD_REACH**2 / jnp.log(1.0 / sc.dist_eps - 1.0)
        opts = ctx.opts._replace(dist_func="barycentric")
    else:
        sigma, opts = sc.sigma_val * _LOOSE, ctx.opts
    t = terms_with_options(
        xs.swapaxes(1, 2), ys.swapaxes(1, 2), face, opts, sc._replace(sigma_val=sigma)
    )
    return t.valid & (fidx >= 0)[:, None, :]


def _push(queue, fill, kept, si):
    """Appends the kept pairs of step ``si`` (``kept``: ``[G, P, K]``) to ``queue`` (``[Q]``
    int32, ``fill`` entries used), each as ``slot * P + pixel`` (slot: the pair's position in
    the pass, pixel: its index in the tile); returns the queue and its new fill."""
    g, p, k = kept.shape
    slot = si * (g * k) + jnp.arange(g * k, dtype=jnp.int32).reshape(g, 1, k)
    entry = slot * p + jnp.arange(p, dtype=jnp.int32)[None, :, None]
    flat = kept.reshape(-1)
    at = fill + jnp.cumsum(flat.astype(jnp.int32)) - 1
    dst = jnp.where(flat, at, queue.shape[0])  # out of range: dropped
    return queue.at[dst].set(entry.reshape(-1), mode="drop"), at[-1] + 1


def _backward_pass(ctx: streamed.Context, consts: aggregate.BackwardConsts, bins, acc):
    opts, scalars = ctx.opts, ctx.scalars
    unpack = _pixel_table(ctx, consts)
    uv = isinstance(ctx.tex, UVTexture)
    size = ctx.cfg.grad_pairs

    def surrogate(leaves, front, c, px, py, fid):
        face_leaves, tex_g, scal, delta = leaves
        face = FaceData(*face_leaves, front=front)
        s2 = scalars._replace(sigma_val=scal[0], gamma_val=scal[1], near=scal[2], far=scal[3])
        t = _terms(px, py, face, s2, opts, fid)
        colors, taps = _colors(ctx, t, face, tex_g, fid, delta)
        total = aggregate.surrogate_total(t, colors, c, fid, opts)
        return total, None if taps is None else (taps.rows, taps.cols)

    grad_fn = jax.grad(surrogate, has_aux=True)

    p = ctx.grid.tile_pixels
    if ctx.capacity * p >= 2**31:
        raise ValueError(
            "the XLA path's backward numbers (pair, pixel) entries in int32: TilingConfig "
            f"capacity * tile**2 must be below 2**31, got {ctx.capacity} * {p}"
        )

    def grad_step(acc, entries, count):
        """Adds the gradients of the first ``count`` pairs of ``entries`` ([size])."""
        ok = jnp.arange(size) < count
        pos = jnp.where(ok, entries // p, 0)
        fid = jnp.where(ok, bins.faces[pos], -1)
        pix = jnp.where(ok, bins.tile[pos] * p + entries % p, 0)
        safe = jnp.maximum(fid, 0)
        fields = tuple(f[safe] for f in ctx.extra)  # each [size, 3]
        tex_g = jax.tree.map(lambda t: t[safe], _tex_per_face(ctx.tex))
        px, py, c = unpack(pix)  # [size]
        delta = jnp.zeros((4, size, 3), ctx.fv.dtype) if uv else None
        leaves = (fields, tex_g, _diff_scalars(scalars), delta)
        gl, taps = grad_fn(leaves, ctx.face.front[safe], c, px, py, fid)
        per_face = jax.tree.leaves((gl[0], gl[1]))  # each [size, ...]
        face_rows = jnp.concatenate([d.reshape(size, -1) for d in per_face], -1)
        g_face = acc[0].at[jnp.where(ok, fid, ctx.grid.num_faces)].add(face_rows)
        g_sc = tuple(a + d for a, d in zip(acc[1], gl[2], strict=True))
        g_image = acc[2]
        if uv:  # empty slots have a zero cotangent: adding it to image 0 changes nothing
            rows, cols = (jnp.stack(x) for x in taps)  # [4, size]
            height, width = ctx.tex.image.shape[1:3]
            flat = (_image_index(ctx, fid) * height + rows) * width + cols  # as _colors reads
            g_image = g_image.at[flat].add(gl[3], mode="promise_in_bounds")
        return g_face, g_sc, g_image

    k_size = ctx.cfg.bwd_window
    per_step = ctx.cfg.group * k_size * p  # pixels tested per step
    # pair-test steps per round, then the round's full gradient steps: rounds keep the calls
    # of a vmap in step (a queue drained whenever any call had a full step queued would run
    # every call's gradient step at each call's own times)
    rounds_steps = max(1, (_ROUND_STEPS * size) // per_step)
    steps = (bins.pairs + ctx.cfg.group * k_size - 1) // (ctx.cfg.group * k_size)
    rounds = (steps + rounds_steps - 1) // rounds_steps

    def test_step(si, carry):
        queue, fill = carry
        tiles, fidx = _pair_slots(ctx, bins, si, k_size)
        return _push(queue, fill, _kept_pairs(ctx, tiles, fidx), si)

    def round_(ri, carry):
        acc, queue, fill = carry
        first = ri * rounds_steps
        queue, fill = jax.lax.fori_loop(
            first, jnp.minimum(first + rounds_steps, steps), test_step, (queue, fill)
        )
        # full steps; after the last round, what is left too
        done = jnp.where(ri == rounds - 1, (fill + size - 1) // size, fill // size)

        def grad_at(j, acc):
            entries = jax.lax.dynamic_slice_in_dim(queue, j * size, size)
            return grad_step(acc, entries, jnp.minimum(fill - j * size, size))

        acc = jax.lax.fori_loop(0, done, grad_at, acc)
        rest = jax.lax.dynamic_slice_in_dim(
            jnp.concatenate([queue, jnp.zeros_like(queue)]), done * size, queue.shape[0]
        )
        return acc, rest, jnp.maximum(fill - done * size, 0)

    queue = jnp.zeros((size * (rounds_steps * per_step // size + 2),), jnp.int32)
    carry = (acc, queue, jnp.zeros((), jnp.int32))
    return jax.lax.fori_loop(0, rounds, round_, carry)[0]


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
