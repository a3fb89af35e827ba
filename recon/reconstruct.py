"""Single-image reconstruction with a trained model: RGBA images in, OBJ meshes out.

``python -m recon.reconstruct --checkpoint=runs/quickstart/checkpoints/400 --image=car.png
--out=car.obj`` (or ``--workdir=runs/quickstart``: its latest checkpoint) [``--turntable
--batch_size=64``]

Inputs (``--image``): a 64x64 RGBA PNG, a folder of them, or an NMR images npz (uint8
``[N*24, 4, 64, 64]``, channels first, one array). The alpha channel is the object's
silhouette, as in the training renderings (colour over black). ``--out``: an ``.obj`` path for
one image, else a folder (one ``<name>.obj`` per image). ``--turntable`` also writes
``<name>.gif``, the mesh lit and rotating.
"""

# ruff: noqa: E402  (the signal handlers are installed before the heavy imports)

from __future__ import annotations

from recon import interrupt

# Installed before JAX is imported: Ctrl-C or SIGTERM at any moment exits at once with 130 / 143
# and one line, never a traceback from inside JAX.
_INTERRUPTS = interrupt.install("recon.reconstruct") if __name__ == "__main__" else None

import sys
import time
from collections.abc import Sequence
from pathlib import Path

import imageio.v2 as imageio
import jax.numpy as jnp
import numpy as np
from absl import flags

from recon import cli
from recon.inference import Predictor
from recon.protocol import DISTANCE, ELEVATION, IMAGE_SIZE
from softjax.io import save_obj
from softjax.transform import get_points_from_angles


class InputError(ValueError):
    """An input image or file that cannot be reconstructed from (names the file)."""


def read_png(path: str | Path) -> np.ndarray:
    """A 64x64 RGBA PNG as float32 ``[64, 64, 4]`` in [0, 1]."""
    path = Path(path)
    try:
        image = np.asarray(imageio.imread(path))
    except Exception as e:  # imageio raises several types for unreadable files
        raise InputError(f"{path}: cannot read the image ({e})") from e
    if image.ndim != 3 or image.shape[-1] != 4:
        channels = 1 if image.ndim == 2 else image.shape[-1]
        raise InputError(
            f"{path}: needs an alpha channel (RGBA, the object's silhouette), got {channels} "
            "channel(s)"
        )
    if image.shape[:2] != (IMAGE_SIZE, IMAGE_SIZE):
        raise InputError(
            f"{path}: must be {IMAGE_SIZE}x{IMAGE_SIZE} pixels (the training size), got "
            f"{image.shape[1]}x{image.shape[0]}"
        )
    if image.dtype == np.uint8:
        return image.astype(np.float32) / 255.0
    if image.dtype == np.uint16:
        return image.astype(np.float32) / 65535.0
    raise InputError(f"{path}: unsupported pixel type {image.dtype} (8 or 16 bit PNG)")


def read_npz(path: str | Path) -> np.ndarray:
    """An NMR images npz (uint8 ``[N*24, 4, 64, 64]``) as float32 ``[N*24, 64, 64, 4]``."""
    path = Path(path)
    try:
        with np.load(path) as data:
            names = list(data.keys())
            if len(names) != 1:
                raise InputError(f"{path}: expected one array, found {names}")
            arr = data[names[0]]
    except (OSError, ValueError) as e:
        if isinstance(e, InputError):
            raise
        raise InputError(f"{path}: cannot read the npz ({e})") from e
    if arr.ndim != 4 or arr.shape[1:] != (4, IMAGE_SIZE, IMAGE_SIZE) or arr.dtype != np.uint8:
        raise InputError(
            f"{path}: expected NMR images uint8 [N*24, 4, 64, 64], got {arr.dtype} {arr.shape}"
        )
    return arr.transpose(0, 2, 3, 1).astype(np.float32) / 255.0


def read_inputs(path: str | Path) -> tuple[list[str], np.ndarray]:
    """Names and float32 images ``[N, 64, 64, 4]`` of a PNG, a folder of PNGs or an npz."""
    path = Path(path)
    if path.is_dir():
        files = sorted(p for p in path.iterdir() if p.suffix.lower() == ".png")
        if not files:
            raise InputError(f"{path}: no .png files in the folder")
        return [p.stem for p in files], np.stack([read_png(p) for p in files])
    if not path.exists():
        raise InputError(f"{path}: no such file or folder")
    if path.suffix.lower() == ".npz":
        images = read_npz(path)
        return [f"{path.stem}_{i:05d}" for i in range(len(images))], images
    return [path.stem], read_png(path)[None]


