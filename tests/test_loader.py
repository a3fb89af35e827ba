"""The on-demand read paths of ``recon.data.loader``: the decoded view cache
(``recon.data.view_cache``) against the records and memory, interrupted and stale caches, the
available-RAM rule, and ``TrainBatches.iterate`` with worker threads."""

from __future__ import annotations

import json
import os
import threading
from pathlib import Path

import numpy as np
import pytest

from recon.data import loader, view_cache
from recon.data import tfds_shapenet_nmr as nmr

CLASSES = ("02691156", "04530566")
COUNTS = {"train": (3, 2), "val": (1, 1), "test": (1, 1)}


@pytest.fixture(scope="module")
def builder(tmp_path_factory):
    """A tiny ``shapenet_nmr`` built from fake npz files in the original layout."""
    manual = tmp_path_factory.mktemp("manual")
    for split, counts in COUNTS.items():
        for class_id, n in zip(CLASSES, counts, strict=True):
            rng = np.random.default_rng([int(class_id), nmr.SPLITS.index(split)])
            images = rng.integers(0, 256, (n * 24, 4, 64, 64), dtype=np.uint8)
            voxels = rng.integers(0, 2, (n, 32, 32, 32)).astype(np.uint8)
            np.savez_compressed(manual / nmr.images_file(class_id, split), images)
            np.savez_compressed(manual / nmr.voxels_file(class_id, split), voxels)
    return nmr.prepare(tmp_path_factory.mktemp("tfds"), manual_dir=manual, classes=CLASSES)


def _open(builder, cache_dir, split="train"):
    return loader.source_from_builder(builder, split, in_memory=False, cache_dir=cache_dir)


def _assert_same_batches(a: dict, b: dict) -> None:
    assert a.keys() == b.keys()
    for key in a:
        assert a[key].dtype == b[key].dtype, key
        np.testing.assert_array_equal(a[key], b[key], err_msg=key)


def _marker(cache_dir: Path, split: str = "train") -> dict:
    return json.loads((cache_dir / f"{split}.json").read_text())


def _threads(prefix: str) -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name.startswith(prefix) and t.is_alive()]


def test_cache_is_bit_identical_to_records_and_memory(builder, tmp_path):
    records = loader.source_from_builder(builder, "train", in_memory=False, cache=False)
    cached = _open(builder, tmp_path)
    memory = loader.source_from_builder(builder, "train", in_memory=True)
    assert (records.storage, cached.storage, memory.storage) == ("records", "cache", "memory")
    assert not cached.in_memory and records.records is not None

    n = records.num_objects
    everything = records.object_images(np.arange(n))
    np.testing.assert_array_equal(cached.object_images(np.arange(n)), everything)
    np.testing.assert_array_equal(memory.images_memory, everything)
    np.testing.assert_array_equal(cached.voxels(np.arange(n)), records.voxels(np.arange(n)))
    np.testing.assert_array_equal(cached.voxels(np.arange(n)), memory.voxels_memory)
    # The cache is an ordinary .npy file, page-aligned.
    marker = _marker(tmp_path)
    on_disk = np.load(tmp_path / marker["images_file"], mmap_mode="r")
    assert on_disk.offset == view_cache.HEADER_BYTES == 4096
    np.testing.assert_array_equal(on_disk, everything)

    for sampling in ("class", "object"):
        sources = (records, cached, memory)
        batches = [loader.TrainBatches(s, 16, seed=5, sampling=sampling) for s in sources]
        for step in (0, 1, 7):
            reference = batches[0].batch(step)
            for other in batches[1:]:
                _assert_same_batches(reference, other.batch(step))
            rows = slice(4, 12)  # one host's share
            part = batches[1].batch(step, rows)
            _assert_same_batches(part, batches[0].batch(step, rows))
            _assert_same_batches(part, {k: v[rows] for k, v in reference.items()})
    for a, b in zip(loader.eval_batches(records, 10), loader.eval_batches(cached, 10), strict=True):
        _assert_same_batches(a, b)
    # In memory from the cache: the same arrays, and the cache is dropped.
    loaded = cached.load_into_memory()
    assert loaded.storage == "memory" and loaded.cache is None
    np.testing.assert_array_equal(loaded.images_memory, everything)
    np.testing.assert_array_equal(loaded.voxels_memory, memory.voxels_memory)
    with pytest.raises(IndexError):
        cached.images([n], [0])


def test_cache_is_reused_not_rebuilt(builder, tmp_path, monkeypatch):
    _open(builder, tmp_path)
    first = _marker(tmp_path)

    def no_build(*args, **kwargs):
        raise AssertionError("rebuilt a valid cache")

    monkeypatch.setattr(view_cache, "build", no_build)
    again = _open(builder, tmp_path)
    assert again.storage == "cache" and _marker(tmp_path) == first
    # A valid cache in a directory that cannot be written to is still used.
    monkeypatch.setattr(Path, "mkdir", lambda *a, **k: (_ for _ in ()).throw(PermissionError()))
    assert _open(builder, tmp_path).storage == "cache"


