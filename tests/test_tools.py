"""The ``softjax render`` and ``softjax deform`` tools."""

from __future__ import annotations

import imageio.v3 as iio
import numpy as np
import pytest
import trimesh

from softjax.cli import main
from softjax.tools import deform_tool


def test_render_tool_no_arguments(tmp_path, capsys):
    assert main(["render", "--out", str(tmp_path), "--image-size", "32", "--chunk", "30"]) == 0
    turntable = iio.imread(tmp_path / "turntable.gif")
    assert turntable.shape[0] == 90 and turntable.shape[1:3] == (32, 32)
    # the object turns: frames differ, and it is drawn over the white background
    assert np.abs(turntable[0].astype(int) - turntable[10].astype(int)).max() > 30
    assert (turntable[0][..., :3] < 200).any()
    blur = iio.imread(tmp_path / "blur.gif")
    assert blur.shape[0] == 20  # 11 gammas, ping-pong
    mesh = trimesh.load(tmp_path / "blob.obj", process=False)
    assert len(mesh.faces) == 5120
    # render the saved OBJ back (round trip through the OBJ reader)
    out2 = tmp_path / "again"
    assert (
        main(
            [
                "render",
                str(tmp_path / "blob.obj"),
                "--out",
                str(out2),
                "--image-size",
                "16",
                "--chunk",
                "45",
            ]
        )
        == 0
    )
    assert (out2 / "turntable.gif").exists()


def test_deform_tool_fits_builtin_shape(tmp_path, capsys):
    images, cameras = deform_tool.synthetic_data(n_views=8, image_size=32)
    np.save(tmp_path / "images.npy", images)
    np.save(tmp_path / "cameras.npy", cameras)
    out = tmp_path / "out"
    code = main(
        [
            "deform",
            "--images",
            str(tmp_path / "images.npy"),
            "--cameras",
            str(tmp_path / "cameras.npy"),
            "--out",
            str(out),
            "--iterations",
            "80",
            "--snapshot-every",
            "40",
        ]
    )
    assert code == 0
    text = capsys.readouterr().out
    iou = float(text.split("final mean silhouette IoU")[1].split()[0])
    assert iou > 0.8, text
    fitted = trimesh.load(out / "fitted.obj", process=False)
    assert len(fitted.vertices) == 642
    assert (out / "deform.gif").exists() and (out / "iter_00000.png").exists()


@pytest.mark.parametrize(
    "images,cameras,match",
    [
        (np.zeros((5, 4, 16, 16), np.uint8), np.zeros((4, 3)), "5 images but 4 cameras"),
        (np.zeros((5, 3, 16, 16), np.uint8), np.zeros((5, 3)), "RGBA channels-first"),
        (np.zeros((5, 16, 16, 4), np.uint8), np.zeros((5, 3)), "channels last"),
        (np.zeros((5, 4, 16, 16), np.uint8), np.zeros((5, 2)), r"cameras must be \[N, 3\]"),
        (np.zeros((5, 4, 16, 16), np.int64), np.zeros((5, 3)), "must be uint8"),
    ],
)
def test_deform_bad_data(tmp_path, capsys, images, cameras, match):
    np.save(tmp_path / "i.npy", images)
    np.save(tmp_path / "c.npy", cameras)
    code = main(
        [
            "deform",
            "--images",
            str(tmp_path / "i.npy"),
            "--cameras",
            str(tmp_path / "c.npy"),
            "--out",
            str(tmp_path / "o"),
        ]
    )
    assert code == 2
    err = capsys.readouterr().err
    assert "error" in err
    import re

    assert re.search(match, err), err
