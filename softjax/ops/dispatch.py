"""Backend choice of ``soft_rasterize``: the Pallas kernels only where they passed a self-check.

``backend='auto'`` (the default, or ``SOFTJAX_BACKEND=auto``) on a GPU serves a set of static
options with the Pallas kernels only after they have reproduced the tiled XLA path, forward
and gradients, on a tiny fixed scene with those options, once per process. A kernel that
fails to lower, compile or launch, or that computes something else, costs one
:class:`BackendFallbackWarning` and the XLA path for that option set: never a crash, never a
silently wrong image. :func:`backend_report` says which path serves each option set and why.

The check runs in a helper thread on concrete NumPy inputs: JAX's tracing state is
thread-local, so the check is evaluated eagerly even when ``soft_rasterize`` is being traced
inside the caller's ``jit`` / ``grad`` / ``vmap``.
"""

from __future__ import annotations

import functools
import os
import threading
import traceback
import warnings
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from softjax.ops.binning import TilingConfig
from softjax.ops.options import Scalars, StaticOptions, UVTexture
from softjax.ops.pallas_kernels import kernel_config, rasterize_pallas, resolve_config
from softjax.ops.xla_tiled import rasterize_tiled

ENV_VAR = "SOFTJAX_BACKEND"
ENV_CHOICES = ("auto", "xla", "pallas")

# Tolerances of the self-check (float32; scaled up for lower-precision dtypes). The CPU tests
# hold the interpreted kernels to 2e-5 (images) and 2e-4 * max|grad| (gradients) against the
# dense reference; on this scene the interpreted kernels differ from the XLA path by at most
# 1.3e-6 (image) and 4e-5 (gradients relative to max(1, max|grad|)) over 7 modes tried. On a
# GPU, Triton may use approximate exp / log (a few ulp) and the kernels sum in another order
# than XLA (per-window online softmax, per-(tile, face) partial gradients summed by
# segment_sum): 5x the test tolerances leaves room for that. A real defect (a face dropped or
# counted twice, a wrong texel, winding, near/far or batch offset, a broken pass) moves pixels
# of this scene by more than 1e-2 = 100 IMAGE_ATOL, and every face's vertex gradient is above
# 100 GRAD_RTOL of the largest one (tests/test_dispatch.py checks both).
IMAGE_ATOL = 1e-4  # absolute, on RGBA values in [0, 1]
GRAD_RTOL = 1e-3  # relative to max(1, max |XLA gradient|), per gradient leaf


_MAX_ERROR_CHARS = 2000  # of an exception's text in the warning and the report


class BackendFallbackWarning(UserWarning):
    """``backend='auto'`` serves an option set with the XLA path because the Pallas kernels
    failed (exception or mismatch) their self-check for it."""


class OptionKey(NamedTuple):
    """What a self-check result holds for: every static choice that changes the kernels' code.

    ``num_texels`` belongs here because the kernels unroll their texel lookup over it (one
    texel: a broadcast; more: a one-hot sum of ``T`` terms; the packed per-face rows have
    ``9 + 3 T`` fields), so a lowering or compilation failure can depend on it; it is 0 for
    ``texture_type='uv'``, whose kernels gather from the image with offsets computed from its
    size, the same code for every size. ``uv_wrap`` (``None`` unless the texture type is
    ``'uv'``, so that it does not split the other option sets) selects the kernels' texel
    addressing (a modulo or a clamp). The
    kernels' :class:`~softjax.ops.binning.TilingConfig` belongs here because its tile, windows,
    warps and stages are the Triton block shapes and launch parameters (resource limits are
    per configuration) and its capacity the number of binning passes; the check runs with the
    caller's configuration (held with the kernels' default tile and backward window filled in,
    so that an explicit default is the same key).
    Image size, batch, face count and the traced scalars only change array sizes or values of
    the same code (``fill_back`` is traced, so the check covers both of its values).
    """

    dist_func: str
    aggr_rgb: str
    aggr_alpha: str
    texture_type: str
    num_texels: int
    dtype: str
    pallas_config: TilingConfig
    uv_wrap: str | None = None  # 'repeat' / 'clamp' for texture_type='uv', else None

    def describe(self) -> str:
        """A readable one-line form, used as :func:`backend_report`'s key and in warnings."""
        own = kernel_config(self.pallas_config)
        cfg = "default" if own == kernel_config(TilingConfig()) else repr(own)
        wrap = f", uv_wrap={self.uv_wrap}" if self.texture_type == "uv" else ""
        return (
            f"dist_func={self.dist_func}, aggr_func_rgb={self.aggr_rgb}, "
            f"aggr_func_alpha={self.aggr_alpha}, texture_type={self.texture_type}{wrap}, "
            f"texels={self.num_texels}, dtype={self.dtype}, pallas_config={cfg}"
        )


