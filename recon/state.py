"""Training state, optimiser and the learning-rate / sigma schedule of the reconstruction model."""

from __future__ import annotations

from typing import Any

import flax.struct
import jax
import jax.numpy as jnp
import optax

from recon.models import ModelSpec


@flax.struct.dataclass
class TrainState:
    """Everything a checkpoint holds: ``step`` (int32 scalar, steps done), the network's
    ``params`` and ``batch_stats``, and the optimiser state."""

    step: jax.Array
    params: Any
    batch_stats: Any
    opt_state: Any

    @property
    def variables(self) -> dict[str, Any]:
        """The Flax variables for ``apply``."""
        return {"params": self.params, "batch_stats": self.batch_stats}


def decay(config: Any, step: jax.Array | int) -> jax.Array:
    """``decay_factor`` from step ``decay_step`` on, else 1 (the multiplier of lr and sigma)."""
    return jnp.where(jnp.asarray(step) >= config.decay_step, config.decay_factor, 1.0)


def learning_rate(config: Any, step: jax.Array | int) -> jax.Array:
    """The learning rate of step ``step`` (SoftRas: 1e-4, times 0.3 from step 150k)."""
    return config.learning_rate * decay(config, step)


def sigma(config: Any, step: jax.Array | int) -> jax.Array:
    """The renderer's sigma at step ``step`` (decays with the learning rate)."""
    return config.sigma_val * decay(config, step)


def make_optimizer(config: Any) -> optax.GradientTransformation:
    """Adam with the step schedule of :func:`learning_rate`."""
    return optax.adam(lambda count: learning_rate(config, count), b1=config.beta1, b2=config.beta2)


def init_state(config: Any, spec: ModelSpec, seed: int | None = None) -> TrainState:
    """A fresh state: network initialised from ``seed`` (default ``config.seed``)."""
    net = spec.network()
    images = jnp.zeros((1, spec.image_size, spec.image_size, 4), jnp.float32)
    key = jax.random.key(config.seed if seed is None else seed)
    variables = jax.jit(lambda k: net.init(k, images, train=False))(key)
    params, batch_stats = variables["params"], variables["batch_stats"]
    opt_state = make_optimizer(config).init(params)
    return TrainState(jnp.zeros((), jnp.int32), params, batch_stats, opt_state)
