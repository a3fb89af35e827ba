"""End-to-end oracles of the reconstruction pipeline: results that are known exactly.

* the ground-truth meshes of the synthetic split, scored by the very function that scores
  predictions, reach >= 99 voxel IoU (dataset <-> eval: voxeliser, axis order, per-class means);
* the ground-truth meshes rendered by the training silhouette renderer from each stored view's
  camera reproduce the stored alpha (dataset <-> training: azimuth sign, elevation, look_at);
* ``recon.reconstruct`` writes the predictor's mesh; the optimiser applies the scheduled learning
  rate before and after the decay; training-time evaluation (``eval_every``, ``final_eval``)
  equals ``recon.eval``; the shading variant trains with its colour loss and writes colours.
"""

from __future__ import annotations

import json
from pathlib import Path

import imageio.v2 as imageio
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from helpers import tiny_config

from configs import tiny
from recon import checkpoints, reconstruct, train
from recon import eval as recon_eval
from recon.data import class_shapes
from recon.data.loader import load_config_split
from recon.data.tfds_synthetic import object_seed, pad_mesh
from recon.inference import Predictor
from recon.models import model_spec, render_eye_sets
from recon.protocol import NUM_VIEWS, view_eyes
from recon.state import learning_rate, make_optimizer
from softjax.io import load_obj
from softjax.mesh import Mesh

pytestmark = pytest.mark.slow  # trains models or builds datasets (see pyproject.toml)


@pytest.fixture(scope="module")
def test_source(data_dir):
    return load_config_split(tiny_config(data_dir), "test")


def ground_truth_meshes(source, split: str = "test") -> list[Mesh]:
    """The generator's meshes of every object of a ``synthetic_shapes`` split, in the split's
    order, padded (invisible faces, as the builder does) to one face count."""
    kwargs = tiny.get_config().dataset_kwargs
    out = []
    for class_id, count in zip(source.class_ids, source.counts, strict=True):
        seed = object_seed(int(kwargs.seed), split, class_id)
        out += class_shapes.make_dataset_objects(class_id, int(count), seed)
    padded = [pad_mesh(m) for m in out]
    faces = max(m.faces.shape[1] for m in padded)
    return [_pad_faces(m, faces) for m in padded]


def _pad_faces(mesh: Mesh, faces: int) -> Mesh:
    # more copies of the builder's invisible padding triangle (its last face)
    f = np.asarray(mesh.faces)
    extra = np.repeat(f[:, -1:], faces - f.shape[1], 1)
    t = np.asarray(mesh.textures)
    textures = np.concatenate([t, np.zeros((1, extra.shape[1]) + t.shape[2:], t.dtype)], 1)
    return Mesh(
        vertices=np.asarray(mesh.vertices),
        faces=np.concatenate([f, extra], 1),
        textures=textures,
        texture_type=mesh.texture_type,
    )


# ---------------------------------------------------------------- dataset <-> eval / training


def test_ground_truth_meshes_score_full_iou_through_the_eval_path(test_source):
    meshes = ground_truth_meshes(test_source)
    fv = np.stack([np.asarray(m.face_vertices)[0] for m in meshes])  # [N, F, 3, 3]

    def ground_truth(batch):
        return fv[batch["object"]], None

    results = recon_eval.evaluate_meshes(ground_truth, test_source, batch_size=24, progress=False)
    assert set(results["classes"]) == set(test_source.class_ids)
    for r in results["classes"].values():
        assert r["views"] == 24 * r["objects"] and r["iou"] >= 99.0, results
    assert results["mean_iou"] >= 99.0
    # the oracle can fail: the same meshes with x and z swapped (another axis order) score low
    swapped = recon_eval.evaluate_meshes(
        lambda b: (fv[b["object"]][..., ::-1], None), test_source, batch_size=24, progress=False
    )
    assert swapped["mean_iou"] < 90.0, swapped


def _iou(a, b):
    # of the silhouettes (alpha > 0.5): the soft IoU of a soft image with itself is below 1
    a, b = a > 0.5, b > 0.5
    return float((a & b).sum() / (a | b).sum())


def test_ground_truth_meshes_rendered_for_training_reproduce_the_stored_alpha(test_source):
    spec = model_spec(tiny.get_config())
    config = spec.silhouette_config()
    meshes = ground_truth_meshes(test_source)
    render = jax.jit(lambda mesh, eyes: render_eye_sets(mesh, eyes, config)[:, 0, ..., 3])
    views = np.arange(NUM_VIEWS)
    mirrored = []
    for obj, mesh in enumerate(meshes):
        silhouette = Mesh.create(mesh.vertices, mesh.faces)  # as in training: no colour
        stored = test_source.object_images([obj])[0, ..., 3].astype(np.float32) / 255.0
        alpha = np.asarray(render(silhouette, jnp.asarray(view_eyes(views))[:, None]))
        ious = [_iou(alpha[v], stored[v]) for v in views]
        assert min(ious) >= 0.99, (obj, np.round(ious, 4))
        # control: the opposite azimuth sign (view k seen from +15k degrees) does not match
        flipped = np.asarray(render(silhouette, jnp.asarray(view_eyes(-views))[:, None]))
        mirrored.append(min(_iou(flipped[v], stored[v]) for v in views))
    assert min(mirrored) < 0.95, mirrored


# ---------------------------------------------------------------- optimiser


