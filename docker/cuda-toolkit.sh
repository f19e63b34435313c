#!/usr/bin/env bash
# cuda-toolkit.sh VENV DEST: assembles the CUDA 13.0 toolkit the image's build stage compiles the
# kernels with, from PyPI only: the compiler wheels pinned in docker/cuda-requirements.txt (copied
# into DEST) plus the headers and libraries the pinned torch wheel already put into VENV
# (site-packages/nvidia/cu13, linked, not copied), in the layout nvcc and CMake's FindCUDAToolkit
# expect (bin/, include/, lib/ = lib64/, targets/x86_64-linux/). Adds the unversioned .so names the
# wheels leave out and an empty stub libcuda.so: CMake wants one at link time, while libradial_ops
# reaches the driver through cudaGetDriverEntryPoint and the real libcuda.so.1 comes from the
# host's driver when the worker runs.
set -euo pipefail
venv=$(readlink -f "$1")
dest=$2
here=$(cd "$(dirname "$0")" && pwd)
site=$("$venv/bin/python" -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')
[ -d "$site/nvidia/cu13/lib" ] || { echo "cuda-toolkit: no nvidia/cu13 in $site (is torch installed?)" >&2; exit 1; }
wheels=$(mktemp -d)
trap 'rm -rf "$wheels"' EXIT
"$venv/bin/python" -m pip install -q --no-deps --target "$wheels" -r "$here/cuda-requirements.txt"
mkdir -p "$dest"
dest=$(readlink -f "$dest")
cp -a "$wheels/nvidia/cu13/." "$dest/"
cp -asn "$site/nvidia/cu13/." "$dest/"
cd "$dest"
ln -sfn lib lib64
mkdir -p targets/x86_64-linux lib/stubs
ln -sfn ../../include targets/x86_64-linux/include
ln -sfn ../../lib targets/x86_64-linux/lib
for lib in lib/lib*.so.*; do
  unversioned=${lib%%.so.*}.so
  [ -e "$unversioned" ] || ln -s "$(basename "$lib")" "$unversioned"
done
gcc -shared -Wl,-soname,libcuda.so.1 -o lib/stubs/libcuda.so -x c /dev/null
"$dest/bin/nvcc" --version | tail -1
