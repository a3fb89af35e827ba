"""Screen-tile binning of faces and the tiling configuration, shared by both streamed backends.

A face is listed in every ``tile x tile`` pixel tile that its bounding box grown by
``sqrt(T)`` overlaps (``docs/semantics.md``, the culling threshold); the (tile, face) pairs are
enumerated face by face and processed in fixed-capacity *passes* sorted by tile, so no face is
ever dropped. ``docs/pipeline.md`` describes the whole flow and what the tiling knobs mean.

Tiles, faces and pixels are flattened over the batch: tile ``t = b * n * n + ty * n + tx`` and
face ``f = b * F + j``.
"""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

try:  # in place on the host's buffers: no copies (JAX >= 0.7)
    from jax.experimental.buffer_callback import buffer_callback as _buffer_callback
except ImportError:  # pragma: no cover - depends on the JAX version
    _buffer_callback = None

from softjax.ops.pixel_face import FaceData, pixel_center_x, pixel_center_y, threshold

# tile * faces_per_image + face must fit in int32 for the single-key sort
COMPOSITE_KEY_LIMIT = 2**31

BACKENDS = ("xla", "pallas")  # the streamed backends that bin faces


class TilingConfig(NamedTuple):
    """Static performance knobs of the streamed backends (the tiled XLA path and the Pallas
    kernels); results do not depend on them beyond float rounding (any capacity is exact:
    pairs that do not fit are processed in further passes). 0 (or ``None``) picks the running
    backend's default; ``docs/pipeline.md`` explains each knob.

    Attributes:
      tile: pixels per tile side. XLA default: 8 from 128 pixels per face, 4 from 32, else
        2 (:func:`auto_tile`); Pallas default 8 (a power of two: ``tile**2`` pixels per
        program).
      window: faces streamed per step of the forward (Pallas: a power of two).
      bwd_window: the same for the backward (XLA: pairs per work item, of any tiles). XLA
        default: ``window``; Pallas default 8 (its in-kernel gradient keeps more values alive
        per pair; a power of two).
      capacity: (tile, face) pairs per binning pass; default from :func:`pair_capacity`.
      group: XLA only, work items per step (the forward's: one tile's window of faces; the
        backward's: ``bwd_window`` pairs); default about 4096 pixels per step, fewer for small
        calls (:func:`default_group`).
      num_warps, bwd_num_warps, num_stages: Pallas only, Triton launch parameters of the
        forward and the backward kernel.
      interpret: Pallas only; ``True`` runs the kernels in the Pallas interpreter (any
        platform, slow), ``None`` exactly when the default backend is not a GPU.
      grad_pairs: XLA only, (pixel, face) pairs per gradient step of the backward (those the
        distance test keeps, from any tiles); default 8192: fewer pay a step's fixed cost more
        often (2,048 ran 1.3-1.6x slower), more leave a larger last step half empty.
      coarse_tile: XLA only: faces whose grown box covers more than ``COARSE_FACE_PIXELS``
        pixels are binned on tiles of this side instead (a second level of tiles) when they
        list a quarter of the box pairs (:func:`coarse_faces`); a multiple of ``tile``, at most
        ``tile``: one level. Default 8 (one level when ``tile`` is 8).
        The Pallas kernels use one level.
    """

    tile: int = 0
    window: int = 16
    bwd_window: int = 0
    capacity: int = 0
    group: int = 0
    num_warps: int = 4
    bwd_num_warps: int = 8
    num_stages: int = 1
    interpret: bool | None = None
    coarse_tile: int = 0
    grad_pairs: int = 0


class _BackendDefaults(NamedTuple):
    tile: int  # 0: chosen from the problem size (auto_tile)
    bwd_window: int  # 0: the forward window
    pairs_per_face: int  # of the default capacity
    pairs_per_tile: int
    coarse_tile: int  # 0: one level of tiles
    grad_pairs: int  # 0: unused


# The Pallas capacity is more generous: a GPU pays more for a second pass (another sort and
# launch) than for idle slots. E.g. 1024^2 x 38,720 faces at sigma 1e-5 with 8-pixel tiles
# makes ~443k pairs (Pallas default: 518k); 256 x 64^2 x 1,280 faces ~1.07M (default: 3.4M).
_DEFAULTS = {
    "xla": _BackendDefaults(0, 0, 8, 4, 8, 8192),
    "pallas": _BackendDefaults(8, 8, 10, 8, 0, 0),
}
# A face whose grown box covers more pixels than this goes to the coarse tiles: a long thin
# face lists hundreds of 2-pixel tiles (the passes enumerate its whole box), a few dozen
# 8-pixel ones; small faces waste most of an 8-pixel tile. The large faces move only when they
# list a quarter of the box pairs (1 / COARSE_MIN_SHARE_INV): the slivers of the geometry suite
# run 3x faster, a sphere's few edge-on faces would run slower. docs/performance.md: figures.
COARSE_FACE_PIXELS = 512
COARSE_MIN_SHARE_INV = 4
# A face's grown box spans more 2-pixel tiles than larger ones: up to 14 per face in the
# geometry suite (5,120 faces of a flattened ellipsoid at 128^2), and a pass that overflows is
# another sort and another sweep.
_SMALL_TILE_PAIRS_PER_FACE = 12


