"""The per-(pixel, face) math of the soft rasterizer, written once.

Every implementation of :func:`softjax.soft_rasterize` (the dense reference, the tiled XLA
path and the Pallas kernels) calls these functions; none of them re-derives a formula.
The conventions are those of SoftRas (``docs/semantics.md`` states them all):

* ``x`` right and ``y`` up in normalised device coordinates, ``z`` = camera-space depth.
* Pixel (row ``r``, column ``c``) of an ``S x S`` image has its centre at
  ``x = (2c + 1 - S) / S`` and ``y = (S - 1 - 2r) / S`` (row 0 is the top row).
* UV textures (``texture_type='uv'``): image row 0 is the top (``v = 1``), column 0 the left
  (``u = 0``); texel ``(i, j)`` of an ``H x W`` image has its centre at
  ``u = (j + 0.5) / W``, ``v = 1 - (i + 0.5) / H``.

All functions broadcast: per-face arrays carry a trailing face axis and per-pixel arrays are
shaped so that they broadcast against it (e.g. pixels ``[..., P, 1]`` with faces ``[..., 1, K]``).
"""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp

DIST_FUNCS = ("hard", "barycentric", "euclidean")
AGGR_RGB = ("hard", "softmax")
AGGR_ALPHA = ("hard", "sum", "prod")
TEXTURE_TYPES = ("surface", "vertex", "uv")
UV_WRAPS = ("repeat", "clamp")  # texture addressing of texture_type='uv' outside [0, 1]

_DET_EPS = 1e-10  # |det| of the barycentric matrix is pushed to at least this
_Z_EPS = 1e-10  # guards 1/z for vertices exactly at z = 0 (keeps gradients finite)
_ONE_HOT_TEXELS = 16  # surface textures with at most this many texels are sampled by one-hot
_EXACT = jax.lax.Precision.HIGHEST  # float32 contractions in float32, not TF32 (face_color)
_WSUM_EPS = 1e-5  # floor of sum(clip(w, 0, 1)) before normalising
# texel coordinates are clipped to this magnitude before the cast to int32 (a float32 holds
# every integer up to 2**24 exactly; past it the bilinear fraction is lost anyway)
_INDEX_LIMIT = float(2**24)


class FaceData(NamedTuple):
    """Per-face quantities precomputed once from the screen-space face vertices.

    Every field has shape ``[..., 3]`` (one entry per face corner) except ``front`` (``[...]``).
    Barycentric weight k of a point (x, y) is ``a[k] * x + b[k] * y + c[k]``.
    """

    a: jax.Array
    b: jax.Array
    c: jax.Array
    x: jax.Array
    y: jax.Array
    z: jax.Array
    inv_z: jax.Array  # 1 / z (z pushed away from 0 by _Z_EPS)
    inv_len2: jax.Array  # 1 / |edge k|^2, edge k from corner k to corner k+1 (0 if degenerate)
    front: jax.Array  # bool, True when the face is front-facing (clockwise on screen, y up)


class PairTerms(NamedTuple):
    """What one face contributes to one pixel (all arrays broadcast to ``[..., P, K]``)."""

    valid: jax.Array  # bool: the face takes part for this pixel (not skipped)
    prob: jax.Array  # D, probability that the face covers the pixel
    log1m_prob: jax.Array  # log(1 - D), finite for the smooth distance functions
    inside: jax.Array  # bool: every barycentric weight in [0, 1] (closed triangle)
    depth: jax.Array  # perspective-correct z at the pixel (guarded to be finite)
    rgb_ok: jax.Array  # bool: valid, front-facing (or fill_back) and near <= depth <= far
    znorm_g: jax.Array  # (far - depth) / (far - near) / gamma_val, 0 where not rgb_ok
    w_clip: jax.Array  # [..., P, K, 3] clipped, normalised barycentrics used for z and colour


def pixel_centers(image_size: int, dtype=jnp.float32) -> tuple[jax.Array, jax.Array]:
    """Pixel-centre coordinates of an ``S x S`` image.

    Returns:
      ``(x, y)``, each ``[S, S]`` of ``dtype``, indexed ``[row, column]``; row 0 is the top.
    """
    s = image_size
    idx = jnp.arange(s, dtype=dtype)
    xs = pixel_center_x(idx, s)
    ys = pixel_center_y(idx, s)
    return jnp.broadcast_to(xs[None, :], (s, s)), jnp.broadcast_to(ys[:, None], (s, s))


