"""``softjax fit-pose``: recover a mesh's rigid pose (and optionally its scale) from images.

SoftRas's pose-fitting application. A pose maps the mesh's vertices ``v`` (world frame) to
``scale * R v + t`` (:func:`apply_pose`). :func:`fit_pose` finds ``R``, ``t`` (and ``scale``)
such that the soft silhouettes and, where the targets and the mesh have colours, the colours
match one or several target images, from several random restarts optimised together.

Parametrisation: the rotation is a quaternion ``(w, x, y, z)`` by default (any non-zero
4-vector, normalised inside; :func:`quaternion_to_matrix`) or, with ``rotation='6d'``, the
continuous 6D representation (:func:`sixd_to_matrix`); both report a unit quaternion. The
rotation and the scale act about the centre ``c`` of the mesh's bounding box
(``v' = s R (v - c) + c + u``: turning does not swing an off-centre mesh out of view); the
reported translation is ``t = c + u - s R c``, so that ``v' = s R v + t``. The scale is
``exp`` of a parameter (``fit_scale=True``; otherwise 1).

Loss: ``1 - soft IoU`` of the silhouettes (:func:`softjax.losses.iou_loss`), plus
``color_weight`` times the squared RGB error inside the target's silhouette, per unit of its
area (views with colour, and only when the mesh's colours vary). The renderer is
:func:`fit_config` (the demos' camera and settings, no lighting, softmax colour aggregation);
``sigma`` is annealed geometrically over the first 70% of the steps from the first to the
last value of :func:`default_sigmas` (1e-3 to 1e-4 at 32 x 32 pixels, scaled by the pixel area
at other sizes, so that the blur is the same at every resolution), then held. Adam, learning
rates decayed by a cosine to 5%.

Restarts: ``candidates`` random rotations (uniform over rotations) are scored (loss at the
first sigma); the best ``restarts``, at least ``min_angle`` degrees apart, are optimised
together in one jitted step (poses and losses ``jax.vmap``'ed over problems and restarts, the
images one batch of the renderer); the restart with the lowest final loss wins.

Python::

    from softjax.tools.default_meshes import asymmetric_blob
    from softjax.tools.fit_pose_tool import default_eyes, fit_pose

    mesh = asymmetric_blob()
    # targets: [N, S, S, 4] RGBA in [0, 1] (or [N, S, S] silhouettes), eyes: [N, 3]
    result = fit_pose(mesh, targets, default_eyes(1), restarts=4, steps=60)
    result.quaternion, result.translation, result.iou
"""

from __future__ import annotations

import argparse
import contextlib
import functools
import json
import os
import shutil
import signal
import tempfile
import threading
import time
import warnings
from collections.abc import Callable, Sequence
from typing import NamedTuple

import imageio.v2 as imageio
import jax
import jax.numpy as jnp
import numpy as np
import optax
from tqdm import tqdm

from softjax.io import load_obj, save_obj
from softjax.losses import iou_loss
from softjax.mesh import Mesh
from softjax.render import RenderConfig, render
from softjax.tools.default_meshes import asymmetric_blob
from softjax.tools.deform_tool import silhouette_iou
from softjax.tools.demo_setup import DISTANCE, ELEVATION, demo_config
from softjax.transform import get_points_from_angles

__all__ = [
    "PoseResult",
    "add_arguments",
    "apply_pose",
    "default_eyes",
    "default_sigmas",
    "fit_config",
    "fit_pose",
    "fit_poses",
    "has_texture",
    "load_cameras",
    "load_targets",
    "matrix_to_quaternion",
    "quaternion_to_matrix",
    "random_quaternions",
    "rotation_error_deg",
    "run",
    "sixd_to_matrix",
]

ROTATIONS = ("quaternion", "6d")
# The sigma schedule at 32 x 32 pixels (scaled by the pixel area at other sizes). Sigma is a
# squared distance: at the end, the demos' 1e-4, an edge blurs over about a sixth of a pixel
# (sharp enough to tell a 1 degree turn); at the start, 10 times that, over about half a pixel,
# so that the first steps still feel an edge that is a pixel or so off.
SIGMA_END_32 = 1e-4
SIGMA_START_32 = 1e-3


# ------------------------------------------------------------------ rotations and poses


def quaternion_to_matrix(q: jax.Array) -> jax.Array:
    """Rotation matrices of quaternions.

    Args:
      q: ``[..., 4]`` float ``(w, x, y, z)``, any non-zero length (normalised here, so that
        an optimiser may move it freely).

    Returns:
      ``[..., 3, 3]`` float rotation matrices (orthonormal, determinant 1), acting on column
      vectors: ``p' = R p``.
    """
    q = jnp.asarray(q)
    q = q / jnp.sqrt(jnp.sum(q * q, -1, keepdims=True) + 1e-12)
    w, x, y, z = q[..., 0], q[..., 1], q[..., 2], q[..., 3]
    rows = [
        [1 - 2 * (y * y + z * z), 2 * (x * y - w * z), 2 * (x * z + w * y)],
        [2 * (x * y + w * z), 1 - 2 * (x * x + z * z), 2 * (y * z - w * x)],
        [2 * (x * z - w * y), 2 * (y * z + w * x), 1 - 2 * (x * x + y * y)],
    ]
    return jnp.stack([jnp.stack(r, -1) for r in rows], -2)


def sixd_to_matrix(x: jax.Array) -> jax.Array:
    """Rotation matrices of the 6D representation (Zhou et al. 2019).

    Args:
      x: ``[..., 6]`` float: two 3-vectors ``a1 = x[..., :3]``, ``a2 = x[..., 3:]``, linearly
        independent, any lengths.

    Returns:
      ``[..., 3, 3]`` float rotation matrices whose columns are ``b1 = a1 / |a1|``, ``b2`` =
      ``a2`` minus its ``b1`` component, normalised, and ``b3 = b1 x b2``.
    """
    x = jnp.asarray(x)
    a1, a2 = x[..., :3], x[..., 3:]
    b1 = a1 / jnp.sqrt(jnp.sum(a1 * a1, -1, keepdims=True) + 1e-12)
    a2 = a2 - jnp.sum(b1 * a2, -1, keepdims=True) * b1
    b2 = a2 / jnp.sqrt(jnp.sum(a2 * a2, -1, keepdims=True) + 1e-12)
    return jnp.stack([b1, b2, jnp.cross(b1, b2)], -1)


