"""OBJ / MTL reading and writing (softjax.io)."""

from __future__ import annotations

import re
import warnings

import imageio.v3 as iio
import jax.numpy as jnp
import numpy as np
import pytest
import trimesh

from softjax.io import ObjError, ObjWarning, load_obj, save_obj, texel_barycentrics
from softjax.mesh import Mesh, icosphere
from softjax.ops.pixel_face import face_color

Q = 1.0 / 255.0  # one uint8 step
TOL = 0.5 * Q + 1e-6  # colour quantisation of the PNG atlas


def write(path, text: str):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


def textured_sphere(res: int, seed: int = 0, constant: bool = False) -> Mesh:
    m = icosphere(1)
    rng = np.random.default_rng(seed)
    shape = (1, m.num_faces, 1 if constant else res * res, 3)
    tex = np.broadcast_to(rng.uniform(0.0, 1.0, shape), (1, m.num_faces, res * res, 3))
    return Mesh.create(m.vertices, m.faces, np.asarray(tex, np.float32))


def nearest(image: np.ndarray, uv: np.ndarray) -> np.ndarray:
    """Independent nearest lookup (u right, v up), uv inside [0, 1)."""
    h, w = image.shape[:2]
    col = np.clip(np.floor(uv[..., 0] * w), 0, w - 1).astype(int)
    row = np.clip(np.floor((1.0 - uv[..., 1]) * h), 0, h - 1).astype(int)
    return image[row, col]


# --- texel layout -------------------------------------------------------------------------------


@pytest.mark.parametrize("res", [1, 2, 3, 4, 7])
def test_texel_centres_pick_their_texel_in_the_rasterizer(res):
    w = texel_barycentrics(res)
    assert w.shape == (res * res, 3)
    np.testing.assert_allclose(w.sum(-1), 1.0, atol=1e-12)
    assert np.all(w > 0)
    ids = jnp.arange(res * res, dtype=jnp.float32).reshape(1, 1, -1, 1)
    picked = face_color(jnp.asarray(w, jnp.float32)[:, None, :], ids, "surface")
    np.testing.assert_array_equal(np.asarray(picked).reshape(-1), np.arange(res * res))


# --- save_obj -> outside reader (trimesh) ---------------------------------------------------------


def test_geometry_read_by_trimesh(tmp_path):
    m = icosphere(1)
    save_obj(tmp_path / "sub" / "dir" / "sphere.obj", m)  # parent folders are created
    tm = trimesh.load(tmp_path / "sub" / "dir" / "sphere.obj", process=False)
    # 9 significant digits: float32 coordinates come back exactly
    np.testing.assert_array_equal(tm.vertices.astype(np.float32), m.vertices[0])
    np.testing.assert_array_equal(tm.faces, np.asarray(m.faces[0]))


@pytest.mark.parametrize("res", [1, 2])
def test_surface_texture_read_by_trimesh(tmp_path, res):
    m = textured_sphere(res, seed=res)
    save_obj(tmp_path / "tex.obj", m, save_texture=True)
    assert (tmp_path / "tex.mtl").is_file() and (tmp_path / "tex.png").is_file()
    tm = trimesh.load(tmp_path / "tex.obj", process=False)
    # trimesh splits vertices per (v, vt) pair: compare the face corner positions.
    np.testing.assert_array_equal(tm.vertices[tm.faces].astype(np.float32), m.face_vertices[0])
    image = np.asarray(tm.visual.material.image.convert("RGB"), np.float64) / 255.0
    corner_uv = tm.visual.uv[tm.faces]  # [F, 3, 2]
    uv = np.einsum("tk,fkc->ftc", texel_barycentrics(res), corner_uv)  # res 1: face centroid
    np.testing.assert_allclose(nearest(image, uv), np.asarray(m.textures[0]), atol=TOL)


