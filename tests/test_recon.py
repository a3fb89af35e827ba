"""The reconstruction application: model, training (resume, interruption, data parallel),
evaluation and single-image reconstruction, on the tiny config."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import imageio.v2 as imageio
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from helpers import tiny_config

from bench import sigint_stress as stress
from configs import quickstart, shading, softras, tiny
from recon import checkpoints, reconstruct, train
from recon import eval as recon_eval
from recon.data.loader import TrainBatches, load_config_split
from recon.losses import reconstruction_loss
from recon.models import model_spec
from recon.protocol import view_eyes
from recon.state import init_state, learning_rate, sigma
from softjax.mesh import deform_vertices, icosphere_arrays

pytestmark = pytest.mark.slow  # trains models or builds datasets (see pyproject.toml)

ROOT = Path(__file__).resolve().parents[1]
# A subprocess that prints nothing for this long is stuck (each phase prints; see _wait_exit).
IDLE_S = 900.0


@pytest.fixture(scope="module")
def trained(data_dir, tmp_path_factory):
    """An uninterrupted tiny run of 6 steps (the reference of the resume tests)."""
    workdir = tmp_path_factory.mktemp("run_reference")
    train.train_and_evaluate(tiny_config(data_dir), workdir)
    return workdir


def _metrics(workdir):
    lines = (Path(workdir) / "metrics.jsonl").read_text().splitlines()
    return [json.loads(x) for x in lines if x.strip()]


def _params(workdir):
    _, _, state = checkpoints.load_trained(workdir)
    return jax.tree.leaves(jax.device_get(state.variables)), int(state.step)


# ---------------------------------------------------------------- configs and model


def test_configs_follow_the_protocol():
    c = softras.get_config()
    assert (c.dataset, c.batch_size, c.num_steps, c.learning_rate) == (
        "shapenet_nmr",
        64,
        250_000,
        1e-4,
    )
    assert (c.decay_step, c.decay_factor, c.sigma_val) == (150_000, 0.3, 1e-4)
    assert (c.lambda_laplacian, c.lambda_flatten, c.dist_eps) == (5e-3, 5e-4, 1e-10)
    assert model_spec(c).template_vertices.shape == (642, 3)
    assert model_spec(c).template_faces.shape == (1280, 3)
    assert shading.get_config().model.shading and not c.model.shading
    q = quickstart.get_config()
    assert q.dataset == "synthetic_shapes" and model_spec(q).encoder_channels == (64, 128, 256)
    # lr and sigma x 0.3 from step 150k
    assert float(learning_rate(c, 149_999)) == pytest.approx(1e-4)
    assert float(learning_rate(c, 150_000)) == pytest.approx(3e-5)
    assert float(sigma(c, 150_000)) == pytest.approx(3e-5)


def test_deform_vertices_parametrisation():
    base = jnp.asarray(icosphere_arrays(3)[0]) * 0.5
    zeros = jnp.zeros_like(base)
    np.testing.assert_allclose(deform_vertices(base, zeros, jnp.zeros(3)), base, atol=1e-6)
    big = deform_vertices(base, jnp.full_like(base, 50.0), jnp.array([5.0, -5.0, 0.3]))
    assert float(jnp.abs(big).max()) <= 1.0  # always inside the cube
    c = jnp.tanh(0.3)
    shifted = deform_vertices(base, zeros, jnp.array([0.0, 0.0, 0.3]))
    z = base[:, 2]
    expected = jnp.where(z > 0, z * (1 - c), z * (1 + c)) + c
    np.testing.assert_allclose(shifted[:, 2], expected, atol=1e-6)


@pytest.mark.parametrize("variant", ["silhouette", "shading"])
def test_network_shapes(variant):
    config = tiny.get_config()
    config.model.shading = variant == "shading"
    spec = model_spec(config)
    state = init_state(config, spec)
    images = jnp.asarray(np.random.default_rng(0).uniform(0, 1, (3, 64, 64, 4)), jnp.float32)
    vertices, colors = spec.network().apply(state.variables, images, train=False)
    assert vertices.shape == (3, 642, 3) and vertices.dtype == jnp.float32
    assert float(jnp.abs(vertices).max()) <= 0.5  # meshes live in [-0.5, 0.5]^3
    enc = state.params["encoder"]
    if variant == "shading":
        assert colors.shape == (3, 1280, 3)
        assert "conv1b" in enc and "conv2b" in enc and "conv1b_bn" in enc
    else:
        assert colors is None and "conv1b" not in enc


def test_shading_loss_adds_a_colour_term():
    config = tiny.get_config()
    config.model.shading = True
    spec = model_spec(config)
    state = init_state(config, spec)
    rng = np.random.default_rng(1)
    images = jnp.asarray(rng.uniform(0, 1, (4, 64, 64, 4)), jnp.float32)
    batch = {
        "images_a": images[:2],
        "images_b": images[2:],
        "viewpoints_a": jnp.asarray(view_eyes(np.array([0, 3]))),
        "viewpoints_b": jnp.asarray(view_eyes(np.array([7, 12]))),
    }

    @jax.jit
    def loss_and_grads(params):
        def f(p):
            (v, c), _ = spec.network().apply(
                {"params": p, "batch_stats": state.batch_stats},
                jnp.concatenate([batch["images_a"], batch["images_b"]]),
                train=True,
                mutable=["batch_stats"],
            )
            return reconstruction_loss(spec, v, c, batch)

        return jax.value_and_grad(f, has_aux=True)(params)

    (loss, terms), grads = loss_and_grads(state.params)
    assert set(terms) == {"loss", "iou_loss", "laplacian", "flatten", "color"}
    expected = (
        terms["iou_loss"]
        + spec.lambda_laplacian * terms["laplacian"]
        + spec.lambda_flatten * terms["flatten"]
        + spec.lambda_color * terms["color"]
    )
    assert float(loss) == pytest.approx(float(expected), rel=1e-6)
    assert 0 < float(terms["color"]) < 1
    g = grads["decoder"]["fc_color"]["kernel"]
    assert bool(jnp.all(jnp.isfinite(g))) and float(jnp.abs(g).max()) > 0


def test_check_config_errors(data_dir):
    with pytest.raises(ValueError, match="multiple of the 2 devices"):
        train.check_config(tiny_config(data_dir, batch_size=3), 2)
    with pytest.raises(ValueError, match="log_every"):
        train.check_config(tiny_config(data_dir, log_every=0), 1)


def test_train_batches_rows_are_a_slice(data_dir):
    source = load_config_split(tiny_config(data_dir), "train")
    batches = TrainBatches(source, 4, seed=3)
    full, part = batches.batch(5), batches.batch(5, slice(2, 4))
    for k in full:
        np.testing.assert_array_equal(full[k][2:4], part[k])


# ---------------------------------------------------------------- training


def test_loss_decreases_on_a_fixed_batch(data_dir):
    config = tiny_config(data_dir, learning_rate=1e-3, decay_step=1000)
    spec = model_spec(config)
    source = load_config_split(config, "train")
    batch = TrainBatches(source, config.batch_size, seed=0).batch(0)
    mesh = train.data_mesh(jax.devices()[:1])
    step = train.make_train_step(config, spec, mesh)
    state = init_state(config, spec)
    gbatch = train._global_batch(mesh, batch, config.batch_size)
    losses = []
    for _ in range(8):
        state, terms = step(state, gbatch)
        losses.append(float(terms["loss"]))
    assert all(np.isfinite(losses))
    assert np.mean(losses[-3:]) < 0.8 * np.mean(losses[:3]), losses
    assert int(state.step) == 8


def test_training_writes_records(trained):
    records = _metrics(trained)
    assert [r["step"] for r in records] == [1, 2, 3, 4, 5, 6]
    for r in records:
        assert {"loss", "iou_loss", "laplacian", "flatten", "lr", "sigma"} <= set(r)
        assert np.isfinite(r["loss"])
    assert records[-1]["lr"] == pytest.approx(3e-4) and records[0]["lr"] == pytest.approx(1e-3)
    assert (trained / "train_loss.png").stat().st_size > 1000
    assert imageio.imread(trained / "train_loss.png").ndim == 3
    grid = imageio.imread(trained / "samples" / "step_0000006.png")
    assert grid.shape == (128, 128, 3)  # 2 inputs above their 2 silhouettes
    assert (trained / "samples" / "step_0000003.obj").is_file()
    steps = sorted(int(p.name) for p in (trained / "checkpoints").iterdir() if p.name.isdigit())
    assert steps == [3, 6]  # keep_checkpoints = 2
    saved = checkpoints.load_config(trained)
    assert model_spec(saved) == model_spec(tiny.get_config())


def test_resume_and_interruption_equal_an_uninterrupted_run(
    trained, data_dir, tmp_path, monkeypatch
):
    workdir = tmp_path / "run"
    # 1) interrupted after 2 steps (Ctrl-C in the data loop): a checkpoint of step 2 is saved
    real_iterate = TrainBatches.iterate

    def interrupted(self, start_step=0, num_steps=None, prefetch=2, rows=None):
        for i, batch in enumerate(real_iterate(self, start_step, num_steps, prefetch, rows)):
            if start_step + i == 2:
                raise KeyboardInterrupt
            yield batch

    monkeypatch.setattr(TrainBatches, "iterate", interrupted)
    with pytest.raises(KeyboardInterrupt):
        train.train_and_evaluate(tiny_config(data_dir), workdir)
    monkeypatch.setattr(TrainBatches, "iterate", real_iterate)
    assert (workdir / "checkpoints" / "2").is_dir()
    # 2) resumed to the end
    train.train_and_evaluate(tiny_config(data_dir), workdir)
    ref, got = _metrics(trained), _metrics(workdir)
    assert [r["step"] for r in got] == [1, 2, 3, 4, 5, 6]
    for a, b in zip(ref, got, strict=True):
        assert a["loss"] == b["loss"], (a, b)
    (pa, sa), (pb, sb) = _params(trained), _params(workdir)
    assert sa == sb == 6
    for a, b in zip(pa, pb, strict=True):
        np.testing.assert_array_equal(a, b)


def _wait_exit(proc: subprocess.Popen, log: Path, idle_s: float = IDLE_S) -> int:
    """Waits for ``proc`` to exit; fails only if its log (stdout and stderr) has not grown for
    ``idle_s`` seconds (stuck), never because a busy machine makes the whole run slow."""
    size, last = -1, time.monotonic()
    while proc.poll() is None:
        now_size = log.stat().st_size if log.is_file() else 0
        if now_size != size:
            size, last = now_size, time.monotonic()
        elif time.monotonic() - last > idle_s:
            proc.kill()
            proc.wait()
            pytest.fail(f"no output for {idle_s} s:\n{log.read_text(errors='replace')[-3000:]}")
        time.sleep(0.2)
    return proc.returncode


def test_ctrl_c_saves_a_checkpoint(data_dir, tmp_path):
    workdir = tmp_path / "run"
    cmd = stress.train_command(
        workdir, data_dir, num_steps=100000, checkpoint_every=100000, sample_every=100000
    )
    log = tmp_path / "log.txt"
    with stress.logged_process(cmd, log) as proc:
        # the event: two trained steps in metrics.jsonl (the safety only catches a hang)
        assert stress.wait_for(lambda: len(stress.logged_steps(workdir)) >= 2, proc, 3600)
        assert proc.poll() is None, log.read_text()[-3000:]
        proc.send_signal(signal.SIGINT)
        code = _wait_exit(proc, log)
    err = log.read_text()
    assert code == 130, err[-2000:]
    assert "interrupted; saved the checkpoint of step" in err and "Traceback" not in err
    steps = [int(p.name) for p in (workdir / "checkpoints").iterdir() if p.name.isdigit()]
    assert len(steps) == 1 and steps[0] >= 2
    assert _params(workdir)[1] == steps[0]


def test_resume_refuses_a_different_model(trained, data_dir):
    config = tiny_config(data_dir)
    config.model.encoder_channels = (8, 8, 8)
    with pytest.raises(ValueError, match="different model"):
        train.train_and_evaluate(config, trained)


def test_one_and_two_devices_agree(data_dir, tmp_path):
    env = dict(os.environ)
    env["PYTHONPATH"] = str(ROOT) + os.pathsep + env.get("PYTHONPATH", "")
    log, result = tmp_path / "log.txt", tmp_path / "result.json"
    script = [sys.executable, str(ROOT / "tests" / "recon_two_devices.py"), data_dir, str(result)]
    with stress.logged_process(script, log, env) as proc:  # the script reports each phase there
        code = _wait_exit(proc, log)
    assert code == 0, log.read_text()[-3000:]
    res = json.loads(result.read_text())
    one, two = res["1"], res["2"]
    for k in ("loss", "iou_loss", "laplacian", "flatten"):
        assert one["terms"][k] == pytest.approx(two["terms"][k], rel=1e-5), k
    assert one["grads"].keys() == two["grads"].keys()
    compared = 0
    for name in one["grads"]:  # the gradient of every parameter (batch norm included) ...
        if "['conv" in name and name.endswith("['bias']") and "_bn" not in name:
            continue  # ... but the conv biases feeding a batch norm: zero up to rounding noise
        a, b = np.asarray(one["grads"][name]), np.asarray(two["grads"][name])
        scale = np.abs(a).max()
        assert scale > 0, name
        np.testing.assert_allclose(a / scale, b / scale, atol=2e-4, err_msg=name)
        compared += 1
    assert compared >= 15
    for a, b in zip(one["batch_stats"], two["batch_stats"], strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-7)


# ---------------------------------------------------------------- evaluation and reconstruction


def test_eval_prints_the_table(trained, capsys):
    results = recon_eval.main(["--workdir", str(trained), "--batch_size", "16"])
    out = capsys.readouterr().out
    assert "Airplane" in out and "Car" in out and "mean" in out and "SoftRas" in out
    saved = json.loads((trained / "eval_test.json").read_text())
    assert saved["step"] == 6 and saved["split"] == "test"
    ious = [r["iou"] for r in saved["classes"].values()]
    assert saved["mean_iou"] == pytest.approx(np.mean(ious))
    for r in saved["classes"].values():
        assert r["objects"] == 1 and r["views"] == 24 and 0 <= r["iou"] <= 100
    assert results["mean_iou"] == saved["mean_iou"]
    assert (trained / "eval_test" / "02958343_car.obj").is_file()
    assert (trained / "eval_test" / "02691156_airplane_input.png").is_file()


def test_reconstruct_writes_meshes(trained, data_dir, tmp_path, capsys):
    import trimesh

    source = load_config_split(tiny_config(data_dir), "test")
    images = source.images(np.array([0, 1]), np.array([0, 5]))
    folder = tmp_path / "inputs"
    folder.mkdir()
    for i, im in enumerate(images):
        imageio.imwrite(folder / f"img{i}.png", im)
    ckpt = trained / "checkpoints" / "6"
    out = reconstruct.main(
        [
            "--checkpoint",
            str(ckpt),
            "--image",
            str(folder / "img0.png"),
            "--out",
            str(tmp_path / "car.obj"),
            "--turntable",
        ]
    )
    assert out == [tmp_path / "car.obj"]
    mesh = trimesh.load(tmp_path / "car.obj", force="mesh", process=False)
    assert mesh.vertices.shape == (642, 3) and mesh.faces.shape == (1280, 3)
    gif = imageio.mimread(tmp_path / "car.gif")
    assert len(gif) == 36
    # a folder of PNGs, and an NMR npz
    paths = reconstruct.main(
        ["--workdir", str(trained), "--image", str(folder), "--out", str(tmp_path / "many")]
    )
    assert [p.name for p in paths] == ["img0.obj", "img1.obj"]
    npz = tmp_path / "x_test_images.npz"
    np.savez(npz, source.object_images(np.array([0]))[0].transpose(0, 3, 1, 2))
    paths = reconstruct.main(
        ["--workdir", str(trained), "--image", str(npz), "--out", str(tmp_path / "npz")]
    )
    assert len(paths) == 24
    assert trimesh.load(paths[3], force="mesh", process=False).vertices.shape == (642, 3)


@pytest.mark.parametrize(
    "image, message",
    [
        (np.zeros((32, 32, 4), np.uint8), "must be 64x64 pixels"),
        (np.zeros((64, 64, 3), np.uint8), "needs an alpha channel"),
    ],
)
def test_reconstruct_rejects_bad_images(image, message, tmp_path):
    path = tmp_path / "bad.png"
    imageio.imwrite(path, image)
    with pytest.raises(reconstruct.InputError, match=message):
        reconstruct.read_inputs(path)
    with pytest.raises(SystemExit, match=message):
        reconstruct.main(
            ["--workdir", str(tmp_path), "--image", str(path), "--out", str(tmp_path / "o.obj")]
        )


def test_reconstruct_rejects_bad_npz_and_missing_paths(tmp_path):
    bad = tmp_path / "bad.npz"
    np.savez(bad, np.zeros((2, 3, 64, 64), np.uint8))
    with pytest.raises(reconstruct.InputError, match=r"uint8 \[N\*24, 4, 64, 64\]"):
        reconstruct.read_inputs(bad)
    with pytest.raises(reconstruct.InputError, match="no such file"):
        reconstruct.read_inputs(tmp_path / "missing.png")
    with pytest.raises(reconstruct.InputError, match="no .png files"):
        reconstruct.read_inputs(tmp_path)


def test_load_trained_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match="not a recon.train work directory"):
        checkpoints.load_trained(tmp_path)
    with pytest.raises(FileNotFoundError, match="is not a checkpoint"):
        checkpoints.load_trained(checkpoint=tmp_path / "nothing")


def test_cli_errors_name_the_problem(tmp_path):
    """Missing dataset files and a missing work directory: a one-line error, no traceback."""
    train_cmd = [
        sys.executable, "-m", "recon.train", "--config", str(ROOT / "configs" / "softras.py"),
        "--workdir", str(tmp_path / "run"), f"--config.data_dir={tmp_path / 'tfds'}",
    ]  # fmt: skip
    eval_cmd = [sys.executable, "-m", "recon.eval", "--workdir", str(tmp_path / "nothing")]
    for cmd, message in (
        (train_cmd, "file(s) of the shapenet_nmr dataset are missing"),
        (eval_cmd, "is not a recon.train work directory"),
    ):
        out = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=300)
        assert out.returncode == 1, out.stderr[-2000:]
        assert message in out.stderr and "Traceback" not in out.stderr, out.stderr[-2000:]
