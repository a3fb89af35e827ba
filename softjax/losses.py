"""Losses of SoftRas's single-view reconstruction: silhouette IoU and the mesh regularisers.

``iou_loss`` and ``multiview_iou_loss`` are plain functions of arrays. The two mesh regularisers,
``laplacian_loss`` and ``flatten_loss``, depend only on a template's connectivity: they are built
once from the faces (in NumPy, so the faces must be concrete, not traced) and return a pure JAX
function of the vertices that composes with ``jit``, ``grad`` and ``vmap``. Neither builds a
dense ``V x V`` matrix.

Both also take a padded batch of different meshes: ``faces [B, F, 3]`` with ``face_counts [B]``
(mesh ``b`` uses ``faces[b, :face_counts[b]]``; the rest is padding and is never read). The loss
of ``vertices [B, V, 3]`` is then ``[B]``, entry ``b`` the loss of mesh ``b`` alone.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import jax
import jax.numpy as jnp
import numpy as np
from jax.typing import ArrayLike

from softjax.concrete import check_face_counts, concrete_value

VertexLoss = Callable[[ArrayLike], jax.Array]


def _as_float(x: ArrayLike) -> jax.Array:
    """``x`` as a floating array of at least float32 precision."""
    x = jnp.asarray(x)
    return x.astype(jnp.promote_types(x.dtype, jnp.float32))


def iou_loss(predict: ArrayLike, target: ArrayLike, eps: float = 1e-6) -> jax.Array:
    """Soft silhouette IoU loss: ``1 - mean_b(sum(p t) / (sum(p + t - p t) + eps))``.

    Args:
      predict: ``[B, H, W]`` float silhouettes with values in [0, 1] (any ``[B, ...]`` shape
        works: the sums run over every axis but the first).
      target: same shape as ``predict`` (float, int or bool; values in [0, 1]).
      eps: added to each union so that two empty silhouettes give IoU 0 (loss 1), not NaN.

    Returns:
      A scalar (float32, or float64 for float64 inputs). 0 for a perfect overlap, 1 for
      disjoint silhouettes.
    """
    p, t = _as_float(predict), _as_float(target)
    if p.shape != t.shape or p.ndim < 2:
        raise ValueError(
            f"predict and target must have the same shape [B, H, W], got {p.shape} and {t.shape}"
        )
    axes = tuple(range(1, p.ndim))
    intersect = jnp.sum(p * t, axis=axes)
    union = jnp.sum(p + t - p * t, axis=axes) + eps
    return 1.0 - jnp.mean(intersect / union)


def _silhouette(x: ArrayLike, name: str) -> jax.Array:
    x = jnp.asarray(x)
    if x.ndim == 4 and x.shape[-1] == 4:
        return x[..., 3]
    if x.ndim == 3:
        return x
    raise ValueError(
        f"{name} must be [B, H, W, 4] RGBA images or [B, H, W] silhouettes, got {x.shape}"
    )


def multiview_iou_loss(
    predicts: Sequence[ArrayLike], targets_a: ArrayLike, targets_b: ArrayLike
) -> jax.Array:
    """SoftRas's two-view silhouette loss (each view rendered twice, e.g. by two renderers).

    ``(iou(p0, a) + iou(p1, a) + iou(p2, b) + iou(p3, b)) / 4`` with ``iou = iou_loss`` applied to
    the alpha channels.

    Args:
      predicts: a sequence of 4 rendered images ``[B, H, W, 4]`` (RGBA channels-last; the alpha
        channel, index 3, is the silhouette), or a stacked ``[4, B, H, W, 4]`` array. ``[B, H, W]``
        silhouettes are accepted too.
      targets_a: ``[B, H, W, 4]`` RGBA images (alpha used) or ``[B, H, W]`` silhouettes of the
        first view, compared with ``predicts[0]`` and ``predicts[1]``.
      targets_b: the same for the second view, compared with ``predicts[2]`` and ``predicts[3]``.

    Returns:
      A scalar loss in [0, 1].
    """
    if len(predicts) != 4:
        raise ValueError(f"predicts must hold 4 images, got {len(predicts)}")
    ps = [_silhouette(p, f"predicts[{i}]") for i, p in enumerate(predicts)]
    a = _silhouette(targets_a, "targets_a")
    b = _silhouette(targets_b, "targets_b")
    return (iou_loss(ps[0], a) + iou_loss(ps[1], a) + iou_loss(ps[2], b) + iou_loss(ps[3], b)) / 4


def _check_faces(faces: ArrayLike, num_vertices: int | None = None) -> np.ndarray:
    """Concrete ``[F, 3]`` int64 faces (a leading batch axis of size 1 is dropped)."""
    f = concrete_value(faces)
    if f is None:
        raise ValueError("faces must be concrete (NumPy or a non-traced jax array), not traced")
    if f.ndim == 3 and f.shape[0] == 1:
        f = f[0]
    if f.ndim != 2 or f.shape[1] != 3:
        raise ValueError(f"faces must have shape [F, 3] or [1, F, 3], got {f.shape}")
    if f.size and not np.issubdtype(f.dtype, np.integer):
        raise ValueError(f"faces must be integer vertex indices, got dtype {f.dtype}")
    f = f.astype(np.int64)
    if f.size and f.min() < 0:
        raise ValueError(f"faces hold negative vertex indices (min {f.min()})")
    if num_vertices is not None and f.size and f.max() >= num_vertices:
        raise ValueError(f"faces index vertex {f.max()} but num_vertices is {num_vertices}")
    return f


def _check_vertices(vertices: ArrayLike, num_vertices: int) -> jax.Array:
    v = jnp.asarray(vertices)
    if v.ndim < 2 or v.shape[-1] != 3 or v.shape[-2] != num_vertices:
        raise ValueError(f"vertices must have shape [B, {num_vertices}, 3], got {v.shape}")
    if not jnp.issubdtype(v.dtype, jnp.floating):
        raise ValueError(f"vertices must be floating point, got dtype {v.dtype}")
    return v


def mesh_edges(faces: ArrayLike) -> np.ndarray:
    """The unique undirected edges ``[E, 2]`` (int64, ``e[:, 0] < e[:, 1]``, sorted) of ``[F, 3]``
    faces; self-edges of degenerate faces (a repeated index) are dropped."""
    f = _check_faces(faces)
    e = np.concatenate([f[:, [0, 1]], f[:, [1, 2]], f[:, [2, 0]]], axis=0)
    e = np.sort(e, axis=1)
    e = e[e[:, 0] != e[:, 1]]
    return np.unique(e, axis=0).reshape(-1, 2)


def _check_face_counts(face_counts: ArrayLike, b: int, f: int) -> np.ndarray:
    """Concrete ``[B]`` int64 face counts, each in ``[0, F]``."""
    counts = check_face_counts(face_counts, b, f, need_concrete=True)
    return np.asarray(counts).astype(np.int64)


def _batched_faces(
    faces: ArrayLike, face_counts: ArrayLike | None, num_vertices: int | None = None
) -> tuple[list[np.ndarray], int] | None:
    """The real faces of each mesh of a batched ``faces [B, F, 3]`` (``face_counts [B]`` or
    every face real), as a list of ``[F_b, 3]`` int64 arrays, and the largest index + 1 among
    them (1 if none); ``None`` for the single-template form (``[F, 3]`` or ``[1, F, 3]`` without
    ``face_counts``). Indices in the padding are never looked at."""
    f = concrete_value(faces)
    if f is None:
        raise ValueError("faces must be concrete (NumPy or a non-traced jax array), not traced")
    if face_counts is None and (f.ndim != 3 or f.shape[0] == 1):
        return None
    if f.ndim != 3 or f.shape[2] != 3:
        raise ValueError(f"padded faces must have shape [B, F, 3], got {f.shape}")
    if f.size and not np.issubdtype(f.dtype, np.integer):
        raise ValueError(f"faces must be integer vertex indices, got dtype {f.dtype}")
    b, n = f.shape[:2]
    counts = np.full(b, n) if face_counts is None else _check_face_counts(face_counts, b, n)
    meshes = [f[i, : counts[i]].astype(np.int64) for i in range(b)]
    stride = 1
    for i, m in enumerate(meshes):
        if m.size == 0:
            continue
        if m.min() < 0:
            raise ValueError(f"faces of mesh {i} hold negative vertex indices (min {m.min()})")
        if num_vertices is not None and m.max() >= num_vertices:
            raise ValueError(
                f"faces of mesh {i} index vertex {m.max()} but num_vertices is {num_vertices}"
            )
        stride = max(stride, int(m.max()) + 1)
    return meshes, stride


def _offset_faces(meshes: list[np.ndarray], stride: int) -> np.ndarray:
    """The meshes' faces as one ``[N, 3]`` mesh: mesh ``b``'s indices shifted by ``b * stride``,
    so that the meshes share no vertex and their edges never mix."""
    shifted = [m + i * stride for i, m in enumerate(meshes)]
    return np.concatenate(shifted, axis=0) if shifted else np.zeros((0, 3), np.int64)


def _check_batch(v: jax.Array, b: int) -> None:
    if v.ndim < 3 or v.shape[-3] != b:
        raise ValueError(
            f"vertices must have shape [B, V, 3] with B = {b} (the meshes of faces), got {v.shape}"
        )


def _neighbour_table(f: np.ndarray, num_vertices: int) -> tuple[np.ndarray, ...]:
    """``(table [V, K] int32, weight [V, K] float64, has_nbrs [V] bool)`` of ``[F, 3]`` faces:
    slot ``s`` of vertex ``i`` holds its ``s``-th neighbour with weight ``1 / deg(i)``, or ``i``
    itself with weight 0 (``K`` the largest degree, at least 1)."""
    e = mesh_edges(f)
    rows = np.concatenate([e[:, 0], e[:, 1]])
    cols = np.concatenate([e[:, 1], e[:, 0]])
    deg = np.bincount(rows, minlength=num_vertices)
    k = max(int(deg.max()) if deg.size else 0, 1)
    order = np.argsort(rows, kind="stable")
    rows, cols = rows[order], cols[order]
    starts = np.concatenate([[0], np.cumsum(deg)[:-1]])
    slot = np.arange(rows.size) - starts[rows]
    table = np.tile(np.arange(num_vertices)[:, None], (1, k))
    weight = np.zeros((num_vertices, k), np.float64)
    table[rows, slot] = cols
    weight[rows, slot] = 1.0 / deg[rows]
    return table.astype(np.int32), weight, deg > 0


def laplacian_loss(
    faces: ArrayLike, num_vertices: int, face_counts: ArrayLike | None = None
) -> VertexLoss:
    """Uniform-weight Laplacian smoothness loss (SoftRas's ``LaplacianLoss``).

    With ``A`` the adjacency of vertices sharing an edge and ``deg`` its row sums,
    ``L = I - A / deg`` and the loss of one mesh is ``sum_{i, c} ((L v)[i, c])^2``, i.e. the sum
    over vertices of ``|v_i - mean of its neighbours|^2``. A vertex that no face uses has no
    neighbours; its row of ``L`` is defined as zero (it does not contribute, whatever its value,
    and its gradient is zero).

    The neighbour table is computed once here in NumPy; the returned function gathers from a
    padded ``[V, max_degree]`` table (no dense matrix).

    Two forms:

    * one template: ``faces [F, 3]`` (or ``[1, F, 3]``), ``face_counts=None``; every mesh the
      loss is applied to has this connectivity.
    * a padded batch of different meshes: ``faces [B, F, 3]``, mesh ``b`` made of the faces
      ``faces[b, :face_counts[b]]`` (all ``F`` when ``face_counts`` is None) and of the vertices
      ``vertices[b]``; the other face slots are padding and are ignored entirely (any values).
      Vertex slots no real face uses (e.g. padding) are unused vertices: they contribute
      nothing. The tables are built per mesh and padded to the largest degree of the batch.

    Args:
      faces: ``[F, 3]`` / ``[1, F, 3]`` or ``[B, F, 3]`` concrete integer vertex indices
        (those of real faces in ``[0, num_vertices)``).
      num_vertices: ``V``, the number of vertices (per mesh, padding included) of the meshes
        the loss is applied to.
      face_counts: None, or ``[B]`` concrete integers in ``[0, F]``: the number of real faces of
        each mesh of ``faces [B, F, 3]``.

    Returns:
      ``loss(vertices)``. One template: ``vertices [B, V, 3]`` float (any leading shape
      ``[..., V, 3]``) -> ``[B]`` per-mesh losses in the vertices' dtype. Padded batch:
      ``vertices [B, V, 3]`` (or ``[..., B, V, 3]``) with the ``B`` of ``faces`` -> ``[B]``
      (``[..., B]``), entry ``b`` the loss of mesh ``b`` alone. Pure JAX: jit / grad / vmap
      friendly.

    Raises:
      ValueError: traced or non-integer faces, an index of a real face out of
        ``[0, num_vertices)``, ``face_counts`` not ``[B]`` integers in ``[0, F]``, or (from
        ``loss``) vertices of the wrong shape or batch size.
    """
    num_vertices = int(num_vertices)
    if num_vertices < 1:
        raise ValueError(f"num_vertices must be >= 1, got {num_vertices}")
    batched = _batched_faces(faces, face_counts, num_vertices)
    if batched is None:
        f, b = _check_faces(faces, num_vertices), None
        n = num_vertices
    else:
        # one graph of B * V vertices: mesh b's vertex i is vertex b * V + i
        f, b = _offset_faces(batched[0], num_vertices), len(batched[0])
        n = b * num_vertices
    table, weight, has_nbrs = _neighbour_table(f, n)

    def loss(vertices: ArrayLike) -> jax.Array:
        v = _check_vertices(vertices, num_vertices)
        if b is not None:
            _check_batch(v, b)
            v = v.reshape(v.shape[:-3] + (n, 3))
        w = jnp.asarray(weight, v.dtype)
        nbr_mean = jnp.sum(v[..., table, :] * w[:, :, None], axis=-2)  # [..., n, 3]
        # a select, not a product with 0: an unused vertex contributes 0 even if it is inf / NaN
        lv = jnp.where(has_nbrs[:, None], v - nbr_mean, 0)
        if b is None:
            return jnp.sum(lv * lv, axis=(-2, -1))
        per_mesh = lv.reshape(lv.shape[:-2] + (b, num_vertices, 3))
        return jnp.sum(per_mesh * per_mesh, axis=(-2, -1))

    return loss


def flatten_edges(faces: ArrayLike) -> np.ndarray:
    """``[E, 4]`` int64 rows ``(v0, v1, v2, v3)`` for every edge ``v0 < v1`` shared by exactly
    two faces: ``v2`` is the third vertex of the first of them (in face order), ``v3`` that of the
    second. Boundary and non-manifold edges (one, or more than two, faces) and degenerate faces
    (a repeated index) are skipped. Rows are sorted by ``(v0, v1)``."""
    f = _check_faces(faces)
    f = f[(f[:, 0] != f[:, 1]) & (f[:, 1] != f[:, 2]) & (f[:, 2] != f[:, 0])]
    if f.shape[0] == 0:
        return np.zeros((0, 4), np.int64)
    a = np.concatenate([f[:, 0], f[:, 1], f[:, 2]])
    b = np.concatenate([f[:, 1], f[:, 2], f[:, 0]])
    opp = np.concatenate([f[:, 2], f[:, 0], f[:, 1]])
    face_id = np.tile(np.arange(f.shape[0]), 3)
    lo, hi = np.minimum(a, b), np.maximum(a, b)
    order = np.lexsort((face_id, hi, lo))  # by (lo, hi), then face order
    lo, hi, opp = lo[order], hi[order], opp[order]
    key = np.stack([lo, hi], axis=1)
    _, first, counts = np.unique(key, axis=0, return_index=True, return_counts=True)
    first = first[counts == 2]
    return np.stack([lo[first], hi[first], opp[first], opp[first + 1]], axis=1)


def _fold(v0: jax.Array, v1: jax.Array, v2: jax.Array, v3: jax.Array, eps: float) -> jax.Array:
    """``(cos + 1)^2`` of each edge ``(v0, v1)`` with opposite corners ``v2``, ``v3`` (each
    ``[..., E, 3]``) -> ``[..., E]``, regularised by ``eps`` as SoftRas does."""
    a1 = v1 - v0
    a1l2 = jnp.sum(a1 * a1, axis=-1)
    a1l1 = jnp.sqrt(a1l2 + eps)

    def orth(b):
        bl2 = jnp.sum(b * b, axis=-1)
        bl1 = jnp.sqrt(bl2 + eps)
        ab = jnp.sum(a1 * b, axis=-1)
        cos = ab / (a1l1 * bl1 + eps)
        sin = jnp.sqrt(1.0 - cos * cos + eps)
        cb = b - a1 * (ab / (a1l2 + eps))[..., None]
        return cb, bl1 * sin

    cb1, cb1l1 = orth(v2 - v0)
    cb2, cb2l1 = orth(v3 - v0)
    cos = jnp.sum(cb1 * cb2, axis=-1) / (cb1l1 * cb2l1 + eps)
    return (cos + 1.0) ** 2


def _check_flatten_vertices(vertices: ArrayLike, v_min: int) -> jax.Array:
    v = jnp.asarray(vertices)
    if v.ndim < 2 or v.shape[-1] != 3 or v.shape[-2] < v_min:
        raise ValueError(f"vertices must have shape [B, V >= {v_min}, 3], got {v.shape}")
    if not jnp.issubdtype(v.dtype, jnp.floating):
        raise ValueError(f"vertices must be floating point, got dtype {v.dtype}")
    return v


def flatten_loss(
    faces: ArrayLike, eps: float = 1e-6, face_counts: ArrayLike | None = None
) -> VertexLoss:
    """SoftRas's ``FlattenLoss``: penalises folds across interior edges.

    For every edge ``(v0, v1)`` shared by exactly two faces (see ``flatten_edges``), with ``v2``
    and ``v3`` the faces' third vertices, ``cb1`` and ``cb2`` are the components of
    ``v2 - v0`` and ``v3 - v0`` orthogonal to the edge, and ``cos`` the cosine between them
    (regularised by ``eps`` exactly as SoftRas does). The loss of one mesh is
    ``sum_edges (cos + 1)^2``: 0 where the two faces are coplanar (``cos = -1``), up to 4 where
    they fold flat onto each other.

    Unlike SoftRas, whose edge list takes only the ``(0, 1)`` and ``(1, 2)`` corner pairs of each
    face (missing an edge that is the ``(2, 0)`` pair of both its faces), every interior edge is
    counted.

    Two forms:

    * one template: ``faces [F, 3]`` (or ``[1, F, 3]``), ``face_counts=None``.
    * a padded batch of different meshes: ``faces [B, F, 3]``, mesh ``b`` made of the faces
      ``faces[b, :face_counts[b]]`` (all ``F`` when ``face_counts`` is None) and of the vertices
      ``vertices[b]``; the other face slots are padding and are ignored entirely (any values).
      Each mesh's edges are found on its own and padded to the largest edge count of the batch
      with masked slots (which read no vertex value, so padded vertices get a zero gradient).

    Args:
      faces: ``[F, 3]`` / ``[1, F, 3]`` or ``[B, F, 3]`` concrete non-negative integer vertex
        indices (only those of real faces are read).
      eps: the regulariser of the norms and divisions.
      face_counts: None, or ``[B]`` concrete integers in ``[0, F]``: the number of real faces of
        each mesh of ``faces [B, F, 3]``.

    Returns:
      ``loss(vertices)``. One template: ``vertices [B, V, 3]`` float (any leading shape
      ``[..., V, 3]``, ``V > max index``) -> ``[B]`` per-mesh losses in the vertices' dtype.
      Padded batch: ``vertices [B, V, 3]`` (or ``[..., B, V, 3]``) with the ``B`` of ``faces``
      and ``V`` above every real face's indices -> ``[B]`` (``[..., B]``), entry ``b`` the loss
      of mesh ``b`` alone. Pure JAX.

    Raises:
      ValueError: traced, non-integer or negative faces, ``face_counts`` not ``[B]`` integers in
        ``[0, F]``, or (from ``loss``) vertices of the wrong shape or batch size.
    """
    batched = _batched_faces(faces, face_counts)
    if batched is None:
        edges = flatten_edges(faces).astype(np.int32)
        v_min = int(edges.max()) + 1 if edges.size else 0

        def loss(vertices: ArrayLike) -> jax.Array:
            v = _check_flatten_vertices(vertices, v_min)
            corners = (v[..., edges[:, i], :] for i in range(4))
            return jnp.sum(_fold(*corners, eps), axis=-1)

        return loss

    meshes, stride = batched
    b = len(meshes)
    # every mesh's edges at once: with indices shifted by b * stride the meshes share no vertex,
    # and flatten_edges' rows, sorted by (v0, v1), come grouped by mesh, each in its own order
    edges = flatten_edges(_offset_faces(meshes, stride))
    mesh_id = edges[:, 0] // stride
    local = edges - (mesh_id * stride)[:, None]
    n_edges = np.bincount(mesh_id, minlength=b)
    e_max = int(n_edges.max()) if b else 0
    slot = np.arange(edges.shape[0]) - (np.cumsum(n_edges) - n_edges)[mesh_id]
    table = np.zeros((b, e_max, 4), np.int32)  # padded slots read vertex 0, then masked
    mask = np.zeros((b, e_max), bool)
    table[mesh_id, slot] = local
    mask[mesh_id, slot] = True
    v_min = int(local.max()) + 1 if local.size else 0
    rows = np.arange(b)[:, None]

    def padded_loss(vertices: ArrayLike) -> jax.Array:
        v = _check_flatten_vertices(vertices, v_min)
        _check_batch(v, b)
        # masked slots become zero vectors before any arithmetic: finite whatever the padded
        # vertices hold, and no gradient reaches the vertex they read
        corners = (jnp.where(mask[:, :, None], v[..., rows, table[..., i], :], 0) for i in range(4))
        return jnp.sum(jnp.where(mask, _fold(*corners, eps), 0), axis=-1)

    return padded_loss
