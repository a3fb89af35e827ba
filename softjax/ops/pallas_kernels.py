"""Pallas (Triton-style GPU) kernels for soft rasterization, forward and backward.

Layout and schedule (both passes):

* The faces are binned into ``tile x tile`` pixel tiles exactly as for the XLA path
  (:mod:`softjax.ops.binning`): per binning *pass*, a fixed-capacity list of (tile, face) pairs
  sorted by tile, with ``start[t]`` / ``count[t]`` giving tile ``t``'s contiguous range. When the
  pairs do not fit the capacity, further passes process the rest (no face is ever dropped).
* Before each kernel launch XLA gathers the binned faces' data into a field-major
  ``[fields, capacity + K]`` array (``fields`` = the 9 vertex coordinates ``x0 x1 x2 y0 .. z2``,
  then ``3 T`` texture values), so the kernel never gathers: a window of ``K`` faces of a tile
  is one contiguous ``[start + w K, start + (w + 1) K)`` slice per field (coalesced loads). The
  per-face setup (:func:`~softjax.ops.pixel_face.face_setup`) is recomputed in the kernel on
  ``[1, K]`` vectors: cheaper than loading its 25 values per face.
* One program per (image, pixel tile): ``grid = (B * n * n,)``, ``P = tile**2`` pixels kept as
  ``[P]`` vectors, pair blocks ``[P, K]``. A ``fori_loop`` streams the tile's windows; the
  per-pixel state of :mod:`softjax.ops.aggregate` (online softmax maximum / sum / weighted
  colour, running ``sum log(1 - D)``, nearest face) is the loop carry, i.e. in registers.
  The kernel writes the raw state: it is both the image (after
  :func:`~softjax.ops.aggregate.finalize`) and the per-pixel aggregates the backward needs.
  Multi-pass: the state is read from and written back to the same buffers (aliased).
* Backward: the same grid and windows. Each window recomputes its pair terms and takes
  ``jax.grad`` of :func:`~softjax.ops.aggregate.surrogate_total` (built from the saved
  aggregates) with respect to the window's vertex coordinates and textures, in the kernel.
  The result is a per-(tile, face) *partial* gradient, stored with a masked store into that
  pair's own slot of a ``[outputs, capacity + K]`` array: every slot has exactly one writer,
  so there are no races and no atomics, and the kernel is deterministic. XLA then sums the
  partials per face (``segment_sum`` over the bin's face ids). Scalar gradients (sigma, gamma,
  near, far) are per-slot partials as well, summed in XLA. On a GPU XLA's scatter-add may use
  atomics (summation order not fixed); ``XLA_FLAGS=--xla_gpu_deterministic_ops=true`` makes it,
  and so the whole gradient, bit-reproducible. The partials cost one write per (tile, face)
  pair and field, about what atomics would, without contention on shared faces.
* Block sizes: the defaults (tile 8, forward window 16 with 4 warps, backward window 8 with 8
  warps) keep both kernels free of register spills when Triton compiles them for sm_90 (121
  and 233 registers per thread for euclidean / softmax / prod); the backward's in-kernel
  ``jax.grad`` keeps many values per pair alive, hence its smaller pair block per thread.

The per-(pixel, face) math is :mod:`softjax.ops.pixel_face` (called on block values in the
split corner layout), the aggregation :mod:`softjax.ops.aggregate`: nothing is re-derived here.

``PallasConfig.interpret`` runs the kernels with the Pallas interpreter (any platform, slow;
used by the CPU tests). ``None`` picks the interpreter exactly when the default backend is not
a GPU.
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

from softjax.ops import aggregate, binning
from softjax.ops.options import Scalars, StaticOptions, terms_with_options
from softjax.ops.pixel_face import FaceData, face_color, face_setup

_SCALAR_FIELDS = ("sigma", "gamma", "near", "far", "eps", "dist_eps", "fill_back")
_DIFF_SCALARS = ("sigma", "gamma", "near", "far")  # scalars that get per-pair partials


class PallasConfig(NamedTuple):
    """Static knobs of the Pallas kernels. Results do not depend on them (up to rounding).

    ``tile`` and ``window`` must be powers of two (Triton block shapes).
    """

    tile: int = 8  # pixels per tile side: P = tile**2 pixels per program
    window: int = 16  # faces streamed per step of the forward: pair blocks are [P, window]
    bwd_window: int = 8  # the same for the backward (which keeps more values per pair)
    capacity: int = 0  # (tile, face) pairs per binning pass; 0: 10 per face + 8 per tile
    num_warps: int = 4  # Triton warps per program of the forward
    bwd_num_warps: int = 8  # ... and of the backward
    num_stages: int = 1  # Triton software-pipelining stages
    interpret: bool | None = None  # None: the Pallas interpreter unless running on a GPU


def _is_pow2(v: int) -> bool:
    return v >= 1 and (v & (v - 1)) == 0


def _check_config(cfg: PallasConfig) -> PallasConfig:
    if not all(_is_pow2(v) for v in (cfg.tile, cfg.window, cfg.bwd_window)):
        raise ValueError(
            "PallasConfig.tile, .window and .bwd_window must be powers of two, got "
            f"{cfg.tile}, {cfg.window}, {cfg.bwd_window}"
        )
    if cfg.interpret is None:
        cfg = cfg._replace(interpret=jax.default_backend() != "gpu")
    return cfg


def _capacity(cfg: PallasConfig, grid: binning.TileGrid) -> int:
    """Pairs per binning pass: ``cfg.capacity``, or 10 per face + 8 per tile (4096 to 2**24).

    More generous than the XLA path's default: a GPU pays for a second pass (another sort and
    launch) more than for idle slots. E.g. 1024^2 x 38,720 faces at sigma 1e-5 with 8-pixel
    tiles makes ~443k pairs (auto: 518k); 256 x 64^2 x 1,280 faces ~1.07M (auto: 3.4M).
    """
    if cfg.capacity > 0:
        return cfg.capacity
    return int(min(max(10 * grid.num_faces + 8 * grid.num_tiles, 4096), 1 << 24))


class _Setup(NamedTuple):
    grid: binning.TileGrid
    cap: int
    ft: binning.FaceTiles
    table: jax.Array  # [9 + 3 T, N + 1] per-face rows (last column: zeros, for padding)
    num_texels: int


def _prepare(face_vertices, textures, sc: Scalars, opts: StaticOptions, cfg: PallasConfig):
    """Per-face data in the field-major table the kernels read, and the face tile ranges."""
    bsz, nf = face_vertices.shape[:2]
    grid = binning.make_grid(opts.image_size, cfg.tile, bsz, nf)
    fv = face_vertices.reshape(grid.num_faces, 3, 3)
    face = face_setup(fv)
    ft = binning.face_tiles(face, sc.sigma, sc.dist_eps, grid)
    tex = textures.reshape(grid.num_faces, -1, 3)
    # rows: coordinate-major vertices (x0 x1 x2 y0 ...), then texel-major textures
    coords = fv.transpose(2, 1, 0).reshape(9, -1)
    table = jnp.concatenate([coords, tex.reshape(grid.num_faces, -1).T])
    table = jnp.concatenate([table, jnp.zeros((table.shape[0], 1), table.dtype)], 1)
    return _Setup(grid, _capacity(cfg, grid), ft, table, tex.shape[1])


def _pass_inputs(s: _Setup, p, k_size: int):
    """Bins of pass ``p`` and the gathered face data (padded by one window of ``k_size``):
    (start, count, packed, fid, bins, in_pass)."""
    bins = binning.bin_pass(s.ft, p, s.cap, s.grid, 0)
    in_pass = jnp.arange(s.cap) < s.ft.total - p * s.cap
    fid = jnp.where(in_pass, bins.faces, s.grid.num_faces)  # junk slots: the zero row
    fid = jnp.concatenate([fid, jnp.full((k_size,), s.grid.num_faces, jnp.int32)])
    packed = s.table[:, fid]  # [fields, cap + K]
    return bins.start, bins.count, packed, fid.astype(jnp.int32), bins, in_pass


def _scalar_vector(sc: Scalars, dtype) -> jax.Array:
    v = [jnp.asarray(getattr(sc, k), dtype) for k in _SCALAR_FIELDS]
    return jnp.stack(v + [jnp.zeros((), dtype)] * (8 - len(v)))  # [8]


def _load_scalars(scal_ref) -> Scalars:
    return Scalars(*(scal_ref[i] for i in range(len(_SCALAR_FIELDS))))


def _tile_pixels(grid: binning.TileGrid, dtype):
    """Pixel centres ``[P, 1]`` of this program's tile."""
    px, py = binning.tile_pixel_coords(pl.program_id(0), grid, dtype)
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


