#!/usr/bin/env bash
# Runs on the GPU machine (its own torch, nvcc and CMake; no network): builds the op library, runs
# the GPU tests, compute-sanitizer on a small case, and the kernel benchmark. Logs go to $OUT
# (or ./gpu-out). Usage: scripts/gpu_check.sh [bench arguments...]
set -uo pipefail
cd "$(dirname "$0")/.."
OUT=${OUT:-gpu-out}; mkdir -p "$OUT"
PY=$(command -v python3)
status=0
{
  nvidia-smi --query-gpu=name,memory.total,driver_version,clocks.sm,clocks.max.sm --format=csv
  "$PY" -c "import torch; print('torch', torch.__version__, torch.version.cuda)"
  nvcc --version | tail -1
  echo "commit ${RADIAL_COMMIT:-$(git rev-parse HEAD 2>/dev/null || echo unknown)}"
} 2>&1 | tee "$OUT/env.txt"

# The system compilers, whose libstdc++ is the one PyTorch loads. The image's /opt/gcc g++ comes first
# on PATH; as nvcc's host compiler its library folder (libstdc++.a only) lands in CUDA's implicit link
# directories, and parts of a static libstdc++ end up in libradial_ops.so, whose uninitialised locale
# then crashed the first integer formatted into an error message. CUDAHOSTCXX reaches CMake's CUDA
# detection (check_language), which a -D flag does not.
if [ -x /usr/bin/g++ ]; then export CC=/usr/bin/gcc CXX=/usr/bin/g++ CUDAHOSTCXX=/usr/bin/g++; fi
rm -rf build-gpu  # a machine kept warm between calls may hold a build from other compilers
if ! { cmake -S . -B build-gpu -G Ninja -DRADIAL_PYTHON="$PY" -DRADIAL_REQUIRE_GTEST=OFF -DRADIAL_BUILD_SERVICE=OFF &&
       cmake --build build-gpu -j "$(nproc)"; } >"$OUT/build.log" 2>&1; then
  tail -40 "$OUT/build.log"; exit 1
fi
export RADIAL_OPS_LIBRARY=$PWD/build-gpu/kernels/libradial_ops.so
echo "libstdc++ pieces linked statically into libradial_ops.so (must be 0): $(nm -C --defined-only build-gpu/kernels/libradial_ops.so | grep -c 'codecvt_c16\|locale_init')" | tee -a "$OUT/env.txt"
cuobjdump --dump-sass build-gpu/kernels/libradial_cuda_kernels.a 2>/dev/null | grep -c HGMMA | sed 's/^/HGMMA instructions in sass: /' | tee -a "$OUT/env.txt"

if [ -z "${SKIP_TESTS:-}" ]; then
  echo "== GPU tests"
  "$PY" -m pytest -q -p no:cacheprovider tests/kernels/test_attention_gpu.py 2>&1 | tee "$OUT/gpu_tests.log" | tail -25 || status=1
  echo "== compute-sanitizer memcheck"
  compute-sanitizer --tool memcheck --error-exitcode 9 "$PY" tests/kernels/sanitizer_case.py >"$OUT/sanitizer.log" 2>&1 || status=1
  tail -4 "$OUT/sanitizer.log"
fi
if [ -z "${SKIP_BENCH:-}" ]; then
  echo "== benchmark"
  "$PY" kernels/bench/bench_attention.py --out "$OUT" "$@" 2>&1 | tee "$OUT/bench.log" | tail -45 || status=1
fi
exit $status
