"""Cost of a padded batch of different meshes (``face_counts``) against one call per mesh.

    python bench/bench_ragged.py [--sizes 64,128] [--repeats 5] [--json out.json]

Four geodesic spheres of 320 / 1,280 / 5,120 / 20,480 faces (bench/meshes.py) are rendered
(a) as one padded batch, every mesh padded to 20,480 faces, and (b) one ``soft_rasterize``
call per mesh, each compiled for its own size; the table gives the medians of the padded call,
of the sum of the separate calls, and their ratio, forward and forward+backward (``jax.grad``
of a fixed random weighting of the images), on the backend ``SOFTJAX_BACKEND`` selects
(default: the XLA path off a GPU). Prints a table and JSON.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.dirname(HERE))

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402

import softjax as sj  # noqa: E402
from bench.meshes import sphere_scene  # noqa: E402

FACES = (320, 1280, 5120, 20480)


def _median_s(fn, args, repeats: int) -> float:
    jax.block_until_ready(fn(*args))  # compile
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        jax.block_until_ready(fn(*args))
        times.append(time.perf_counter() - t0)
    return float(np.median(times))


def _functions(size: int, sigma: float, weights, counts=None):
    kw = dict(image_size=size, sigma_val=sigma, face_counts=counts)
    fwd = jax.jit(lambda v, t: sj.soft_rasterize(v, t, **kw))
    loss = lambda v, t: jnp.sum(sj.soft_rasterize(v, t, **kw) * weights)  # noqa: E731
    return fwd, jax.jit(jax.grad(loss, (0, 1)))


def run_case(size: int, sigma: float, repeats: int) -> dict:
    meshes = [sphere_scene(n) for n in FACES]  # each ([1, F, 3, 3], [1, F, 1, 3])
    f_max = max(fv.shape[1] for fv, _ in meshes)
    fv = np.zeros((len(meshes), f_max, 3, 3), np.float32)
    tex = np.zeros((len(meshes), f_max, 1, 3), np.float32)
    for b, (v, t) in enumerate(meshes):
        fv[b, : v.shape[1]], tex[b, : t.shape[1]] = v[0], t[0]
    counts = jnp.asarray([v.shape[1] for v, _ in meshes], jnp.int32)
    rng = np.random.default_rng(0)
    weights = jnp.asarray(rng.normal(size=(len(meshes), size, size, 4)), jnp.float32)
    fwd, grad = _functions(size, sigma, weights, counts)
    out = {
        "size": size,
        "faces": [int(v.shape[1]) for v, _ in meshes],
        "padded_fwd_s": _median_s(fwd, (fv, tex), repeats),
        "padded_fwd_bwd_s": _median_s(grad, (fv, tex), repeats),
        "separate_fwd_s": 0.0,
        "separate_fwd_bwd_s": 0.0,
    }
    for b, (v, t) in enumerate(meshes):
        fwd_b, grad_b = _functions(size, sigma, weights[b : b + 1])
        out["separate_fwd_s"] += _median_s(fwd_b, (v, t), repeats)
        out["separate_fwd_bwd_s"] += _median_s(grad_b, (v, t), repeats)
    for k in ("fwd", "fwd_bwd"):
        out[f"ratio_{k}"] = out[f"padded_{k}_s"] / out[f"separate_{k}_s"]
    return out


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="64,128", help="image sizes, comma separated")
    parser.add_argument("--sigma", type=float, default=1e-5)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--json", help="also write the results to this file")
    args = parser.parse_args(argv)
    rows = [run_case(int(s), args.sigma, args.repeats) for s in args.sizes.split(",")]
    print(
        f"padded batch of {len(FACES)} spheres ({', '.join(map(str, FACES))} faces) vs one "
        f"call per mesh; backend {jax.default_backend()}, jax {jax.__version__}"
    )
    print(
        f"{'size':>5} {'padded fwd':>11} {'separate':>9} {'ratio':>6} "
        f"{'padded f+b':>11} {'separate':>9} {'ratio':>6}"
    )
    for r in rows:
        print(
            f"{r['size']:>5} {r['padded_fwd_s'] * 1e3:>9.1f}ms {r['separate_fwd_s'] * 1e3:>7.1f}ms "
            f"{r['ratio_fwd']:>6.2f} {r['padded_fwd_bwd_s'] * 1e3:>9.1f}ms "
            f"{r['separate_fwd_bwd_s'] * 1e3:>7.1f}ms {r['ratio_fwd_bwd']:>6.2f}"
        )
    result = {
        "machine": platform.machine(),
        "cpus": os.cpu_count(),
        "jax": jax.__version__,
        "backend": jax.default_backend(),
        "rows": rows,
    }
    print(json.dumps(result))
    if args.json:
        with open(args.json, "w") as f:
            json.dump(result, f, indent=1)


if __name__ == "__main__":
    main()