def _program_setup(scal_ref, start_ref, count_ref, packed_ref, grid: binning.TileGrid):
    """What both kernels start from: dtype, scalars, this tile's pixel centres and its bin's
    ``start`` / ``count`` in the pair list."""
    t = pl.program_id(0)
    dtype = packed_ref.dtype
    px, py = _tile_pixels(grid, dtype)
    return dtype, _load_scalars(scal_ref), px, py, start_ref[t], count_ref[t]


def _fwd_kernel(
    scal_ref, start_ref, count_ref, packed_ref, fid_ref, *refs, opts, grid, keys, k_size, num_texels
):
    n = len(keys)
    in_refs, out_refs = refs[:n], refs[n:]
    setup = _program_setup(scal_ref, start_ref, count_ref, packed_ref, grid)
    dtype, sc, px, py, start, count = setup
    state0 = {k: r[...] for k, r in zip(keys, in_refs, strict=True)}

    def body(w, st):
        _, present, rows, fid = _window(packed_ref, fid_ref, start, count, w, k_size)
        v_rows, tex_rows = rows[:9], rows[9:]
        terms = terms_with_options(px, py, _face_data(v_rows), opts, sc)
        terms = aggregate.mask_terms(terms, present)
        colors = face_color(terms.w_clip, _texels(tex_rows, num_texels), opts.texture_type)
        return aggregate.update_state(st, terms, colors, fid, opts)

    state = jax.lax.fori_loop(0, (count + k_size - 1) // k_size, body, state0)
    for k, r in zip(keys, out_refs, strict=True):
        r[...] = state[k]


def _bwd_kernel(
    scal_ref, start_ref, count_ref, packed_ref, fid_ref, *refs, opts, grid, keys, k_size, num_texels
):
    n = len(keys)
    const_refs, (out_ref,) = refs[:n], refs[n:]
    setup = _program_setup(scal_ref, start_ref, count_ref, packed_ref, grid)
    dtype, sc, px, py, start, count = setup
    consts = {k: r[...] for k, r in zip(keys, const_refs, strict=True)}

    def body(w, carry):
        off, present, rows, fid = _window(packed_ref, fid_ref, start, count, w, k_size)
        v_rows, tex_rows = rows[:9], rows[9:]
        scal_rows = [jnp.full((1, k_size), getattr(sc, k), dtype) for k in _DIFF_SCALARS]

        def surrogate(leaves):
            f_rows, t_rows, s_rows = leaves
            s2 = sc._replace(**dict(zip(_DIFF_SCALARS, s_rows, strict=True)))
            terms = terms_with_options(px, py, _face_data(f_rows), opts, s2)
            terms = aggregate.mask_terms(terms, present)
            colors = face_color(terms.w_clip, _texels(t_rows, num_texels), opts.texture_type)
            return aggregate.surrogate_total(terms, colors, consts, fid, opts)

        g_face, g_tex, g_sc = jax.grad(surrogate)((v_rows, tex_rows, scal_rows))
        for j, g in enumerate(list(g_face) + list(g_tex) + list(g_sc)):
            plgpu.store(out_ref.at[pl.ds(np.int32(j), 1), pl.ds(off, k_size)], g, mask=present)
        return carry

    jax.lax.fori_loop(0, (count + k_size - 1) // k_size, body, 0)


def _call(kernel, inputs, n_whole: int, blocked_out, whole_out, grid, cfg, warps, aliases, name):
    """``pallas_call`` with one program per tile: the first ``n_whole`` inputs are whole arrays,
    the rest ``[NT, P]`` blocked per tile; outputs likewise (blocked ones first)."""
    p = grid.tile_pixels
    tile_spec = pl.BlockSpec((None, p), lambda t: (t, 0))
    whole = pl.no_block_spec
    in_specs = [whole] * n_whole + [tile_spec] * (len(inputs) - n_whole)
    out_specs = [tile_spec] * len(blocked_out) + [whole] * len(whole_out)
    return pl.pallas_call(
        kernel,
        out_shape=list(blocked_out) + list(whole_out),
        grid=(grid.num_tiles,),
        in_specs=in_specs,
        out_specs=out_specs,
        input_output_aliases=aliases,
        interpret=cfg.interpret,
        compiler_params=plgpu.CompilerParams(num_warps=warps, num_stages=cfg.num_stages),
        name=name,
    )(*inputs)


def _forward(face_vertices, textures, sc: Scalars, opts: StaticOptions, cfg: PallasConfig):
    nf = face_vertices.shape[1]
    dtype = face_vertices.dtype
    s = _prepare(face_vertices, textures, sc, opts, cfg)
    grid = s.grid
    state = aggregate.init_state((grid.num_tiles, grid.tile_pixels), opts, sc, dtype)
    keys = tuple(state)
    scal = _scalar_vector(sc, dtype)
    kernel = functools.partial(
        _fwd_kernel, opts=opts, grid=grid, keys=keys, k_size=cfg.window, num_texels=s.num_texels
    )
    out_shapes = [jax.ShapeDtypeStruct(state[k].shape, state[k].dtype) for k in keys]
    aliases = {5 + i: i for i in range(len(keys))}

    def pass_body(p, state):
        start, count, packed, fid, _, _ = _pass_inputs(s, p, cfg.window)
        inputs = [scal, start, count, packed, fid] + [state[k] for k in keys]
        outs = _call(
            kernel, inputs, 5, out_shapes, [], grid, cfg, cfg.num_warps, aliases, "softras_fwd"
        )
        return dict(zip(keys, outs, strict=True))

    state = jax.lax.fori_loop(0, binning.num_passes(s.ft, s.cap), pass_body, state)
    out = jnp.stack(aggregate.finalize(state, opts, nf), -1)  # [NT, P, 4]
    saved = {k: state[k] for k in aggregate.SAVED_KEYS if k in state}
    saved["out"] = out
    return binning.tiles_to_image(out, grid), saved


def _backward(face_vertices, textures, sc, opts, cfg, saved, g_image):
    nf = face_vertices.shape[1]
    dtype = face_vertices.dtype
    s = _prepare(face_vertices, textures, sc, opts, cfg)
    grid = s.grid
    g = binning.image_to_tiles(g_image.astype(dtype), grid)  # [NT, P, 4]
    consts = aggregate.backward_consts(saved, saved["out"], g, opts, nf)
    keys = tuple(consts)
    scal = _scalar_vector(sc, dtype)
    kernel = functools.partial(
        _bwd_kernel,
        opts=opts,
        grid=grid,
        keys=keys,
        k_size=cfg.bwd_window,
        num_texels=s.num_texels,
    )
    n_face = 9
    n_tex = 3 * s.num_texels
    n_out = n_face + n_tex + len(_DIFF_SCALARS)
    out_shape = jax.ShapeDtypeStruct((n_out, s.cap + cfg.bwd_window), dtype)

    def pass_body(p, acc):
        start, count, packed, fid, bins, in_pass = _pass_inputs(s, p, cfg.bwd_window)
        inputs = [scal, start, count, packed, fid] + [consts[k] for k in keys]
        (part,) = _call(
            kernel, inputs, 5, [], [out_shape], grid, cfg, cfg.bwd_num_warps, {}, "softras_bwd"
        )
        part = jnp.where(in_pass[None, :], part[:, : s.cap], 0.0)  # unwritten slots: junk
        # slots past the pass's pairs get an out-of-range id: the scatter drops them (one
        # sentinel row instead would serialise millions of atomic adds on a GPU)
        seg = jnp.where(in_pass, bins.faces, grid.num_faces)
        per_face = jax.ops.segment_sum(
            part[: n_face + n_tex].T, seg, num_segments=grid.num_faces, mode="drop"
        )
        return acc[0] + per_face, acc[1] + jnp.sum(part[n_face + n_tex :], 1)

    acc0 = (
        jnp.zeros((grid.num_faces, n_face + n_tex), dtype),
        jnp.zeros((len(_DIFF_SCALARS),), dtype),
    )
    per_face, g_sc = jax.lax.fori_loop(0, binning.num_passes(s.ft, s.cap), pass_body, acc0)
    g_fv = per_face[:, :9].reshape(-1, 3, 3).transpose(0, 2, 1)  # [N, corner, coordinate]
    g_tex = per_face[:, n_face:].reshape(textures.shape)
    g_scalars = aggregate.scalar_grads(tuple(g_sc), consts, sc, opts, dtype)
    return g_fv.reshape(face_vertices.shape), g_tex, g_scalars


rasterize_pallas = aggregate.streamed_vjp(
    _forward,
    _backward,
    """Soft rasterization with the Pallas kernels; same arguments and result as the reference.

    Args:
      face_vertices: ``[B, F, 3, 3]`` float (float32 on GPUs), F >= 1.
      textures: ``[B, F, T, 3]`` of the same dtype.
      sc: :class:`Scalars` (``fill_back`` as a float 0/1 scalar).
      opts: :class:`StaticOptions`; cfg: :class:`PallasConfig` (with ``interpret`` resolved).

    Returns:
      ``[B, S, S, 4]`` RGBA.
    """,
)


def pallas_available() -> bool:
    """Whether Pallas's Triton backend can be imported in this JAX."""
    return plgpu is not None


def resolve_config(cfg: PallasConfig | None) -> PallasConfig:
    """Checks ``cfg`` and fills in ``interpret`` (see :class:`PallasConfig`)."""
    if plgpu is None:
        raise RuntimeError(
            f"backend='pallas' needs Pallas's Triton backend, which this JAX ({jax.__version__}) "
            f"does not provide ({_PLGPU_ERROR}); use backend='xla'"
        )
    return _check_config(cfg or PallasConfig())
