"""``backend='auto'``'s self-checking dispatch (softjax/ops/dispatch.py), on the CPU.

``dispatch._on_gpu`` is monkeypatched to force the GPU path: the check then runs the Pallas
kernels in the Pallas interpreter. Kernels that raise or compute wrong values replace
``dispatch.rasterize_pallas`` (the name the check calls). Every fake is a module-level function
so that the check's compilations are shared between tests (``dispatch._image_and_grads`` is
jitted with the rasterizer as a static argument).
"""

from __future__ import annotations

import threading
import time
import warnings

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from helpers import random_scene, x64

import softjax as sj
from softjax.ops import dispatch, pallas_kernels
from softjax.ops.options import Scalars
from softjax.ops.xla_tiled import TilingConfig, rasterize_tiled

# the option set of every test: euclidean / softmax / prod, surface textures with one texel
KW = dict(image_size=8, sigma_val=1e-3, gamma_val=1e-2, near=1.0, far=6.0)
KEY = dispatch.OptionKey("euclidean", "softmax", "prod", "surface", 1, "float32", sj.PallasConfig())
NAME = KEY.describe()


def _scene():
    fv, tex, _ = random_scene(3, batch=2, faces=4, res=1)
    return fv.astype(np.float32), tex.astype(np.float32)


FV, TEX = _scene()
WEIGHTS = np.random.default_rng(5).normal(size=(2, 8, 8, 4)).astype(np.float32)


def _loss(backend=None):
    def loss(fv):
        return jnp.sum(sj.soft_rasterize(fv, TEX, backend=backend, **KW) * WEIGHTS)

    return loss


CALLS: list[str] = []  # what the fakes saw (cleared per test)


def _raising_kernel(fv, tex, sc, opts, cfg):
    CALLS.append(jnp.dtype(fv.dtype).name)
    time.sleep(0.05)  # widens the window in which concurrent callers could race (no assert)
    raise RuntimeError("boom: Triton lowering failed")


def _wrong_image_kernel(fv, tex, sc, opts, cfg):
    """A constant grey image (differentiable, gradients zero)."""
    CALLS.append("wrong image")
    s = opts.image_size
    return jnp.full((fv.shape[0], s, s, 4), 0.5, fv.dtype) + 0.0 * (jnp.sum(fv) + jnp.sum(tex))


@jax.custom_vjp
def _wrong_grad_op(fv, tex, sc):
    return rasterize_tiled(fv, tex, sc, dispatch.check_scene(KEY, np.float32)[3], TilingConfig())


def _wrong_grad_fwd(fv, tex, sc):
    opts = dispatch.check_scene(KEY, np.float32)[3]
    img, pull = jax.vjp(lambda f, t, s: rasterize_tiled(f, t, s, opts, TilingConfig()), fv, tex, sc)
    return img, pull


def _wrong_grad_bwd(pull, g):
    # every gradient 1% off: the forward is exact, only the gradient check can see it
    return jax.tree.map(lambda x: 1.01 * x, pull(g))


_wrong_grad_op.defvjp(_wrong_grad_fwd, _wrong_grad_bwd)


def _wrong_grad_kernel(fv, tex, sc, opts, cfg):
    CALLS.append("wrong grad")
    return _wrong_grad_op(fv, tex, sc)


@pytest.fixture(autouse=True)
def fresh(monkeypatch):
    monkeypatch.delenv(dispatch.ENV_VAR, raising=False)
    dispatch._reset()
    CALLS.clear()
    yield
    dispatch._reset()


@pytest.fixture
def gpu(monkeypatch):
    monkeypatch.setattr(dispatch, "_on_gpu", lambda: True)


@pytest.fixture
def caught():
    with warnings.catch_warnings(record=True) as records:
        warnings.simplefilter("always")
        yield records


def _fallbacks(records):
    return [r for r in records if issubclass(r.category, sj.BackendFallbackWarning)]


