"""A PNG grid of a reconstruction dataset for people to look at.

    python -m recon.data.preview --dataset synthetic_shapes --out grid.png

One row per class: ``--objects`` objects of the class, each from ``--views`` of the 24
viewpoints (spread around the object), composited on white. Builds the dataset first if needed.
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Sequence

import imageio.v3 as iio
import numpy as np

from recon.data.loader import SplitSource, load_split
from recon.protocol import IMAGE_SIZE


def grid_image(
    source: SplitSource,
    objects_per_class: int = 3,
    views: Sequence[int] = (0, 3, 6, 9),
    scale: int = 2,
) -> np.ndarray:
    """``[rows * 64 * scale, cols * 64 * scale, 3]`` uint8: one row per class present in
    ``source``, ``objects_per_class`` objects x ``views`` per row (blank where a class has fewer
    objects)."""
    views = np.asarray(views)
    rows = []
    for c in range(len(source.class_ids)):
        start = int(source.offsets[c])
        count = int(source.counts[c])
        tiles = []
        for k in range(objects_per_class):
            if k < count:
                imgs = source.images(np.full(len(views), start + k), views)  # [V, 64, 64, 4]
                rgb = imgs[..., :3].astype(np.float32)
                alpha = imgs[..., 3:].astype(np.float32) / 255.0
                tiles += list(rgb * alpha + 255.0 * (1.0 - alpha))
            else:
                tiles += [np.full((IMAGE_SIZE, IMAGE_SIZE, 3), 255.0)] * len(views)
        rows.append(np.concatenate(tiles, axis=1))
    img = np.concatenate(rows, axis=0).clip(0, 255).astype(np.uint8)
    return img.repeat(scale, 0).repeat(scale, 1)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--dataset", default="synthetic_shapes", choices=["synthetic_shapes", "shapenet_nmr"]
    )
    parser.add_argument("--split", default="train")
    parser.add_argument("--data-dir", default=None, help="TFDS data directory")
    parser.add_argument("--manual-dir", default=None, help="shapenet_nmr: the npz files")
    parser.add_argument("--out", default="grid.png")
    parser.add_argument("--objects", type=int, default=3, help="objects per class")
    parser.add_argument("--views", type=int, nargs="+", default=[0, 3, 6, 9])
    parser.add_argument("--scale", type=int, default=2, help="pixel repeat factor")
    parser.add_argument("--classes", nargs="+", default=None, help="class ids (default: all 13)")
    parser.add_argument(
        "--sizes",
        type=int,
        nargs=3,
        default=None,
        metavar=("TRAIN", "VAL", "TEST"),
        help="synthetic_shapes: objects per class per split (default: the builder's)",
    )
    args = parser.parse_args(argv)
    t0 = time.perf_counter()
    kwargs = {}
    if args.dataset == "shapenet_nmr":
        kwargs["manual_dir"] = args.manual_dir
    elif args.sizes:
        kwargs.update(train=args.sizes[0], val=args.sizes[1], test=args.sizes[2])
    if args.classes:
        kwargs["classes"] = tuple(args.classes)
    source = load_split(args.dataset, args.split, args.data_dir, **kwargs)
    img = grid_image(source, args.objects, args.views, args.scale)
    iio.imwrite(args.out, img)
    print(
        f"wrote {args.out} ({img.shape[1]}x{img.shape[0]}, {len(source.class_ids)} classes, "
        f"{args.dataset}/{args.split}) in {time.perf_counter() - t0:.1f} s"
    )


if __name__ == "__main__":
    main()
