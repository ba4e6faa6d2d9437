#!/usr/bin/env bash
# Runs every test of the project. Installs what the tests need first, idempotently:
# Debian packages (only if missing), a Python virtualenv with the third-party test clients, and a
# private Docker Engine (scripts/test-dockerd.sh) for the calls-offloader tests.
# Usage: scripts/test.sh [extra cargo-nextest arguments]
set -euo pipefail
cd "$(dirname "$0")/.."

log() { printf '\n==> %s\n' "$*"; }
SUDO=""
if [ "$(id -u)" -ne 0 ] && command -v sudo >/dev/null; then SUDO="sudo"; fi

need_pkgs=()
have() { dpkg-query -W -f='${Status}' "$1" 2>/dev/null | grep -q 'install ok installed'; }
# Build and test prerequisites: a C toolchain for -sys crates, pkg-config, Python venv support.
# iproute2: network namespaces for the third-party WebRTC peer tests.
# docker.io + busybox-static: a private Docker Engine and the runner images of the offloader tests.
# janus: the third-party SFU the load tool and benchmark are compared with; fonts-dejavu-core:
# the benchmark plots' font.
for p in build-essential pkg-config ca-certificates python3 python3-venv iproute2 chromium docker.io busybox-static janus fonts-dejavu-core; do
  have "$p" || need_pkgs+=("$p")
done
if [ ${#need_pkgs[@]} -gt 0 ]; then
  log "installing Debian packages: ${need_pkgs[*]}"
  export DEBIAN_FRONTEND=noninteractive
  $SUDO apt-get update -qq
  $SUDO apt-get install -y -qq --no-install-recommends "${need_pkgs[@]}"
fi

log "python test clients (.venv)"
if [ ! -x .venv/bin/python ]; then
  python3 -m venv .venv
fi
.venv/bin/python -m pip install -q --disable-pip-version-check -r tests/interop/requirements.txt
export CALLS_TEST_PYTHON="$PWD/.venv/bin/python"

if ! cargo nextest --version >/dev/null 2>&1; then
  log "installing cargo-nextest"
  cargo install --locked cargo-nextest
fi

log "private Docker Engine for the calls-offloader tests"
# Its own socket, data root and exec root, no bridge and no iptables rules; stopped by PID at exit.
DOCKERD_DIR="$(mktemp -d /tmp/calls-dockerd.XXXXXX)"
trap 'scripts/test-dockerd.sh stop "$DOCKERD_DIR" || true' EXIT
DOCKER_HOST="$(scripts/test-dockerd.sh start "$DOCKERD_DIR")"
export DOCKER_HOST

log "cargo nextest run --workspace"
status=0
cargo nextest run --workspace --locked --no-fail-fast "$@" || status=$?

# Every job the offloader tests start must be gone (successful ones at once, failed ones by
# DELETE or the retention sweep).
left_containers="$(docker ps -aq --filter label=app=mattermost-calls-offloader | wc -l)"
left_volumes="$(docker volume ls -q | grep -c '^calls-' || true)"
echo "calls-offloader: labelled containers left after the suite: $left_containers, job volumes left: $left_volumes"
if [ "$left_containers" -ne 0 ] || [ "$left_volumes" -ne 0 ]; then
  docker ps -a --filter label=app=mattermost-calls-offloader
  docker volume ls
  [ "$status" -ne 0 ] || status=1
fi
exit "$status"
