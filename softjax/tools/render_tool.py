"""``softjax render [MESH.obj] --out DIR``: turntable GIF, sigma/gamma sweep GIF, textured OBJ."""

from __future__ import annotations

import argparse
import os
import time

import imageio.v2 as imageio
import jax
import jax.numpy as jnp
import numpy as np
from tqdm import tqdm

from softjax.batching import map_padded
from softjax.io import load_obj, save_obj
from softjax.mesh import Mesh
from softjax.render import RenderConfig, render
from softjax.tools.default_meshes import textured_blob
from softjax.tools.demo_setup import DISTANCE, ELEVATION, demo_config
from softjax.transform import get_points_from_angles


def add_arguments(p: argparse.ArgumentParser) -> None:
    """Adds the ``render`` tool's options to the (sub)parser ``p``."""
    p.add_argument("mesh", nargs="?", help="OBJ file (default: a textured mesh made in code)")
    p.add_argument("--out", required=True, help="output folder")
    p.add_argument("--image-size", type=int, default=256)
    p.add_argument("--texture-res", type=int, default=4, help="texels per face side (OBJ)")
    p.add_argument("--chunk", type=int, default=6, help="frames rendered per batch")


def turntable_config(image_size: int) -> RenderConfig:
    """Lit, sharp renders on white: :func:`~softjax.tools.demo_setup.demo_config` with
    ``dist_eps`` 1e-10, ``image_size x image_size``."""
    return demo_config(image_size, background_color=(1.0, 1.0, 1.0), dist_eps=1e-10)


def render_frames(
    mesh: Mesh, config: RenderConfig, eyes, sigmas, gammas, chunk: int, desc: str, progress=True
) -> list[np.ndarray]:
    """Renders ``mesh`` from ``N`` eyes, ``chunk`` frames per jitted call.

    Args:
      mesh: Mesh with batch size 1.
      config: the renderer settings (image size ``S``).
      eyes: ``[N, 3]`` float camera positions.
      sigmas, gammas: ``[N]`` float per-frame ``sigma_val`` / ``gamma_val``.
      chunk: frames per call (the last call is padded to ``chunk`` frames).
      desc: progress bar label.
      progress: show a progress bar.

    Returns:
      ``N`` uint8 RGB frames ``[S, S, 3]``.
    """
    fn = jax.jit(jax.vmap(lambda e, s, g: render(mesh, config, eye=e, sigma_val=s, gamma_val=g)))

    def bar(starts):
        return tqdm(starts, desc=desc, unit="batch", disable=not progress)

    chunks = map_padded(fn, [eyes, sigmas, gammas], chunk, progress=bar)
    return [
        (np.clip(im[..., :3], 0, 1) * 255).round().astype(np.uint8)
        for imgs in chunks
        for im in imgs[:, 0]
    ]


def run(args: argparse.Namespace) -> None:
    """Writes ``turntable.gif``, ``blur.gif`` and a textured OBJ of the mesh to ``args.out``."""
    os.makedirs(args.out, exist_ok=True)
    t0 = time.perf_counter()
    if args.mesh:
        mesh = load_obj(
            args.mesh, normalization=True, load_texture=True, texture_res=args.texture_res
        )
        name = os.path.splitext(os.path.basename(args.mesh))[0]
    else:
        mesh = textured_blob()
        name = "blob"
    print(f"mesh: {name}: {mesh.num_vertices} vertices, {mesh.num_faces} faces")
    config = turntable_config(args.image_size)
    azimuths = jnp.arange(0.0, 360.0, 4.0)
    eyes = get_points_from_angles(DISTANCE, ELEVATION, azimuths)
    ones = jnp.ones(len(azimuths))
    frames = render_frames(mesh, config, eyes, ones * 1e-4, ones * 1e-4, args.chunk, "turntable")
    turntable = os.path.join(args.out, "turntable.gif")
    imageio.mimsave(turntable, frames, duration=0.04, loop=0)

    gammas = 10.0 ** jnp.linspace(-4.0, -2.0, 11)
    sweep_eyes = jnp.repeat(get_points_from_angles(DISTANCE, ELEVATION, 45.0)[None], 11, 0)
    soft = config.replace(aggr_func_rgb="softmax", dist_eps=1e-4)
    frames = render_frames(mesh, soft, sweep_eyes, gammas / 10.0, gammas, args.chunk, "sigma/gamma")
    sweep = os.path.join(args.out, "blur.gif")
    imageio.mimsave(sweep, frames + frames[-2:0:-1], duration=0.15, loop=0)  # ping-pong

    obj = os.path.join(args.out, f"{name}.obj")
    save_obj(obj, mesh, save_texture=True)
    print(
        f"wrote {turntable} (90 frames), {sweep} (gamma 1e-4 .. 1e-2, sigma = gamma / 10), "
        f"{obj} in {time.perf_counter() - t0:.1f} s"
    )
