"""``python -m recon.data.preview`` writes a grid of the dataset."""

from __future__ import annotations

import imageio.v3 as iio
import numpy as np

from recon.data import preview


def test_preview_grid(tmp_path, capsys):
    out = tmp_path / "grid.png"
    preview.main([
        "--dataset", "synthetic_shapes", "--data-dir", str(tmp_path / "data"), "--out", str(out),
        "--classes", "03001627", "04379243", "--sizes", "2", "1", "1", "--objects", "3",
        "--views", "0", "6", "--scale", "1",
    ])  # fmt: skip
    img = iio.imread(out)
    # 2 classes x 64 rows; 3 object slots x 2 views x 64 columns
    assert img.shape == (128, 384, 3) and img.dtype == np.uint8
    # the two objects of each class are drawn (not white), the empty third slot is white
    assert (img[:, :256] < 250).any(axis=-1).mean() > 0.05
    assert (img[:, 256:] == 255).all()
    assert "wrote" in capsys.readouterr().out
