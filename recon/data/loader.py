"""Loading NMR-protocol datasets for training and evaluation (NumPy only, no TensorFlow).

* :func:`load_split` builds (if needed) and opens one split of ``shapenet_nmr`` or
  ``synthetic_shapes`` as a :class:`SplitSource`: the whole split decoded in memory when it takes
  at most half of the available RAM, else read on demand from a decoded view cache on disk
  (:mod:`recon.data.view_cache`, built once next to the dataset), or from the array_record
  records if the cache cannot be written.
* :class:`TrainBatches` draws SoftRas-style training batches: for each element a random class,
  then a random object of that class (SoftRas's ``get_random_batch``; ``sampling='object'``
  draws objects uniformly instead), and two independent random views ``a`` and ``b``. Batch
  ``step`` is a pure function of ``(seed, step)``, so training resumes exactly.
* :func:`eval_batches` walks every (object, view) pair once, object-major like SoftRas's
  ``get_all_batches_for_evaluation``.

Conventions (the protocol's numbers live in :mod:`recon.protocol`): images are RGBA float32 in
[0, 1], channels last ``[B, 64, 64, 4]``, row 0 at the top; view ``k`` is seen from
``get_points_from_angles(2.732, 30, -15 k)`` (``viewpoints``, float32 ``[B, 3]``,
:func:`recon.protocol.view_eyes`); voxels are ``[B, 32, 32, 32]`` bool in the NMR axis order;
``class_index`` is the index into :data:`recon.data.classes.CLASS_IDS` (the TFDS ``label``).
"""

from __future__ import annotations

import collections
import concurrent.futures
import dataclasses
import os
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from recon.data import view_cache
from recon.data.classes import CLASS_IDS
from recon.data.tfds_shapenet_nmr import prepare_builder
from recon.protocol import IMAGE_SIZE, NUM_VIEWS, VOXEL_SIZE, view_eyes

if TYPE_CHECKING:
    import tensorflow_datasets as tfds

DATASETS = ("shapenet_nmr", "synthetic_shapes")
# ``in_memory=None``: a split goes in memory when its decoded size is at most this fraction of
# the available RAM (the rest is left to the model, the other split and the page cache).
IN_MEMORY_FRACTION = 0.5
# The limit used instead when the available RAM cannot be read.
AUTO_IN_MEMORY_BYTES = 4 << 30
_OBJECT_BYTES = view_cache.OBJECT_BYTES  # decoded images + voxels of one object
# Shape and dtype of one object's ``images`` and ``voxels`` as the records decode them.
_OBJECT_ARRAYS: dict[str, tuple[tuple[int, ...], type]] = {
    "images": ((NUM_VIEWS, IMAGE_SIZE, IMAGE_SIZE, 4), np.uint8),
    "voxels": ((VOXEL_SIZE,) * 3, np.bool_),
}


def available_memory_bytes() -> int | None:
    """RAM available to new allocations without swapping (``MemAvailable`` of
    ``/proc/meminfo``, else free pages from ``sysconf``), or None if unknown."""
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024  # the value is in kB
    except (OSError, ValueError, IndexError):
        pass
    try:
        return int(os.sysconf("SC_AVPHYS_PAGES")) * int(os.sysconf("SC_PAGE_SIZE"))
    except (ValueError, OSError, AttributeError):
        return None


def auto_in_memory(split_bytes: int, available: int | None = None) -> bool:
    """The ``in_memory=None`` rule: True iff ``split_bytes`` (decoded images + voxels) is at most
    ``IN_MEMORY_FRACTION`` (half) of the available RAM (``available``, default
    :func:`available_memory_bytes`), or at most ``AUTO_IN_MEMORY_BYTES`` if that is unknown."""
    if available is None:
        available = available_memory_bytes()
    if available is None:
        return split_bytes <= AUTO_IN_MEMORY_BYTES
    return split_bytes <= IN_MEMORY_FRACTION * available


def dataset_builder(
    dataset: str, data_dir: str | Path | None = None, **builder_kwargs: Any
) -> tfds.core.DatasetBuilder:
    """The TFDS builder of ``dataset`` (``'shapenet_nmr'`` or ``'synthetic_shapes'``).

    ``builder_kwargs``: ``classes=`` for both; ``train=``, ``val=``, ``test=``, ``seed=`` for
    ``synthetic_shapes`` (see the ``make_builder`` of each module).
    """
    if dataset == "shapenet_nmr":
        from recon.data import tfds_shapenet_nmr as module
    elif dataset == "synthetic_shapes":
        from recon.data import tfds_synthetic as module
    else:
        raise ValueError(f"dataset must be one of {list(DATASETS)}, got {dataset!r}")
    return module.make_builder(data_dir, **builder_kwargs)


