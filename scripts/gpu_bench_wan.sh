#!/usr/bin/env bash
# Runs on the GPU machine: builds the op library (scripts/gpu_check.sh without its tests and kernel
# benchmark, unless build-gpu/ is already there), then times the Wan2.1 models at real sizes with
# worker/bench/bench_wan.py. Usage: scripts/gpu_bench_wan.sh [1.3b] [14b] [-- bench arguments]
# With BUNDLES=DIR each model is first exported as a bundle (radial_export --random, bf16) into
# DIR/<model> (kept if already there) and the benchmark loads that bundle's TorchScript files;
# EXPORT_ONLY=1 stops after the exports.
set -uo pipefail
cd "$(dirname "$0")/.."
OUT=${OUT:-gpu-out}; mkdir -p "$OUT"
models=(); while (($#)) && [ "$1" != "--" ]; do models+=("$1"); shift; done; [ "${1:-}" = "--" ] && shift
((${#models[@]})) || models=(1.3b 14b)
if [ ! -f build-gpu/kernels/libradial_ops.so ]; then
  SKIP_TESTS=1 SKIP_BENCH=1 scripts/gpu_check.sh || exit 1
fi
export RADIAL_OPS_LIBRARY=$PWD/build-gpu/kernels/libradial_ops.so PYTHONPATH=$PWD/worker/exporter
status=0
for model in "${models[@]}"; do
  echo "== Wan2.1 $model"
  bundle_args=()
  if [ -n "${BUNDLES:-}" ]; then
    if [ ! -f "$BUNDLES/$model/manifest.json" ]; then
      /usr/bin/time -f "export: %e s, peak RSS %M KiB" python3 -m radial_export --random "wan2.1-t2v-$model" \
        --out "$BUNDLES/$model" 2>&1 | tee "$OUT/export_$model.log" || { status=1; continue; }
      du -sh "$BUNDLES/$model" | tee -a "$OUT/export_$model.log"
    fi
    [ -n "${EXPORT_ONLY:-}" ] && continue
    bundle_args=(--bundle "$BUNDLES/$model")
  fi
  python3 worker/bench/bench_wan.py --model "$model" "${bundle_args[@]}" --out "$OUT" "$@" 2>&1 |
    tee "$OUT/bench_wan_$model${BUNDLES:+_bundle}.log" || status=1
done
exit $status
