"""TFDS builders (shapenet_nmr on fake files in the original layout, synthetic_shapes) and the
NumPy loaders. No TensorFlow is needed."""

from __future__ import annotations

import shutil
import sys

import numpy as np
import pytest

from recon.data import loader
from recon.data import tfds_shapenet_nmr as nmr
from recon.data.classes import CLASS_IDS, CLASS_NAMES
from recon.protocol import view_eyes

pytestmark = pytest.mark.slow  # trains models or builds datasets (see pyproject.toml)

FAKE_CLASSES = ("02691156", "04530566")  # Airplane, Watercraft
FAKE_COUNTS = {
    ("02691156", "train"): 3,
    ("02691156", "val"): 1,
    ("02691156", "test"): 2,
    ("04530566", "train"): 2,
    ("04530566", "val"): 2,
    ("04530566", "test"): 1,
}


def _fake_arrays(class_id: str, split: str) -> tuple[np.ndarray, np.ndarray]:
    n = FAKE_COUNTS[class_id, split]
    rng = np.random.default_rng([int(class_id), nmr.SPLITS.index(split)])
    images = rng.integers(0, 256, (n * 24, 4, 64, 64), dtype=np.uint8)
    voxels = rng.integers(0, 2, (n, 32, 32, 32)).astype(np.uint8)
    return images, voxels


@pytest.fixture(scope="module")
def fake_manual_dir(tmp_path_factory):
    """The original NMR layout: one array per npz, images [N*24, 4, 64, 64] uint8."""
    directory = tmp_path_factory.mktemp("manual")
    for (class_id, split), _ in FAKE_COUNTS.items():
        images, voxels = _fake_arrays(class_id, split)
        np.savez_compressed(directory / nmr.images_file(class_id, split), images)
        np.savez_compressed(directory / nmr.voxels_file(class_id, split), voxels)
    return directory


@pytest.fixture(scope="module")
def nmr_builder(fake_manual_dir, tmp_path_factory):
    data_dir = tmp_path_factory.mktemp("tfds")
    return nmr.prepare(data_dir, manual_dir=fake_manual_dir, classes=FAKE_CLASSES)


def test_nmr_builder_matches_original_layout(nmr_builder):
    assert "tensorflow" not in sys.modules
    assert nmr_builder.name == "shapenet_nmr"
    for split in nmr.SPLITS:
        records = nmr_builder.as_data_source(split=split)
        expected = [
            (c, i) for c in FAKE_CLASSES for i in range(FAKE_COUNTS[c, split])
        ]  # class order, then npz order
        assert len(records) == len(expected)
        arrays = {c: _fake_arrays(c, split) for c in FAKE_CLASSES}
        for k, (class_id, i) in enumerate(expected):
            ex = records[k]
            images, voxels = arrays[class_id]
            want = images.reshape(-1, 24, 4, 64, 64)[i].transpose(0, 2, 3, 1)
            assert ex["images"].dtype == np.uint8 and ex["images"].shape == (24, 64, 64, 4)
            np.testing.assert_array_equal(ex["images"], want)
            assert ex["voxels"].dtype == np.bool_ and ex["voxels"].shape == (32, 32, 32)
            np.testing.assert_array_equal(ex["voxels"], voxels[i] != 0)
            assert ex["class_id"].decode() == class_id
            assert ex["class_name"].decode() == CLASS_NAMES[class_id]
            assert ex["label"] == CLASS_IDS.index(class_id)
            assert ex["object_index"] == i
    counts = nmr_builder.info.metadata["object_counts"]
    assert counts["train"] == {"02691156": 3, "04530566": 2}