def pixel_center_x(col, image_size: int):
    """NDC x of the centre of pixel column ``col`` (int or float array)."""
    return (2.0 * col + 1.0 - image_size) / image_size


def pixel_center_y(row, image_size: int):
    """NDC y of the centre of pixel row ``row`` (row 0 is the top)."""
    return (image_size - 1.0 - 2.0 * row) / image_size


def threshold(sigma_val, dist_eps):
    """Squared-distance threshold ``T = sigma_val * ln(1 / dist_eps - 1)`` beyond which
    D < dist_eps."""
    return sigma_val * jnp.log(1.0 / dist_eps - 1.0)


def face_setup(face_vertices) -> FaceData:
    """Precomputes the barycentric inverse matrix and facing of each face.

    Args:
      face_vertices: ``[..., 3, 3]`` float, corner k of the face is ``face_vertices[..., k, :]``
        = (x, y, z) in screen space; or (split layout, see :func:`corners`) a tuple
        ``(x, y, z)`` of coordinates, each a tuple of the three corners' arrays.

    Returns:
      :class:`FaceData` with fields of shape ``[..., 3]`` (``front``: ``[...]``); in the split
      layout every per-corner field is a tuple of three arrays.
    """
    split = isinstance(face_vertices, tuple | list)
    if split:
        x, y, z = (tuple(v) for v in face_vertices)
    else:
        x, y, z = (corners(face_vertices[..., i]) for i in range(3))
    x0, x1, x2 = x
    y0, y1, y2 = y
    det = x0 * (y1 - y2) + x1 * (y2 - y0) + x2 * (y0 - y1)
    det = jnp.where(
        det > 0,
        jnp.where(det > _DET_EPS, det, _DET_EPS),
        jnp.where(det < -_DET_EPS, det, -_DET_EPS),
    )
    a = (y1 - y2, y2 - y0, y0 - y1)
    b = (x2 - x1, x0 - x2, x1 - x0)
    c = (x1 * y2 - x2 * y1, x2 * y0 - x0 * y2, x0 * y1 - x1 * y0)
    a, b, c = (tuple(v / det for v in t) for t in (a, b, c))
    front = (x1 - x0) * (y2 - y0) - (y1 - y0) * (x2 - x0) < 0
    inv_z = tuple(
        1.0 / jnp.where(jnp.abs(zk) < _Z_EPS, jnp.where(zk < 0, -_Z_EPS, _Z_EPS), zk) for zk in z
    )
    inv_len2 = []
    for k in range(3):  # edge k runs from corner k to corner k + 1
        ex, ey = x[(k + 1) % 3] - x[k], y[(k + 1) % 3] - y[k]
        len2 = ex * ex + ey * ey
        inv_len2.append(jnp.where(len2 > 0, 1.0 / jnp.where(len2 > 0, len2, 1.0), 0.0))
    fields = dict(a=a, b=b, c=c, x=x, y=y, z=z, inv_z=inv_z, inv_len2=tuple(inv_len2))
    if not split:
        fields = {k: jnp.stack(v, axis=-1) for k, v in fields.items()}
    return FaceData(**fields, front=front)


def _select_min(u, v):
    # min with a select-based gradient. lax.min / jnp.min / jnp.maximum route cotangents through
    # equality tests against a recomputed result, which XLA's fusion can break (seen on CPU:
    # lost gradients), so every min / max / floor that gradients pass through is a select.
    return jnp.where(u <= v, u, v)


def _segment_dist2(px, py, ax, ay, bx, by, inv_len2):
    """Squared distance from points (px, py) to segments a-b (broadcasting); ``inv_len2`` is
    1 / |b - a|^2, or 0 for a degenerate segment (distance to a)."""
    ex, ey = bx - ax, by - ay
    t = jnp.clip(((px - ax) * ex + (py - ay) * ey) * inv_len2, 0.0, 1.0)
    dx = px - ax - t * ex
    dy = py - ay - t * ey
    return dx * dx + dy * dy


