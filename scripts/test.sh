#!/usr/bin/env bash
# Installs what is missing, builds, and runs every CPU test (ctest; GPU tests carry the label gpu
# and run on a GPU machine with `ctest --test-dir build -L gpu`).
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
scripts/build.sh
ctest --test-dir "${RADIAL_BUILD_DIR:-build}" -LE gpu --output-on-failure -j 2
