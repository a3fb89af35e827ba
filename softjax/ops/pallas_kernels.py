"""The Pallas (Triton) backend: its per-pass kernels for :mod:`softjax.ops.streamed`.

Each program streams up to ``PROGRAM_WINDOWS`` windows of one (image, pixel tile)'s binned
faces, with the per-pixel state of :mod:`softjax.ops.aggregate` as its loop carry; a busy tile's
list is cut over several programs (:func:`softjax.ops.binning.work_items`), whose states XLA
folds into the tile's (:func:`softjax.ops.aggregate.fold_rows`), so that no tile's load holds up
a launch. Before each launch XLA packs the pass's binned faces into a field-major table so that
a window is a contiguous slice (no gather in the kernel). The backward kernel writes one partial
gradient per (tile, face) pair, summed per face by XLA. UV textures: the kernels gather texels
from the flattened images (a whole-array input), and the backward adds the images' gradient
atomically into a whole-array output (the texels a pair touches differ per pixel, so no per-slot
partial can hold it). The per-(pixel, face) math is :mod:`softjax.ops.pixel_face` (in the split
corner layout). ``docs/pipeline.md`` describes the flow and the block-size knobs,
``docs/gradients.md`` the backward.
"""

from __future__ import annotations

import functools
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from jax.experimental import pallas as pl

try:  # the Triton backend of Pallas (deprecated from JAX 0.11; may go in a later JAX)
    from jax.experimental.pallas import triton as plgpu
except ImportError as _error:  # pragma: no cover - depends on the installed JAX
    plgpu = None
    _PLGPU_ERROR = _error

from softjax.ops import aggregate, binning, streamed
from softjax.ops.aggregate import terms_with_options
from softjax.ops.binning import TilingConfig
from softjax.ops.options import Scalars, UVTexture
from softjax.ops.pixel_face import FaceData, face_color, face_setup, uv_color

# windows per program at most: a busier tile is split over several programs
PROGRAM_WINDOWS = 8
_DIFF_SCALARS = ("sigma_val", "gamma_val", "near", "far")  # scalars with per-pair partials
# the kernels' state buffers in this order (alpha, then colour): the layout the GPU check ran
_BUFFER_ORDER = ("log1m", "asum", "ahard", "zmax", "wsum", "acc", "zbest", "fbest", "rgb")

PallasConfig = TilingConfig  # the name the README documents: the same type, not a copy


def _is_pow2(v: int) -> bool:
    return v >= 1 and (v & (v - 1)) == 0


def kernel_config(cfg: TilingConfig | None) -> TilingConfig:
    """``cfg`` (``None``: the defaults) with the kernels' default ``tile`` and ``bwd_window``
    filled in, so that equal settings compare equal."""
    cfg = cfg or TilingConfig()
    filled = binning.resolve_tiling(cfg, "pallas", 1, 1)
    return cfg._replace(tile=filled.tile, bwd_window=filled.bwd_window)


def _check_config(cfg: TilingConfig) -> TilingConfig:
    filled = kernel_config(cfg)
    tile, bwd_window = filled.tile, filled.bwd_window
    if not all(_is_pow2(v) for v in (tile, cfg.window, bwd_window)):
        raise ValueError(
            "the Pallas kernels' tile, window and bwd_window (TilingConfig, alias PallasConfig) "
            f"must be powers of two, got {tile}, {cfg.window}, {bwd_window}"
        )
    if cfg.interpret is None:
        cfg = cfg._replace(interpret=jax.default_backend() != "gpu")
    return cfg


UV_OFFSET_LIMIT = 2**31  # the kernels address the flattened UV images with int32 offsets


class _UVStatic(NamedTuple):
    """What the kernels' code depends on for UV textures (static)."""

    height: int
    width: int
    wrap: str  # 'repeat' or 'clamp'
    interpret: bool  # how the backward adds into the image's gradient (see _scatter_add)


class _Table(NamedTuple):
    """Per-call data of the kernels (:attr:`streamed.Passes.setup`)."""

    table: jax.Array  # [9 + tex_rows, N + 1] per-face rows (last column: zeros, for padding)
    num_texels: int  # T of surface / vertex textures (0 for UV textures)
    tex_rows: int  # 3 T, or 9 for UV textures (u0 u1 u2 v0 v1 v2, then the tint's r g b)
    image: jax.Array | None  # UV textures: the images flattened, [B * H * W * 3], else None
    uv: _UVStatic | None


