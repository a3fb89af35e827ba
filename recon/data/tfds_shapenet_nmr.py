"""TFDS builder ``shapenet_nmr``: the ShapeNet renderings of the NMR / SoftRas protocol.

The dataset is the ``mesh_reconstruction`` archive distributed with the Neural Mesh Renderer
(Kato et al. 2018) and reused by SoftRas (Liu et al. 2019): for each of 13 ShapeNet classes and
each split (train / val / test) there are two files in one directory:

* ``{class_id}_{split}_images.npz``: one uint8 array, reshapeable to ``[N * 24, 4, 64, 64]``
  (24 RGBA views per object, channels first; object-major, view index inner);
* ``{class_id}_{split}_voxels.npz``: one array ``[N, 32, 32, 32]`` of 0 / 1 occupancies.

View ``k`` (0..23) is seen from ``get_points_from_angles(2.732, 30, -15 * k)`` with a ``look_at``
perspective camera of viewing angle 15 degrees (the protocol's numbers live in
:mod:`recon.protocol`, e.g. :func:`recon.protocol.view_eyes`; ``docs/reconstruction.md`` describes
the protocol).

This builder stores each object as one example (``images`` channels last ``[24, 64, 64, 4]``
uint8, ``voxels`` ``[32, 32, 32]`` bool, ``class_id``, ``class_name``, ``label`` (index into
:data:`CLASS_IDS`, the same for every config), ``object_index`` (index within its class and
split, i.e. the row in the original npz)). Examples are written in the original order (class by
class in :data:`CLASS_IDS` order, objects in npz order: ``disable_shuffling=True``), in the
``array_record`` format, so the data is read back with ``builder.as_data_source()`` without
TensorFlow::

    builder = make_builder(data_dir="~/tensorflow_datasets")
    builder.download_and_prepare(
        file_format="array_record",
        download_config=tfds.download.DownloadConfig(manual_dir="/path/to/mesh_reconstruction"),
    )
    train = builder.as_data_source(split="train")  # random access, NumPy values

The per-class object counts of every split are stored in ``builder.info.metadata
["object_counts"][split][class_id]`` so that loaders can index objects without decoding them.
"""

from __future__ import annotations

import dataclasses
import sys
from pathlib import Path
from typing import Any, TypeVar

import numpy as np
import tensorflow_datasets as tfds
from etils import epath

from recon.data.classes import CLASS_IDS, CLASS_NAMES
from recon.protocol import IMAGE_SIZE, NUM_VIEWS, VOXEL_SIZE

SPLITS: tuple[str, ...] = ("train", "val", "test")

MANUAL_DOWNLOAD_INSTRUCTIONS = """\
This dataset is not downloaded automatically. Get the NMR / SoftRas "mesh_reconstruction"
dataset (ShapeNet renderings, 13 classes), e.g.
  * Neural Mesh Renderer's mesh reconstruction example: https://github.com/hiroharu-kato/
    mesh_reconstruction (download_dataset.sh points to the archive
    mesh_reconstruction_dataset.zip on Google Drive,
    https://drive.google.com/open?id=1fY9IWK7yEfLOmS3wUgeXM3NIivhoGhsg), or
  * SoftRas: https://github.com/ShichenLiu/SoftRas (data/download_dataset.sh, same files).
Unzip it and put the 78 files {class_id}_{split}_images.npz and {class_id}_{split}_voxels.npz
(13 class ids x splits train / val / test) directly into the manual directory (by default
<data_dir>/downloads/manual; or pass
tfds.download.DownloadConfig(manual_dir=DIR) to download_and_prepare).
"""


class MissingFilesError(FileNotFoundError):
    """Raised when dataset files are missing; the message lists them, the directory and how to
    get them. Attributes: ``directory`` (Path or None) and ``missing`` (list of file names)."""

    def __init__(self, directory: Path | None, missing: list[str], instructions: str):
        self.directory = directory
        self.missing = list(missing)
        shown = "\n".join(f"  {m}" for m in self.missing[:100])
        more = f"\n  ... and {len(self.missing) - 100} more" if len(self.missing) > 100 else ""
        super().__init__(
            f"{len(self.missing)} file(s) of the shapenet_nmr dataset are missing from the "
            f"manual directory {directory}:\n{shown}{more}\n\n{instructions}"
        )


def nmr_features() -> tfds.features.FeaturesDict:
    """Features shared by ``shapenet_nmr`` and ``synthetic_shapes`` (one example = one object).

    ``images``: ``[24, 64, 64, 4]`` uint8 RGBA, channels last, view k at azimuth -15k degrees
    (zlib-compressed on disk); ``voxels``: ``[32, 32, 32]`` bool in the NMR axis order;
    ``class_id`` / ``class_name``: text (bytes when read back); ``label``: ClassLabel over all 13
    :data:`CLASS_IDS`; ``object_index``: int32 index within (class, split).
    """
    return tfds.features.FeaturesDict(
        {
            "images": tfds.features.Tensor(
                shape=(NUM_VIEWS, IMAGE_SIZE, IMAGE_SIZE, 4), dtype=np.uint8, encoding="zlib"
            ),
            "voxels": tfds.features.Tensor(
                shape=(VOXEL_SIZE, VOXEL_SIZE, VOXEL_SIZE), dtype=np.bool_, encoding="zlib"
            ),
            "class_id": tfds.features.Text(),
            "class_name": tfds.features.Text(),
            "label": tfds.features.ClassLabel(names=list(CLASS_IDS)),
            "object_index": tfds.features.Scalar(dtype=np.int32),
        }
    )


