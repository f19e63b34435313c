#!/usr/bin/env bash
# Installs what is missing, builds, exports the tiny random-weight Wan2.1 bundle (once), starts
# radial-standalone (the scheduler with an embedded CPU worker; its jobs live in a temporary data
# directory removed at exit) on a free local port, and generates out.mp4 with
# radialctl. Random weights: the video is noise-like (docs: README "Real weights").
# Usage: scripts/demo.sh ["prompt"] [radialctl generate flags...]
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
scripts/build.sh
BUILD=${RADIAL_BUILD_DIR:-build}
BUNDLE=$BUILD/bundles/wan2.1-tiny
# Exported again when the exporter changed since (a bundle from an older exporter may lack what
# the worker now needs, e.g. the VAE's chunked decode).
if [ ! -f "$BUNDLE/manifest.json" ] ||
   [ -n "$(find worker/exporter/radial_export -name '*.py' -newer "$BUNDLE/manifest.json" | head -1)" ]; then
  rm -rf "$BUNDLE"
  PYTHONPATH=worker/exporter RADIAL_OPS_LIBRARY=$BUILD/kernels/libradial_ops.so \
    .venv/bin/python -m radial_export --tiny --out "$BUNDLE"
fi
PROMPT=${1:-"a red fox running through fresh snow at dawn"}
shift || true

LOG=$BUILD/demo-server.log
rm -f "$BUILD/demo-port"
"$BUILD/server/standalone/radial-standalone" --listen 127.0.0.1:0 --port-file "$BUILD/demo-port" \
  --embedded-worker "$BUNDLE" >"$LOG" 2>&1 &
SERVER=$!
trap 'kill $SERVER 2>/dev/null; wait $SERVER 2>/dev/null || true' EXIT
PORT=""
for _ in $(seq 1 100); do  # up to 20 s for the model to load and the worker to announce it
  PORT=$(cat "$BUILD/demo-port" 2>/dev/null || true)
  if [ -n "$PORT" ] && grep -q "worker 'embedded' connected" "$LOG"; then break; fi
  kill -0 $SERVER 2>/dev/null || { cat "$LOG"; echo "demo: radial-standalone exited" >&2; exit 1; }
  sleep 0.2
done
[ -n "$PORT" ] || { cat "$LOG"; echo "demo: radial-standalone did not start" >&2; exit 1; }

"$BUILD/client/radialctl" --server "127.0.0.1:$PORT" generate "$PROMPT" -o out.mp4 "$@"
if command -v ffprobe >/dev/null; then
  ffprobe -v error -count_frames -show_entries stream=codec_name,width,height,r_frame_rate,nb_read_frames \
    -of default=noprint_wrappers=1 out.mp4 | tr '\n' ' '
  echo
fi
