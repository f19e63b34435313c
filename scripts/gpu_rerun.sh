#!/usr/bin/env bash
# Re-runs the project's GPU checks on the lent GPU machine in one device call (<= 600 s): the
# kernels' GPU tests against the libradial_ops.so the worker loads, worker/bench/bench_wan.py
# without a bundle (a short smoke run), and the service benchmark of docs/benchmarks.md (1.3B,
# 480x832x81, 50 steps, three jobs with the manifest's radial defaults and three dense, through
# radial-scheduler + radial-worker --device cuda with its default warm-up, timed by the client).
# `--part memory` runs instead: five jobs of different sizes on a worker capped by
# --gpu-memory-fraction (720x1280x81 too large for the cap: RESOURCE_EXHAUSTED, then the next job runs),
# two of them through the Python client package (radial_client), and `--part 14b` a 14B 768x1280x69 job (scripts/gpu_service.sh; --steps N, default 10).
#
# Here first:  scripts/build.sh && scripts/gpu_service.sh --pack
# Then, with the device tool: carry [".gpu-carry"], command "OUT=$OUT scripts/gpu_rerun.sh [--part ...]"
# Results: $OUT/summary.txt (the tables) and $OUT/results.tgz (every log and service_jobs.jsonl).
set -uo pipefail
cd "$(dirname "$0")/.." || exit 1
OUT=${OUT:-gpu-out}; mkdir -p "$OUT"
part=main steps14=10
while (($#)); do
  case "$1" in
    --part) part=$2; shift 2 ;;
    --steps) steps14=$2; shift 2 ;;
    *) echo "gpu_rerun: unknown argument $1" >&2; exit 2 ;;
  esac
done
RES=/tmp/gpu-rerun/$part
rm -rf "$RES" && mkdir -p "$RES"
started=$(date +%s)
budget=${BUDGET:-580}
left() { echo $((started + budget - $(date +%s))); }
log() { echo "[$(($(date +%s) - started)) s] $*" | tee -a "$RES/rerun.log"; }
PY=${PYTHON:-python3}
export NCCL_NVLS_ENABLE=0 TORCH_SYMM_MEM_DISABLE_MULTICAST=1 NVSHMEM_DISABLE_NVLS=1 PYTHONUNBUFFERED=1
status=0
log "commit ${RADIAL_COMMIT:-$(git rev-parse HEAD 2>/dev/null || echo unknown)}; part $part"

service() {  # service NAME ARGS...: scripts/gpu_service.sh with its 8 files under $RES/NAME
  local name=$1; shift
  OUT=$RES/$name scripts/gpu_service.sh "$@" >"$RES/$name.log" 2>&1 || { log "$name: exit $?"; status=1; }
  tail -40 "$RES/$name/summary.txt" 2>/dev/null | tee -a "$RES/summary.txt"
}

case "$part" in
  main)
    # The op library the worker loads (built here by scripts/build.sh, sm_80 + sm_90a), unpacked
    # from the carry as gpu_service.sh does it.
    mkdir -p /tmp/radial-service
    tar -C /tmp/radial-service -xJf .gpu-carry/bin.tar.xz || exit 1
    ops=$(find /tmp/radial-service -name libradial_ops.so | head -1)
    torch_lib=$("$PY" -c 'import os, torch; print(os.path.join(os.path.dirname(torch.__file__), "lib"))')
    cuda_lib=$(dirname "$(dirname "$torch_lib")")/nvidia/cu13/lib
    log "kernels: GPU tests with $ops"
    LD_LIBRARY_PATH=$cuda_lib:$torch_lib RADIAL_OPS_LIBRARY=$ops timeout 150 "$PY" -m pytest -q -p no:cacheprovider \
      tests/kernels/test_attention_gpu.py >"$RES/gpu_tests.log" 2>&1 || { log "kernels: FAILED"; status=1; }
    tail -3 "$RES/gpu_tests.log" | tee -a "$RES/summary.txt"
    log "bench_wan.py without --bundle (1.3B, 480x832x17, 2 steps)"
    LD_LIBRARY_PATH=$cuda_lib:$torch_lib RADIAL_OPS_LIBRARY=$ops PYTHONPATH=$PWD/worker/exporter timeout 120 \
      "$PY" worker/bench/bench_wan.py --model 1.3b --size 480 832 17 --steps 2 --dense-steps 1 --repeats 1 \
      --skip-text-encoder >"$RES/bench_wan.log" 2>&1 || { log "bench_wan: FAILED"; status=1; }
    tail -4 "$RES/bench_wan.log" | tee -a "$RES/summary.txt"
    log "service: 1.3B 480x832x81, 50 steps, 3 radial + 3 dense ($(left) s left)"
    service service-1.3b --model 1.3b --budget "$(($(left) - 10))" \
      --job "480x832x81 steps=50 label=radial x3" --job "480x832x81 steps=50 dense label=dense x3"
    ;;
  memory)
    # 0.16 of 139.8 GiB = 22.4 GiB: the 480x832 sizes fit and 720x1280x81 does not (docs/benchmarks.md,
    # with the lower caps tried first). The driver exits 1 because the 720p job fails, as intended.
    log "memory: five sizes under --gpu-memory-fraction 0.16"
    service memory-1.3b --model 1.3b --budget "$(($(left) - 10))" \
      --worker-arg "--gpu-memory-fraction 0.16 --warmup off" \
      --job "480x832x17 steps=4 label=17f client=python" --job "832x480x33 steps=4 label=33f-landscape" \
      --job "480x832x49 steps=4 label=49f" --job "720x1280x81 steps=4 label=720p-81f-too-large" \
      --job "480x832x17 steps=4 label=17f-after client=python"
    ;;
  14b)
    log "service: 14B 768x1280x69, $steps14 steps ($(left) s left)"
    service service-14b --model 14b --budget "$(($(left) - 10))" --worker-arg "--warmup off" \
      --job "768x1280x69 steps=$steps14 dense-steps=$(((steps14 * 12 + 49) / 50)) label=radial est=300"
    ;;
  *) echo "gpu_rerun: --part: got $part, expected main, memory or 14b" >&2; exit 2 ;;
esac
log "done, status $status"
tar -C "$RES" -czf "$OUT/results.tgz" . && cp "$RES/summary.txt" "$OUT/summary.txt" 2>/dev/null
exit $status
