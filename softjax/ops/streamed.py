"""The streamed forward and backward shared by the tiled XLA path and the Pallas kernels.

This module owns everything both backends do alike: the per-face setup and tile ranges, the
loop over binning passes, the per-pixel state (init, finalize, what is saved), the backward's
constants, the scalar gradients and the ``custom_vjp``. A backend supplies only its per-pass
loops (:class:`Passes`). ``docs/pipeline.md`` describes the flow.
"""

from __future__ import annotations

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
) -> Context:
    """Tiling, per-face data and per-face tile ranges of one call (forward or backward); the
    padding faces of a padded batch (``face_counts``) overlap no tile."""
    bsz, nf = face_vertices.shape[:2]
    cfg = binning.resolve_tiling(cfg, passes.backend, opts.image_size, nf)
    grid = binning.make_grid(opts.image_size, cfg.tile, bsz, nf)
    fv = face_vertices.reshape(grid.num_faces, 3, 3)
    face = face_setup(fv)
    present = binning.face_present(face_counts, grid)
    ft = binning.face_tiles(
        face, scalars.sigma_val, scalars.dist_eps, grid, present, opts.dist_func
    )
    tex = _per_face(textures, grid.num_faces)
    capacity = binning.pair_capacity(cfg, grid, passes.backend)
    cfg = cfg._replace(group=cfg.group or binning.default_group(cfg, grid.num_tiles, capacity))
    ctx = Context(cfg, grid, capacity, fv, face, ft, tex, scalars, opts, None)
    return ctx._replace(extra=passes.setup(ctx))


def _forward(passes: Passes, face_vertices, textures, scalars, opts, cfg, face_counts):
    ctx = prepare(passes, face_vertices, textures, scalars, opts, cfg, face_counts)
    nf = binning.tile_faces_per_image(face_counts, ctx.grid, face_vertices.dtype)
    grid = ctx.grid
    rows = grid.num_tiles + int(passes.sentinel_tile)
    state = aggregate.init_state((rows, grid.tile_pixels), opts, scalars, face_vertices.dtype)
    # the first pass's bins are saved for the backward (usually the only pass): O(capacity)
    first = _bins(ctx, 0)
    state = jax.lax.fori_loop(
        0,
        binning.num_passes(ctx.ft, ctx.capacity),
        lambda p, st: passes.forward_pass(ctx, _bins(ctx, p, first), st),
        state,
    )
    if passes.sentinel_tile:
        state = jax.tree.map(lambda v: v[:-1], state)
    out = jnp.stack(aggregate.finalize(state, opts, nf), -1)  # [NT, P, 4]
    return binning.tiles_to_image(out, grid), (aggregate.saved_state(state), out, first)


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
    ctx = prepare(passes, face_vertices, textures, scalars, opts, cfg, face_counts)
    nf = binning.tile_faces_per_image(face_counts, ctx.grid, dtype)
    g = binning.image_to_tiles(g_image.astype(dtype), ctx.grid)  # [NT, P, 4]
    state, out, first = saved
    consts = aggregate.backward_consts(state, out, g, opts, nf)
    consts_p = consts
    if passes.sentinel_tile:
        consts_p = jax.tree.map(lambda v: jnp.concatenate([v, jnp.zeros_like(v[:1])], 0), consts)
    acc = jax.lax.fori_loop(
        0,
        binning.num_passes(ctx.ft, ctx.capacity),
        lambda p, acc: passes.backward_pass(ctx, consts_p, _bins(ctx, p, first), acc),
        passes.backward_init(ctx),
    )
    g_fv, g_tex, g_sc = passes.backward_result(ctx, acc)
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


def streamed_rasterizer(passes: Passes, doc: str) -> Callable:
    """The ``custom_vjp`` op of a streamed backend.

    Args:
      passes: the backend's per-pass loops.
      doc: the op's docstring.

    Returns:
      ``op(face_vertices, textures, scalars, opts, cfg, face_counts=None) -> [B, S, S, 4]``
      RGBA, differentiable with respect to ``face_vertices``, ``textures`` and ``scalars``
      (``opts`` and ``cfg`` are static; ``face_counts``, ``None`` or ``[B]`` int32, marks the
      padding faces of a padded batch).
    """

    @functools.partial(jax.custom_vjp, nondiff_argnums=(3, 4))
    def op(
        face_vertices,
        textures,
        scalars: Scalars,
        opts: StaticOptions,
        cfg: TilingConfig,
        face_counts=None,
    ):
        return _forward(passes, face_vertices, textures, scalars, opts, cfg, face_counts)[0]

    def fwd(face_vertices, textures, scalars, opts, cfg, face_counts=None):
        image, saved = _forward(passes, face_vertices, textures, scalars, opts, cfg, face_counts)
        return image, (face_vertices, textures, scalars, face_counts, saved)

    def bwd(opts, cfg, res, g):
        face_vertices, textures, scalars, face_counts, saved = res
        grads = _backward(
            passes, face_vertices, textures, scalars, opts, cfg, face_counts, saved, g
        )
        return grads + (None,)  # face_counts: integers, no cotangent

    op.defvjp(fwd, bwd)
    op.__doc__ = doc
    return op