def test_vertex_colours_read_by_trimesh(tmp_path):
    m = icosphere(1)
    rgb = np.random.default_rng(1).uniform(0.0, 1.0, (1, m.num_vertices, 3)).astype(np.float32)
    mv = Mesh.create(m.vertices, m.faces, rgb, texture_type="vertex")
    save_obj(tmp_path / "vc.obj", mv, save_texture=True)
    tm = trimesh.load(tmp_path / "vc.obj", process=False)
    np.testing.assert_array_equal(tm.vertices.astype(np.float32), m.vertices[0])
    np.testing.assert_array_equal(tm.faces, np.asarray(m.faces[0]))
    np.testing.assert_allclose(tm.visual.vertex_colors[:, :3] / 255.0, rgb[0], atol=Q + 1e-6)


# --- save_obj -> load_obj round trips -----------------------------------------------------------


def test_geometry_round_trip_is_exact(tmp_path):
    m = icosphere(1)
    save_obj(tmp_path / "g.obj", m)
    back = load_obj(tmp_path / "g.obj")
    np.testing.assert_array_equal(back.vertices, m.vertices)
    np.testing.assert_array_equal(back.faces, m.faces)
    assert back.vertices.dtype == jnp.float32 and back.faces.dtype == jnp.int32
    assert back.textures.shape == (1, m.num_faces, 1, 3)
    np.testing.assert_array_equal(back.textures, 1.0)  # load_texture=False: white
    assert load_obj(tmp_path / "g.obj", texture_res=3).textures.shape == (1, m.num_faces, 9, 3)


@pytest.mark.parametrize("sampling", ["nearest", "bilinear"])
def test_constant_face_colours_round_trip(tmp_path, sampling):
    m = textured_sphere(1, seed=3)
    save_obj(tmp_path / "c.obj", m, save_texture=True)
    for res in (1, 3):  # constant per face: any read-back resolution gives the face colour
        back = load_obj(tmp_path / "c.obj", load_texture=True, texture_res=res, sampling=sampling)
        np.testing.assert_array_equal(back.vertices, m.vertices)
        np.testing.assert_array_equal(back.faces, m.faces)
        want = np.broadcast_to(np.asarray(m.textures), (1, m.num_faces, res * res, 3))
        np.testing.assert_allclose(back.textures, want, atol=TOL)


@pytest.mark.parametrize("res", [2, 3, 5])
def test_per_texel_colours_round_trip(tmp_path, res):
    # Independent random colours per texel come back within the uint8 rounding with nearest
    # sampling and the default 16-pixel cells (R <= 16 / 3); bilinear sampling: up to R = 2.
    m = textured_sphere(res, seed=res)
    save_obj(tmp_path / "t.obj", m, save_texture=True)
    back = load_obj(tmp_path / "t.obj", load_texture=True, texture_res=res)
    np.testing.assert_allclose(back.textures, m.textures, atol=TOL)
    if res == 2:
        back = load_obj(tmp_path / "t.obj", load_texture=True, texture_res=2, sampling="bilinear")
        np.testing.assert_allclose(back.textures, m.textures, atol=TOL)


def test_atlas_layout(tmp_path):
    m = textured_sphere(2, seed=5)  # 80 faces -> 9 x 9 cells
    save_obj(tmp_path / "a.obj", m, save_texture=True, texture_res_out=8)
    image = iio.imread(tmp_path / "a.png")
    assert image.shape == (72, 72, 3) and image.dtype == np.uint8
    mtl = (tmp_path / "a.mtl").read_text()
    assert "map_Kd a.png" in mtl and "Kd 1 1 1" in mtl
    text = (tmp_path / "a.obj").read_text()
    assert "mtllib a.mtl" in text and "usemtl material_0" in text
    assert text.count("\nvt ") == 3 * m.num_faces


