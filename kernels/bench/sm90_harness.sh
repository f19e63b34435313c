#!/usr/bin/env bash
# Builds the standalone Hopper attention harness (no LibTorch). Usage:
#   kernels/bench/sm90_harness.sh [out_dir]    -> out_dir/sm90_harness (default build/sm90_harness)
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
src="$here/../src"
out="${1:-$here/../../build/sm90_harness}"
mkdir -p "$out"
NVCC="${NVCC:-nvcc}"
if ! command -v "$NVCC" >/dev/null; then NVCC=/usr/local/cuda/bin/nvcc; fi
CUTLASS_INC="${CUTLASS_INC:-}"
flags=(-std=c++20 -O3 --expt-relaxed-constexpr -gencode=arch=compute_90a,code=sm_90a -I"$src" ${EXTRA_FLAGS:-})
"$NVCC" "${flags[@]}" -Xptxas -v -c "$src/attention_sm90.cu" -o "$out/attention_sm90.o" 2>"$out/ptxas.log"
"$NVCC" "${flags[@]}" -c "$here/sm90_harness.cu" -o "$out/sm90_harness.o"
"$NVCC" "${flags[@]}" "$out/attention_sm90.o" "$out/sm90_harness.o" -o "$out/sm90_harness"
echo "built $out/sm90_harness"