def _uses_pallas(fn, *args) -> bool:
    return "pallas_call" in str(jax.make_jaxpr(fn)(*args))


def test_check_passes_in_interpreter_even_under_trace(gpu, caught):
    """The real kernels pass; the first call is traced (make_jaxpr / jit(grad) / vmap), so the
    check must run eagerly on its own arrays; Pallas then serves the options."""
    assert _uses_pallas(lambda v: sj.soft_rasterize(v, TEX, **KW), FV)
    report = sj.backend_report()
    assert list(report) == [NAME]
    assert report[NAME]["backend"] == "pallas"
    assert report[NAME]["reason"].startswith("self-check passed (max diff: image ")

    dispatch._reset()
    assert "pallas_call" in str(jax.jit(jax.grad(_loss())).trace(FV).jaxpr)
    assert sj.backend_report()[NAME]["backend"] == "pallas"

    dispatch._reset()
    fn = jax.vmap(lambda v, t: sj.soft_rasterize(v[None], t[None], **KW)[0])
    assert _uses_pallas(fn, FV, TEX)
    assert sj.backend_report()[NAME]["backend"] == "pallas"
    assert not _fallbacks(caught)


def test_raising_kernel_warns_once_and_uses_xla(gpu, caught, monkeypatch):
    monkeypatch.setattr(dispatch, "rasterize_pallas", _raising_kernel)
    first = sj.soft_rasterize(FV, TEX, **KW)
    assert len(_fallbacks(caught)) == 1
    message = str(_fallbacks(caught)[0].message)
    assert "dist_func=euclidean" in message and "texels=1" in message
    assert "RuntimeError: boom: Triton lowering failed" in message
    assert _fallbacks(caught)[0].filename == __file__  # points at the caller
    second = sj.soft_rasterize(FV, TEX, **KW)
    assert len(_fallbacks(caught)) == 1 and CALLS == ["float32"]  # checked once
    want = sj.soft_rasterize(FV, TEX, backend="xla", **KW)
    np.testing.assert_array_equal(first, want)
    np.testing.assert_array_equal(second, want)
    entry = sj.backend_report()[NAME]
    assert entry["backend"] == "xla"
    assert entry["reason"].startswith("self-check failed: RuntimeError: boom")


def test_fallback_when_first_call_is_under_jit_grad(gpu, caught, monkeypatch):
    monkeypatch.setattr(dispatch, "rasterize_pallas", _raising_kernel)
    got = jax.jit(jax.grad(_loss()))(FV)
    assert len(_fallbacks(caught)) == 1
    assert "boom" in sj.backend_report()[NAME]["reason"]  # the check itself ran, untraced
    want = jax.jit(jax.grad(_loss("xla")))(FV)
    np.testing.assert_allclose(got, want, rtol=1e-6, atol=1e-7)
    assert np.abs(want).max() > 1e-3  # not vacuous
    jax.jit(jax.grad(_loss()))(FV + 0.01)  # a new trace, same options: no second check
    assert len(_fallbacks(caught)) == 1 and len(CALLS) == 1


def test_fallback_under_vmap(gpu, caught, monkeypatch):
    monkeypatch.setattr(dispatch, "rasterize_pallas", _raising_kernel)

    def fn(backend):
        return jax.vmap(lambda v, t: sj.soft_rasterize(v[None], t[None], backend=backend, **KW))

    assert str(jax.make_jaxpr(fn(None))(FV, TEX)) == str(jax.make_jaxpr(fn("xla"))(FV, TEX))
    assert len(_fallbacks(caught)) == 1 and len(CALLS) == 1