def test_nmr_missing_files_error(fake_manual_dir, tmp_path):
    partial = tmp_path / "partial"
    shutil.copytree(fake_manual_dir, partial)
    (partial / "04530566_val_voxels.npz").unlink()
    with pytest.raises(nmr.MissingFilesError) as info:
        nmr.prepare(tmp_path / "data", manual_dir=partial, classes=FAKE_CLASSES)
    message = str(info.value)
    assert "04530566_val_voxels.npz" in message
    assert str(partial) in message
    assert "02691156_val_voxels.npz" not in message
    assert "manual" in message and "mesh_reconstruction" in message
    assert info.value.missing == ["04530566_val_voxels.npz"]
    assert isinstance(info.value, FileNotFoundError)

    # Default config: all 13 classes are required; a missing directory is reported too.
    with pytest.raises(FileNotFoundError) as info:
        nmr.prepare(tmp_path / "data", manual_dir=tmp_path / "nowhere")
    assert len(info.value.missing) == 78
    assert "04401088_test_images.npz" in str(info.value)
    assert str(tmp_path / "nowhere") in str(info.value)


def test_nmr_class_subset_validation():
    with pytest.raises(ValueError, match="classes"):
        nmr.make_builder(None, classes=["12345678"])


def test_load_split_and_train_batches(nmr_builder, fake_manual_dir):
    data_dir = nmr_builder.data_dir.split("/shapenet_nmr/")[0]
    lazy = loader.load_split(
        "shapenet_nmr", "train", data_dir, classes=FAKE_CLASSES, in_memory=False
    )
    mem = loader.load_split(
        "shapenet_nmr", "train", data_dir, manual_dir=fake_manual_dir, classes=FAKE_CLASSES
    )
    assert not lazy.in_memory and mem.in_memory
    assert lazy.num_objects == mem.num_objects == 5
    np.testing.assert_array_equal(mem.class_index, [0, 0, 0, 12, 12])
    np.testing.assert_array_equal(mem.object_index, [0, 1, 2, 0, 1])
    np.testing.assert_array_equal(mem.images_memory, lazy.object_images(np.arange(5)))
    np.testing.assert_array_equal(mem.voxels_memory, lazy.voxels(np.arange(5)))

    for sampling in ("class", "object"):
        batches = loader.TrainBatches(mem, batch_size=8, seed=3, sampling=sampling)
        b1, b2 = batches.batch(5), batches.batch(5)
        for key in b1:
            np.testing.assert_array_equal(b1[key], b2[key])
        other = loader.TrainBatches(lazy, batch_size=8, seed=3, sampling=sampling).batch(5)
        for key in b1:
            np.testing.assert_array_equal(b1[key], other[key])
        assert not np.array_equal(batches.batch(6)["object"], b1["object"])
        assert b1["images_a"].shape == b1["images_b"].shape == (8, 64, 64, 4)
        assert b1["images_a"].dtype == np.float32
        assert 0.0 <= b1["images_a"].min() and b1["images_a"].max() <= 1.0
        assert b1["viewpoints_a"].shape == (8, 3) and b1["viewpoints_a"].dtype == np.float32
        assert b1["class_index"].shape == (8,)
        # Contents: the right object and view, and the protocol's eye positions.
        o, va, vb = b1["object"], b1["views_a"], b1["views_b"]
        np.testing.assert_array_equal(b1["images_a"], mem.images_memory[o, va] / np.float32(255))
        np.testing.assert_array_equal(b1["images_b"], mem.images_memory[o, vb] / np.float32(255))
        np.testing.assert_array_equal(b1["class_index"], mem.class_index[o])
        np.testing.assert_allclose(
            b1["viewpoints_b"], np.asarray(_softjax_eyes(vb)), rtol=1e-5, atol=1e-5
        )
    # Iterating from a step reproduces batch(step) (resuming).
    batches = loader.TrainBatches(mem, batch_size=4, seed=1)
    resumed = list(batches.iterate(start_step=7, num_steps=3))
    assert len(resumed) == 3
    for k, b in enumerate(resumed):
        np.testing.assert_array_equal(b["images_a"], batches.batch(7 + k)["images_a"])


