"""Solid voxelisation of triangle meshes and voxel IoU (SoftRas's 3D IoU evaluation).

``voxelize`` marks the voxels the surface passes through, then fills everything that cannot be
reached from the grid's border through empty voxels, and finally applies the axis convention of
the ShapeNet / NMR voxel data set, as SoftRas's evaluation does.

Surface voxels: each triangle is sampled on a barycentric lattice fine enough that neighbouring
samples are less than ``SAMPLE_SPACING`` (0.45) voxel apart, and every voxel holding a sample is
marked. Any point ``q`` of the surface is then within 0.45 voxel of a sample; so where the surface
crosses the segment between the centres of two 6-adjacent voxels, a sample falls in one of those
two voxels, and the 6-connected flood fill cannot leak through a closed surface. (A voxel that a
triangle only clips by a thin sliver may be left unmarked.) The lattice density is per triangle
(``n = floor(longest edge / 0.45) + 1`` subdivisions, ``(n + 1)(n + 2) / 2`` samples), so the
number of samples depends on the data; to keep shapes static under ``jit`` the samples of the
whole batch are enumerated by a global index and processed ``chunk_size`` at a time in a
``lax.while_loop``. Triangles far larger than the grid are covered the same way, at a cost that
grows with their area; ``n`` is capped at 8192 per triangle (and lowered for everything if the
batch would need more than ``2**30`` samples), beyond which the spacing grows.

Flood fill: the outside starts as the empty border voxels and grows by 6-neighbour dilation
restricted to empty voxels, in a ``lax.while_loop`` (two dilations per convergence check) until
nothing changes. The number of iterations is data dependent: four for a sphere filling a 32^3
grid, more for deep concavities (one dilation per voxel of the longest path from the border).
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
from jax import lax
from jax.typing import ArrayLike

SAMPLE_SPACING = 0.45  # voxel units; must be < 0.5 for the watertightness argument above
_MAX_SUBDIV = 8192  # (n + 1)(n + 2) / 2 < 2**26 samples per triangle
_MAX_SAMPLES = 2**30  # int32-safe global sample index


def voxelize(
    face_vertices: ArrayLike, size: int = 32, *, chunk_size: int | None = None
) -> jax.Array:
    """Solid occupancy grid of a batch of meshes (SoftRas's ``voxelization`` for 3D IoU).

    Coordinates are mapped to voxel units by ``p = (v * (size - 1) / size + 0.5) * size``, so the
    cube ``[-0.5, 0.5]^3`` maps to ``[0.5, size - 0.5]^3``; voxel ``(i, j, k)`` is the unit cube
    ``[i, i+1) x [j, j+1) x [k, k+1)`` with ``i`` along x, ``j`` along y, ``k`` along z. A voxel
    is occupied if the surface passes through it (see the module docstring for the sampling) or it
    cannot be reached from the grid's border through empty voxels (6-connected). Parts of the mesh
    outside the grid are ignored. Triangles with a non-finite coordinate are skipped; degenerate
    (zero-area) triangles mark the voxels they touch.

    The result then follows the ShapeNet / NMR voxel convention: ``out[b, j, i, size - 1 - k] =
    vox[b, i, j, k]`` (x and y swapped, z reversed).

    Args:
      face_vertices: ``[B, F, 3, 3]`` float world coordinates of each face's corners, meshes
        expected inside ``[-0.5, 0.5]^3``.
      size: grid resolution (static).
      chunk_size: samples processed per loop iteration (static; memory vs. loop overhead).
        Default: ``16 * B * F`` (about one iteration for meshes whose triangles span ~2 voxels)
        rounded up to a power of two and clipped to ``[2**12, 2**18]``.

    Returns:
      ``[B, size, size, size]`` bool occupancy in the NMR axis order. Not differentiable.
    """
    fv = jnp.asarray(face_vertices)
    if fv.ndim != 4 or fv.shape[-2:] != (3, 3):
        raise ValueError(f"face_vertices must have shape [B, F, 3, 3], got {fv.shape}")
    if not jnp.issubdtype(fv.dtype, jnp.floating):
        raise ValueError(f"face_vertices must be floating point, got dtype {fv.dtype}")
    if not isinstance(size, int) or size < 1:
        raise ValueError(f"size must be a positive int, got {size!r}")
    if chunk_size is None:
        want = 16 * fv.shape[0] * fv.shape[1]
        chunk_size = min(max(1 << max(want - 1, 0).bit_length(), 1 << 12), 1 << 18)
    if not isinstance(chunk_size, int) or chunk_size < 1:
        raise ValueError(f"chunk_size must be a positive int, got {chunk_size!r}")
    if fv.shape[0] * size**3 >= 2**31:
        raise ValueError(f"batch {fv.shape[0]} x {size}^3 voxels overflows int32 indexing")
    return _voxelize(fv, size, chunk_size)


@functools.partial(jax.jit, static_argnames=("size", "chunk_size"))
def _voxelize(fv: jax.Array, size: int, chunk_size: int) -> jax.Array:
    vox = fill_enclosed(surface_voxels(fv, size, chunk_size))  # [B, x, y, z]
    return jnp.flip(jnp.transpose(vox, (0, 2, 1, 3)), axis=3)


def surface_voxels(face_vertices: jax.Array, size: int, chunk_size: int = 1 << 16) -> jax.Array:
    """Voxels the triangles pass through, ``[B, size, size, size]`` bool indexed ``[b, i, j, k]``
    (x, y, z order, no NMR transpose); same mapping and sampling as ``voxelize``."""
    b, f = face_vertices.shape[:2]
    dtype = jnp.promote_types(face_vertices.dtype, jnp.float32)
    n_vox = b * size**3
    if b * f == 0:
        return jnp.zeros((b, size, size, size), bool)
    p = (face_vertices.astype(dtype) * ((size - 1) / size) + 0.5) * size
    p = p.reshape(b * f, 3, 3)
    p0, e1, e2 = p[:, 0], p[:, 1] - p[:, 0], p[:, 2] - p[:, 0]
    longest = jnp.sqrt(
        jnp.maximum(
            jnp.maximum(jnp.sum(e1 * e1, -1), jnp.sum(e2 * e2, -1)),
            jnp.sum((e2 - e1) ** 2, -1),
        )
    )
    finite = jnp.all(jnp.isfinite(p), axis=(1, 2))
    n = jnp.minimum(jnp.floor(jnp.where(finite, longest, 0.0) / SAMPLE_SPACING) + 1, _MAX_SUBDIV)
    # coarser everywhere if the batch would need more samples than an int32 index can count
    total = jnp.sum(jnp.where(finite, (n + 1) * (n + 2) / 2, 0.0))
    n = jnp.maximum(jnp.floor(n * jnp.minimum(1.0, jnp.sqrt(_MAX_SAMPLES / total))), 1.0)
    n = n.astype(jnp.int32)
    count = jnp.where(finite, (n + 1) * (n + 2) // 2, 0)
    cum = jnp.cumsum(count)
    total = cum[-1]

    def body(carry):
        start, grid = carry
        s = start + jnp.arange(chunk_size, dtype=jnp.int32)
        face = jnp.minimum(jnp.searchsorted(cum, s, side="right"), b * f - 1).astype(jnp.int32)
        local = s - (cum[face] - count[face])
        # row r of the lattice holds r + 1 samples and starts at r (r + 1) / 2
        r = jnp.floor((jnp.sqrt(8.0 * local.astype(jnp.float32) + 1.0) - 1.0) / 2.0)
        r = r.astype(jnp.int32)
        r = jnp.where((r + 1) * (r + 2) // 2 <= local, r + 1, r)
        r = jnp.where(r * (r + 1) // 2 > local, r - 1, r)
        m = local - r * (r + 1) // 2  # 0..r
        nf = n[face].astype(dtype)
        u = ((r - m).astype(dtype) / nf)[:, None]
        w = (m.astype(dtype) / nf)[:, None]
        q = p0[face] + u * e1[face] + w * e2[face]
        ok = (s < total) & jnp.all((q >= 0) & (q < size), axis=-1)
        ijk = jnp.clip(jnp.floor(q), 0, size - 1).astype(jnp.int32)
        flat = ((face // f * size + ijk[:, 0]) * size + ijk[:, 1]) * size + ijk[:, 2]
        flat = jnp.where(ok, flat, n_vox)
        return start + chunk_size, grid.at[flat].set(True, mode="drop")

    _, grid = lax.while_loop(
        lambda c: c[0] < total, body, (jnp.int32(0), jnp.zeros((n_vox,), bool))
    )
    return grid.reshape(b, size, size, size)


def _dilate6(x: jax.Array) -> jax.Array:
    """``x`` ``[B, X, Y, Z]`` bool OR its 6 face neighbours (no wrap-around)."""
    p = jnp.pad(x, [(0, 0), (1, 1), (1, 1), (1, 1)])
    c = slice(1, -1)
    lo, hi = slice(None, -2), slice(2, None)
    return (
        x
        | p[:, lo, c, c]
        | p[:, hi, c, c]
        | p[:, c, lo, c]
        | p[:, c, hi, c]
        | p[:, c, c, lo]
        | p[:, c, c, hi]
    )


def fill_enclosed(surface: jax.Array, steps_per_check: int = 2) -> jax.Array:
    """``surface`` ``[B, X, Y, Z]`` bool plus every empty voxel that cannot be reached from the
    grid's border through empty voxels (6-connected).

    The outside grows from the empty border voxels by ``steps_per_check`` 6-neighbour dilations
    (restricted to empty voxels) per ``while_loop`` iteration, until an iteration changes
    nothing: the number of steps is the longest shortest path from the border through empty
    voxels (about 7 for a sphere filling a 32^3 grid; more for deep concavities)."""
    empty = ~surface
    border = jnp.ones(surface.shape[1:], bool).at[1:-1, 1:-1, 1:-1].set(False)

    def body(carry):
        outside, _ = carry
        new = outside
        for _ in range(steps_per_check):
            new = _dilate6(new) & empty
        return new, jnp.any(new != outside)

    outside, _ = lax.while_loop(lambda c: c[1], body, (empty & border, jnp.bool_(True)))
    return ~outside


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