def corners(v) -> tuple:
    """The three corner entries of a per-corner quantity.

    Per-corner quantities come in two layouts: *stacked*, an array with a trailing axis of 3
    (the XLA path and the reference), or *split*, a tuple of three arrays (the Pallas kernels:
    Triton blocks need power-of-two shapes, so a corner axis of 3 cannot live in a block).
    """
    if isinstance(v, tuple | list):
        return tuple(v)
    return (v[..., 0], v[..., 1], v[..., 2])


def _min3(v0, v1, v2):
    return _select_min(_select_min(v0, v1), v2)


def _max3(v0, v1, v2):
    # only used in comparisons (no gradient passes through it)
    m = jnp.where(v0 >= v1, v0, v1)
    return jnp.where(m >= v2, m, v2)


def pair_terms(
    px: jax.Array,
    py: jax.Array,
    face: FaceData,
    *,
    dist_func: str,
    sigma_val,
    dist_eps,
    gamma_val,
    near,
    far,
    fill_back,
) -> PairTerms:
    """Everything one face contributes to one pixel, before aggregation over faces.

    Args:
      px, py: pixel-centre coordinates, shaped to broadcast against the face fields with a
        trailing face axis, e.g. ``[..., P, 1]``.
      face: :class:`FaceData` whose fields are shaped ``[..., 1, K, 3]`` (``front``
        ``[..., 1, K]``), i.e. the face axis is the second to last before the corner axis; or
        the split layout (see :func:`corners`): every per-corner field a tuple of three
        ``[..., 1, K]`` arrays.
      dist_func: one of ``'hard'``, ``'barycentric'``, ``'euclidean'`` (static).
      sigma_val, dist_eps, gamma_val, near, far: scalars (Python floats or traced arrays), or
        arrays that broadcast against ``[..., P, K]``.
      fill_back: bool or 0/1 scalar (may be traced); when true every face counts as
        front-facing.

    Returns:
      :class:`PairTerms` broadcast to ``[..., P, K]``; ``w_clip`` in the layout of ``face``
      (``[..., P, K, 3]`` stacked, or a tuple of three ``[..., P, K]`` arrays).
    """
    split = isinstance(face.a, tuple | list)
    thr = jax.lax.stop_gradient(threshold(sigma_val, dist_eps))  # only used in comparisons
    grow = jnp.sqrt(jnp.maximum(thr, 0.0))
    fx, fy = corners(face.x), corners(face.y)
    fa, fb, fc = corners(face.a), corners(face.b), corners(face.c)
    in_box = (
        (px >= _min3(*fx) - grow)
        & (px <= _max3(*fx) + grow)
        & (py >= _min3(*fy) - grow)
        & (py <= _max3(*fy) + grow)
    )
    w = tuple(fa[k] * px + fb[k] * py + fc[k] for k in range(3))  # 3 x [..., P, K]
    inside = ((w[0] >= 0.0) & (w[0] <= 1.0)) & ((w[1] >= 0.0) & (w[1] <= 1.0))
    inside = inside & ((w[2] >= 0.0) & (w[2] <= 1.0))

    if dist_func == "hard":
        valid = in_box & inside
        prob = jnp.ones_like(w[0])
        log1m_prob = jnp.full_like(prob, -jnp.inf)
    else:
        if dist_func == "barycentric":
            m = _min3(*w)
            d = jnp.where(m > 0, m * m, -m * m)
            keep = -d < thr
        elif dist_func == "euclidean":
            il = corners(face.inv_len2)
            d2 = _min3(
                *(
                    _segment_dist2(px, py, fx[k], fy[k], fx[(k + 1) % 3], fy[(k + 1) % 3], il[k])
                    for k in range(3)
                )
            )
            strictly_inside = ((w[0] > 0.0) & (w[0] < 1.0)) & ((w[1] > 0.0) & (w[1] < 1.0))
            strictly_inside = strictly_inside & ((w[2] > 0.0) & (w[2] < 1.0))
            d = jnp.where(strictly_inside, d2, -d2)
            keep = strictly_inside | (d2 < thr)
        else:  # pragma: no cover - validated by the caller
            raise ValueError(f"unknown dist_func {dist_func!r}")
        valid = in_box & keep
        x = jnp.where(valid, d * (1.0 / sigma_val), 0.0)
        prob = jax.nn.sigmoid(x)
        log1m_prob = -jax.nn.softplus(x)

    w_pos = tuple(jnp.clip(wk, 0.0, 1.0) for wk in w)
    w_sum = w_pos[0] + w_pos[1] + w_pos[2]
    w_norm = 1.0 / jnp.where(w_sum > _WSUM_EPS, w_sum, _WSUM_EPS)
    w_clip = tuple(wk * w_norm for wk in w_pos)
    iz = corners(face.inv_z)
    inv_depth = w_clip[0] * iz[0] + w_clip[1] * iz[1] + w_clip[2] * iz[2]
    inv_depth = jnp.where(
        jnp.abs(inv_depth) < _Z_EPS, jnp.where(inv_depth < 0, -_Z_EPS, _Z_EPS), inv_depth
    )
    depth = 1.0 / inv_depth
    front = face.front | (jnp.asarray(fill_back) > 0)
    rgb_ok = valid & front & (depth >= near) & (depth <= far)
    znorm_g = jnp.where(rgb_ok, (far - depth) * (1.0 / ((far - near) * gamma_val)), 0.0)
    return PairTerms(
        valid=valid,
        prob=prob,
        log1m_prob=log1m_prob,
        inside=inside,
        depth=depth,
        rgb_ok=rgb_ok,
        znorm_g=znorm_g,
        w_clip=w_clip if split else jnp.stack(w_clip, axis=-1),
    )