def prepare_dataset(
    dataset: str,
    data_dir: str | Path | None = None,
    *,
    manual_dir: str | Path | None = None,
    **builder_kwargs: Any,
) -> tfds.core.DatasetBuilder:
    """The ``prepare`` of ``dataset``'s module by name: builds it once (array_record, cached
    under ``data_dir``; :func:`~recon.data.tfds_shapenet_nmr.prepare_builder`) and returns its
    builder.

    ``manual_dir``: where the original ``shapenet_nmr`` npz files are (default TFDS's
    ``<data_dir>/downloads/manual``); ignored for ``synthetic_shapes``.
    """
    return prepare_builder(dataset_builder(dataset, data_dir, **builder_kwargs), manual_dir)


@dataclasses.dataclass
class SplitSource:
    """One split of an NMR-layout dataset: ``num_objects`` objects in class order.

    Attributes:
      name: ``'<dataset>/<config>/<split>'``.
      class_ids: the classes present, in :data:`CLASS_IDS` order.
      counts: ``[C]`` int64 objects per class of ``class_ids``.
      class_index: ``[N]`` int32 label (index into :data:`CLASS_IDS`) of every object.
      object_index: ``[N]`` int32 index of every object within its class.
      records: the TFDS ``ArrayRecordDataSource`` (random access to decoded examples), or None.
      images_memory / voxels_memory: ``[N, 24, 64, 64, 4]`` uint8 / ``[N, 32, 32, 32]`` bool
        when the split is held in memory, else None.
      cache: the decoded on-disk :class:`~recon.data.view_cache.ViewCache` that on-demand reads
        use instead of ``records``, or None.

    Reads come from memory, else the cache, else the records (:attr:`storage`); all three give
    the same bytes.
    """

    name: str
    class_ids: tuple[str, ...]
    counts: np.ndarray
    class_index: np.ndarray
    object_index: np.ndarray
    records: Sequence[dict[str, Any]] | None = None
    images_memory: np.ndarray | None = None
    voxels_memory: np.ndarray | None = None
    cache: view_cache.ViewCache | None = None

    @property
    def num_objects(self) -> int:
        return int(self.class_index.shape[0])

    @property
    def in_memory(self) -> bool:
        return self.images_memory is not None

    @property
    def storage(self) -> str:
        """Where reads come from: ``'memory'``, ``'cache'`` or ``'records'``."""
        if self.in_memory:
            return "memory"
        return "cache" if self.cache is not None else "records"

    @property
    def offsets(self) -> np.ndarray:
        """``[C]`` index of the first object of each class of ``class_ids``."""
        return np.concatenate([[0], np.cumsum(self.counts)[:-1]]).astype(np.int64)

    def _records(self, objects: np.ndarray) -> dict[int, dict[str, Any]]:
        unique = sorted({int(o) for o in objects})
        if not unique:
            return {}
        if any(o < 0 or o >= self.num_objects for o in unique):
            raise IndexError(f"object index out of range [0, {self.num_objects}) in {unique}")
        getitems = getattr(self.records, "__getitems__", None)
        values = getitems(unique) if getitems else [self.records[o] for o in unique]
        return dict(zip(unique, values, strict=True))

    def _whole_objects(self, objects: Any, field: str) -> np.ndarray:
        """``field`` (``'images'`` or ``'voxels'``, see ``_OBJECT_ARRAYS``) of objects
        ``objects`` (int ``[B]``), from memory, else the cache, else the records."""
        objects = np.asarray(objects, np.int64).reshape(-1)
        if self.in_memory:
            return (self.images_memory if field == "images" else self.voxels_memory)[objects]
        if self.cache is not None:
            read = self.cache.object_images if field == "images" else self.cache.voxels
            return read(objects)
        records = self._records(objects)
        shape, dtype = _OBJECT_ARRAYS[field]
        out = np.empty((objects.shape[0], *shape), dtype)
        for i, o in enumerate(objects):
            out[i] = records[int(o)][field]
        return out

    def object_images(self, objects: Any) -> np.ndarray:
        """All 24 views ``[B, 24, 64, 64, 4]`` uint8 of objects ``objects`` (int ``[B]``)."""
        return self._whole_objects(objects, "images")

    def images(self, objects: Any, views: Any) -> np.ndarray:
        """Views ``views[i]`` of objects ``objects[i]``: ``[B, 64, 64, 4]`` uint8."""
        objects = np.asarray(objects, np.int64).reshape(-1)
        views = np.asarray(views, np.int64).reshape(-1)
        if objects.shape != views.shape:
            raise ValueError(f"objects {objects.shape} and views {views.shape} differ in shape")
        if np.any((views < 0) | (views >= NUM_VIEWS)):
            raise IndexError(f"views must be in [0, {NUM_VIEWS}), got {views}")
        if self.in_memory:
            return self.images_memory[objects, views]
        if self.cache is not None:
            return self.cache.images(objects, views)
        records = self._records(objects)
        out = np.empty((objects.shape[0], IMAGE_SIZE, IMAGE_SIZE, 4), np.uint8)
        for i, (o, v) in enumerate(zip(objects, views, strict=True)):
            out[i] = records[int(o)]["images"][v]
        return out

    def voxels(self, objects: Any) -> np.ndarray:
        """Voxels ``[B, 32, 32, 32]`` bool of objects ``objects`` (int ``[B]``)."""
        return self._whole_objects(objects, "voxels")

    def load_into_memory(self, chunk: int = 256, workers: int | None = None) -> SplitSource:
        """Returns a copy of this source with the whole split decoded into memory (from the
        cache if there is one, else from the records with ``workers`` threads, default one per
        CPU; ``chunk``: objects per read)."""
        if self.in_memory:
            return self
        n = self.num_objects
        images, voxels = (np.empty((n, *shape), dtype) for shape, dtype in _OBJECT_ARRAYS.values())
        if self.cache is not None:
            for start in range(0, n, chunk):
                idx = np.arange(start, min(start + chunk, n))
                images[idx] = self.cache.object_images(idx)
                voxels[idx] = self.cache.voxels(idx)
        else:

            def sink(o: int, example: dict[str, Any]) -> None:
                images[o] = example["images"]
                voxels[o] = example["voxels"]

            view_cache.decode_records(self.records, n, sink, workers)
        return dataclasses.replace(self, images_memory=images, voxels_memory=voxels, cache=None)