class Decision(NamedTuple):
    backend: str  # 'pallas' or 'xla'
    reason: str


_LOCK = threading.Lock()  # guards both dicts; held during a check so each key runs one check
_CHECKED: dict[OptionKey, Decision] = {}  # self-check outcomes (GPU, 'auto'), per process
_REPORT: dict[str, dict[str, str]] = {}  # per option set, for backend_report()


def _on_gpu() -> bool:
    """Whether JAX's default backend is a GPU (tests monkeypatch this to force the check,
    which then runs the kernels in the Pallas interpreter)."""
    return jax.default_backend() == "gpu"


def requested_backend(backend: str | None) -> str:
    """The backend a call asked for: ``backend`` if given, else ``$SOFTJAX_BACKEND``, else
    ``'auto'``.

    Args:
      backend: the ``backend=`` argument of ``soft_rasterize`` (``None``: not given).

    Returns:
      ``backend`` unchanged when it is not ``None`` (``check_inputs`` validates it); otherwise
      ``'auto'``, ``'xla'`` or ``'pallas'`` from the environment (empty or unset: ``'auto'``).

    Raises:
      ValueError: ``$SOFTJAX_BACKEND`` holds anything else.
    """
    if backend is not None:
        return backend
    value = os.environ.get(ENV_VAR, "").strip().lower()
    if value == "":
        return "auto"
    if value not in ENV_CHOICES:
        raise ValueError(
            f"environment variable {ENV_VAR} must be one of {list(ENV_CHOICES)} (or unset), "
            f"got {os.environ[ENV_VAR]!r}"
        )
    return value


def choose_backend(
    requested: str,
    from_env: bool,
    opts: StaticOptions,
    num_texels: int,
    dtype: Any,
    pallas_config: TilingConfig | None,
) -> str:
    """Resolves ``'auto'`` to ``'pallas'`` or ``'xla'`` (running the self-check at most once per
    option set) and records the decision for :func:`backend_report`.

    Args:
      requested: ``'auto'``, ``'xla'``, ``'pallas'`` or ``'reference'`` (validated already).
      from_env: whether ``requested`` came from ``$SOFTJAX_BACKEND`` (for the report).
      opts: the call's :class:`StaticOptions`.
      num_texels: ``textures.shape[2]`` (R*R texels per face, or 3 corner colours; 0 for UV
        textures).
      dtype: the dtype of the call's face vertices and textures.
      pallas_config: the configuration the kernels would run with (``None``: the default).

    Returns:
      the concrete backend: ``requested`` unless it is ``'auto'``.
    """
    key = OptionKey(
        opts.dist_func,
        opts.aggr_rgb,
        opts.aggr_alpha,
        opts.texture_type,
        int(num_texels),
        jnp.dtype(dtype).name,
        kernel_config(pallas_config),
        opts.uv_wrap if opts.texture_type == "uv" else None,
    )
    if requested != "auto":
        how = f"{ENV_VAR}={requested}" if from_env else f"backend={requested!r} passed"
        _record(key, Decision(requested, how))
        return requested
    if not _on_gpu():
        _record(key, Decision("xla", "not a GPU"))
        return "xla"
    warning = None
    with _LOCK:
        decision = _CHECKED.get(key)
        if decision is None:
            decision, warning = _self_check(key)
            _CHECKED[key] = decision
        _REPORT[key.describe()] = decision._asdict()
    if warning is not None:  # after caching: with warnings as errors only this call raises
        warnings.warn(warning, BackendFallbackWarning, stacklevel=3)  # at soft_rasterize's caller
    return decision.backend


def backend_report() -> dict[str, dict[str, str]]:
    """Which path serves each option set seen so far in this process, and why (for bug reports).

    Returns:
      ``{options: {'backend': 'pallas' | 'xla', 'reason': ...}}`` where ``options`` is a
      readable string of the static options that select the kernels' code (distance function,
      aggregations, texture type and UV wrap mode, texels per face, dtype, Pallas
      configuration) and ``reason``
      one of ``'self-check passed (max diff ...)'``, ``'self-check failed: ...'``, ``'not a
      GPU'``, ``'SOFTJAX_BACKEND=...'`` or ``"backend='...' passed"``: the self-check's
      outcome once the option set has had one, else the choice of the latest call.
    """
    with _LOCK:
        return {k: dict(v) for k, v in _REPORT.items()}


def _reset() -> None:
    """Forgets every self-check outcome and report entry (for tests)."""
    with _LOCK:
        _CHECKED.clear()
        _REPORT.clear()