def _setup(ctx: streamed.Context) -> _Table:
    """The per-face data in the field-major table the kernels read."""
    n = ctx.grid.num_faces
    # rows: coordinate-major vertices (x0 x1 x2 y0 ...), then texel-major textures, or the
    # coordinate-major UVs (u0 u1 u2 v0 v1 v2) and the tint of UV textures
    coords = ctx.fv.transpose(2, 1, 0).reshape(9, -1)
    image = uv = None
    if isinstance(ctx.tex, UVTexture):
        uvs = ctx.tex.face_uvs.transpose(2, 1, 0).reshape(6, n)
        tex_rows = jnp.concatenate([uvs, ctx.tex.face_tint.T])
        image = ctx.tex.image.reshape(-1)  # texel (b, i, j) channel c at ((b H + i) W + j) 3 + c
        if image.size >= UV_OFFSET_LIMIT:
            raise ValueError(
                f"the Pallas kernels address the UV texture images with int32 offsets: "
                f"B * H * W * 3 = {image.size} must be below 2**31; use backend='xla'"
            )
        height, width = ctx.tex.image.shape[1:3]
        uv = _UVStatic(height, width, ctx.opts.uv_wrap, bool(ctx.cfg.interpret))
        num_texels = 0
    else:
        tex_rows = ctx.tex.reshape(n, -1).T
        num_texels = ctx.tex.shape[1]
    table = jnp.concatenate([coords, tex_rows])
    table = jnp.concatenate([table, jnp.zeros((table.shape[0], 1), table.dtype)], 1)
    return _Table(table, num_texels, tex_rows.shape[0], image, uv)


class _Programs(NamedTuple):
    """A pass's programs: each runs at most ``PROGRAM_WINDOWS`` windows of one tile's faces
    (:func:`binning.work_items`), so a tile of 500 faces is several programs side by side
    rather than one that the launch waits on."""

    rows: jax.Array  # [I] int32: each program's tile (NT: a program without faces)
    tile: jax.Array  # [I] int32: the same, clipped to a real tile (what the kernels read)
    start: jax.Array  # [I] int32: its first slot in the pass's pair list
    count: jax.Array  # [I] int32: its faces


def _programs(ctx: streamed.Context, bins: binning.Bins, k_size: int) -> _Programs:
    grid, per = ctx.grid, k_size * PROGRAM_WINDOWS
    size = binning.most_items(ctx.capacity, grid.num_tiles, per)
    items = binning.work_items(bins, grid, per, size)
    tile = jnp.minimum(items.tile, grid.num_tiles - 1)
    first = items.chunk * per
    real = items.tile < grid.num_tiles
    count = jnp.where(real, jnp.clip(bins.count[tile] - first, 0, per), 0)
    return _Programs(items.tile, tile, bins.start[tile] + jnp.where(real, first, 0), count)


def _pass_inputs(ctx: streamed.Context, bins: binning.Bins, k_size: int):
    """A pass's programs and gathered face data (padded by one window of ``k_size``):
    (programs, packed, fid, in_pass)."""
    cap, nf = ctx.capacity, ctx.grid.num_faces
    in_pass = jnp.arange(cap) < bins.pairs  # culled pairs are sorted past the pass's pairs
    fid = jnp.where(in_pass, bins.faces, nf)  # junk slots: the zero row
    fid = jnp.concatenate([fid, jnp.full((k_size,), nf, jnp.int32)])
    packed = ctx.extra.table[:, fid]  # [fields, cap + K]
    return _programs(ctx, bins, k_size), packed, fid.astype(jnp.int32), in_pass


def _scalar_vector(scalars: Scalars, dtype) -> jax.Array:
    v = [jnp.asarray(x, dtype) for x in scalars]
    return jnp.stack(v + [jnp.zeros((), dtype)] * (8 - len(v)))  # [8]


def _load_scalars(scal_ref) -> Scalars:
    return Scalars(*(scal_ref[i] for i in range(len(Scalars._fields))))


def _state_buffers(state: aggregate.AggState) -> list:
    """The state's arrays in the kernels' buffer order."""
    return [v for name in _BUFFER_ORDER for v in jax.tree.leaves(getattr(state, name))]


def _state_from_buffers(like: aggregate.AggState, buffers) -> aggregate.AggState:
    """The inverse of :func:`_state_buffers` for a state structured like ``like``."""
    it = iter(buffers)
    return aggregate.AggState(
        **{name: jax.tree.map(lambda _: next(it), getattr(like, name)) for name in _BUFFER_ORDER}
    )


