"""GPU benchmark of ``soft_rasterize``: the Pallas kernels against the tiled XLA path.

    python bench/bench_gpu.py [--repeats 30] [--json bench/results/gpu.json]
    python bench/bench_gpu.py --sweep          # also tries a few PallasConfig settings
    python bench/bench_gpu.py --smoke          # tiny sizes; runs anywhere (CPU: interpreter)

Cases (float32):

* ``1024^2`` images of geodesic spheres of about 280 / 3,300 / 39,000 faces (320, 3,380 and
  38,720 exactly), sigma 1e-5, the sphere filling about half the frame, default SoftRas modes
  (euclidean, softmax, prod, surface textures with one texel);
* busy tiles: the geometry suite's flattened ellipsoid (5,120 faces) seen edge-on at ``512^2``
  (sigma 1e-5), hundreds of faces in a few tiles;
* the reconstruction-shaped batch: 256 images of ``64^2``, 1,280 faces each (jittered spheres),
  sigma 1e-4, dist_eps 1e-10, hard rgb aggregation (the reconstruction's renderer,
  ``docs/reconstruction.md``).

For each case and backend: forward, and forward+backward (``jax.grad`` of a fixed random
weighting of the RGBA image with respect to face vertices and textures); the median (and
minimum) over ``--repeats`` runs after two warm-up runs, each timed with ``block_until_ready``.
*Useful work* is the number of (pixel, candidate face) pairs: pixels inside a face's bounding
box grown by ``sqrt(T)`` (the pairs any exact method must look at), counted exactly; the table
reports it per second next to the times. Prints a table and writes JSON.
"""

from __future__ import annotations

import argparse
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
from bench import geometry  # noqa: E402
from bench.bench_rasterize import write_results  # noqa: E402
from bench.meshes import sphere_scene  # noqa: E402
from softjax.ops.pallas_kernels import kernel_config  # noqa: E402

# a pixel counts as differing between two backends above this (any channel)
PIXEL_DIFF = 1e-3
# targets of the issue on one H100: fwd+bwd milliseconds
TARGET_MS = {"sphere-320": 1.0, "sphere-3380": 2.0, "sphere-38720": 5.0, "recon-256x64": 5.0}
# register use per thread of these (Triton 3.9 for sm_90, euclidean/softmax/prod, no GPU
# needed): forward 8/16:4 121, 8/32:4 205, 4/32:4 80; backward 8/8:8 233 (no spill),
# 8/16:8 255 + 96 B spilled, 4/32:4 159, 16/8:8 255 + 952 B spilled
SWEEP = [
    sj.PallasConfig(tile=8, window=32, num_warps=4, bwd_window=8, bwd_num_warps=8),
    sj.PallasConfig(tile=8, window=16, num_warps=4, bwd_window=16, bwd_num_warps=8),
    sj.PallasConfig(tile=8, window=8, num_warps=2, bwd_window=8, bwd_num_warps=4),
    sj.PallasConfig(tile=4, window=32, num_warps=4, bwd_window=32, bwd_num_warps=4),
    sj.PallasConfig(tile=4, window=32, num_warps=2, bwd_window=16, bwd_num_warps=4),
    sj.PallasConfig(tile=16, window=8, num_warps=8, bwd_window=4, bwd_num_warps=8),
]


def half_frame_distance(fov_deg: float = 30.0, fraction: float = 0.5) -> float:
    """Camera distance at which a unit sphere's silhouette covers ``fraction`` of the frame."""
    r = np.sqrt(4.0 * fraction / np.pi)  # NDC radius of a disc of that area ([-1, 1]^2 = 4)
    return float(np.sqrt(1.0 + 1.0 / (r * np.tan(np.deg2rad(fov_deg))) ** 2))


