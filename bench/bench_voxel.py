"""CPU benchmark of ``softjax.voxelize``: SoftRas's rule (this tree) against the previous
surface-sampling voxeliser, loaded from git history, in one run.

    python bench/bench_voxel.py [--repeats 5] [--batch 64] [--json bench/results/voxel.json]
    python bench/bench_voxel.py --old-rev none      # the current voxeliser only

Cases, ``--batch`` meshes of 1,280 faces each at 32^3 (the evaluation's shape):

* ``template``: the untrained prediction, the level-3 icosphere scaled by 0.5;
* ``blobs``: smooth random star-shaped blobs (the icosphere with a random low-frequency radius
  and a random centre and anisotropic scale);
* ``jittered``: the icosphere with independent noise of about one voxel on each vertex (a
  crumpled, self-intersecting surface: many thin and tilted faces);
* ``soup``: random triangles of sizes from 0.1 to 20 voxels anywhere in the grid (stress: many
  large or badly conditioned projections).

For each case and implementation: compile time (first call) and the median and minimum of
``--repeats`` timed calls (``block_until_ready``); for the current one also the surface pass
alone. Voxel counts: occupied voxels of each implementation and how many differ. Prints a table
and writes JSON.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import time
import types
from collections.abc import Callable

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
sys.path.insert(0, ROOT)

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402

import softjax.voxel as voxel  # noqa: E402
from softjax.mesh import _icosphere_np  # noqa: E402

# the last commit of softjax/voxel.py with the surface-sampling voxeliser
OLD_REV = "322987abe7508863fdf96d2b3e7f234165590d59"


def load_old(rev: str) -> types.ModuleType | None:
    """``softjax/voxel.py`` as of git revision ``rev``, as a module (None if unavailable)."""
    try:
        src = subprocess.run(
            ["git", "show", f"{rev}:softjax/voxel.py"],
            cwd=ROOT,
            check=True,
            capture_output=True,
            text=True,
        ).stdout
    except (OSError, subprocess.CalledProcessError) as e:
        print(f"old voxeliser at {rev} unavailable: {e}", file=sys.stderr)
        return None
    module = types.ModuleType("voxel_old")
    exec(compile(src, f"{rev}:softjax/voxel.py", "exec"), module.__dict__)
    return module


def make_cases(batch: int, seed: int = 0) -> dict[str, np.ndarray]:
    """``{name: [batch, 1280, 3, 3] float32}`` face vertices of the benchmark cases."""
    rng = np.random.default_rng(seed)
    v, f = _icosphere_np(3)
    cases = {"template": np.broadcast_to((v * 0.5)[f], (batch,) + f.shape + (3,))}
    # star-shaped blobs: radius 1 + a random combination of low-order terms of the direction
    terms = np.stack([v[:, 0], v[:, 1], v[:, 2], v[:, 0] * v[:, 1], v[:, 1] * v[:, 2],
                      v[:, 0] * v[:, 2], v[:, 0] ** 2 - v[:, 1] ** 2], axis=1)  # fmt: skip
    radius = 1 + 0.25 * np.tanh(rng.normal(size=(batch, 1, terms.shape[1])) @ terms.T[None])
    radius = radius.reshape(batch, -1, 1)
    scale = rng.uniform(0.25, 0.45, size=(batch, 1, 3)) / 1.25
    centre = rng.uniform(-0.05, 0.05, size=(batch, 1, 3))
    cases["blobs"] = (v[None] * radius * scale + centre)[:, f]
    jitter = v[None] * 0.45 + rng.normal(scale=1 / 32, size=(batch,) + v.shape)
    cases["jittered"] = jitter[:, f]
    n = f.shape[0]
    centres = rng.uniform(-0.5, 0.5, size=(batch, n, 1, 3))
    sizes = np.exp(rng.uniform(np.log(0.1), np.log(20), size=(batch, n, 1, 1))) / 32
    cases["soup"] = centres + sizes * rng.normal(size=(batch, n, 3, 3))
    return {k: np.ascontiguousarray(c, np.float32) for k, c in cases.items()}


def timed(fn: Callable[[], jax.Array], repeats: int) -> dict[str, float]:
    """Compile (first call) and run times of ``fn`` in seconds."""
    t0 = time.perf_counter()
    jax.block_until_ready(fn())
    compile_s = time.perf_counter() - t0
    runs = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        jax.block_until_ready(fn())
        runs.append(time.perf_counter() - t0)
    return {"compile_s": compile_s, "median_s": float(np.median(runs)), "min_s": min(runs)}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--old-rev", default=OLD_REV, help="git revision, or 'none'")
    parser.add_argument("--json", default=os.path.join(HERE, "results", "voxel.json"))
    args = parser.parse_args(argv)

    old = None if args.old_rev == "none" else load_old(args.old_rev)
    cases = make_cases(args.batch)
    rows = []
    for name, fv_np in cases.items():
        fv = jnp.asarray(fv_np)
        surface = jax.jit(lambda x: voxel.surface_voxels(x, 32))
        row = {"case": name, "meshes": int(fv.shape[0]), "faces": int(fv.shape[1])}
        row["new"] = timed(lambda fv=fv: voxel.voxelize(fv), args.repeats)
        row["new_surface"] = timed(lambda fv=fv, s=surface: s(fv), args.repeats)
        new = voxel.voxelize(fv)
        row["new_voxels"] = int(jnp.sum(new))
        if old is not None:
            row["old"] = timed(lambda fv=fv: old.voxelize(fv), args.repeats)
            prev = old.voxelize(fv)
            row["old_voxels"] = int(jnp.sum(prev))
            row["only_new"] = int(jnp.sum(new & ~prev))
            row["only_old"] = int(jnp.sum(prev & ~new))
        rows.append(row)

    header = f"{'case':<9} {'impl':<12} {'compile s':>9} {'median s':>9} {'min s':>8} {'voxels':>9}"
    print(header)
    print("-" * len(header))
    for r in rows:
        impls = [("new", "new_voxels"), ("new_surface", None)]
        impls += [("old", "old_voxels")] if "old" in r else []
        for impl, count in impls:
            t = r[impl]
            vox = f"{r[count]:>9}" if count else f"{'':>9}"
            print(f"{r['case']:<9} {impl:<12} {t['compile_s']:>9.2f} {t['median_s']:>9.3f} "
                  f"{t['min_s']:>8.3f} {vox}")  # fmt: skip
        if "old" in r:
            print(f"{'':<9} differing voxels: {r['only_new']} only new, {r['only_old']} only old")
    result = {
        "rows": rows,
        "old_rev": None if old is None else args.old_rev,
        "repeats": args.repeats,
        "cpus": os.cpu_count(),
        "machine": platform.machine(),
        "python": platform.python_version(),
        "jax": jax.__version__,
        "numpy": np.__version__,
    }
    if args.json:
        os.makedirs(os.path.dirname(os.path.abspath(args.json)), exist_ok=True)
        with open(args.json, "w") as fh:
            json.dump(result, fh, indent=2)
        print(f"wrote {args.json}")


if __name__ == "__main__":
    main()