@pytest.mark.parametrize(
    "fake,what",
    [(_wrong_image_kernel, "image differs"), (_wrong_grad_kernel, "gradient of face_vertices")],
)
def test_wrong_values_warn_once_and_use_xla(gpu, caught, monkeypatch, fake, what):
    monkeypatch.setattr(dispatch, "rasterize_pallas", fake)
    first = sj.soft_rasterize(FV, TEX, **KW)
    second = sj.soft_rasterize(FV, TEX, **KW)
    assert len(_fallbacks(caught)) == 1
    message = str(_fallbacks(caught)[0].message)
    assert what in message and "tolerance" in message
    np.testing.assert_array_equal(first, sj.soft_rasterize(FV, TEX, backend="xla", **KW))
    np.testing.assert_array_equal(second, first)
    assert sj.backend_report()[NAME]["backend"] == "xla"
    assert what in sj.backend_report()[NAME]["reason"]


def test_failure_is_per_option_set(gpu, caught, monkeypatch):
    """Another option set gets its own check (and its own warning)."""
    monkeypatch.setattr(dispatch, "rasterize_pallas", _raising_kernel)
    sj.soft_rasterize(FV, TEX, **KW)
    sj.soft_rasterize(FV, TEX, aggr_func_alpha="sum", **KW)
    sj.soft_rasterize(FV, TEX, aggr_func_alpha="sum", **KW)
    assert len(_fallbacks(caught)) == 2 and len(CALLS) == 2
    assert len(sj.backend_report()) == 2
    assert all(v["backend"] == "xla" for v in sj.backend_report().values())