def candidate_pairs(fv: np.ndarray, image_size: int, sigma: float, dist_eps: float) -> int:
    """(pixel, face) pairs with the pixel centre inside the face's grown bounding box."""
    s = image_size
    grow = np.sqrt(max(sigma * np.log(1.0 / dist_eps - 1.0), 0.0))
    x, y = fv[..., 0].astype(np.float64), fv[..., 1].astype(np.float64)
    # centre x of column c is (2c + 1 - S) / S; centre y of row r is (S - 1 - 2r) / S
    c_lo = np.ceil(((x.min(-1) - grow) * s + s - 1) / 2)
    c_hi = np.floor(((x.max(-1) + grow) * s + s - 1) / 2)
    r_lo = np.ceil((s - 1 - (y.max(-1) + grow) * s) / 2)
    r_hi = np.floor((s - 1 - (y.min(-1) - grow) * s) / 2)
    cols = np.clip(np.minimum(c_hi, s - 1) - np.maximum(c_lo, 0) + 1, 0, None)
    rows = np.clip(np.minimum(r_hi, s - 1) - np.maximum(r_lo, 0) + 1, 0, None)
    return int(np.sum(cols * rows))


def binning_passes(case: dict, cfg: sj.PallasConfig) -> tuple[int, int]:
    """(tile, face) pairs of the case under ``cfg``'s tiling, and binning passes they take."""
    from softjax.ops import binning
    from softjax.ops.pixel_face import face_setup

    b, nf = case["fv"].shape[:2]
    cfg = binning.resolve_tiling(cfg, "pallas", case["size"], nf)
    grid = binning.make_grid(case["size"], cfg.tile, b, nf)
    face = face_setup(jnp.asarray(case["fv"]).reshape(-1, 3, 3))
    dist_eps = case["kw"].get("dist_eps", 1e-4)
    ft = binning.face_tiles(face, jnp.float32(case["sigma"]), jnp.float32(dist_eps), grid)
    return int(ft.total), int(binning.num_passes(ft, binning.pair_capacity(cfg, grid, "pallas")))


