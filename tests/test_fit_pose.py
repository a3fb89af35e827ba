"""``softjax fit-pose`` and :mod:`softjax.tools.fit_pose_tool`: rotations, the pose fit, the
command's outputs, its errors and its interruption.

The command's runs share one image size, restart count and mesh, so that the fit's jitted step
compiles once for all of them (the multi-view ones once more).
"""

from __future__ import annotations

import json
import os
import signal
import threading
import time

import imageio.v3 as iio
import jax.numpy as jnp
import numpy as np
import pytest
import trimesh

from softjax.cli import main
from softjax.io import load_obj, save_obj
from softjax.render import render
from softjax.tools import fit_pose_tool as fp
from softjax.tools.default_meshes import asymmetric_blob
from softjax.tools.demo_setup import DISTANCE, ELEVATION
from softjax.transform import get_points_from_angles

SIZE = 32  # every command run: one compilation of the fit's step serves them all
FAST = ["--image-size", str(SIZE), "--restarts", "2", "--candidates", "16"]
SAFETY_S = 600.0  # only against a hang in the interruption test; never an expected duration


def _rotation(rng: np.random.Generator) -> np.ndarray:
    q = rng.normal(size=4)
    return np.asarray(fp.quaternion_to_matrix(jnp.asarray(q / np.linalg.norm(q), jnp.float32)))


def _render_at(mesh, rotation, translation, cameras, size=SIZE) -> np.ndarray:
    """``[N, S, S, 4]`` renders of ``mesh`` posed by ``(rotation, translation)``."""
    posed = mesh.replace(vertices=fp.apply_pose(mesh.vertices, rotation, translation))
    eyes = get_points_from_angles(cameras[:, 0], cameras[:, 1], cameras[:, 2])
    config = fp.fit_config(size)
    return np.stack([np.asarray(render(posed, config, eye=e)[0]) for e in eyes])


def _png(path, image: np.ndarray) -> str:
    iio.imwrite(path, (np.clip(image, 0, 1) * 255).round().astype(np.uint8))
    return str(path)


def _pose_of(record: dict) -> tuple[np.ndarray, np.ndarray, float]:
    r = np.asarray(fp.quaternion_to_matrix(jnp.asarray(record["rotation"], jnp.float32)))
    return r, np.asarray(record["translation"], np.float32), record["scale"]


# ---------------------------------------------------------------- rotations (pure functions)


def test_quaternion_and_6d_give_rotations():
    rng = np.random.default_rng(0)
    q = rng.normal(size=(64, 4)) * rng.uniform(0.1, 3.0, (64, 1))  # any length
    x6 = rng.normal(size=(64, 6))
    for m in (fp.quaternion_to_matrix(q), fp.sixd_to_matrix(x6)):
        m = np.asarray(m, np.float64)
        assert m.shape == (64, 3, 3)
        np.testing.assert_allclose(
            m @ np.swapaxes(m, -1, -2), np.broadcast_to(np.eye(3), m.shape), atol=1e-5
        )
        np.testing.assert_allclose(np.linalg.det(m), 1.0, atol=1e-5)


def test_known_rotations():
    a = np.deg2rad(90.0)
    rz = np.asarray(fp.quaternion_to_matrix(jnp.array([np.cos(a / 2), 0.0, 0.0, np.sin(a / 2)])))
    np.testing.assert_allclose(rz @ [1.0, 0.0, 0.0], [0.0, 1.0, 0.0], atol=1e-6)  # x -> y
    # the 6D representation's first two columns are the (orthonormalised) inputs
    m = np.asarray(fp.sixd_to_matrix(jnp.array([2.0, 0.0, 0.0, 1.0, 3.0, 0.0])))
    np.testing.assert_allclose(m, np.eye(3), atol=1e-6)


def test_matrix_to_quaternion_round_trip():
    rng = np.random.default_rng(1)
    q = rng.normal(size=(200, 4))
    q /= np.linalg.norm(q, axis=1, keepdims=True)
    q[:4] = [[0, 1, 0, 0], [0, 0, 1, 0], [0, 0, 0, 1], [1, 0, 0, 0]]  # 180 degrees, identity
    q = np.where(q[:, :1] < 0, -q, q)
    back = np.asarray(fp.matrix_to_quaternion(fp.quaternion_to_matrix(jnp.asarray(q, jnp.float32))))
    assert (back[:, 0] >= 0).all()
    # q and -q are one rotation (w = 0 leaves the sign open)
    err = np.minimum(np.abs(back - q).max(1), np.abs(back + q).max(1))
    assert err.max() < 1e-5


