"""OBJ / MTL reading and writing of UV-mapped textures (``texture_type='uv'``)."""

from __future__ import annotations

import warnings

import imageio.v3 as iio
import jax.numpy as jnp
import numpy as np
import pytest
import trimesh

from softjax.io import ObjWarning, load_obj, sample_image, save_obj, texel_barycentrics
from softjax.io.atlas import pack_images
from softjax.mesh import Mesh

RNG_IMAGE = (5, 7, 3)  # non-square: a swapped row / column shows


def write(path, text: str):
    path.write_text(text)
    return path


def random_png(path, shape=RNG_IMAGE, seed: int = 0) -> np.ndarray:
    """Writes a random uint8 RGB PNG; returns its pixels."""
    image = np.random.default_rng(seed).integers(0, 256, shape, dtype=np.uint8)
    iio.imwrite(path, image)
    return image


def as_float(image: np.ndarray) -> np.ndarray:
    return (np.asarray(image, np.float64) / 255.0).astype(np.float32)


def centre(h: int, w: int, i, j) -> np.ndarray:
    """uv of the centre of texel (row i, column j) of an h x w image (row 0 at the top)."""
    return np.stack([(np.asarray(j) + 0.5) / w, 1.0 - (np.asarray(i) + 0.5) / h], -1)


def nearest(image: np.ndarray, uv: np.ndarray) -> np.ndarray:
    """Independent nearest lookup (u right, v up, wrapping); for uvs at texel centres."""
    h, w = image.shape[:2]
    col = np.floor(np.asarray(uv[..., 0], np.float64) * w).astype(int) % w
    row = np.floor((1.0 - np.asarray(uv[..., 1], np.float64)) * h).astype(int) % h
    return image[row, col]


def obj_text(vertices, vts, faces, mtllib: str | None = None) -> str:
    """OBJ text; ``faces`` is a list of (material or None, [(v, vt or None), ...]) 1-based."""
    out = [f"mtllib {mtllib}\n"] if mtllib else []
    out += [f"v {x!r} {y!r} {z!r}\n" for x, y, z in np.asarray(vertices, float).tolist()]
    out += [f"vt {u!r} {v!r}\n" for u, v in np.asarray(vts, float).reshape(-1, 2).tolist()]
    current = None
    for mat, corners in faces:
        if mat != current:
            out.append(f"usemtl {mat}\n" if mat else "usemtl\n")
            current = mat
        out.append("f " + " ".join(f"{v}/{t}" if t else f"{v}" for v, t in corners) + "\n")
    return "".join(out)


def grid(n: int):
    """An n x n grid of vertices in the z = 0 plane and its (n-1)^2 quads (1-based)."""
    ij = np.stack(np.meshgrid(np.arange(n), np.arange(n), indexing="ij"), -1).reshape(-1, 2)
    vertices = np.concatenate([ij / (n - 1), np.zeros((n * n, 1))], 1)
    quads = [
        [i * n + j + 1, i * n + j + 2, (i + 1) * n + j + 2, (i + 1) * n + j + 1]
        for i in range(n - 1)
        for j in range(n - 1)
    ]
    return vertices, quads


def triangles(quads) -> np.ndarray:
    """0-based fan triangles of 1-based quads, as load_obj triangulates them."""
    return np.asarray([[q[0], q[k], q[k + 1]] for q in quads for k in (1, 2)]) - 1


def loaded_uv(path, **kwargs) -> Mesh:
    m = load_obj(path, load_texture=True, texture_type="uv", **kwargs)
    assert m.texture_type == "uv" and m.batch_size == 1
    assert m.textures.dtype == jnp.float32 and m.face_uvs.dtype == jnp.float32
    assert m.face_uvs.shape == (1, m.num_faces, 3, 2)
    return m


# --- one image: kept as it is, saved and read back ----------------------------------------------


def textured_grid(tmp_path, n: int = 3):
    """A grid whose vertices carry random vt (each vertex's own), textured by a random PNG."""
    png = random_png(tmp_path / "img.png")
    write(tmp_path / "img.mtl", "newmtl paint\nKd 0.3 0.3 0.3\nmap_Kd img.png\n")
    vertices, quads = grid(n)
    vts = np.round(np.random.default_rng(1).uniform(0.0, 1.0, (n * n, 2)), 6)
    faces = [("paint", [(v, v) for v in q]) for q in quads]
    path = write(tmp_path / "grid.obj", obj_text(vertices, vts, faces, "img.mtl"))
    return path, png, vertices, triangles(quads), vts


