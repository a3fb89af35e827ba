"""Solid voxelisation of triangle meshes and voxel IoU: SoftRas's 3D IoU evaluation, voxel for
voxel.

``voxelize`` reproduces ``soft_renderer.functional.voxelization`` as called by SoftRas's
``evaluate_iou`` (``examples/recon/models.py``):

1. Voxel units: ``p = ((v * (size - 1)) / size + 0.5) * size``, each operation rounded.
2. Surface, once per axis: the triangle is projected along the axis; every integer column
   ``(y, x)``, ``0 <= y, x < size``, of the other two coordinates that the projection contains
   (barycentric ``t1, t2 >= 0`` and ``t1 + t2 <= 1``, computed as in the original; triangles
   whose projected determinant is exactly 0 are skipped) gives the depth
   ``d = floor(t1 z1d + t2 z2d + z0)``, which marks the four voxels ``(y, x, d)``,
   ``(y - 1, x, d)``, ``(y, x - 1, d)``, ``(y - 1, x - 1, d)`` around that grid line (those in
   the grid). The corner order ``(y, x, depth)`` of the axes is the original's:
   ``(c2, c1, c0)``, ``(c0, c2, c1)``, ``(c0, c1, c2)`` for the projections along c0, c1, c2.
3. Every corner marks the voxel ``floor(p)``.
4. Empty voxels 6-connected through empty voxels to an empty border voxel are outside; every
   other voxel is occupied.
5. The NMR / ShapeNet axis order.

Exactness. The inside test and the depth are computed with the original's operations in its
order, each rounded on its own. XLA would otherwise change the rounding in two places, so both
are blocked: on CPU it contracts ``a * b + c`` into one fused multiply-add (``_mul`` adds a zero
that XLA cannot see to be one, ``0 * data``; a contracted ``fma(a, b, zero)`` is the rounded
product), and it turns a division by a broadcast value into a multiplication by its reciprocal
(the divisor is materialised behind an ``optimization_barrier`` first). The original's CUDA
build may itself contract multiply-adds (``nvcc --fmad=true``); this follows the source as
written, i.e. unfused IEEE arithmetic. The tests check both against a NumPy port.

Which columns are tested. Testing every triangle against all ``size^2`` columns of every axis is
``3 F size^2`` tests per mesh (250 million for 64 meshes of 1,280 faces), so a triangle whose
projection is small tests only a ``w x w`` block of columns (``w`` from ``WINDOWS``, the
smallest that fits) holding its bounding box grown by ``MARGIN``: exact whenever no column
outside that box can pass the rounded test. A column outside the box by ``delta >= MARGIN`` (in
y or in x) has an exact barycentric coordinate below ``-delta / (2 R)`` (``R`` the box's
extent), while the rounded ``t1, t2`` are within a bound computed per triangle from its rounded
determinant, edge vectors and the column's distance (the products, differences and quotient
each round by at most one unit roundoff); a block is used only where that bound stays below the
gap, with a factor 4 to spare. The rest (boxes larger than the largest block, and thin or badly
conditioned projections, whose rounded barycentrics are noise far from the triangle) test all
``size^2`` columns. One counting sort groups the triangles by pass; each pass is a
``lax.while_loop`` over its triangles, about ``chunk_size`` (triangle, column) pairs per
iteration, so memory is bounded and the work follows the data. Triangles with a non-finite
coordinate are skipped (the original casts ``floor(NaN)`` to ``int``, which C leaves
undefined), and so is a non-finite depth.

Padded batches. With ``face_counts [B]``, faces ``f >= face_counts[b]`` of mesh ``b`` are padding:
they get no pass (they are in no pass's run of the counting sort, so no column is tested for
them) and their corners mark nothing, so each mesh's voxels are those of its real faces alone.

Flood fill: the outside starts as the empty border voxels and grows by 6-neighbour dilation
restricted to empty voxels, on grids bit-packed along z, in a ``lax.while_loop`` (four
dilations per convergence check) until nothing changes: the fixed point of the original's
repeated sweeps.
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax
from jax.typing import ArrayLike

from softjax.concrete import check_face_counts

# Corner coordinate order (y, x, depth) of the original's projection along axis 0, 1, 2
# (``voxelize_sub1``: ``faces[..., [2, 1, 0]]``, ``faces[..., [0, 2, 1]]``, unchanged).
_ORDER = ((2, 1, 0), (0, 2, 1), (0, 1, 2))
# Permutation taking an axis's hit grid ``[b, y, x, depth]`` back to ``[b, c0, c1, c2]``.
_BACK = ((0, 3, 2, 1), (0, 1, 3, 2), (0, 1, 2, 3))
_FIELDS = ("y0", "x0", "z0", "y1d", "x1d", "z1d", "y2d", "x2d", "z2d", "det")
WINDOWS = (3, 5, 10)  # block sides (columns) of the passes before the whole grid
MARGIN = 0.25  # voxel units around the bounding box that the block must also hold
_INDEX_LIMIT = 2**30  # int32 indices, with headroom for a chunk past the end


def voxelize(
    face_vertices: ArrayLike,
    size: int = 32,
    *,
    chunk_size: int | None = None,
    face_counts: ArrayLike | None = None,
) -> jax.Array:
    """Solid occupancy grid of a batch of meshes, exactly as SoftRas's ``voxelization`` in its
    3D IoU evaluation.

    Coordinates are mapped to voxel units by ``p = ((v * (size - 1)) / size + 0.5) * size`` (the
    cube ``[-0.5, 0.5]^3`` maps to ``[0.5, size - 0.5]^3``); voxel ``(i, j, k)`` is the unit cube
    ``[i, i+1) x [j, j+1) x [k, k+1)`` with ``i`` along x, ``j`` along y, ``k`` along z. Surface
    voxels: for each axis, every integer grid line parallel to it (``0 <= a, b < size``) that
    crosses a triangle marks the 4 voxels around the line at the crossing's depth (voxel
    ``floor``), and every corner marks its voxel (see the module docstring for the exact rule).
    Occupied: surface voxels and every voxel not reachable from the grid's border through empty
    voxels (6-connected). Parts of the mesh outside the grid are ignored; triangles with a
    non-finite coordinate are skipped.

    Padded batches of meshes of different sizes: with ``face_counts``, mesh ``b`` is made of the
    faces ``face_vertices[b, :face_counts[b]]`` only; the others are skipped whatever their
    coordinates (they are never tested, and their corners mark nothing), so ``out[b]`` equals
    ``voxelize(face_vertices[b : b + 1, :face_counts[b]])[0]``. A mesh with no face gives an
    empty grid.

    The result then follows the ShapeNet / NMR voxel convention: ``out[b, j, i, size - 1 - k] =
    vox[b, i, j, k]`` (x and y swapped, z reversed).

    Args:
      face_vertices: ``[B, F, 3, 3]`` float world coordinates of each face's corners, meshes
        expected inside ``[-0.5, 0.5]^3``. float64 is computed in float64, anything narrower
        than float32 in float32 (SoftRas evaluates float32).
      size: grid resolution (static).
      chunk_size: about how many (triangle, column) pairs one ``while_loop`` iteration tests
        (static; memory vs. loop overhead; the result does not depend on it). Default:
        ``16 * B * F`` rounded up to a power of two and clipped to ``[2**12, 2**16]``.
      face_counts: None (every face is real), or ``[B]`` integer array (concrete or traced,
        e.g. under ``jit``): the number of real faces of each mesh, the first ones of its row.
        Concrete values must lie in ``[0, F]``; traced ones are not checked and act clipped to
        it.

    Returns:
      ``[B, size, size, size]`` bool occupancy in the NMR axis order. Not differentiable.

    Raises:
      ValueError: ``face_vertices`` not ``[B, F, 3, 3]`` float, a bad ``size`` or
        ``chunk_size``, or ``face_counts`` not of shape ``[B]``, not integers, or (concrete)
        outside ``[0, F]``.
    """
    fv = jnp.asarray(face_vertices)
    if fv.ndim != 4 or fv.shape[-2:] != (3, 3):
        raise ValueError(f"face_vertices must have shape [B, F, 3, 3], got {fv.shape}")
    if not jnp.issubdtype(fv.dtype, jnp.floating):
        raise ValueError(f"face_vertices must be floating point, got dtype {fv.dtype}")
    if not isinstance(size, int) or size < 1:
        raise ValueError(f"size must be a positive int, got {size!r}")
    b, f = fv.shape[:2]
    if chunk_size is None:
        want = 16 * b * f
        chunk_size = min(max(1 << max(want - 1, 0).bit_length(), 1 << 12), 1 << 16)
    if not isinstance(chunk_size, int) or not 1 <= chunk_size <= _INDEX_LIMIT:
        raise ValueError(f"chunk_size must be an int in [1, 2**30], got {chunk_size!r}")
    if face_counts is not None:
        face_counts = _check_face_counts(face_counts, b, f)
    per_mesh = max(3 * f, 4 * size**3)  # int32 triangle and voxel indices per mesh
    if per_mesh > _INDEX_LIMIT:
        raise ValueError(f"{f} faces at size {size} overflow int32 indexing")
    step = max(_INDEX_LIMIT // per_mesh, 1)
    if b <= step:
        return _voxelize(fv, size, chunk_size, WINDOWS, face_counts)
    # batches too large for int32 indices are voxelised a slice at a time
    return jnp.concatenate(
        [
            _voxelize(
                fv[i : i + step],
                size,
                chunk_size,
                WINDOWS,
                None if face_counts is None else face_counts[i : i + step],
            )
            for i in range(0, b, step)
        ]
    )


def _check_face_counts(face_counts: ArrayLike, b: int, f: int) -> jax.Array:
    """``face_counts`` checked, as a ``[B]`` int32 array clipped to ``[0, F]``."""
    counts = jnp.asarray(check_face_counts(face_counts, b, f))
    # clipped first: a traced count beyond int32 must not wrap around
    return jnp.clip(counts, 0, f).astype(jnp.int32)


@functools.partial(jax.jit, static_argnames=("size", "chunk_size", "windows"))
def _voxelize(
    fv: jax.Array,
    size: int,
    chunk_size: int,
    windows: tuple[int, ...],
    face_counts: jax.Array | None = None,
) -> jax.Array:
    vox = fill_enclosed(_surface(fv, size, chunk_size, windows, face_counts))  # [B, x, y, z]
    return jnp.flip(jnp.transpose(vox, (0, 2, 1, 3)), axis=3)


def surface_voxels(
    face_vertices: jax.Array,
    size: int,
    chunk_size: int = 1 << 16,
    face_counts: ArrayLike | None = None,
) -> jax.Array:
    """Surface voxels (steps 1-3 of the module docstring) of ``face_vertices`` ``[B, F, 3, 3]``
    float: ``[B, size, size, size]`` bool indexed ``[b, i, j, k]`` (x, y, z order, no NMR
    transpose); ``chunk_size`` and ``face_counts`` (``[B]`` int) as in ``voxelize``."""
    fv = jnp.asarray(face_vertices)
    if face_counts is not None:
        face_counts = _check_face_counts(face_counts, *fv.shape[:2])
    return _surface(fv, size, chunk_size, WINDOWS, face_counts)


def _mul(a: jax.Array, b: jax.Array, zero: jax.Array) -> jax.Array:
    """The rounded product ``a * b`` that XLA cannot contract with its consumer into a fused
    multiply-add: ``zero`` is a zero XLA cannot see to be one (``0 * data``), so the sum stays,
    and a contracted ``fma(a, b, zero)`` rounds ``a * b`` once, as a plain multiply does. (A
    literal ``+ 0.0`` is simplified away.)"""
    return a * b + zero


def _to_units(fv: jax.Array, size: int) -> jax.Array:
    """``((fv * (size - 1)) / size + 0.5) * size`` with each operation rounded in the dtype of
    ``fv`` (the original's ``faces * 1. * (32. - 1) / 32. + 0.5`` then ``faces *= size``;
    ``* 1.`` is exact and omitted). The division is by a materialised array: XLA turns a
    division by a broadcast constant into a multiplication by its reciprocal."""
    zero = jnp.where(jnp.isfinite(fv), fv, 0) * 0
    divisor = lax.optimization_barrier(jnp.full(fv.shape, size, fv.dtype))
    scaled = _mul(fv, jnp.asarray(size - 1, fv.dtype), zero) / divisor
    return _mul(scaled + jnp.asarray(0.5, fv.dtype), jnp.asarray(size, fv.dtype), zero)


def _column_test(
    tri: dict[str, jax.Array], y: jax.Array, x: jax.Array, size: int
) -> tuple[jax.Array, jax.Array]:
    """The original's per-(triangle, column) test.

    Args:
      tri: per-triangle values in the projection's frame (``_FIELDS``), each broadcastable to
        ``y``'s shape, finite: ``y0, x0, z0`` (corner 0), ``y1d, x1d, z1d, y2d, x2d, z2d``
        (corners 1, 2 minus corner 0) and ``det`` (``x1d y2d - x2d y1d``, nonzero), all float.
      y, x: int32 integer columns (same shape), inside ``[0, size)``.
      size: grid resolution.

    Returns:
      ``(hit, depth)``: bool, the column passes the inside test and its depth voxel is in
      ``[0, size)``; int32 depth voxel (0 where not hit). Same shape as ``y``.
    """
    dt = tri["y0"].dtype
    zero = tri["y0"] * 0
    ypd = y.astype(dt) - tri["y0"]
    xpd = x.astype(dt) - tri["x0"]
    # a materialised determinant: XLA rewrites a division by a broadcast into a multiplication
    # by the reciprocal, which rounds differently
    det = lax.optimization_barrier(jnp.broadcast_to(tri["det"], ypd.shape))
    t1 = (_mul(tri["y2d"], xpd, zero) - _mul(tri["x2d"], ypd, zero)) / det
    t2 = (_mul(tri["x1d"], ypd, zero) - _mul(tri["y1d"], xpd, zero)) / det  # -y1d xpd + x1d ypd
    inside = ~(t1 < 0) & ~(t2 < 0) & ~(1 < t1 + t2)  # the original's skip conditions, negated
    depth = jnp.floor((_mul(t1, tri["z1d"], zero) + _mul(t2, tri["z2d"], zero)) + tri["z0"])
    hit = inside & (depth >= 0) & (depth < size)  # in float: no int overflow; NaN -> False
    return hit, jnp.where(hit, depth, 0).astype(jnp.int32)


def _surface(
    fv: jax.Array,
    size: int,
    chunk_size: int,
    windows: tuple[int, ...],
    face_counts: jax.Array | None = None,
) -> jax.Array:
    """``voxelize``'s surface voxels, ``[B, size, size, size]`` bool indexed ``[b, c0, c1, c2]``;
    ``windows``: increasing block sides of the column passes; ``face_counts``: None or ``[B]``
    int, the number of real faces of each mesh (the rest are skipped)."""
    dt = jnp.promote_types(fv.dtype, jnp.float32)
    return _surface_units(_to_units(fv.astype(dt), size), size, chunk_size, windows, face_counts)


def _surface_units(
    p: jax.Array,
    size: int,
    chunk_size: int,
    windows: tuple[int, ...],
    face_counts: jax.Array | None = None,
) -> jax.Array:
    """``_surface`` of corners already in voxel units, ``p`` ``[B, F, 3, 3]`` float32/64."""
    b, f = p.shape[:2]
    dt = p.dtype
    if b * f == 0:
        return jnp.zeros((b, size, size, size), bool)
    n = b * f
    if face_counts is None:
        real = jnp.ones((b, f), bool)
    else:
        real = jnp.arange(f, dtype=jnp.int32)[None, :] < jnp.asarray(face_counts)[:, None]
    finite = jnp.all(jnp.isfinite(p), axis=(2, 3)).reshape(n)
    # a padding face is treated like a non-finite one: no pass tests it (below), and its
    # coordinates are zeroed so that nothing computed from them is NaN or overflows
    used = finite & real.reshape(n)
    pc = jnp.where(used[:, None, None], p.reshape(n, 3, 3), 0)

    # one projected triangle per (axis, mesh, face): m = axis * B * F + b * F + f, each value a
    # [M] array; corner k's (y, x, depth) are the coordinates _ORDER[axis]
    def coord(role: int, k: int) -> jax.Array:
        return jnp.concatenate([pc[:, k, o[role]] for o in _ORDER])

    y, x, z = ([coord(r, k) for k in range(3)] for r in range(3))
    tri = {"y0": y[0], "x0": x[0], "z0": z[0]}
    tri.update(y1d=y[1] - y[0], x1d=x[1] - x[0], z1d=z[1] - z[0])
    tri.update(y2d=y[2] - y[0], x2d=x[2] - x[0], z2d=z[2] - z[0])
    zero = tri["y0"] * 0
    tri["det"] = _mul(tri["x1d"], tri["y2d"], zero) - _mul(tri["x2d"], tri["y1d"], zero)
    live = jnp.tile(used, 3) & (tri["det"] != 0)  # the original skips a zero determinant

    # integer columns within MARGIN of the projection's bounding box, clipped to the grid
    lo_y, hi_y = (
        jnp.minimum(jnp.minimum(y[0], y[1]), y[2]),
        jnp.maximum(jnp.maximum(y[0], y[1]), y[2]),
    )
    lo_x, hi_x = (
        jnp.minimum(jnp.minimum(x[0], x[1]), x[2]),
        jnp.maximum(jnp.maximum(x[0], x[1]), x[2]),
    )
    first_y = jnp.clip(jnp.ceil(lo_y - MARGIN), 0, size)
    first_x = jnp.clip(jnp.ceil(lo_x - MARGIN), 0, size)
    extent = (
        jnp.maximum(
            jnp.clip(jnp.floor(hi_y + MARGIN), -1, size - 1) - first_y,
            jnp.clip(jnp.floor(hi_x + MARGIN), -1, size - 1) - first_x,
        )
        + 1
    )  # columns per side of the block (<= 0: none in the grid)

    # Is the block exact? At a column rho away from corner 0 (in y and x) the rounded t1, t2 and
    # t1 + t2 are within slope * rho + 8u of their exact values (u the unit roundoff); a column
    # outside the box by delta >= MARGIN has rho <= span + delta and an exact barycentric below
    # -delta / (2 span). Both sides are linear in delta: compare them at MARGIN and their
    # slopes, with a factor 4 to spare (and the rounding of the coordinates themselves).
    u = jnp.finfo(dt).eps / 2
    span = jnp.maximum(hi_y - lo_y, hi_x - lo_x)
    coord_max = jnp.maximum(jnp.maximum(jnp.abs(lo_y), jnp.abs(hi_y)),
                            jnp.maximum(jnp.abs(lo_x), jnp.abs(hi_x)))  # fmt: skip
    edges = jnp.abs(tri["y1d"]) + jnp.abs(tri["x1d"]) + jnp.abs(tri["y2d"]) + jnp.abs(tri["x2d"])
    cond = jnp.abs(tri["x1d"] * tri["y2d"]) + jnp.abs(tri["x2d"] * tri["y1d"])
    det_lo = jnp.abs(tri["det"]) - 4 * u * cond  # <= |exact determinant|
    slope = edges * (2 * (6 * u + 4 * u * cond / det_lo) + 4 * u) / det_lo
    at_margin = 4 * (slope * (span + MARGIN) + 8 * u) + u * (3 * span + coord_max) / span
    exact_box = (det_lo > 0) & (at_margin < MARGIN / (4 * span)) & (16 * slope * span < 1)

    # pass of each projected triangle: the smallest block that holds its box, the whole grid
    # (origin 0, side size) if none does or the box is not exact, or none (nothing to test)
    n_pass = len(windows) + 1
    key = jnp.full(extent.shape, n_pass - 1, jnp.int32)
    for i, w in reversed(list(enumerate(windows))):
        key = jnp.where(exact_box & (extent <= w), i, key)
    key = jnp.where(~live | exact_box & (extent <= 0), n_pass, key)
    whole = key == n_pass - 1
    first = jnp.stack([jnp.where(whole, 0, first_y), jnp.where(whole, 0, first_x)], 1)
    # one counting sort groups the triangles of each pass into a contiguous run of ``order``
    onehot = (key[:, None] == jnp.arange(n_pass, dtype=jnp.int32)).astype(jnp.int32)
    counts = jnp.sum(onehot, axis=0)
    starts = jnp.cumsum(counts) - counts
    rank = jnp.take_along_axis(jnp.cumsum(onehot, axis=0), jnp.minimum(key, n_pass - 1)[:, None], 1)
    dest = jnp.where(key < n_pass, starts[jnp.minimum(key, n_pass - 1)] + rank[:, 0] - 1, 3 * n)
    order = (
        jnp.zeros((3 * n,), jnp.int32).at[dest].set(jnp.arange(3 * n, dtype=jnp.int32), mode="drop")
    )

    # every corner of a real face marks floor(p) (a non-finite corner marks nothing)
    n_hit = 3 * b * size**3  # hit grids [axis, b, y, x, depth], then the corner grid [b, c0..2]
    corner = jnp.floor(p.reshape(b, f * 3, 3))
    in_grid = jnp.all((corner >= 0) & (corner < size), axis=-1)  # False for NaN
    in_grid &= jnp.repeat(real, 3, axis=1)  # [b, f * 3]: face f's corners are 3 f .. 3 f + 2
    ijk = jnp.where(in_grid[..., None], corner, 0).astype(jnp.int32)
    cflat = n_hit + ((jnp.arange(b)[:, None] * size + ijk[..., 0]) * size + ijk[..., 1]) * size
    cflat = jnp.where(in_grid, cflat + ijk[..., 2], n_hit + b * size**3).reshape(-1)
    grid = jnp.zeros((n_hit + b * size**3,), bool).at[cflat].set(True, mode="drop")

    fields = jnp.stack([tri[name] for name in _FIELDS], axis=1)  # [M, 10]
    first = first.astype(jnp.int32)
    for i, w in enumerate(windows + (size,)):
        run = (starts[i], counts[i])
        grid = _block_pass(grid, order, run, fields, first, f, w, size, chunk_size)

    hits = grid[:n_hit].reshape(3, b, size, size, size)
    # a hit at column (y, x) marks voxels (y, x), (y - 1, x), (y, x - 1), (y - 1, x - 1)
    padded = jnp.pad(hits, [(0, 0), (0, 0), (0, 1), (0, 1), (0, 0)])
    around = padded[:, :, :-1, :-1] | padded[:, :, 1:, :-1] | padded[:, :, :-1, 1:]
    around |= padded[:, :, 1:, 1:]
    surface = grid[n_hit:].reshape(b, size, size, size)
    for a in range(3):
        surface |= jnp.transpose(around[a], _BACK[a])
    return surface


def _block_pass(
    grid: jax.Array,
    order: jax.Array,
    run: tuple[jax.Array, jax.Array],
    fields: jax.Array,
    first: jax.Array,
    faces: int,
    w: int,
    size: int,
    chunk_size: int,
) -> jax.Array:
    """Tests a run of projected triangles against ``w x w`` columns each and marks the hits.

    Args:
      grid: ``[3 B size^3 + B size^3]`` bool, the hit grids ``[axis, b, y, x, depth]`` then the
        corner grid; returned with the new hits set.
      order: ``[M]`` int32 projected triangle ids grouped by pass.
      run: int32 scalars ``(start, count)``: this pass's triangles are
        ``order[start : start + count]``.
      fields: ``[M, 10]`` float, ``_FIELDS`` of each projected triangle.
      first: ``[M, 2]`` int32, the first column ``(y, x)`` of each triangle's block.
      faces: faces per mesh ``F`` (triangle ``m``'s hit grid is ``m // F = axis * B + b``).
      w: block side; size: grid resolution; chunk_size: about how many (triangle, column) pairs
        one loop iteration tests (all static).

    ``chunk_size // w^2`` triangles per ``while_loop`` iteration, so the work follows the size of
    the run; the loop boundary also keeps XLA from recomputing per-triangle values per column.
    """
    start, count = run
    per_iter = max(min(chunk_size // (w * w), order.shape[0]), 1)
    # padded so that a slice near the end never clamps its start (dynamic_slice would)
    order = jnp.concatenate([order, jnp.zeros((per_iter,), jnp.int32)])
    k = jnp.arange(w, dtype=jnp.int32)

    def body(carry: tuple[jax.Array, jax.Array]) -> tuple[jax.Array, jax.Array]:
        i, grid = carry
        ids = lax.dynamic_slice(order, (start + i,), (per_iter,))
        valid = i + jnp.arange(per_iter, dtype=jnp.int32) < count
        vals = fields[ids]
        tri = {name: vals[:, j, None, None] for j, name in enumerate(_FIELDS)}
        ys = first[ids, 0, None, None] + k[None, :, None]
        xs = first[ids, 1, None, None] + k[None, None, :]
        ys, xs = jnp.broadcast_arrays(ys, xs)  # [per_iter, w, w]
        hit, depth = _column_test(tri, ys, xs, size)
        hit &= valid[:, None, None] & (ys < size) & (xs < size)
        flat = (((ids // faces)[:, None, None] * size + ys) * size + xs) * size + depth
        flat = jnp.where(hit, flat, grid.size).reshape(-1)
        return i + per_iter, grid.at[flat].set(True, mode="drop")

    _, grid = lax.while_loop(lambda c: c[0] < count, body, (jnp.int32(0), grid))
    return grid


def _pack(x: jax.Array) -> jax.Array:
    """``[B, X, Y, Z]`` bool -> ``[B, X, Y, ceil(Z / 32)]`` uint32, bit ``k % 32`` of word
    ``k // 32`` holding ``x[..., k]``."""
    n_words = -(-x.shape[-1] // 32)
    x = jnp.pad(x, [(0, 0)] * 3 + [(0, n_words * 32 - x.shape[-1])])
    bits = x.reshape(x.shape[:3] + (n_words, 32)).astype(jnp.uint32)
    return jnp.sum(bits << jnp.arange(32, dtype=jnp.uint32), axis=-1, dtype=jnp.uint32)


def _unpack(words: jax.Array, z: int) -> jax.Array:
    """Inverse of ``_pack``: ``[B, X, Y, W]`` uint32 -> ``[B, X, Y, z]`` bool."""
    bits = (words[..., None] >> jnp.arange(32, dtype=jnp.uint32)) & 1
    return bits.reshape(words.shape[:3] + (-1,))[..., :z].astype(bool)


def _dilate6(x: jax.Array) -> jax.Array:
    """Packed ``x`` (``_pack``) OR its 6 face neighbours (no wrap-around; bits past the grid's
    last voxel may be set and must be masked by the caller)."""
    one = jnp.uint32(1)
    # along z: shift within each word and carry the end bit across neighbouring words
    up = x << one
    up = up.at[..., 1:].set(up[..., 1:] | (x[..., :-1] >> jnp.uint32(31)))
    down = x >> one
    down = down.at[..., :-1].set(down[..., :-1] | (x[..., 1:] << jnp.uint32(31)))
    p = jnp.pad(x, [(0, 0), (1, 1), (1, 1), (0, 0)])
    return x | up | down | p[:, :-2, 1:-1] | p[:, 2:, 1:-1] | p[:, 1:-1, :-2] | p[:, 1:-1, 2:]


def fill_enclosed(surface: jax.Array, steps_per_check: int = 4) -> jax.Array:
    """``surface`` ``[B, X, Y, Z]`` bool plus every empty voxel that cannot be reached from the
    grid's border through empty voxels (6-connected).

    The outside grows from the empty border voxels by ``steps_per_check`` 6-neighbour dilations
    (restricted to empty voxels) per ``while_loop`` iteration, until an iteration changes
    nothing: the number of steps is the longest shortest path from the border through empty
    voxels (about 7 for a sphere filling a 32^3 grid; more for deep concavities). The grids are
    bit-packed along z (32 voxels per uint32 word), so a dilation touches ``B X Y Z / 32`` words.
    """
    _, nx, ny, nz = surface.shape
    if surface.size == 0:
        return surface
    empty = _pack(~surface)  # bits past z = nz are 0: never empty, never outside
    border = np.zeros((1, nx, ny, nz), bool)  # static
    border[:, [0, -1]] = border[:, :, [0, -1]] = border[..., [0, -1]] = True
    outside = empty & _pack(jnp.asarray(border))

    def body(carry: tuple[jax.Array, jax.Array]) -> tuple[jax.Array, jax.Array]:
        outside, _ = carry
        new = outside
        for _ in range(steps_per_check):
            new = _dilate6(new) & empty
        return new, jnp.any(new != outside)

    outside, _ = lax.while_loop(lambda c: c[1], body, (outside, jnp.bool_(True)))
    return ~_unpack(outside, nz)


def voxel_iou(a: ArrayLike, b: ArrayLike) -> jax.Array:
    """Intersection over union of occupancy grids: ``|a and b| / |a or b|`` over the last three
    axes.

    Args:
      a, b: ``[B, X, Y, Z]`` (any ``[..., X, Y, Z]``) bool or {0, 1} grids; nonzero is occupied.

    Returns:
      ``[B]`` float32 IoU. Two empty grids are identical and get IoU 1 (not 0/0 = NaN).
    """
    a, b = jnp.asarray(a), jnp.asarray(b)
    if a.shape != b.shape or a.ndim < 3:
        raise ValueError(f"a and b must have the same shape [B, X, Y, Z], got {a.shape}, {b.shape}")
    a, b = a.astype(bool), b.astype(bool)
    axes = (-3, -2, -1)
    inter = jnp.sum(a & b, axis=axes, dtype=jnp.int32).astype(jnp.float32)
    union = jnp.sum(a | b, axis=axes, dtype=jnp.int32).astype(jnp.float32)
    return jnp.where(union > 0, inter / jnp.maximum(union, 1.0), 1.0)
