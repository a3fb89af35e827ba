"""The streamed forward and backward shared by the tiled XLA path and the Pallas kernels.

This module owns everything both backends do alike: the per-face setup and tile ranges, the
loop over binning passes, the per-pixel state (init, finalize, what is saved), the backward's
constants, the scalar gradients and the ``custom_vjp``. A backend supplies only its per-pass
loops (:class:`Passes`). ``docs/pipeline.md`` describes the flow.
"""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp

from softjax.ops import aggregate, binning
from softjax.ops.aggregate import AggState, BackwardConsts
from softjax.ops.binning import TilingConfig
from softjax.ops.options import Scalars, StaticOptions, UVTexture
from softjax.ops.pixel_face import FaceData, face_setup


class Context(NamedTuple):
    """What the passes of one forward or backward call work on."""

    cfg: TilingConfig  # automatic fields resolved (capacity: see ``capacity``)
    grid: binning.TileGrid
    capacity: int  # (tile, face) pairs per binning pass
    fv: jax.Array  # [N, 3, 3] face vertices, N = B * F
    face: FaceData  # per-face setup, fields [N, 3]
    ft: binning.FaceTiles  # the faces' tile ranges
    tex: Any  # [N, T, 3] textures, or a UVTexture: image [B, H, W, 3], per face [N, ...]
    scalars: Scalars
    opts: StaticOptions
    extra: Any  # the backend's own per-call data (:attr:`Passes.setup`)


class Passes(NamedTuple):
    """One backend's part of the streamed forward and backward.

    Attributes:
      backend: ``'xla'`` or ``'pallas'`` (selects the tiling defaults).
      sentinel_tile: whether the per-pixel arrays the passes read and write have one extra
        tile row at the end (a target for padded slots).
      setup: ``ctx -> extra``, per-call data computed once before the passes.
      forward_pass: ``(ctx, bins, state) -> state``, folds the faces of one pass (its
        :class:`~softjax.ops.binning.Bins`) into the :class:`~softjax.ops.aggregate.AggState`
        (arrays ``[tiles, tile**2]``).
      backward_init: ``ctx -> acc``, the gradient accumulators before any pass.
      backward_pass: ``(ctx, consts, bins, acc) -> acc``, adds one pass's gradients given the
        :class:`~softjax.ops.aggregate.BackwardConsts` (arrays ``[tiles, tile**2]``).
      backward_result: ``(ctx, acc) -> (g_fv [N, 3, 3], g_tex, g_sc)``: vertex and texture
        gradients (``g_tex`` shaped like ``ctx.tex``: ``[N, T, 3]``, or a ``UVTexture``) and
        the faces' share of ``(sigma_val, gamma_val, near, far)``.
    """

    backend: str
    sentinel_tile: bool
    setup: Callable[[Context], Any]
    forward_pass: Callable[[Context, binning.Bins, AggState], AggState]
    backward_init: Callable[[Context], Any]
    backward_pass: Callable[[Context, BackwardConsts, binning.Bins, Any], Any]
    backward_result: Callable[[Context, Any], tuple]


def prepare(
    passes: Passes, face_vertices, textures, scalars: Scalars, opts: StaticOptions, cfg, face_counts
) -> tuple[Context, ...]:
    """Tiling, per-face data and per-face tile ranges of one call (forward or backward): one
    :class:`Context` per level of tiles, the fine tiles first, then (when ``coarse_tile`` is
    larger than ``tile``) the coarse tiles of the faces with large grown boxes
    (:func:`binning.coarse_faces`). Both levels cover the same padded pixels. The padding faces
    of a padded batch (``face_counts``) overlap no tile."""
    bsz, nf = face_vertices.shape[:2]
    cfg = binning.resolve_tiling(cfg, passes.backend, opts.image_size, nf)
    span = cfg.coarse_tile
    fv = face_vertices.reshape(bsz * nf, 3, 3)
    face = face_setup(fv)
    tex = _per_face(textures, bsz * nf)
    present = binning.face_present(face_counts, binning.make_grid(opts.image_size, 1, bsz, nf))

    def level(tile: int, faces) -> Context:
        grid = binning.make_grid(opts.image_size, tile, bsz, nf, span)
        ft = binning.face_tiles(
            face, scalars.sigma_val, scalars.dist_eps, grid, faces, opts.dist_func
        )
        cfg_l = cfg._replace(tile=tile)
        capacity = binning.pair_capacity(cfg_l, grid, passes.backend)
        cfg_l = cfg_l._replace(
            group=cfg.group or binning.default_group(cfg_l, grid.num_tiles, capacity)
        )
        return Context(cfg_l, grid, capacity, fv, face, ft, tex, scalars, opts, None)

    fine = level(cfg.tile, present)
    levels = [fine]
    if span > cfg.tile:
        coarse = binning.coarse_faces(fine.ft, fine.grid)
        big = coarse if present is None else present & coarse
        levels = [fine._replace(ft=binning.keep_faces(fine.ft, ~coarse)), level(span, big)]
    extra = passes.setup(levels[0])  # per face: the same for every level
    return tuple(ctx._replace(extra=extra) for ctx in levels)