def output_paths(names: list[str], out: str | Path) -> list[Path]:
    """``out`` itself for one image and an ``.obj`` ``out``; else ``out/<name>.obj``."""
    out = Path(out)
    if out.suffix.lower() == ".obj":
        if len(names) != 1:
            raise InputError(f"--out {out} is one file but there are {len(names)} images")
        out.parent.mkdir(parents=True, exist_ok=True)
        return [out]
    out.mkdir(parents=True, exist_ok=True)
    return [out / f"{n}.obj" for n in names]


def turntable(predictor: Predictor, vertices, colors, path: Path, frames: int = 36) -> None:
    """A lit, rotating view of one reconstructed mesh as a GIF."""
    from softjax.tools.render_tool import render_frames, turntable_config

    mesh = predictor.mesh(vertices, colors)
    config = turntable_config(128)
    # at the training views' distance and elevation, every frame as sharp as the config
    eyes = get_points_from_angles(DISTANCE, ELEVATION, jnp.arange(frames) * (360.0 / frames))
    ones = jnp.ones(frames)
    sigmas, gammas = ones * config.sigma_val, ones * config.gamma_val
    images = render_frames(mesh, config, eyes, sigmas, gammas, 12, "gif", False)
    imageio.mimsave(path, images, duration=0.06, loop=0)


def define_flags(flag_values: flags.FlagValues) -> None:
    """The command line's flags (see the module docstring)."""
    cli.define_checkpoint_flags(flag_values)
    flags.adopt_module_key_flags(cli, flag_values=flag_values)  # listed by --help
    flags.DEFINE_string(
        "image", None, "64x64 RGBA PNG, a folder of them, or NMR npz", flag_values=flag_values
    )
    flags.DEFINE_string(
        "out", None, "an .obj file (one image) or a folder", flag_values=flag_values
    )
    flags.DEFINE_bool("turntable", False, "also write a GIF of each mesh", flag_values=flag_values)
    flags.DEFINE_integer(
        "batch_size", 64, "images per step", lower_bound=1, flag_values=flag_values
    )
    flags.mark_flags_as_required(["image", "out"], flag_values=flag_values)


def run(options: flags.FlagValues) -> list[Path]:
    """Reconstructs as the parsed command line ``options`` says; returns the OBJ paths written.
    Exits (``SystemExit``, one line) for an input that cannot be read."""
    from recon.checkpoints import load_trained

    t0 = time.perf_counter()
    try:
        names, images = read_inputs(options.image)
        paths = output_paths(names, options.out)
    except InputError as e:
        sys.exit(f"recon.reconstruct: {e}")
    config, spec, state = load_trained(options.workdir, options.checkpoint)
    predictor = Predictor(spec, state.variables, batch_size=min(options.batch_size, len(images)))
    vertices, colors = predictor(images)
    for i, path in enumerate(paths):
        c = None if colors is None else colors[i]
        save_obj(path, predictor.mesh(vertices[i], c), save_texture=c is not None)
        if options.turntable:
            turntable(predictor, vertices[i], c, path.with_suffix(".gif"))
    extra = " and turntable GIFs" if options.turntable else ""
    where = paths[0] if len(paths) == 1 else f"{len(paths)} OBJ files in {Path(options.out)}"
    print(
        f"reconstructed {len(paths)} image(s) with step {int(state.step)} of {config.name}: "
        f"wrote {where}{extra} ({time.perf_counter() - t0:.1f} s)"
    )
    return paths


def main(argv: Sequence[str]) -> list[Path]:
    """``python -m recon.reconstruct`` from Python (no signal handling): ``argv`` holds its
    arguments, e.g. ``['--workdir', 'runs/quickstart', '--image', 'car.png', '--out', 'car.obj']``;
    returns the OBJ paths written."""
    return run(cli.parse_flags(argv, define_flags))


if __name__ == "__main__":
    cli.run_main("recon.reconstruct", define_flags, run)
