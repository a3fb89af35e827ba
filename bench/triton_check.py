"""GPU-free compile check of the Pallas kernels: Triton IR -> PTX -> sm_90 cubin, registers.

    # 1. in the project's environment (no GPU needed): Pallas's Triton lowering of the
    #    forward and backward kernels, written as textual Triton IR (.ttir)
    python bench/triton_check.py dump /tmp/ttir [--tile 8 --window 16 --bwd-window 8]
    # 2. in any Python with the `triton` package (pip install triton; no GPU needed):
    #    compile each file for sm_90 and report registers and spilled bytes per thread
    python bench/triton_check.py compile /tmp/ttir [--arch 90]

Step 1 needs jaxlib 0.10.2 (which defers Triton compilation to XLA) or a CUDA jaxlib (later
jaxlibs compile the kernels with the CUDA plugin while lowering). Step 2 uses the Triton
release of the ``triton`` package, not the Triton inside XLA that runs the kernels on a GPU,
so it is evidence, not proof, that they compile there. Register counts come from
``cuobjdump --dump-resource-usage`` (``STACK`` > 0 means spills).
"""

from __future__ import annotations

import argparse
import glob
import os
import re
import subprocess
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.dirname(HERE))

MODES = [  # (dist, rgb, alpha, texture, texels per side, dist_eps); 'uv:WRAP': a UV texture
    ("euclidean", "softmax", "prod", "surface", 1, 1e-4),
    ("euclidean", "hard", "prod", "surface", 1, 1e-10),
    ("barycentric", "softmax", "sum", "vertex", 1, 1e-4),
    ("hard", "hard", "hard", "surface", 3, 1e-4),
    ("euclidean", "softmax", "prod", "uv:repeat", 0, 1e-4),
    ("barycentric", "hard", "sum", "uv:clamp", 0, 1e-4),
]
UV_IMAGE = (48, 40)  # H, W of the UV modes' texture images (any size gives the same code)

# the options every mode shares
FIXED = dict(image_size=64, background_color=(0.0, 0.0, 0.0), near=1.0, far=100.0, fill_back=True)
FIXED.update(eps=1e-3, sigma_val=1e-4, gamma_val=1e-4, backend="pallas")


def dump(out_dir: str, cfg_kw: dict, modes=None) -> list[str]:
    """Writes one ``.ttir`` file per kernel and mode (default :data:`MODES`) to ``out_dir``
    and returns their paths."""
    import jax
    import jax.numpy as jnp
    import numpy as np
    from jax._src.pallas.triton import lowering as triton_lowering

    from softjax.ops.binning import TilingConfig
    from softjax.ops.options import check_inputs
    from softjax.ops.pallas_kernels import rasterize_pallas

    captured = []
    original = triton_lowering.lower_jaxpr_to_triton_module

    def capture(*args, **kwargs):
        result = original(*args, **kwargs)
        captured.append(result.module.operation.get_asm(enable_debug_info=False))
        return result

    triton_lowering.lower_jaxpr_to_triton_module = capture
    cfg = TilingConfig(interpret=False, **cfg_kw)
    os.makedirs(out_dir, exist_ok=True)
    rng = np.random.default_rng(0)
    fv = np.concatenate(
        [rng.uniform(-0.8, 0.8, (2, 9, 3, 2)), rng.uniform(2.0, 5.0, (2, 9, 3, 1))], -1
    ).astype(np.float32)
    paths = []
    try:
        for dist, rgb, alpha, texture, res, dist_eps in MODES if modes is None else modes:
            captured.clear()
            tex_type, _, wrap = texture.partition(":")
            uv = {}
            if tex_type == "uv":
                tex = rng.uniform(size=(2, *UV_IMAGE, 3))
                uv = dict(
                    face_uvs=rng.uniform(-0.5, 1.5, (2, 9, 3, 2)).astype(np.float32),
                    face_tint=rng.uniform(0.5, 1.5, (2, 9, 3)).astype(np.float32),
                    uv_wrap=wrap,
                )
            else:
                tex = rng.uniform(size=(2, 9, 3 if tex_type == "vertex" else res * res, 3))
            kw = dict(dist_func=dist, aggr_func_rgb=rgb, aggr_func_alpha=alpha, **uv, **FIXED)
            f, t, opts, scalars, _ = check_inputs(
                fv, tex.astype(np.float32), dist_eps=dist_eps, texture_type=tex_type, **kw
            )

            def loss(f, t, scalars, opts=opts):
                return jnp.sum(rasterize_pallas(f, t, scalars, opts, cfg))

            jax.export.export(
                jax.jit(jax.grad(loss, (0, 1, 2))),
                platforms=["cuda"],
                disabled_checks=[
                    jax.export.DisabledSafetyCheck.custom_call("__gpu$xla.gpu.triton")
                ],
            )(f, t, scalars)
            assert len(captured) == 2, len(captured)
            tag = f"{dist}_{rgb}_{alpha}_{tex_type}{wrap or res}"
            for kind, text, warps in zip(
                ("fwd", "bwd"), captured, (cfg.num_warps, cfg.bwd_num_warps), strict=True
            ):
                path = os.path.join(out_dir, f"{tag}_{kind}_w{warps}.ttir")
                with open(path, "w") as fh:
                    fh.write(text.strip() + "\n")
                print(path)
                paths.append(path)
    finally:  # the next caller in this process gets the real lowering
        triton_lowering.lower_jaxpr_to_triton_module = original
    return paths


def compile_all(in_dir: str, arch: int) -> None:
    os.environ.setdefault("TRITON_DEFAULT_FP_FUSION", "1")
    import triton
    from triton.backends.compiler import GPUTarget

    bindir = os.path.join(os.path.dirname(triton.__file__), "backends", "nvidia", "bin")
    print(f"triton {triton.__version__}, sm_{arch}")
    for path in sorted(glob.glob(os.path.join(in_dir, "*.ttir"))):
        warps = int(re.search(r"_w(\d+)\.ttir$", path).group(1))
        name = os.path.basename(path)
        try:
            kernel = triton.compile(
                path,
                target=GPUTarget("cuda", arch, 32),
                options={"num_warps": warps, "num_stages": 1},
            )
        except Exception as e:  # report and go on
            print(f"{name:>48} FAILED: {e!r}"[:2000])
            continue
        cubin = path + ".cubin"
        with open(cubin, "wb") as fh:
            fh.write(kernel.asm["cubin"])
        usage = subprocess.run(
            [os.path.join(bindir, "cuobjdump"), "--dump-resource-usage", cubin],
            capture_output=True,
            text=True,
        ).stdout
        m = re.search(r"REG:(\d+).*?STACK:(\d+)", usage, re.S)
        regs, stack = (m.group(1), m.group(2)) if m else ("?", "?")
        print(f"{name:>48} ok  registers {regs:>3}  spilled bytes {stack}")


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("step", choices=("dump", "compile"))
    parser.add_argument("dir")
    parser.add_argument("--arch", type=int, default=90)
    for name in ("tile", "window", "bwd-window", "num-warps", "bwd-num-warps"):
        parser.add_argument(f"--{name}", type=int)
    args = parser.parse_args(argv)
    if args.step == "dump":
        keys = ("tile", "window", "bwd_window", "num_warps", "bwd_num_warps")
        dump(args.dir, {k: getattr(args, k) for k in keys if getattr(args, k) is not None})
    else:
        compile_all(args.dir, args.arch)


if __name__ == "__main__":
    main()
