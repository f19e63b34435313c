#!/usr/bin/env bash
# Configures (once) and builds everything into build/ (RADIAL_BUILD_DIR). Quiet unless something
# fails; the full output is in build/configure.log and build/build.log. Extra arguments go to the
# CMake configure.
set -euo pipefail
cd "$(dirname "$0")/.."
BUILD_DIR=${RADIAL_BUILD_DIR:-build}
mkdir -p "$BUILD_DIR"
if [ ! -f "$BUILD_DIR/build.ninja" ]; then
  cmake -S . -B "$BUILD_DIR" -G Ninja -DCMAKE_BUILD_TYPE=Release "$@" >"$BUILD_DIR/configure.log" 2>&1 ||
    { cat "$BUILD_DIR/configure.log"; echo "build: configure failed" >&2; exit 1; }
fi
start=$(date +%s)
if ! cmake --build "$BUILD_DIR" -j "${RADIAL_JOBS:-$(nproc)}" >"$BUILD_DIR/build.log" 2>&1; then
  grep -E -A12 "error|FAILED" "$BUILD_DIR/build.log" | head -80 || tail -40 "$BUILD_DIR/build.log"
  echo "build: failed (full output in $BUILD_DIR/build.log)" >&2
  exit 1
fi
grep -q "no work to do" "$BUILD_DIR/build.log" || echo "build: done in $(($(date +%s) - start)) s ($BUILD_DIR)"
