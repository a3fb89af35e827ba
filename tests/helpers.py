"""Scene generators, option sets and small helpers shared by the tests (``from helpers import
...``; the fixtures live in ``conftest.py``)."""

from __future__ import annotations

import contextlib
import itertools

import jax
import numpy as np

import softjax as sj
from bench.gpu_check import mode_kwargs  # noqa: F401 (the comparisons' options, one home)

DIST = ("hard", "barycentric", "euclidean")
RGB = ("hard", "softmax")
ALPHA = ("hard", "sum", "prod")
TEX = ("surface", "vertex")
MODES = list(itertools.product(DIST, RGB, ALPHA, TEX))

# Small tiling that forces several binning passes, several tile groups (with padding),
# several face windows per tile and several gradient steps (the last one part full) on the
# tiny test images.
SMALL_TILING = sj.TilingConfig(tile=4, group=3, window=3, capacity=37, grad_pairs=5)


def random_scene(seed: int, batch: int = 2, faces: int = 12, res: int = 2):
    """Random overlapping triangles of both windings, some partly behind near (z < 1) and some
    beyond far (z > 6), with surface textures ``[B, F, res*res, 3]`` and vertex colours."""
    rng = np.random.default_rng(seed)
    centre = rng.uniform(-0.8, 0.8, (batch, faces, 1, 2))
    xy = centre + rng.normal(0.0, 0.3, (batch, faces, 3, 2))
    z = rng.uniform(0.5, 8.0, (batch, faces, 3, 1))
    fv = np.concatenate([xy, z], -1)
    tex = rng.uniform(0.0, 1.0, (batch, faces, res * res, 3))
    vtex = rng.uniform(0.0, 1.0, (batch, faces, 3, 3))
    return fv, tex, vtex


def weighted_loss(kw, weights, backend, **options):
    """``sum(soft_rasterize(...) * weights)`` as a function of the face vertices, textures and
    the traced scalars (sigma, gamma, near, far, eps); ``options``: ``tiling=`` or
    ``pallas_config=``."""

    def loss(fv, tex, sigma, gamma, near, far, eps):
        img = sj.soft_rasterize(
            fv,
            tex,
            backend=backend,
            sigma_val=sigma,
            gamma_val=gamma,
            near=near,
            far=far,
            eps=eps,
            **options,
            **kw,
        )
        return (img * weights).sum()

    return loss


@contextlib.contextmanager
def x64():
    with jax.enable_x64(True):
        yield


def tiny_config(data_dir: str, **changes):
    """``configs/tiny.py`` reading the dataset in ``data_dir``, with ``changes`` applied."""
    from configs import tiny

    config = tiny.get_config()
    config.data_dir = data_dir
    for k, v in changes.items():
        config[k] = v
    return config
