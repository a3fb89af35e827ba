"""UV-mapped textures (``texture_type='uv'``) on every path: exact colours against an
independent NumPy sampler (perspective-correct UVs, bilinear filtering, both wrap modes),
agreement with surface textures, gradients of the tiled XLA path and the Pallas kernels (Pallas
interpreter) against autodiff of the dense reference in float64, composition with jit / vmap /
grad and padded batches, the argument errors, the backend self-check's UV scene, and the
kernels' Triton lowering."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from helpers import SMALL_TILING, mode_kwargs, random_scene
from test_pallas import _triton_lowering_without_gpu

import softjax as sj
from bench import triton_check
from softjax.ops import dispatch, pallas_kernels
from softjax.ops.options import Scalars, UVTexture
from softjax.ops.xla_tiled import TilingConfig, rasterize_tiled

# tiny Pallas tiles and windows, and a capacity that forces several binning passes
INTERP = sj.PallasConfig(tile=4, window=4, bwd_window=2, capacity=23, interpret=True)
BACKENDS = {
    "reference": {},
    "xla": {"tiling": SMALL_TILING},
    "pallas": {"pallas_config": INTERP},
}


def sample_bilinear(image: np.ndarray, u, v, wrap: str) -> np.ndarray:
    """NumPy bilinear lookup of an ``[H, W, 3]`` image at texture coordinates ``u``, ``v``
    (texel ``(i, j)`` centred at ``((j + 0.5) / W, 1 - (i + 0.5) / H)``, row 0 at the top)."""
    h, w = image.shape[:2]
    x, y = np.asarray(u) * w - 0.5, (1.0 - np.asarray(v)) * h - 0.5
    x0, y0 = np.floor(x), np.floor(y)
    fx, fy = (x - x0)[..., None], (y - y0)[..., None]

    def texel(i, j):
        i, j = i.astype(np.int64), j.astype(np.int64)
        if wrap == "repeat":
            i, j = i % h, j % w
        else:
            i, j = np.clip(i, 0, h - 1), np.clip(j, 0, w - 1)
        return image[i, j]

    top = (1 - fx) * texel(y0, x0) + fx * texel(y0, x0 + 1)
    bottom = (1 - fx) * texel(y0 + 1, x0) + fx * texel(y0 + 1, x0 + 1)
    return (1 - fy) * top + fy * bottom


# A parallelogram in camera space, O + s E1 + t E2 (s, t in [0, 1]), seen by a pinhole camera
# x = F X / Z, y = F Y / Z, z = Z: depths from 2 to 5.8, so the perspective division matters.
# Its UVs are affine in (s, t) and leave [0, 1] on every side.
QUAD_O = np.array([-0.9, -0.7, 2.0])
QUAD_E1 = np.array([1.6, 0.2, 3.0])
QUAD_E2 = np.array([0.3, 1.5, 0.8])
QUAD_F = 2.0
UV0, UV_S, UV_T = np.array([-0.3, -0.2]), np.array([1.7, 0.3]), np.array([-0.2, 1.5])


def perspective_quad():
    """Face vertices ``[1, 2, 3, 3]`` (triangles (00, 10, 11) and (00, 11, 01) of (s, t)) and
    face UVs ``[1, 2, 3, 2]``."""
    st = {"00": (0, 0), "10": (1, 0), "11": (1, 1), "01": (0, 1)}
    faces = (("00", "10", "11"), ("00", "11", "01"))
    fv, uvs = [], []
    for face in faces:
        corners, corner_uvs = [], []
        for name in face:
            s, t = st[name]
            p = QUAD_O + s * QUAD_E1 + t * QUAD_E2
            corners.append([QUAD_F * p[0] / p[2], QUAD_F * p[1] / p[2], p[2]])
            corner_uvs.append(UV0 + s * UV_S + t * UV_T)
        fv.append(corners)
        uvs.append(corner_uvs)
    return np.array([fv]), np.array([uvs])


def quad_oracle(size: int):
    """Per pixel centre: the (s, t) of the quad point it sees (ray-plane intersection, not
    barycentrics), and the UVs the screen-space (affine) interpolation would give instead."""
    idx = np.arange(size)
    x = ((2 * idx + 1 - size) / size)[None, :].repeat(size, 0)
    y = ((size - 1 - 2 * idx) / size)[:, None].repeat(size, 1)
    ray = np.stack([x / QUAD_F, y / QUAD_F, np.ones_like(x)], -1)
    normal = np.cross(QUAD_E1, QUAD_E2)
    point = ray * ((normal @ QUAD_O) / (ray @ normal))[..., None]
    basis = np.stack([QUAD_E1, QUAD_E2], -1)  # [3, 2]
    st = ((point - QUAD_O) @ basis) @ np.linalg.inv(basis.T @ basis)  # least squares, exact
    s, t = st[..., 0], st[..., 1]
    # screen-space barycentrics of the same pixels, for the (wrong) affine interpolation
    fv, uvs = perspective_quad()
    affine = np.zeros(x.shape + (2,))
    for f in range(2):
        (x0, y0), (x1, y1), (x2, y2) = fv[0, f, :, :2]
        det = (x1 - x0) * (y2 - y0) - (x2 - x0) * (y1 - y0)
        w1 = ((x - x0) * (y2 - y0) - (x2 - x0) * (y - y0)) / det
        w2 = ((x1 - x0) * (y - y0) - (x - x0) * (y1 - y0)) / det
        w = np.stack([1 - w1 - w2, w1, w2], -1)
        inside = (w >= 0).all(-1)
        affine[inside] = (w @ uvs[0, f])[inside]
    return s, t, affine


@pytest.mark.parametrize("wrap", ["repeat", "clamp"])
def test_perspective_quad_matches_numpy_sampler(float64, wrap):
    """Hard coverage and hard colour: every pixel the quad covers shows
    ``tint * bilinear(image, uv)`` at the perspective-correct UV of the point it sees, on
    every path (float64, to 1e-12); pixels outside show the background with alpha 0."""
    size = 24
    fv, uvs = perspective_quad()
    rng = np.random.default_rng(4)
    image = rng.uniform(size=(1, 5, 7, 3))  # not square: a row / column mix-up shows
    tint = np.array([[[0.8, 1.1, 0.9], [1.2, 0.7, 1.0]]])
    s, t, affine = quad_oracle(size)
    uv = UV0 + s[..., None] * UV_S + t[..., None] * UV_T
    margin = 1e-6  # pixels this close to an edge or the diagonal are left out
    inside = (np.minimum(s, t) > margin) & (np.maximum(s, t) < 1 - margin)
    inside &= np.abs(s - t) > margin
    outside = (np.minimum(s, t) < -margin) | (np.maximum(s, t) > 1 + margin)
    face = np.where(s > t, 0, 1)  # triangle (00, 10, 11) holds the points with s > t
    want = tint[0, face] * sample_bilinear(image[0], uv[..., 0], uv[..., 1], wrap)
    assert inside.sum() > 100 and outside.sum() > 100
    assert np.any(uv[inside] < 0) and np.any(uv[inside] > 1)  # the wrap mode matters
    # the screen-space interpolation would be visibly wrong: the test needs perspective
    wrong = sample_bilinear(image[0], affine[..., 0], affine[..., 1], wrap)
    assert np.abs(tint[0, face] * wrong - want)[inside].max() > 0.05
    kw = dict(
        image_size=size,
        texture_type="uv",
        uv_wrap=wrap,
        dist_func="hard",
        aggr_func_rgb="hard",
        aggr_func_alpha="hard",
        background_color=(0.2, 0.3, 0.4),
    )
    for backend, options in BACKENDS.items():
        img = sj.soft_rasterize(
            fv, image, face_uvs=uvs, face_tint=tint, backend=backend, **options, **kw
        )
        img = np.asarray(img)[0]
        assert img.dtype == np.float64
        np.testing.assert_allclose(img[inside][:, :3], want[inside], atol=1e-12, err_msg=backend)
        np.testing.assert_array_equal(img[inside][:, 3], 1.0)
        np.testing.assert_array_equal(img[outside], [[0.2, 0.3, 0.4, 0.0]] * outside.sum())


def test_screen_filling_image_renders_as_itself(float64):
    """A fronto-parallel quad covering the screen with ``u = (x + 1) / 2``, ``v = (y + 1) / 2``
    puts every pixel centre on the centre of the texel of the same row and column (of an
    S x S image), so the render is the image itself: row 0 is the top, column 0 the left."""
    size = 12
    # a quadrilateral around the screen whose diagonal passes no pixel centre (there the
    # closed-triangle test of dist_func='hard' may miss both triangles by rounding)
    corners = {"bl": (-1.3, -1.2), "br": (1.2, -1.3), "tr": (1.3, 1.25), "tl": (-1.25, 1.3)}
    faces = (("bl", "tl", "tr"), ("bl", "tr", "br"))  # clockwise on screen
    fv = np.array([[[[*corners[c], 3.0] for c in face] for face in faces]])
    uvs = np.array(
        [[[[(corners[c][0] + 1) / 2, (corners[c][1] + 1) / 2] for c in face] for face in faces]]
    )
    image = np.random.default_rng(5).uniform(size=(1, size, size, 3))
    kw = dict(image_size=size, texture_type="uv", dist_func="hard", aggr_func_rgb="hard")
    for backend, options in BACKENDS.items():
        img = sj.soft_rasterize(fv, image, face_uvs=uvs, backend=backend, **options, **kw)
        np.testing.assert_allclose(np.asarray(img)[0, ..., :3], image[0], atol=1e-12)


def blocky_uv_scene(seed: int):
    """A random scene whose every face's UVs lie in the middle of the face's own 4 x 4 texel
    block of the image (at least one texel centre away from the block's border), the block
    flat in the face's colour: bilinear sampling sees that colour only."""
    fv, tex, _ = random_scene(seed, batch=2, faces=6, res=1)  # tex: [2, 6, 1, 3]
    b, f = fv.shape[:2]
    image = np.repeat(np.repeat(tex[:, None, :, 0], 4, 1), 4, 2)  # [B, 4, 4 F, 3]
    rng = np.random.default_rng(seed)
    # u between the centres of the block's texels 1 and 2: (4 f + 1.5) / 4F .. (4 f + 2.5) / 4F
    block = np.arange(f)[None, :, None]
    u = (4 * block + rng.uniform(1.5, 2.5, (b, f, 3))) / (4 * f)
    v = 1 - rng.uniform(1.5, 2.5, (b, f, 3)) / 4
    return fv, tex, image, np.stack([u, v], -1)


@pytest.mark.parametrize(
    "dist,rgb,alpha",
    [
        ("euclidean", "softmax", "prod"),
        ("barycentric", "softmax", "sum"),
        ("hard", "softmax", "hard"),
        ("euclidean", "hard", "hard"),
        ("barycentric", "hard", "prod"),
        ("hard", "hard", "sum"),
    ],
)
def test_flat_blocks_equal_surface_textures(float64, dist, rgb, alpha):
    """With one flat colour per face, 'uv' renders what 'surface' with one texel does, in
    every aggregation (dense reference; the XLA path for one mode)."""
    fv, tex, image, uvs = blocky_uv_scene(8)
    kw = mode_kwargs(dist, rgb, alpha, "surface", image_size=12)
    backends = ("reference", "xla") if (rgb, alpha) == ("softmax", "prod") else ("reference",)
    for backend in backends:
        want = sj.soft_rasterize(fv, tex, backend=backend, **kw)
        kw_uv = kw | dict(texture_type="uv", face_uvs=uvs, uv_wrap="clamp")
        got = sj.soft_rasterize(fv, image, backend=backend, **kw_uv)
        np.testing.assert_allclose(got, want, atol=1e-12, err_msg=backend)
        # faces paint pixels (not vacuous)
        assert np.abs(np.asarray(want)[..., :3] - (0.2, 0.3, 0.4)).max() > 0.1


def uv_scene(seed: int, faces: int = 6, image_hw=(5, 7)):
    """Random faces (some crossing near or beyond far), a random image per mesh, corner UVs in
    [-0.6, 1.6] and tints in [0.5, 1.5]."""
    fv, _, _ = random_scene(seed, batch=2, faces=faces)
    rng = np.random.default_rng(seed + 100)
    image = rng.uniform(size=(2, *image_hw, 3))
    uvs = rng.uniform(-0.6, 1.6, (2, faces, 3, 2))
    tint = rng.uniform(0.5, 1.5, (2, faces, 3))
    return fv, image, uvs, tint


GRAD_NAMES = ("face_vertices", "image", "face_uvs", "face_tint", "sigma", "gamma", "near", "far")
GRAD_NAMES += ("eps",)


def uv_loss(kw, weights, backend, face_counts=None, **options):
    """``sum(soft_rasterize(...) * weights)`` of the vertices, the image, the UVs, the tint
    and the traced scalars."""

    def loss(fv, image, uvs, tint, sigma, gamma, near, far, eps):
        img = sj.soft_rasterize(
            fv,
            image,
            face_uvs=uvs,
            face_tint=tint,
            face_counts=face_counts,
            backend=backend,
            sigma_val=sigma,
            gamma_val=gamma,
            near=near,
            far=far,
            eps=eps,
            **options,
            **kw,
        )
        return jnp.sum(img * weights)

    return loss


def check_gradients(backend, options, dist, rgb, alpha, wrap, face_counts=None):
    fv, image, uvs, tint = uv_scene(11)
    weights = np.random.default_rng(1).normal(size=(2, 12, 12, 4))
    kw = {
        k: v
        for k, v in mode_kwargs(dist, rgb, alpha, f"uv:{wrap}", image_size=12).items()
        if k not in ("sigma_val", "gamma_val", "near", "far")
    }
    args = (fv, image, uvs, tint) + tuple(np.float64(v) for v in (1e-3, 1e-2, 1.0, 6.0, 1e-3))
    argnums = tuple(range(len(args)))
    want = jax.grad(uv_loss(kw, weights, "reference", face_counts), argnums)(*args)
    got = jax.grad(uv_loss(kw, weights, backend, face_counts, **options), argnums)(*args)
    for name, w, g in zip(GRAD_NAMES, want, got, strict=True):
        assert g.dtype == np.float64 and g.shape == np.shape(w), name
        scale = max(float(np.max(np.abs(w))), 1.0)
        np.testing.assert_allclose(g, w, atol=1e-9 * scale, err_msg=name)
    for name, w in zip(GRAD_NAMES[:4], want[:4], strict=True):  # not vacuous
        assert np.abs(np.asarray(w)).max() > 1e-2, name
    return want


@pytest.mark.parametrize(
    "dist,rgb,alpha,wrap",
    [
        ("euclidean", "softmax", "prod", "repeat"),
        ("barycentric", "hard", "sum", "clamp"),
        ("hard", "softmax", "hard", "clamp"),
    ],
)
def test_xla_gradients_match_reference(float64, dist, rgb, alpha, wrap):
    """Vertices (through the barycentrics, 1/z and depth of the UVs and through coverage),
    image, UVs, tint and scalars; several tile groups, windows and binning passes."""
    check_gradients("xla", {"tiling": SMALL_TILING}, dist, rgb, alpha, wrap)


@pytest.mark.parametrize(
    "dist,rgb,alpha,wrap,padded",
    [
        ("euclidean", "softmax", "prod", "clamp", True),
        ("barycentric", "hard", "sum", "repeat", False),
    ],
)
def test_pallas_gradients_match_reference(float64, dist, rgb, alpha, wrap, padded):
    """The kernels in the Pallas interpreter (several binning passes), the image's gradient
    added into the whole-array output; with ``face_counts`` (padding faces of image 0)."""
    counts = np.array([4, 6], np.int32) if padded else None
    want = check_gradients("pallas", {"pallas_config": INTERP}, dist, rgb, alpha, wrap, counts)
    if padded:  # the padding faces get nothing
        for g in (want[0], want[2], want[3]):
            assert np.all(np.asarray(g)[0, 4:] == 0)


def test_padded_batch_renders_each_mesh_alone():
    """``face_counts`` with UV textures (XLA path): a padded batch renders, and differentiates,
    each mesh as it does alone; the padding's UVs and tints get zero gradient."""
    fv, image, uvs, tint = (x.astype(np.float32) for x in uv_scene(3, faces=5))
    counts = np.array([3, 5], np.int32)
    kw = mode_kwargs("euclidean", "softmax", "prod", "uv:repeat", image_size=12)
    weights = np.random.default_rng(2).normal(size=(2, 12, 12, 4)).astype(np.float32)

    def loss(fv, image, uvs, tint, counts=None, b=slice(None)):
        img = sj.soft_rasterize(
            fv, image, face_uvs=uvs, face_tint=tint, face_counts=counts, backend="xla", **kw
        )
        return jnp.sum(img * weights[b]), img

    grad = jax.grad(loss, (0, 1, 2, 3), has_aux=True)
    g_pad, img_pad = grad(fv, image, uvs, tint, counts)
    for b, n in enumerate(counts):
        one = (x[b : b + 1, :n] for x in (fv, uvs, tint))
        f1, u1, t1 = one
        g_one, img_one = grad(f1, image[b : b + 1], u1, t1, None, slice(b, b + 1))
        np.testing.assert_allclose(img_pad[b], img_one[0], atol=1e-6)
        for g, g1 in zip(g_pad, g_one, strict=True):
            # float32 sums in another order: errors relative to the largest term (~50 here)
            atol = 1e-5 * max(1.0, float(np.max(np.abs(g1))))
            if g.ndim == 4 and g.shape[1:3] == image.shape[1:3]:  # the image
                np.testing.assert_allclose(g[b], g1[0], atol=atol)
            else:
                np.testing.assert_allclose(g[b, :n], g1[0], atol=atol)
                assert np.all(np.asarray(g)[b, n:] == 0)


def test_jit_vmap_grad_compose():
    """jit(grad) and vmap over meshes agree with the batched call (XLA path, forward and
    gradients; the Pallas kernels' forward under vmap)."""
    fv, image, uvs, tint = (x.astype(np.float32) for x in uv_scene(5, faces=4))
    kw = mode_kwargs("euclidean", "softmax", "prod", "uv:clamp", image_size=8)
    weights = np.random.default_rng(3).normal(size=(2, 8, 8, 4)).astype(np.float32)

    def render(fv, image, uvs, tint, **options):
        return sj.soft_rasterize(fv, image, face_uvs=uvs, face_tint=tint, **kw, **options)

    def one(fv, image, uvs, tint, **options):
        return render(fv[None], image[None], uvs[None], tint[None], **options)[0]

    def loss_batched(*args):
        return jnp.sum(render(*args, backend="xla") * weights)

    def loss_vmapped(*args):
        return jnp.sum(jax.vmap(lambda *a: one(*a, backend="xla"))(*args) * weights)

    args = (fv, image, uvs, tint)
    want = jax.grad(loss_batched, (0, 1, 2, 3))(*args)
    for fn in (jax.jit(jax.grad(loss_batched, (0, 1, 2, 3))), jax.grad(loss_vmapped, (0, 1, 2, 3))):
        for g, w in zip(fn(*args), want, strict=True):
            np.testing.assert_allclose(g, w, rtol=1e-5, atol=1e-5 * float(np.abs(w).max()))
    assert float(np.abs(want[1]).max()) > 1e-2
    batched = render(*args, backend="pallas", pallas_config=INTERP)
    vmapped = jax.vmap(lambda *a: one(*a, backend="pallas", pallas_config=INTERP))(*args)
    np.testing.assert_allclose(vmapped, batched, atol=1e-6)


FV, IMAGE, UVS, _ = (x.astype(np.float32) for x in uv_scene(2, faces=3))


@pytest.mark.parametrize(
    "changes,message",
    [
        (dict(textures=IMAGE[0]), r"texture_type='uv' textures must be one RGB texture image"),
        (dict(textures=IMAGE[:1]), r"\[B, H, W, 3\] with B=2 .* got \(1, 5, 7, 3\)"),
        (dict(textures=IMAGE[..., :2]), r"textures must be one RGB texture image per mesh"),
        (dict(textures=IMAGE[:, :0]), r"H, W >= 1, got \(2, 0, 7, 3\)"),
        (dict(textures=IMAGE.astype(np.int32)), r"textures must be a floating-point array"),
        (dict(face_uvs=None), r"texture_type='uv' needs face_uvs"),
        (dict(face_uvs=UVS[..., :1]), r"face_uvs must have shape \[B, F, 3, 2\] = \(2, 3, 3, 2\)"),
        (dict(face_uvs=UVS.astype(np.int32)), r"face_uvs must be a floating-point array"),
        (dict(face_tint=np.ones((2, 3))), r"face_tint must have shape \[B, F, 3\] = \(2, 3, 3\)"),
        (dict(face_tint=np.ones((2, 3, 3), np.int32)), r"face_tint must be a floating-point"),
        (dict(uv_wrap="mirror"), r"uv_wrap must be one of \['repeat', 'clamp'\], got 'mirror'"),
        (dict(uv_wrap=None), r"uv_wrap must be one of"),
        (
            dict(texture_type="surface", textures=np.ones((2, 3, 1, 3), np.float32)),
            r"face_uvs and face_tint belong to texture_type='uv', got texture_type='surface'",
        ),
        (
            dict(texture_type="vertex", textures=np.ones((2, 3, 3, 3), np.float32), face_uvs=None),
            None,  # no uv arguments: fine
        ),
        (
            dict(face_uvs=None, face_tint=np.ones((2, 3, 3)), texture_type="vertex"),
            r"face_uvs and face_tint belong to texture_type='uv', got texture_type='vertex'",
        ),
    ],
)
def test_uv_argument_errors(changes, message):
    args = dict(textures=IMAGE, face_uvs=UVS, texture_type="uv", image_size=8, backend="xla")
    args |= changes
    if message is None:
        assert sj.soft_rasterize(FV, **args).shape == (2, 8, 8, 4)
        return
    with pytest.raises(ValueError, match=message):
        sj.soft_rasterize(FV, **args)


def test_pallas_rejects_images_past_int32_offsets(monkeypatch):
    """The kernels address the flattened images with int32 offsets: a batch of images with
    ``B * H * W * 3 >= 2**31`` values is refused by name (the limit lowered to show it)."""
    monkeypatch.setattr(pallas_kernels, "UV_OFFSET_LIMIT", IMAGE.size)
    with pytest.raises(ValueError, match=r"int32 offsets: B \* H \* W \* 3 = 210 .*'xla'"):
        sj.soft_rasterize(
            FV, IMAGE, face_uvs=UVS, texture_type="uv", image_size=6, backend="pallas"
        )


UV_KEY = dispatch.OptionKey(
    "euclidean", "softmax", "prod", "uv", 0, "float32", sj.PallasConfig(), "clamp"
)


def test_self_check_key_and_scene_cover_uv(monkeypatch):
    """'auto' on a (simulated) GPU: a UV option set gets its own self-check, keyed by the wrap
    mode; the real kernels (interpreted) pass the check's UV scene."""
    monkeypatch.setattr(dispatch, "_on_gpu", lambda: True)
    monkeypatch.delenv(dispatch.ENV_VAR, raising=False)
    dispatch._reset()
    try:
        kw = dict(image_size=8, sigma_val=1e-3, gamma_val=1e-2, texture_type="uv")
        jax.make_jaxpr(lambda v: sj.soft_rasterize(v, IMAGE, face_uvs=UVS, uv_wrap="clamp", **kw))(
            FV
        )
        report = sj.backend_report()
        name = UV_KEY.describe()
        assert "texture_type=uv, uv_wrap=clamp, texels=0" in name
        assert list(report) == [name]
        assert report[name]["backend"] == "pallas", report[name]["reason"]
        # another wrap mode is another option set (the kernels' addressing differs)
        monkeypatch.setattr(dispatch, "_on_gpu", lambda: False)
        sj.soft_rasterize(FV, IMAGE, face_uvs=UVS, uv_wrap="repeat", **kw)
        assert name.replace("clamp", "repeat") in sj.backend_report()
    finally:
        dispatch._reset()


def test_self_check_uv_scene_is_sensitive():
    """The check's UV scene (XLA path): every face gets a vertex, UV and tint gradient well
    above the check's tolerance, and recolouring either image, swapping the images or moving
    one face's UVs moves the image by far more than it."""
    fv, tex, weights, opts, values = dispatch.check_scene(UV_KEY, np.float32)
    assert isinstance(tex, UVTexture) and opts.uv_wrap == "clamp"
    sc = Scalars(**{k: np.float32(v) for k, v in values.items()}, fill_back=np.float32(1))

    def run(t):
        img, grads = dispatch._image_and_grads(
            rasterize_tiled, opts, TilingConfig(), fv, t, sc, weights
        )
        return np.asarray(img), grads

    img, (g_fv, g_tex, _) = run(tex)
    # every face's gradients are at least 10x the check's tolerance: a face whose gradient
    # the kernels got 10% wrong fails the check
    for g in (g_fv, g_tex.face_uvs, g_tex.face_tint):
        per_face = np.abs(np.asarray(g)).reshape(2, 5, -1).max(-1)
        assert per_face.min() > 10 * dispatch.GRAD_RTOL * max(1.0, np.abs(g).max())
    changed = {"swapped images": tex._replace(image=tex.image[::-1])}
    for b in range(2):
        recoloured = tex.image.copy()
        recoloured[b] = 1.0 - recoloured[b]
        changed[f"image {b} recoloured"] = tex._replace(image=recoloured)
        for f in range(5):
            moved = tex.face_uvs.copy()
            moved[b, f] += 0.3
            changed[f"UVs of face {f} of image {b}"] = tex._replace(face_uvs=moved)
    for name, t in changed.items():
        assert np.abs(run(t)[0] - img).max() > 100 * dispatch.IMAGE_ATOL, name


@pytest.mark.skipif(bool(_triton_lowering_without_gpu()), reason=_triton_lowering_without_gpu())
def test_uv_kernels_lower_to_triton(tmp_path):
    """``bench/triton_check.py``'s dump (Pallas's Triton lowering, no GPU) of the UV kernels,
    both wrap modes: the forward gathers texels; the backward adds the image's gradient with
    masked atomic adds (4 taps x 3 channels)."""
    modes = [m for m in triton_check.MODES if m[3].startswith("uv:")]
    assert {m[3] for m in modes} == {"uv:repeat", "uv:clamp"}
    paths = triton_check.dump(str(tmp_path), {}, modes)
    assert len(paths) == 2 * len(modes)
    for path in paths:
        text = open(path).read()
        atomics = [ln for ln in text.splitlines() if "tt.atomic_rmw fadd" in ln]
        if "_bwd_" in path:
            assert len(atomics) == 12 and all("xi1>" in ln for ln in atomics), path  # masked
        else:
            assert not atomics, path
