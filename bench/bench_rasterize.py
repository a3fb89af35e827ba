"""Speed and memory of ``soft_rasterize`` on the CPU: tiled XLA path vs the dense reference.

    python bench/bench_rasterize.py [--quick] [--json bench/results/rasterize.json]
    python bench/bench_rasterize.py --uv [--quick]   # surface vs UV textures, XLA path
    python bench/bench_rasterize.py --suite geometry [--baseline ../other-checkout]
    python bench/bench_rasterize.py --suite geometry --interleave 7   # one process, by rounds
    python bench/bench_rasterize.py --suite geometry --backend pallas   # on a GPU

Geodesic spheres of 1280 / 5120 / 20480 faces at 64^2, 128^2, 256^2, and 1024^2 x ~39k faces.
Every configuration runs in its own subprocess, so its peak resident memory (``ru_maxrss``) is
its own. Times are medians over ``--repeats`` runs after a warm-up (compile) run, with
``block_until_ready``. Forward+backward is ``jax.grad`` of a fixed random weighting of the
image with respect to face vertices and textures. Prints a table and writes JSON.

``--uv`` compares the cost of the texture types on the tiled XLA path: the same spheres with
one-texel surface textures and with a 256^2 UV-mapped image (latitude / longitude UVs, a tint
per face; forward+backward differentiates the image, the UVs and the tints too), reporting
milliseconds and nanoseconds per useful (pixel, candidate face) pair (``bench_gpu.py``'s
measure of work). The Pallas kernels' cost of the UV gather (and of the backward's atomic
adds) needs a GPU: ``bench/bench_gpu.py`` there.

``--suite geometry`` times the scenes of ``bench/geometry.py`` (spheres, a flattened ellipsoid
edge-on and at 30 degrees, deform's target from 24 views, the reconstruction batch, slivers) on
the XLA path (``--backend pallas``: the Pallas kernels, at their tiles; on a GPU, else the
interpreter) and reports, per scene, useful and candidate pairs, the *floor* (the pixels of
the tiles where a face has a useful pixel: the fewest candidates whole tiles allow), the
forward's window slots, milliseconds and nanoseconds per useful pair (medians after the
compile run and ``geometry.WARMUP_CALLS`` untimed calls, which the first calls of a freshly
compiled program need). ``--baseline DIR`` (a checkout of another commit) also times each
scene with that checkout's ``softjax``, alternating with this one scene by scene, and reports
the ratios: on a shared machine only ratios measured in one run compare. ``--interleave
ROUNDS`` times the scenes in one process instead, round by round (each scene's fastest of 3
calls per round, medians over the rounds), and also reports the spread of ns per useful pair
within each round: a busy spell of a shared machine then slows every scene of a round rather
than whichever scene's subprocess ran during it.
"""

from __future__ import annotations

import argparse
import functools
import json
import os
import platform
import resource
import subprocess
import sys
import time

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.dirname(HERE))

# dense pairs above which the reference is not run (128^2 x 1280 takes ~11 GB here)
DENSE_LIMIT = 128 * 128 * 1280


def _worker(cfg: dict) -> dict:
    import jax
    import jax.numpy as jnp

    import softjax as sj
    from bench.meshes import sphere_scene

    s, nf, backend = cfg["size"], cfg["faces"], cfg["backend"]
    fv, tex = sphere_scene(nf, batch=cfg.get("batch", 1))
    kw = dict(image_size=s, sigma_val=cfg["sigma"], backend=backend)
    if cfg.get("texture") == "uv":  # tex: the differentiated UV arguments
        tex = uv_sphere_textures(nf, batch=fv.shape[0])
        kw["texture_type"] = "uv"
    else:
        tex = {"textures": tex}
    weights = jnp.asarray(np.random.default_rng(0).normal(size=(fv.shape[0], s, s, 4)), jnp.float32)

    def render(v, t):
        return sj.soft_rasterize(v, **t, **kw)

    fwd = jax.jit(render)
    grad = jax.jit(jax.grad(lambda v, t: jnp.sum(render(v, t) * weights), (0, 1)))
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
    if cfg.get("texture"):  # the useful work of bench_gpu.py: (pixel, candidate face) pairs
        from bench.bench_gpu import candidate_pairs

        pairs = fv.shape[0] * candidate_pairs(fv[0], s, cfg["sigma"], 1e-4)
        out["candidate_pairs"] = pairs
        for name in ("fwd", "fwd_bwd"):
            out[f"{name}_ns_per_pair"] = out[f"{name}_median_s"] * 1e9 / pairs
    return out