def _with_sentinel(x: jax.Array, passes: Passes, fill) -> jax.Array:
    """Per-tile arrays with the backend's sentinel row appended, filled with ``fill`` (any value:
    the row is only a target for padded slots)."""
    if not passes.sentinel_tile:
        return x
    return jnp.concatenate([x, jnp.full_like(x[:1], fill)], 0)


def _without_sentinel(x: jax.Array, passes: Passes) -> jax.Array:
    return x[:-1] if passes.sentinel_tile else x


def _relayout(tree, passes: Passes, src: Context, dst: Context, fill=0):
    """Per-pixel arrays (a pytree, sentinel rows included) from ``src``'s tiles to ``dst``'s."""
    if src.grid.tile == dst.grid.tile:
        return tree
    return jax.tree.map(
        lambda v: _with_sentinel(
            binning.relayout(_without_sentinel(v, passes), src.grid, dst.grid), passes, fill
        ),
        tree,
    )


def _forward(passes: Passes, face_vertices, textures, scalars, opts, cfg, face_counts):
    levels = prepare(passes, face_vertices, textures, scalars, opts, cfg, face_counts)
    fine = levels[0]
    rows = fine.grid.num_tiles + int(passes.sentinel_tile)
    state = aggregate.init_state((rows, fine.grid.tile_pixels), opts, scalars, face_vertices.dtype)
    firsts = []
    for i, ctx in enumerate(levels):  # a level's faces follow the previous level's in each pixel

        def run(state, ctx=ctx):
            state = _relayout(state, passes, fine, ctx)
            # the first pass's bins are saved for the backward (usually the only pass)
            first = _bins(ctx, 0)
            state = jax.lax.fori_loop(
                0,
                binning.num_passes(ctx.ft, ctx.capacity),
                lambda p, st: passes.forward_pass(ctx, _bins(ctx, p, first), st),
                state,
            )
            return _relayout(state, passes, ctx, fine), first

        state, first = _unless_empty(i, ctx, run, state, functools.partial(_empty_bins, ctx))
        firsts.append(first)
    state = jax.tree.map(lambda v: _without_sentinel(v, passes), state)
    nf = binning.tile_faces_per_image(face_counts, fine.grid, face_vertices.dtype)
    out = jnp.stack(aggregate.finalize(state, opts, nf), -1)  # [NT, P, 4]
    saved = (aggregate.saved_state(state), out, tuple(firsts))
    return binning.tiles_to_image(out, fine.grid), saved


def _unless_empty(level: int, ctx: Context, run, carry, empty_extra=None):
    """``run(carry)`` for the fine level (``level`` 0); for the coarse level only when it holds
    pairs (most meshes have no face that large), else ``carry`` unchanged (and
    ``empty_extra()``)."""
    if level == 0:
        return run(carry)
    if empty_extra is None:
        return jax.lax.cond(ctx.ft.total > 0, run, lambda c: c, carry)
    return jax.lax.cond(ctx.ft.total > 0, run, lambda c: (c, empty_extra()), carry)


def _empty_bins(ctx: Context) -> binning.Bins:
    shapes = jax.eval_shape(lambda: _bins(ctx, 0))
    return jax.tree.map(lambda s: jnp.zeros(s.shape, s.dtype), shapes)


def _bins(ctx: Context, p, first: binning.Bins | None = None) -> binning.Bins:
    """The bins of pass ``p``; ``first``, those of pass 0, are reused rather than sorted again
    (a branch, not a separate call: each backend's kernels keep one call site)."""
    if first is None:
        return binning.bin_pass(ctx.ft, p, ctx.capacity, ctx.grid)
    return jax.lax.cond(p == 0, lambda: first, lambda: _bins(ctx, p))