def _texel_index(w0, w1, w2, res: int, num_texels: int):
    """Surface texel picked by the clipped barycentrics (int32, same shape as ``w0``)."""
    i = jnp.minimum(jnp.floor(w0 * res), res - 1)
    j = jnp.minimum(jnp.floor(w1 * res), res - 1)
    # (w0 + w1) R - i - j <= 1, written with w0 + w1 = 1 - w2 so that pixels clipped onto the
    # edge w2 = 0 pick their texel deterministically instead of by rounding noise.
    lower = (1.0 - w2) * res - i - j <= 1.0
    texel = jnp.where(lower, j * res + i, (res - 1 - j) * res + (res - 1 - i)).astype(jnp.int32)
    return jnp.clip(texel, 0, num_texels - 1)


def face_color(w_clip, textures, texture_type: str):
    """Colour of faces at pixels, sampled with the clipped barycentrics.

    Args:
      w_clip: ``[..., P, K, 3]`` clipped, normalised barycentric weights; or (split layout,
        see :func:`corners`) a tuple of three ``[..., P, K]`` arrays.
      textures: ``[..., 1, K, T, C]`` per-face textures broadcast over pixels; ``T = R * R``
        texels for ``'surface'``, ``T = 3`` corner colours for ``'vertex'``. In the split layout
        a sequence of ``T`` texels, each a sequence of ``C`` channel arrays ``[..., 1, K]``.
      texture_type: ``'surface'`` or ``'vertex'`` (static; UV textures: :func:`uv_color`).

    Returns:
      ``[..., P, K, C]`` colours (split layout: a tuple of ``C`` arrays ``[..., P, K]``).

    Surface texel choice (``docs/semantics.md``): ``i = floor(w0 R)``, ``j = floor(w1 R)``
    (clamped to ``R - 1`` so that a corner weight of exactly 1 stays inside the face's
    texels); texel ``j R + i`` if ``(w0 + w1) R - i - j <= 1`` else
    ``(R - 1 - j) R + (R - 1 - i)``, with ``w0 + w1`` evaluated as ``1 - w2`` (equal for
    normalised weights, exact on the edge).
    """
    if isinstance(w_clip, tuple | list):
        num_texels, channels = len(textures), len(textures[0])
        if texture_type == "vertex":
            return tuple(
                w_clip[0] * textures[0][c] + w_clip[1] * textures[1][c] + w_clip[2] * textures[2][c]
                for c in range(channels)
            )
        if num_texels == 1:
            return tuple(jnp.broadcast_to(textures[0][c], w_clip[0].shape) for c in range(channels))
        res = int(round(num_texels**0.5))
        texel = _texel_index(*w_clip, res, num_texels)
        out = []
        for c in range(channels):
            col = jnp.zeros_like(w_clip[0])
            for t in range(num_texels):  # a one-hot sum: no gather inside a kernel
                col = jnp.where(texel == t, textures[t][c], col)
            out.append(col)
        return tuple(out)
    # HIGHEST: on GPUs XLA's default float32 contraction rounds its operands to TF32 (about
    # 3e-4 off in a colour); these are exact float32 sums, like the kernels' and SoftRas's
    if texture_type == "vertex":
        return jnp.einsum("...k,...kc->...c", w_clip, textures, precision=_EXACT)
    num_texels = textures.shape[-2]
    if num_texels == 1:  # the common default: one colour per face, nothing to choose
        return jnp.broadcast_to(textures[..., 0, :], w_clip.shape[:-1] + textures.shape[-1:])
    res = int(round(num_texels**0.5))
    texel = _texel_index(w_clip[..., 0], w_clip[..., 1], w_clip[..., 2], res, num_texels)
    if num_texels <= _ONE_HOT_TEXELS:
        # a one-hot contraction: its transpose (the texture gradient) is another contraction
        # instead of a scatter, which is much faster on CPUs
        onehot = (texel[..., None] == jnp.arange(num_texels)).astype(textures.dtype)
        return jnp.einsum("...t,...tc->...c", onehot, textures, precision=_EXACT)
    return jnp.take_along_axis(textures, texel[..., None, None], axis=-2)[..., 0, :]


