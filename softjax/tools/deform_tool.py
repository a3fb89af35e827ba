"""``softjax deform``: fit a template sphere to multi-view silhouettes (SoftRas's demo_deform).

The mesh is the template (scaled by 0.5) deformed by per-vertex offsets in logit space plus a
centroid: ``v = sign(b) sigmoid(logit(|b|) + offset)``, then pushed by ``c = tanh(centre)``
(positive coordinates scaled by 1 - c, negative by 1 + c, plus c). Adam (lr 0.01, betas 0.5,
0.99) on silhouette IoU + 0.03 Laplacian + 0.0003 flatten; the demos' renderer
(:mod:`softjax.tools.demo_setup`) without lighting.
"""

from __future__ import annotations

import argparse
import functools
import os
import time

import imageio.v2 as imageio
import jax
import jax.numpy as jnp
import numpy as np
import optax
from tqdm import tqdm

from softjax.io import load_obj, save_obj
from softjax.losses import flatten_loss, iou_loss, laplacian_loss
from softjax.mesh import Mesh, deform_vertices, icosphere
from softjax.render import RenderConfig, render
from softjax.tools.default_meshes import target_shape
from softjax.tools.demo_setup import DISTANCE, ELEVATION, demo_config
from softjax.transform import get_points_from_angles


def add_arguments(p: argparse.ArgumentParser) -> None:
    """Adds the ``deform`` tool's options to the (sub)parser ``p``."""
    p.add_argument("--images", help="uint8 [N, 4, S, S] RGBA silhouettes, channels first (.npy)")
    p.add_argument("--cameras", help="[N, 3] (distance, elevation, azimuth in degrees) (.npy)")
    p.add_argument("--template", help="template OBJ (default: icosphere with 642 vertices)")
    p.add_argument("--out", default="deform_out", help="output folder")
    p.add_argument("--iterations", type=int, default=150)
    p.add_argument("--batch-size", type=int, default=0, help="views per step (0 = all)")
    p.add_argument("--snapshot-every", type=int, default=20)
    p.add_argument("--seed", type=int, default=0)


def silhouette_config(image_size: int) -> RenderConfig:
    """The demo's renderer (:func:`~softjax.tools.demo_setup.demo_config`) without lighting,
    ``image_size x image_size``."""
    return demo_config(image_size, lighting=False)