def test_vertex_colour_round_trip(tmp_path):
    m = icosphere(1)
    rgb = np.random.default_rng(2).uniform(0.0, 1.0, (1, m.num_vertices, 3)).astype(np.float32)
    mv = Mesh.create(m.vertices, m.faces, rgb, texture_type="vertex")
    save_obj(tmp_path / "v.obj", mv, save_texture=True)
    back = load_obj(tmp_path / "v.obj", load_texture=True, texture_type="vertex")
    assert back.texture_type == "vertex" and back.textures.shape == (1, m.num_vertices, 3)
    np.testing.assert_allclose(back.textures, rgb, atol=1e-6)
    # surface textures interpolate the vertex colours at the texel centres
    surf = load_obj(tmp_path / "v.obj", load_texture=True, texture_res=2)
    want = np.einsum("tk,fkc->ftc", texel_barycentrics(2), rgb[0][np.asarray(m.faces[0])])
    np.testing.assert_allclose(surf.textures[0], want, atol=1e-5)
    # without load_texture: white
    np.testing.assert_array_equal(load_obj(tmp_path / "v.obj", texture_type="vertex").textures, 1)


def test_save_rejects_batches_and_bad_cells(tmp_path):
    with pytest.raises(ValueError, match="batch size 2"):
        save_obj(tmp_path / "b.obj", icosphere(0, batch_size=2))
    with pytest.raises(ValueError, match="texture_res_out"):
        save_obj(tmp_path / "b.obj", icosphere(0), save_texture=True, texture_res_out=2)
    with pytest.raises(TypeError):
        save_obj(tmp_path / "b.obj", np.zeros((3, 3)))


# --- parsing ------------------------------------------------------------------------------------


SQUARE = "v 0 0 0\nv 1 0 0\nv 1 1 0\nv 0 1 0\nv 0.5 1.5 0\n"


def test_polygons_are_fan_triangulated(tmp_path):
    p = write(tmp_path / "poly.obj", SQUARE + "f 1 2 3 4\nf 1 2 3 4 5\nf 5 4 3\n")
    m = load_obj(p)
    want = [[0, 1, 2], [0, 2, 3], [0, 1, 2], [0, 2, 3], [0, 3, 4], [4, 3, 2]]
    np.testing.assert_array_equal(m.faces[0], want)
    assert m.vertices.shape == (1, 5, 3)


def test_negative_indices(tmp_path):
    text = "v 0 0 0\nv 1 0 0\nv 1 1 0\nf -3 -2 -1\nv 0 1 0\nf -4 -2 -1\nf 1 -3 4\n"
    m = load_obj(write(tmp_path / "neg.obj", text))
    np.testing.assert_array_equal(m.faces[0], [[0, 1, 2], [0, 2, 3], [0, 1, 3]])


def test_index_forms_comments_and_ignored_statements(tmp_path):
    text = (
        "# a comment\n\n   \n"
        "mtllib none.mtl\no thing\ng group\ns off\n"
        "v 0 0 0\nv 1 0 0 # trailing comment\nv 1 1 0\nv 0 1 0 1.0\n"
        "vt 0 0\nvt 1 0\nvt 1 1 0\nvt 0 1\n"
        "vn 0 0 1\nvp 0.5\n"
        "usemtl nothing\n"
        "f 1/1/1 2/2/1 3/3/1\n"
        "f 1//1 3//1 4//1\n"
        "f 1/1 \\\n  3/3 4/4\n"  # line continuation
        "l 1 2\np 3\n"
        "\t f  2 3  4 \r\n"
    )
    m = load_obj(write(tmp_path / "forms.obj", text))
    np.testing.assert_array_equal(m.faces[0], [[0, 1, 2], [0, 2, 3], [0, 2, 3], [1, 2, 3]])
    np.testing.assert_array_equal(m.vertices[0], [[0, 0, 0], [1, 0, 0], [1, 1, 0], [0, 1, 0]])