def auto_tile(image_size: int, faces_per_image: int) -> int:
    """The XLA path's tile side for ``faces_per_image`` faces on an S x S image (S:
    ``image_size``): the largest of 8, 4 and 2 with at least ``2 * tile**2`` pixels per face
    (8 from 128 pixels per face, 4 from 32, else 2).

    A face much smaller than a tile still costs every pixel of the tiles it touches, so dense
    meshes take smaller tiles; smaller tiles cost more per pixel (each (tile, face) pair's
    fetch and bookkeeping is shared by fewer pixels). ``docs/performance.md`` has the
    measurements behind the thresholds.
    """
    per_face = image_size * image_size / max(faces_per_image, 1)
    for tile in (8, 4):
        if per_face >= 2 * tile * tile:
            return tile
    return 2


def resolve_tiling(
    cfg: TilingConfig, backend: str, image_size: int, faces_per_image: int
) -> TilingConfig:
    """Fills in the automatic fields of ``cfg`` that depend on the problem's size only (all but
    ``capacity``, ``group`` and ``interpret``).

    Args:
      cfg: the caller's configuration.
      backend: ``'xla'`` or ``'pallas'``, whose defaults apply.
      image_size: S, pixels per image side.
      faces_per_image: F.

    Returns:
      ``cfg`` with ``tile``, ``window`` (at least 1), ``bwd_window``, ``coarse_tile`` and
      ``grad_pairs`` (at least 1) set.

    Raises:
      ValueError: ``coarse_tile`` is larger than ``tile`` but not a multiple of it.
    """
    d = _DEFAULTS[backend]
    tile = cfg.tile or d.tile or auto_tile(image_size, faces_per_image)
    window = max(cfg.window, 1)
    coarse = max(cfg.coarse_tile or d.coarse_tile, tile) if d.coarse_tile else tile
    if coarse % tile:
        raise ValueError(
            f"TilingConfig.coarse_tile must be a multiple of tile, got {coarse} and {tile}"
        )
    return cfg._replace(
        tile=tile,
        window=window,
        bwd_window=cfg.bwd_window or d.bwd_window or window,
        coarse_tile=coarse,
        grad_pairs=max(cfg.grad_pairs or d.grad_pairs, 1),
    )