def test_interrupted_build_leaves_nothing_usable(builder, tmp_path, monkeypatch):
    real_decode = view_cache.decode_records

    def interrupted(records, num_objects, sink, workers=None, chunk=16):
        def half(index, example):
            if index >= 2:
                raise KeyboardInterrupt
            sink(index, example)

        real_decode(records, num_objects, half, workers=1, chunk=1)

    monkeypatch.setattr(view_cache, "decode_records", interrupted)
    with pytest.raises(KeyboardInterrupt):
        _open(builder, tmp_path)
    # No marker, no data or temp files: only the lock file.
    assert sorted(p.name for p in tmp_path.iterdir()) == ["train.lock"]
    assert not _threads("recon-decode")

    monkeypatch.setattr(view_cache, "decode_records", real_decode)
    source = _open(builder, tmp_path)
    assert source.storage == "cache"
    reference = loader.source_from_builder(builder, "train", in_memory=True)
    np.testing.assert_array_equal(source.object_images(np.arange(5)), reference.images_memory)


def test_killed_build_leftovers_are_removed_and_rebuilt(builder, tmp_path):
    """What kill -9 leaves: temp files, data files without a marker, a temp marker."""
    _open(builder, tmp_path)
    marker = _marker(tmp_path)
    (tmp_path / "train.json").unlink()
    garbage = np.full(64, 0xAB, np.uint8).tobytes()
    leftovers = [
        "train-0123456789abcdef.images.npy.tmp",
        "train-0123456789abcdef.voxels.npy.tmp",
        "train.json.0123.tmp",
    ]
    for name in leftovers:
        (tmp_path / name).write_bytes(garbage)
    # The complete data files of the previous build are left too, but without a marker they
    # must not be used: spoil them to tell.
    spoiled = tmp_path / marker["images_file"]
    size = spoiled.stat().st_size
    spoiled.write_bytes(spoiled.read_bytes()[: view_cache.HEADER_BYTES] + b"\xff" * (size - 4096))

    source = _open(builder, tmp_path)
    assert source.storage == "cache"
    new = _marker(tmp_path)
    assert new["images_file"] != marker["images_file"]
    names = {p.name for p in tmp_path.iterdir()}
    assert names == {"train.json", "train.lock", new["images_file"], new["voxels_file"]}
    reference = loader.source_from_builder(builder, "train", in_memory=True)
    np.testing.assert_array_equal(source.object_images(np.arange(5)), reference.images_memory)


@pytest.mark.parametrize("damage", ["key", "json", "truncated", "missing", "shard_touched"])
def test_stale_or_damaged_cache_is_never_used(builder, tmp_path, damage):
    _open(builder, tmp_path)
    marker = _marker(tmp_path)
    images = tmp_path / marker["images_file"]
    # Spoil the data in place (same size): if the old cache were used, the batches would differ.
    with open(images, "r+b") as f:
        f.seek(view_cache.HEADER_BYTES)
        f.write(b"\xff" * (images.stat().st_size - view_cache.HEADER_BYTES))
    if damage == "key":
        marker["key"]["dataset"] = "shapenet_nmr/other/1.0.0"
        (tmp_path / "train.json").write_text(json.dumps(marker))
    elif damage == "json":
        (tmp_path / "train.json").write_text('{"key": ')
    elif damage == "truncated":
        os.truncate(images, images.stat().st_size - 1)
    elif damage == "missing":
        (tmp_path / marker["voxels_file"]).unlink()
    else:  # the dataset was rebuilt in place: the shards' modification times changed
        shard = builder.info.splits["train"].filepaths[0]
        st = os.stat(shard)
        os.utime(shard, ns=(st.st_atime_ns, st.st_mtime_ns + 1_000_000_000))
    key = view_cache.cache_key(builder, "train", 5)
    if damage != "shard_touched":
        assert view_cache.try_open(tmp_path, "train", key) is None

    source = _open(builder, tmp_path)
    assert source.storage == "cache"
    assert _marker(tmp_path)["images_file"] != marker["images_file"]
    reference = loader.source_from_builder(builder, "train", in_memory=True)
    np.testing.assert_array_equal(source.object_images(np.arange(5)), reference.images_memory)
    _assert_same_batches(
        loader.TrainBatches(source, 8, seed=2).batch(3),
        loader.TrainBatches(reference, 8, seed=2).batch(3),
    )