def test_one_image_is_kept_exactly(tmp_path):
    path, png, vertices, tris, vts = textured_grid(tmp_path)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        m = loaded_uv(path)
    np.testing.assert_array_equal(m.textures[0], as_float(png))  # the PNG's pixels, no atlas
    np.testing.assert_array_equal(m.faces[0], tris)
    np.testing.assert_array_equal(m.vertices[0], vertices.astype(np.float32))
    np.testing.assert_array_equal(m.face_uvs[0], vts[tris].astype(np.float32))  # vt = v here


def test_round_trip_and_trimesh(tmp_path):
    path, png, _, tris, _ = textured_grid(tmp_path)
    m = loaded_uv(path)
    out = tmp_path / "saved" / "copy.obj"
    save_obj(out, m, save_texture=True)
    np.testing.assert_array_equal(iio.imread(out.with_suffix(".png")), png)  # exact, not flipped
    assert "map_Kd copy.png" in out.with_suffix(".mtl").read_text()
    text = out.read_text()
    assert text.count("\nvt ") == len(np.unique(np.asarray(m.face_uvs[0]).reshape(-1, 2), axis=0))
    back = loaded_uv(out)
    for field in ("vertices", "faces", "face_uvs", "textures"):
        np.testing.assert_array_equal(getattr(back, field), getattr(m, field), err_msg=field)

    tm = trimesh.load(out, process=False)
    assert isinstance(tm.visual, trimesh.visual.texture.TextureVisuals)
    image = tm.visual.material.image
    assert image is not None and image.size == (png.shape[1], png.shape[0])  # PIL: (W, H)
    np.testing.assert_array_equal(np.asarray(image.convert("RGB")), png)
    # trimesh splits vertices per (v, vt) pair: one uv per distinct pair
    corners = np.concatenate([tris.reshape(-1, 1), text_vt_indices(text)], 1)
    assert tm.visual.uv.shape == (len(np.unique(corners, axis=0)), 2)
    np.testing.assert_allclose(tm.visual.uv[tm.faces], m.face_uvs[0], atol=1e-7)
    np.testing.assert_allclose(tm.vertices[tm.faces], m.face_vertices[0], atol=1e-7)


def text_vt_indices(text: str) -> np.ndarray:
    """``[F * 3, 1]`` vt index of each face corner of an OBJ text with ``f v/vt`` lines."""
    rows = [line.split()[1:] for line in text.splitlines() if line.startswith("f ")]
    return np.asarray([[int(c.split("/")[1])] for r in rows for c in r])


def test_save_without_texture_and_error_paths(tmp_path):
    path, *_ = textured_grid(tmp_path)
    m = loaded_uv(path)
    save_obj(tmp_path / "geo.obj", m)  # save_texture=False: geometry only
    assert not (tmp_path / "geo.mtl").exists() and "vt" not in (tmp_path / "geo.obj").read_text()
    bad = m.replace(face_uvs=m.face_uvs.at[0, 1, 2, 0].set(jnp.nan))
    with pytest.raises(ValueError, match="face_uvs has NaN"):
        save_obj(tmp_path / "nan" / "n.obj", bad, save_texture=True)
    assert not (tmp_path / "nan").exists()  # checked before anything is written
    two = Mesh(
        jnp.concatenate([m.vertices] * 2),
        jnp.concatenate([m.faces] * 2),
        jnp.concatenate([m.textures] * 2),
        "uv",
        jnp.concatenate([m.face_uvs] * 2),
    )
    with pytest.raises(ValueError, match="batch size 2"):  # as for the other texture types
        save_obj(tmp_path / "b.obj", two, save_texture=True)


def test_load_texture_false_is_an_error(tmp_path):
    path, *_ = textured_grid(tmp_path)
    with pytest.raises(ValueError, match="texture_type='uv'.*load_texture=True"):
        load_obj(path, texture_type="uv")


# --- tiled textures -----------------------------------------------------------------------------


def test_uvs_outside_unit_square_kept_with_one_image(tmp_path):
    png = random_png(tmp_path / "tile.png")
    # two materials naming the same file still sample one image: no atlas either
    write(tmp_path / "t.mtl", "newmtl a\nmap_Kd tile.png\nnewmtl b\nKd 1 0 0\nmap_Kd tile.png\n")
    vertices, quads = grid(3)
    vts = np.asarray([[-0.5, 2.25], [3.5, -1.75], [0.25, 0.5], [1.0, 0.0]])
    faces = [
        ("a" if k % 2 else "b", [(v, 1 + (v + k) % 4) for v in q]) for k, q in enumerate(quads)
    ]
    path = write(tmp_path / "t.obj", obj_text(vertices, vts, faces, "t.mtl"))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        m = loaded_uv(path)
    np.testing.assert_array_equal(m.textures[0], as_float(png))
    tv = np.asarray([(v + k) % 4 for k, q in enumerate(quads) for v in q]).reshape(-1, 4)
    want = np.concatenate([tv[:, [0, k, k + 1]] for k in (1, 2)], 1).reshape(-1, 3)
    np.testing.assert_array_equal(m.face_uvs[0], vts[want].astype(np.float32))
    assert np.asarray(m.face_uvs).min() < 0 and np.asarray(m.face_uvs).max() > 1


