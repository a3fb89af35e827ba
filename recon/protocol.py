"""The NMR / SoftRas single-view reconstruction protocol: the one home of its numbers.

Every object of the datasets is rendered from ``NUM_VIEWS`` = 24 views: view ``k`` looks at the
origin from distance ``DISTANCE`` = 2.732, elevation ``ELEVATION`` = 30 degrees and azimuth
``AZIMUTH_STEP * k`` = -15 k degrees, through a ``look_at`` perspective camera of viewing angle
``VIEWING_ANGLE`` = 15 degrees, at ``IMAGE_SIZE`` = 64 pixels square (RGBA). Its occupancy is a
``VOXEL_SIZE`` = 32 cubed grid. Networks train with the silhouette renderer
(:func:`silhouette_render_config`) and are scored by the voxel IoU against the reference numbers
of the original (:data:`SOFTRAS_IOU`). ``docs/reconstruction.md`` gives the whole protocol and
where each number comes from.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from softjax.render import RenderConfig

NUM_VIEWS = 24
IMAGE_SIZE = 64
VOXEL_SIZE = 32
DISTANCE = 2.732
ELEVATION = 30.0
AZIMUTH_STEP = -15.0  # view k is at azimuth -15 * k degrees
VIEWING_ANGLE = 15.0
# the training renderer's defaults (configs/softras.py takes them as the run's values)
SIGMA_VAL = 1e-4
GAMMA_VAL = 1e-4
DIST_EPS = 1e-10

# Voxel IoU (x100) of the original SoftRas (silhouette supervision, 250k steps) on the NMR test
# split, per class id in protocol order; the mean over the 13 classes is 62.3.
SOFTRAS_IOU: dict[str, float] = {
    "02691156": 65.6,
    "02828884": 49.8,
    "02933112": 69.0,
    "02958343": 74.2,
    "03001627": 52.9,
    "03211117": 60.6,
    "03636649": 45.8,
    "03691459": 65.6,
    "04090263": 68.7,
    "04256520": 68.1,
    "04379243": 46.2,
    "04401088": 82.3,
    "04530566": 61.0,
}
SOFTRAS_MEAN_IOU = 62.3


def view_azimuths(views: Any) -> np.ndarray:
    """Azimuths in degrees (float32, shape of ``views``) of the protocol's views ``0..23``."""
    return np.asarray(views, np.float32) * np.float32(AZIMUTH_STEP)


def view_eyes(views: Any) -> np.ndarray:
    """Camera positions ``[..., 3]`` float32 of views ``views`` (int array, values 0..23).

    Same formula as :func:`softjax.get_points_from_angles` (``(d cos e sin a, d sin e,
    -d cos e cos a)``) with ``d = DISTANCE``, ``e = ELEVATION``, ``a = AZIMUTH_STEP * view``,
    computed in NumPy so data loading does not touch the accelerator.
    """
    a = np.deg2rad(view_azimuths(views).astype(np.float64))
    e = np.deg2rad(ELEVATION)
    d = DISTANCE
    eyes = np.stack(
        [d * np.cos(e) * np.sin(a), np.full_like(a, d * np.sin(e)), -d * np.cos(e) * np.cos(a)],
        -1,
    )
    return eyes.astype(np.float32)


def silhouette_render_config(**overrides: Any) -> RenderConfig:
    """SoftRas's training renderer: ``look_at``, viewing angle 15 degrees, 64 pixels, hard
    colour aggregation, no lighting. ``overrides`` replace fields (e.g. ``sigma_val``,
    ``image_size`` or ``backend`` from a run's config)."""
    base = RenderConfig(
        image_size=IMAGE_SIZE,
        camera_mode="look_at",
        viewing_angle=VIEWING_ANGLE,
        sigma_val=SIGMA_VAL,
        gamma_val=GAMMA_VAL,
        dist_eps=DIST_EPS,
        aggr_func_rgb="hard",
        lighting=False,
    )
    return base.replace(**overrides)


def color_render_config(**overrides: Any) -> RenderConfig:
    """The shading variant's renderer: the silhouette renderer, lit, with softmax colours."""
    return silhouette_render_config(aggr_func_rgb="softmax", lighting=True).replace(**overrides)