def default_group(cfg: TilingConfig, num_tiles: int, capacity: int) -> int:
    """Work items per step of the XLA passes: about 4096 pixels, but at most 1/16 of the items
    a pass can hold.

    Larger steps cost less per pair, but a pass's last step is partly empty, and under ``vmap``
    (e.g. one call per view) every call runs as many steps as the busiest one: a small call
    with 4096-pixel steps measured 1.35x slower than with 1024.

    Args:
      cfg: the configuration after :func:`resolve_tiling`; num_tiles: tiles of the call;
      capacity: pairs per pass.
    """
    items = most_items(capacity, num_tiles, cfg.window)
    return max(1, min(4096 // (cfg.tile * cfg.tile), items // 16))


class TileGrid(NamedTuple):
    """Static description of the tiling of a batch of images."""

    image_size: int  # S
    tile: int  # pixels per tile side
    n: int  # tiles per image side, ceil(S / tile)
    batch: int  # B
    faces_per_image: int  # F

    @property
    def num_tiles(self) -> int:
        return self.batch * self.n * self.n

    @property
    def num_faces(self) -> int:
        return self.batch * self.faces_per_image

    @property
    def tile_pixels(self) -> int:
        return self.tile * self.tile


def make_grid(image_size: int, tile: int, batch: int, faces: int, span: int = 0) -> TileGrid:
    """The tiling of ``batch`` images of ``image_size``^2 pixels with ``faces`` faces each, in
    tiles of ``tile``^2 pixels that cover a padded square whose side is a multiple of ``span``
    (default ``tile``): grids of the same span cover the same pixels (:func:`relayout`)."""
    span = span or tile
    n = -(-image_size // span) * (span // tile)
    return TileGrid(image_size, tile, n, batch, faces)


def pair_capacity(cfg: TilingConfig, grid: TileGrid, backend: str) -> int:
    """(tile, face) pairs per binning pass: ``cfg.capacity``, or by default a number of pairs
    per face and per tile (XLA: 8 and 4, 12 per face with 2-pixel tiles; Pallas: 10 and 8),
    clamped to [4096, 2**24].

    Args:
      cfg: the configuration; grid: the tiling of the batch; backend: ``'xla'`` or ``'pallas'``.
    """
    if cfg.capacity > 0:
        return cfg.capacity
    return _default_capacity(backend, grid.num_faces, grid.num_tiles, grid.tile)


def _default_capacity(backend: str, faces: int, tiles: int, tile: int) -> int:
    d = _DEFAULTS[backend]
    per_face = _SMALL_TILE_PAIRS_PER_FACE if tile <= 2 else d.pairs_per_face
    pairs = per_face * faces + d.pairs_per_tile * tiles
    return int(min(max(pairs, 4096), 1 << 24))


def padded_batch_capacity(
    cfg: TilingConfig, backend: str, image_size: int, batch: int, faces: int, real_faces: int
) -> TilingConfig:
    """``cfg`` with the default capacity of a padded batch sized by its real faces.

    The default capacity grows with the face slots, and a pass sorts all of its slots, so a
    batch padded to its largest mesh would pay for the padding in every pass. When the counts
    are concrete, the default is the one of ``real_faces`` faces instead (an explicit
    ``cfg.capacity`` is kept).

    Args:
      cfg: the caller's configuration; backend: ``'xla'`` or ``'pallas'``.
      image_size, batch, faces: S, B and F (padded) of the call.
      real_faces: the sum of the concrete face counts.
    """
    if cfg.capacity > 0:
        return cfg
    tile = resolve_tiling(cfg, backend, image_size, faces).tile
    tiles = make_grid(image_size, tile, batch, faces).num_tiles
    return cfg._replace(capacity=_default_capacity(backend, real_faces, tiles, tile))


class FaceTiles(NamedTuple):
    """Tile-index rectangle of each (flattened) face and the face-major pair enumeration."""

    tx0: jax.Array  # [BF] int32
    ty0: jax.Array
    width: jax.Array  # [BF] tiles in x (>= 1 where count > 0)
    count: jax.Array  # [BF] tiles overlapped (0: face is off screen or not finite)
    inclusive: jax.Array  # [BF] cumulative count
    total: jax.Array  # scalar int32, number of (tile, face) pairs
    # [BF, 3, 3] or None: per corner k, (a, b, c) of an affine function that is negative on
    # the whole of a tile only when no pixel of the tile can use the face (see cull_lines)
    lines: jax.Array | None = None


def cull_lines(face: FaceData, grow, dist_func: str, image_size: int) -> jax.Array:
    """Per face and corner k, the affine function ``a x + b y + c`` that a tile must reach (be
    >= 0 somewhere on it) for any of its pixels to use the face, ``[BF, 3, 3]``.

    The bounding box misses most of what it contains for thin, diagonal faces. A pixel beyond
    the line of the edge opposite corner k, on the side away from the face, is not inside, and
    its distance to the face is at least its distance to that line. So the face is useless to a
    pixel farther than ``sqrt(T)`` beyond that line (euclidean), whose barycentric weight
    ``w_k`` is below ``-sqrt(T)`` (barycentric: ``min_k w_k > -sqrt(T)`` is its test) or below
    0 (hard). A line that cannot be trusted (a degenerate edge, a corner on or within rounding
    of the opposite edge's line, values that are not finite) never culls.

    The euclidean lines run through the corners themselves (not from the barycentric
    coefficients, which lose their direction on tiny edges), so what separates this test from
    ``pair_terms``' distance is the float32 rounding of both, which ``_line_slack`` covers.
    (The half a pixel of margin that stood here before listed 1.1-1.2x the candidates: 2.15 ->
    1.87 candidates per useful pair on the 1,280-face sphere at 64^2.)
    """
    slack = _line_slack(face, image_size)[:, None]  # [BF, 1] NDC
    if dist_func == "euclidean":  # signed distance to the edge's line, in NDC
        x0, y0 = jnp.roll(face.x, -1, -1), jnp.roll(face.y, -1, -1)  # the edge opposite k
        x1, y1 = jnp.roll(face.x, -2, -1), jnp.roll(face.y, -2, -1)
        nx, ny = y0 - y1, x1 - x0  # normal of the edge, not yet oriented or unit
        n = jnp.sqrt(nx * nx + ny * ny)
        usable = n > 0
        n_safe = jnp.where(usable, n, 1.0)
        nx, ny = nx / n_safe, ny / n_safe
        height = nx * (face.x - x0) + ny * (face.y - y0)  # of corner k over the edge, signed
        sign = jnp.where(height > 0, 1.0, -1.0)
        a, b = sign * nx, sign * ny
        c = grow + slack - (a * x0 + b * y0)
        usable = usable & (jnp.abs(height) > slack)
    else:
        g = jnp.sqrt(face.a * face.a + face.b * face.b)  # weight per NDC
        usable = g > 0
        reach = grow if dist_func == "barycentric" else 0.0
        # a few ulps of the terms of a x + b y + c (|x|, |y| < 1 at pixel centres)
        ulps = (jnp.abs(face.a) + jnp.abs(face.b) + jnp.abs(face.c)) * 2.0**-14
        a, b, c = face.a, face.b, face.c + reach + slack * g + ulps
    usable = usable & jnp.isfinite(a) & jnp.isfinite(b) & jnp.isfinite(c)
    c = jnp.where(usable, c, jnp.inf)  # never negative: never culls
    return jnp.stack([jnp.where(usable, a, 0.0), jnp.where(usable, b, 0.0), c], -1)


def _line_slack(face: FaceData, image_size: int) -> jax.Array:
    """``[BF]``, NDC: how much farther than the threshold a tile must lie beyond a cull line,
    against the float32 rounding of the line and of ``pair_terms``' distances: a hundredth of a
    pixel, plus 2**-14 (about 500 ulps) of the largest of the face's and the pixel centres'
    coordinates."""
    reach = jnp.max(jnp.maximum(jnp.abs(face.x), jnp.abs(face.y)), axis=-1)
    reach = jnp.where(jnp.isfinite(reach), reach, 0.0)
    return 0.02 / image_size + (reach + 1.0) * 2.0**-14


def index_margin(image_size: int) -> float:
    """Pixels by which the binning widens a face's grown box against rounding: the pair math
    tests each pixel centre against the same box (``pixel_face.pair_terms``), so only the
    float32 rounding of the two computations may differ, a few ulps of coordinates up to
    ``image_size`` (here about 250 ulps)."""
    return 0.01 + image_size * 2.0**-16


def face_tiles(
    face: FaceData,
    sigma_val,
    dist_eps,
    grid: TileGrid,
    present: jax.Array | None = None,
    dist_func: str | None = None,
) -> FaceTiles:
    """Tiles overlapped by each face's bounding box grown by ``sqrt(T)``.

    Args:
      face: :class:`FaceData` with fields ``[BF, 3]``.
      sigma_val, dist_eps: scalars of the culling threshold ``T``.
      grid: the tiling.
      present: ``None`` or ``[BF]`` bool, False for the padding slots of a padded batch
        (they overlap no tile, so no pass ever visits them).
      dist_func: the call's distance function: the passes then also drop the pairs whose tile
        lies wholly beyond an edge line of the face (:func:`cull_lines`); ``None`` lists every
        tile of the box.
    """
    s = grid.image_size
    grow = jnp.sqrt(jnp.maximum(threshold(sigma_val, dist_eps), 0.0))
    xmin = jnp.min(face.x, axis=-1) - grow
    xmax = jnp.max(face.x, axis=-1) + grow
    ymin = jnp.min(face.y, axis=-1) - grow
    ymax = jnp.max(face.y, axis=-1) + grow
    finite = jnp.isfinite(xmin) & jnp.isfinite(xmax) & jnp.isfinite(ymin) & jnp.isfinite(ymax)

    margin = index_margin(s)

    def to_index(v, fn, side):
        # Pixel index from NDC, widened by `margin` against rounding; clip before the cast.
        v = jnp.where(finite, v, 0.0) + side * margin
        return fn(jnp.clip(v, -4.0, s + 4.0)).astype(jnp.int32)

    # centre x of column c is (2c + 1 - S) / S  =>  c = (x S + S - 1) / 2
    c_lo = to_index((xmin * s + s - 1) / 2, jnp.ceil, -1)
    c_hi = to_index((xmax * s + s - 1) / 2, jnp.floor, 1)
    # centre y of row r is (S - 1 - 2r) / S  =>  r = (S - 1 - y S) / 2
    r_lo = to_index((s - 1 - ymax * s) / 2, jnp.ceil, -1)
    r_hi = to_index((s - 1 - ymin * s) / 2, jnp.floor, 1)
    on_screen = finite & (c_hi >= 0) & (c_lo <= s - 1) & (r_hi >= 0) & (r_lo <= s - 1)
    if present is not None:
        on_screen = on_screen & present
    c_lo, c_hi = jnp.clip(c_lo, 0, s - 1), jnp.clip(c_hi, 0, s - 1)
    r_lo, r_hi = jnp.clip(r_lo, 0, s - 1), jnp.clip(r_hi, 0, s - 1)
    t = grid.tile
    tx0, tx1 = c_lo // t, c_hi // t
    ty0, ty1 = r_lo // t, r_hi // t
    width = tx1 - tx0 + 1
    count = jnp.where(on_screen, width * (ty1 - ty0 + 1), 0).astype(jnp.int32)
    lines = None if dist_func is None else cull_lines(face, grow, dist_func, s)
    return _with_counts(FaceTiles(tx0, ty0, width, count, None, None, lines), count)


def running(op, x: jax.Array) -> jax.Array:
    """The running ``op`` (``jnp.add``, ``jnp.maximum``) of a 1-D array, inclusive.

    An associative scan: XLA's CPU ``cumsum`` and ``cummax`` (a reduce-window) took 2.5x and
    4x longer on the binning's arrays (20k to 330k entries)."""
    return jax.lax.associative_scan(op, x)


def spread_marks(at: jax.Array, values: jax.Array, size: int) -> jax.Array:
    """``[size]`` int32: at each position, the largest of the non-negative ``values`` marked at
    or before it (0 before the first mark). ``at``: the marks' positions (int32, shaped like
    ``values``; out of range: dropped). With increasing values at increasing positions, each
    position gets its owner, O(size) without a binary search per position."""
    marks = jnp.zeros((size,), jnp.int32).at[at].max(values, mode="drop")
    return running(jnp.maximum, marks)


def _with_counts(ft: FaceTiles, count: jax.Array) -> FaceTiles:
    inclusive = running(jnp.add, count.astype(jnp.int32))
    total = inclusive[-1] if count.shape[0] else jnp.int32(0)
    return ft._replace(count=count, inclusive=inclusive, total=total)


def keep_faces(ft: FaceTiles, faces: jax.Array) -> FaceTiles:
    """``ft`` with only the faces ``faces`` (``[BF]`` bool) listed."""
    return _with_counts(ft, jnp.where(faces, ft.count, 0))


def coarse_faces(ft: FaceTiles, grid: TileGrid) -> jax.Array:
    """``[BF]`` bool: the faces that go to the coarse tiles (``ft``: their tile ranges on the
    fine ``grid``): those whose grown box covers more than ``COARSE_FACE_PIXELS`` pixels, when
    together they list more than ``1 / COARSE_MIN_SHARE_INV`` of the fine tiles' box pairs;
    else none (a coarse level costs a few steps of partly empty windows, which a handful of
    large faces do not repay)."""
    big = ft.count * grid.tile_pixels > COARSE_FACE_PIXELS
    big_pairs = jnp.sum(jnp.where(big, ft.count, 0))
    return big & (big_pairs * COARSE_MIN_SHARE_INV > ft.total)


def _divmod(a: jax.Array, b: jax.Array) -> tuple[jax.Array, jax.Array]:
    """``(a // b, a % b)`` of int32 arrays with ``a >= 0`` and ``b >= 1``, through float
    quotients: a vector integer division is several times slower on CPUs. The first estimate
    is off by at most ``a / 2**23 + 1``; the second, of the small remainder, by at most one,
    which the last selects fix."""

    def estimate(x):
        return jnp.floor((x.astype(jnp.float32) + 0.5) / b.astype(jnp.float32)).astype(jnp.int32)

    q = estimate(a)
    q = q + estimate(a - q * b)
    r = a - q * b
    q, r = jnp.where(r < 0, q - 1, q), jnp.where(r < 0, r + b, r)
    return jnp.where(r >= b, q + 1, q), jnp.where(r >= b, r - b, r)


def _tile_reaches(lines: jax.Array, tx, ty, grid: TileGrid) -> jax.Array:
    """Whether each tile ``(tx, ty)`` ``[C]`` reaches all three lines ``[C, 3, 3]`` of its face:
    the maximum of an affine function over the tile's pixel centres is at a corner."""
    t, s = grid.tile, grid.image_size
    x_lo = pixel_center_x(tx * t, s)
    x_hi = pixel_center_x(tx * t + t - 1, s)
    y_hi = pixel_center_y(ty * t, s)
    y_lo = pixel_center_y(ty * t + t - 1, s)
    reach = None
    for k in range(3):  # not jnp.all over the lines: a reduction over 3 is slow on CPUs
        a, b, c = lines[:, k, 0], lines[:, k, 1], lines[:, k, 2]  # [C]
        x = jnp.where(a > 0, x_hi, x_lo)
        y = jnp.where(b > 0, y_hi, y_lo)
        ok = a * x + b * y + c >= 0
        reach = ok if reach is None else reach & ok
    return reach


class Bins(NamedTuple):
    """One pass of (tile, face) pairs grouped by tile."""

    faces: jax.Array  # [capacity] face ids sorted by tile
    start: jax.Array  # [NT + 1] first slot of each tile in ``faces`` (last entry: sentinel tile)
    count: jax.Array  # [NT + 1] number of faces of each tile in this pass
    pairs: jax.Array  # scalar: the pairs of this pass, ``faces[:pairs]`` (the rest: junk)
    tile: jax.Array  # [capacity] the tile of each slot of ``faces`` (junk slots: NT)


def num_passes(ft: FaceTiles, capacity: int) -> jax.Array:
    return (ft.total + capacity - 1) // capacity


def _listing_faces(ft: FaceTiles) -> tuple[jax.Array, jax.Array]:
    """The faces that list pairs, in order (``[BF]`` int32, then ``BF - 1``), and the first slot
    of each in the face-major enumeration (then ``2**31 - 1``): strictly increasing, so at most
    ``n`` of them start within any ``n`` consecutive slots."""
    nf = ft.count.shape[0]
    lists = ft.count > 0
    at = jnp.where(lists, running(jnp.add, lists.astype(jnp.int32)) - 1, nf)  # elsewhere: dropped
    faces = jnp.full((nf,), nf - 1, jnp.int32).at[at].set(jnp.arange(nf, dtype=jnp.int32))
    first = jnp.full((nf,), jnp.iinfo(jnp.int32).max, jnp.int32).at[at].set(ft.inclusive - ft.count)
    return faces, first


def _slot_faces(listing: tuple[jax.Array, jax.Array], first, size: int) -> jax.Array:
    """The face owning each of the slots ``first .. first + size - 1`` of the face-major
    enumeration (the last listing face past the last pair), int32 ``[size]``.

    Each of the (at most ``size + 1``) listing faces whose pairs reach these slots marks the
    slot where its pairs start, and a running maximum spreads the marks: about 3x faster on
    the CPU than a binary search per slot, and O(size) whatever the number of faces.
    """
    faces, starts = listing
    nf = faces.shape[0]
    j0 = jnp.searchsorted(starts, first, side="right").astype(jnp.int32) - 1  # owns `first`
    j0 = jnp.clip(j0, 0, max(nf - size - 1, 0))
    window = jax.lax.dynamic_slice(starts, (j0,), (min(size + 1, nf),)) - first
    at = jnp.where((window >= 0) & (window < size), window, size)  # elsewhere: dropped
    own = jnp.arange(window.shape[0], dtype=jnp.int32)
    # slots before the window's first start (the face owning `first` lies before it when the
    # clip above moved j0 back): that face is the last one starting at or before `first`
    before = jnp.sum(window <= 0, dtype=jnp.int32) - 1
    return faces[j0 + jnp.maximum(spread_marks(at, own, size), before)]


# slots the binning enumerates at a time (bin_pass)
_ENUM_CHUNK = 1 << 16


def _sort_into(keys: np.ndarray, bounds, used, pos: np.ndarray) -> None:
    """Sorts ``keys`` ``[..., n]`` in place, each row only over its first ``used`` entries (the
    rest are sorted already and no smaller), and writes the insertion points of ``bounds``
    ``[..., m]`` into ``pos`` ``[..., m]``; ``bounds`` and ``used`` broadcast over the rows."""
    lead = keys.shape[:-1]
    bounds = np.broadcast_to(np.asarray(bounds), lead + pos.shape[-1:])
    used = np.broadcast_to(np.asarray(used), lead)
    for row in np.ndindex(lead):  # keys[row] is a view: sorted in place
        keys[row][: max(int(used[row]), 0)].sort()
        pos[row] = np.searchsorted(keys[row], bounds[row], side="left")


def _numpy_sort_search(keys, bounds, used=None) -> tuple[np.ndarray, np.ndarray]:
    """NumPy's :func:`sort_search` of arrays (batched over leading axes), for tests and for
    JAX versions without a buffer callback."""
    keys = np.array(keys)  # a copy, sorted in place; a callback may be handed jax.Arrays
    pos = np.empty(keys.shape[:-1] + np.shape(bounds)[-1:], np.int32)
    _sort_into(keys, bounds, keys.shape[-1] if used is None else used, pos)
    return keys, pos


def _host_sort_search(ctx, out, keys, bounds, used) -> None:
    """:func:`sort_search` as a buffer callback: sorts the keys in the buffer it aliases."""
    del ctx, keys  # the keys are out[0]'s buffer (input_output_aliases)
    _sort_into(np.asarray(out[0]), np.asarray(bounds), np.asarray(used), np.asarray(out[1]))


def _lax_sort_search(keys: jax.Array, bounds: jax.Array, used=None) -> tuple[jax.Array, jax.Array]:
    del used  # the whole array is sorted
    keys = jax.lax.sort(keys)
    return keys, jnp.searchsorted(keys, bounds, side="left").astype(jnp.int32)


def sort_search(keys: jax.Array, bounds: jax.Array, used=None) -> tuple[jax.Array, jax.Array]:
    """``keys`` (int32 ``[n]``) sorted, not stably (equal keys are indistinguishable), and where
    each of the ascending ``bounds`` (int32 ``[m]``) would be inserted on the left.

    ``used`` (int32 scalar, default ``n``): the keys from ``used`` on are sorted already and
    none is smaller than any key before them (the junk keys of a pass's empty slots), so only
    ``keys[:used]`` need sorting; the result is the same either way.

    On the CPU this is NumPy's, through a callback that sorts the keys' buffer in place: XLA's
    CPU sort is about 10x slower (2.9M keys: 147 ms vs 11 ms on a 2-core machine), and
    ``jax.pure_callback`` copied its arguments to a device and back (0.16 vs 0.05 ms for the
    20k keys of the 1,280-face sphere at 64^2). NumPy's own sort (SIMD on x86 since NumPy 2)
    beat the radix and blockwise counting sorts this function used before by 2.5-4x on the
    geometry suite's keys (``docs/performance.md``). Elsewhere (GPU) it is ``lax.sort`` and
    ``searchsorted``, and so it is when the process has several CPU devices: there the callback
    deadlocked a step spread over two of them (``shard_map``,
    ``--xla_force_host_platform_device_count=2``).
    """
    if len(jax.local_devices(backend="cpu")) > 1:
        return _lax_sort_search(keys, bounds)
    used = jnp.asarray(keys.shape[-1] if used is None else used, jnp.int32)

    def on_cpu(k, b, u):
        shapes = (jax.ShapeDtypeStruct(k.shape, k.dtype), jax.ShapeDtypeStruct(b.shape, jnp.int32))
        if _buffer_callback is None:
            return jax.pure_callback(
                _numpy_sort_search, shapes, k, b, u, vmap_method="broadcast_all"
            )
        sort = _buffer_callback(
            _host_sort_search, shapes, vmap_method="broadcast_all", input_output_aliases={0: 0}
        )
        return sort(k, b, u)

    return jax.lax.platform_dependent(keys, bounds, used, cpu=on_cpu, default=_lax_sort_search)


def bin_pass(ft: FaceTiles, pass_index, capacity: int, grid: TileGrid) -> Bins:
    """Generates pass ``pass_index`` of the pairs and groups it by tile.

    The pairs are enumerated ``_ENUM_CHUNK`` slots at a time, as many chunks as the pass has
    pairs: the capacity is sized for the worst case and is often 2-3 times the pairs (the
    reconstruction batch: 1.9M pairs in 5.0M slots), and the enumeration was the largest cost
    of the binning. A capacity of one chunk or less is enumerated in quarters (at least 4096
    slots): the 1,280-face sphere at 64^2 lists 8.7k pairs in 19.5k slots."""
    nt = grid.num_tiles
    nfi = grid.faces_per_image
    composite = (nt + 1) * nfi < COMPOSITE_KEY_LIMIT
    size = min(capacity, _ENUM_CHUNK)
    if size == capacity:  # a small call: quarters, so its few pairs do not pay for every slot
        size = min(capacity, max(-(-capacity // 4), 4096))
    listing = _listing_faces(ft)
    base = pass_index * capacity

    def chunk(i, bufs):
        at = jnp.minimum(i * size, capacity - size)  # the last chunk may redo equal slots
        put = jax.lax.dynamic_update_slice
        slot = base + at + jnp.arange(size, dtype=jnp.int32)
        face = _slot_faces(listing, base + at, size)
        in_pass = slot < ft.total
        local = slot - (ft.inclusive[face] - ft.count[face])
        row, col = _divmod(local, jnp.maximum(ft.width[face], 1))
        tx = ft.tx0[face] + col
        ty = ft.ty0[face] + row
        if ft.lines is not None:  # drop the pairs the face's edge lines rule out
            in_pass = in_pass & _tile_reaches(ft.lines[face], tx, ty, grid)
        tile = face // nfi * (grid.n * grid.n) + ty * grid.n + tx
        if composite:
            # one int32 key per pair, tile-major then face: a single-operand sort (~5x
            # faster than sorting (key, face) pairs on the CPU)
            key = jnp.where(in_pass, tile * nfi + face % nfi, nt * nfi).astype(jnp.int32)
            return (put(bufs[0], key, (at,)),)
        key = jnp.where(in_pass, tile, nt).astype(jnp.int32)
        return tuple(put(b, v, (at,)) for b, v in zip(bufs, (key, face), strict=True))

    pairs_here = jnp.clip(ft.total - base, 0, capacity)
    junk = nt * nfi if composite else nt
    bufs = (jnp.full((capacity,), junk, jnp.int32),)
    if not composite:
        bufs += (jnp.zeros((capacity,), jnp.int32),)
    if size == capacity:  # one chunk (with no pairs its slots come out as junk): no loop
        bufs = chunk(0, bufs)
    else:
        bufs = jax.lax.fori_loop(0, (pairs_here + size - 1) // size, chunk, bufs)
    tiles = jnp.arange(nt + 1, dtype=jnp.int32)
    if composite:
        bounds = jnp.arange(nt + 2, dtype=jnp.int32) * nfi  # tile t: [bounds[t], bounds[t + 1])
        key, pos = sort_search(bufs[0], bounds, pairs_here)  # junk from pairs_here on
        tile = key // nfi
        face = jnp.minimum(tile, nt - 1) // (grid.n * grid.n) * nfi + key % nfi
        start, end = pos[:-1], pos[1:]
    else:
        tile, face = jax.lax.sort(bufs, num_keys=1, is_stable=True)
        start = jnp.searchsorted(tile, tiles, side="left").astype(jnp.int32)
        end = jnp.searchsorted(tile, tiles, side="right").astype(jnp.int32)
    count = jnp.where(tiles < nt, end - start, 0)
    return Bins(face, start, count, start[nt], tile)  # the sentinel tile's slots: junk


class WorkItems(NamedTuple):
    """A binning pass cut into work items: item ``i`` is faces ``[chunk[i] * K, (chunk[i] + 1)
    * K)`` of tile ``tile[i]``'s list, items ordered by tile, then chunk (so by face id)."""

    tile: jax.Array  # [I] int32; the sentinel tile NT past the last item
    chunk: jax.Array  # [I] int32
    count: jax.Array  # scalar int32, the items of this pass


def most_items(capacity: int, num_tiles: int, k_size: int) -> int:
    """The most work items of ``k_size`` faces a pass of ``capacity`` pairs on ``num_tiles``
    tiles can cut into: every tile has at most one partial item, so ``sum ceil(c / K) <=
    capacity / K + NT``."""
    return -(-capacity // k_size) + num_tiles


def work_items(bins: Bins, grid: TileGrid, k_size: int, size: int) -> WorkItems:
    """The pass's (tile, chunk) items of at most ``k_size`` faces, in arrays of ``size`` (at
    least :func:`most_items`): both backends cut a busy tile's list into items that run
    side by side, so no tile's load holds up the others.

    Each tile with items marks its first item, the sentinel NT the end, and a running maximum
    spreads the marks (a binary search per item was a loop of 11 steps on a 1,024-tile call).
    """
    nt = grid.num_tiles
    chunks = (bins.count[:nt] + k_size - 1) // k_size  # [NT]
    inclusive = running(jnp.add, chunks.astype(jnp.int32))
    item = jnp.arange(size, dtype=jnp.int32)
    first = inclusive - chunks
    at = jnp.concatenate([jnp.where(chunks > 0, first, size), inclusive[-1:]])  # size: dropped
    tile = spread_marks(at, jnp.arange(nt + 1, dtype=jnp.int32), size)  # NT past the end
    first = first[jnp.minimum(tile, nt - 1)]
    return WorkItems(tile, item - first, inclusive[-1])


def face_present(face_counts: jax.Array | None, grid: TileGrid) -> jax.Array | None:
    """``[BF]`` bool, True for the real faces of a padded batch (``None``: all are real).

    Args:
      face_counts: ``None`` or ``[B]`` int32, real faces per image; grid: the tiling.
    """
    if face_counts is None:
        return None
    slot = jnp.arange(grid.faces_per_image, dtype=jnp.int32)
    return (slot[None, :] < face_counts[:, None]).reshape(-1)


def tile_faces_per_image(face_counts: jax.Array | None, grid: TileGrid, dtype):
    """The alpha ``'sum'`` divisor of each tile's pixels: ``F`` (an int) without padding, else
    ``[NT, 1]`` of ``max(face_counts[b], 1)`` for the image ``b`` of each tile."""
    if face_counts is None:
        return grid.faces_per_image
    per_image = jnp.maximum(face_counts, 1).astype(dtype)
    return jnp.repeat(per_image, grid.n * grid.n)[:, None]


def tile_pixel_coords(tiles: jax.Array, grid: TileGrid, dtype) -> tuple[jax.Array, jax.Array]:
    """NDC centres of the pixels of the given tiles: ``([..., tile*tile], [..., tile*tile])``
    for ``tiles`` of shape ``[...]`` (e.g. ``[G]``, or a scalar inside a kernel).

    Pixel ``i * tile + j`` of tile (ty, tx) is at row ``ty * tile + i``, column ``tx * tile + j``.
    """
    t = grid.tile
    local = jnp.asarray(tiles) % (grid.n * grid.n)
    ty, tx = local // grid.n, local % grid.n
    i = jnp.arange(t * t, dtype=jnp.int32) // t
    j = jnp.arange(t * t, dtype=jnp.int32) % t
    rows = (ty[..., None] * t + i).astype(dtype)
    cols = (tx[..., None] * t + j).astype(dtype)
    return pixel_center_x(cols, grid.image_size), pixel_center_y(rows, grid.image_size)


def _tiles_to_square(x: jax.Array, grid: TileGrid) -> jax.Array:
    """``[NT, tile*tile, ...]`` -> ``[B, n*tile, n*tile, ...]``: the padded square."""
    t, n = grid.tile, grid.n
    rest = x.shape[2:]
    x = x.reshape((grid.batch, n, n, t, t) + rest)
    x = jnp.moveaxis(x, 3, 2)  # [B, n, t, n, t, ...]
    return x.reshape((grid.batch, n * t, n * t) + rest)


def _square_to_tiles(x: jax.Array, grid: TileGrid) -> jax.Array:
    """``[B, n*tile, n*tile, ...]`` -> ``[NT, tile*tile, ...]``."""
    t, n = grid.tile, grid.n
    rest = x.shape[3:]
    x = x.reshape((grid.batch, n, t, n, t) + rest)
    x = jnp.moveaxis(x, 2, 3)  # [B, n, n, t, t, ...]
    return x.reshape((grid.num_tiles, t * t) + rest)


def relayout(x: jax.Array, src: TileGrid, dst: TileGrid) -> jax.Array:
    """Per-pixel values ``[NT, tile*tile, ...]`` in the tile layout of ``src`` -> that of
    ``dst``; both grids cover the same padded square (:func:`make_grid`'s ``span``), so the
    padding pixels keep their values too."""
    if src.tile == dst.tile:
        return x
    return _square_to_tiles(_tiles_to_square(x, src), dst)


def tiles_to_image(x: jax.Array, grid: TileGrid) -> jax.Array:
    """``[NT, tile*tile, C]`` in tile layout -> ``[B, S, S, C]`` images."""
    return _tiles_to_square(x, grid)[:, : grid.image_size, : grid.image_size]


def image_to_tiles(x: jax.Array, grid: TileGrid) -> jax.Array:
    """``[B, S, S, C]`` images -> ``[NT, tile*tile, C]`` tile layout (zero padded)."""
    pad = grid.n * grid.tile - grid.image_size
    return _square_to_tiles(jnp.pad(x, ((0, 0), (0, pad), (0, pad), (0, 0))), grid)