def two_images(tmp_path, extra_mtl: str = ""):
    a = random_png(tmp_path / "a.png", (4, 6, 3), seed=2)
    b = random_png(tmp_path / "b.png", (3, 3, 3), seed=3)
    write(
        tmp_path / "m.mtl",
        "newmtl A\nmap_Kd a.png\nnewmtl B\nKd 0.9 0.1 0.1\nmap_Kd b.png\n" + extra_mtl,
    )
    return a / 255.0, b / 255.0


def test_tiled_uvs_in_an_atlas_move_by_whole_repeats_or_wrap_with_a_warning(tmp_path):
    a, b = two_images(tmp_path)
    va = centre(4, 6, [0, 3, 2], [5, 1, 0])  # [3, 2] texel centres of a
    vb = centre(3, 3, [1, 2, 0], [0, 2, 1])
    shifted = va + [2.0, -1.0]  # the whole face one repeat away: moved back exactly
    crossing = va + [[0.0, 0.0], [1.0, 0.0], [0.0, 0.0]]  # spans two repeats of a
    vts = np.concatenate([shifted, crossing, vb])
    unshifted = np.concatenate([vts, va])
    faces = [
        ("A", [(1, 1), (2, 2), (3, 3)]),
        ("A", [(1, 4), (2, 5), (3, 6)]),
        ("B", [(1, 7), (2, 8), (3, 9)]),
        ("A", [(1, 10), (2, 11), (3, 12)]),
    ]
    path = write(tmp_path / "m.obj", obj_text(np.eye(3), unshifted, faces, "m.mtl"))
    with pytest.warns(ObjWarning, match=r"1 face\(s\) textured with 'a.png'.*tiling") as rec:
        m = loaded_uv(path)
    assert len(rec) == 1
    atlas, uv = np.asarray(m.textures[0]), np.asarray(m.face_uvs[0])
    assert uv.min() >= 0.0 and uv.max() <= 1.0
    # the face one repeat away is the untiled face's triangle; the crossing face's corners,
    # wrapped one by one, land there too (its interior no longer spans two repeats)
    np.testing.assert_allclose(uv[0], uv[3], atol=1e-7)
    np.testing.assert_allclose(uv[1], uv[3], atol=1e-7)
    np.testing.assert_array_equal(nearest(atlas, uv[3]), nearest(a, va).astype(np.float32))
    np.testing.assert_array_equal(nearest(atlas, uv[2]), nearest(b, vb).astype(np.float32))

    # without a crossing face: no warning
    only_whole = obj_text(np.eye(3), unshifted, [faces[0], faces[2], faces[3]], "m.mtl")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        loaded_uv(write(tmp_path / "w.obj", only_whole))


# --- several materials: one atlas ---------------------------------------------------------------