def test_unwritable_directory_falls_back_to_records(builder, tmp_path):
    blocker = tmp_path / "a_file"
    blocker.write_text("not a directory")
    with pytest.warns(view_cache.CacheUnavailable, match="cannot build the view cache"):
        source = _open(builder, blocker / "cache")
    assert source.storage == "records"
    reference = loader.source_from_builder(builder, "train", in_memory=True)
    _assert_same_batches(
        loader.TrainBatches(source, 8).batch(1), loader.TrainBatches(reference, 8).batch(1)
    )


def test_full_disk_falls_back_without_leaving_files(builder, tmp_path, monkeypatch):
    class Usage:
        free = 1 << 20

    monkeypatch.setattr(view_cache.shutil, "disk_usage", lambda path: Usage)
    with pytest.warns(view_cache.CacheUnavailable, match="not enough free space"):
        source = _open(builder, tmp_path)
    assert source.storage == "records"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["train.lock"]


def test_concurrent_openers_build_once(builder, tmp_path, monkeypatch):
    calls = []
    real_build = view_cache.build

    def counting_build(*args, **kwargs):
        calls.append(1)
        return real_build(*args, **kwargs)

    monkeypatch.setattr(view_cache, "build", counting_build)
    results: list = [None] * 3

    def run(i):
        results[i] = _open(builder, tmp_path)

    threads = [threading.Thread(target=run, args=(i,)) for i in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(calls) == 1
    assert [r.storage for r in results] == ["cache"] * 3


def test_in_memory_rule_uses_available_ram(builder, tmp_path, monkeypatch):
    split_bytes = 5 * loader._OBJECT_BYTES  # the train split: 5 objects
    assert loader._OBJECT_BYTES == 24 * 64 * 64 * 4 + 32**3

    def source(available, in_memory=None):
        monkeypatch.setattr(loader, "available_memory_bytes", lambda: available)
        return loader.source_from_builder(builder, "train", in_memory, cache_dir=tmp_path)

    assert source(2 * split_bytes).storage == "memory"  # exactly half: in memory
    assert source(2 * split_bytes - 1).storage == "cache"
    # Explicit choices win over the rule.
    assert source(2 * split_bytes - 1, in_memory=True).storage == "memory"
    assert source(10 * split_bytes, in_memory=False).storage == "cache"
    # Unknown RAM: the fixed limit.
    monkeypatch.setattr(loader, "AUTO_IN_MEMORY_BYTES", split_bytes)
    assert source(None).storage == "memory"
    monkeypatch.setattr(loader, "AUTO_IN_MEMORY_BYTES", split_bytes - 1)
    assert source(None).storage == "cache"
    assert loader.auto_in_memory(100, available=200) and not loader.auto_in_memory(101, 200)


def test_available_memory_bytes_reads_the_machine():
    available = loader.available_memory_bytes()
    assert isinstance(available, int) and 0 < available
    total = os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    assert available <= total


@pytest.mark.parametrize("prefetch,workers", [(1, 1), (4, 1), (4, 3), (2, None)])
def test_iterate_with_workers_is_in_order(builder, tmp_path, prefetch, workers):
    source = _open(builder, tmp_path)
    batches = loader.TrainBatches(source, 6, seed=9)
    got = list(batches.iterate(4, 7, prefetch=prefetch, rows=slice(1, 5), workers=workers))
    assert len(got) == 7
    for k, b in enumerate(got):
        _assert_same_batches(b, batches.batch(4 + k, slice(1, 5)))
    assert list(batches.iterate(3, 0, prefetch=prefetch, workers=workers)) == []
    assert not _threads("TrainBatches")


def test_iterate_stops_cleanly(builder, tmp_path):
    batches = loader.TrainBatches(_open(builder, tmp_path), 4, seed=1)
    # break out of an endless iteration: the generator is closed and its threads joined.
    for k, b in enumerate(batches.iterate(0, None, prefetch=5, workers=3)):
        _assert_same_batches(b, batches.batch(k))
        if k == 2:
            break
    assert not _threads("TrainBatches")
    it = batches.iterate(10, None, prefetch=3, workers=2)
    next(it)
    assert _threads("TrainBatches")
    it.close()
    assert not _threads("TrainBatches")
    with pytest.raises(ValueError, match="workers"):
        next(batches.iterate(0, 1, prefetch=2, workers=0))


def test_iterate_propagates_errors_and_joins(builder, tmp_path, monkeypatch):
    batches = loader.TrainBatches(_open(builder, tmp_path), 4, seed=1)
    real_batch = loader.TrainBatches.batch

    def failing(self, step, rows=None):
        if step == 3:
            raise RuntimeError("bad record")
        return real_batch(self, step, rows)

    monkeypatch.setattr(loader.TrainBatches, "batch", failing)
    seen = []
    with pytest.raises(RuntimeError, match="bad record"):
        for b in batches.iterate(0, 10, prefetch=3, workers=2):
            seen.append(b)
    assert len(seen) == 3
    assert not _threads("TrainBatches")