@pytest.mark.parametrize("step", [3, 4, 5])
def test_the_optimiser_applies_the_decayed_learning_rate(step):
    """Adam's update at optimiser count ``step`` for a probe gradient, against Adam's formula
    with the scheduled rate: 1e-3 before decay_step 4, 3e-4 from it (tiny config)."""
    config = tiny.get_config()
    assert config.decay_step == 4
    tx = make_optimizer(config)
    params = {"w": jnp.zeros(4)}
    state = tx.init(params)
    zero = {"w": jnp.zeros(4)}
    for _ in range(step):  # `step` steps with zero gradients: Adam's moments stay 0
        _, state = tx.update(zero, state, params)
    g = np.array([1e-3, -2.0, 0.5, 7.0])
    updates, _ = tx.update({"w": jnp.asarray(g, jnp.float32)}, state, params)
    t = step + 1  # Adam's bias correction uses the count after this update
    m_hat = (1 - config.beta1) * g / (1 - config.beta1**t)
    v_hat = (1 - config.beta2) * g**2 / (1 - config.beta2**t)
    direction = m_hat / (np.sqrt(v_hat) + 1e-8)
    applied = -np.asarray(updates["w"], np.float64) / direction
    expected = 1e-3 if step < 4 else 3e-4
    np.testing.assert_allclose(applied, expected, rtol=1e-5)
    assert float(learning_rate(config, step)) == pytest.approx(expected)  # what is logged
    # and the optimiser counts like the train state: one count per step
    counts = [x for x in jax.tree.leaves(state) if jnp.ndim(x) == 0]
    assert counts and all(int(c) == step for c in counts)
    assert isinstance(tx, optax.GradientTransformation)


# ---------------------------------------------------------------- training runs


@pytest.fixture(scope="module")
def evaluated_run(data_dir, tmp_path_factory):
    """A tiny run of 5 steps with an evaluation every 3 steps and a final one."""
    workdir = tmp_path_factory.mktemp("run_eval")
    config = tiny_config(data_dir, num_steps=5, eval_every=3, final_eval=True)
    train.train_and_evaluate(config, workdir)
    return workdir


def _records(workdir):
    lines = (Path(workdir) / "metrics.jsonl").read_text().splitlines()
    return [json.loads(x) for x in lines if x.strip()]


def test_training_time_evaluation_equals_recon_eval(evaluated_run, data_dir, capsys):
    records = _records(evaluated_run)
    evals = [r for r in records if "eval_mean_iou" in r]
    assert [r["step"] for r in evals] == [3, 5]  # eval_every 3, then the final evaluation
    assert [r["step"] for r in records if "loss" in r] == [1, 2, 3, 4, 5]
    for r in evals:
        assert r["eval_split"] == "test"
        assert set(r["eval_class_iou"]) == {"02691156", "02958343"}
        assert 0 < r["eval_mean_iou"] < 100
        assert r["eval_mean_iou"] == pytest.approx(np.mean(list(r["eval_class_iou"].values())))
    # the final record is what recon.eval computes from the final checkpoint
    results = recon_eval.main(["--workdir", str(evaluated_run), "--batch_size", "24"])
    assert results["step"] == 5
    assert results["mean_iou"] == pytest.approx(evals[-1]["eval_mean_iou"], abs=1e-9)
    for class_id, iou in evals[-1]["eval_class_iou"].items():
        assert results["classes"][class_id]["iou"] == pytest.approx(iou, abs=1e-9)


def test_reconstruct_writes_the_predictors_mesh(evaluated_run, test_source, tmp_path):
    image = test_source.images([1], [7])[0]  # uint8 RGBA
    png = tmp_path / "car.png"
    imageio.imwrite(png, image)
    (out,) = reconstruct.main(
        ["--workdir", str(evaluated_run), "--image", str(png), "--out", str(tmp_path / "c.obj")]
    )
    config, spec, state = checkpoints.load_trained(evaluated_run)
    assert int(state.step) == 5
    predictor = Predictor(spec, state.variables, batch_size=1)
    vertices, _ = predictor(image[None].astype(np.float32) / 255.0)
    mesh = load_obj(str(out), normalization=False)
    np.testing.assert_array_equal(np.asarray(mesh.vertices)[0], vertices[0])
    np.testing.assert_array_equal(np.asarray(mesh.faces)[0], spec.template_faces)


def test_shading_run_trains_the_colour_loss_and_writes_coloured_meshes(data_dir, tmp_path):
    config = tiny_config(data_dir, num_steps=2, sample_every=2, checkpoint_every=2)
    config.model.shading = True
    train.train_and_evaluate(config, tmp_path)
    records = [r for r in _records(tmp_path) if "loss" in r]
    assert [r["step"] for r in records] == [1, 2]
    for r in records:
        assert 0 < r["color"] < 1 and np.isfinite(r["loss"])
        assert r["loss"] > r["iou_loss"] + config.model.lambda_color * r["color"] * 0.999
    obj = tmp_path / "samples" / "step_0000002.obj"
    text = obj.read_text()
    assert "mtllib" in text and "usemtl" in text
    mtl = next(tmp_path.joinpath("samples").glob("*.mtl"))
    assert "map_Kd" in mtl.read_text()
    mesh = load_obj(str(obj), normalization=False, load_texture=True, texture_res=1)
    colours = np.asarray(mesh.textures).reshape(-1, 3)
    assert colours.std(0).max() > 1e-3  # per-face colours, not one flat colour