def _record(key: OptionKey, decision: Decision) -> None:
    """Reports a decision made without a check, unless a self-check outcome is known for the
    key: that is the fact a bug report needs, not which backend some call passed."""
    with _LOCK:
        if key not in _CHECKED:
            _REPORT[key.describe()] = decision._asdict()


def _self_check(key: OptionKey) -> tuple[Decision, str | None]:
    """Runs the check in a helper thread (fresh, untraced JAX state; the caller's x64 setting).

    Returns:
      the decision and, when the kernels raised or disagreed (XLA path), the warning's text.
    """
    result: list[Any] = []
    x64 = bool(jax.config.jax_enable_x64)  # thread-local under jax.enable_x64(...)

    def target():
        try:
            with jax.enable_x64(x64):
                result.append(_compare(key))
        except Exception as error:  # lowering, compilation, launch: fall back, never crash
            last = traceback.extract_tb(error.__traceback__)[-1:]
            where = f" at {last[0].filename}:{last[0].lineno}" if last else ""
            text = str(error)
            if len(text) > _MAX_ERROR_CHARS:  # Triton / MLIR errors can carry whole IR dumps
                text = f"{text[:_MAX_ERROR_CHARS]}... [{len(text)} characters]"
            result.append(f"{type(error).__name__}: {text}{where}")

    thread = threading.Thread(target=target, name="softjax-pallas-self-check", daemon=True)
    thread.start()
    thread.join()
    outcome = result[0] if result else "the check thread ended without a result"
    if isinstance(outcome, tuple):
        image, grad = outcome
        reason = f"self-check passed (max diff: image {image:.2e}, gradients {grad:.2e})"
        return Decision("pallas", reason), None
    warning = (
        f"softjax: the Pallas kernels failed their self-check for [{key.describe()}] "
        f"({outcome}); using the XLA path for these options. Set {ENV_VAR}=xla to skip the "
        "check, and please report this with softjax.backend_report()."
    )
    return Decision("xla", f"self-check failed: {outcome}"), warning


def check_scene(
    key: OptionKey, dtype: Any
) -> tuple[np.ndarray, Any, np.ndarray, StaticOptions, dict[str, float]]:
    """The fixed scene of the self-check: 2 images of 16 x 16 pixels, 5 faces each.

    Faces of both windings overlap (so fill_back and the depth aggregation matter), one
    crosses the near plane (z from 0.5), one reaches beyond far (z up to 7.5, far = 6), one
    is binned to all four 8x8 tiles, and the second image is the first rotated by 90 degrees with
    the faces in reverse order and other textures (a mixed-up batch offset shows). ``sigma_val``
    1e-2 makes each face's soft edge span about two pixels, so gradients are non-zero at many
    pixels and the distance culling (``dist_eps``) and face binning take part. UV textures:
    :func:`_check_uv_textures`.

    Args:
      key: the option set (its texture type and texels per face shape the textures).
      dtype: NumPy dtype of the arrays.

    Returns:
      ``(face_vertices [2, 5, 3, 3], textures, cotangent weights [2, 16, 16, 4],
      StaticOptions, scalar values)`` as NumPy arrays; ``textures`` is ``[2, 5, T, 3]``, or a
      :class:`~softjax.ops.options.UVTexture` for ``texture_type='uv'``.
    """
    # (x, y, z) per corner; winding: clockwise on screen (y up) is front-facing
    faces = np.array(
        [
            [[-0.83, -0.71, 2.1], [-0.12, 0.77, 2.9], [0.63, -0.52, 2.4]],  # front, large
            [[-0.47, 0.58, 3.3], [-0.21, -0.66, 3.6], [0.81, 0.23, 3.9]],  # back, overlaps it
            [[0.07, 0.41, 0.55], [0.69, 0.91, 1.7], [0.52, -0.09, 1.3]],  # front, crosses near
            [[-0.93, 0.16, 4.6], [-0.37, -0.31, 5.8], [-0.28, 0.94, 7.4]],  # back, beyond far
            [[-0.19, -0.23, 1.9], [0.22, 0.18, 2.3], [0.27, -0.27, 2.6]],  # small, in 4 tiles
        ]
    )
    rotated = np.stack([-faces[..., 1], faces[..., 0], faces[..., 2]], -1)[::-1]
    fv = np.stack([faces, rotated]).astype(dtype)
    rng = np.random.default_rng(20190527)
    if key.texture_type == "uv":
        tex = _check_uv_textures(rng, dtype)
    else:
        tex = rng.uniform(0.05, 0.95, (2, 5, key.num_texels, 3)).astype(dtype)
    weights = rng.normal(size=(2, 16, 16, 4)).astype(dtype)
    opts = StaticOptions(
        image_size=16,
        background=(0.2, 0.3, 0.4),
        dist_func=key.dist_func,
        aggr_rgb=key.aggr_rgb,
        aggr_alpha=key.aggr_alpha,
        texture_type=key.texture_type,
        uv_wrap=key.uv_wrap or "repeat",
    )
    scalars = dict(sigma_val=1e-2, gamma_val=1e-2, near=1.0, far=6.0, eps=1e-3, dist_eps=1e-4)
    return fv, tex, weights, opts, scalars


