#!/bin/bash
# radial-healthcheck HOST:PORT [REGEX]: the images' probe. Fetches http://HOST:PORT/metrics (the
# --metrics-listen endpoint of radial-scheduler and radial-worker) with bash alone, since the images
# carry no HTTP client, and succeeds when the answer is 200 and, given REGEX (grep -E), a line of
# the body matches it. Prints why it fails; exits 1 then.
set -euo pipefail
address=${1:?usage: radial-healthcheck HOST:PORT [REGEX]}
pattern=${2:-}
host=${address%:*}
port=${address##*:}
if ! { exec 3<>"/dev/tcp/$host/$port"; } 2>/dev/null; then
  echo "radial-healthcheck: nothing listens on $address" >&2
  exit 1
fi
printf 'GET /metrics HTTP/1.0\r\nHost: %s\r\n\r\n' "$address" >&3
response=$(timeout 5 cat <&3) || { echo "radial-healthcheck: no full answer from $address in 5 s" >&2; exit 1; }
status=${response%%$'\r'*}
case "$status" in
  "HTTP/1."?" 200"*) ;;
  *) echo "radial-healthcheck: $address/metrics answered '${status:0:80}'" >&2; exit 1 ;;
esac
if [ -n "$pattern" ] && ! grep -Eq -- "$pattern" <<<"$response"; then
  echo "radial-healthcheck: no line of $address/metrics matches $pattern" >&2
  exit 1
fi