def test_unknown_statement_warns_once(tmp_path):
    p = write(tmp_path / "u.obj", "v 0 0 0\nv 1 0 0\nv 0 1 0\nfoo 1\nfoo 2\nf 1 2 3\n")
    with pytest.warns(ObjWarning, match="foo") as record:
        load_obj(p)
    assert len([r for r in record if "foo" in str(r.message)]) == 1


def test_vertex_colour_extension(tmp_path):
    text = "v 0 0 0 1 0 0\nv 1 0 0 0 1 0\nv 0 1 0 0 0 1\nv 1 1 0\nf 1 2 3\nf 2 4 3\n"
    m = load_obj(write(tmp_path / "vc.obj", text), load_texture=True, texture_type="vertex")
    np.testing.assert_array_equal(m.textures[0], [[1, 0, 0], [0, 1, 0], [0, 0, 1], [1, 1, 1]])
    text255 = "v 0 0 0 255 0 0\nv 1 0 0 0 255 0\nv 0 1 0 0 0 51\nf 1 2 3\n"  # 0..255 colours
    m = load_obj(write(tmp_path / "vc255.obj", text255), load_texture=True, texture_type="vertex")
    np.testing.assert_allclose(m.textures[0], [[1, 0, 0], [0, 1, 0], [0, 0, 0.2]], atol=1e-6)


def test_normalization_matches_softras(tmp_path):
    rng = np.random.default_rng(4)
    v = rng.normal(size=(30, 3)) * [3.0, 1.0, 0.5] + [5.0, -2.0, 1.0]
    text = "".join(f"v {x!r} {y!r} {z!r}\n" for x, y, z in v.tolist()) + "f 1 2 3\nf 4 5 6\n"
    m = load_obj(write(tmp_path / "n.obj", text), normalization=True)
    want = v - v.min(0)
    want /= np.abs(want).max()
    want *= 2
    want -= want.max(0) / 2
    np.testing.assert_allclose(m.vertices[0], want, atol=1e-6)
    assert np.abs(np.asarray(m.vertices)).max() <= 1.0 + 1e-6
    np.testing.assert_allclose(np.asarray(m.vertices[0]).max(0), -np.asarray(m.vertices[0]).min(0))


# --- materials and textures ---------------------------------------------------------------------

QUAD_UV = (
    "v 0 0 0\nv 1 0 0\nv 1 1 0\nv 0 1 0\n"
    "vt 0 0\nvt 1 0\nvt 1 1\nvt 0 1\n"
    "vt 0.25 0.75\nvt 0.26 0.75\nvt 0.25 0.76\n"
)


def make_image(path):
    # 2 x 2 image, row 0 at the top: red green / blue white
    image = np.asarray([[[255, 0, 0], [0, 255, 0]], [[0, 0, 255], [255, 255, 255]]], np.uint8)
    iio.imwrite(path, image)
    return image / 255.0


def test_kd_and_map_kd(tmp_path):
    make_image(tmp_path / "my tex.png")  # a file name with a space
    write(
        tmp_path / "m.mtl",
        "newmtl plain\nKd 0.2 0.4 0.6\n"
        "newmtl tex\nKd 0.5 0.5 0.5\nmap_Kd -blendu on -s 1 1 1 -o 0 0 0 my tex.png\n",
    )
    text = QUAD_UV + (
        "mtllib m.mtl\n"
        "f 1 2 3\n"  # no material: white
        "usemtl plain\nf 1 3 4\n"  # Kd
        "usemtl tex\nf 1/5 2/6 3/7\n"  # small triangle around uv (0.25, 0.75): red
        "f 1 2 4\n"  # textured material but no vt: Kd
        "usemtl undefined_mat\nf 2 3 4\n"
    )
    p = write(tmp_path / "m.obj", text)
    with pytest.warns(ObjWarning, match="undefined_mat"):
        m = load_obj(p, load_texture=True, texture_res=2)
    want = [[1, 1, 1], [0.2, 0.4, 0.6], [1, 0, 0], [0.5, 0.5, 0.5], [1, 1, 1]]
    np.testing.assert_allclose(m.textures[0], np.repeat(np.asarray(want)[:, None], 4, 1))


