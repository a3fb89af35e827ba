"""TFDS builder ``synthetic_shapes``: procedural objects rendered exactly like ``shapenet_nmr``.

No download: for each of the 13 NMR classes and each split, ``count`` objects come from
:func:`recon.data.class_shapes.make_dataset_objects` (seeded by ``(seed, split, class)``, so
splits never share objects), are rendered with softjax from the 24 protocol views of
:mod:`recon.protocol` (``look_at`` camera, viewing angle 15 degrees, eye
``get_points_from_angles(2.732, 30, -15 k)``, 64 x 64 RGBA: the silhouette renderer with hard
colour aggregation, lit by the default lights) and voxelized with ``softjax.voxelize(..., 32)``
(already in the NMR axis order). Features, example order (class by class, objects in generation
order) and metadata (``info.metadata["object_counts"]``) are those of ``shapenet_nmr`` (see
:mod:`recon.data.tfds_shapenet_nmr`), so the same loaders read both.

Sizes and seed are builder-config fields; :func:`make_builder` gives each combination its own
config name (and so its own cache directory under ``data_dir``)::

    builder = prepare(data_dir, train=40, val=5, test=10, seed=0)  # once; later calls reuse it
    test = builder.as_data_source(split="test")
"""

from __future__ import annotations

import dataclasses
import functools
from pathlib import Path
from typing import Any

import numpy as np
import tensorflow_datasets as tfds

from recon.data.classes import CLASS_IDS
from recon.data.tfds_shapenet_nmr import (
    SPLITS,
    CodePathMixin,
    check_classes,
    nmr_dataset_info,
    nmr_example,
    prepare_builder,
)
from recon.protocol import (
    DISTANCE,
    ELEVATION,
    NUM_VIEWS,
    VOXEL_SIZE,
    silhouette_render_config,
    view_azimuths,
)

DEFAULT_COUNTS: dict[str, int] = {"train": 40, "val": 5, "test": 10}
DEFAULT_SEED = 0


@dataclasses.dataclass
class SyntheticShapesConfig(tfds.core.BuilderConfig):
    """Config of ``synthetic_shapes``: objects per class for each split, the seed, the classes."""

    train: int = DEFAULT_COUNTS["train"]
    val: int = DEFAULT_COUNTS["val"]
    test: int = DEFAULT_COUNTS["test"]
    seed: int = DEFAULT_SEED
    classes: tuple[str, ...] = CLASS_IDS

    def counts(self) -> dict[str, int]:
        return {"train": self.train, "val": self.val, "test": self.test}


def config_name(
    train: int, val: int, test: int, seed: int, classes: tuple[str, ...] = CLASS_IDS
) -> str:
    """``'default'`` for the default sizes, else e.g. ``'tr40_va5_te10_s0'`` (+ class ids)."""
    if (train, val, test, seed, classes) == (
        DEFAULT_COUNTS["train"],
        DEFAULT_COUNTS["val"],
        DEFAULT_COUNTS["test"],
        DEFAULT_SEED,
        CLASS_IDS,
    ):
        return "default"
    name = f"tr{train}_va{val}_te{test}_s{seed}"
    if classes != CLASS_IDS:
        name += "_c" + "_".join(classes)
    return name


# Meshes are padded to these multiples so that a handful of jit compilations serve all objects.
PAD_FACES = 128
PAD_VERTICES = 128
# Padding geometry: one tiny triangle far below the object, outside every protocol view and
# outside the voxel grid, so it changes neither images nor voxels (checked in the tests).
_PAD_TRIANGLE = np.array([[0.0, -50.0, 0.0], [0.01, -50.0, 0.0], [0.0, -50.0, 0.01]], np.float32)