def _backward(
    passes: Passes, face_vertices, textures, scalars, opts, cfg, face_counts, saved, g_image
):
    dtype = face_vertices.dtype
    levels = prepare(passes, face_vertices, textures, scalars, opts, cfg, face_counts)
    fine = levels[0]
    nf = binning.tile_faces_per_image(face_counts, fine.grid, dtype)
    g = binning.image_to_tiles(g_image.astype(dtype), fine.grid)  # [NT, P, 4]
    state, out, firsts = saved
    consts = aggregate.backward_consts(state, out, g, opts, nf)
    consts_fine = jax.tree.map(lambda v: _with_sentinel(v, passes, 0), consts)
    acc = passes.backward_init(fine)
    firsts = firsts or (None,) * len(levels)  # None: bin again
    for i, (ctx, first) in enumerate(zip(levels, firsts, strict=True)):

        def run(acc, ctx=ctx, first=first):
            consts_p = _relayout(consts_fine, passes, fine, ctx)
            return jax.lax.fori_loop(
                0,
                binning.num_passes(ctx.ft, ctx.capacity),
                lambda p, acc: passes.backward_pass(ctx, consts_p, _bins(ctx, p, first), acc),
                acc,
            )

        acc = _unless_empty(i, ctx, run, acc)
    g_fv, g_tex, g_sc = passes.backward_result(levels[0], acc)
    g_scalars = aggregate.scalar_grads(tuple(g_sc), consts, scalars, opts, dtype)
    g_tex = jax.tree.map(lambda g, t: g.reshape(t.shape), g_tex, textures)
    return g_fv.reshape(face_vertices.shape), g_tex, g_scalars


def _per_face(textures, num_faces: int):
    """Textures with the (batch, face) axes flattened to one face axis; a UV texture's image
    stays ``[B, H, W, 3]`` (it is per mesh, not per face)."""
    if isinstance(textures, UVTexture):
        return textures._replace(
            face_uvs=textures.face_uvs.reshape(num_faces, 3, 2),
            face_tint=textures.face_tint.reshape(num_faces, 3),
        )
    return textures.reshape((num_faces,) + textures.shape[2:])


def _fold(x: jax.Array, batched: bool, axis_size: int) -> jax.Array:
    """``[A, X, ...]`` (or ``[X, ...]``, broadcast first when the ``vmap`` does not map it)
    -> ``[A * X, ...]``."""
    x = x if batched else jnp.broadcast_to(x, (axis_size,) + x.shape)
    return x.reshape((-1,) + x.shape[2:])


def _axes(in_batched) -> tuple:
    """``jax.vmap``'s ``in_axes`` from a ``custom_vmap`` rule's ``in_batched``."""
    return tuple(jax.tree.map(lambda b: 0 if b else None, b) for b in in_batched)


