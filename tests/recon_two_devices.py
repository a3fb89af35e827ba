"""One training step on one device and on two (a separate process: XLA_FLAGS must be set before
JAX starts). Usage: python tests/recon_two_devices.py DATA_DIR OUT.json; writes the results to
OUT.json and a line per phase to stderr (the test's evidence of progress)."""

import json
import os
import sys

os.environ["XLA_FLAGS"] = (
    os.environ.get("XLA_FLAGS", "") + " --xla_force_host_platform_device_count=2"
).strip()

import jax  # noqa: E402
import numpy as np  # noqa: E402
import optax  # noqa: E402

from configs import tiny  # noqa: E402
from recon import train  # noqa: E402
from recon.data.loader import (
    TrainBatches,  # noqa: E402
    load_config_split,  # noqa: E402
)
from recon.models import model_spec  # noqa: E402
from recon.state import init_state  # noqa: E402


def main(data_dir: str, out_path: str) -> None:
    """Runs both steps and writes ``out_path``."""
    assert jax.device_count() == 2, jax.devices()
    # plain SGD with rate 1: the parameter change is minus the gradient (Adam's first steps
    # would amplify rounding noise in near-zero gradients to +-lr)
    train.make_optimizer = lambda config: optax.sgd(1.0)
    config = tiny.get_config()
    config.data_dir = data_dir
    spec = model_spec(config)
    source = load_config_split(config, "train")
    batch = TrainBatches(source, config.batch_size, seed=0).batch(0)
    out = {}
    for n in (1, 2):
        mesh = train.data_mesh(jax.devices()[:n])
        step = train.make_train_step(config, spec, mesh)
        state = jax.device_put(init_state(config, spec), train.NamedSharding(mesh, train.P()))
        gbatch = train._global_batch(mesh, batch, config.batch_size)
        assert len(gbatch["images_a"].sharding.device_set) == n
        before = jax.device_get(state.params)
        print(f"{n} device(s): compiling and running the step", file=sys.stderr, flush=True)
        state, terms = step(state, gbatch)
        after = jax.device_get(state.params)
        print(f"{n} device(s): done", file=sys.stderr, flush=True)
        grads = jax.tree.map(lambda a, b: np.asarray(a, np.float64) - b, before, after)
        stats = jax.device_get(state.batch_stats)
        out[n] = {
            "terms": {k: float(v) for k, v in terms.items()},
            "grads": {
                jax.tree_util.keystr(p): g.ravel().tolist()
                for p, g in jax.tree_util.tree_leaves_with_path(grads)
            },
            "batch_stats": [np.asarray(x).ravel().tolist() for x in jax.tree.leaves(stats)],
        }
    with open(out_path, "w") as f:
        json.dump(out, f)


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
