#!/usr/bin/env bash
# Runs on the GPU machine: the worker's C++ generation pipeline (pipeline_trace) on a real-size
# random-weight bundle. The image has no absl, nlohmann-json or libsentencepiece, so Debian's packages
# of them travel in .debs/ (fetch once here: scripts/gpu_pipeline.sh --fetch) and are unpacked into
# /tmp/radial-debs. Usage: scripts/gpu_pipeline.sh [MODEL=1.3b] [pipeline_trace arguments...]
set -uo pipefail
cd "$(dirname "$0")/.."
DEBS=(libabsl-dev libabsl20220623 nlohmann-json3-dev libsentencepiece-dev libsentencepiece0 libprotobuf-lite32)
if [ "${1:-}" = "--fetch" ]; then
  mkdir -p .debs && (cd .debs && apt-get download "${DEBS[@]}")
  exit
fi
model=${1:-1.3b}; shift || true
OUT=${OUT:-gpu-out}; mkdir -p "$OUT"
root=/tmp/radial-debs
if [ ! -d "$root/usr" ]; then
  for deb in .debs/*.deb; do dpkg -x "$deb" "$root"; done
  sed -i "s|^prefix=/usr|prefix=$root/usr|" "$root"/usr/lib/x86_64-linux-gnu/pkgconfig/sentencepiece.pc
fi
export LD_LIBRARY_PATH=$root/usr/lib/x86_64-linux-gnu${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}
export PKG_CONFIG_PATH=$root/usr/lib/x86_64-linux-gnu/pkgconfig
if [ -x /usr/bin/g++ ]; then export CC=/usr/bin/gcc CXX=/usr/bin/g++ CUDAHOSTCXX=/usr/bin/g++; fi  # gpu_check.sh says why
PY=$(command -v python3)
if [ ! -x build-gpu-rt/worker/pipeline_trace ]; then
  { cmake -S . -B build-gpu-rt -G Ninja -DRADIAL_PYTHON="$PY" -DRADIAL_REQUIRE_GTEST=OFF -DRADIAL_BUILD_SERVICE=OFF \
      -DRADIAL_BUILD_RUNTIME=ON -DCMAKE_PREFIX_PATH="$root/usr" &&
    cmake --build build-gpu-rt -j "$(nproc)" --target pipeline_trace radial_ops; } >"$OUT/build_runtime.log" 2>&1 ||
    { tail -40 "$OUT/build_runtime.log"; exit 1; }
fi
export RADIAL_OPS_LIBRARY=$PWD/build-gpu-rt/kernels/libradial_ops.so PYTHONPATH=$PWD/worker/exporter
bundle=${BUNDLES:-/tmp/bundles}/$model
if [ ! -f "$bundle/manifest.json" ]; then
  "$PY" -m radial_export --random "wan2.1-t2v-$model" --out "$bundle" 2>&1 | tail -1 || exit 1
fi
build-gpu-rt/worker/pipeline_trace --bundle "$bundle" --device cuda "$@"
