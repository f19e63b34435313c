#!/usr/bin/env bash
# The whole service (radial-scheduler, one radial-worker on the GPU, radialctl and a gRPC Python
# client) on the lent GPU machine, timed from the client's side. The GPU image has LibTorch (inside
# its torch) but no gRPC or FFmpeg, so the binaries built here travel with the shared libraries they
# need: the same Debian bookworm libraries the worker image ships (docker/), never torch's or CUDA's,
# which come from the GPU machine's torch, nor glibc's and libstdc++, which the image has newer.
#
# Here:   scripts/gpu_service.sh --pack [--no-grpcio]
#           Writes .gpu-carry/ (ignored): libs.tar.xz (the libraries; repacked only when their list
#           changes), bin.tar.xz (radial-worker, radial-scheduler, radialctl, libradial_ops.so,
#           libradial_spm.so from build/), py/ (stubs generated from proto/), wheels/ (protobuf,
#           grpcio, and radial_client when client/python/ builds). Re-run it after rebuilding.
# There:  scripts/gpu_service.sh [--model 1.3b|14b] [--bundle DIR] [--budget S] [--client radialctl|grpc]
#                                [--prompt TEXT] [--worker-arg "ARGS"]... [--scheduler-arg "ARGS"]... --job SPEC...
#           through the device tool with carry [".gpu-carry"]. Exports a random-weight bundle of the
#           model's real size into ${BUNDLES:-/tmp/bundles}/MODEL unless there, starts the scheduler
#           on 127.0.0.1 port 0 and the worker on cuda, waits until the worker serves its model, runs
#           the jobs one after another (scripts/gpu_service_driver.py says what a SPEC is, e.g.
#           "480x832x81 steps=50 x3" and "480x832x81 steps=50 dense x3"), then stops both. Jobs that
#           would end past --budget seconds after the script's start (default 570) are skipped, and
#           a running one is cancelled at that point.
#           $OUT (or ./gpu-out) gets 8 files, the device tool's limit: service_jobs.jsonl (one line a
#           job), summary.txt, client.log, scheduler.log, worker.log, worker_metrics.txt,
#           gpu_samples.csv and env.txt (versions, nvidia-smi, the export's log, the image's libraries).
set -uo pipefail
cd "$(dirname "$0")/.." || exit 1
CARRY=$PWD/.gpu-carry
GPU_PYTHON_VERSION=${GPU_PYTHON_VERSION:-3.12}  # the GPU image's python3 (KINDS.md)

# The libraries every Linux machine brings (glibc, the GCC runtime): taken from the GPU image.
SYSTEM_LIBS='^(ld-linux-x86-64\.so\.2|libc\.so\.6|libm\.so\.6|libmvec\.so\.1|libdl\.so\.2|libpthread\.so\.0|librt\.so\.1|libresolv\.so\.2|libutil\.so\.1|libanl\.so\.1|libgcc_s\.so\.1|libstdc\+\+\.so\.6)$'