def source_from_builder(
    builder,
    split: str,
    in_memory: bool | None = None,
    *,
    cache: bool = True,
    cache_dir: str | Path | None = None,
) -> SplitSource:
    """Opens ``split`` of a prepared builder as a :class:`SplitSource` (see :func:`load_split`
    for the arguments)."""
    metadata = builder.info.metadata or {}
    all_counts = metadata.get("object_counts", {})
    if split not in all_counts:
        raise ValueError(
            f"{builder.name}/{builder.builder_config.name}: no object counts for split {split!r}"
            f" (available: {sorted(all_counts)})"
        )
    by_class = all_counts[split]
    class_ids = tuple(c for c in CLASS_IDS if c in by_class)
    counts = np.array([int(by_class[c]) for c in class_ids], np.int64)
    class_index = np.repeat([CLASS_IDS.index(c) for c in class_ids], counts).astype(np.int32)
    object_index = np.concatenate([np.arange(n) for n in counts] or [np.zeros(0)]).astype(np.int32)
    records = builder.as_data_source(split=split)
    if len(records) != class_index.shape[0]:
        raise ValueError(
            f"{builder.name}/{split}: {len(records)} records but the metadata counts "
            f"{class_index.shape[0]} objects"
        )
    source = SplitSource(
        name=f"{builder.name}/{builder.builder_config.name}/{split}",
        class_ids=class_ids,
        counts=counts,
        class_index=class_index,
        object_index=object_index,
        records=records,
    )
    if in_memory is None:
        in_memory = auto_in_memory(source.num_objects * _OBJECT_BYTES)
    if in_memory:
        return source.load_into_memory()
    if cache and source.num_objects:
        source.cache = view_cache.open_or_build(
            builder, split, records, source.num_objects, cache_dir
        )
    return source