def _check_uv_textures(rng: np.random.Generator, dtype) -> UVTexture:
    """The check scene's UV textures: a 6 x 5 image per mesh (not square: a row / column
    mix-up shows), corner UVs in [-0.7, 1.7] (every face's UVs leave [0, 1], so the wrap mode
    matters, and each spans several texels, so the bilinear weights vary over a face) and
    tints in [0.6, 1.4]."""
    image = rng.uniform(0.05, 0.95, (2, 6, 5, 3)).astype(dtype)
    face_uvs = rng.uniform(-0.7, 1.7, (2, 5, 3, 2)).astype(dtype)
    face_tint = rng.uniform(0.6, 1.4, (2, 5, 3)).astype(dtype)
    return UVTexture(image, face_uvs, face_tint)


@functools.partial(jax.jit, static_argnums=(0, 1, 2))
def _image_and_grads(raster, opts: StaticOptions, cfg, fv, tex, scalars: Scalars, weights):
    """``raster(fv, tex, scalars, opts, cfg)`` and its vjp with ``weights`` (one compilation per
    rasterizer and option set, reused when a check is repeated, e.g. after :func:`_reset`)."""
    img, pull = jax.vjp(lambda f, t, s: raster(f, t, s, opts, cfg), fv, tex, scalars)
    return img, pull(weights)


def _compare(key: OptionKey) -> tuple[float, float]:
    """Pallas against XLA on :func:`check_scene` for ``fill_back`` off and on: the image and the
    gradients (vertices, textures, sigma_val, gamma_val, near, far, eps) of a random weighting
    of it.

    Returns:
      ``(largest absolute image difference, largest gradient difference relative to
      max(1, max |XLA gradient|) of its leaf)``.

    Raises:
      whatever the kernels raise, or ``AssertionError`` naming the first mismatch.
    """
    dtype = np.dtype(key.dtype)
    fv, tex, weights, opts, values = check_scene(key, dtype)
    cfg = resolve_config(key.pallas_config)  # raises without Pallas's Triton backend
    # lower precisions get proportionally looser tolerances (float64: the float32 ones)
    scale = max(1.0, float(np.finfo(dtype).eps / np.finfo(np.float32).eps))

    # ``rasterize_pallas`` is looked up here, at call time: tests monkeypatch this module's name
    runs = {
        "pallas": functools.partial(_image_and_grads, rasterize_pallas, opts, cfg),
        "xla": functools.partial(_image_and_grads, rasterize_tiled, opts, TilingConfig()),
    }
    tex_names = [f"textures.{n}" for n in UVTexture._fields] if key.texture_type == "uv" else []
    names = ("face_vertices", *(tex_names or ["textures"]), *Scalars._fields)
    worst_image = worst_grad = 0.0
    for fill_back in (0.0, 1.0):
        scalars = Scalars(
            **{k: np.asarray(v, dtype) for k, v in values.items()},
            fill_back=np.asarray(fill_back, dtype),
        )
        img, grads = jax.device_get(runs["pallas"](fv, tex, scalars, weights))
        img_x, grads_x = jax.device_get(runs["xla"](fv, tex, scalars, weights))
        leaves = [("image", img, img_x, 1.0)]
        pairs = zip(names, jax.tree.leaves(grads), jax.tree.leaves(grads_x), strict=True)
        for name, g, g_x in pairs:
            leaves.append((f"gradient of {name}", g, g_x, max(1.0, float(np.max(np.abs(g_x))))))
        for name, a, b, norm in leaves:
            a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
            if a.shape != b.shape:
                raise AssertionError(f"{name}: shape {a.shape}, XLA path {b.shape}")
            tol = (IMAGE_ATOL if name == "image" else GRAD_RTOL) * scale
            diff = np.abs(a - b) / norm
            if not np.all(diff <= tol):  # also catches NaN / inf
                bad = float(np.max(np.where(np.isnan(diff), np.inf, diff)))
                what = "max diff" if name == "image" else "max diff / max(1, max|grad|)"
                raise AssertionError(
                    f"{name} differs from the XLA path: {what} {bad:.3g} > tolerance {tol:.3g} "
                    f"(fill_back={bool(fill_back)})"
                )
            if name == "image":
                worst_image = max(worst_image, float(diff.max()))
            else:
                worst_grad = max(worst_grad, float(diff.max()))
    return worst_image, worst_grad