def nmr_example(
    class_id: str, object_index: int, images: np.ndarray, voxels: np.ndarray
) -> tuple[str, dict[str, Any]]:
    """One example of :func:`nmr_features` and its key ``'<class_id>_<object_index:06d>'``.

    Args:
      class_id: one of :data:`CLASS_IDS` (gives ``class_name`` and ``label``).
      object_index: index of the object within its (class, split).
      images: ``[24, 64, 64, 4]`` uint8 RGBA, channels last.
      voxels: ``[32, 32, 32]`` bool.
    """
    return f"{class_id}_{object_index:06d}", {
        "images": images,
        "voxels": voxels,
        "class_id": class_id,
        "class_name": CLASS_NAMES[class_id],
        "label": CLASS_IDS.index(class_id),
        "object_index": object_index,
    }


def nmr_dataset_info(builder: tfds.core.DatasetBuilder, **kwargs: Any) -> tfds.core.DatasetInfo:
    """The ``DatasetInfo`` of an NMR-layout builder: :func:`nmr_features`, examples in
    generation order (``disable_shuffling``), an empty metadata dict that ``_split_generators``
    fills with ``object_counts``. ``kwargs`` (``description``, ``homepage``) go to the info."""
    return tfds.core.DatasetInfo(
        builder=builder,
        features=nmr_features(),
        supervised_keys=None,
        disable_shuffling=True,
        metadata=tfds.core.MetadataDict(),
        **kwargs,
    )


def check_classes(classes: Any) -> tuple[str, ...]:
    """Validates a subset of :data:`CLASS_IDS`; returns it in protocol order."""
    classes = tuple(str(c) for c in classes)
    unknown = [c for c in classes if c not in CLASS_NAMES]
    if unknown or not classes or len(set(classes)) != len(classes):
        raise ValueError(
            f"classes must be distinct ids among {list(CLASS_IDS)}, got {list(classes)}"
        )
    return tuple(c for c in CLASS_IDS if c in classes)


@dataclasses.dataclass
class ShapenetNmrConfig(tfds.core.BuilderConfig):
    """Config of ``shapenet_nmr``: ``classes``, the class ids to include (default all 13; the
    ``label`` feature still indexes all 13 :data:`CLASS_IDS`)."""

    classes: tuple[str, ...] = CLASS_IDS


def _config_name(classes: tuple[str, ...]) -> str:
    return "all" if classes == CLASS_IDS else "classes_" + "_".join(classes)


def images_file(class_id: str, split: str) -> str:
    return f"{class_id}_{split}_images.npz"


def voxels_file(class_id: str, split: str) -> str:
    return f"{class_id}_{split}_voxels.npz"


def _load_single_array(path: Path) -> np.ndarray:
    """The one array stored in an npz file (NMR stores a single unnamed array)."""
    with np.load(path) as npz:
        if len(npz.files) != 1:
            raise ValueError(f"{path}: expected one array in the npz, found keys {npz.files}")
        return npz[npz.files[0]]


def load_class_split(directory: Path, class_id: str, split: str) -> tuple[np.ndarray, np.ndarray]:
    """Reads one class / split of the original files.

    Returns:
      images ``[N, 24, 64, 64, 4]`` uint8 (channels last) and voxels ``[N, 32, 32, 32]`` bool.
    """
    directory = Path(directory)
    images = _load_single_array(directory / images_file(class_id, split))
    voxels = _load_single_array(directory / voxels_file(class_id, split))
    if voxels.ndim != 4 or voxels.shape[1:] != (VOXEL_SIZE,) * 3:
        raise ValueError(
            f"{directory / voxels_file(class_id, split)}: expected "
            f"[N, {VOXEL_SIZE}, {VOXEL_SIZE}, {VOXEL_SIZE}], got {voxels.shape}"
        )
    n = voxels.shape[0]
    per_object = NUM_VIEWS * 4 * IMAGE_SIZE * IMAGE_SIZE
    if images.dtype != np.uint8 or images.size != n * per_object:
        raise ValueError(
            f"{directory / images_file(class_id, split)}: expected uint8 reshapeable to "
            f"[{n} * {NUM_VIEWS}, 4, {IMAGE_SIZE}, {IMAGE_SIZE}] for {n} voxel grids, got "
            f"{images.dtype} {images.shape}"
        )
    images = images.reshape(n, NUM_VIEWS, 4, IMAGE_SIZE, IMAGE_SIZE).transpose(0, 1, 3, 4, 2)
    if voxels.dtype == np.bool_ or np.issubdtype(voxels.dtype, np.integer):
        voxels = voxels != 0
    else:
        voxels = voxels > 0.5
    return images, voxels