def matrix_to_quaternion(r: jax.Array) -> jax.Array:
    """Unit quaternions of rotation matrices (Shepperd's method: stable for every angle).

    Args:
      r: ``[..., 3, 3]`` float rotation matrices.

    Returns:
      ``[..., 4]`` float unit quaternions ``(w, x, y, z)`` with ``w >= 0`` (``q`` and ``-q``
      are the same rotation; this picks one).
    """
    r = jnp.asarray(r)
    m00, m11, m22 = r[..., 0, 0], r[..., 1, 1], r[..., 2, 2]
    # four candidate formulas, each exact where its divisor (4 times a component) is largest
    cands = jnp.stack(
        [
            jnp.stack(
                [1 + m00 + m11 + m22, r[..., 2, 1] - r[..., 1, 2], r[..., 0, 2] - r[..., 2, 0],
                 r[..., 1, 0] - r[..., 0, 1]], -1),
            jnp.stack(
                [r[..., 2, 1] - r[..., 1, 2], 1 + m00 - m11 - m22, r[..., 0, 1] + r[..., 1, 0],
                 r[..., 0, 2] + r[..., 2, 0]], -1),
            jnp.stack(
                [r[..., 0, 2] - r[..., 2, 0], r[..., 0, 1] + r[..., 1, 0], 1 - m00 + m11 - m22,
                 r[..., 1, 2] + r[..., 2, 1]], -1),
            jnp.stack(
                [r[..., 1, 0] - r[..., 0, 1], r[..., 0, 2] + r[..., 2, 0],
                 r[..., 1, 2] + r[..., 2, 1], 1 - m00 - m11 + m22], -1),
        ],
        -2,
    )  # fmt: skip
    pick = jnp.argmax(jnp.stack([m00 + m11 + m22, m00, m11, m22], -1), -1)
    q = jnp.take_along_axis(cands, pick[..., None, None], -2)[..., 0, :]
    q = q / jnp.linalg.norm(q, axis=-1, keepdims=True)
    return jnp.where(q[..., :1] < 0, -q, q)


def random_quaternions(key: jax.Array, n: int) -> jax.Array:
    """``[n, 4]`` float32 unit quaternions ``(w, x, y, z)``, uniform over rotations (normalised
    Gaussian 4-vectors), ``w >= 0``, from the PRNG ``key``."""
    q = jax.random.normal(key, (n, 4), jnp.float32)
    q = q / jnp.linalg.norm(q, axis=-1, keepdims=True)
    return jnp.where(q[..., :1] < 0, -q, q)


def apply_pose(
    vertices: jax.Array,
    rotation: jax.Array,
    translation: jax.Array,
    scale: float | jax.Array = 1.0,
) -> jax.Array:
    """``scale * R v + t`` for every vertex ``v``.

    Args:
      vertices: ``[..., V, 3]`` float, world coordinates.
      rotation: ``[3, 3]`` float rotation matrix (or ``[..., 3, 3]`` broadcasting with the
        vertices' leading axes).
      translation: ``[3]`` (or ``[..., 3]``) float.
      scale: float scalar (or ``[...]``), uniform scale.

    Returns:
      ``[..., V, 3]`` float posed vertices.
    """
    rotation, translation = jnp.asarray(rotation), jnp.asarray(translation)
    scale = jnp.asarray(scale, rotation.dtype)
    rotated = jnp.einsum("...ij,...vj->...vi", rotation, vertices)
    return scale[..., None, None] * rotated + translation[..., None, :]


def rotation_error_deg(r1: jax.Array, r2: jax.Array) -> jax.Array:
    """Geodesic angle between rotations: the angle of ``r1^T r2``, in degrees.

    Args:
      r1, r2: ``[..., 3, 3]`` float rotation matrices (broadcasting).

    Returns:
      ``[...]`` float angles in [0, 180]. Computed as ``atan2(|axis|, (trace - 1) / 2)``,
      accurate for small angles too (``arccos`` of the trace alone is not).
    """
    d = jnp.einsum("...ji,...jk->...ik", jnp.asarray(r1), jnp.asarray(r2))
    cos = (d[..., 0, 0] + d[..., 1, 1] + d[..., 2, 2] - 1.0) / 2.0
    axis = jnp.stack(
        [d[..., 2, 1] - d[..., 1, 2], d[..., 0, 2] - d[..., 2, 0], d[..., 1, 0] - d[..., 0, 1]],
        -1,
    )
    sin = jnp.linalg.norm(axis, axis=-1) / 2.0
    return jnp.degrees(jnp.arctan2(sin, cos))


def _to_matrix(param: jax.Array, rotation: str) -> jax.Array:
    """``[..., 3, 3]`` rotations of ``[..., 4]`` quaternion or ``[..., 6]`` 6D parameters."""
    return quaternion_to_matrix(param) if rotation == "quaternion" else sixd_to_matrix(param)


def _initial_rotations(key: jax.Array, n: int, rotation: str) -> jax.Array:
    """``[n, 4]`` quaternion or ``[n, 6]`` 6D parameters of ``n`` uniformly random rotations."""
    q = random_quaternions(key, n)
    if rotation == "quaternion":
        return q
    m = quaternion_to_matrix(q)
    return jnp.concatenate([m[..., :, 0], m[..., :, 1]], -1)


# ------------------------------------------------------------------ data and cameras


def fit_config(image_size: int) -> RenderConfig:
    """The renderer of the fit: the demos' (:func:`~softjax.tools.demo_setup.demo_config`)
    without lighting (raw texture colours) and with ``'softmax'`` colour aggregation (the
    demos' ``'hard'`` one gives colours no gradient with respect to the vertices), images
    ``image_size x image_size``."""
    return demo_config(image_size, lighting=False).replace(aggr_func_rgb="softmax")


def default_sigmas(image_size: int) -> tuple[float, float]:
    """The first and the last ``sigma_val`` of the annealing for ``image_size x image_size``
    images: 1e-3 and 1e-4 at 32 pixels, times ``(32 / image_size)^2`` (sigma is a squared
    distance in normalised device coordinates, and a pixel is ``2 / image_size`` across)."""
    area = (32.0 / image_size) ** 2
    return SIGMA_START_32 * area, SIGMA_END_32 * area


def default_eyes(n: int = 1) -> jax.Array:
    """``[n, 3]`` float32 copies of the default camera position: the reconstruction protocol's
    ``look_at`` eye at :data:`~softjax.tools.demo_setup.DISTANCE`, elevation
    :data:`~softjax.tools.demo_setup.ELEVATION`, azimuth 0."""
    eye = get_points_from_angles(DISTANCE, ELEVATION, 0.0).astype(jnp.float32)
    return jnp.broadcast_to(eye, (n, 3))


def _as_unit_float(a: np.ndarray, what: str) -> np.ndarray:
    if a.dtype == np.uint8:
        return a.astype(np.float32) / 255.0
    if a.dtype == np.uint16:
        return a.astype(np.float32) / 65535.0
    if a.dtype == np.bool_:
        return a.astype(np.float32)
    if np.issubdtype(a.dtype, np.floating) and a.size and 0 <= a.min() and a.max() <= 1:
        return a.astype(np.float32)
    values = f" with values in [{a.min():g}, {a.max():g}]" if a.size and a.dtype.kind == "f" else ""
    raise ValueError(
        f"{what} must be uint8, uint16, bool or float in [0, 1], got dtype {a.dtype}{values}"
    )