pack() {
  local build=${BUILD_DIR:-build} with_grpcio=1
  [ "${1:-}" = "--no-grpcio" ] && with_grpcio=0
  local files=("$build/worker/radial-worker" "$build/server/radial-scheduler" "$build/client/radialctl"
               "$build/kernels/libradial_ops.so" "$build/worker/libradial_spm.so")
  local f venv_py=.venv/bin/python
  for f in "${files[@]}"; do [ -f "$f" ] || { echo "gpu_service: $f missing: build it first" >&2; return 1; }; done
  [ -x "$venv_py" ] || { echo "gpu_service: .venv missing (scripts/setup.sh)" >&2; return 1; }
  local torch_lib
  torch_lib=$("$venv_py" -c 'import os, torch; print(os.path.join(os.path.dirname(torch.__file__), "lib"))') || return 1
  mkdir -p "$CARRY/wheels" "$CARRY/py"

  # The libraries' closure, as ldd resolves it here; torch, CUDA and our own build are left out.
  local closure
  closure=$(for f in "${files[@]}"; do LD_LIBRARY_PATH=$build/kernels:$torch_lib ldd "$f"; done |
    awk '/=> not found/ {print "MISSING " $1; next} $3 ~ /^\// {print $3}' | sort -u) || return 1
  if grep -q '^MISSING' <<<"$closure"; then
    echo "gpu_service: unresolved libraries: $(grep '^MISSING' <<<"$closure" | tr '\n' ' ')" >&2
    return 1
  fi
  local build_abs
  build_abs=$(cd "$build" && pwd)
  local libs=() path
  while read -r path; do
    case "$path" in */site-packages/torch/*|*/site-packages/nvidia/*|/usr/local/cuda*|"$build_abs"/*) continue ;; esac
    grep -Eq "$SYSTEM_LIBS" <<<"$(basename "$path")" && continue
    libs+=("$path")
  done <<<"$closure"
  local key
  key=$(for path in "${libs[@]}"; do echo "$(basename "$path") $(stat -L -c '%s %Y' "$path")"; done | sort | sha256sum | cut -c1-16)
  if [ ! -f "$CARRY/libs.tar.xz" ] || [ "$(cat "$CARRY/libs.key" 2>/dev/null)" != "$key" ]; then
    echo "gpu_service: packing ${#libs[@]} libraries (xz -9: about two minutes)"
    local stage
    stage=$(mktemp -d)
    mkdir -p "$stage/lib"
    cp -L "${libs[@]}" "$stage/lib/" || return 1
    # One solid stream (-T1: threads would cut it into blocks). xz -9e with a 192 MiB dictionary
    # was 2% smaller for three times the time.
    tar -C "$stage" -cf - lib | xz -9 -T1 >"$CARRY/libs.tar.xz.partial" || return 1
    mv "$CARRY/libs.tar.xz.partial" "$CARRY/libs.tar.xz"
    echo "$key" >"$CARRY/libs.key"
    rm -rf "$stage"
  fi
  (cd "$CARRY" && printf '%s\n' "${libs[@]##*/}" >libs.list)

  local stage
  stage=$(mktemp -d)
  mkdir -p "$stage/bin" "$stage/lib"
  cp "${files[@]:0:3}" "$stage/bin/" && cp "${files[@]:3}" "$stage/lib/" || return 1
  tar -C "$stage" -cf - bin lib | xz -6 -T2 >"$CARRY/bin.tar.xz" || return 1
  rm -rf "$stage"
  {
    echo "commit $(git rev-parse --short HEAD)$(git diff --quiet HEAD -- . 2>/dev/null || echo '+dirty') packed $(date -u +%FT%TZ)"
    for f in "${files[@]}"; do echo "$(sha256sum "$f" | cut -c1-16) $(stat -c '%y' "$f" | cut -c1-19) $f"; done
  } >"$CARRY/MANIFEST"

  # Python: stubs of radial.v1.VideoService (the driver's client=grpc), the protobuf runtime they
  # were generated for, grpcio, and radial_client (another client, carried for whoever drives it).
  rm -rf "$CARRY/py/radial" && "$venv_py" -m grpc_tools.protoc -Iproto --python_out="$CARRY/py" \
    proto/radial/v1/video_service.proto || return 1
  local pins
  pins=$("$venv_py" -c 'import grpc, google.protobuf as p; print(f"protobuf=={p.__version__}", end=" ")
print(f"grpcio=={grpc.__version__}")') || return 1
  ((with_grpcio)) || pins=${pins%% *}
  rm -f "$CARRY"/wheels/protobuf-* "$CARRY"/wheels/grpcio-*
  # shellcheck disable=SC2086
  "$venv_py" -m pip download -q --no-deps --only-binary=:all: --python-version "$GPU_PYTHON_VERSION" \
    --implementation cp --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 \
    --platform manylinux2014_x86_64 -d "$CARRY/wheels" $pins || return 1
  rm -f "$CARRY"/wheels/radial_client-*
  if [ -f client/python/pyproject.toml ]; then
    # Built from a copy, so that nothing is written into client/python/.
    local copy
    copy=$(mktemp -d)
    mkdir -p "$copy/client" && cp -r client/python "$copy/client/" && cp -r proto "$copy/" &&
      rm -rf "$copy/client/python/build" "$copy"/client/python/src/*.egg-info
    if ! "$venv_py" -m pip wheel -q --no-deps --no-build-isolation -w "$CARRY/wheels" "$copy/client/python" \
        >"$copy/log" 2>&1; then
      echo "gpu_service: radial_client wheel not built (carried without it): $(tail -3 "$copy/log")" >&2
    fi
    rm -rf "$copy"
  fi

  local carry_bytes tree_bytes
  carry_bytes=$(du -sb "$CARRY" | cut -f1)
  tree_bytes=$( (git ls-files -z; git ls-files -z -o --exclude-standard) | xargs -0 stat -c %s 2>/dev/null |
    awk '{s += $1} END {print s + 0}')
  echo "gpu_service: .gpu-carry $((carry_bytes >> 20)) MiB + working tree $((tree_bytes >> 20)) MiB" \
    "(the device tool takes 64 MiB in all)"
  du -h "$CARRY"/*.tar.xz "$CARRY"/wheels/*
  if ((carry_bytes + tree_bytes > 63 << 20)); then
    echo "gpu_service: too large for the device tool; try --no-grpcio" >&2
    return 1
  fi
}

# ---- on the GPU machine ----------------------------------------------------------------------

usage() { sed -n '2,/^set -uo/p' "$0" | sed '$d; s/^# \{0,1\}//' >&2; exit 2; }

model=1.3b bundle="" budget=570 client=radialctl prompt="" device=cuda jobs=() worker_args=() scheduler_args=()
PY=${PYTHON:-python3}  # the one with torch
started=$(date +%s.%N)
case "${1:-}" in
  --pack) shift; pack "$@"; exit ;;
  -h|--help) usage ;;
esac
while (($#)); do
  case "$1" in
    --model) model=$2; shift 2 ;;
    --bundle) bundle=$2; shift 2 ;;
    --device) device=$2; shift 2 ;;
    --budget) budget=$2; shift 2 ;;
    --client) client=$2; shift 2 ;;
    --prompt) prompt=$2; shift 2 ;;
    --job) jobs+=(--job "$2"); shift 2 ;;
    --worker-arg) read -ra words <<<"$2"; worker_args+=("${words[@]}"); shift 2 ;;  # split at spaces
    --scheduler-arg) read -ra words <<<"$2"; scheduler_args+=("${words[@]}"); shift 2 ;;
    *) echo "gpu_service: unknown argument $1" >&2; usage ;;
  esac
done
[ -f "$CARRY/bin.tar.xz" ] || { echo "gpu_service: $CARRY/bin.tar.xz missing: run --pack here, carry .gpu-carry" >&2; exit 1; }
OUT=${OUT:-gpu-out}; mkdir -p "$OUT"
deadline=$(awk -v s="$started" -v b="$budget" 'BEGIN {printf "%.0f", s + b}')
elapsed() { awk -v s="$started" -v n="$(date +%s.%N)" 'BEGIN {printf "%.1f", n - s}'; }
note() { echo "[$(elapsed) s] $*" | tee -a "$OUT/env.txt"; }
export NCCL_NVLS_ENABLE=0 TORCH_SYMM_MEM_DISABLE_MULTICAST=1 NVSHMEM_DISABLE_NVLS=1  # the device README

R=/tmp/radial-service
unpack() {  # unpack NAME: $CARRY/NAME.tar.xz into $R, unless a warm machine has this one already
  local stamp
  stamp=$(cksum <"$CARRY/$1.tar.xz")
  [ "$(cat "$R/$1.stamp" 2>/dev/null)" = "$stamp" ] && return
  if command -v xz >/dev/null; then
    tar -C "$R" -xJf "$CARRY/$1.tar.xz"
  else
    "$PY" -c 'import sys, tarfile; tarfile.open(sys.argv[1]).extractall(sys.argv[2])' "$CARRY/$1.tar.xz" "$R"
  fi && echo "$stamp" >"$R/$1.stamp"
}
mkdir -p "$R"
if ! { unpack libs && unpack bin; }; then echo "gpu_service: unpacking failed" >&2; exit 1; fi
{
  echo "== $(cat "$CARRY/MANIFEST")"
  nvidia-smi --query-gpu=name,memory.total,memory.used,driver_version,clocks.sm,clocks.max.sm --format=csv
  echo "nproc $(nproc); $(grep PRETTY /etc/os-release)"
  "$PY" -c 'import sys, torch; print("python", sys.version.split()[0], "torch", torch.__version__, torch.version.cuda)'
  "$PY" -c 'import grpc, google.protobuf as p; print("image grpcio", grpc.__version__, "protobuf", p.__version__)' 2>&1
} >>"$OUT/env.txt" 2>&1
note "unpacked the binaries and $(wc -l <"$CARRY/libs.list") libraries into $R"

torch_lib=$("$PY" -c 'import os, torch; print(os.path.join(os.path.dirname(torch.__file__), "lib"))') || exit 1
cuda_lib=$(dirname "$(dirname "$torch_lib")")/nvidia/cu13/lib  # libcudart.so.13 for libradial_ops.so
# Only our binaries see the carried libraries: python3 keeps the image's own.
run_lib_path=$R/lib:$torch_lib:$cuda_lib
rt() { LD_LIBRARY_PATH=$run_lib_path RADIAL_SPM_LIBRARY=$R/lib/libradial_spm.so "$@"; }
missing=$(rt ldd "$R/bin/radial-worker" "$R/bin/radial-scheduler" "$R/bin/radialctl" | grep 'not found' | sort -u)
[ -z "$missing" ] || { echo "gpu_service: libraries missing on this machine: $missing" >&2; exit 1; }
ldconfig -p >"$R/ldconfig.txt"
{ echo "== the image's libraries that the carry also holds:"; grep -oFf "$CARRY/libs.list" "$R/ldconfig.txt" | sort -u | tr '\n' ' '; echo; } >>"$OUT/env.txt"

# Python client: the carried wheels into $R/site, seen by the driver alone (the exporter keeps the
# image's packages).
for wheel in "$CARRY"/wheels/*.whl; do  # one at a time: a wheel this python cannot take stops no other
  if [ ! -f "$wheel" ] || [ -f "$R/site.$(basename "$wheel").stamp" ]; then continue; fi
  "$PY" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target "$R/site" \
    "$wheel" >>"$OUT/env.txt" 2>&1 && touch "$R/site.$(basename "$wheel").stamp"
done
driver_path=$R/site:$CARRY/py
PYTHONPATH=$driver_path "$PY" -c 'import grpc, google.protobuf as p, radial.v1.video_service_pb2
print("driver grpcio", grpc.__version__, "protobuf", p.__version__, "stubs ok")' >>"$OUT/env.txt" 2>&1 ||
  note "the gRPC client cannot run here (env.txt says why): jobs with client=grpc will fail"
PYTHONPATH=$driver_path "$PY" -c 'import radial_client; print("radial_client", radial_client.__file__)' \
  >>"$OUT/env.txt" 2>&1 || echo "radial_client not importable (not carried, or its grpcio/protobuf missing)" >>"$OUT/env.txt"

# The bundle: random weights at the model's published size, kept across calls on a warm machine.
if [ -z "$bundle" ]; then
  bundle=${BUNDLES:-/tmp/bundles}/$model
  if [ ! -f "$bundle/manifest.json" ]; then
    note "exporting wan2.1-t2v-$model with random weights into $bundle"
    t=$(date +%s.%N)
    RADIAL_OPS_LIBRARY=$R/lib/libradial_ops.so PYTHONPATH=$PWD/worker/exporter "$PY" -m radial_export --random "wan2.1-t2v-$model" --out "$bundle" \
      >>"$OUT/env.txt" 2>&1 || { note "export failed"; tail -5 "$OUT/env.txt"; exit 1; }
    note "exported in $(awk -v s="$t" -v n="$(date +%s.%N)" 'BEGIN {printf "%.1f", n - s}') s ($(du -sh "$bundle" | cut -f1))"
  fi
fi

W=$R/run
rm -rf "$W" && mkdir -p "$W"
nvidia-smi --query-gpu=timestamp,utilization.gpu,memory.used,power.draw,clocks.sm --format=csv -l 1 \
  >"$OUT/gpu_samples.csv" 2>/dev/null &
sampler=$!
rt "$R/bin/radial-scheduler" --listen 127.0.0.1:0 --port-file "$W/port" --data-dir "$W/data" \
  "${scheduler_args[@]}" >"$OUT/scheduler.log" 2>&1 &
scheduler=$!
worker=""
stop_all() {
  if [ -n "$worker" ]; then
    kill -TERM "$worker" 2>/dev/null
    for _ in $(seq 100); do kill -0 "$worker" 2>/dev/null || break; sleep 0.1; done
    kill -KILL "$worker" 2>/dev/null
  fi
  kill -TERM "$scheduler" 2>/dev/null
  for _ in $(seq 100); do kill -0 "$scheduler" 2>/dev/null || break; sleep 0.1; done
  kill -KILL "$scheduler" "$sampler" 2>/dev/null
  wait 2>/dev/null
}
trap stop_all EXIT
for _ in $(seq 100); do [ -s "$W/port" ] && break; sleep 0.1; done
[ -s "$W/port" ] || { note "the scheduler did not start"; tail -20 "$OUT/scheduler.log"; exit 1; }
server=127.0.0.1:$(cat "$W/port")
note "scheduler on $server"

t=$(date +%s.%N)
rt "$R/bin/radial-worker" --bundle "$bundle" --scheduler "$server" --device "$device" --worker-id gpu0 \
  --x264-threads "$(nproc)" --drain-seconds 0 --metrics-listen 127.0.0.1:0 "${worker_args[@]}" \
  >"$OUT/worker.log" 2>&1 &
worker=$!
ctl=(rt "$R/bin/radialctl" --server "$server")
until "${ctl[@]}" models --json 2>/dev/null | grep -q '"workers":[1-9]'; do
  if ! kill -0 "$worker" 2>/dev/null; then note "the worker exited"; tail -20 "$OUT/worker.log"; exit 1; fi
  if (($(date +%s) > deadline)); then note "the worker was not ready within the budget"; exit 1; fi
  sleep 0.2
done
note "worker serving $(grep -o '"name":"[^"]*"' <<<"$("${ctl[@]}" models --json)" | head -1) after" \
  "$(awk -v s="$t" -v n="$(date +%s.%N)" 'BEGIN {printf "%.1f", n - s}') s (start, bundle load to the GPU)"

((${#jobs[@]})) || jobs=(--job "480x832x81 steps=50")
metrics_port=$(grep -o 'metrics on http://127.0.0.1:[0-9]*' "$OUT/worker.log" | head -1 | sed 's/.*://')
PYTHONPATH=$driver_path "$PY" scripts/gpu_service_driver.py --server "$server" \
  ${metrics_port:+--worker-metrics "http://127.0.0.1:$metrics_port/metrics"} \
  --radialctl "env LD_LIBRARY_PATH=$run_lib_path $R/bin/radialctl" --client "$client" \
  ${prompt:+--prompt "$prompt"} --deadline "$deadline" --out "$OUT" --scratch "$W/videos" "${jobs[@]}" \
  >"$W/table.txt"
status=$?
[ -n "$metrics_port" ] && "$PY" -c 'import sys, urllib.request
sys.stdout.write(urllib.request.urlopen(sys.argv[1], timeout=5).read().decode())' \
  "http://127.0.0.1:$metrics_port/metrics" >"$OUT/worker_metrics.txt" 2>&1
nvidia-smi --query-gpu=name,memory.used,clocks.sm --format=csv,noheader >>"$OUT/env.txt" 2>&1
{
  echo "radial service on $(nvidia-smi --query-gpu=name --format=csv,noheader 2>/dev/null | head -1)," \
    "bundle $bundle, $(head -1 "$CARRY/MANIFEST")"
  grep -h '^\[' "$OUT/env.txt"
  cat "$W/table.txt"
  echo "== radialctl jobs"
  "${ctl[@]}" jobs --limit 100
} >"$OUT/summary.txt" 2>&1
stop_all
trap - EXIT
note "done"
cat "$OUT/summary.txt"
exit $status
