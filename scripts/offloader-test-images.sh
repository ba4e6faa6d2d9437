#!/usr/bin/env bash
# Builds the runner images the calls-offloader tests use, into the Docker Engine at $DOCKER_HOST,
# without any registry: `docker import` of a tiny root filesystem (busybox-static plus
# tests/offloader/entrypoint.sh, whose behaviour env vars drive). Idempotent: an image is rebuilt
# only when the entrypoint changed. Tags:
#   mattermost/calls-recorder:v0.8.13, mattermost/calls-transcriber:v0.7.2   the test runner
#   mattermost/calls-recorder:v0.6.0-dev1   an image whose entrypoint does not exist, so that
#                                           container start fails
#   calls-recorder:master, calls-transcriber:master   the local images DEV_MODE runs
set -euo pipefail
cd "$(dirname "$0")/.."
busybox="$(command -v busybox || echo /bin/busybox)"
# The image has no libc: the busybox must be the static one.
if [ ! -x "$busybox" ] || ldd "$busybox" >/dev/null 2>&1; then
  echo "a static busybox is required: apt-get install busybox-static" >&2; exit 1
fi
entry=tests/offloader/entrypoint.sh
sum="$(cat "$entry" "$busybox" | sha256sum | cut -c1-16)"

build() { # tag entrypoint
  local tag="$1" ep="$2"
  local have
  have="$(docker image inspect -f '{{ index .Config.Labels "calls-test-build" }}' "$tag" 2>/dev/null || true)"
  if [ "$have" = "$sum" ]; then return 0; fi
  local root; root="$(mktemp -d)"
  mkdir -p "$root/bin" "$root/data" "$root/tmp"
  cp "$busybox" "$root/bin/busybox"
  for a in sh env sleep cat echo sort sed ls test; do ln -s busybox "$root/bin/$a"; done
  install -m 0755 "$entry" "$root/entrypoint.sh"
  tar -C "$root" -c . | docker import \
    -c "ENTRYPOINT [\"$ep\"]" -c "ENV PATH=/bin" -c "LABEL calls-test-build=$sum" - "$tag" >/dev/null
  rm -rf "$root"
  echo "built test image $tag" >&2
}
build mattermost/calls-recorder:v0.8.13 /entrypoint.sh
build mattermost/calls-transcriber:v0.7.2 /entrypoint.sh
build mattermost/calls-recorder:v0.6.0-dev1 /does-not-exist
build calls-recorder:master /entrypoint.sh
build calls-transcriber:master /entrypoint.sh