def _read_png(path: str) -> tuple[np.ndarray, bool]:
    """One target image as float32 RGBA ``[S, S, 4]`` and whether it has colour."""
    if not os.path.isfile(path):
        raise ValueError(f"target image not found: {path!r}")
    try:
        with warnings.catch_warnings():
            # on a file it cannot decode, imageio tries every plugin, some deprecated
            warnings.simplefilter("ignore", DeprecationWarning)
            img = np.asarray(imageio.imread(path))
    except Exception as e:  # imageio raises many types for a file it cannot decode
        reason = (str(e).strip().splitlines() or [type(e).__name__])[0]  # imageio's run long
        raise ValueError(f"cannot read target image {path!r}: {reason}") from None
    if img.ndim == 3 and img.shape[-1] == 1:
        img = img[..., 0]
    if img.ndim == 2:  # grayscale: the silhouette
        sil = _as_unit_float(img, f"target image {path!r}")
        return np.concatenate([np.zeros(sil.shape + (3,), np.float32), sil[..., None]], -1), False
    if img.ndim == 3 and img.shape[-1] == 2:  # grayscale + alpha: the alpha is the silhouette
        sil = _as_unit_float(img[..., 1], f"target image {path!r}")
        return np.concatenate([np.zeros(sil.shape + (3,), np.float32), sil[..., None]], -1), False
    if img.ndim == 3 and img.shape[-1] == 4:
        return _as_unit_float(img, f"target image {path!r}"), True
    if img.ndim == 3 and img.shape[-1] == 3:
        raise ValueError(
            f"target image {path!r} is RGB without alpha: the silhouette is ambiguous; give RGBA "
            "(alpha = silhouette) or grayscale (the silhouette itself)"
        )
    raise ValueError(
        f"target image {path!r} has shape {img.shape}: expected grayscale [S, S] or RGBA "
        "[S, S, 4] (1, 2 or 4 channels)"
    )


def load_targets(paths: Sequence[str]) -> tuple[np.ndarray, np.ndarray]:
    """Reads target images: PNG files, or one ``.npy`` array.

    Args:
      paths: PNG (or other image) files, one per view: RGBA (alpha = silhouette, RGB = colour),
        grayscale or grayscale + alpha (silhouette only); or a single ``.npy`` holding
        ``[N, S, S, 4]`` RGBA or ``[N, S, S]`` silhouettes (uint8, uint16, bool or float in
        [0, 1]).

    Returns:
      float32 RGBA targets ``[N, S, S, 4]`` in [0, 1] (RGB zero for silhouette-only views) and
      bool ``[N]``: which views have colour.

    Raises:
      ValueError: naming the problem: an unreadable or missing file, RGB without alpha, a
      wrong channel count or array shape, non-square images, or images of different sizes.
    """
    if not paths:
        raise ValueError("no target images given")
    if any(str(p).endswith(".npy") for p in paths):
        if len(paths) != 1:
            raise ValueError("give one .npy array of targets, or image files, not both")
        try:
            arr = np.load(paths[0])
        except FileNotFoundError:
            raise ValueError(f"target array not found: {paths[0]!r}") from None
        except Exception as e:
            raise ValueError(f"cannot read target array {paths[0]!r}: {e}") from None
        if arr.ndim in (3, 4) and arr.shape[0] == 0:
            raise ValueError(f"target array {paths[0]!r} holds no images (shape {arr.shape})")
        if arr.ndim == 4 and arr.shape[-1] == 4:
            rgba, color = _as_unit_float(arr, "targets"), np.ones(len(arr), bool)
        elif arr.ndim == 3:
            sil = _as_unit_float(arr, "targets")
            rgba = np.concatenate([np.zeros(sil.shape + (3,), np.float32), sil[..., None]], -1)
            color = np.zeros(len(arr), bool)
        else:
            raise ValueError(
                f"target array must be [N, S, S, 4] RGBA or [N, S, S] silhouettes, got shape "
                f"{arr.shape}" + (" (4 channels last expected)" if arr.ndim == 4 else "")
            )
        images = list(rgba)
        names = [f"{paths[0]}[{i}]" for i in range(len(images))]
    else:
        read = [_read_png(str(p)) for p in paths]
        images, color = [r[0] for r in read], np.array([r[1] for r in read], bool)
        names = [str(p) for p in paths]
    for name, img in zip(names, images, strict=True):
        if img.shape[0] != img.shape[1]:
            raise ValueError(
                f"target images must be square, {name} is {img.shape[1]}x{img.shape[0]}"
            )
    sizes = sorted({img.shape[0] for img in images})
    if len(sizes) > 1:
        raise ValueError(f"target images must all have the same size, got sizes {sizes}")
    return np.stack(images).astype(np.float32), color


def load_cameras(path: str | None, n: int | None) -> np.ndarray:
    """``[N, 3]`` float32 cameras (distance, elevation, azimuth in degrees).

    Args:
      path: a ``.npy`` ``[N, 3]``, one row per target image; or None: the default camera
        (``DISTANCE``, ``ELEVATION``, azimuth 0), allowed for a single image only.
      n: the number of target images (None: any number of cameras).

    Raises:
      ValueError: an unreadable file, a wrong shape, a count other than ``n``, or ``n > 1``
      without a file.
    """
    if path is None:
        if n is not None and n != 1:
            raise ValueError(
                f"{n} target images need --cameras: a .npy [{n}, 3] of (distance, elevation, "
                "azimuth in degrees), one per image (the default camera serves one image)"
            )
        return np.array([[DISTANCE, ELEVATION, 0.0]], np.float32)
    try:
        cams = np.load(path)
    except FileNotFoundError:
        raise ValueError(f"cameras file not found: {path!r}") from None
    except Exception as e:  # numpy raises several types for a file that is not an array
        raise ValueError(f"cannot read cameras {path!r}: {e}") from None
    if cams.ndim != 2 or cams.shape[1] != 3 or len(cams) == 0:
        raise ValueError(
            f"cameras must be [N, 3] (distance, elevation, azimuth), got shape {cams.shape}"
        )
    if n is not None and cams.shape[0] != n:
        raise ValueError(
            f"target images and cameras disagree: {n} images but {cams.shape[0]} cameras"
        )
    if not np.issubdtype(cams.dtype, np.number) or not np.isfinite(cams).all():
        raise ValueError("cameras must be finite numbers")
    return cams.astype(np.float32)


def has_texture(mesh: Mesh) -> bool:
    """Whether the mesh's colours vary (a constant colour, e.g. an untextured OBJ's white,
    tells nothing about the pose)."""
    t = np.asarray(mesh.textures)
    return bool(t.size) and float(t.max() - t.min()) > 1e-6


