"""The reconstruction network starts where SoftRas's PyTorch network starts: PyTorch's default
``nn.Conv2d`` / ``nn.Linear`` initialisation, batch norm at scale 1 and bias 0 (momentum 0.1,
eps 1e-5), Adam (0.9, 0.999, eps 1e-8)."""

from __future__ import annotations

import jax
import numpy as np
import pytest

from configs import softras, tiny
from recon.models import model_spec
from recon.state import init_state, make_optimizer


def _layers(params, prefix=""):
    for name, value in params.items():
        if isinstance(value, dict) and "kernel" in value:
            yield prefix + name, value
        elif isinstance(value, dict):
            yield from _layers(value, prefix + name + "/")


@pytest.fixture(scope="module")
def states():
    out = {}
    for init in ("pytorch", "flax"):
        config = tiny.get_config()  # small widths, the 642-vertex template
        config.model.param_init = init
        out[init] = init_state(config, model_spec(config))
    return out


def test_pytorch_initialisation_of_every_layer(states):
    """Weights and biases uniform in +-1/sqrt(fan_in) (kaiming uniform, a = sqrt(5)): bounded
    by it, spread over it (std of a uniform = bound / sqrt(3)), biases not zero."""
    params = states["pytorch"].params
    names = []
    for name, layer in _layers(params):
        kernel = np.asarray(layer["kernel"])
        fan_in = int(np.prod(kernel.shape[:-1]))  # Conv: 5 * 5 * C_in, Dense: D_in
        bound = 1.0 / np.sqrt(fan_in)
        for what, x in (("kernel", kernel), ("bias", np.asarray(layer["bias"]))):
            assert np.abs(x).max() <= bound * (1 + 1e-6), (name, what)
            if x.size >= 500:  # enough draws for the statistics to be tight
                assert abs(x.std() - bound / np.sqrt(3)) < 0.1 * bound, (name, what)
                assert abs(x.mean()) < 0.1 * bound, (name, what)
        assert np.abs(np.asarray(layer["bias"])).max() > 0.1 * bound, name
        names.append(name)
    assert set(names) >= {
        "encoder/conv1",
        "encoder/conv2",
        "encoder/conv3",
        "encoder/fc1",
        "encoder/fc2",
        "encoder/fc3",
        "decoder/fc1",
        "decoder/fc2",
        "decoder/fc_centroid",
        "decoder/fc_bias",
    }
    conv1 = np.asarray(params["encoder"]["conv1"]["kernel"])
    assert conv1.shape == (5, 5, 4, 4)
    assert np.abs(conv1).max() > 0.9 / np.sqrt(5 * 5 * 4)  # the bound uses 5 * 5 * 4 inputs


def test_batch_norm_and_flax_alternative(states):
    params = states["pytorch"].params["encoder"]
    for i in (1, 2, 3):
        bn = params[f"conv{i}_bn"]
        np.testing.assert_array_equal(bn["scale"], 1.0)
        np.testing.assert_array_equal(bn["bias"], 0.0)
        stats = states["pytorch"].batch_stats["encoder"][f"conv{i}_bn"]
        np.testing.assert_array_equal(stats["mean"], 0.0)
        np.testing.assert_array_equal(stats["var"], 1.0)
    flax_params = states["flax"].params
    np.testing.assert_array_equal(flax_params["decoder"]["fc_bias"]["bias"], 0.0)
    same = jax.tree.map(lambda a, b: a.shape == b.shape, states["pytorch"].params, flax_params)
    assert all(jax.tree.leaves(same))


def test_unknown_initialisation_is_named():
    config = tiny.get_config()
    config.model.param_init = "xavier"
    with pytest.raises(ValueError, match="param_init must be one of"):
        init_state(config, model_spec(config))


@pytest.mark.parametrize("path", [("model", "param_init"), ("lambda_flatten",)])
def test_a_config_without_a_model_field_is_named(path):
    """An old run's config.json may lack fields added since: a ValueError names the field."""
    config = softras.get_config()
    parent = config
    for key in path[:-1]:
        parent = parent[key]
    del parent[path[-1]]
    with pytest.raises(ValueError, match=f"no field '{path[-1]}'"):
        model_spec(config)


def test_adam_constants_match_pytorch():
    """One Adam step on a known gradient: PyTorch's update lr * m_hat / (sqrt(v_hat) + 1e-8)
    with betas (0.9, 0.999), i.e. -lr * sign(g) on the first step, and eps visible for tiny g."""
    config = softras.get_config()
    tx = make_optimizer(config)
    params = {"w": np.zeros(3, np.float32)}
    g = {"w": np.array([1e-3, -2.0, 1e-9], np.float32)}
    updates, state = tx.update(g, tx.init(params), params)
    lr = config.learning_rate
    want = -lr * g["w"] / (np.abs(g["w"]) + 1e-8)
    np.testing.assert_allclose(updates["w"], want, rtol=1e-5)
    # second step: m = 0.1 g1 * 0.9 + 0.1 g2, v likewise with 0.999, bias-corrected
    g2 = {"w": np.array([3e-3, 1.0, 0.0], np.float32)}
    updates2, _ = tx.update(g2, state, params)
    m = (0.9 * 0.1 * g["w"] + 0.1 * g2["w"]) / (1 - 0.9**2)
    v = (0.999 * 0.001 * g["w"] ** 2 + 0.001 * g2["w"] ** 2) / (1 - 0.999**2)
    np.testing.assert_allclose(updates2["w"], -lr * m / (np.sqrt(v) + 1e-8), rtol=1e-4)