def uv_sphere_textures(num_faces: int, batch: int = 1, image_size: int = 256) -> dict:
    """UV arguments of ``soft_rasterize`` for :func:`bench.meshes.sphere_scene`'s sphere:
    latitude / longitude corner UVs of the unit sphere (``uv_wrap='repeat'`` wraps the faces
    at the seam), a random ``image_size``^2 image per mesh and a random tint per face."""
    from bench.meshes import geodesic_sphere

    p = geodesic_sphere(max(1, int(round((num_faces / 20) ** 0.5))))  # as sphere_scene
    u = 0.5 + np.arctan2(p[..., 2], p[..., 0]) / (2 * np.pi)
    v = 0.5 + np.arcsin(np.clip(p[..., 1], -1.0, 1.0)) / np.pi
    rng = np.random.default_rng(1)
    return {
        "textures": rng.uniform(0, 1, (batch, image_size, image_size, 3)).astype(np.float32),
        "face_uvs": np.broadcast_to(np.stack([u, v], -1), (batch,) + u.shape + (2,))
        .astype(np.float32)
        .copy(),
        "face_tint": rng.uniform(0.5, 1.5, (batch, len(p), 3)).astype(np.float32),
    }


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
        "--uv", action="store_true", help="surface vs UV textures on the XLA path (ns / pair)"
    )
    parser.add_argument("--suite", choices=["geometry"], help="the geometry suite")
    parser.add_argument(
        "--backend",
        choices=["xla", "pallas"],
        default="xla",
        help="geometry: the backend timed ('pallas' on a GPU: the kernels; counts at its tiles)",
    )
    parser.add_argument("--scenes", default=None, help="geometry: comma-separated name parts")
    parser.add_argument(
        "--baseline", default=None, help="geometry: a checkout of another commit to compare"
    )
    parser.add_argument(
        "--interleave",
        type=int,
        default=0,
        metavar="ROUNDS",
        help="geometry: time every scene in this process, ROUNDS rounds over all of them "
        "(the spread per round; not with --baseline)",
    )
    parser.add_argument("--json", default=None, help="output file (default: bench/results/)")
    parser.add_argument("--geometry-worker", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.interleave and args.baseline:
        parser.error("--interleave times this checkout only: leave out --baseline")
    if args.interleave < 0:
        parser.error(f"--interleave takes a number of rounds >= 1, got {args.interleave}")
    if args.worker:
        print(json.dumps(_worker(json.loads(args.worker))), flush=True)
        return
    if args.geometry_worker:
        worker = _geometry_worker(args.geometry_worker, args.repeats, args.backend)
        print(json.dumps(worker), flush=True)
        return
    if args.suite == "geometry":
        args.json = args.json or os.path.join(HERE, "results", "rasterize_geometry.json")
        write_results(args.json, _meta(args), geometry_table(args))
        return
    name = "rasterize_uv.json" if args.uv else "rasterize.json"
    args.json = args.json or os.path.join(HERE, "results", name)
    if args.uv:
        write_results(args.json, _meta(args), uv_table(args))
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
    write_results(args.json, _meta(args), rows)


def _geometry_worker(name: str, repeats: int, backend: str = "xla") -> dict:
    from bench import geometry

    (scene,) = [sc for sc in geometry.suite() if sc.name == name]
    return geometry.time_scene(scene, repeats, backend)


def _geometry_run(
    name: str, repeats: int, timeout: float, baseline: str | None, backend: str = "xla"
) -> dict:
    """Times one scene in a subprocess, with this checkout's ``softjax`` or the baseline's."""
    import tempfile

    root = os.path.dirname(HERE)
    env = dict(os.environ)
    with tempfile.TemporaryDirectory() as tmp:
        path = root
        if baseline:  # the baseline's package, this checkout's benchmark scenes
            os.symlink(os.path.join(os.path.abspath(baseline), "softjax"), f"{tmp}/softjax")
            os.symlink(HERE, f"{tmp}/bench")
            path = tmp
        env["PYTHONPATH"] = path
        cmd = [
            sys.executable,
            "-c",
            "import sys; from bench import bench_rasterize as b; b.main(sys.argv[1:])",
            "--geometry-worker",
            name,
            "--repeats",
            str(repeats),
            "--backend",
            backend,
        ]
        try:
            proc = subprocess.run(
                cmd, capture_output=True, text=True, timeout=timeout, env=env, cwd=tmp
            )
        except subprocess.TimeoutExpired:
            return {"error": f"timed out after {timeout:.0f} s"}
    lines = [ln for ln in proc.stdout.splitlines() if ln.startswith("{")]
    if proc.returncode != 0 or not lines:
        tail = (proc.stderr or proc.stdout).strip().splitlines()[-3:]
        return {"error": f"exit {proc.returncode}: {' | '.join(tail)}"}
    return json.loads(lines[-1])


def geometry_table(args) -> list[dict]:
    """The geometry suite: counts, times and ns per useful pair per scene (and the baseline's
    times and the ratios with ``--baseline``); prints the table as it goes."""
    from bench import geometry

    base = args.baseline
    header = (
        f"{'scene':<26} {'B x F':>12} {'S':>4} {'tile':>5} {'useful':>9} {'cand/u':>7} "
        f"{'floor/u':>7} {'win/u':>6} {'fwd ms':>8} {'f+b ms':>8} {'fwd ns/u':>9} {'f+b ns/u':>9}"
    )
    if base:
        header += f" {'base f+b ms':>11} {'fwd x':>6} {'f+b x':>6}"
    print(header)
    print("-" * len(header), flush=True)
    scenes = [
        sc
        for sc in geometry.suite()
        if not args.scenes or any(n.strip() in sc.name for n in args.scenes.split(","))
    ]
    if not scenes:
        raise SystemExit(f"--scenes {args.scenes!r} names none of the suite's scenes")
    timed = None
    if args.interleave:  # every scene compiled in this process first, then the rounds
        log = functools.partial(print, file=sys.stderr, flush=True)
        timed = geometry.time_interleaved(scenes, args.interleave, args.backend, log=log)
    rows = []
    for i, scene in enumerate(scenes):
        row = {"scene": scene.name, "batch": scene.fv.shape[0], "faces": scene.fv.shape[1]}
        counts = geometry.pair_counts(scene, backend=args.backend)
        row.update(image_size=scene.image_size, sigma=scene.sigma, backend=args.backend, **counts)
        run = functools.partial(_geometry_run, scene.name, args.repeats, args.timeout)
        if base:
            row["baseline"] = run(base, args.backend)
        row.update(timed[i] if timed else run(None, args.backend))
        rows.append(row)
        if "error" in row or "error" in row.get("baseline", {}):
            print(f"{scene.name:<26} error: {row.get('error') or row['baseline']['error']}")
            continue
        for k in ("fwd", "fwd_bwd"):
            row[f"{k}_ns_per_useful"] = 1e6 * row[f"{k}_ms"] / max(row["useful"], 1)
        line = (
            f"{scene.name:<26} {row['batch']:>4} x {row['faces']:>5} {row['image_size']:>4} "
            f"{geometry.tile_label(row):>5} "
            f"{row['useful']:>9} {row['candidate_pixels'] / max(row['useful'], 1):>7.2f} "
            f"{row['floor_pixels'] / max(row['useful'], 1):>7.2f} "
            f"{row['window_pixels'] / max(row['useful'], 1):>6.2f} "
            f"{row['fwd_ms']:>8.1f} {row['fwd_bwd_ms']:>8.1f} "
            f"{row['fwd_ns_per_useful']:>9.1f} {row['fwd_bwd_ns_per_useful']:>9.1f}"
        )
        if base:
            b = row["baseline"]
            row["speedup_fwd"] = b["fwd_ms"] / row["fwd_ms"]
            row["speedup_fwd_bwd"] = b["fwd_bwd_ms"] / row["fwd_bwd_ms"]
            line += f" {b['fwd_bwd_ms']:>11.1f} {row['speedup_fwd']:>6.2f} "
            line += f"{row['speedup_fwd_bwd']:>6.2f}"
        print(line, flush=True)
    done = [r for r in rows if "fwd_bwd_ns_per_useful" in r]
    if done:
        per = [r["fwd_bwd_ns_per_useful"] for r in done]
        print(f"forward+backward ns per useful pair: worst / best = {max(per) / min(per):.2f}x")
        if timed and len(done) == len(rows) > 1:
            # within each round: what a slow spell of the machine does to one scene it does to
            # the others of that round too
            per_round = np.array([r["rounds_fwd_bwd_ms"] for r in done]).T / [
                max(r["useful"], 1) for r in done
            ]
            spread = per_round.max(1) / per_round.min(1)
            print(
                f"  per round ({len(spread)}): median {np.median(spread):.2f}x, "
                f"range {spread.min():.2f}-{spread.max():.2f}x"
            )
        # what the tiles alone allow: if every candidate cost the same, no culling of whole
        # tiles could bring the spread below this
        floor = [r["floor_pixels"] / max(r["useful"], 1) for r in done]
        print(f"floor pixels per useful pair: worst / best = {max(floor) / min(floor):.2f}x")
        if base:
            for r in done:
                b = r["baseline"]
                r["baseline_fwd_bwd_ns_per_useful"] = 1e6 * b["fwd_bwd_ms"] / max(r["useful"], 1)
            per_b = [r["baseline_fwd_bwd_ns_per_useful"] for r in done]
            print(f"baseline: worst / best = {max(per_b) / min(per_b):.2f}x")
    return rows


def _meta(args) -> dict:
    import jax

    return {
        "machine": platform.machine(),
        "processor": platform.processor(),
        "cpus": os.cpu_count(),
        "python": platform.python_version(),
        "jax": jax.__version__,
        "sigma": args.sigma,
        "repeats": args.repeats,
        "date": time.strftime("%Y-%m-%d %H:%M:%S"),
    }


def uv_table(args) -> list[dict]:
    """``--uv``: surface (one texel) against UV textures on the XLA path, same spheres."""
    configs = [(64, 1280), (128, 5120)] if args.quick else [(128, 1280), (128, 5120), (256, 5120)]
    header = (
        f"{'size':>6} {'faces':>6} {'texture':>8} {'fwd ms':>9} {'fwd+bwd ms':>11} "
        f"{'Mpairs':>7} {'fwd ns/pair':>12} {'f+b ns/pair':>12}"
    )
    print(header)
    print("-" * len(header))
    rows = []
    for s, f in configs:
        for texture in ("surface", "uv"):
            cfg = dict(size=s, faces=f, backend="xla", texture=texture, sigma=args.sigma)
            r = _run(cfg | {"repeats": args.repeats}, args.timeout)
            rows.append(r)
            if "error" in r:
                print(f"{s:>6} {f:>6} {texture:>8} error: {r['error']}", flush=True)
                continue
            print(
                f"{s:>6} {r['faces']:>6} {texture:>8} {1e3 * r['fwd_median_s']:>9.1f} "
                f"{1e3 * r['fwd_bwd_median_s']:>11.1f} {r['candidate_pairs'] / 1e6:>7.2f} "
                f"{r['fwd_ns_per_pair']:>12.1f} {r['fwd_bwd_ns_per_pair']:>12.1f}",
                flush=True,
            )
    print("Pallas kernels (GPU): the UV gather and the backward's atomic adds are unmeasured")
    return rows


def write_results(path: str, meta: dict, rows: list[dict]) -> None:
    """Writes ``{"meta": meta, "results": rows}`` as JSON to ``path`` (creating its folder)."""
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    with open(path, "w") as fh:
        json.dump({"meta": meta, "results": rows}, fh, indent=1)
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
