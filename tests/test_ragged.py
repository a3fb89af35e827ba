"""Padded batches of different meshes (``pad_meshes`` / ``face_counts``): each mesh of a padded
batch renders exactly as it renders alone, in every path, forward and gradients."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from helpers import SMALL_TILING, random_scene

import softjax as sj
from softjax.ops import binning
from softjax.ops.pixel_face import face_setup

SIZES = (5, 12)  # real faces of the meshes of the batch
F_PAD = 14


def _padded_scene(seed: int, pad_to: int = F_PAD, dtype=np.float32):
    """Meshes of ``SIZES`` faces padded to ``pad_to`` with garbage (random triangles on
    screen, in front of the camera), so that a padding face that leaked would show."""
    rng = np.random.default_rng(seed)
    fv, tex, vtex = random_scene(seed, batch=len(SIZES), faces=max(SIZES), res=2)
    fv_pad = rng.uniform(-0.9, 0.9, (len(SIZES), pad_to, 3, 3))
    fv_pad[..., 2] = rng.uniform(1.5, 3.0, fv_pad.shape[:-1])
    tex_pad = rng.uniform(0, 1, (len(SIZES), pad_to, 4, 3))
    vtex_pad = rng.uniform(0, 1, (len(SIZES), pad_to, 3, 3))
    for b, n in enumerate(SIZES):
        fv_pad[b, :n], tex_pad[b, :n], vtex_pad[b, :n] = fv[b, :n], tex[b, :n], vtex[b, :n]
    counts = np.asarray(SIZES, np.int32)
    return fv_pad.astype(dtype), tex_pad.astype(dtype), vtex_pad.astype(dtype), counts


def _loss(kw, weights, counts=None):
    def loss(fv, tex):
        return jnp.sum(sj.soft_rasterize(fv, tex, face_counts=counts, **kw) * weights)

    return loss


def _check_against_alone(kw, texture_type: str, rtol: float, atol: float, dtype=np.float32):
    fv, tex, vtex, counts = _padded_scene(3, dtype=dtype)
    t = tex if texture_type == "surface" else vtex
    kw = dict(kw, texture_type=texture_type, image_size=16)
    weights = np.random.default_rng(4).normal(size=(len(SIZES), 16, 16, 4)).astype(dtype)
    image = sj.soft_rasterize(fv, t, face_counts=counts, **kw)
    g_fv, g_tex = jax.grad(_loss(kw, weights, counts), (0, 1))(fv, t)
    for b, n in enumerate(SIZES):
        alone = sj.soft_rasterize(fv[b : b + 1, :n], t[b : b + 1, :n], **kw)
        np.testing.assert_allclose(image[b], alone[0], rtol=rtol, atol=atol)
        ga_fv, ga_tex = jax.grad(_loss(kw, weights[b : b + 1]), (0, 1))(
            fv[b : b + 1, :n], t[b : b + 1, :n]
        )
        np.testing.assert_allclose(g_fv[b, :n], ga_fv[0], rtol=rtol, atol=atol)
        np.testing.assert_allclose(g_tex[b, :n], ga_tex[0], rtol=rtol, atol=atol)
        # padding faces get exactly nothing
        assert not np.any(np.asarray(g_fv[b, n:])) and not np.any(np.asarray(g_tex[b, n:]))


@pytest.mark.parametrize(
    "dist,rgb,alpha,texture_type",
    [
        ("euclidean", "softmax", "prod", "surface"),
        ("barycentric", "hard", "sum", "vertex"),
        ("hard", "softmax", "hard", "surface"),
    ],
)
def test_xla_padded_equals_alone(dist, rgb, alpha, texture_type):
    kw = dict(
        backend="xla",
        tiling=SMALL_TILING,
        dist_func=dist,
        aggr_func_rgb=rgb,
        aggr_func_alpha=alpha,
        sigma_val=3e-3,
        gamma_val=3e-2,
        far=6.0,
    )
    # the pass boundaries of SMALL_TILING's small capacity fall elsewhere in a longer pair
    # list, which reorders the online sums: float32 rounding
    _check_against_alone(kw, texture_type, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("alpha", ["prod", "sum"])
def test_reference_padded_equals_alone(float64, alpha):
    kw = dict(backend="reference", aggr_func_alpha=alpha, sigma_val=3e-3, gamma_val=3e-2)
    _check_against_alone(kw, "surface", rtol=1e-10, atol=1e-12, dtype=np.float64)


def test_pallas_padded_equals_alone():
    kw = dict(
        backend="pallas",
        pallas_config=sj.TilingConfig(tile=4, window=4, bwd_window=4, interpret=True),
        aggr_func_alpha="sum",
        sigma_val=3e-3,
        gamma_val=3e-2,
    )
    _check_against_alone(kw, "surface", rtol=1e-5, atol=1e-6)


def test_padding_amount_does_not_change_results():
    kw = dict(backend="xla", image_size=16, sigma_val=3e-3, aggr_func_alpha="sum")
    fv, tex, _, counts = _padded_scene(7, pad_to=F_PAD)
    fv2, tex2, _, _ = _padded_scene(7, pad_to=F_PAD + 37)
    a = sj.soft_rasterize(fv, tex, face_counts=counts, **kw)
    b = sj.soft_rasterize(fv2, tex2, face_counts=counts, **kw)
    np.testing.assert_array_equal(a, b)


def test_all_padding_mesh_is_background():
    fv, tex, _, counts = _padded_scene(5)
    counts = counts.copy()
    counts[1] = 0
    bg = (0.25, 0.5, 0.75)
    for backend in ("reference", "xla"):
        for alpha in ("prod", "sum", "hard"):
            img = sj.soft_rasterize(
                fv,
                tex,
                face_counts=counts,
                image_size=16,
                sigma_val=3e-3,
                background_color=bg,
                aggr_func_alpha=alpha,
                backend=backend,
            )
            np.testing.assert_allclose(img[1, ..., :3], np.broadcast_to(bg, (16, 16, 3)))
            assert not np.any(np.asarray(img[1, ..., 3]))
            assert np.asarray(img[0, ..., 3]).max() > 0.1  # the others still draw


def test_traced_counts_under_jit_and_vmap():
    kw = dict(backend="xla", image_size=16, sigma_val=3e-3)
    fv, tex, _, counts = _padded_scene(9)
    want = sj.soft_rasterize(fv, tex, face_counts=counts, **kw)
    got = jax.jit(lambda f, t, c: sj.soft_rasterize(f, t, face_counts=c, **kw))(fv, tex, counts)
    np.testing.assert_array_equal(want, got)
    per_mesh = jax.vmap(
        lambda f, t, c: sj.soft_rasterize(f[None], t[None], face_counts=c[None], **kw)[0]
    )(fv, tex, counts)
    np.testing.assert_array_equal(want, per_mesh)


def test_padding_faces_are_skipped_at_binning():
    fv, _, _, counts = _padded_scene(11)
    grid = binning.make_grid(16, 4, len(SIZES), F_PAD)
    face = face_setup(jnp.asarray(fv).reshape(-1, 3, 3))
    present = binning.face_present(jnp.asarray(counts), grid)
    padded = binning.face_tiles(face, 3e-3, 1e-4, grid, present)
    everything = binning.face_tiles(face, 3e-3, 1e-4, grid)
    count = np.asarray(padded.count).reshape(len(SIZES), F_PAD)
    for b, n in enumerate(SIZES):
        assert not count[b, n:].any()  # no (tile, face) pair for a padding face
        want = np.asarray(everything.count).reshape(len(SIZES), F_PAD)[b, :n]
        np.testing.assert_array_equal(count[b, :n], want)
    assert int(padded.total) < int(everything.total)


@pytest.mark.parametrize(
    "counts,match",
    [
        (np.array([1, 2, 3]), r"face_counts must have shape \[B\] = \[2\]"),
        (np.array([1.0, 2.0]), "face_counts must be integers"),
        (np.array([1, F_PAD + 1]), r"face_counts must lie in \[0, F\]"),
        (np.array([-1, 2]), r"face_counts must lie in \[0, F\]"),
    ],
)
def test_bad_face_counts(counts, match):
    fv, tex, _, _ = _padded_scene(1)
    with pytest.raises(ValueError, match=match):
        sj.soft_rasterize(fv, tex, face_counts=counts, image_size=8)


# ------------------------------------------------------------------ pad_meshes and render


def _meshes(texture_type: str = "surface"):
    """Three different meshes: an icosphere of level 1, one of level 2 shifted, a tetrahedron."""
    rng = np.random.default_rng(0)
    out = []
    tet_v = np.array([[0, 0.5, 0], [-0.5, -0.3, 0.3], [0.5, -0.3, 0.3], [0, -0.2, -0.5]])
    tet_f = np.array([[0, 1, 2], [0, 2, 3], [0, 3, 1], [1, 3, 2]])
    for v, f in (
        (np.asarray(sj.icosphere(1).vertices[0]) * 0.6, np.asarray(sj.icosphere(1).faces[0])),
        (np.asarray(sj.icosphere(2).vertices[0]) * 0.4 + 0.2, np.asarray(sj.icosphere(2).faces[0])),
        (tet_v, tet_f),
    ):
        n = len(f) if texture_type == "surface" else len(v)
        shape = (n, 4, 3) if texture_type == "surface" else (n, 3)
        tex = rng.uniform(0.2, 1.0, shape)
        out.append(
            sj.Mesh.create(
                v.astype(np.float32), f, tex.astype(np.float32), texture_type=texture_type
            )
        )
    return out


def test_pad_meshes_layout_and_unpad():
    meshes = _meshes()
    padded = sj.pad_meshes(meshes)
    assert padded.vertices.shape == (3, 162, 3) and padded.faces.shape == (3, 320, 3)
    np.testing.assert_array_equal(padded.vertex_counts, [42, 162, 4])
    np.testing.assert_array_equal(padded.face_counts, [80, 320, 4])
    for m, back in zip(meshes, sj.unpad_meshes(padded), strict=True):
        for field in ("vertices", "faces", "textures"):
            np.testing.assert_array_equal(getattr(m, field), getattr(back, field))
    # a padded batch can be padded again (with another mesh)
    again = sj.pad_meshes([padded, meshes[2]])
    np.testing.assert_array_equal(again.face_counts, [80, 320, 4, 4])


@pytest.mark.parametrize("texture_type", ["surface", "vertex"])
def test_render_padded_batch_equals_each_alone(texture_type):
    """``render`` of a padded batch (lit: vertex normals must ignore the padding) equals each
    mesh rendered alone."""
    meshes = _meshes(texture_type)
    padded = sj.pad_meshes(meshes)
    cfg = sj.RenderConfig(
        image_size=16, camera_mode="look_at", sigma_val=1e-3, backend="xla", viewing_angle=15
    )
    eye = sj.get_points_from_angles(2.732, 30.0, 20.0)
    images = sj.render(padded, cfg, eye=eye)
    for b, m in enumerate(meshes):
        # a mesh alone may get another default tile (it depends on F): float32 rounding
        np.testing.assert_allclose(images[b], sj.render(m, cfg, eye=eye)[0], rtol=0, atol=2e-5)


def test_pad_meshes_errors():
    meshes = _meshes()
    with pytest.raises(ValueError, match="at least one mesh"):
        sj.pad_meshes([])
    with pytest.raises(ValueError, match="softjax.Mesh"):
        sj.pad_meshes([meshes[0], np.zeros(3)])
    with pytest.raises(ValueError, match="share a texture_type"):
        sj.pad_meshes([meshes[0], _meshes("vertex")[1]])
    other_r = sj.Mesh.create(meshes[1].vertices, meshes[1].faces, texture_res=3)
    with pytest.raises(ValueError, match="same texels per face"):
        sj.pad_meshes([meshes[0], other_r])


def test_save_obj_of_a_padded_mesh_writes_the_mesh(tmp_path):
    meshes = _meshes()
    padded = sj.pad_meshes(meshes)
    one = jax.tree.map(lambda x: x[2:3], padded)  # the tetrahedron, padded to 320 faces
    sj.save_obj(tmp_path / "tet.obj", one)
    back = sj.load_obj(tmp_path / "tet.obj")
    np.testing.assert_array_equal(back.faces, meshes[2].faces)
    np.testing.assert_allclose(back.vertices, meshes[2].vertices)
    with pytest.raises(ValueError, match="unpad_meshes"):
        sj.save_obj(tmp_path / "all.obj", padded)


def test_default_capacity_of_a_padded_batch_follows_its_real_faces():
    """A pass sorts all of its slots: with concrete counts the default capacity is that of the
    real faces, not of the padded slots; an explicit capacity is kept."""
    cfg = sj.TilingConfig()
    grid = binning.make_grid(64, 4, 4, 100)  # 41 pixels per face: 4-pixel tiles
    padded = binning.pair_capacity(cfg, grid, "xla")
    real = binning.padded_batch_capacity(cfg, "xla", 64, 4, 100, 150).capacity
    assert real == 8 * 150 + 4 * grid.num_tiles < padded
    # fewer than 32 pixels per face: 2-pixel tiles, 12 pairs per face
    grid = binning.make_grid(64, 2, 4, 20480)
    real = binning.padded_batch_capacity(cfg, "xla", 64, 4, 20480, 27200).capacity
    assert real == 12 * 27200 + 4 * grid.num_tiles < binning.pair_capacity(cfg, grid, "xla")
    explicit = sj.TilingConfig(capacity=999)
    assert binning.padded_batch_capacity(explicit, "xla", 64, 4, 20480, 27200) == explicit