def _tile_pixels(t, grid: binning.TileGrid, dtype):
    """Pixel centres ``[P, 1]`` of tile ``t``."""
    px, py = binning.tile_pixel_coords(t, grid, dtype)
    return px[:, None], py[:, None]


def _window(packed_ref, fid_ref, start, count, w, k_size: int):
    """Window ``w`` of the tile: its field rows (each ``[1, K]``), face ids and presence."""
    off = (start + w * k_size).astype(jnp.int32)
    slot = w * k_size + jnp.arange(k_size, dtype=jnp.int32)
    present = (slot < count)[None, :]
    rows = [
        packed_ref[np.int32(j), pl.ds(off, k_size)][None, :] for j in range(packed_ref.shape[0])
    ]
    fid = jnp.where(present, fid_ref[pl.ds(off, k_size)][None, :], -1)
    return off, present, rows, fid


def _face_data(v_rows) -> FaceData:
    """Split-layout :class:`FaceData` from the 9 vertex rows (each ``[1, K]``)."""
    return face_setup(tuple(tuple(v_rows[3 * i : 3 * i + 3]) for i in range(3)))


def _texels(tex_rows, num_texels: int):
    return [tuple(tex_rows[3 * t : 3 * t + 3]) for t in range(num_texels)]


def _image_base(t, grid: binning.TileGrid, uv: _UVStatic):
    """Offset of tile ``t``'s image in the flattened images: the tile (and every face binned to
    it) belongs to image ``t // (n * n)``."""
    b = t // (grid.n * grid.n)
    return (b * (uv.height * uv.width * 3)).astype(jnp.int32)


def _texel_offsets(base, rows, cols, uv: _UVStatic):
    """Flat offsets of channel 0 of the texels at ``rows`` / ``cols`` (in range)."""
    return base + (rows * uv.width + cols) * 3


def _colors(terms, face: FaceData, tex_rows, opts, num_texels: int, uv, image_ref, base, delta):
    """3 channel arrays ``[P, K]``: the window's colours, and for UV textures the bilinear taps
    (else ``None``).

    UV textures gather each tap's texels from ``image_ref`` (the flattened images; ``base``:
    this program's image). ``delta`` (the backward; else ``None``): 4 taps x 3 channels of
    ``[P, K]`` zeros added to the texels read, so that the gradient with respect to them is the
    gradient with respect to those texels (see :func:`_bwd_kernel`).
    """
    if uv is None:
        return face_color(terms.w_clip, _texels(tex_rows, num_texels), opts.texture_type), None

    def fetch(tap, rows, cols):
        off = _texel_offsets(base, rows, cols, uv)
        texel = tuple(image_ref[off + c] for c in range(3))
        if delta is not None:
            texel = tuple(texel[c] + delta[tap][c] for c in range(3))
        return texel

    uvs = (tuple(tex_rows[0:3]), tuple(tex_rows[3:6]))
    size = (uv.height, uv.width)
    return uv_color(
        terms.w_clip, face.inv_z, terms.depth, uvs, tuple(tex_rows[6:9]), fetch, size, uv.wrap
    )


def _scatter_add(ref, offsets, values, mask, interpret: bool):
    """``ref[offsets] += values`` where ``mask``, correct when offsets repeat, in every program.

    On a GPU an atomic add (``tt.atomic_rmw fadd``; masked lanes touch no memory). The Pallas
    interpreter's discharge of ``atomic_add`` with array offsets is a gather then a scatter-set
    (a repeated offset keeps one of its values) and takes no mask, so interpreted kernels use
    ``jax.ref.addupdate``, whose discharge is a scatter-add, with the masked values zeroed.
    """
    if interpret:
        jax.ref.addupdate(ref, offsets, jnp.where(mask, values, jnp.zeros_like(values)))
    else:
        plgpu.atomic_add(ref, offsets, values, mask=mask)


def _program_setup(scal_ref, tile_ref, start_ref, count_ref, packed_ref, grid: binning.TileGrid):
    """What both kernels start from: dtype, scalars, this program's tile, the tile's pixel
    centres, and the program's ``start`` / ``count`` in the pair list (:class:`_Programs`)."""
    i = pl.program_id(0)
    dtype = packed_ref.dtype
    t = tile_ref[i]
    px, py = _tile_pixels(t, grid, dtype)
    return dtype, _load_scalars(scal_ref), t, px, py, start_ref[i], count_ref[i]