def test_rotation_error_deg_of_known_rotations():
    def about(axis, degrees):
        a = np.deg2rad(degrees)
        axis = np.asarray(axis, np.float64) / np.linalg.norm(axis)
        q = np.r_[np.cos(a / 2), np.sin(a / 2) * axis]
        return fp.quaternion_to_matrix(jnp.asarray(q, jnp.float32))

    eye = jnp.eye(3)
    assert float(fp.rotation_error_deg(eye, eye)) == pytest.approx(0.0, abs=1e-3)
    for axis, deg in [([1, 0, 0], 30.0), ([0, 1, 1], 5.0), ([1, 2, 3], 0.1), ([0, 0, 1], 180.0)]:
        assert float(fp.rotation_error_deg(eye, about(axis, deg))) == pytest.approx(deg, abs=2e-3)
    # the angle between two rotations, whatever their common part; symmetric
    base = about([3, -1, 2], 77.0)
    turned = about([1, 0, 0], 12.0) @ base
    assert float(fp.rotation_error_deg(base, turned)) == pytest.approx(12.0, abs=2e-3)
    assert float(fp.rotation_error_deg(turned, base)) == pytest.approx(12.0, abs=2e-3)
    # batched
    angles = fp.rotation_error_deg(jnp.stack([eye, eye]), jnp.stack([about([0, 1, 0], 45), eye]))
    np.testing.assert_allclose(angles, [45.0, 0.0], atol=2e-3)


def test_apply_pose():
    rng = np.random.default_rng(2)
    v = rng.normal(size=(1, 10, 3)).astype(np.float32)
    r, t = _rotation(rng), np.array([0.1, -0.2, 0.3], np.float32)
    out = np.asarray(fp.apply_pose(v, r, t, 1.5))
    np.testing.assert_allclose(out, 1.5 * v @ r.T + t, atol=1e-5)
    assert out.shape == (1, 10, 3)


# ---------------------------------------------------------------- the acceptance test


def test_recovers_ten_random_poses():
    """From 10 random poses of the built-in textured asymmetric mesh (one view each), the
    rotation comes back within 5 degrees in at least 9 of 10; the 10 problems are one batch."""
    mesh = asymmetric_blob()
    cameras = np.array([[DISTANCE, ELEVATION, 0.0]], np.float32)
    truths, targets = [], []
    for seed in range(10):
        rng = np.random.default_rng(100 + seed)
        r, t = _rotation(rng), rng.uniform(-0.1, 0.1, 3).astype(np.float32)
        truths.append(r)
        targets.append(_render_at(mesh, r, t, cameras))
    eyes = [fp.default_eyes(1)] * 10
    results = fp.fit_poses(mesh, targets, eyes, restarts=2, candidates=32, steps=60, seed=0)
    errors = np.array(
        [
            float(fp.rotation_error_deg(r, res.rotation))
            for r, res in zip(truths, results, strict=True)
        ]
    )
    print("rotation errors (degrees):", np.round(errors, 2))
    assert (errors < 5.0).sum() >= 9, errors
    for res in results:
        assert res.quaternion.shape == (4,) and res.quaternion[0] >= 0
        np.testing.assert_allclose(np.linalg.norm(res.quaternion), 1.0, atol=1e-5)
        assert res.losses.shape == (60, 2) and res.steps == 60 and not res.interrupted
    assert np.mean([res.iou for res in results]) > 0.9


# ---------------------------------------------------------------- the command


def test_cli_without_arguments(tmp_path, capsys):
    out = tmp_path / "out"
    assert main(["fit-pose", "--out", str(out), "--steps", "30", *FAST]) == 0
    printed = capsys.readouterr().out
    assert "rotation error" in printed and "silhouette IoU" in printed
    record = json.loads((out / "result.json").read_text())
    for field in ("rotation", "translation", "scale", "iou", "loss", "seconds"):
        assert field in record, field
    assert len(record["rotation"]) == 4 and len(record["translation"]) == 3
    assert record["scale"] == 1.0 and record["steps"] == 30 and not record["interrupted"]
    assert record["rotation_error_deg"] < 10.0 and record["iou"] > 0.9
    assert f"rotation error {record['rotation_error_deg']:.2f} degrees" in printed
    gif = iio.imread(out / "fit_pose.gif")
    assert gif.shape[0] >= 2 and gif.shape[2] > gif.shape[1]  # frames of render | target
    posed = trimesh.load(out / "posed.obj", process=False)
    mesh = asymmetric_blob()
    assert len(posed.faces) == mesh.num_faces
    # the posed OBJ is the input mesh moved by the recorded pose, with its texture
    loaded = load_obj(out / "posed.obj", load_texture=True, texture_res=2)
    r, t, s = _pose_of(record)
    expected = np.asarray(fp.apply_pose(mesh.vertices, r, t, s))
    np.testing.assert_allclose(np.asarray(loaded.vertices), expected, atol=1e-5)
    np.testing.assert_array_equal(np.asarray(loaded.faces), np.asarray(mesh.faces))
    np.testing.assert_allclose(loaded.textures, mesh.textures, atol=1 / 255 + 1e-6)
    assert not [f for f in os.listdir(out) if f.startswith(".")]  # no temporary leftovers