def test_concurrent_first_calls_check_once(gpu, caught, monkeypatch):
    monkeypatch.setattr(dispatch, "rasterize_pallas", _raising_kernel)
    errors = []

    def call():
        try:
            jax.make_jaxpr(lambda v: sj.soft_rasterize(v, TEX, **KW))(FV)
        except Exception as error:  # reported below
            errors.append(error)

    threads = [threading.Thread(target=call) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    assert len(CALLS) == 1 and len(_fallbacks(caught)) == 1


def test_check_runs_in_the_callers_dtype(gpu, caught, monkeypatch):
    """Under jax.enable_x64 the check (in its helper thread) still sees float64."""
    monkeypatch.setattr(dispatch, "rasterize_pallas", _raising_kernel)
    with x64():
        jax.make_jaxpr(lambda v: sj.soft_rasterize(v, TEX.astype(np.float64), **KW))(
            FV.astype(np.float64)
        )
    assert CALLS == ["float64"]
    assert list(sj.backend_report()) == [NAME.replace("float32", "float64")]


def test_not_a_gpu_runs_no_check(caught, monkeypatch):
    monkeypatch.setattr(dispatch, "_on_gpu", lambda: False)
    monkeypatch.setattr(dispatch, "rasterize_pallas", _raising_kernel)
    assert not _uses_pallas(lambda v: sj.soft_rasterize(v, TEX, **KW), FV)
    assert not CALLS and not caught
    assert sj.backend_report() == {NAME: {"backend": "xla", "reason": "not a GPU"}}


@pytest.mark.parametrize("value", ["xla", "pallas", "auto", " Pallas ", ""])
def test_environment_override(gpu, caught, monkeypatch, value):
    monkeypatch.setattr(dispatch, "rasterize_pallas", _raising_kernel)
    monkeypatch.setenv("SOFTJAX_BACKEND", value)
    uses = _uses_pallas(lambda v: sj.soft_rasterize(v, TEX, **KW), FV)
    entry = sj.backend_report()[NAME]
    chosen = value.strip().lower() or "auto"
    if chosen == "auto":  # the check runs (and fails with the raising kernel)
        assert not uses and len(CALLS) == 1 and len(_fallbacks(caught)) == 1
        assert entry["reason"].startswith("self-check failed")
    else:  # forced: no check, no warning
        assert uses == (chosen == "pallas") and not CALLS and not caught
        assert entry == {"backend": chosen, "reason": f"SOFTJAX_BACKEND={chosen}"}
    # an explicit backend= wins over the environment; the report keeps a self-check outcome
    assert not _uses_pallas(lambda v: sj.soft_rasterize(v, TEX, backend="xla", **KW), FV)
    if chosen == "auto":
        assert sj.backend_report()[NAME] == entry
    else:
        assert sj.backend_report()[NAME] == {"backend": "xla", "reason": "backend='xla' passed"}


def test_bad_environment_value(monkeypatch):
    monkeypatch.setenv("SOFTJAX_BACKEND", "cuda")
    with pytest.raises(ValueError, match="SOFTJAX_BACKEND .*'cuda'"):
        sj.soft_rasterize(FV, TEX, **KW)
    # not consulted when the caller chose
    assert sj.soft_rasterize(FV, TEX, backend="xla", **KW).shape == (2, 8, 8, 4)


def test_missing_triton_backend(gpu, caught, monkeypatch):
    """Explicit 'pallas' raises clearly; 'auto' warns once and uses XLA."""
    monkeypatch.setattr(pallas_kernels, "plgpu", None)
    monkeypatch.setattr(pallas_kernels, "_PLGPU_ERROR", ImportError("no triton"), raising=False)
    with pytest.raises(RuntimeError, match="Triton backend"):
        sj.soft_rasterize(FV, TEX, backend="pallas", **KW)
    assert not _uses_pallas(lambda v: sj.soft_rasterize(v, TEX, **KW), FV)
    assert len(_fallbacks(caught)) == 1
    assert "Triton backend" in sj.backend_report()[NAME]["reason"]


def test_check_scene_is_sensitive():
    """The check can fail: on its scene, moving any one face away, swapping the two images or
    changing one face's texture moves the XLA image by far more than the check's tolerance,
    for fill_back off and on, and every face gets a gradient well above its tolerance."""
    fv, tex, weights, opts, values = dispatch.check_scene(KEY, np.float32)

    def run(f, t, fill_back):
        sc = Scalars(
            **{k: np.float32(v) for k, v in values.items()}, fill_back=np.float32(fill_back)
        )
        img, grads = dispatch._image_and_grads(
            rasterize_tiled, opts, TilingConfig(), f, t, sc, weights
        )
        return np.asarray(img), np.asarray(grads[0])

    margin = 100 * dispatch.IMAGE_ATOL
    for fill_back in (0.0, 1.0):
        img, g_fv = run(fv, tex, fill_back)
        per_face = np.abs(g_fv).max(axis=(2, 3))  # [B, F]
        assert per_face.min() > 100 * dispatch.GRAD_RTOL * max(1.0, np.abs(g_fv).max())
        changed = {"swapped images": run(fv[::-1], tex[::-1], fill_back)[0]}
        for b in range(2):
            for f in range(fv.shape[1]):
                moved = fv.copy()
                moved[b, f, :, 0] += 5.0  # off screen
                changed[f"face {f} of image {b} moved"] = run(moved, tex, fill_back)[0]
                recoloured = tex.copy()
                recoloured[b, f] = 1.0 - recoloured[b, f]
                if fill_back or f not in (1, 3):  # back faces only show colour with fill_back
                    changed[f"face {f} of image {b} recoloured"] = run(fv, recoloured, fill_back)[0]
        for name, other in changed.items():
            assert np.abs(other - img).max() > margin, (name, fill_back)


def test_warnings_as_errors_raise_once(gpu, monkeypatch):
    """With the warning turned into an error only the first call raises; the fallback is
    cached, so later calls use the XLA path."""
    monkeypatch.setattr(dispatch, "rasterize_pallas", _raising_kernel)
    with warnings.catch_warnings():
        warnings.simplefilter("error", sj.BackendFallbackWarning)
        with pytest.raises(sj.BackendFallbackWarning, match="boom"):
            jax.make_jaxpr(lambda v: sj.soft_rasterize(v, TEX, **KW))(FV)
        assert not _uses_pallas(lambda v: sj.soft_rasterize(v, TEX, **KW), FV)
    assert len(CALLS) == 1 and sj.backend_report()[NAME]["backend"] == "xla"