def test_map_kd_offset_and_scale_options(tmp_path):
    make_image(tmp_path / "t.png")
    write(
        tmp_path / "o.mtl",
        "newmtl shift\nmap_Kd -clamp off -o 0.5 t.png\n"  # (0.25, 0.75) -> (0.75, 0.75): green
        "newmtl down\nmap_Kd -s 1 -1 -mm 0 1 t.png\n",  # (0.25, 0.75) -> (0.25, -0.75): blue
    )
    text = QUAD_UV + "mtllib o.mtl\nusemtl shift\nf 1/5 2/6 3/7\nusemtl down\nf 1/5 2/6 3/7\n"
    m = load_obj(write(tmp_path / "o.obj", text), load_texture=True)
    np.testing.assert_allclose(m.textures[0, :, 0], [[0, 1, 0], [0, 0, 1]])


def test_texel_sampling_uses_rasterizer_layout(tmp_path):
    # One face over the whole 2 x 2 image: corner 0 at uv (0, 0), corner 1 at (1, 0), corner 2 at
    # (0, 1). Texel t's centre uv = w1 * (1, 0) + w2 * (0, 1).
    make_image(tmp_path / "t.png")
    write(tmp_path / "t.mtl", "newmtl a\nmap_Kd t.png\n")
    p = write(tmp_path / "t.obj", QUAD_UV + "mtllib t.mtl\nusemtl a\nf 1/1 2/2 4/4\n")
    res = 4
    m = load_obj(p, load_texture=True, texture_res=res)
    w = texel_barycentrics(res)
    image = np.asarray(iio.imread(tmp_path / "t.png"), np.float64) / 255.0
    np.testing.assert_allclose(m.textures[0, 0], nearest(image, w[:, 1:]), atol=1e-6)
    # corner colours for vertex textures: corner 0 at uv (0, 0) (blue), corner 1 at (1, 0)
    # (white), corner 2 at (0, 1) (red); vertex 2 (index 3 in the file) is unused: white
    mv = load_obj(p, load_texture=True, texture_type="vertex")
    np.testing.assert_allclose(mv.textures[0], [[0, 0, 1], [1, 1, 1], [1, 1, 1], [1, 0, 0]])


@pytest.mark.parametrize("mode", ["L", "LA", "RGBA"])
def test_grey_and_alpha_images(tmp_path, mode):
    from PIL import Image

    colour = {"L": 128, "LA": (128, 7), "RGBA": (128, 128, 128, 7)}[mode]
    Image.new(mode, (3, 3), colour).save(tmp_path / "g.png")
    write(tmp_path / "g.mtl", "newmtl a\nmap_Kd g.png\n")
    p = write(tmp_path / "g.obj", QUAD_UV + "mtllib g.mtl\nusemtl a\nf 1/1 2/2 3/3\n")
    m = load_obj(p, load_texture=True)
    np.testing.assert_allclose(m.textures, 128 / 255, atol=1e-6)


def test_16_bit_image(tmp_path):
    iio.imwrite(tmp_path / "h.png", np.full((2, 2), 32768, np.uint16))  # 16-bit grey
    write(tmp_path / "h.mtl", "newmtl a\nmap_Kd h.png\n")
    p = write(tmp_path / "h.obj", QUAD_UV + "mtllib h.mtl\nusemtl a\nf 1/1 2/2 3/3\n")
    m = load_obj(p, load_texture=True)
    np.testing.assert_allclose(m.textures, 32768 / 65535, atol=1e-6)