def check_data(images: np.ndarray, cameras: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Validates the demo data format.

    Args:
      images: ``[N, 4, S, S]`` RGBA, channels first, uint8 (or float in [0, 1]).
      cameras: ``[N, 3]`` (distance, elevation, azimuth in degrees).

    Returns:
      float32 silhouettes (the alpha channel) ``[N, S, S]`` in [0, 1] and float32 cameras
      ``[N, 3]``. Raises ValueError naming what is wrong.
    """
    if images.ndim != 4 or images.shape[1] != 4:
        raise ValueError(
            f"images must be RGBA channels-first [N, 4, S, S], got shape {images.shape}"
            + (" (channels last? transpose to [N, 4, S, S])" if images.shape[-1] == 4 else "")
        )
    if images.shape[2] != images.shape[3]:
        raise ValueError(f"images must be square, got {images.shape[2]}x{images.shape[3]}")
    if cameras.ndim != 2 or cameras.shape[1] != 3:
        raise ValueError(
            f"cameras must be [N, 3] (distance, elevation, azimuth), got shape {cameras.shape}"
        )
    if images.shape[0] != cameras.shape[0]:
        raise ValueError(
            f"images and cameras disagree: {images.shape[0]} images but {cameras.shape[0]} cameras"
        )
    if images.dtype == np.uint8:
        alpha = images[:, 3].astype(np.float32) / 255.0
    elif np.issubdtype(images.dtype, np.floating) and 0 <= images.min() and images.max() <= 1:
        alpha = images[:, 3].astype(np.float32)
    else:
        raise ValueError(f"images must be uint8 (or float in [0, 1]), got dtype {images.dtype}")
    return alpha, cameras.astype(np.float32)


def synthetic_data(n_views: int = 24, image_size: int = 64) -> tuple[np.ndarray, np.ndarray]:
    """Silhouettes of :func:`~softjax.tools.default_meshes.target_shape`, in the original demo
    data's format.

    Args:
      n_views: ``N`` cameras around the shape (elevation alternating 30 and -20 degrees).
      image_size: ``S``.

    Returns:
      uint8 RGBA images ``[N, 4, S, S]`` (channels first) and float32 cameras ``[N, 3]``
      (distance, elevation, azimuth in degrees).
    """
    mesh = target_shape()
    az = np.arange(n_views) * (360.0 / n_views)
    el = np.where(np.arange(n_views) % 2 == 0, ELEVATION, -20.0)
    cams = np.stack([np.full(n_views, DISTANCE), el, az], -1).astype(np.float32)
    cfg = silhouette_config(image_size)
    eyes = get_points_from_angles(cams[:, 0], cams[:, 1], cams[:, 2])
    imgs = jax.vmap(lambda e: render(mesh, cfg, eye=e))(eyes)[:, 0]
    rgba = (np.clip(np.asarray(imgs), 0, 1) * 255).round().astype(np.uint8)
    return rgba.transpose(0, 3, 1, 2), cams


class Deformer:
    """The deformation model: parameters ``{'displace': [V, 3], 'center': [3]}``."""

    def __init__(self, template: Mesh):
        self.base = template.vertices[0] * 0.5
        self.faces = template.faces[0]
        self.laplacian = laplacian_loss(np.asarray(self.faces), template.num_vertices)
        self.flatten = flatten_loss(np.asarray(self.faces))

    def init(self) -> dict:
        return {"displace": jnp.zeros_like(self.base), "center": jnp.zeros(3, self.base.dtype)}

    def vertices(self, params: dict) -> jax.Array:
        return deform_vertices(self.base, params["displace"], params["center"])

    def mesh(self, params: dict) -> Mesh:
        return Mesh.create(self.vertices(params)[None], self.faces[None])

    def silhouettes(self, config: RenderConfig, params: dict, eyes) -> jax.Array:
        """Alpha ``[N, S, S]`` of the mesh seen from ``eyes`` ``[N, 3]``."""
        mesh = self.mesh(params)
        return jax.vmap(lambda e: render(mesh, config, eye=e)[0, ..., 3])(eyes)

    def loss(self, config: RenderConfig, params: dict, eyes, target) -> jax.Array:
        """IoU of the silhouettes against ``target`` ``[N, S, S]`` + the regularisers."""
        v = self.vertices(params)[None]
        pred = self.silhouettes(config, params, eyes)
        lap = self.laplacian(v).mean()
        flat = self.flatten(v).mean()
        return iou_loss(pred, target) + 0.03 * lap + 0.0003 * flat

    @staticmethod
    def optimizer() -> optax.GradientTransformation:
        return optax.adam(0.01, b1=0.5, b2=0.99)

    def step(self, optimizer, config: RenderConfig, params: dict, state, eyes, target):
        """One Adam step on the views ``eyes``: ``(params, state, loss)``."""
        loss, grads = jax.value_and_grad(self.loss, argnums=1)(config, params, eyes, target)
        updates, state = optimizer.update(grads, state, params)
        return optax.apply_updates(params, updates), state, loss


def run(args: argparse.Namespace) -> float:
    """Fits the template to the silhouettes, writes snapshots, ``deform.gif`` and ``fitted.obj``
    to ``args.out``; returns the final mean silhouette IoU."""
    t_start = time.perf_counter()
    if (args.images is None) != (args.cameras is None):
        raise ValueError("give both --images and --cameras, or neither (built-in shape)")
    if args.images is None:
        images, cameras = synthetic_data()
        print(f"no data given: fitting {len(images)} silhouettes of a built-in shape")
    else:
        images, cameras = np.load(args.images), np.load(args.cameras)
    target, cameras = check_data(images, cameras)
    n, size = target.shape[0], target.shape[1]
    template = load_obj(args.template) if args.template else icosphere(3)
    model = Deformer(template)
    config = silhouette_config(size)
    eyes = get_points_from_angles(cameras[:, 0], cameras[:, 1], cameras[:, 2])
    target = jnp.asarray(target)
    batch = args.batch_size if args.batch_size > 0 else n

    optimizer = model.optimizer()
    step = jax.jit(functools.partial(model.step, optimizer, config))
    params = model.init()
    state = optimizer.init(params)

    os.makedirs(args.out, exist_ok=True)
    view = jax.jit(lambda p: model.silhouettes(config, p, eyes[:1])[0])
    frames = []
    rng = np.random.default_rng(args.seed)
    bar = tqdm(range(args.iterations), desc="deform", unit="it")
    for it in bar:
        idx = rng.choice(n, batch, replace=False) if batch < n else np.arange(n)
        params, state, loss = step(params, state, eyes[idx], target[idx])
        bar.set_postfix(loss=f"{float(loss):.4f}")
        if it % args.snapshot_every == 0 or it == args.iterations - 1:
            sil = np.asarray(view(params))
            pair = np.concatenate([sil, np.asarray(target[0])], 1)
            frame = (np.clip(pair, 0, 1) * 255).astype(np.uint8)
            frames.append(frame)
            imageio.imwrite(os.path.join(args.out, f"iter_{it:05d}.png"), frame)
    imageio.mimsave(os.path.join(args.out, "deform.gif"), frames, duration=0.1, loop=0)
    mesh = model.mesh(params)
    save_obj(os.path.join(args.out, "fitted.obj"), mesh)
    pred = np.concatenate(
        [np.asarray(model.silhouettes(config, params, eyes[i : i + 24])) for i in range(0, n, 24)]
    )
    ious = silhouette_iou(pred, np.asarray(target))
    print(
        f"final mean silhouette IoU {ious.mean():.4f} over {n} views "
        f"({args.iterations} iterations, {time.perf_counter() - t_start:.1f} s); "
        f"wrote {args.out}/fitted.obj, deform.gif"
    )
    return float(ious.mean())


def silhouette_iou(pred: np.ndarray, target: np.ndarray, threshold: float = 0.5) -> np.ndarray:
    """Per-view IoU of binarised silhouettes ``[N, S, S]`` -> ``[N]``."""
    a, b = pred > threshold, target > threshold
    inter = (a & b).sum((1, 2))
    union = (a | b).sum((1, 2))
    return np.where(union > 0, inter / np.maximum(union, 1), 1.0)