class UVTaps(NamedTuple):
    """The four bilinear taps of a UV lookup, in the order (top-left, top-right, bottom-left,
    bottom-right) of texel rows ``(i0, i0, i1, i1)`` and columns ``(j0, j1, j0, j1)``; every
    field is a tuple of 4 arrays shaped like the pairs (``[..., P, K]``)."""

    rows: tuple  # int32 texel rows, wrapped into [0, H - 1]
    cols: tuple  # int32 texel columns, wrapped into [0, W - 1]
    weights: tuple  # bilinear weights (sum to 1), smooth in the UVs and the vertices


def uv_coords(w_clip, inv_z, depth, uvs):
    """Perspective-correct texture coordinates of faces at pixels.

    ``uv = sum_k w_k inv_z_k uv_k / sum_k w_k inv_z_k``, written ``depth * sum_k w_k inv_z_k
    uv_k`` with the guarded ``depth`` of :func:`pair_terms` (one guard for both). Unlike vertex
    colours (interpolated with ``w_clip`` in screen space, as SoftRas does), UVs must be
    perspective-correct: an image mapped onto a receding face would otherwise swim.

    Args:
      w_clip: clipped barycentrics, ``[..., P, K, 3]`` or (split layout) 3 arrays ``[..., P, K]``.
      inv_z: the faces' ``1 / z`` per corner (:attr:`FaceData.inv_z`), ``[..., 1, K, 3]`` or 3
        arrays ``[..., 1, K]``.
      depth: :attr:`PairTerms.depth`, ``[..., P, K]``.
      uvs: ``(u, v)``, each a per-corner quantity like ``inv_z``.

    Returns:
      ``(u, v)``, each ``[..., P, K]``.
    """
    w, iz = corners(w_clip), corners(inv_z)
    wz = tuple(w[k] * iz[k] for k in range(3))
    out = []
    for coord in uvs:
        c = corners(coord)
        out.append(depth * (wz[0] * c[0] + wz[1] * c[1] + wz[2] * c[2]))
    return tuple(out)


def _wrap_index(index, size: int, wrap: str):
    """Integer-valued float texel indices -> int32 in ``[0, size - 1]`` (``'repeat'``: modulo
    ``size``, so the filter wraps across the border; ``'clamp'``: the border texel)."""
    index = jnp.clip(index, -_INDEX_LIMIT, _INDEX_LIMIT)
    if wrap == "repeat":
        # the modulo in floats (no integer division, slow on GPUs): ``index`` is an integer,
        # so rounding can only put floor(index / size) one off, which the selects undo
        i = (index - jnp.floor(index * (1.0 / size)) * size).astype(jnp.int32)
        i = jnp.where(i < 0, i + size, i)
        i = jnp.where(i >= size, i - size, i)
    elif wrap == "clamp":
        i = index.astype(jnp.int32)
    else:  # pragma: no cover - validated by the caller
        raise ValueError(f"unknown uv_wrap {wrap!r}")
    # in range whatever the input (a NaN UV casts to an arbitrary integer): the kernels read
    # memory at these indices
    return jnp.clip(i, 0, size - 1)


