"""Speed and memory of ``soft_rasterize`` on the CPU: tiled XLA path vs the dense reference.

    python bench/bench_rasterize.py [--quick] [--json bench/results/rasterize.json]

Geodesic spheres of 1280 / 5120 / 20480 faces at 64^2, 128^2, 256^2, and 1024^2 x ~39k faces.
Every configuration runs in its own subprocess, so its peak resident memory (``ru_maxrss``) is
its own. Times are medians over ``--repeats`` runs after a warm-up (compile) run, with
``block_until_ready``. Forward+backward is ``jax.grad`` of a fixed random weighting of the
image with respect to face vertices and textures. Prints a table and writes JSON.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.dirname(HERE))

# dense pairs above which the reference is not run (128^2 x 1280 takes ~11 GB here)
DENSE_LIMIT = 128 * 128 * 1280


def _worker(cfg: dict) -> dict:
    import jax
    import jax.numpy as jnp
    import numpy as np

    import softjax as sj
    from bench.meshes import sphere_scene

    s, nf, backend = cfg["size"], cfg["faces"], cfg["backend"]
    fv, tex = sphere_scene(nf, batch=cfg.get("batch", 1))
    kw = dict(image_size=s, sigma_val=cfg["sigma"], backend=backend)
    weights = jnp.asarray(np.random.default_rng(0).normal(size=(fv.shape[0], s, s, 4)), jnp.float32)
    fwd = jax.jit(lambda v, t: sj.soft_rasterize(v, t, **kw))
    grad = jax.jit(jax.grad(lambda v, t: jnp.sum(sj.soft_rasterize(v, t, **kw) * weights), (0, 1)))
    out = {}
    t0 = time.perf_counter()
    img = jax.block_until_ready(fwd(fv, tex))
    out["compile_fwd_s"] = time.perf_counter() - t0
    out["covered_pixels"] = int((np.asarray(img[..., 3]) > 0.5).sum())
    t0 = time.perf_counter()
    jax.block_until_ready(grad(fv, tex))
    out["compile_fwd_bwd_s"] = time.perf_counter() - t0
    for name, fn in (("fwd", fwd), ("fwd_bwd", grad)):
        times = []
        for _ in range(cfg["repeats"]):
            t0 = time.perf_counter()
            jax.block_until_ready(fn(fv, tex))
            times.append(time.perf_counter() - t0)
        out[f"{name}_median_s"] = float(np.median(times))
        out[f"{name}_min_s"] = float(np.min(times))
    out["faces"] = int(fv.shape[1])
    out["peak_rss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0
    return out


def _run(cfg: dict, timeout: float) -> dict:
    cmd = [sys.executable, os.path.abspath(__file__), "--worker", json.dumps(cfg)]
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        return {**cfg, "error": f"timeout after {timeout:.0f} s"}
    lines = [ln for ln in proc.stdout.splitlines() if ln.startswith("{")]
    if proc.returncode != 0 or not lines:
        tail = (proc.stderr or proc.stdout).strip().splitlines()[-3:]
        return {**cfg, "error": f"exit {proc.returncode}: {' | '.join(tail)}"}
    return {**cfg, **json.loads(lines[-1])}


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    parser.add_argument("--quick", action="store_true", help="64^2 and 128^2 only")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--sigma", type=float, default=1e-4)
    parser.add_argument("--no-dense", action="store_true", help="skip the dense reference")
    parser.add_argument("--timeout", type=float, default=1800.0, help="seconds per config")
    parser.add_argument(
        "--json", default=os.path.join(HERE, "results", "rasterize.json"), help="output file"
    )
    args = parser.parse_args(argv)
    if args.worker:
        print(json.dumps(_worker(json.loads(args.worker))), flush=True)
        return

    sizes = (64, 128) if args.quick else (64, 128, 256)
    configs = [(s, f) for s in sizes for f in (1280, 5120, 20480)]
    if not args.quick:
        configs.append((1024, 38720))
    rows = []
    header = (
        f"{'size':>6} {'faces':>6} {'backend':>9} {'fwd ms':>9} {'fwd+bwd ms':>11} "
        f"{'peak MB':>8} {'covered px':>10} {'speed-up':>8}"
    )
    print(header)
    print("-" * len(header))
    for s, f in configs:
        backends = ["xla"]
        if not args.no_dense and s * s * f <= DENSE_LIMIT:
            backends.append("reference")
        pair = {}
        for backend in backends:
            cfg = dict(size=s, faces=f, backend=backend, sigma=args.sigma, repeats=args.repeats)
            if backend == "reference":
                cfg["repeats"] = min(args.repeats, 3)
            r = _run(cfg, args.timeout)
            rows.append(r)
            pair[backend] = r
            if "error" in r:
                print(f"{s:>6} {f:>6} {backend:>9} error: {r['error']}", flush=True)
                continue
            speed = ""
            if backend == "reference" and "fwd_bwd_median_s" in pair.get("xla", {}):
                ratio = r["fwd_bwd_median_s"] / pair["xla"]["fwd_bwd_median_s"]
                r["xla_speedup_fwd_bwd"] = ratio
                speed = f"{ratio:7.1f}x"
            print(
                f"{s:>6} {r['faces']:>6} {backend:>9} {1e3 * r['fwd_median_s']:>9.1f} "
                f"{1e3 * r['fwd_bwd_median_s']:>11.1f} {r['peak_rss_mb']:>8.0f} "
                f"{r['covered_pixels']:>10} {speed:>8}",
                flush=True,
            )
    import jax

    meta = {
        "machine": platform.machine(),
        "processor": platform.processor(),
        "cpus": os.cpu_count(),
        "python": platform.python_version(),
        "jax": jax.__version__,
        "sigma": args.sigma,
        "repeats": args.repeats,
        "date": time.strftime("%Y-%m-%d %H:%M:%S"),
    }
    write_results(args.json, meta, rows)


def write_results(path: str, meta: dict, rows: list[dict]) -> None:
    """Writes ``{"meta": meta, "results": rows}`` as JSON to ``path`` (creating its folder)."""
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    with open(path, "w") as fh:
        json.dump({"meta": meta, "results": rows}, fh, indent=1)
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