def _round_up(n: int, multiple: int) -> int:
    return max(multiple, -(-n // multiple) * multiple)


def pad_mesh(mesh):
    """Pads a batch-1 surface-textured mesh to ``PAD_VERTICES`` / ``PAD_FACES`` multiples with
    copies of an invisible triangle (see ``_PAD_TRIANGLE``); returns NumPy-backed arrays."""
    import softjax

    v = np.asarray(mesh.vertices, np.float32)[0]
    f = np.asarray(mesh.faces, np.int32)[0]
    t = np.asarray(mesh.textures, np.float32)[0]
    nv, nf = _round_up(v.shape[0] + 3, PAD_VERTICES), _round_up(f.shape[0] + 1, PAD_FACES)
    pad_v = np.broadcast_to(_PAD_TRIANGLE[2], (nv - v.shape[0] - 3, 3))
    v = np.concatenate([v, _PAD_TRIANGLE, pad_v])
    base = mesh.vertices.shape[1]
    pad_f = np.broadcast_to(np.arange(base, base + 3, dtype=np.int32), (nf - f.shape[0], 3))
    f = np.concatenate([f, pad_f])
    t = np.concatenate([t, np.zeros((nf - t.shape[0],) + t.shape[1:], np.float32)])
    return softjax.Mesh(
        vertices=v[None], faces=f[None], textures=t[None], texture_type=mesh.texture_type
    )


@functools.cache
def _dataset_programs():
    """The jitted ``(render_at_azimuths, voxelize_grid)`` that make an example (compiled once)."""
    import jax
    import jax.numpy as jnp

    import softjax

    # The silhouette renderer, lit: the dataset images carry shaded colour as well as alpha.
    config = silhouette_render_config(lighting=True)

    @jax.jit
    def render_at_azimuths(mesh, azimuths):
        # One mesh seen from len(azimuths) protocol eyes: repeating the mesh along the batch
        # axis is about 3x faster on CPU than jax.vmap over the eyes (same results).
        eyes = softjax.get_points_from_angles(DISTANCE, ELEVATION, azimuths)
        tiled = jax.tree.map(lambda x: jnp.repeat(x, azimuths.shape[0], axis=0), mesh)
        return softjax.render(tiled, config, eye=eyes)

    @jax.jit
    def voxelize_grid(face_vertices):
        return softjax.voxelize(face_vertices, VOXEL_SIZE)

    return render_at_azimuths, voxelize_grid


def render_object(mesh, pad: bool = True) -> tuple[np.ndarray, np.ndarray]:
    """Renders one mesh (batch 1) like the NMR dataset.

    Args:
      mesh: :class:`softjax.Mesh` with batch size 1.
      pad: pad the mesh with invisible faces to a multiple of 128 faces / vertices first (fewer
        recompilations; same output).

    Returns:
      images ``[24, 64, 64, 4]`` uint8 RGBA (lit colour + alpha, channels last, view k at
      azimuth -15k degrees, ``round(255 x)``) and voxels ``[32, 32, 32]`` bool (NMR axis order).
    """
    if mesh.vertices.shape[0] != 1:
        raise ValueError(f"render_object expects one mesh, got batch {mesh.vertices.shape[0]}")
    if pad:
        mesh = pad_mesh(mesh)
    render_at_azimuths, voxelize_grid = _dataset_programs()
    images = np.asarray(render_at_azimuths(mesh, view_azimuths(np.arange(NUM_VIEWS))))
    images = np.clip(np.round(images * 255.0), 0, 255).astype(np.uint8)
    occupancy = np.asarray(voxelize_grid(mesh.face_vertices))[0]
    return images, occupancy


def object_seed(seed: int, split: str, class_id: str) -> int:
    """The seed passed to ``make_dataset_objects`` for one (split, class)."""
    state = np.random.SeedSequence([seed, SPLITS.index(split), int(class_id)]).generate_state(1)
    return int(state[0])


class SyntheticShapes(CodePathMixin, tfds.core.GeneratorBasedBuilder):
    """Procedural shapes of the 13 NMR classes, rendered and voxelized like ``shapenet_nmr``."""

    VERSION = tfds.core.Version("1.1.0")
    RELEASE_NOTES = {
        "1.0.0": "Initial release.",
        "1.1.0": "Voxels from softjax.voxelize with SoftRas's exact rule (grid-line crossings).",
    }
    BUILDER_CONFIGS = [SyntheticShapesConfig(name="default", description="Default sizes.")]
    DEFAULT_CONFIG_NAME = "default"

    def _info(self) -> tfds.core.DatasetInfo:
        return nmr_dataset_info(self, description=__doc__)

    def _split_generators(self, dl_manager):
        config = self.builder_config
        classes = check_classes(config.classes)
        counts = config.counts()
        self.info.metadata["object_counts"] = {
            split: {c: int(counts[split]) for c in classes} for split in SPLITS
        }
        return {split: self._generate_examples(split, classes) for split in SPLITS}

    def _generate_examples(self, split: str, classes: tuple[str, ...]):
        from tqdm.auto import tqdm

        from recon.data import class_shapes

        config = self.builder_config
        count = config.counts()[split]
        with tqdm(total=count * len(classes), desc=f"Rendering {split}", unit="obj") as bar:
            for class_id in classes:
                meshes = class_shapes.make_dataset_objects(
                    class_id, count, object_seed(config.seed, split, class_id)
                )
                for i, mesh in enumerate(meshes):
                    images, voxels = render_object(mesh)
                    bar.update(1)
                    yield nmr_example(class_id, i, images, voxels)


def make_builder(
    data_dir: str | Path | None = None,
    *,
    train: int = DEFAULT_COUNTS["train"],
    val: int = DEFAULT_COUNTS["val"],
    test: int = DEFAULT_COUNTS["test"],
    seed: int = DEFAULT_SEED,
    classes: Any = CLASS_IDS,
    **kwargs: Any,
) -> SyntheticShapes:
    """The ``synthetic_shapes`` builder with ``train`` / ``val`` / ``test`` objects per class,
    ``seed`` and ``classes``. ``kwargs`` go to the builder (default file_format array_record)."""
    for name, value in (("train", train), ("val", val), ("test", test)):
        if not isinstance(value, int | np.integer) or value < 0:
            raise ValueError(f"{name} must be a non-negative int, got {value!r}")
    classes = check_classes(classes)
    name = config_name(int(train), int(val), int(test), int(seed), classes)
    config = (
        name
        if name == "default"
        else SyntheticShapesConfig(
            name=name,
            train=int(train),
            val=int(val),
            test=int(test),
            seed=int(seed),
            classes=classes,
            description="Custom sizes.",
        )
    )
    kwargs.setdefault("file_format", "array_record")
    return SyntheticShapes(
        config=config, data_dir=None if data_dir is None else str(data_dir), **kwargs
    )


def prepare(data_dir: str | Path | None = None, **config: Any) -> SyntheticShapes:
    """Builds ``synthetic_shapes`` into ``data_dir`` (once; later calls reuse it; see
    :func:`~recon.data.tfds_shapenet_nmr.prepare_builder`) and returns the builder. ``config``:
    the keyword arguments of :func:`make_builder` (``train``, ``val``, ``test``, ``seed``,
    ``classes``)."""
    return prepare_builder(make_builder(data_dir, **config))