def uv_taps(u, v, size: tuple[int, int], wrap: str) -> UVTaps:
    """The bilinear filter of an ``H x W`` image at texture coordinates ``(u, v)``.

    Continuous texel coordinates are ``x = u W - 0.5`` (columns) and ``y = (1 - v) H - 0.5``
    (rows, row 0 at the top), so integer ``(y, x)`` are texel centres. The taps are the texels
    ``floor`` and ``floor + 1`` on each axis, weighted by the fractions; the wrap mode applies
    to the tap indices (``'repeat'``: modulo, like ``GL_REPEAT``; ``'clamp'``: clamped to the
    border, which equals ``GL_CLAMP_TO_EDGE``'s clamping of the coordinates).

    Args:
      u, v: ``[..., P, K]`` texture coordinates (any value; see ``wrap``).
      size: ``(H, W)``, static.
      wrap: ``'repeat'`` or ``'clamp'``, static.

    Returns:
      :class:`UVTaps`. The indices are piecewise constant (no gradient); the weights carry the
      gradient with respect to ``u`` and ``v``.
    """
    height, width = size
    x = u * width - 0.5
    y = (1.0 - v) * height - 0.5
    # floor has a zero derivative; stop_gradient keeps it out of the backward altogether
    x0 = jax.lax.stop_gradient(jnp.floor(x))
    y0 = jax.lax.stop_gradient(jnp.floor(y))
    fx, fy = x - x0, y - y0
    j0, i0 = _wrap_index(x0, width, wrap), _wrap_index(y0, height, wrap)
    if wrap == "repeat":  # the next texel, wrapping (cheaper than a second modulo)
        j1 = jnp.where(j0 == width - 1, 0, j0 + 1)
        i1 = jnp.where(i0 == height - 1, 0, i0 + 1)
    else:  # from the float index: below -1, both taps are the border texel
        j1, i1 = _wrap_index(x0 + 1.0, width, wrap), _wrap_index(y0 + 1.0, height, wrap)
    gx, gy = 1.0 - fx, 1.0 - fy
    return UVTaps(
        rows=(i0, i0, i1, i1),
        cols=(j0, j1, j0, j1),
        weights=(gy * gx, gy * fx, fy * gx, fy * fx),
    )


def uv_color(w_clip, inv_z, depth, uvs, tint, fetch, size: tuple[int, int], wrap: str):
    """Colour of UV-textured faces at pixels: ``tint * bilinear(image, uv)`` at the
    perspective-correct ``uv`` (:func:`uv_coords`, :func:`uv_taps`).

    The image is read through ``fetch``, each path's own texel read (a gather in XLA, a load
    from the image in a kernel), so that this is the only place where the math lives.

    Args:
      w_clip, inv_z, depth, uvs: as :func:`uv_coords` (stacked or split corner layout).
      tint: the faces' RGB factor: ``[..., 1, K, 3]`` or 3 channel arrays ``[..., 1, K]``.
      fetch: ``fetch(tap, rows, cols) -> 3 channel arrays [..., P, K]``, the texels at int32
        ``rows`` / ``cols`` (``[..., P, K]``, always in range) of the pair's image; ``tap``
        (0 to 3) is the tap's position in :class:`UVTaps`.
      size: ``(H, W)`` of the image, static; wrap: ``'repeat'`` or ``'clamp'``, static.

    Returns:
      ``(colors, taps)``: 3 channel arrays ``[..., P, K]`` and the :class:`UVTaps` (the
      streamed backwards scatter the image's gradient to the taps' texels).
    """
    u, v = uv_coords(w_clip, inv_z, depth, uvs)
    taps = uv_taps(u, v, size, wrap)
    acc = None
    for t in range(4):
        texel = fetch(t, taps.rows[t], taps.cols[t])
        term = tuple(taps.weights[t] * texel[c] for c in range(3))
        acc = term if acc is None else tuple(a + b for a, b in zip(acc, term, strict=True))
    tint = corners(tint)
    return tuple(tint[c] * acc[c] for c in range(3)), taps
