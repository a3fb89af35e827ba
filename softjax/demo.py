"""A small render written to a PNG: ``python -m softjax.demo --out demo.png``.

Renders a coloured octahedron built in code (no files needed) with the SoftRas default options
and, beside it, the same mesh with a larger sigma and gamma (soft, semi-transparent edges).
"""

from __future__ import annotations

import argparse
import time

import imageio.v3 as iio
import jax.numpy as jnp
import numpy as np

from softjax.ops import soft_rasterize

_VERTS = np.array([[1, 0, 0], [-1, 0, 0], [0, 1, 0], [0, -1, 0], [0, 0, 1], [0, 0, -1]], np.float32)
_FACES = np.array(
    [[0, 2, 4], [2, 1, 4], [1, 3, 4], [3, 0, 4], [2, 0, 5], [1, 2, 5], [3, 1, 5], [0, 3, 5]]
)


def octahedron_scene(angle_deg: float = 30.0, distance: float = 3.5):
    """Screen-space face vertices ``[1, 8, 3, 3]`` and 2x2 surface textures ``[1, 8, 4, 3]``."""
    a = np.deg2rad(angle_deg)
    rot_y = np.array([[np.cos(a), 0, np.sin(a)], [0, 1, 0], [-np.sin(a), 0, np.cos(a)]])
    rot_x = np.array([[1, 0, 0], [0, np.cos(0.5), -np.sin(0.5)], [0, np.sin(0.5), np.cos(0.5)]])
    v = _VERTS @ (rot_x @ rot_y).T
    z = v[:, 2] + distance
    tan = np.tan(np.deg2rad(20.0))
    screen = np.stack([v[:, 0] / (z * tan), v[:, 1] / (z * tan), z], -1).astype(np.float32)
    fv = screen[_FACES][None]
    rng = np.random.default_rng(0)
    tex = rng.uniform(0.2, 1.0, (1, len(_FACES), 4, 3)).astype(np.float32)
    return fv, tex


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default="demo.png", help="PNG file to write")
    parser.add_argument("--image-size", type=int, default=256)
    args = parser.parse_args(argv)

    fv, tex = octahedron_scene()
    t0 = time.perf_counter()
    sharp = soft_rasterize(fv, tex, image_size=args.image_size, background_color=(1, 1, 1))
    soft = soft_rasterize(
        fv,
        tex,
        image_size=args.image_size,
        background_color=(1, 1, 1),
        sigma_val=3e-3,
        gamma_val=3e-2,
    )
    img = jnp.concatenate([sharp[0], soft[0]], axis=1)
    rgb = np.asarray(img[..., :3])
    iio.imwrite(args.out, (np.clip(rgb, 0, 1) * 255).round().astype(np.uint8))
    dt = time.perf_counter() - t0
    print(
        f"wrote {args.out} ({rgb.shape[1]}x{rgb.shape[0]}) in {dt:.2f} s "
        f"(covered pixels: {int((np.asarray(sharp[0, ..., 3]) > 0.5).sum())})"
    )


if __name__ == "__main__":
    main()