def test_materials_are_packed_into_one_atlas(tmp_path):
    a, b = two_images(
        tmp_path,
        "newmtl flat\nKd 0.2 0.4 0.6\nnewmtl shifted\nmap_Kd -o 0.5 0 a.png\nnewmtl none\n",
    )
    ta = centre(4, 6, [0, 3, 2, 1], [5, 0, 2, 3])  # texel centres of a, one at each border
    tb = centre(3, 3, [0, 2, 1], [0, 2, 1])
    edge = np.asarray([[0.0, 0.0], [1.0, 1.0], [0.0, 1.0]])  # image borders: wrap bilinearly
    left = centre(4, 6, [0, 1, 3], [0, 1, 2])  # u < 0.5: u + 0.5 stays in one repeat
    vts = np.concatenate([ta, tb, edge, left])
    # 1-based vt: a -> 1..4, b -> 5..7, edge -> 8..10, left -> 11..13
    faces = [
        ("A", [(1, 1), (2, 2), (3, 3)]),
        ("A", [(1, 2), (2, 3), (3, 4)]),
        ("B", [(1, 5), (2, 6), (3, 7)]),
        ("flat", [(1, 1), (2, 2), (3, 3)]),  # no image: Kd, whatever its vt
        ("B", [(1, None), (2, None), (3, None)]),  # textured material, no vt: Kd
        (None, [(1, 1), (2, 2), (3, 3)]),  # no material: white
        ("none", [(1, 5), (2, 6), (3, 7)]),  # a material without Kd or image: white
        ("shifted", [(1, 11), (2, 12), (3, 13)]),  # a.png again, u + 0.5
        ("A", [(1, 8), (2, 9), (3, 10)]),
        ("B", [(1, 8), (2, 9), (3, 10)]),
    ]
    path = write(tmp_path / "m.obj", obj_text(np.eye(3), vts, faces, "m.mtl"))
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # nothing is lost: no warning
        m = loaded_uv(path)
    atlas, uv = np.asarray(m.textures[0], np.float64), np.asarray(m.face_uvs[0], np.float64)
    assert atlas.ndim == 3 and atlas.shape[2] == 3
    assert uv.min() >= 0.0 and uv.max() <= 1.0

    def same(face: int, image: np.ndarray, source_uv: np.ndarray):
        np.testing.assert_allclose(nearest(atlas, uv[face]), nearest(image, source_uv), atol=1e-7)

    same(0, a, ta[[0, 1, 2]])
    same(1, a, ta[[1, 2, 3]])
    same(2, b, tb)
    same(7, a, left + [0.5, 0.0])  # map_Kd -o applied
    for face, colour in [
        (3, [0.2, 0.4, 0.6]),
        (4, [0.9, 0.1, 0.1]),
        (5, [1, 1, 1]),
        (6, [1, 1, 1]),
    ]:
        want = np.broadcast_to(np.float32(colour), (3, 3))
        np.testing.assert_allclose(nearest(atlas, uv[face]), want, atol=1e-7)
        # a flat block stays flat under a bilinear lookup
        np.testing.assert_allclose(sample_image(atlas, uv[face], "bilinear"), want, atol=1e-6)
    # a.png is packed once although two materials use it, b.png once
    assert occurrences(atlas, a) == 1 and occurrences(atlas, b) == 1
    # bilinear lookups at the images' borders wrap like the images alone (the border copies)
    for face, image in ((8, a), (9, b)):
        np.testing.assert_allclose(
            sample_image(atlas, uv[face], "bilinear"),
            sample_image(image, edge, "bilinear"),
            atol=1e-6,
        )


def occurrences(atlas: np.ndarray, image: np.ndarray) -> int:
    """How many times ``image`` appears as a block of ``atlas`` (to float32 rounding)."""
    h, w = image.shape[:2]
    return sum(
        np.allclose(atlas[r : r + h, c : c + w], image, atol=1e-7)
        for r in range(atlas.shape[0] - h + 1)
        for c in range(atlas.shape[1] - w + 1)
    )


def test_atlas_round_trip(tmp_path):
    two_images(tmp_path, "newmtl flat\nKd 0.2 0.4 0.6\n")
    vts = np.concatenate([centre(4, 6, [0, 1, 2], [0, 1, 2]), centre(3, 3, [0, 1, 2], [2, 1, 0])])
    faces = [
        ("A", [(1, 1), (2, 2), (3, 3)]),
        ("B", [(1, 4), (2, 5), (3, 6)]),
        ("flat", [(1, 1), (2, 2), (3, 3)]),
    ]
    m = loaded_uv(write(tmp_path / "m.obj", obj_text(np.eye(3), vts, faces, "m.mtl")))
    save_obj(tmp_path / "out.obj", m, save_texture=True)
    back = loaded_uv(tmp_path / "out.obj")  # one image now: read as it is
    np.testing.assert_array_equal(back.face_uvs, m.face_uvs)
    np.testing.assert_allclose(back.textures, m.textures, atol=0.5 / 255 + 1e-7)


def test_vertex_colours_without_image(tmp_path):
    png = random_png(tmp_path / "a.png", (4, 4, 3), seed=4)
    write(tmp_path / "v.mtl", "newmtl A\nmap_Kd a.png\n")
    text = (
        "mtllib v.mtl\n"
        "v 0 0 0 1 0 0\nv 1 0 0 0 1 0\nv 0 1 0 0 0 1\nv 1 1 0 0.5 0.5 0.5\n"
        "vt 0.125 0.125\nvt 0.875 0.125\nvt 0.125 0.875\n"
        "f 1 2 3\nf 2 4 3\nusemtl A\nf 1/1 2/2 3/3\n"
    )
    path = write(tmp_path / "v.obj", text)
    m = loaded_uv(path)
    atlas, uv = np.asarray(m.textures[0]), np.asarray(m.face_uvs[0], np.float64)
    # the vertex-coloured faces hold what surface baking gives at 2 x 2 texels (to 1/255)
    surface = np.asarray(load_obj(path, load_texture=True, texture_res=2).textures[0])
    w = texel_barycentrics(2)
    for f in (0, 1):
        got = nearest(atlas, np.einsum("tk,kc->tc", w, uv[f]))
        np.testing.assert_allclose(got, surface[f], atol=0.5 / 255 + 1e-6)
    np.testing.assert_allclose(
        nearest(atlas, uv[2]), nearest(png / 255.0, centre(4, 4, [3, 3, 0], [0, 3, 0])), atol=1e-7
    )