def test_cli_target_png_and_cameras(tmp_path, capsys):
    mesh = asymmetric_blob()
    rng = np.random.default_rng(7)
    r, t = _rotation(rng), np.array([0.05, -0.05, 0.0], np.float32)
    cameras = np.array([[DISTANCE, 20.0, 45.0]], np.float32)
    target = _png(tmp_path / "target.png", _render_at(mesh, r, t, cameras)[0])
    np.save(tmp_path / "cameras.npy", cameras)
    obj = tmp_path / "mesh.obj"
    save_obj(obj, mesh, save_texture=True)
    out = tmp_path / "out"
    args = [str(obj), "--target", target, "--cameras", str(tmp_path / "cameras.npy")]
    assert main(["fit-pose", *args, "--out", str(out), "--steps", "40", *FAST]) == 0
    record = json.loads((out / "result.json").read_text())
    assert record["colour_used"] and "rotation_error_deg" not in record
    assert record["iou"] > 0.9
    assert float(fp.rotation_error_deg(r, _pose_of(record)[0])) < 10.0
    loaded = load_obj(out / "posed.obj")
    original = load_obj(obj)
    r_fit, t_fit, s_fit = _pose_of(record)
    expected = np.asarray(fp.apply_pose(original.vertices, r_fit, t_fit, s_fit))
    np.testing.assert_allclose(np.asarray(loaded.vertices), expected, atol=1e-5)


def test_cli_several_targets(tmp_path, capsys):
    """Two views: an RGBA PNG and a grayscale silhouette PNG (colour used for the first only);
    then the same targets as one .npy array."""
    mesh = asymmetric_blob()
    rng = np.random.default_rng(11)
    r, t = _rotation(rng), np.zeros(3, np.float32)
    cameras = np.array([[DISTANCE, ELEVATION, 0.0], [DISTANCE, -10.0, 100.0]], np.float32)
    images = _render_at(mesh, r, t, cameras)
    paths = [_png(tmp_path / "a.png", images[0]), _png(tmp_path / "b.png", images[1, ..., 3])]
    np.save(tmp_path / "cameras.npy", cameras)
    out = tmp_path / "out"
    cams = ["--cameras", str(tmp_path / "cameras.npy")]
    assert main(["fit-pose", "--target", *paths, *cams, "--out", str(out), *FAST]) == 0
    record = json.loads((out / "result.json").read_text())
    assert record["iou"] > 0.9
    assert float(fp.rotation_error_deg(r, _pose_of(record)[0])) < 10.0
    # the GIF shows both views, stacked
    gif = iio.imread(out / "fit_pose.gif")
    assert gif.shape[1] == 2 * 128
    np.save(tmp_path / "targets.npy", (images * 255).round().astype(np.uint8))
    out2 = tmp_path / "out2"
    npy = ["--target", str(tmp_path / "targets.npy")]
    assert main(["fit-pose", *npy, *cams, "--out", str(out2), "--steps", "5", *FAST]) == 0
    assert json.loads((out2 / "result.json").read_text())["steps"] == 5


def test_cli_colour_target_with_untextured_mesh_falls_back(tmp_path, capsys):
    mesh = asymmetric_blob()
    obj = tmp_path / "plain.obj"
    save_obj(obj, mesh)  # geometry only: one colour
    cameras = np.array([[DISTANCE, ELEVATION, 0.0]], np.float32)
    target = _png(tmp_path / "t.png", _render_at(mesh, np.eye(3), np.zeros(3), cameras)[0])
    out = tmp_path / "out"
    code = main(
        ["fit-pose", str(obj), "--target", target, "--texture-res", "2", "--out", str(out)]
        + ["--steps", "3", *FAST]
    )
    assert code == 0
    assert "note: the mesh has a single colour" in capsys.readouterr().out
    assert not json.loads((out / "result.json").read_text())["colour_used"]
    assert trimesh.load(out / "posed.obj", process=False).faces.shape == (mesh.num_faces, 3)


