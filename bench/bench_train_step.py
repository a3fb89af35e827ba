"""Seconds per training step of the reconstruction model (``recon.train``'s jitted step).

    python bench/bench_train_step.py [--config configs/softras.py] [--batch-size 64]
        [--steps 20] [--warmup 3] [--json bench/results/train_step.json]

Synthetic inputs (random RGBA images and viewpoints of the NMR protocol; no dataset needed), the
config's network, template and renderer, data parallel over every local device as in training.
Times are medians over ``--steps`` steps after ``--warmup`` steps (the first compiles), each
ended with ``block_until_ready``; the data pipeline is not included. Prints a table and writes
JSON. The reference: the original SoftRas took about 0.45 s per step at batch 64
(``docs/reconstruction.md``); the target on one H100 is 20 ms.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import platform
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.dirname(HERE))


def load_config(path: str):
    spec = importlib.util.spec_from_file_location("bench_config", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.get_config()


def measure(config, batch_size: int, steps: int, warmup: int) -> dict:
    """Median seconds per step of ``recon.train``'s jitted step for ``config`` at ``batch_size``
    (synthetic inputs, every local device); returns a JSON-serialisable dict."""
    import jax
    import numpy as np

    from recon import train
    from recon.models import model_spec
    from recon.protocol import IMAGE_SIZE, NUM_VIEWS, view_eyes
    from recon.state import init_state

    config = config.copy_and_resolve_references()
    config.batch_size = batch_size
    mesh = train.data_mesh()
    train.check_config(config, mesh.size)
    spec = model_spec(config)
    rng = np.random.default_rng(0)
    b = batch_size
    batch = {
        "images_a": rng.uniform(0, 1, (b, IMAGE_SIZE, IMAGE_SIZE, 4)).astype(np.float32),
        "images_b": rng.uniform(0, 1, (b, IMAGE_SIZE, IMAGE_SIZE, 4)).astype(np.float32),
        "viewpoints_a": view_eyes(rng.integers(0, NUM_VIEWS, b)),
        "viewpoints_b": view_eyes(rng.integers(0, NUM_VIEWS, b)),
    }
    gbatch = train._global_batch(mesh, batch, b)
    state = jax.device_put(init_state(config, spec), train.NamedSharding(mesh, train.P()))
    step = train.make_train_step(config, spec, mesh)
    t0 = time.perf_counter()
    state, terms = jax.block_until_ready(step(state, gbatch))
    compile_s = time.perf_counter() - t0
    for _ in range(max(warmup - 1, 0)):
        state, terms = jax.block_until_ready(step(state, gbatch))
    times = []
    for _ in range(steps):
        t0 = time.perf_counter()
        state, terms = jax.block_until_ready(step(state, gbatch))
        times.append(time.perf_counter() - t0)
    return {
        "config": config.name,
        "backend": config.backend,
        "batch_size": b,
        "renders_per_step": 4 * b,
        "template_faces": int(spec.template_faces.shape[0]),
        "devices": [str(d) for d in mesh.devices.ravel()],
        "platform": jax.devices()[0].platform,
        "device_kind": jax.devices()[0].device_kind,
        "jax": jax.__version__,
        "python": platform.python_version(),
        "first_step_s": compile_s,
        "median_s": float(np.median(times)),
        "min_s": float(np.min(times)),
        "steps": steps,
        "loss": float(terms["loss"]),
        "hours_for_250k_steps": float(np.median(times)) * 250_000 / 3600,
    }


def main(argv: list[str] | None = None) -> dict:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--config", default=os.path.join(HERE, "..", "configs", "softras.py"))
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--steps", type=int, default=20)
    p.add_argument("--warmup", type=int, default=3)
    p.add_argument("--json", default=os.path.join(HERE, "results", "train_step.json"))
    args = p.parse_args(argv)

    config = load_config(args.config)
    result = measure(config, args.batch_size, args.steps, args.warmup)
    b = result["batch_size"]
    print(f"{'config':<12} {'batch':>5} {'device':<24} {'s/step':>8} {'min':>8} {'250k h':>7}")
    print(
        f"{result['config']:<12} {b:>5} {result['device_kind'][:24]:<24} "
        f"{result['median_s']:>8.4f} {result['min_s']:>8.4f} {result['hours_for_250k_steps']:>7.2f}"
    )
    os.makedirs(os.path.dirname(os.path.abspath(args.json)), exist_ok=True)
    with open(args.json, "w") as f:
        json.dump(result, f, indent=2)
    print(f"wrote {args.json}")
    return result


if __name__ == "__main__":
    main()