class CodePathMixin:
    """Works around TFDS 4.9.x needing ``importlib_resources`` on Python >= 3.9.

    ``DatasetBuilder.code_path`` (used to look for a ``checksums.tsv`` next to the builder) does
    ``isinstance(path, importlib_resources.abc.Traversable)`` for builders defined in a package,
    but TFDS only declares the ``importlib_resources`` dependency for Python < 3.9, so preparing
    any packaged builder fails with ``ModuleNotFoundError: importlib_resources``. Our builders
    have no checksums file; returning this module's path skips that check.
    """

    @tfds.core.utils.classproperty
    @classmethod
    def code_path(cls) -> epath.Path:
        return epath.Path(sys.modules[cls.__module__].__file__)


class ShapenetNmr(CodePathMixin, tfds.core.GeneratorBasedBuilder):
    """ShapeNet renderings and voxels of the NMR / SoftRas single-view reconstruction protocol.

    Manual download (see :data:`MANUAL_DOWNLOAD_INSTRUCTIONS`). One example per object; see the
    module docstring for the features and the order of examples.
    """

    VERSION = tfds.core.Version("1.0.0")
    RELEASE_NOTES = {"1.0.0": "Initial release."}
    MANUAL_DOWNLOAD_INSTRUCTIONS = MANUAL_DOWNLOAD_INSTRUCTIONS
    BUILDER_CONFIGS = [ShapenetNmrConfig(name="all", description="All 13 classes.")]
    DEFAULT_CONFIG_NAME = "all"

    def _info(self) -> tfds.core.DatasetInfo:
        return nmr_dataset_info(
            self,
            description=__doc__,
            homepage="https://github.com/hiroharu-kato/mesh_reconstruction",
        )

    @property
    def classes(self) -> tuple[str, ...]:
        return check_classes(self.builder_config.classes)

    def _manual_dir(self, dl_manager) -> Path | None:
        try:
            return Path(dl_manager.manual_dir)
        except (AssertionError, ValueError):
            # TFDS raises when the directory does not exist or is empty; report the files.
            path = getattr(dl_manager, "_manual_dir", None)
            return None if path is None else Path(path)

    def _split_generators(self, dl_manager):
        directory = self._manual_dir(dl_manager)
        names = [f(c, s) for s in SPLITS for c in self.classes for f in (images_file, voxels_file)]
        missing = [n for n in names if directory is None or not (directory / n).is_file()]
        if missing:
            raise MissingFilesError(directory, missing, MANUAL_DOWNLOAD_INSTRUCTIONS)
        counts: dict[str, dict[str, int]] = {}
        for split in SPLITS:
            counts[split] = {}
            for c in self.classes:
                with np.load(directory / voxels_file(c, split)) as npz:
                    counts[split][c] = int(npz[npz.files[0]].shape[0])
        self.info.metadata["object_counts"] = counts
        return {split: self._generate_examples(directory, split) for split in SPLITS}

    def _generate_examples(self, directory: Path, split: str):
        for class_id in self.classes:
            images, voxels = load_class_split(directory, class_id, split)
            for i in range(images.shape[0]):
                yield nmr_example(class_id, i, images[i], voxels[i])


def make_builder(
    data_dir: str | Path | None = None, classes: Any = CLASS_IDS, **kwargs: Any
) -> ShapenetNmr:
    """The ``shapenet_nmr`` builder for ``classes`` (default all 13; a subset gets its own
    config ``classes_<id>_<id>...`` and cache directory). ``kwargs`` go to the builder."""
    classes = check_classes(classes)
    name = _config_name(classes)
    config = (
        name
        if name == "all"
        else ShapenetNmrConfig(name=name, classes=classes, description="Subset of classes.")
    )
    kwargs.setdefault("file_format", "array_record")
    return ShapenetNmr(
        config=config, data_dir=None if data_dir is None else str(data_dir), **kwargs
    )


_BuilderT = TypeVar("_BuilderT", bound=tfds.core.DatasetBuilder)


def prepare_builder(builder: _BuilderT, manual_dir: str | Path | None = None) -> _BuilderT:
    """Builds ``builder``'s dataset as array_record unless it is already built, and returns the
    builder. ``manual_dir``: where a manual download lies (``shapenet_nmr``: the original npz
    files; default TFDS's ``<data_dir>/downloads/manual``)."""
    if not builder.is_prepared():
        builder.download_and_prepare(
            file_format="array_record",
            download_config=tfds.download.DownloadConfig(
                manual_dir=None if manual_dir is None else str(manual_dir)
            ),
        )
    return builder


def prepare(
    data_dir: str | Path | None = None,
    *,
    manual_dir: str | Path | None = None,
    classes: Any = CLASS_IDS,
) -> ShapenetNmr:
    """Builds ``shapenet_nmr`` for ``classes`` into ``data_dir`` (once; later calls reuse it)
    from the original npz files in ``manual_dir`` (see :func:`prepare_builder`), and returns the
    builder.

    Raises:
      MissingFilesError: when the dataset is not built yet and npz files are missing.
    """
    return prepare_builder(make_builder(data_dir, classes), manual_dir)