# --- agreement with baking, fallbacks ------------------------------------------------------------


def test_surface_baking_agrees_on_a_constant_region(tmp_path):
    image = np.random.default_rng(5).integers(0, 256, (8, 8, 3), dtype=np.uint8)
    colour = np.asarray([40, 200, 90], np.uint8)
    image[:4, :4] = colour  # top-left quarter: u, v in [0, 0.5] x [0.5, 1]
    iio.imwrite(tmp_path / "c.png", image)
    write(tmp_path / "c.mtl", "newmtl c\nmap_Kd c.png\n")
    vts = [[0.05, 0.55], [0.45, 0.55], [0.05, 0.95]]
    path = write(
        tmp_path / "c.obj",
        obj_text(np.eye(3), vts, [("c", [(1, 1), (2, 2), (3, 3)])], "c.mtl"),
    )
    m = loaded_uv(path)
    for res in (1, 3):
        baked = load_obj(path, load_texture=True, texture_res=res).textures[0, 0]
        np.testing.assert_allclose(
            baked, np.broadcast_to(colour / 255.0, (res * res, 3)), atol=1e-6
        )
    corner = nearest(np.asarray(m.textures[0]), np.asarray(m.face_uvs[0, 0], np.float64))
    np.testing.assert_allclose(corner, np.broadcast_to(colour / 255.0, (3, 3)), atol=1e-6)


def test_missing_or_unreadable_image_falls_back_to_kd(tmp_path):
    write(tmp_path / "bad.png", "not a png")
    vts = [[0.1, 0.1], [0.9, 0.1], [0.1, 0.9]]
    cases = [
        ("gone", "Kd 0 1 0\nmap_Kd nowhere.png", [0, 1, 0]),
        ("bad", "map_Kd bad.png", [1] * 3),
    ]
    for name, material, colour in cases:
        write(tmp_path / f"{name}.mtl", f"newmtl m\n{material}\n")
        text = obj_text(np.eye(3), vts, [("m", [(1, 1), (2, 2), (3, 3)])], f"{name}.mtl")
        with pytest.warns(ObjWarning, match=material.split()[-1]):
            m = loaded_uv(write(tmp_path / f"{name}.obj", text))
        # one flat colour: a 1 x 1 image, uvs at its centre
        np.testing.assert_array_equal(m.textures[0], np.float32([[colour]]))
        np.testing.assert_array_equal(m.face_uvs, 0.5)


def test_missing_mtl_gives_white(tmp_path):
    path = write(
        tmp_path / "w.obj", "mtllib gone.mtl\nv 0 0 0\nv 1 0 0\nv 0 1 0\nusemtl a\nf 1 2 3\n"
    )
    with pytest.warns(ObjWarning, match="gone.mtl"):
        m = loaded_uv(path)
    np.testing.assert_array_equal(m.textures, 1.0)
    assert m.textures.shape == (1, 1, 1, 3)


def test_pack_images_places_each_image_with_wrapped_borders():
    rng = np.random.default_rng(6)
    sizes = [(5, 2), (1, 1), (3, 7), (5, 5), (2, 3)]
    images = [rng.uniform(size=s + (3,)) for s in sizes]
    atlas, origins = pack_images(images, gutter=2)
    covered = np.zeros(atlas.shape[:2], int)
    for im, (r, c), (h, w) in zip(images, origins, sizes, strict=True):
        np.testing.assert_array_equal(atlas[r : r + h, c : c + w], im)
        padded = atlas[r - 2 : r + h + 2, c - 2 : c + w + 2]
        np.testing.assert_array_equal(padded, np.pad(im, ((2, 2), (2, 2), (0, 0)), "wrap"))
        covered[r - 2 : r + h + 2, c - 2 : c + w + 2] += 1
    assert covered.max() == 1  # no overlap
    assert atlas.shape[0] * atlas.shape[1] <= 2 * sum((h + 4) * (w + 4) for h, w in sizes)