def _softjax_eyes(views):
    import softjax

    return softjax.get_points_from_angles(2.732, 30.0, -15.0 * np.asarray(views, np.float32))


def test_eval_batches_cover_every_view_once(nmr_builder):
    data_dir = nmr_builder.data_dir.split("/shapenet_nmr/")[0]
    source = loader.load_split("shapenet_nmr", "val", data_dir, classes=FAKE_CLASSES)
    seen = []
    for batch in loader.eval_batches(source, batch_size=10):
        b = batch["images"].shape[0]
        assert b <= 10
        assert batch["voxels"].shape == (b, 32, 32, 32) and batch["voxels"].dtype == np.bool_
        np.testing.assert_array_equal(
            batch["images"], source.images_memory[batch["object"], batch["view"]] / np.float32(255)
        )
        np.testing.assert_array_equal(batch["voxels"], source.voxels_memory[batch["object"]])
        np.testing.assert_array_equal(batch["class_index"], source.class_index[batch["object"]])
        seen += list(zip(batch["object"].tolist(), batch["view"].tolist(), strict=True))
    expected = [(o, v) for o in range(source.num_objects) for v in range(24)]
    assert seen == expected  # ordered, each pair once
    only = [b["object"] for b in loader.eval_batches(source, 7, class_id="04530566")]
    np.testing.assert_array_equal(np.unique(np.concatenate(only)), [1, 2])


@pytest.fixture(scope="module")
def synthetic(tmp_path_factory):
    from recon.data import tfds_synthetic

    data_dir = tmp_path_factory.mktemp("synthetic")
    kwargs = dict(train=1, val=1, test=1, seed=7, classes=("03001627", "04379243"))
    return tfds_synthetic.prepare(data_dir, **kwargs), data_dir, kwargs


def test_synthetic_builds_and_reads_back(synthetic):
    builder, data_dir, kwargs = synthetic
    assert builder.name == "synthetic_shapes"
    for split in nmr.SPLITS:
        records = builder.as_data_source(split=split)
        assert len(records) == 2
        for ex, class_id in zip(records, ("03001627", "04379243"), strict=True):
            assert ex["images"].shape == (24, 64, 64, 4) and ex["images"].dtype == np.uint8
            assert ex["voxels"].shape == (32, 32, 32) and ex["voxels"].dtype == np.bool_
            assert ex["class_id"].decode() == class_id
            assert ex["label"] == CLASS_IDS.index(class_id)
            alpha = ex["images"][..., 3]
            assert alpha.max() == 255 and alpha[:, 0, :].max() == 0  # object, background
            assert 0 < ex["voxels"].mean() < 0.9
    # Different splits hold different objects.
    train = builder.as_data_source(split="train")[0]["voxels"]
    test = builder.as_data_source(split="test")[0]["voxels"]
    assert not np.array_equal(train, test)
    # The loader opens the cached build with the same kwargs (no rebuild).
    source = loader.load_split("synthetic_shapes", "test", data_dir, **kwargs)
    assert source.num_objects == 2 and source.class_ids == ("03001627", "04379243")


def test_synthetic_is_deterministic(synthetic):
    from recon.data import class_shapes, tfds_synthetic

    builder, _, _ = synthetic
    ex = builder.as_data_source(split="val")[1]
    class_id = "04379243"
    mesh = class_shapes.make_dataset_objects(
        class_id, 1, tfds_synthetic.object_seed(7, "val", class_id)
    )[0]
    images, voxels = tfds_synthetic.render_object(mesh)
    np.testing.assert_array_equal(images, ex["images"])
    np.testing.assert_array_equal(voxels, ex["voxels"])


def test_view_eyes_match_softjax():
    views = np.arange(24)
    np.testing.assert_allclose(
        view_eyes(views), np.asarray(_softjax_eyes(views)), rtol=1e-5, atol=1e-5
    )