def _error_case(tmp_path, case: str) -> list[str]:
    """Command-line arguments that must fail with ``case``'s error."""
    rgba = np.zeros((SIZE, SIZE, 4), np.float32)
    rgba[8:24, 8:24] = 1.0
    good = _png(tmp_path / "good.png", rgba)
    np.save(tmp_path / "two_cams.npy", np.array([[DISTANCE, ELEVATION, 0.0]] * 2, np.float32))
    if case == "non-square":
        return ["--target", _png(tmp_path / "wide.png", np.ones((SIZE, SIZE + 8, 4)))]
    if case == "mismatched sizes":
        small = _png(tmp_path / "small.png", np.ones((24, 24, 4)))
        return ["--target", good, small, "--cameras", str(tmp_path / "two_cams.npy")]
    if case == "rgb without alpha":
        return ["--target", _png(tmp_path / "rgb.png", np.ones((SIZE, SIZE, 3)))]
    if case == "channels":
        np.save(tmp_path / "t3.npy", np.ones((1, SIZE, SIZE, 3), np.float32))
        return ["--target", str(tmp_path / "t3.npy")]
    if case == "camera count":
        return ["--target", good, "--cameras", str(tmp_path / "two_cams.npy")]
    if case == "no cameras for several images":
        return ["--target", good, good]
    if case == "camera shape":
        np.save(tmp_path / "cams2.npy", np.ones((1, 2), np.float32))
        return ["--target", good, "--cameras", str(tmp_path / "cams2.npy")]
    if case == "unreadable image":
        (tmp_path / "junk.png").write_bytes(b"this is not a png")
        return ["--target", str(tmp_path / "junk.png")]
    if case == "missing image":
        return ["--target", str(tmp_path / "nowhere.png")]
    if case == "unreadable cameras":
        (tmp_path / "junk.npy").write_bytes(b"not an array")
        return ["--target", good, "--cameras", str(tmp_path / "junk.npy")]
    if case == "npy and png":
        np.save(tmp_path / "t.npy", np.ones((1, SIZE, SIZE), np.float32))
        return ["--target", str(tmp_path / "t.npy"), good]
    if case == "float out of range":
        np.save(tmp_path / "big.npy", np.full((1, SIZE, SIZE), 2.0, np.float32))
        return ["--target", str(tmp_path / "big.npy")]
    if case == "bad steps":
        return ["--steps", "0"]
    raise AssertionError(case)


@pytest.mark.parametrize(
    "case, message",
    [
        ("non-square", "must be square"),
        ("mismatched sizes", "same size"),
        ("rgb without alpha", "RGB without alpha"),
        ("channels", "[N, S, S, 4] RGBA or [N, S, S]"),
        ("camera count", "1 images but 2 cameras"),
        ("no cameras for several images", "2 target images need --cameras"),
        ("camera shape", "cameras must be [N, 3]"),
        ("unreadable image", "cannot read target image"),
        ("missing image", "target image not found"),
        ("unreadable cameras", "cannot read cameras"),
        ("npy and png", "one .npy array"),
        ("float out of range", "float in [0, 1]"),
        ("bad steps", "--steps must be >= 1"),
    ],
)
def test_cli_errors(tmp_path, capsys, case, message):
    args = _error_case(tmp_path, case)
    assert main(["fit-pose", *args, "--out", str(tmp_path / "out"), *FAST]) == 2
    err = capsys.readouterr().err
    assert err.startswith("softjax fit-pose: error: ") and message in err, err
    assert not (tmp_path / "out").exists()  # nothing written


def test_library_errors():
    mesh = asymmetric_blob()
    with pytest.raises(ValueError, match="eyes must be"):
        fp.fit_pose(mesh, np.zeros((2, SIZE, SIZE, 4)), fp.default_eyes(1))
    with pytest.raises(ValueError, match="targets must be"):
        fp.fit_pose(mesh, np.zeros((1, SIZE, SIZE, 2)), fp.default_eyes(1))
    with pytest.raises(ValueError, match="rotation must be one of"):
        fp.fit_pose(mesh, np.zeros((1, SIZE, SIZE)), fp.default_eyes(1), rotation="euler")


@pytest.mark.parametrize("signum, code", [(signal.SIGINT, 130), (signal.SIGTERM, 143)])
def test_cli_interrupted(tmp_path, capsys, signum, code):
    """A signal stops the fit between steps: the best restart so far is written, the handlers
    are restored and the exit code is 128 + the signal number."""
    before = {s: signal.getsignal(s) for s in (signal.SIGINT, signal.SIGTERM)}
    sent = threading.Event()

    def send_once_installed():
        deadline = time.monotonic() + SAFETY_S
        while signal.getsignal(signum) is before[signum] and time.monotonic() < deadline:
            time.sleep(0.01)  # waits for the tool's handler: an event, not a duration
        os.kill(os.getpid(), signum)
        sent.set()

    sender = threading.Thread(target=send_once_installed, daemon=True)
    sender.start()
    out = tmp_path / "out"
    result = main(["fit-pose", "--out", str(out), "--steps", "100000", *FAST])
    sender.join()
    assert sent.is_set() and result == code
    assert f"interrupted by {signal.Signals(signum).name}" in capsys.readouterr().out
    assert {s: signal.getsignal(s) for s in before} == before
    record = json.loads((out / "result.json").read_text())
    assert record["interrupted"] and record["steps"] < 100000
    assert (out / "fit_pose.gif").exists()
    assert len(trimesh.load(out / "posed.obj", process=False).faces) == 320