# ------------------------------------------------------------------ the fit


class _Setup(NamedTuple):
    """Static options of the jitted functions (hashable: one compilation per combination)."""

    config: RenderConfig
    rotation: str
    fit_scale: bool


class _Shape(NamedTuple):
    """The mesh: one for every problem and restart."""

    mesh: Mesh  # the input mesh (batch size 1): faces, textures and whatever else it carries
    base: jax.Array  # [V, 3] its vertices minus the pivot
    pivot: jax.Array  # [3] the rotation centre c


class _Targets(NamedTuple):
    """The P problems' targets and cameras."""

    alpha: jax.Array  # [P, N, S, S]
    rgb: jax.Array  # [P, N, S, S, 3]
    color_weight: jax.Array  # [P, N]: the colour term's weight (0 for silhouette-only views)
    eyes: jax.Array  # [P, N, 3]


def _posed_vertices(params: dict, shape: _Shape, setup: _Setup) -> jax.Array:
    """``[V, 3]`` vertices of one restart's pose (``v' = s R (v - c) + c + u``)."""
    r = _to_matrix(params["rotation"], setup.rotation)
    s = jnp.exp(params["log_scale"]) if setup.fit_scale else 1.0
    return s * shape.base @ r.T + shape.pivot + params["translation"]


def _render_all(params: dict, shape: _Shape, targets: _Targets, setup: _Setup, sigma):
    """``[P, R, N, S, S, 4]`` renders of every problem's every restart from its every eye.

    The poses are ``jax.vmap``'ed over problems and restarts; the ``P * R * N`` images are then
    one batch of the renderer (its own batch axis), which bins all their faces in one pass:
    2 to 4 times faster on a CPU than ``jax.vmap`` of the renderer itself (measured).
    """
    verts = jax.vmap(jax.vmap(lambda p: _posed_vertices(p, shape, setup)))(params)
    p, r, v = verts.shape[:3]
    n = targets.eyes.shape[1]
    b = p * r * n
    verts = jnp.broadcast_to(verts[:, :, None], (p, r, n, v, 3)).reshape(b, v, 3)
    eyes = jnp.broadcast_to(targets.eyes[:, None], (p, r, n, 3)).reshape(b, 3)
    # every per-mesh field (faces, textures, uv coordinates, counts) repeated for each image
    batched = jax.tree.map(lambda x: jnp.broadcast_to(x, (b,) + x.shape[1:]), shape.mesh)
    mesh = batched.replace(vertices=verts)
    images = render(mesh, setup.config, eye=eyes, sigma_val=sigma)
    return images.reshape((p, r, n) + images.shape[1:])


def _image_loss(images: jax.Array, alpha, rgb, color_weight) -> jax.Array:
    """One restart's loss: ``images`` ``[N, S, S, 4]`` against one problem's targets."""
    silhouette = iou_loss(images[..., 3], alpha)
    # squared colour error inside the target's silhouette (outside it the silhouette term
    # decides), per unit of the target's area: comparable across image sizes and shapes
    err = jnp.sum(alpha[..., None] * (images[..., :3] - rgb) ** 2, (1, 2, 3))
    area = 3.0 * jnp.sum(alpha, (1, 2)) + 1.0
    return silhouette + jnp.mean(color_weight * err / area)


def _losses(params: dict, shape: _Shape, targets: _Targets, setup: _Setup, sigma):
    """``([P, R] losses, [P, R, N, S, S, 4] images)``."""
    images = _render_all(params, shape, targets, setup, sigma)
    per_restart = jax.vmap(_image_loss, (0, None, None, None))  # restarts share targets
    losses = jax.vmap(per_restart)(images, targets.alpha, targets.rgb, targets.color_weight)
    return losses, images


_ADAM = optax.scale_by_adam(b1=0.9, b2=0.99)


@functools.partial(jax.jit, static_argnames="setup")
def _step(params, opt_state, shape: _Shape, targets: _Targets, setup: _Setup, sigma, lr):
    """One Adam step of every restart of every problem (params' leaves ``[P, R, ...]``).

    The restarts are independent, so the gradient of the sum of their losses is each one's own
    gradient. ``lr`` holds each parameter group's learning rate (traced: a schedule does not
    recompile; zeros evaluate without moving, so that scoring and the final evaluation reuse
    this one compiled program instead of compiling a forward-only one).

    Returns:
      new params, new optimiser state, ``[P, R]`` losses and ``[P, R, N, S, S, 4]`` images,
      both of the params before the step.
    """

    def total(p):
        losses, images = _losses(p, shape, targets, setup, sigma)
        return jnp.sum(losses), (losses, images)

    grads, (losses, images) = jax.grad(total, has_aux=True)(params)
    updates, opt_state = _ADAM.update(grads, opt_state, params)
    updates = {k: -lr[k] * u for k, u in updates.items()}
    return optax.apply_updates(params, updates), opt_state, losses, images


def _rates(lr: float) -> dict:
    """Learning rates of the parameter groups for a rotation rate ``lr`` (the translation and
    log-scale move less per step: a 0.05 change of a quaternion turns by about 6 degrees, and
    that of a translation moves by 0.05 of a mesh about 1 unit across)."""
    return {
        "rotation": jnp.float32(lr),
        "translation": jnp.float32(lr / 2.5),
        "log_scale": jnp.float32(lr / 5.0),
    }


def _evaluate(params, shape: _Shape, targets: _Targets, setup: _Setup, sigma):
    """``([P, R] losses, [P, R, N, S, S, 4] images)`` at ``sigma`` (NumPy), without moving."""
    state = _ADAM.init(params)
    _, _, losses, images = _step(params, state, shape, targets, setup, sigma, _rates(0.0))
    return np.asarray(losses), np.asarray(images)


class PoseResult(NamedTuple):
    """The best restart of one pose fit.

    Attributes:
      quaternion: ``[4]`` float32 unit quaternion ``(w, x, y, z)``, ``w >= 0``.
      rotation: ``[3, 3]`` float32 rotation matrix of ``quaternion``.
      translation: ``[3]`` float32: the pose is ``v -> scale * rotation @ v + translation``.
      scale: float (1.0 unless fitted).
      loss: the best restart's final loss (at the last sigma).
      iou: mean over views of the binarised (> 0.5) silhouette IoU of the best restart.
      losses: ``[T, R]`` float32 loss of every restart at each step run (``T <= steps``).
      frames: ``[K, N, S, S, 4]`` float32 renders (every view, at that step's sigma) of the
        restart with the lowest loss at that step, every ``snapshot_every`` steps, and of the
        best restart at the end (``K = 0`` without snapshots).
      best: index of the best restart.
      steps: steps run.
      interrupted: True when ``should_stop`` ended the fit early.
      seconds: wall time of the fit (of all problems fitted together), compilation included.
    """

    quaternion: np.ndarray
    rotation: np.ndarray
    translation: np.ndarray
    scale: float
    loss: float
    iou: float
    losses: np.ndarray
    frames: np.ndarray
    best: int
    steps: int
    interrupted: bool
    seconds: float


