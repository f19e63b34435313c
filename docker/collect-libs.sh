#!/usr/bin/env bash
# collect-libs.sh DEST BINARY...: copies the shared libraries the binaries load (as ldd resolves
# them) into DEST, except the C library's own (the runtime image has those) and anything under the
# repository's .venv (the worker image copies the venv whole, at the same path). Fails on a library
# ldd cannot find, except libcuda.so.1, which the NVIDIA container runtime mounts from the host.
set -euo pipefail
dest=$1; shift
mkdir -p "$dest"
for binary in "$@"; do
  ldd "$binary" | while read -r name arrow path _; do
    [ "$arrow" = "=>" ] || continue
    case "$name" in libc.so.*|libm.so.*|libdl.so.*|libpthread.so.*|librt.so.*|ld-linux*) continue ;; esac
    if [ "$path" = "not" ]; then
      [ "$name" = "libcuda.so.1" ] && continue
      echo "collect-libs: $binary needs $name, which ldd cannot find" >&2; exit 1
    fi
    case "$path" in */.venv/*) continue ;; esac
    cp -Ln "$path" "$dest/"
  done
done
