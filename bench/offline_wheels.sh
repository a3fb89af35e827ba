#!/usr/bin/env bash
# Downloads (on a machine with a package index) the wheels that softjax needs on the GPU machine
# and that its image lacks, for CPython 3.12 manylinux x86_64, into DIR (at most 60 MiB in all).
#
#   bench/offline_wheels.sh DIR
#
# The GPU machine has JAX 0.11 (CUDA 13), flax, optax, orbax-checkpoint, numpy, scipy, imageio,
# matplotlib, tqdm, absl-py, etils, protobuf, pyarrow, psutil, requests, wrapt, attrs, pyyaml,
# six and pytest, but not tensorflow-datasets (the dataset builders), array_record (their file
# format), ml_collections (the configs) and their own dependencies below. There, with no index:
#
#   python3 -m pip install -q --no-index --no-deps --no-compile --target /tmp/site DIR/*.whl
#   PYTHONPATH=/tmp/site:. python3 bench/gpu_check.py --out /tmp/gpu_check
#
# Versions are the ones this project is tested with (pyproject.toml's ranges admit them).
set -euo pipefail
dir=${1:?usage: bench/offline_wheels.sh DIR}
mkdir -p "$dir"
python=${PYTHON:-python3}
platforms=(manylinux_2_28_x86_64 manylinux_2_27_x86_64 manylinux_2_17_x86_64 manylinux2014_x86_64
  manylinux1_x86_64 manylinux_2_24_x86_64 any)
plat_args=()
for p in "${platforms[@]}"; do plat_args+=(--platform "$p"); done

binary=(
  tensorflow-datasets==4.9.10
  array-record==0.8.6
  ml-collections==1.1.0
  dm-tree==0.1.10
  immutabledict==4.3.1
  simple-parsing==0.1.9
  docstring-parser==0.18.0
  tensorflow-metadata==1.21.0
  googleapis-common-protos==1.76.0
  termcolor==3.3.0
  toml==0.10.2
)
source_only=(promise==2.3)  # published as an sdist only: built into a pure-Python wheel here

"$python" -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 \
  --implementation cp "${plat_args[@]}" -d "$dir" "${binary[@]}"
"$python" -m pip wheel -q --no-deps --no-build-isolation -w "$dir" "${source_only[@]}" 2>/dev/null \
  || "$python" -m pip wheel -q --no-deps -w "$dir" "${source_only[@]}"

count=$(find "$dir" -maxdepth 1 -name '*.whl' | wc -l)
bytes=$(find "$dir" -maxdepth 1 -name '*.whl' -printf '%s\n' | awk '{s += $1} END {print s + 0}')
mib=$(awk -v b="$bytes" 'BEGIN {printf "%.1f", b / 1048576}')
echo "offline_wheels: $count wheels, $mib MiB in $dir"
if [ "$bytes" -gt $((60 * 1048576)) ]; then
  echo "offline_wheels: over the 60 MiB limit" >&2
  exit 1
fi
