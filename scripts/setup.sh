#!/usr/bin/env bash
# Installs what the build and tests need, only what is missing: Debian packages through apt, Python
# packages into .venv inside the repository (pinned in requirements.txt). Idempotent and quiet when
# everything is present. Safe to run again at any time.
set -euo pipefail
cd "$(dirname "$0")/.."

APT_PACKAGES=(
  build-essential cmake ninja-build ccache python3-venv pkg-config
  libgtest-dev libgmock-dev                                   # tests
  libgrpc++-dev protobuf-compiler-grpc libprotobuf-dev protobuf-compiler  # API
  libspdlog-dev libfmt-dev libsqlite3-dev                     # common, scheduler store
  openssl libssl-dev                                          # token hashes, test certificates (openssl CLI)
  prometheus-cpp-dev                                          # /metrics
  libavformat-dev libavcodec-dev libavutil-dev libswscale-dev ffmpeg  # worker encoder, ffprobe in tests
  libsentencepiece-dev nlohmann-json3-dev                     # worker tokenizer, bundle manifest
  libgloo-dev                                                 # headers for LibTorch's c10d Gloo (device groups)
  buildah debootstrap                                         # image tests (tests/deploy/test_images.py)
  prometheus                                                  # promtool and a server for tests/deploy
)
missing=()
for pkg in "${APT_PACKAGES[@]}"; do
  dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" || missing+=("$pkg")
done
if ((${#missing[@]})); then
  echo "setup: installing Debian packages: ${missing[*]}"
  SUDO=""; [ "$(id -u)" -ne 0 ] && SUDO="sudo"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

# Python venv with the pinned packages; the stamp records which requirements it was built from.
PYTHON=${RADIAL_BASE_PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
  echo "setup: creating .venv"
  "$PYTHON" -m venv .venv
fi
stamp=.venv/.radial-requirements
if ! cmp -s requirements.txt "$stamp"; then
  echo "setup: installing Python packages (requirements.txt) into .venv"
  .venv/bin/python -m pip install -q --upgrade pip
  .venv/bin/python -m pip install -q -r requirements.txt
  cp requirements.txt "$stamp"
fi
# The Python client (client/python) into .venv, its stubs generated from proto/ by the grpcio-tools
# and setuptools pinned above (no build isolation, so nothing is downloaded). Skipped when the
# installed version was built from the same sources (the stamp: version and a hash of them), and
# where client/python is absent (docker/Dockerfile's build stage runs this script before copying it).
if [ -f client/python/pyproject.toml ]; then
  client_version=$(sed -n 's/^version = "\(.*\)"$/\1/p' client/python/pyproject.toml)
  client_stamp="radial-client $client_version $(find client/python/pyproject.toml client/python/setup.py \
    client/python/src proto/radial/v1/video_service.proto -type f \( -name '*.py' -o -name '*.proto' \
    -o -name '*.toml' -o -name py.typed \) -not -path '*/_proto/*' | LC_ALL=C sort | xargs cat | sha256sum)"
  if [ "$client_stamp" != "$(cat .venv/.radial-client 2>/dev/null)" ] ||
     ! compgen -G ".venv/lib/python*/site-packages/radial_client-$client_version.dist-info" >/dev/null; then
    echo "setup: installing the Python client (client/python) into .venv"
    rm -rf client/python/build  # setuptools would keep files removed from src/ in the wheel
    .venv/bin/python -m pip install -q --no-build-isolation ./client/python
    echo "$client_stamp" > .venv/.radial-client
  fi
fi
# Linters of docker/ (hadolint), pinned apart from requirements.txt, with their own stamp.
lint_stamp=.venv/.radial-requirements-lint
if ! cmp -s docker/requirements-lint.txt "$lint_stamp"; then
  echo "setup: installing Python packages (docker/requirements-lint.txt) into .venv"
  .venv/bin/python -m pip install -q -r docker/requirements-lint.txt
  cp docker/requirements-lint.txt "$lint_stamp"
fi
# Validators of deploy/k8s (kubernetes-validate, checkov, CRD models; tests/deploy/test_deploy.py) in
# a venv of their own, since checkov pins networkx and packaging older than torch and transformers
# need. Skipped where deploy/ is absent (docker/Dockerfile's build stage copies only this script and
# the requirements files before it runs).
tools=deploy/requirements-validate.txt
if [ -f "$tools" ]; then
  if [ ! -x .venv/deploy/bin/python ]; then
    echo "setup: creating .venv/deploy"
    "$PYTHON" -m venv .venv/deploy
  fi
  if ! cmp -s "$tools" .venv/deploy/.radial-requirements; then
    echo "setup: installing Python packages ($tools) into .venv/deploy"
    .venv/deploy/bin/python -m pip install -q --upgrade pip
    .venv/deploy/bin/python -m pip install -q -r "$tools"
    cp "$tools" .venv/deploy/.radial-requirements
  fi
fi