def load_split(
    dataset: str,
    split: str,
    data_dir: str | Path | None = None,
    *,
    manual_dir: str | Path | None = None,
    in_memory: bool | None = None,
    cache: bool = True,
    cache_dir: str | Path | None = None,
    **builder_kwargs: Any,
) -> SplitSource:
    """Opens one split (``'train'``, ``'val'``, ``'test'``) of ``dataset``, building it first if
    needed (``synthetic_shapes`` renders; ``shapenet_nmr`` converts the npz files found in
    ``manual_dir``).

    Args:
      dataset: ``'shapenet_nmr'`` or ``'synthetic_shapes'``.
      split: split name.
      data_dir: TFDS data directory (default ``~/tensorflow_datasets``).
      manual_dir: ``shapenet_nmr`` only: directory of the original npz files.
      in_memory: decode the whole split into NumPy arrays (True), read it on demand (False), or
        choose (None): in memory iff its decoded size (426 KB per object: 24 RGBA 64x64 views
        + 32^3 voxels; 12.8 GB for NMR's train split) is at most half of the available RAM
        (:func:`auto_in_memory`).
      cache: on-demand reads come from a decoded view cache (:mod:`recon.data.view_cache`;
        built once, 426 KB per object on disk; 20-30x faster than decoding records). False:
        read and decode the array_record records for every batch. If the cache cannot be
        written, the records are read, with a :class:`~recon.data.view_cache.CacheUnavailable`
        warning.
      cache_dir: where the cache lives (default ``<data_dir>/<dataset>/<config>/<version>/
        view_cache``).
      builder_kwargs: builder options (``classes``; ``train``, ``val``, ``test``, ``seed``).

    Returns:
      A :class:`SplitSource`.
    """
    builder = prepare_dataset(dataset, data_dir, manual_dir=manual_dir, **builder_kwargs)
    return source_from_builder(builder, split, in_memory, cache=cache, cache_dir=cache_dir)


def load_config_split(config: Any, split: str, data_dir: str | None = None) -> SplitSource:
    """The split ``split`` of the dataset a training config names (``config.dataset``, read as
    its ``data_dir``, ``manual_dir``, ``in_memory`` and ``dataset_kwargs`` say); ``data_dir``
    replaces ``config.data_dir``."""
    return load_split(
        config.dataset,
        split,
        data_dir or config.data_dir,
        manual_dir=config.manual_dir,
        in_memory=config.in_memory,
        **dict(config.dataset_kwargs),
    )


def to_float(images: np.ndarray) -> np.ndarray:
    """uint8 images -> float32 in [0, 1] (``x / 255``, as SoftRas)."""
    return images.astype(np.float32) / np.float32(255.0)