def test_missing_texture_image_falls_back_to_kd(tmp_path):
    write(tmp_path / "m.mtl", "newmtl a\nKd 0 1 0\nmap_Kd nowhere.png\n")
    p = write(tmp_path / "m.obj", QUAD_UV + "mtllib m.mtl\nusemtl a\nf 1/1 2/2 3/3\n")
    with pytest.warns(ObjWarning, match="nowhere.png"):
        m = load_obj(p, load_texture=True)
    np.testing.assert_array_equal(m.textures[0, 0, 0], [0, 1, 0])
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # not looked at without load_texture
        load_obj(p)


def test_missing_mtl_falls_back_to_white(tmp_path):
    p = write(tmp_path / "m.obj", QUAD_UV + "mtllib gone.mtl\nusemtl a\nf 1/1 2/2 3/3\n")
    with warnings.catch_warnings(record=True) as record:
        warnings.simplefilter("always")
        m = load_obj(p, load_texture=True, texture_res=2)
    messages = [str(r.message) for r in record]
    assert len(messages) == 1 and "gone.mtl" in messages[0], messages
    np.testing.assert_array_equal(m.textures, 1.0)


# --- errors -------------------------------------------------------------------------------------

BAD = [
    ("v 1 2\n", 4, "v 1 2", "3 coordinates"),
    ("v 1 2 x\n", 4, "v 1 2 x", "numbers"),
    ("vt 0 abc\n", 4, "vt 0 abc", "numbers"),
    ("f 1 2\n", 4, "f 1 2", "at least 3"),
    ("f 1 2 3.5\n", 4, "f 1 2 3.5", "non-integer"),
    ("f 1 x 3\n", 4, "f 1 x 3", "non-integer"),
    ("f 0 1 2\n", 4, "f 0 1 2", "out of range"),
    ("f 1 2 4\n", 4, "f 1 2 4", "out of range"),
    ("f -4 -2 -1\n", 4, "f -4 -2 -1", "out of range"),
    ("f 1/1 2/1 3/1\n", 4, "f 1/1 2/1 3/1", "out of range"),  # no vt defined
    ("# comment\n\nf 1 2 3\nf 3 2 9\n", 7, "f 3 2 9", "out of range"),
]


@pytest.mark.parametrize("body, lineno, line, what", BAD)
def test_bad_lines_raise_obj_error(tmp_path, body, lineno, line, what):
    p = write(tmp_path / "bad_file.obj", "v 0 0 0\nv 1 0 0\nv 0 1 0\n" + body)
    with pytest.raises(ObjError, match=what) as info:
        load_obj(p)
    msg = str(info.value)
    assert "bad_file.obj" in msg and f"line {lineno}" in msg and line in msg, msg
    assert info.value.lineno == lineno and info.value.line == line
    assert isinstance(info.value, ValueError)


def test_no_faces(tmp_path):
    p = write(tmp_path / "empty_faces.obj", "# nothing\nv 0 0 0\nv 1 0 0\n")
    with pytest.raises(ObjError, match=re.escape("empty_faces.obj") + ".*no faces"):
        load_obj(p)


def test_missing_obj_file(tmp_path):
    with pytest.raises(FileNotFoundError, match="not_there.obj"):
        load_obj(tmp_path / "not_there.obj")


def test_bad_mtl_line(tmp_path):
    write(tmp_path / "b.mtl", "newmtl a\nKd red\n")
    p = write(tmp_path / "b.obj", QUAD_UV + "mtllib b.mtl\nusemtl a\nf 1 2 3\n")
    with pytest.raises(ObjError, match=r"b\.mtl, line 2.*Kd red"):
        load_obj(p, load_texture=True)


def test_bad_arguments(tmp_path):
    p = write(tmp_path / "ok.obj", SQUARE + "f 1 2 3\n")
    with pytest.raises(ValueError, match="texture_res"):
        load_obj(p, texture_res=0)
    with pytest.raises(ValueError, match="texture_type"):
        load_obj(p, texture_type="uv")
    with pytest.raises(ValueError, match="sampling"):
        load_obj(p, sampling="cubic")