def _as_rgba(targets, name: str) -> tuple[np.ndarray, bool]:
    t = np.asarray(targets, np.float32)
    if t.ndim == 3:  # silhouettes: no colour
        return np.concatenate([np.zeros(t.shape + (3,), np.float32), t[..., None]], -1), False
    if t.ndim != 4 or t.shape[-1] != 4 or t.shape[1] != t.shape[2]:
        raise ValueError(
            f"{name} must be [N, S, S, 4] RGBA or [N, S, S] silhouettes, got {t.shape}"
        )
    return t, True


def _screen(
    params, shape, targets, setup, sigma, candidates, keys, min_angle, should_stop
) -> jax.Array:
    """Initial rotations ``[P, R, D]``: per problem, the ``R`` best of ``candidates`` random
    rotations by their loss at ``sigma`` (zero translation, scale 1), each at least
    ``min_angle`` degrees from the better ones picked before it (so that the restarts do not all
    fall into one basin), topped up with the next best where too few are that far apart.

    The candidates (``candidates`` rounded up to a multiple of ``R``) are scored ``R`` at a
    time by the fit's own compiled step (no second compilation).
    """
    n_prob, r = params["translation"].shape[:2]
    chunks = -(-candidates // r)
    rots = jnp.stack(
        [_initial_rotations(jax.random.fold_in(k, 1), chunks * r, setup.rotation) for k in keys]
    )  # [P, chunks * R, D]
    scores = []
    for c in range(chunks):
        if should_stop is not None and should_stop():
            break  # pick among those scored so far
        trial = dict(params, rotation=rots[:, c * r : (c + 1) * r])
        scores.append(_evaluate(trial, shape, targets, setup, sigma)[0])
    if not scores:
        return params["rotation"]
    scores = np.concatenate(scores, 1)  # [P, scored]
    rots = rots[:, : scores.shape[1]]
    mats = np.asarray(_to_matrix(rots, setup.rotation))
    picked = []
    for i in range(n_prob):
        order = list(np.argsort(scores[i], kind="stable"))
        keep: list[int] = []
        for j in order:
            if len(keep) == r:
                break
            angles = np.asarray(rotation_error_deg(mats[i, j], mats[i, keep])) if keep else []
            if np.all(np.asarray(angles) >= min_angle):
                keep.append(j)
        keep += [j for j in order if j not in keep][: r - len(keep)]
        picked.append(keep)
    return rots[np.arange(n_prob)[:, None], np.asarray(picked)]


def fit_poses(
    mesh: Mesh,
    targets: Sequence[np.ndarray | jax.Array],
    eyes: Sequence[np.ndarray | jax.Array],
    config: RenderConfig | None = None,
    *,
    restarts: int = 4,
    steps: int = 60,
    seed: int = 0,
    candidates: int = 64,
    min_angle: float = 45.0,
    fit_scale: bool = False,
    rotation: str = "quaternion",
    lr: float = 0.05,
    color_weight: float = 20.0,
    target_color: Sequence[Sequence[bool]] | None = None,
    sigma_start: float | None = None,
    sigma_end: float | None = None,
    snapshot_every: int = 0,
    progress: bool = False,
    should_stop: Callable[[], bool] | None = None,
) -> list[PoseResult]:
    """:func:`fit_pose` of ``P`` independent problems (one mesh; the same number of views and
    image size) at once: all ``P * restarts`` restarts are one batch, one compiled step.

    Args:
      mesh, config, restarts, steps, candidates, min_angle, fit_scale, rotation, lr,
        color_weight, sigma_start, sigma_end, snapshot_every, progress, should_stop: as in
        :func:`fit_pose`.
      targets: ``P`` arrays ``[N, S, S, 4]`` RGBA or ``[N, S, S]`` silhouettes (or one
        ``[P, N, S, S, 4]`` array).
      eyes: ``P`` arrays ``[N, 3]`` (or one ``[P, N, 3]`` array).
      seed: PRNG seed; problem ``i`` draws its rotations from ``split(key(seed), P)[i]``.
      target_color: ``[P, N]`` bool, or None (see :func:`fit_pose`).

    Returns:
      ``P`` :class:`PoseResult`, one per problem (``seconds`` is the time of them all).
    """
    t0 = time.perf_counter()
    if rotation not in ROTATIONS:
        raise ValueError(f"rotation must be one of {list(ROTATIONS)}, got {rotation!r}")
    if restarts < 1 or steps < 1:
        raise ValueError(f"restarts and steps must be >= 1, got {restarts} and {steps}")
    if mesh.batch_size != 1:
        raise ValueError(f"fit_pose fits one mesh, got batch size {mesh.batch_size}")
    rgba = [_as_rgba(t, "targets") for t in targets]
    if not rgba or len({t.shape for t, _ in rgba}) != 1:
        raise ValueError(
            "every problem needs targets of one shape [N, S, S, 4], got "
            f"{[t.shape for t, _ in rgba]}"
        )
    tgt = np.stack([t for t, _ in rgba])  # [P, N, S, S, 4]
    n_prob, n, size = tgt.shape[:3]
    eyes = jnp.asarray(np.asarray(eyes, np.float32))
    if eyes.shape != (n_prob, n, 3):
        raise ValueError(f"eyes must be [N, 3] with N={n} (one per target), got {eyes.shape[1:]}")
    config = fit_config(size) if config is None else config
    if config.image_size != size:
        raise ValueError(f"config.image_size is {config.image_size}, the targets are {size}")
    if target_color is None:
        color = np.array([[c] * n for _, c in rgba], bool)
    else:
        color = np.asarray(target_color, bool)
        if color.shape != (n_prob, n):
            raise ValueError(f"target_color must be [N] bool with N={n}, got {color.shape[1:]}")
    weights = np.where(color & has_texture(mesh), color_weight, 0.0).astype(np.float32)
    default_start, default_end = default_sigmas(size)
    sigma_start = default_start if sigma_start is None else float(sigma_start)
    sigma_end = default_end if sigma_end is None else float(sigma_end)

    verts = jnp.asarray(mesh.vertices[0], jnp.float32)
    pivot = (verts.min(0) + verts.max(0)) / 2.0
    shape = _Shape(mesh.replace(vertices=verts[None]), verts - pivot, pivot)
    alpha = jnp.asarray(tgt[..., 3])
    targets_ = _Targets(alpha, jnp.asarray(tgt[..., :3]), jnp.asarray(weights), eyes)
    setup = _Setup(config, rotation, bool(fit_scale))
    keys = jax.random.split(jax.random.key(seed), n_prob)
    params = {
        "rotation": jnp.stack([_initial_rotations(k, restarts, rotation) for k in keys]),
        "translation": jnp.zeros((n_prob, restarts, 3), jnp.float32),
        "log_scale": jnp.zeros((n_prob, restarts), jnp.float32),
    }
    if candidates > restarts:
        params["rotation"] = _screen(
            params, shape, targets_, setup, sigma_start, candidates, keys, min_angle, should_stop
        )
    opt_state = _ADAM.init(params)
    anneal = max(1, int(0.7 * steps))
    losses, frames = [], []
    interrupted = False
    rows = np.arange(n_prob)

    bar = tqdm(range(steps), desc="fit-pose", unit="step", disable=not progress)
    for it in bar:
        if should_stop is not None and should_stop():
            interrupted = True
            break
        frac = min(it / anneal, 1.0)
        sigma = float(np.exp((1 - frac) * np.log(sigma_start) + frac * np.log(sigma_end)))
        decay = 0.05 + 0.95 * 0.5 * (1 + np.cos(np.pi * it / max(steps - 1, 1)))
        params, opt_state, loss, images = _step(
            params, opt_state, shape, targets_, setup, sigma, _rates(lr * decay)
        )
        loss = np.asarray(loss)
        losses.append(loss)
        if snapshot_every > 0 and it % snapshot_every == 0:
            # the restart with the lowest loss, as it was when measured (at this step's sigma)
            frames.append(np.asarray(images[rows, np.argmin(loss, 1)]))
        bar.set_postfix(loss=f"{loss.min(1).mean():.4f}")
    bar.close()

    final, images = _evaluate(params, shape, targets_, setup, sigma_end)
    best = np.argmin(final, 1)
    if snapshot_every > 0:
        frames.append(images[rows, best])
    seconds = time.perf_counter() - t0
    all_losses = np.asarray(losses, np.float32).reshape(-1, n_prob, restarts)
    all_frames = np.asarray(frames, np.float32).reshape((-1, n_prob) + images.shape[2:])
    results = []
    for i in range(n_prob):
        p = jax.tree.map(lambda x, i=i: x[i, best[i]], params)
        r = np.asarray(_to_matrix(p["rotation"], rotation), np.float32)
        scale = float(np.exp(p["log_scale"])) if fit_scale else 1.0
        c = np.asarray(pivot)
        t = c + np.asarray(p["translation"]) - scale * (r @ c)
        iou = silhouette_iou(images[i, best[i], ..., 3], tgt[i, ..., 3]).mean()
        results.append(
            PoseResult(
                quaternion=np.asarray(matrix_to_quaternion(r), np.float32),
                rotation=r,
                translation=t.astype(np.float32),
                scale=scale,
                loss=float(final[i, best[i]]),
                iou=float(iou),
                losses=all_losses[:, i],
                frames=all_frames[:, i],
                best=int(best[i]),
                steps=len(losses),
                interrupted=interrupted,
                seconds=seconds,
            )
        )
    return results


def fit_pose(
    mesh: Mesh,
    targets: np.ndarray | jax.Array,
    eyes: np.ndarray | jax.Array,
    config: RenderConfig | None = None,
    *,
    restarts: int = 4,
    steps: int = 60,
    seed: int = 0,
    candidates: int = 64,
    min_angle: float = 45.0,
    fit_scale: bool = False,
    rotation: str = "quaternion",
    lr: float = 0.05,
    color_weight: float = 20.0,
    target_color: Sequence[bool] | None = None,
    sigma_start: float | None = None,
    sigma_end: float | None = None,
    snapshot_every: int = 0,
    progress: bool = False,
    should_stop: Callable[[], bool] | None = None,
) -> PoseResult:
    """Finds the rigid pose (and optionally the uniform scale) of ``mesh`` that best explains
    ``targets`` seen from ``eyes``.

    ``candidates`` random rotations (uniform over rotations, from ``seed``) are scored at
    ``sigma_start`` with zero translation and scale 1; the best ``restarts`` of them, each at
    least ``min_angle`` degrees from the better ones, take ``steps`` Adam steps together in one
    jitted call (compiled once per shapes and static options: a second call with the same
    shapes does not recompile). The restart with the lowest final loss wins.

    Args:
      mesh: :class:`~softjax.mesh.Mesh` with batch size 1: vertices ``[1, V, 3]`` (world
        coordinates), surface or vertex textures (colours in [0, 1]).
      targets: ``[N, S, S, 4]`` float RGBA in [0, 1] (alpha = silhouette, RGB = colour, as
        :func:`~softjax.render.render` draws it on black) or ``[N, S, S]`` float silhouettes,
        one per view.
      eyes: ``[N, 3]`` float camera positions (``look_at`` the origin, y up), e.g. from
        :func:`~softjax.transform.get_points_from_angles` or :func:`default_eyes`.
      config: the renderer (static under ``jit``); None: :func:`fit_config` ``(S)``. Its
        ``image_size`` must be ``S``; its ``sigma_val`` is unused (see ``sigma_start``).
      restarts: ``R >= 1``, rotations optimised in parallel.
      steps: ``>= 1`` Adam steps.
      seed: PRNG seed of the random rotations.
      candidates: random rotations scored to pick the restarts from (``R`` at a time, forward
        and backward: the same compiled program as the steps); ``<= R``: the restarts are
        ``R`` random rotations, unscored.
      min_angle: degrees between the picked restarts (so they do not share one basin).
      fit_scale: also fit a uniform scale (parametrised by its logarithm).
      rotation: ``'quaternion'`` (default) or ``'6d'``: the parametrisation optimised.
      lr: Adam learning rate of the rotation parameters (translation ``lr / 2.5``, log-scale
        ``lr / 5``), decayed by a cosine to 5% at the last step.
      color_weight: weight of the colour term.
      target_color: ``[N]`` bool: which views' RGB to match; None: every view of RGBA
        ``targets``, none of silhouettes. No colour term at all when the mesh's colours are
        constant (:func:`has_texture`).
      sigma_start, sigma_end: the first and last ``sigma_val`` (annealed geometrically over the
        first 70% of the steps, then held); None: :func:`default_sigmas` ``(S)``.
      snapshot_every: > 0: record ``frames`` every that many steps (and at the end).
      progress: show a tqdm progress bar.
      should_stop: polled before each step (and between scored candidates); when it returns
        True the fit stops and returns the best restart so far, ``interrupted=True``.

    Returns:
      :class:`PoseResult` (``loss`` and ``iou`` measured at ``sigma_end``).

    Raises:
      ValueError: bad shapes or options, naming them.
    """
    return fit_poses(
        mesh,
        [targets],
        [eyes],
        config,
        restarts=restarts,
        steps=steps,
        seed=seed,
        candidates=candidates,
        min_angle=min_angle,
        fit_scale=fit_scale,
        rotation=rotation,
        lr=lr,
        color_weight=color_weight,
        target_color=None if target_color is None else [list(target_color)],
        sigma_start=sigma_start,
        sigma_end=sigma_end,
        snapshot_every=snapshot_every,
        progress=progress,
        should_stop=should_stop,
    )[0]


# ------------------------------------------------------------------ the command


def add_arguments(p: argparse.ArgumentParser) -> None:
    """Adds the ``fit-pose`` tool's options to the (sub)parser ``p``."""
    p.add_argument(
        "mesh", nargs="?", help="OBJ file (default: a built-in textured asymmetric mesh)"
    )
    p.add_argument(
        "--target",
        nargs="+",
        metavar="IMAGE",
        help="target PNG(s) (RGBA: alpha = silhouette, RGB = colour; grayscale: silhouette) or "
        "one .npy [N, S, S, 4] / [N, S, S]; default: the mesh rendered at a random pose",
    )
    p.add_argument(
        "--cameras",
        help="[N, 3] (distance, elevation, azimuth in degrees) per target (.npy); default: "
        f"one camera at distance {DISTANCE}, elevation {ELEVATION:g}, azimuth 0",
    )
    p.add_argument("--out", default="fit_pose_out", help="output folder")
    p.add_argument(
        "--image-size", type=int, default=64, help="size of the rendered target (no --target)"
    )
    p.add_argument("--restarts", type=int, default=4, help="restarts optimised together")
    p.add_argument(
        "--candidates", type=int, default=64, help="random rotations scored to pick restarts"
    )
    p.add_argument("--steps", type=int, default=60)
    p.add_argument("--seed", type=int, default=0, help="random pose (no --target) and restarts")
    p.add_argument("--scale", action="store_true", help="also fit a uniform scale")
    p.add_argument("--rotation", choices=ROTATIONS, default="quaternion", help="parametrisation")
    p.add_argument("--lr", type=float, default=0.05, help="Adam learning rate of the rotation")
    p.add_argument("--color-weight", type=float, default=20.0, help="weight of the colour term")
    p.add_argument("--texture-res", type=int, default=2, help="texels per face side (OBJ)")
    p.add_argument(
        "--snapshot-every", type=int, default=2, help="steps between GIF frames (0: first, last)"
    )


class _StopFlag:
    """SIGINT / SIGTERM handlers that only record the signal: raising from a handler could
    land inside JAX (a compilation, a transfer); the fit polls the flag between steps."""

    def __init__(self):
        self.signum: int | None = None
        self._previous: dict[int, object] = {}

    def _handle(self, signum, frame) -> None:
        self.signum = signum

    def install(self) -> _StopFlag:
        # signal handlers can only be set from the main thread; elsewhere run uninterruptible
        if threading.current_thread() is threading.main_thread():
            for s in (signal.SIGINT, signal.SIGTERM):
                self._previous[s] = signal.signal(s, self._handle)
        return self

    def restore(self) -> None:
        for s, handler in self._previous.items():
            # None: a handler not set from Python; the default action is the closest
            signal.signal(s, signal.SIG_DFL if handler is None else handler)
        self._previous.clear()

    def __call__(self) -> bool:
        return self.signum is not None

    @property
    def exit_code(self) -> int:
        """The shell's convention: 128 + the signal number (130 SIGINT, 143 SIGTERM)."""
        return 128 + int(self.signum or 0)


def _write_atomic(path: str, write: Callable[[str], None]) -> None:
    """``write(tmp)`` to a temporary file next to ``path`` (same extension, for writers that
    pick the format by it), then ``os.replace``: ``path`` is either old or complete."""
    folder, name = os.path.split(path)
    tmp = os.path.join(folder, f".{name}.{os.getpid()}.tmp{os.path.splitext(name)[1]}")
    try:
        write(tmp)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.remove(tmp)
        raise


def _write_text(path: str, text: str) -> None:
    with open(path, "w", encoding="utf-8") as f:
        f.write(text)


def _save_obj_atomic(path: str, mesh: Mesh, save_texture: bool) -> None:
    """:func:`~softjax.io.save_obj` into a temporary folder beside ``path``, then each file
    moved into place, the OBJ last (so it never names a material or image not yet there)."""
    folder, name = os.path.split(path)
    stem = os.path.splitext(name)[0]
    tmp = tempfile.mkdtemp(dir=folder or ".", prefix=f".{stem}.")
    try:
        save_obj(os.path.join(tmp, name), mesh, save_texture=save_texture)
        for f in (stem + ".png", stem + ".mtl", name):
            if os.path.exists(os.path.join(tmp, f)):
                os.replace(os.path.join(tmp, f), os.path.join(folder, f))
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def _gif_frames(frames: np.ndarray, targets: np.ndarray, color: bool) -> list[np.ndarray]:
    """uint8 RGB GIF frames: per view (up to 4, stacked vertically) the render beside the target,
    enlarged to at least 128 pixels a side.

    Args:
      frames: ``[K, N, S, S, 4]`` renders; targets: ``[N, S, S, 4]`` RGBA.
      color: show colours (else the silhouettes in gray).
    """

    def show(rgba):
        if color:  # the renderer's colours fade to the black background at the edges
            return rgba[..., :3]
        return np.repeat(rgba[..., 3:], 3, -1)

    views = min(4, targets.shape[0])
    zoom = max(1, -(-128 // targets.shape[1]))
    target = targets[:views].copy()
    target[..., :3] *= target[..., 3:]  # straight alpha onto black, like the renders
    size = targets.shape[1] * zoom
    gap = np.full((size, 2, 3), 0.5, np.float32)  # a gray line between render and target
    out = []
    for f in frames:
        rows = []
        for i in range(views):
            left, right = (show(x).repeat(zoom, 0).repeat(zoom, 1) for x in (f[i], target[i]))
            rows.append(np.concatenate([left, gap, right], 1))
        img = np.concatenate(rows, 0)
        out.append((np.clip(img, 0, 1) * 255).round().astype(np.uint8))
    return out


def _render_targets(
    mesh: Mesh, eyes: jax.Array, config: RenderConfig, pose: tuple, restarts: int, options: tuple
) -> np.ndarray:
    """``[N, S, S, 4]`` renders of ``mesh`` at ``pose`` = (``R [3, 3]``, ``t [3]``, scale) from
    ``eyes`` ``[N, 3]``, at ``config.sigma_val``: through the fit's own compiled program (the
    pose copied into ``restarts`` restarts of one problem, zero targets), so that a fit with the
    same shapes and options that follows compiles nothing more. ``options``: the fit's
    ``(rotation, fit_scale)``."""
    rotation, fit_scale = options
    r, t, s = (np.asarray(x, np.float32) for x in pose)
    verts = jnp.asarray(mesh.vertices[0], jnp.float32)
    pivot = (verts.min(0) + verts.max(0)) / 2.0  # as in fit_poses
    shape = _Shape(mesh.replace(vertices=verts[None]), verts - pivot, pivot)
    n, size = eyes.shape[0], config.image_size
    targets = _Targets(
        jnp.zeros((1, n, size, size), jnp.float32),
        jnp.zeros((1, n, size, size, 3), jnp.float32),
        jnp.zeros((1, n), jnp.float32),
        jnp.asarray(eyes, jnp.float32)[None],
    )
    u = t - np.asarray(pivot) + s * (r @ np.asarray(pivot))  # v' = s R (v - c) + c + u
    rot = matrix_to_quaternion(r) if rotation == "quaternion" else np.r_[r[:, 0], r[:, 1]]
    params = {
        "rotation": jnp.broadcast_to(jnp.asarray(rot, jnp.float32), (1, restarts, len(rot))),
        "translation": jnp.broadcast_to(jnp.asarray(u), (1, restarts, 3)),
        "log_scale": jnp.full((1, restarts), np.log(s), jnp.float32),
    }
    setup = _Setup(config, rotation, fit_scale)
    return _evaluate(params, shape, targets, setup, float(config.sigma_val))[1][0, 0]


def _random_pose(rng: np.random.Generator, fit_scale: bool) -> tuple[np.ndarray, np.ndarray, float]:
    """A rotation ``[3, 3]`` uniform over rotations, a translation ``[3]`` in ``[-0.1, 0.1]^3``
    and a scale in ``[0.8, 1.2]`` (1 unless ``fit_scale``)."""
    q = rng.normal(size=4)
    r = np.asarray(quaternion_to_matrix(jnp.asarray(q / np.linalg.norm(q), jnp.float32)))
    t = rng.uniform(-0.1, 0.1, 3).astype(np.float32)
    s = float(rng.uniform(0.8, 1.2)) if fit_scale else 1.0
    return r, t, s


def run(args: argparse.Namespace) -> int:
    """Fits the pose, writes ``fit_pose.gif``, ``posed.obj`` and ``result.json`` to
    ``args.out``; returns the exit code: 0, or 130 / 143 after SIGINT / SIGTERM (the best
    restart so far is written first)."""
    t_start = time.perf_counter()
    for name in ("restarts", "steps", "image_size", "texture_res"):
        if getattr(args, name) < 1:
            raise ValueError(f"--{name.replace('_', '-')} must be >= 1, got {getattr(args, name)}")
    if args.candidates < 0 or args.snapshot_every < 0:
        raise ValueError("--candidates and --snapshot-every must be >= 0")
    if args.mesh:
        mesh = load_obj(args.mesh, load_texture=True, texture_res=args.texture_res)
        name = os.path.basename(args.mesh)
    else:
        mesh, name = asymmetric_blob(), "built-in asymmetric blob"
    textured = has_texture(mesh)
    truth = None
    if args.target:
        targets, color = load_targets(args.target)
        cameras = load_cameras(args.cameras, len(targets))
        if color.any() and not textured:
            print(
                "note: the mesh has a single colour (no texture): fitting the silhouettes only, "
                "the targets' colours are ignored"
            )
    else:
        cameras = load_cameras(args.cameras, None if args.cameras else 1)
        truth = _random_pose(np.random.default_rng(args.seed), args.scale)
        color = np.full(len(cameras), True)
        print(f"no --target: recovering a random pose (seed {args.seed}) of {name}")
    eyes = get_points_from_angles(cameras[:, 0], cameras[:, 1], cameras[:, 2])
    os.makedirs(args.out, exist_ok=True)
    # from here on a signal only sets the flag, checked between steps
    stop = _StopFlag().install()
    try:
        if truth is not None:
            options = (args.rotation, args.scale)
            config = fit_config(args.image_size)
            targets = _render_targets(mesh, eyes, config, truth, args.restarts, options)
        n, size = targets.shape[0], targets.shape[1]
        print(
            f"fitting {name} ({mesh.num_vertices} vertices, {mesh.num_faces} faces) to {n} "
            f"{size}x{size} target(s); {args.restarts} restarts, {args.steps} steps"
        )
        result = fit_pose(
            mesh,
            targets,
            eyes,
            fit_config(size),
            restarts=args.restarts,
            steps=args.steps,
            seed=args.seed,
            candidates=args.candidates,
            fit_scale=args.scale,
            rotation=args.rotation,
            lr=args.lr,
            color_weight=args.color_weight,
            target_color=color,
            snapshot_every=args.snapshot_every or args.steps,
            progress=True,
            should_stop=stop,
        )
        record = {
            "rotation": [float(x) for x in result.quaternion],
            "rotation_format": "quaternion (w, x, y, z)",
            "translation": [float(x) for x in result.translation],
            "scale": result.scale,
            "iou": result.iou,
            "loss": result.loss,
            "seconds": time.perf_counter() - t_start,
            "steps": result.steps,
            "restarts": args.restarts,
            "parametrisation": args.rotation,
            "colour_used": bool(color.any() and textured),
            "interrupted": result.interrupted,
        }
        summary = f"silhouette IoU {result.iou:.4f}, loss {result.loss:.4f}"
        if truth is not None:
            error = float(rotation_error_deg(truth[0], result.rotation))
            record["rotation_error_deg"] = error
            record["true_rotation"] = [float(x) for x in matrix_to_quaternion(truth[0])]
            record["true_translation"] = [float(x) for x in truth[1]]
            record["true_scale"] = truth[2]
            summary += f", rotation error {error:.2f} degrees"
        posed = mesh.replace(
            vertices=apply_pose(
                mesh.vertices, result.rotation, result.translation, result.scale
            ).astype(jnp.float32)
        )
        out = args.out
        gif = _gif_frames(result.frames, targets, bool(color.any() and textured))
        _write_atomic(
            os.path.join(out, "fit_pose.gif"),
            lambda p: imageio.mimsave(p, gif, duration=0.1, loop=0),
        )
        _save_obj_atomic(os.path.join(out, "posed.obj"), posed, save_texture=textured)
        text = json.dumps(record, indent=2) + "\n"
        _write_atomic(os.path.join(out, "result.json"), lambda p: _write_text(p, text))
        if stop():
            print(
                f"interrupted by {signal.Signals(stop.signum).name} after {result.steps} of "
                f"{args.steps} steps: wrote the best restart so far"
            )
        q = ", ".join(f"{x:.4f}" for x in result.quaternion)
        t = ", ".join(f"{x:.4f}" for x in result.translation)
        print(f"rotation (w, x, y, z) ({q}), translation ({t}), scale {result.scale:.4f}")
        print(
            f"final {summary} ({record['seconds']:.1f} s); wrote {out}/posed.obj, fit_pose.gif, "
            "result.json"
        )
    finally:
        stop.restore()
    return stop.exit_code if stop() else 0