def make_cases(smoke: bool) -> list[dict]:
    dist = half_frame_distance()
    size = 64 if smoke else 1024
    cases = []
    for nf in (280, 3300) if smoke else (280, 3300, 39000):
        fv, tex = sphere_scene(nf, batch=1, distance=dist)
        cases.append(
            dict(name=f"sphere-{fv.shape[1]}", fv=fv, tex=tex, size=size, sigma=1e-5, kw={})
        )
    # busy tiles: a flattened ellipsoid of 5,120 faces seen edge-on puts hundreds of faces in
    # a few tiles, which the kernels split over several programs (docs/pipeline.md)
    flat = geometry.flat_ellipsoid()[0]
    cases.append(
        dict(name="flat-edge-on", fv=flat.fv, tex=flat.tex, size=size // 2, sigma=1e-5, kw={})
    )
    batch, rs, nf = (2, 32, 320) if smoke else (256, 64, 1280)
    fv, tex = sphere_scene(nf, batch=batch, distance=dist)
    rng = np.random.default_rng(1)
    shift = rng.uniform(-0.15, 0.15, (batch, 1, 1, 2)).astype(np.float32)
    fv[..., :2] = fv[..., :2] * rng.uniform(0.7, 1.0, (batch, 1, 1, 1)) + shift
    recon_kw = dict(dist_eps=1e-10, aggr_func_rgb="hard")
    cases.append(dict(name=f"recon-{batch}x{rs}", fv=fv, tex=tex, size=rs, sigma=1e-4, kw=recon_kw))
    return cases


def _timed(fn, args, repeats: int) -> tuple[float, float]:
    for _ in range(2):
        jax.block_until_ready(fn(*args))
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        jax.block_until_ready(fn(*args))
        times.append(time.perf_counter() - t0)
    return float(np.median(times)), float(np.min(times))


def run_case(case: dict, backend: str, cfg: sj.PallasConfig | None, repeats: int) -> dict:
    fv = jnp.asarray(case["fv"])
    tex = jnp.asarray(case["tex"])
    s = case["size"]
    kw = dict(image_size=s, sigma_val=case["sigma"], backend=backend, **case["kw"])
    if backend == "pallas":
        kw["pallas_config"] = cfg
    weights = jnp.asarray(np.random.default_rng(0).normal(size=(fv.shape[0], s, s, 4)), jnp.float32)
    fwd = jax.jit(lambda v, t: sj.soft_rasterize(v, t, **kw))
    loss = lambda v, t: jnp.sum(sj.soft_rasterize(v, t, **kw) * weights)  # noqa: E731
    fwd_bwd = jax.jit(jax.grad(loss, (0, 1)))
    out = {"case": case["name"], "backend": backend}
    if cfg is not None and backend == "pallas":
        out["pallas_config"] = cfg._asdict()
        out["tile_face_pairs"], out["binning_passes"] = binning_passes(case, cfg)
    t0 = time.perf_counter()
    img = jax.block_until_ready(fwd(fv, tex))
    out["compile_fwd_s"] = time.perf_counter() - t0
    out["covered_fraction"] = float(np.mean(np.asarray(img[..., 3]) > 0.5))
    out["fwd_median_ms"], out["fwd_min_ms"] = (1e3 * v for v in _timed(fwd, (fv, tex), repeats))
    grads = jax.block_until_ready(fwd_bwd(fv, tex))
    out["grad_finite"] = bool(all(np.isfinite(np.asarray(g)).all() for g in grads))
    med, mn = _timed(fwd_bwd, (fv, tex), repeats)
    out["fwd_bwd_median_ms"], out["fwd_bwd_min_ms"] = 1e3 * med, 1e3 * mn
    out["_image"] = np.asarray(img)
    out["_grads"] = [np.asarray(g) for g in grads]
    return out


def config_label(cfg: sj.PallasConfig | None) -> str:
    """``tile/window:warps/bwd_window:bwd_warps`` of a Pallas config, ``-`` for none."""
    if cfg is None:
        return "-"
    return f"{cfg.tile}/{cfg.window}:{cfg.num_warps}/{cfg.bwd_window}:{cfg.bwd_num_warps}"


def benchmark(
    cases: list[dict],
    configs: list[sj.PallasConfig],
    repeats: int,
    *,
    skip_xla: bool = False,
    deadline: float | None = None,
) -> list[dict]:
    """Times every case with the XLA path and each Pallas config; prints the table as it goes.

    ``deadline``: a ``time.perf_counter()`` value after which no further (case, backend) run
    starts (the rows not run are recorded with ``"skipped": "time budget"``). Returns one dict
    per run (JSON-serialisable).
    """
    on_gpu = jax.default_backend() == "gpu"
    configs = [kernel_config(c) for c in configs]  # labels and JSON show the values used
    header = (
        f"{'case':>14} {'backend':>7} {'config':>12} {'pass':>4} {'fwd ms':>8} {'fwd+bwd ms':>10} "
        f"{'target':>7} {'cover':>6} {'Mpairs':>8} {'fwd Gp/s':>9} {'f+b Gp/s':>9} {'maxdiff':>8}"
    )
    print(header)
    print("-" * len(header))
    rows = []
    for case in cases:
        pairs = candidate_pairs(
            case["fv"], case["size"], case["sigma"], case["kw"].get("dist_eps", 1e-4)
        )
        runs = [] if skip_xla else [("xla", None)]
        runs += [("pallas", c) for c in configs]
        xla_img, xla_grads = None, None
        for backend, cfg in runs:
            if deadline is not None and time.perf_counter() > deadline:
                rows.append({"case": case["name"], "backend": backend, "skipped": "time budget"})
                continue
            try:
                r = run_case(case, backend, cfg, repeats)
            except Exception as e:  # report and go on (e.g. a config that does not compile)
                r = {"case": case["name"], "backend": backend, "error": repr(e)[:500]}
                if cfg is not None:
                    r["pallas_config"] = cfg._asdict()
                print(f"{case['name']:>14} {backend:>7} error: {r['error'][:120]}", flush=True)
                rows.append(r)
                continue
            img, grads = r.pop("_image"), r.pop("_grads")
            if backend == "xla":
                xla_img, xla_grads = img, grads
            elif xla_img is not None:
                r["max_abs_diff_vs_xla"] = float(np.max(np.abs(img - xla_img)))
                # hard colour is discontinuous: a pixel centre on an edge two faces share
                # takes either face depending on the last bit of its barycentric weights
                # (FMA contraction differs between compilers), a whole-colour difference
                differs = np.max(np.abs(img - xla_img), -1) > PIXEL_DIFF
                r["pixels_differing_vs_xla"] = int(np.sum(differs))
                r["pixels_compared"] = differs.size
                # gradients: max difference relative to the largest XLA-path entry
                r["grad_rel_diff_vs_xla"] = [
                    float(np.max(np.abs(g - w)) / max(float(np.max(np.abs(w))), 1e-30))
                    for g, w in zip(grads, xla_grads, strict=True)
                ]
            r["candidate_pairs"] = pairs
            r["fwd_pairs_per_s"] = pairs / (r["fwd_median_ms"] * 1e-3)
            r["fwd_bwd_pairs_per_s"] = pairs / (r["fwd_bwd_median_ms"] * 1e-3)
            target = TARGET_MS.get(case["name"]) if on_gpu else None
            r["target_fwd_bwd_ms"] = target
            if target is not None and backend == "pallas":
                r["meets_target"] = r["fwd_bwd_median_ms"] <= target
            cfg_s = config_label(cfg)
            diff = r.get("max_abs_diff_vs_xla")
            print(
                f"{case['name']:>14} {backend:>7} {cfg_s:>12} {r.get('binning_passes', '-'):>4} "
                f"{r['fwd_median_ms']:>8.3f} "
                f"{r['fwd_bwd_median_ms']:>10.3f} {target if target else '-':>7} "
                f"{r['covered_fraction']:>6.2f} {pairs / 1e6:>8.2f} "
                f"{r['fwd_pairs_per_s'] / 1e9:>9.2f} {r['fwd_bwd_pairs_per_s'] / 1e9:>9.2f} "
                f"{'-' if diff is None else f'{diff:.1e}':>8}",
                flush=True,
            )
            rows.append(r)
    print(
        "config = tile/window:warps/bwd_window:bwd_warps; "
        "Mpairs = useful (pixel, candidate face) pairs / 1e6"
    )
    return rows


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=30, help="timed runs (>= 20)")
    parser.add_argument("--smoke", action="store_true", help="tiny sizes (any platform)")
    parser.add_argument("--sweep", action="store_true", help="try several PallasConfigs")
    d = kernel_config(None)  # the kernels' defaults
    parser.add_argument("--tile", type=int, default=d.tile)
    parser.add_argument("--window", type=int, default=d.window)
    parser.add_argument("--bwd-window", type=int, default=d.bwd_window)
    parser.add_argument("--num-warps", type=int, default=d.num_warps)
    parser.add_argument("--bwd-num-warps", type=int, default=d.bwd_num_warps)
    parser.add_argument("--num-stages", type=int, default=d.num_stages)
    parser.add_argument("--no-xla", action="store_true", help="skip the XLA path")
    parser.add_argument(
        "--json", default=os.path.join(HERE, "results", "gpu.json"), help="output file"
    )
    args = parser.parse_args(argv)
    on_gpu = jax.default_backend() == "gpu"
    if not on_gpu and not args.smoke:
        sys.exit("bench_gpu.py needs a GPU (or --smoke, which runs tiny sizes anywhere)")
    repeats = max(args.repeats, 20) if not args.smoke else max(min(args.repeats, 3), 1)
    knobs = ("tile", "window", "bwd_window", "num_warps", "bwd_num_warps", "num_stages")
    base = sj.PallasConfig(**{k: getattr(args, k) for k in knobs}, interpret=not on_gpu)
    configs = [base] + ([c._replace(interpret=not on_gpu) for c in SWEEP] if args.sweep else [])
    configs = list(dict.fromkeys(configs))
    device = jax.devices()[0]
    meta = dict(
        device=device.device_kind,
        platform=device.platform,
        jax=jax.__version__,
        python=platform.python_version(),
        repeats=repeats,
    )
    print(f"device: {meta['device']} ({meta['platform']}), jax {meta['jax']}, {repeats} runs")
    rows = benchmark(make_cases(args.smoke), configs, repeats, skip_xla=args.no_xla)
    write_results(args.json, meta, rows)


if __name__ == "__main__":
    main()