def _fwd_kernel(
    scal_ref,
    tile_ref,
    start_ref,
    count_ref,
    packed_ref,
    fid_ref,
    *refs,
    opts,
    grid,
    like,
    k_size,
    num_texels,
    uv,
):
    """The state of this program's faces alone (XLA folds it into its tile's)."""
    del like
    setup = _program_setup(scal_ref, tile_ref, start_ref, count_ref, packed_ref, grid)
    dtype, scalars, t, px, py, start, count = setup
    image_ref = base = None
    out_refs = refs
    if uv is not None:  # the flattened images come first
        image_ref, out_refs = refs[0], refs[1:]
        base = _image_base(t, grid, uv)
    state0 = aggregate.empty_state((grid.tile_pixels,), opts, dtype)

    def body(w, st):
        _, present, rows, fid = _window(packed_ref, fid_ref, start, count, w, k_size)
        v_rows, tex_rows = rows[:9], rows[9:]
        face = _face_data(v_rows)
        terms = terms_with_options(px, py, face, opts, scalars)
        terms = aggregate.mask_terms(terms, present)
        colors, _ = _colors(terms, face, tex_rows, opts, num_texels, uv, image_ref, base, None)
        return aggregate.update_state(st, terms, colors, fid, opts)

    state = jax.lax.fori_loop(0, (count + k_size - 1) // k_size, body, state0)
    for r, v in zip(out_refs, _state_buffers(state), strict=True):
        r[...] = v


def _bwd_kernel(
    scal_ref,
    tile_ref,
    start_ref,
    count_ref,
    packed_ref,
    fid_ref,
    *refs,
    opts,
    grid,
    like,
    k_size,
    num_texels,
    uv,
):
    setup = _program_setup(scal_ref, tile_ref, start_ref, count_ref, packed_ref, grid)
    dtype, scalars, t, px, py, start, count = setup
    image_ref = base = g_image_ref = None
    if uv is not None:
        # inputs: the flattened images, then the images' gradient so far (aliased to the last
        # output, g_image_ref, which this kernel adds into)
        image_ref, refs, g_image_ref = refs[0], refs[2:-1], refs[-1]
        base = _image_base(t, grid, uv)
    const_refs, out_ref = refs[:-1], refs[-1]  # the constants: this program's tile's
    consts = jax.tree.unflatten(jax.tree.structure(like), [r[...] for r in const_refs])
    pk = (px.shape[0], k_size)

    def body(w, carry):
        off, present, rows, fid = _window(packed_ref, fid_ref, start, count, w, k_size)
        v_rows, tex_rows = rows[:9], rows[9:]
        scal_rows = [jnp.full((1, k_size), getattr(scalars, k), dtype) for k in _DIFF_SCALARS]
        # UV: the texels of each tap, as zeros to differentiate against (see _colors)
        delta = (
            ()
            if uv is None
            else tuple(tuple(jnp.zeros(pk, dtype) for _ in range(3)) for _ in range(4))
        )

        def surrogate(leaves):
            f_rows, t_rows, s_rows, d = leaves
            s2 = scalars._replace(**dict(zip(_DIFF_SCALARS, s_rows, strict=True)))
            face = _face_data(f_rows)
            terms = terms_with_options(px, py, face, opts, s2)
            terms = aggregate.mask_terms(terms, present)
            colors, taps = _colors(terms, face, t_rows, opts, num_texels, uv, image_ref, base, d)
            c = jax.tree.map(lambda v: v[..., None], consts)  # [P, 1]: one tile
            total = aggregate.surrogate_total(terms, colors, c, fid, opts)
            return total, None if taps is None else (taps.rows, taps.cols)

        grads, taps = jax.grad(surrogate, has_aux=True)((v_rows, tex_rows, scal_rows, delta))
        g_face, g_tex, g_sc, g_delta = grads
        for j, g in enumerate(list(g_face) + list(g_tex) + list(g_sc)):
            plgpu.store(out_ref.at[pl.ds(np.int32(j), 1), pl.ds(off, k_size)], g, mask=present)
        if uv is not None:
            # the images' gradient: each (pixel, face) pair adds to the 4 texels its taps read,
            # which differ per pixel (no per-slot partial can hold them): atomic adds, skipping
            # empty slots and zero cotangents (hidden faces in 'hard' colour, culled pairs)
            for t in range(4):
                texel = _texel_offsets(base, taps[0][t], taps[1][t], uv)
                for c in range(3):
                    g = g_delta[t][c]
                    _scatter_add(g_image_ref, texel + c, g, present & (g != 0), uv.interpret)
        return carry

    jax.lax.fori_loop(0, (count + k_size - 1) // k_size, body, 0)


def _call(kernel, inputs, n_whole: int, blocked_out, whole_out, grid, cfg, warps, aliases, name):
    """``pallas_call`` with one program per row of the blocked arrays: the first ``n_whole``
    inputs are whole arrays, the rest ``[I, P]`` blocked per program (``I``: the programs);
    outputs likewise (blocked ones first)."""
    p = grid.tile_pixels
    programs = inputs[1].shape[0]  # the programs' tiles (_Programs.tile)
    tile_spec = pl.BlockSpec((None, p), lambda i: (i, 0))
    whole = pl.no_block_spec
    in_specs = [whole] * n_whole + [tile_spec] * (len(inputs) - n_whole)
    out_specs = [tile_spec] * len(blocked_out) + [whole] * len(whole_out)
    return pl.pallas_call(
        kernel,
        out_shape=list(blocked_out) + list(whole_out),
        grid=(programs,),
        in_specs=in_specs,
        out_specs=out_specs,
        input_output_aliases=aliases,
        interpret=cfg.interpret,
        compiler_params=plgpu.CompilerParams(num_warps=warps, num_stages=cfg.num_stages),
        name=name,
    )(*inputs)


def _bind(kernel, ctx: streamed.Context, per_pixel, k_size: int):
    """``kernel`` with its static arguments: the structure of its per-pixel inputs
    (``per_pixel``: the state or the backward's constants) and the window size."""
    like = jax.tree.map(lambda v: jax.ShapeDtypeStruct(v.shape, v.dtype), per_pixel)
    return functools.partial(
        kernel,
        opts=ctx.opts,
        grid=ctx.grid,
        like=like,
        k_size=k_size,
        num_texels=ctx.extra.num_texels,
        uv=ctx.extra.uv,
    )


def _forward_pass(
    ctx: streamed.Context, bins: binning.Bins, state: aggregate.AggState
) -> aggregate.AggState:
    """One launch of the forward kernel (each program's faces on their own), then the
    programs' states folded into their tiles' (:func:`aggregate.fold_rows`)."""
    cfg, grid = ctx.cfg, ctx.grid
    kernel = _bind(_fwd_kernel, ctx, state, cfg.window)
    progs, packed, fid, _ = _pass_inputs(ctx, bins, cfg.window)
    n = progs.tile.shape[0]
    out_shapes = [
        jax.ShapeDtypeStruct((n, grid.tile_pixels), b.dtype) for b in _state_buffers(state)
    ]
    inputs = [_scalar_vector(ctx.scalars, ctx.fv.dtype), progs.tile, progs.start, progs.count]
    inputs += [packed, fid]
    if ctx.extra.uv is not None:
        inputs.append(ctx.extra.image)
    outs = _call(
        kernel, inputs, len(inputs), out_shapes, [], grid, cfg, cfg.num_warps, {}, "softras_fwd"
    )
    # programs without faces fold into row NT, past the state: dropped
    return aggregate.fold_rows(state, progs.rows, _state_from_buffers(state, outs), ctx.opts)


def _n_outputs(ctx: streamed.Context) -> tuple[int, int]:
    """Rows of the backward's partials: 9 vertex coordinates, then the texture rows (3 T
    texture values, or 6 UVs and 3 tint values), then one per differentiated scalar."""
    return 9, ctx.extra.tex_rows


def _backward_init(ctx: streamed.Context):
    """Per-face and scalar accumulators, and (UV textures; else ``None``) the flattened
    images' gradient."""
    n_face, n_tex = _n_outputs(ctx)
    dtype = ctx.fv.dtype
    image = ctx.extra.image
    return (
        jnp.zeros((ctx.grid.num_faces, n_face + n_tex), dtype),
        jnp.zeros((len(_DIFF_SCALARS),), dtype),
        None if image is None else jnp.zeros_like(image),
    )


def _backward_pass(
    ctx: streamed.Context, consts: aggregate.BackwardConsts, bins: binning.Bins, acc
):
    """One launch of the backward kernel and the per-face sums of its partials."""
    cfg, grid, cap = ctx.cfg, ctx.grid, ctx.capacity
    dtype = ctx.fv.dtype
    kernel = _bind(_bwd_kernel, ctx, consts, cfg.bwd_window)
    n_face, n_tex = _n_outputs(ctx)
    n_out = n_face + n_tex + len(_DIFF_SCALARS)
    out_shape = jax.ShapeDtypeStruct((n_out, cap + cfg.bwd_window), dtype)
    progs, packed, fid, in_pass = _pass_inputs(ctx, bins, cfg.bwd_window)
    scal = _scalar_vector(ctx.scalars, dtype)
    inputs = [scal, progs.tile, progs.start, progs.count, packed, fid]
    out_shapes, aliases = [out_shape], {}
    g_image = acc[2]
    if g_image is not None:  # the kernel adds into the gradient so far (aliased in and out)
        inputs += [ctx.extra.image, g_image]
        out_shapes.append(jax.ShapeDtypeStruct(g_image.shape, dtype))
        aliases = {len(inputs) - 1: 1}
    n_whole = len(inputs)
    part, *rest = _call(
        kernel,
        inputs + [v[progs.tile] for v in jax.tree.leaves(consts)],  # each program's tile's
        n_whole,
        [],
        out_shapes,
        grid,
        cfg,
        cfg.bwd_num_warps,
        aliases,
        "softras_bwd",
    )
    g_image = rest[0] if rest else None
    part = jnp.where(in_pass[None, :], part[:, :cap], 0.0)  # unwritten slots: junk
    # slots past the pass's pairs get an out-of-range id: the scatter drops them (one
    # sentinel row instead would serialise millions of atomic adds on a GPU)
    seg = jnp.where(in_pass, bins.faces, grid.num_faces)
    per_face = jax.ops.segment_sum(
        part[: n_face + n_tex].T, seg, num_segments=grid.num_faces, mode="drop"
    )
    return acc[0] + per_face, acc[1] + jnp.sum(part[n_face + n_tex :], 1), g_image


def _backward_result(ctx: streamed.Context, acc):
    per_face, g_sc, g_image = acc
    n_face = _n_outputs(ctx)[0]
    g_fv = per_face[:, :n_face].reshape(-1, 3, 3).transpose(0, 2, 1)  # [N, corner, coordinate]
    g_tex = per_face[:, n_face:]
    if g_image is not None:  # rows u0 u1 u2 v0 v1 v2, then the tint
        g_uvs = g_tex[:, :6].reshape(-1, 2, 3).transpose(0, 2, 1)  # [N, corner, (u, v)]
        g_tex = UVTexture(g_image.reshape(ctx.tex.image.shape), g_uvs, g_tex[:, 6:])
    return g_fv, g_tex, g_sc


# backend, sentinel_tile (programs without faces fold into no row), then the hooks
PASSES = streamed.Passes(
    "pallas", False, _setup, _forward_pass, _backward_init, _backward_pass, _backward_result
)

rasterize_pallas = streamed.streamed_rasterizer(
    PASSES,
    """Soft rasterization with the Pallas kernels; same arguments and result as the reference.

    Args:
      face_vertices: ``[B, F, 3, 3]`` float (float32 on GPUs), F >= 1.
      textures: ``[B, F, T, 3]`` of the same dtype, or a
        :class:`~softjax.ops.options.UVTexture` (``B * H * W * 3`` below ``2**31``).
      scalars: :class:`Scalars` (``fill_back`` as a float 0/1 scalar).
      opts: :class:`StaticOptions`.
      cfg: :class:`TilingConfig` (0 fields: the kernels' defaults; ``interpret`` resolved,
        see :func:`resolve_config`).
      face_counts: ``None`` or ``[B]`` int32, the real faces of each image of a padded batch.

    Returns:
      ``[B, S, S, 4]`` RGBA.
    """,
)


def pallas_available() -> bool:
    """Whether Pallas's Triton backend can be imported in this JAX."""
    return plgpu is not None


def resolve_config(cfg: TilingConfig | None) -> TilingConfig:
    """Checks ``cfg`` for the kernels (tile and windows powers of two) and fills in
    ``interpret`` (see :class:`TilingConfig`).

    Args:
      cfg: the caller's configuration; ``None``: the defaults.

    Returns:
      ``cfg`` with ``interpret`` a bool.

    Raises:
      RuntimeError: this JAX has no Triton backend for Pallas.
      ValueError: a block size is not a power of two.
    """
    if plgpu is None:
        raise RuntimeError(
            f"backend='pallas' needs Pallas's Triton backend, which this JAX ({jax.__version__}) "
            f"does not provide ({_PLGPU_ERROR}); use backend='xla'"
        )
    return _check_config(cfg or TilingConfig())