def _unfold(x: jax.Array, axis_size: int) -> jax.Array:
    """``[A * X, ...]`` -> ``[A, X, ...]``."""
    return x.reshape((axis_size, x.shape[0] // axis_size) + x.shape[1:])


@jax.tree_util.register_static
@dataclasses.dataclass(frozen=True)
class _Flag:
    """A static bool in a ``custom_vjp``'s residuals (part of their tree, not a leaf)."""

    value: bool


def streamed_rasterizer(passes: Passes, doc: str) -> Callable:
    """The ``custom_vjp`` op of a streamed backend.

    Under ``jax.vmap`` (of the op, of its gradient, or both) the forward and the backward run
    once on the ``vmap``'s images folded into the batch, unless the scalars differ per element:
    one call on ``A * B`` images costs about half of ``A`` calls on ``B`` images under a plain
    ``vmap`` (the loops' fixed costs and step counts are paid once). The folded forward's
    per-pixel state is image-major, so each element keeps its own share; its bins are not
    (their capacity is the whole batch's), so the folded backward bins again. The folded
    backward's scalar gradients sum over the elements: where the scalars are differentiated
    (the ``custom_vjp``'s symbolic zeros tell), each element's own come from a plain ``vmap``
    of the backward beside the folded one. A single call's pullback mapped over cotangents
    (``jax.jacrev``) is a plain ``vmap`` too.

    Args:
      passes: the backend's per-pass loops.
      doc: the op's docstring.

    Returns:
      ``op(face_vertices, textures, scalars, opts, cfg, face_counts=None) -> [B, S, S, 4]``
      RGBA, differentiable with respect to ``face_vertices``, ``textures`` and ``scalars``
      (``opts`` and ``cfg`` are static; ``face_counts``, ``None`` or ``[B]`` int32, marks the
      padding faces of a padded batch).
    """

    def fallback(raw, in_batched, args):
        out = jax.vmap(raw, in_axes=_axes(in_batched))(*args)
        return out, jax.tree.map(lambda _: True, out)

    def folded_args(axis_size, in_batched, args):
        """The op's arguments with the batch-leading ones (face vertices, textures, face
        counts) folded; the scalars as they are."""

        def fold(i):
            return jax.tree.map(lambda x, b: _fold(x, b, axis_size), args[i], in_batched[i])

        return fold(0), fold(1), args[2], fold(3)

    def forward(opts, cfg, with_saved: bool):
        def raw(face_vertices, textures, scalars, face_counts):
            out = _forward(passes, face_vertices, textures, scalars, opts, cfg, face_counts)
            return out if with_saved else out[0]

        @jax.custom_batching.custom_vmap
        def folded(face_vertices, textures, scalars, face_counts):
            return raw(face_vertices, textures, scalars, face_counts)

        @folded.def_vmap
        def rule(axis_size, in_batched, *args):
            # per-element scalars; or nothing to fold (the passes need at least one image)
            if any(jax.tree.leaves(in_batched[2])) or axis_size * args[0].shape[-4] == 0:
                return fallback(raw, in_batched, args)
            out = folded(*folded_args(axis_size, in_batched, args))
            if not with_saved:
                return _unfold(out, axis_size), True
            image, (state, rgba, _) = out
            # each element's share of the per-pixel state (image-major); the bins: placeholders
            # of a single call's shapes, never read (the folded backward bins again)
            single = jax.tree.map(
                lambda x, b: jax.ShapeDtypeStruct(x.shape[1:] if b else x.shape, x.dtype),
                list(args),
                in_batched,
            )
            firsts = jax.tree.map(
                lambda s: jnp.zeros(s.shape, s.dtype), jax.eval_shape(raw, *single)[1][2]
            )
            state = jax.tree.map(lambda x: _unfold(x, axis_size), state)
            out = _unfold(image, axis_size), (state, _unfold(rgba, axis_size), firsts)
            every = jax.tree.map(lambda _: True, state)
            return out, (True, (every, True, jax.tree.map(lambda _: False, firsts)))

        return folded

    def backward(opts, cfg, scalar_grads: bool):
        def raw(face_vertices, textures, scalars, face_counts, saved, g):
            return _backward(
                passes, face_vertices, textures, scalars, opts, cfg, face_counts, saved, g
            )

        @jax.custom_batching.custom_vmap
        def folded(face_vertices, textures, scalars, face_counts, saved, g):
            return raw(face_vertices, textures, scalars, face_counts, saved, g)

        @folded.def_vmap
        def rule(axis_size, in_batched, *args):
            # the saved state is mapped when the forward was folded; not, e.g., when a single
            # call's pullback is mapped over cotangents (``jax.jacrev``): that one's bins hold
            empty = axis_size * args[0].shape[-4] == 0
            if any(jax.tree.leaves(in_batched[2])) or not in_batched[4][1] or empty:
                return fallback(raw, in_batched, args)
            state, rgba, _ = args[4]
            saved = (
                jax.tree.map(lambda x, b: _fold(x, b, axis_size), state, in_batched[4][0]),
                _fold(rgba, True, axis_size),
                None,  # bin again: the forward's bins were the folded batch's
            )
            g = _fold(args[5], in_batched[5], axis_size)
            g_fv, g_tex, _ = folded(*folded_args(axis_size, in_batched, args), saved, g)
            out = jax.tree.map(lambda x: _unfold(x, axis_size), (g_fv, g_tex))
            # the folded call's scalar gradients are the sum over the elements; where they are
            # differentiated, each element's own come from a plain vmap (bins of its own)
            if not scalar_grads:  # not differentiated: zeros, never read
                zeros = jax.tree.map(jnp.zeros_like, args[2])
                marks = jax.tree.map(lambda _: True, out) + (jax.tree.map(lambda _: False, zeros),)
                return out + (zeros,), marks
            unbinned = [*in_batched[:4], (in_batched[4][0], True, None), in_batched[5]]
            per_element = jax.vmap(raw, in_axes=_axes(unbinned))(
                *args[:4], (state, rgba, None), args[5]
            )[2]
            out = out + (per_element,)
            return out, jax.tree.map(lambda _: True, out)

        return folded

    @functools.partial(jax.custom_vjp, nondiff_argnums=(3, 4))
    def op(
        face_vertices,
        textures,
        scalars: Scalars,
        opts: StaticOptions,
        cfg: TilingConfig,
        face_counts=None,
    ):
        return forward(opts, cfg, False)(face_vertices, textures, scalars, face_counts)

    def fwd(face_vertices, textures, scalars, opts, cfg, face_counts=None):
        # symbolic zeros: each array leaf comes as (value, perturbed); whether any scalar is
        # differentiated decides whether a folded backward computes their per-element gradients
        wanted = _Flag(any(leaf.perturbed for leaf in jax.tree.leaves(scalars)))
        args = jax.custom_derivatives.custom_vjp_primal_tree_values(
            (face_vertices, textures, scalars, face_counts)
        )
        image, saved = forward(opts, cfg, True)(*args)
        return image, (*args, saved, wanted)

    def bwd(opts, cfg, res, g):
        *res, wanted = res
        if isinstance(g, jax.custom_derivatives.SymbolicZero):  # the image is not used
            g = jnp.zeros(g.shape, g.dtype)
        g_fv, g_tex, g_scalars = backward(opts, cfg, wanted.value)(*res, g)
        g_scalars = g_scalars if wanted.value else None  # None: zero
        return g_fv, g_tex, g_scalars, None  # face_counts: integers, no cotangent

    op.defvjp(fwd, bwd, symbolic_zeros=True)
    op.__doc__ = doc
    return op
