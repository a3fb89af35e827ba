"""Images per second of ``TrainBatches.batch`` (batch 64: 128 views) on every read path.

    python bench/bench_loader.py [--objects 6000] [--data-dir DIR] [--seconds 4]
        [--workers 2] [--json bench/results/loader.json]

Builds a synthetic split with the features of ``shapenet_nmr`` (one record per object: 24 zlib
Tensor views 64x64 RGBA + 32^3 voxels, array_record via TFDS) from a small TFDS builder defined
here: smooth shaded shapes on a transparent background, so the records compress like real
renderings (the procedural renderer of ``synthetic_shapes`` is far too slow for this). 6,000
objects are 2.56 GB decoded (the NMR train split: 30,642 objects, 13 GB); ``--data-dir`` keeps
the build for the next run (default: a temporary directory, deleted at the end).

Then it measures, for ``TrainBatches(source, 64).batch(k)`` over consecutive steps ``k``:

* ``records``: the old on-demand path, decoding whole records (``cache=False``);
* ``cache cold``: the view cache (``recon.data.view_cache``) with its files evicted from the OS
  page cache (``posix_fadvise(DONTNEED)``) first, i.e. read from the disk;
* ``cache warm``: the same with the files in the page cache;
* ``memory``: the split decoded in RAM (``in_memory=True``);
* ``iterate(workers=W)`` for records and cache: what ``recon.train`` consumes (prefetch W).

plus the cache build time and the in-memory load time. Prints a table and writes JSON.
Checks along the way that every path gives the same batches.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.dirname(HERE))

import numpy as np  # noqa: E402
import tensorflow_datasets as tfds  # noqa: E402

from recon.data import loader, view_cache  # noqa: E402
from recon.data.classes import CLASS_IDS  # noqa: E402
from recon.data.tfds_shapenet_nmr import (  # noqa: E402
    CodePathMixin,
    nmr_dataset_info,
    nmr_example,
)
from recon.protocol import IMAGE_SIZE, NUM_VIEWS, VOXEL_SIZE, view_azimuths  # noqa: E402

BATCH = 64


# Texture noise, drawn once (drawing it per object would dominate the build time).
_TEXTURE = (
    np.random.default_rng(0)
    .integers(-3, 4, (8, NUM_VIEWS, IMAGE_SIZE, IMAGE_SIZE, 3))
    .astype(np.float32)
)


def fake_object(seed: int) -> tuple[np.ndarray, np.ndarray]:
    """A smooth shaded blob seen from 24 azimuths: images ``[24, 64, 64, 4]`` uint8 (RGB 0 and
    alpha 0 outside, an anti-aliased edge, a little texture noise inside: zlib shrinks them about
    5x, like renderings) and an ellipsoid ``[32, 32, 32]`` bool."""
    rng = np.random.default_rng(seed)
    radii = rng.uniform(0.4, 0.9, 3).astype(np.float32)  # x, y, z half-sizes in [-1, 1] units
    colour = rng.uniform(0.2, 1.0, 3).astype(np.float32)
    power = int(rng.choice([2, 4]))  # round or boxy
    angles = np.deg2rad(view_azimuths(np.arange(NUM_VIEWS)))[:, None, None]
    pixels = complex(0, IMAGE_SIZE)  # mgrid's step: this many points from start to stop
    y, x = np.mgrid[1:-1:pixels, -1:1:pixels].astype(np.float32)
    width = np.sqrt((radii[0] * np.cos(angles)) ** 2 + (radii[2] * np.sin(angles)) ** 2)
    r = (x / width) ** power + (y / radii[1]) ** power  # superellipse: |r| < 1 inside
    alpha = np.clip((1.0 - r) * (20.0 / power), 0.0, 1.0)  # ~1.5 pixel soft edge
    light = 0.55 + 0.35 * (y / radii[1]) - 0.25 * np.sin(angles) * (x / width)
    rgb = np.clip(colour * light[..., None], 0.0, 1.0) * 255.0
    rgb += _TEXTURE[rng.integers(0, _TEXTURE.shape[0])]  # a little texture
    rgb = np.clip(rgb, 0.0, 255.0) * alpha[..., None]
    images = np.round(np.concatenate([rgb, alpha[..., None] * 255.0], -1)).astype(np.uint8)
    g = np.linspace(-1, 1, VOXEL_SIZE, dtype=np.float32)
    zz, yy, xx = np.meshgrid(g, g, g, indexing="ij")
    voxels = (xx / radii[0]) ** 2 + (yy / radii[1]) ** 2 + (zz / radii[2]) ** 2 <= 1.0
    return images, voxels


class LoaderBench(CodePathMixin, tfds.core.GeneratorBasedBuilder):
    """``shapenet_nmr``-shaped records of :func:`fake_object` s (train split only)."""

    VERSION = tfds.core.Version("1.0.0")
    BUILDER_CONFIGS = [tfds.core.BuilderConfig(name="default")]

    def __init__(self, *, objects: int, **kwargs):
        self.objects = objects
        super().__init__(**kwargs)

    def _info(self) -> tfds.core.DatasetInfo:
        return nmr_dataset_info(self)

    def _split_generators(self, dl_manager):
        counts = np.full(len(CLASS_IDS), self.objects // len(CLASS_IDS))
        counts[: self.objects % len(CLASS_IDS)] += 1
        self.info.metadata["object_counts"] = {
            "train": {c: int(n) for c, n in zip(CLASS_IDS, counts, strict=True)}
        }
        return {"train": self._generate_examples(counts)}

    def _generate_examples(self, counts):
        k = 0
        for class_id, n in zip(CLASS_IDS, counts, strict=True):
            for i in range(n):
                yield nmr_example(class_id, i, *fake_object(k))
                k += 1


def rate(fn, seconds: float, start: int = 0) -> tuple[float, int]:
    """Images/s of ``fn(step)`` over consecutive steps for about ``seconds`` (at least 3)."""
    t0 = time.perf_counter()
    step = start
    while step - start < 3 or time.perf_counter() - t0 < seconds:
        fn(step)
        step += 1
    return 2 * BATCH * (step - start) / (time.perf_counter() - t0), step - start


def iterate_rate(batches, seconds: float, workers: int, start: int) -> tuple[float, int]:
    t0, n = time.perf_counter(), 0
    for _ in batches.iterate(start, None, prefetch=workers, workers=workers):
        n += 1
        if n >= 3 and time.perf_counter() - t0 >= seconds:
            break
    return 2 * BATCH * n / (time.perf_counter() - t0), n


def same(a: dict, b: dict) -> bool:
    return all(np.array_equal(a[k], b[k]) for k in a)


def main(argv: list[str] | None = None) -> dict:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--objects", type=int, default=6000)
    p.add_argument("--data-dir", default=None, help="keep and reuse the build here")
    p.add_argument("--seconds", type=float, default=4.0, help="per measurement")
    p.add_argument("--workers", type=int, default=os.cpu_count() or 1)
    p.add_argument("--json", default=os.path.join(HERE, "results", "loader.json"))
    args = p.parse_args(argv)

    data_dir = args.data_dir or tempfile.mkdtemp(prefix="bench_loader_")
    result: dict = {
        "objects": args.objects,
        "batch_size": BATCH,
        "images_per_batch": 2 * BATCH,
        "decoded_gb": args.objects * view_cache.OBJECT_BYTES / 1e9,
        "cpus": os.cpu_count(),
        "machine": platform.processor() or platform.machine(),
        "python": platform.python_version(),
        "numpy": np.__version__,
        "data_dir": data_dir,
    }
    try:
        builder = LoaderBench(objects=args.objects, data_dir=data_dir, file_format="array_record")
        t0 = time.perf_counter()
        if not builder.is_prepared():
            builder.download_and_prepare(file_format="array_record")
            result["records_build_s"] = time.perf_counter() - t0
        record_files = builder.info.splits["train"].filepaths
        result["records_gb"] = sum(os.path.getsize(os.fspath(f)) for f in record_files) / 1e9
        print(
            f"split: {args.objects} objects, {result['decoded_gb']:.2f} GB decoded, "
            f"{result['records_gb']:.2f} GB of array_record",
            file=sys.stderr,
        )

        records = loader.source_from_builder(builder, "train", in_memory=False, cache=False)
        shutil.rmtree(os.path.join(builder.data_dir, "view_cache"), ignore_errors=True)
        t0 = time.perf_counter()
        cached = loader.source_from_builder(builder, "train", in_memory=False)
        result["cache_build_s"] = time.perf_counter() - t0
        assert cached.storage == "cache", cached.storage
        t0 = time.perf_counter()
        memory = loader.source_from_builder(builder, "train", in_memory=True)
        result["memory_load_s"] = time.perf_counter() - t0

        paths = {"records": records, "cache": cached, "memory": memory}
        batches = {k: loader.TrainBatches(s, BATCH, seed=0) for k, s in paths.items()}
        for k in (0, 1000):
            reference = batches["records"].batch(k)
            assert same(reference, batches["cache"].batch(k)), "cache differs from records"
            assert same(reference, batches["memory"].batch(k)), "memory differs from records"

        rows = []

        def measure(name: str, fn, start: int) -> None:
            images_s, n = fn(start)
            rows.append({"path": name, "images_per_s": images_s, "batches": n})
            print(f"  {name:<28} {images_s:>10,.0f} images/s", file=sys.stderr)

        s, w = args.seconds, args.workers
        # Distinct step ranges, so that a cold measurement reads views not read before.
        measure("records", lambda k: rate(batches["records"].batch, s, k), 10_000)
        cached.cache.evict()
        measure("cache cold", lambda k: rate(batches["cache"].batch, s, k), 20_000)
        measure("cache warm", lambda k: rate(batches["cache"].batch, s, k), 0)
        measure("memory", lambda k: rate(batches["memory"].batch, s, k), 0)
        measure(
            f"records iterate(workers={w})",
            lambda k: iterate_rate(batches["records"], s, w, k),
            30_000,
        )
        cached.cache.evict()
        measure(
            f"cache cold iterate(workers={w})",
            lambda k: iterate_rate(batches["cache"], s, w, k),
            40_000,
        )
        measure(
            f"cache warm iterate(workers={w})",
            lambda k: iterate_rate(batches["cache"], s, w, k),
            0,
        )
        result["rows"] = rows
        base = rows[0]["images_per_s"]
        print(f"\n{'path':<30} {'images/s':>10} {'x records':>10}")
        for row in rows:
            ratio = row["images_per_s"] / base
            print(f"{row['path']:<30} {row['images_per_s']:>10,.0f} {ratio:>10.1f}")
        print(
            f"cache build {result['cache_build_s']:.1f} s "
            f"({args.objects / result['cache_build_s']:.0f} objects/s), in-memory load "
            f"{result['memory_load_s']:.1f} s"
        )
        for s_ in paths.values():
            if s_.cache is not None:
                s_.cache.close()
    finally:
        if args.data_dir is None:
            shutil.rmtree(data_dir, ignore_errors=True)
    os.makedirs(os.path.dirname(os.path.abspath(args.json)), exist_ok=True)
    tmp = args.json + ".tmp"
    with open(tmp, "w") as f:
        json.dump(result, f, indent=2)
    os.replace(tmp, args.json)
    print(f"wrote {args.json}")
    return result


if __name__ == "__main__":
    main()
