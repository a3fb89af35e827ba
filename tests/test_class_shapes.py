"""Tests for recon.data.primitives and recon.data.class_shapes: procedural ShapeNet-class
objects."""

import numpy as np
import pytest

from recon.data import class_shapes, classes, primitives

CLASS_IDS = [c for c, _ in classes.CLASSES]


def test_classes_order_and_names():
    assert len(classes.CLASSES) == 13
    assert classes.CLASSES[0] == ("02691156", "Airplane")
    assert classes.CLASSES[-1] == ("04530566", "Watercraft")
    assert CLASS_IDS == sorted(CLASS_IDS)


@pytest.mark.parametrize(
    "mesh",
    [
        primitives.box((0.1, 0.2, 0.3), (1.0, 2.0, 3.0)),
        primitives.box((0, 0, 0), (1, 1, 1), primitives.rotation_matrix("x", 0.7), top_scale=0.5),
        primitives.cylinder((0, 0, 0), 0.5, 2.0, "x"),
        primitives.cylinder((1, 0, 0), 0.5, 2.0, "-z", radius_top=0.2),
        primitives.cone((0, 1, 0), 0.5, 1.0, "y"),
        primitives.cone((0, 0, 0), 0.5, 1.0, "-x"),
        primitives.sphere((0, 0, 0), 1.0, 16),
        primitives.sphere((0, 0, 2), (1.0, 0.5, 0.2), 12),
        primitives.extrude(np.array([[0, 0], [1, 0], [0, 1]]), 0.0, 0.1),
        primitives.extrude(np.array([[0, 0], [0, 1], [1, 0]]), 0.0, 0.1),  # clockwise input
    ],
)
def test_primitives_closed_and_outward(mesh):
    v, f = mesh
    assert v.ndim == 2 and v.shape[1] == 3 and f.shape[1] == 3
    assert f.min() >= 0 and f.max() < len(v)
    assert primitives.signed_volume(v, f) > 0
    # Closed (watertight): every directed edge has its opposite exactly once.
    edges = np.concatenate([f[:, [0, 1]], f[:, [1, 2]], f[:, [2, 0]]])
    fwd = {tuple(e) for e in edges}
    assert len(fwd) == len(edges)
    assert all((b, a) in fwd for a, b in fwd)


def test_primitive_volumes():
    assert primitives.signed_volume(*primitives.box((0, 0, 0), (1, 2, 3))) == pytest.approx(6.0)
    v = primitives.signed_volume(*primitives.sphere((0, 0, 0), 1.0, 48))
    assert v == pytest.approx(4 / 3 * np.pi, rel=0.02)


def test_normalize_unit_cube():
    v = np.random.default_rng(0).normal(size=(50, 3)) * [3, 1, 2] + 5
    n = primitives.normalize_unit_cube(v, margin=0.05)
    lo, hi = n.min(0), n.max(0)
    np.testing.assert_allclose((lo + hi) / 2, 0, atol=1e-12)
    assert (hi - lo).max() == pytest.approx(0.9)
    with pytest.raises(ValueError):
        primitives.normalize_unit_cube(np.zeros((3, 3)))


@pytest.mark.parametrize("class_id", CLASS_IDS)
def test_every_class(class_id):
    objs = class_shapes.make_dataset_objects(class_id, 3, seed=7)
    for m in objs:
        v = np.asarray(m.vertices)
        f = np.asarray(m.faces)
        t = np.asarray(m.textures)
        assert m.texture_type == "surface"
        assert v.shape[0] == 1 and f.shape[0] == 1
        assert v.dtype == np.float32
        assert t.shape == (1, f.shape[1], 1, 3) and t.dtype == np.float32
        assert t.min() >= 0 and t.max() <= 1
        assert f.min() >= 0 and f.max() < v.shape[1]
        assert np.abs(v).max() <= 0.5
        ext = v[0].max(0) - v[0].min(0)
        assert ext.max() == pytest.approx(1 - 2 * 0.02, abs=1e-5)
        np.testing.assert_allclose((v[0].max(0) + v[0].min(0)) / 2, 0, atol=1e-5)
        assert primitives.signed_volume(v[0], f[0]) > 0
        assert len(np.unique(t.reshape(-1, 3), axis=0)) >= 2  # several part colours
    # Objects of a class differ.
    a, b = (np.asarray(m.vertices) for m in objs[:2])
    assert a.shape != b.shape or not np.allclose(a, b)
    # Every part is a closed, outward-oriented primitive.
    for k in range(5):
        for p in class_shapes.make_parts(class_id, np.random.default_rng(k)):
            assert primitives.signed_volume(p.vertices, p.faces) > 0
            assert p.faces.min() >= 0 and p.faces.max() < len(p.vertices)


def test_long_axis():
    rng = np.random.default_rng(0)
    for _ in range(10):
        v = np.asarray(class_shapes.make_object("02691156", rng).vertices[0])
        ext = v.max(0) - v.min(0)
        assert ext[1] < min(ext[0], ext[2])  # airplanes are flat: y is the short side
    for cid in ("02958343", "04090263", "04530566", "04256520"):  # length along x
        v = np.asarray(class_shapes.make_object(cid, rng).vertices[0])
        ext = v.max(0) - v.min(0)
        assert ext.argmax() == 0, cid
    for cid in ("03001627", "03636649", "02933112"):  # upright: tall along y
        v = np.asarray(class_shapes.make_object(cid, rng).vertices[0])
        ext = v.max(0) - v.min(0)
        assert ext[1] >= 0.5 * ext.max(), cid


def test_deterministic_and_count_independent():
    cid = "03001627"
    a = class_shapes.make_dataset_objects(cid, 2, seed=3)
    b = class_shapes.make_dataset_objects(cid, 4, seed=3)
    for x, y in zip(a, b[:2], strict=True):
        np.testing.assert_array_equal(np.asarray(x.vertices), np.asarray(y.vertices))
        np.testing.assert_array_equal(np.asarray(x.faces), np.asarray(y.faces))
        np.testing.assert_array_equal(np.asarray(x.textures), np.asarray(y.textures))
    c = class_shapes.make_dataset_objects(cid, 1, seed=4)[0]
    assert not np.array_equal(np.asarray(c.textures), np.asarray(a[0].textures))


def test_unknown_class_raises():
    with pytest.raises(ValueError, match="02691156") as e:
        class_shapes.make_object("99999999", np.random.default_rng(0))
    assert all(c in str(e.value) for c in CLASS_IDS)
    with pytest.raises(ValueError, match="valid ids"):
        class_shapes.make_dataset_objects("chair", 1)