class TrainBatches:
    """Random training batches, SoftRas style, deterministic in ``(seed, step)``.

    ``batch(step)`` returns a dict of NumPy arrays:
      ``images_a``, ``images_b``: ``[B, 64, 64, 4]`` float32 in [0, 1] (two views of the same
      objects); ``viewpoints_a``, ``viewpoints_b``: ``[B, 3]`` float32 eye positions;
      ``views_a``, ``views_b``: ``[B]`` int32 view indices (0..23); ``class_index``: ``[B]`` int32
      label; ``object``: ``[B]`` int64 object index within the split.

    Sampling (``sampling``): ``'class'`` (default, as SoftRas): a uniformly random class among
    those with objects, then a uniformly random object of that class, so classes are balanced;
    ``'object'``: uniformly random objects of the whole split (classes weighted by size). Views
    ``a`` and ``b`` are independent and uniform over 0..23 (they may coincide, as in SoftRas).
    Random numbers come from ``np.random.default_rng([seed, step])``.
    """

    def __init__(
        self, source: SplitSource, batch_size: int, seed: int = 0, sampling: str = "class"
    ):
        if not isinstance(batch_size, int) or batch_size < 1:
            raise ValueError(f"batch_size must be a positive int, got {batch_size!r}")
        if sampling not in ("class", "object"):
            raise ValueError(f"sampling must be 'class' or 'object', got {sampling!r}")
        if source.num_objects == 0:
            raise ValueError(f"{source.name} has no objects")
        self.source = source
        self.batch_size = batch_size
        self.seed = int(seed)
        self.sampling = sampling
        self._nonempty = np.flatnonzero(source.counts > 0)

    def indices(self, step: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """``(objects [B] int64, views_a [B] int32, views_b [B] int32)`` of batch ``step``."""
        if step < 0:
            raise ValueError(f"step must be >= 0, got {step}")
        rng = np.random.default_rng([self.seed, int(step)])
        b = self.batch_size
        if self.sampling == "class":
            classes = self._nonempty[rng.integers(0, self._nonempty.shape[0], b)]
            within = rng.integers(0, self.source.counts[classes])
            objects = self.source.offsets[classes] + within
        else:
            objects = rng.integers(0, self.source.num_objects, b)
        views_a = rng.integers(0, NUM_VIEWS, b).astype(np.int32)
        views_b = rng.integers(0, NUM_VIEWS, b).astype(np.int32)
        return objects.astype(np.int64), views_a, views_b

    def batch(self, step: int, rows: slice | None = None) -> dict[str, np.ndarray]:
        """Batch number ``step`` (a pure function of ``(seed, step)``); ``rows``: only these
        rows of it (e.g. one host's share), read without loading the others."""
        objects, views_a, views_b = self.indices(step)
        if rows is not None:
            objects, views_a, views_b = objects[rows], views_a[rows], views_b[rows]
        both = self.source.images(
            np.concatenate([objects, objects]), np.concatenate([views_a, views_b])
        )
        images = to_float(both)
        b = objects.shape[0]
        return {
            "images_a": images[:b],
            "images_b": images[b:],
            "viewpoints_a": view_eyes(views_a),
            "viewpoints_b": view_eyes(views_b),
            "views_a": views_a,
            "views_b": views_b,
            "class_index": self.source.class_index[objects],
            "object": objects,
        }

    def __call__(self, step: int) -> dict[str, np.ndarray]:
        return self.batch(step)

    def iterate(
        self,
        start_step: int = 0,
        num_steps: int | None = None,
        prefetch: int = 2,
        rows: slice | None = None,
        workers: int | None = None,
    ) -> Iterator[dict[str, np.ndarray]]:
        """Batches ``start_step, start_step + 1, ...`` (``num_steps`` of them, or forever), in
        order, each equal to ``batch(step, rows)``.

        ``prefetch`` batches are kept in flight (0: no threads, each batch is read when asked
        for), on ``workers`` threads (default ``min(prefetch, CPUs)``), so reading overlaps the
        consumer's work: the array_record reads, zlib, the memory-mapped copies and the float
        conversion all release the GIL. Closing the generator (``break`` in a ``for`` loop, an
        exception, or garbage collection) cancels the batches not started and joins the threads.
        """
        stop = None if num_steps is None else start_step + num_steps
        step = start_step
        if prefetch <= 0:
            while stop is None or step < stop:
                yield self.batch(step, rows)
                step += 1
            return
        if workers is None:
            workers = min(prefetch, os.cpu_count() or 1)
        if workers < 1:
            raise ValueError(f"workers must be >= 1, got {workers}")
        pool = concurrent.futures.ThreadPoolExecutor(workers, thread_name_prefix="TrainBatches")
        pending: collections.deque[concurrent.futures.Future] = collections.deque()
        try:
            while True:
                while len(pending) < prefetch and (stop is None or step < stop):
                    pending.append(pool.submit(self.batch, step, rows))
                    step += 1
                if not pending:
                    return
                batch = pending.popleft().result()
                # Top up before handing the batch over, so ``prefetch`` batches are read while
                # the consumer works on this one.
                if stop is None or step < stop:
                    pending.append(pool.submit(self.batch, step, rows))
                    step += 1
                yield batch
        finally:
            pool.shutdown(wait=True, cancel_futures=True)


def eval_batches(
    source: SplitSource, batch_size: int, class_id: str | None = None, max_objects: int = 0
) -> Iterator[dict[str, np.ndarray]]:
    """Every (object, view) pair of ``source`` once, in order (object-major, views 0..23).

    Args:
      source: a :class:`SplitSource`.
      batch_size: images per batch (the last batch may be smaller).
      class_id: only the objects of this class (e.g. ``'02691156'``); None = all.
      max_objects: only the first ``max_objects`` of them (0 = all).

    Yields:
      dicts of ``images`` ``[b, 64, 64, 4]`` float32 in [0, 1], ``viewpoints`` ``[b, 3]``
      float32, ``voxels`` ``[b, 32, 32, 32]`` bool (the voxels of each image's object),
      ``class_index`` ``[b]`` int32, ``object`` ``[b]`` int64 (index within the split),
      ``view`` ``[b]`` int32.
    """
    if not isinstance(batch_size, int) or batch_size < 1:
        raise ValueError(f"batch_size must be a positive int, got {batch_size!r}")
    if class_id is None:
        objects = np.arange(source.num_objects, dtype=np.int64)
    else:
        if class_id not in source.class_ids:
            raise ValueError(f"class {class_id!r} not in {source.name} ({source.class_ids})")
        k = source.class_ids.index(class_id)
        start = int(source.offsets[k])
        objects = np.arange(start, start + int(source.counts[k]), dtype=np.int64)
    if max_objects < 0:
        raise ValueError(f"max_objects must be >= 0, got {max_objects}")
    if max_objects:
        objects = objects[:max_objects]
    all_objects = np.repeat(objects, NUM_VIEWS)
    all_views = np.tile(np.arange(NUM_VIEWS, dtype=np.int32), objects.shape[0])
    for start in range(0, all_objects.shape[0], batch_size):
        obj = all_objects[start : start + batch_size]
        views = all_views[start : start + batch_size]
        unique, inverse = np.unique(obj, return_inverse=True)
        yield {
            "images": to_float(source.images(obj, views)),
            "viewpoints": view_eyes(views),
            "voxels": source.voxels(unique)[inverse],
            "class_index": source.class_index[obj],
            "object": obj,
            "view": views,
        }
