#!/usr/bin/env bash
# Configures (once) and builds everything into build/. Extra arguments go to the CMake configure.
set -euo pipefail
cd "$(dirname "$0")/.."
BUILD_DIR=${RADIAL_BUILD_DIR:-build}
if [ ! -f "$BUILD_DIR/build.ninja" ]; then
  mkdir -p "$BUILD_DIR"
  cmake -S . -B "$BUILD_DIR" -G Ninja -DCMAKE_BUILD_TYPE=Release "$@" >"$BUILD_DIR/configure.log" 2>&1 ||
    { cat "$BUILD_DIR/configure.log"; exit 1; }
fi
cmake --build "$BUILD_DIR" -j "${RADIAL_JOBS:-$(nproc)}"
