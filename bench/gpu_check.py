"""Every GPU claim of softjax, checked in one process: ``python bench/gpu_check.py --out DIR``.

Sections (each records ok / failed / skipped with the error text, and the run goes on after a
failure):

1. ``environment``: JAX / jaxlib and package versions, devices, GPU name and memory, Python.
2. ``correctness``: the Pallas kernels, the tiled XLA path and the dense reference on small
   scenes for every mode combination with surface and vertex textures, and a covering subset
   with UV textures (``UV_MODES``): forward images and float32 gradients with respect to face
   vertices and textures (UV: the image, the corner UVs and the tints), with the tolerances of
   the CPU tests; then ``backend='auto'``'s choice for each option set
   (``softjax.backend_report()``).
3. ``benchmark``: ``bench/bench_gpu.py``'s table (1024^2 spheres of 320 / 3,380 / 38,720 faces,
   a flattened ellipsoid edge-on (busy tiles) and the 256 x 64^2 reconstruction batch, forward
   and forward+backward, Pallas vs XLA).
4. ``train_step``: the reconstruction training step at batch 64 (softras network, 642-vertex
   template), Pallas vs XLA, ms/step.
5. ``training``: the quickstart setup at batch 64 for as many steps as fit in about two minutes
   (``recon.train``), then ``recon.eval`` on the synthetic test split: steps/s, mean voxel IoU.

``DIR/summary.json`` and ``DIR/summary.md`` (a table to paste into a note) are rewritten after
every section, so a crash or a kill leaves the sections done so far. Each section has a time
budget checked between its items, and a watchdog ends the whole run at ``--deadline`` seconds
(default 540: the check fits in 9 minutes on one H100/H200, compilation included), writing the
summary first. ``--smoke`` runs every section at tiny sizes on any platform (on a CPU the Pallas
kernels run in the Pallas interpreter); the CPU tests run it.

Exit status: 0 when every section is ok, 1 when one failed, 3 when the deadline cut the run.
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import platform
import sys
import tempfile
import threading
import time
import traceback
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(ROOT))

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402

import softjax as sj  # noqa: E402

SECTIONS = ("environment", "correctness", "benchmark", "train_step", "training")
# seconds each section may start new items in (full run; --smoke: no budgets but the deadline)
BUDGETS = {"environment": 30, "correctness": 200, "benchmark": 110, "train_step": 70}
TRAIN_SECONDS = 120  # the training section's training time (full run)
# tolerances of the CPU tests (tests/test_forward.py, tests/test_gradients.py): forward images
# to 2e-5 absolute, float32 gradients to 2e-4 of max(largest reference entry, 1)
FWD_ATOL = 2e-5
GRAD_RTOL = 2e-4
# UV textures (texture 'uv:WRAP', see mode_kwargs): every distance function, aggregation and
# wrap mode at least once (the kernels' UV code is the same for every image size)
UV_MODES = [
    ("euclidean", "softmax", "prod", "uv:repeat"),
    ("barycentric", "hard", "sum", "uv:clamp"),
    ("hard", "softmax", "hard", "uv:clamp"),
    ("euclidean", "hard", "prod", "uv:repeat"),
    ("barycentric", "softmax", "sum", "uv:repeat"),
]
# the UV modes first: the newest kernel code is checked even if the time budget runs out
MODES = UV_MODES + list(
    itertools.product(
        ("hard", "barycentric", "euclidean"),
        ("hard", "softmax"),
        ("hard", "sum", "prod"),
        ("surface", "vertex"),
    )
)
# the smoke run (is the script sound?): every texture type and both rgb aggregations
SMOKE_MODES = [
    ("euclidean", "softmax", "prod", "surface"),
    ("barycentric", "hard", "sum", "vertex"),
    ("euclidean", "softmax", "prod", "uv:clamp"),
]


class Run:
    """The results so far, written to ``out`` after every change."""

    def __init__(self, out: Path, smoke: bool, deadline_s: float):
        self.out = out
        self.lock = threading.RLock()
        self.started = time.perf_counter()
        self.deadline = self.started + deadline_s
        self.summary: dict[str, Any] = {
            "smoke": smoke,
            "deadline_s": deadline_s,
            "started": time.strftime("%Y-%m-%d %H:%M:%S"),
            "sections": {},
            "finished": False,
        }
        out.mkdir(parents=True, exist_ok=True)

    def remaining(self) -> float:
        return self.deadline - time.perf_counter()

    def section(self, name: str, fn, *args) -> dict:
        record: dict[str, Any] = {"status": "running"}
        with self.lock:
            self.summary["sections"][name] = record
            self.write()
        print(f"\n=== {name} ===", flush=True)
        t0 = time.perf_counter()
        try:
            record["result"] = fn(*args)
            failures = record["result"].pop("failures", [])
            record["status"] = "failed" if failures else "ok"
            if failures:
                record["error"] = "; ".join(failures)[:2000]
        except Exception as e:  # a section's failure is a result: record it and go on
            record["status"] = "failed"
            record["error"] = f"{type(e).__name__}: {e}"[:2000]
            record["traceback"] = traceback.format_exc()[-4000:]
            print(record["traceback"], file=sys.stderr, flush=True)
        record["seconds"] = round(time.perf_counter() - t0, 1)
        with self.lock:
            self.write()
        print(f"=== {name}: {record['status']} ({record['seconds']} s)", flush=True)
        return record

    def skip(self, name: str, reason: str) -> None:
        with self.lock:
            self.summary["sections"][name] = {"status": "skipped", "error": reason}
            self.write()

    def write(self) -> None:
        with self.lock:
            self.summary["elapsed_s"] = round(time.perf_counter() - self.started, 1)
            tmp = self.out / "summary.json.tmp"
            tmp.write_text(json.dumps(self.summary, indent=1, default=str))
            os.replace(tmp, self.out / "summary.json")
            tmp = self.out / "summary.md.tmp"
            tmp.write_text(markdown(self.summary))
            os.replace(tmp, self.out / "summary.md")


def _watchdog(run: Run) -> None:
    """Ends the process at the deadline, leaving the summary of what was done."""
    while run.remaining() > 0:
        time.sleep(min(1.0, max(run.remaining(), 0.01)))
    with run.lock:
        for record in run.summary["sections"].values():
            if record.get("status") == "running":
                record["status"] = "failed"
                record["error"] = "cut by the --deadline watchdog"
        run.summary["timed_out"] = True
        run.write()
    print("gpu_check: deadline reached; summary written", file=sys.stderr, flush=True)
    os._exit(3)


# ---------------------------------------------------------------- 1. environment


def environment() -> dict:
    import importlib.metadata as md

    versions = {}
    for name in (
        "jax",
        "jaxlib",
        "flax",
        "optax",
        "orbax-checkpoint",
        "numpy",
        "tensorflow-datasets",
        "array-record",
        "ml-collections",
        "triton",
    ):
        try:
            versions[name] = md.version(name)
        except md.PackageNotFoundError:
            versions[name] = None
    devices = jax.devices()
    info = {
        "python": platform.python_version(),
        "platform": jax.default_backend(),
        "versions": versions,
        "devices": [f"{d.platform}:{d.id} {d.device_kind}" for d in devices],
        "xla_flags": os.environ.get("XLA_FLAGS", ""),
        "softjax_backend_env": os.environ.get("SOFTJAX_BACKEND", ""),
        "cpu_count": os.cpu_count(),
    }
    try:
        stats = devices[0].memory_stats() or {}
        info["device_memory_gib"] = round(stats.get("bytes_limit", 0) / 2**30, 1)
    except Exception as e:  # not every platform reports memory
        info["device_memory_gib"] = f"unknown ({type(e).__name__})"
    from softjax.ops.pallas_kernels import pallas_available

    info["pallas_triton_importable"] = pallas_available()
    for k, v in info.items():
        print(f"{k}: {v}")
    return info


# ---------------------------------------------------------------- 2. correctness


def _scene(seed: int, faces: int = 10):
    """Overlapping triangles of both windings, some crossing near (z < 1) or beyond far; their
    textures by type: ``{'surface': [2, F, 4, 3], 'vertex': [2, F, 3, 3], 'uv': {...}}``, the
    UV ones the differentiable arguments of ``soft_rasterize`` (a 6 x 10 image per mesh,
    corner UVs in [-0.6, 1.6] so that the wrap mode matters, tints)."""
    rng = np.random.default_rng(seed)
    centre = rng.uniform(-0.7, 0.7, (2, faces, 1, 2))
    xy = centre + rng.normal(0.0, 0.35, (2, faces, 3, 2))
    z = rng.uniform(0.5, 8.0, (2, faces, 3, 1))
    fv = np.concatenate([xy, z], -1).astype(np.float32)
    surface = rng.uniform(0, 1, (2, faces, 4, 3)).astype(np.float32)
    vertex = rng.uniform(0, 1, (2, faces, 3, 3)).astype(np.float32)
    uv = dict(
        textures=rng.uniform(0, 1, (2, 6, 10, 3)).astype(np.float32),
        face_uvs=rng.uniform(-0.6, 1.6, (2, faces, 3, 2)).astype(np.float32),
        face_tint=rng.uniform(0.5, 1.5, (2, faces, 3)).astype(np.float32),
    )
    return fv, {"surface": surface, "vertex": vertex, "uv": uv}


def _compile_value_and_grads(fv, tex, weights, backend: str, kw: dict):
    """The compiled ``(image, (d/d vertices, d/d textures))`` of a weighted-sum loss; ``tex``
    is the textures array, or a dict of the UV arguments (``textures``, ``face_uvs``,
    ``face_tint``), all differentiated."""

    def loss(v, t):
        args = t if isinstance(t, dict) else {"textures": t}
        img = sj.soft_rasterize(v, backend=backend, **args, **kw)
        return jnp.sum(img * weights), img

    return jax.jit(jax.value_and_grad(loss, (0, 1), has_aux=True)).lower(fv, tex).compile()


def mode_kwargs(dist: str, rgb: str, alpha: str, tex: str, **extra: Any) -> dict:
    """``soft_rasterize`` keyword arguments of one mode of the backend comparisons, here and in
    the CPU tests: a near / far clip that cuts faces, sigma and gamma large enough for gradients
    at many pixels, a coloured background. ``tex``: ``'surface'``, ``'vertex'``, or
    ``'uv:repeat'`` / ``'uv:clamp'`` (``texture_type='uv'`` with that ``uv_wrap``; the UV
    arrays are the caller's)."""
    tex, _, wrap = tex.partition(":")
    kw = dict(
        dist_func=dist,
        aggr_func_rgb=rgb,
        aggr_func_alpha=alpha,
        texture_type=tex,
        near=1.0,
        far=6.0,
        sigma_val=1e-3,
        gamma_val=1e-2,
        background_color=(0.2, 0.3, 0.4),
    )
    if wrap:
        kw["uv_wrap"] = wrap
    return kw | extra


CHECKED_BACKENDS = ("reference", "xla", "pallas")


def correctness(smoke: bool, budget_end: float | None) -> dict:
    size = 12 if smoke else 16
    fv, textures = _scene(0)
    weights = np.random.default_rng(1).normal(size=(2, size, size, 4)).astype(np.float32)
    rows, failures = [], []
    modes = SMOKE_MODES if smoke else MODES
    header = f"{'dist':>11} {'rgb':>7} {'alpha':>5} {'tex':>9} {'xla fwd':>8} {'pallas':>8} "
    header += f"{'xla grad':>9} {'pal grad':>9}  ok"
    print(header)
    # Compilation dominates (about 6-18 s per mode on an H200, measured serially): the 3
    # programs per mode (123 in all) compile in a thread pool (XLA's and Triton's compilers
    # release the GIL) while the loop below evaluates them in order.
    pool = ThreadPoolExecutor(max_workers=max(1, min(8, (os.cpu_count() or 2) - 1)))
    compiled = {}
    for dist, rgb, alpha, tex in modes:
        t = textures[tex.partition(":")[0]]
        kw = mode_kwargs(dist, rgb, alpha, tex, image_size=size)
        for backend in CHECKED_BACKENDS:
            compiled[(dist, rgb, alpha, tex, backend)] = pool.submit(
                _compile_value_and_grads, fv, t, weights, backend, kw
            )
    for dist, rgb, alpha, tex in modes:
        if budget_end is not None and time.perf_counter() > budget_end:
            rows.append({"mode": [dist, rgb, alpha, tex], "skipped": "time budget"})
            continue
        t = textures[tex.partition(":")[0]]
        row: dict[str, Any] = {"mode": [dist, rgb, alpha, tex]}
        started = time.perf_counter()
        try:
            results = {}
            for backend in CHECKED_BACKENDS:
                (_, img), grads = compiled[(dist, rgb, alpha, tex, backend)].result()(fv, t)
                results[backend] = np.asarray(img), [np.asarray(g) for g in jax.tree.leaves(grads)]
            ref_img, ref_g = results["reference"]
            scales = [max(float(np.abs(g).max()), 1.0) for g in ref_g]
            for backend in ("xla", "pallas"):
                img, g = results[backend]
                row[f"{backend}_fwd_max_diff"] = float(np.abs(img - ref_img).max())
                row[f"{backend}_grad_rel_diff"] = max(
                    float(np.abs(a - b).max()) / s for a, b, s in zip(g, ref_g, scales, strict=True)
                )
                row[f"{backend}_finite"] = bool(
                    np.isfinite(img).all() and all(np.isfinite(x).all() for x in g)
                )
            row["ok"] = all(
                row[f"{b}_fwd_max_diff"] <= FWD_ATOL
                and row[f"{b}_grad_rel_diff"] <= GRAD_RTOL
                and row[f"{b}_finite"]
                for b in ("xla", "pallas")
            )
        except Exception as e:  # e.g. a kernel that does not lower: record, go on
            row["ok"] = False
            row["error"] = f"{type(e).__name__}: {e}"[:600]
        row["wait_s"] = round(time.perf_counter() - started, 2)  # compilation not yet done
        if not row["ok"]:
            failures.append(f"{'/'.join(row['mode'])}: {row.get('error', 'tolerance')}")
        rows.append(row)
        if "error" in row:
            print(f"{dist:>11} {rgb:>7} {alpha:>5} {tex:>9} error: {row['error'][:100]}")
        else:
            print(
                f"{dist:>11} {rgb:>7} {alpha:>5} {tex:>9} {row['xla_fwd_max_diff']:>8.1e} "
                f"{row['pallas_fwd_max_diff']:>8.1e} {row['xla_grad_rel_diff']:>9.1e} "
                f"{row['pallas_grad_rel_diff']:>9.1e}  {row['ok']}  {row['wait_s']} s",
                flush=True,
            )
    pool.shutdown(wait=False, cancel_futures=True)  # past the budget: drop what has not begun
    # backend='auto' per option set: the self-checking dispatch decides (on a GPU) and reports
    auto = []
    for dist, rgb, alpha, tex in modes:
        if budget_end is not None and time.perf_counter() > budget_end:
            break
        t = textures[tex.partition(":")[0]]
        args = t if isinstance(t, dict) else {"textures": t}
        started = time.perf_counter()
        try:
            kw = mode_kwargs(dist, rgb, alpha, tex, image_size=size)
            sj.soft_rasterize(fv, backend="auto", **args, **kw).block_until_ready()
            print(f"auto {dist}/{rgb}/{alpha}/{tex}: {time.perf_counter() - started:.1f} s")
        except Exception as e:  # 'auto' must never raise: that is a failure of the check
            failures.append(f"auto {dist}/{rgb}/{alpha}/{tex} raised {type(e).__name__}: {e}")
    for options, decision in sj.backend_report().items():
        auto.append({"options": options, **decision})
        print(f"auto: {options}: {decision['backend']} ({decision['reason'][:200]})")
    skipped = sum(1 for r in rows if "skipped" in r)
    return {
        "modes_checked": len(rows) - skipped,
        "modes_skipped": skipped,
        "modes_failed": sum(1 for r in rows if r.get("ok") is False),
        "tolerances": {"forward_atol": FWD_ATOL, "grad_rel": GRAD_RTOL},
        "rows": rows,
        "auto": auto,
        "failures": failures,
    }


# ---------------------------------------------------------------- 3. benchmark


def benchmark(smoke: bool, budget_end: float | None) -> dict:
    from bench import bench_gpu

    on_gpu = jax.default_backend() == "gpu"
    cases = bench_gpu.make_cases(smoke)
    if smoke:  # the interpreter is slow: the (small) reconstruction batch only
        cases = [cases[-1]]
    cfg = sj.PallasConfig(interpret=not on_gpu)
    rows = bench_gpu.benchmark(cases, [cfg], 1 if smoke else 10, deadline=budget_end)
    failures = [f"{r['case']} {r['backend']}: {r['error']}" for r in rows if "error" in r]
    return {"rows": rows, "failures": failures}


# ---------------------------------------------------------------- 4. train step


def _load_config(name: str):
    import importlib

    return importlib.import_module(f"configs.{name}").get_config()


def train_step(smoke: bool, budget_end: float | None) -> dict:
    from bench import bench_train_step

    rows, failures = [], []
    for backend in ("xla", "pallas"):
        if budget_end is not None and time.perf_counter() > budget_end:
            rows.append({"backend": backend, "skipped": "time budget"})
            continue
        config = _load_config("tiny" if smoke else "softras")
        config.backend = backend
        if smoke:
            config.model.template_level = 1  # 80 faces: the interpreter stays quick
        try:
            r = bench_train_step.measure(
                config, 2 if smoke else 64, 2 if smoke else 10, 1 if smoke else 3
            )
        except Exception as e:
            r = {"backend": backend, "error": f"{type(e).__name__}: {e}"[:600]}
            failures.append(f"{backend}: {r['error']}")
        rows.append(r)
        if "error" not in r:
            print(
                f"{backend:>7} batch {r['batch_size']}: {1e3 * r['median_s']:.1f} ms/step "
                f"(first step {r['first_step_s']:.1f} s, loss {r['loss']:.4f})",
                flush=True,
            )
    return {"rows": rows, "failures": failures}


# ---------------------------------------------------------------- 5. training


def training(
    smoke: bool, workdir: Path, data_dir: str | None, s_per_step: float | None, seconds: float
) -> dict:
    from recon import eval as recon_eval
    from recon.data.loader import load_split
    from recon.train import train_and_evaluate

    config = _load_config("tiny" if smoke else "quickstart")
    config.data_dir = data_dir or str(workdir / "tensorflow_datasets")
    if not smoke:
        config.batch_size = 64
    t0 = time.perf_counter()
    for split in (config.train_split, config.eval_split):
        load_split(config.dataset, split, config.data_dir, **dict(config.dataset_kwargs))
    build_s = time.perf_counter() - t0
    if smoke:
        steps = 2
    else:  # as many steps as fit in ``seconds`` at the measured step time (+ data, margin)
        steps = int(seconds / (1.3 * s_per_step)) if s_per_step else 200
        steps = int(np.clip(steps, 20, 20_000))
    config.num_steps = steps
    config.decay_step = int(0.75 * steps)
    config.log_every = max(steps // 20, 1)
    config.checkpoint_every = steps
    config.sample_every = steps + 1 if smoke else steps  # the smoke run skips the sample renders
    config.final_eval = False
    config.eval_every = 0
    run_dir = workdir / "run"
    t0 = time.perf_counter()
    record = train_and_evaluate(config, run_dir)
    train_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    results = recon_eval.main(["--workdir", str(run_dir), "--split", config.eval_split])
    eval_s = time.perf_counter() - t0
    out = {
        "config": config.name,
        "batch_size": config.batch_size,
        "steps": steps,
        "dataset_build_s": round(build_s, 1),
        "train_s": round(train_s, 1),
        "steps_per_s_incl_compile": round(steps / train_s, 2),
        "steps_per_s_logged": record.get("steps_per_sec"),
        "final_loss": record.get("loss"),
        "eval_s": round(eval_s, 1),
        "mean_iou": results["mean_iou"],
        "class_iou": {k: r["iou"] for k, r in results["classes"].items()},
    }
    print(json.dumps(out, indent=1))
    return out


# ---------------------------------------------------------------- summary


def _fmt(v, spec: str = ".3g") -> str:
    return "-" if v is None else format(v, spec) if isinstance(v, float) else str(v)


def _missing_row(keys: tuple, row: dict, columns: int) -> str:
    """A table row for an item without results: its keys, then why (error or skip reason)."""
    why = str(row.get("error") or row.get("skipped"))[:100]
    cells = [*keys, why] + [""] * (columns - len(keys) - 1)
    return "| " + " | ".join(str(c) for c in cells) + " |"


def markdown(summary: dict) -> str:
    """The summary as Markdown tables."""
    s = summary["sections"]
    lines = [
        f"# softjax GPU check ({'smoke' if summary['smoke'] else 'full'}), {summary['started']}",
        "",
        f"elapsed {summary.get('elapsed_s')} s"
        + (" — **cut by the deadline**" if summary.get("timed_out") else ""),
        "",
        "| section | status | seconds | note |",
        "|---|---|---|---|",
    ]
    for name in SECTIONS:
        r = s.get(name)
        if r is None:
            lines.append(f"| {name} | not run | - | |")
            continue
        note = (r.get("error") or "").replace("|", "/").replace("\n", " ")[:160]
        lines.append(f"| {name} | {r['status']} | {r.get('seconds', '-')} | {note} |")
    env = s.get("environment", {}).get("result")
    if env:
        v = env["versions"]
        lines += [
            "",
            f"Environment: Python {env['python']}, jax {v.get('jax')} / jaxlib {v.get('jaxlib')}, "
            f"flax {v.get('flax')}, devices {', '.join(env['devices'])}, memory "
            f"{env.get('device_memory_gib')} GiB, Pallas Triton importable: "
            f"{env.get('pallas_triton_importable')}",
        ]
    cor = s.get("correctness", {}).get("result")
    if cor:
        lines += [
            "",
            f"## Correctness ({cor['modes_checked']} option sets checked, {cor['modes_failed']} "
            f"failed, {cor['modes_skipped']} skipped for time; forward atol {FWD_ATOL}, "
            f"gradients {GRAD_RTOL} x max(|ref|, 1))",
            "",
            "| mode | xla fwd | pallas fwd | xla grad | pallas grad | ok |",
            "|---|---|---|---|---|---|",
        ]
        for r in cor["rows"]:
            if "skipped" in r:
                continue
            mode = "/".join(r["mode"])
            if "error" in r:
                lines.append(f"| {mode} | error: {r['error'][:100]} | | | | False |")
                continue
            lines.append(
                f"| {mode} | {_fmt(r['xla_fwd_max_diff'], '.1e')} | "
                f"{_fmt(r['pallas_fwd_max_diff'], '.1e')} | {_fmt(r['xla_grad_rel_diff'], '.1e')} "
                f"| {_fmt(r['pallas_grad_rel_diff'], '.1e')} | {r['ok']} |"
            )
        if cor["auto"]:
            lines += ["", "`backend='auto'`:", ""]
            lines += [
                f"- {a['options']}: **{a['backend']}** ({a['reason'][:300]})" for a in cor["auto"]
            ]
    bench = s.get("benchmark", {}).get("result")
    if bench:
        from bench import bench_gpu

        lines += [
            "",
            "## Benchmark (median ms; Gp/s = useful pairs per second)",
            "",
            "| case | backend | fwd ms | fwd+bwd ms | fwd Gp/s | f+b Gp/s | max diff vs xla "
            f"| pixels > {bench_gpu.PIXEL_DIFF:g} |",
            "|---|---|---|---|---|---|---|---|",
        ]
        for r in bench["rows"]:
            if "fwd_median_ms" not in r:
                lines.append(_missing_row((r["case"], r["backend"]), r, 8))
                continue
            lines.append(
                f"| {r['case']} | {r['backend']} | {r['fwd_median_ms']:.3f} | "
                f"{r['fwd_bwd_median_ms']:.3f} | {r['fwd_pairs_per_s'] / 1e9:.2f} | "
                f"{r['fwd_bwd_pairs_per_s'] / 1e9:.2f} | "
                f"{_fmt(r.get('max_abs_diff_vs_xla'), '.1e')} | "
                f"{_fmt(r.get('pixels_differing_vs_xla'))} |"
            )
    step = s.get("train_step", {}).get("result")
    if step:
        lines += ["", "## Train step", "", "| backend | batch | ms/step | first step s |"]
        lines.append("|---|---|---|---|")
        for r in step["rows"]:
            if "median_s" not in r:
                lines.append(_missing_row((r["backend"], ""), r, 4))
                continue
            lines.append(
                f"| {r['backend']} | {r['batch_size']} | {1e3 * r['median_s']:.1f} | "
                f"{r['first_step_s']:.1f} |"
            )
    tr = s.get("training", {}).get("result")
    if tr:
        lines += [
            "",
            "## Training",
            "",
            f"{tr['config']} at batch {tr['batch_size']}: {tr['steps']} steps in {tr['train_s']} s "
            f"({tr['steps_per_s_incl_compile']} steps/s with compilation, "
            f"{_fmt(tr['steps_per_s_logged'])} steps/s logged), final loss "
            f"{_fmt(tr['final_loss'])}; dataset build {tr['dataset_build_s']} s; "
            f"eval {tr['eval_s']} s: **mean voxel IoU {tr['mean_iou']:.1f}**",
        ]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--out", required=True, help="folder for summary.json and summary.md")
    p.add_argument("--smoke", action="store_true", help="tiny sizes, any platform")
    p.add_argument(
        "--deadline",
        type=float,
        default=None,
        help="seconds for the whole run (default 540; --smoke: 1200, for busy CPUs)",
    )
    p.add_argument(
        "--workdir",
        default=None,
        help="scratch folder for the training section's dataset and run (default: a new "
        "temporary folder)",
    )
    p.add_argument(
        "--data-dir",
        default=None,
        help="TFDS directory of the training section's dataset (default: WORKDIR/"
        "tensorflow_datasets; an already prepared one is reused)",
    )
    p.add_argument(
        "--sections", default=",".join(SECTIONS), help=f"comma-separated subset of {SECTIONS}"
    )
    p.add_argument(
        "--budget",
        action="append",
        default=[],
        metavar="SECTION=SECONDS",
        help=f"override a section's time budget (repeatable; defaults {BUDGETS})",
    )
    args = p.parse_args(argv)
    budgets = dict(BUDGETS)
    for item in args.budget:
        name, _, value = item.partition("=")
        try:
            seconds = float(value)
        except ValueError:
            seconds = -1.0
        if name not in BUDGETS or seconds <= 0:
            p.error(f"--budget {item!r}: expected SECTION=SECONDS, SECTION one of {list(BUDGETS)}")
        budgets[name] = seconds
    wanted = [x for x in args.sections.split(",") if x]
    unknown = sorted(set(wanted) - set(SECTIONS))
    if unknown:
        p.error(f"unknown sections {unknown}; choose from {list(SECTIONS)}")
    out = Path(args.out)
    deadline = args.deadline or (1200.0 if args.smoke else 540.0)
    run = Run(out, args.smoke, deadline)
    threading.Thread(target=_watchdog, args=(run,), daemon=True).start()
    on_gpu = jax.default_backend() == "gpu"
    if not on_gpu and not args.smoke:
        print("gpu_check: no GPU here; the full check needs one (or --smoke)", file=sys.stderr)
        return 2

    def budget(name: str) -> float | None:
        return None if args.smoke else time.perf_counter() + budgets[name]

    for name in SECTIONS:
        if name not in wanted:
            run.skip(name, "not selected (--sections)")
            continue
        if name == "environment":
            run.section(name, environment)
        elif name == "correctness":
            run.section(name, correctness, args.smoke, budget(name))
        elif name == "benchmark":
            run.section(name, benchmark, args.smoke, budget(name))
        elif name == "train_step":
            run.section(name, train_step, args.smoke, budget(name))
        else:
            step = run.summary["sections"].get("train_step", {}).get("result", {})
            times = [r["median_s"] for r in step.get("rows", []) if "median_s" in r]
            # the 'auto' path is what training uses; either backend's time is a fair estimate
            seconds = min(TRAIN_SECONDS, max(run.remaining() - 90.0, 20.0))
            workdir = Path(args.workdir or tempfile.mkdtemp(prefix="softjax_gpu_check_"))
            s_per_step = max(times) if times else None
            run.section(name, training, args.smoke, workdir, args.data_dir, s_per_step, seconds)
    with run.lock:
        run.summary["finished"] = True
        run.write()
    print("\n" + (out / "summary.md").read_text())
    statuses = [r["status"] for r in run.summary["sections"].values()]
    return 1 if "failed" in statuses else 0


if __name__ == "__main__":
    sys.exit(main())
