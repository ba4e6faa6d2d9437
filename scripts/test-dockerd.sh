#!/usr/bin/env bash
# A private Docker Engine for the calls-offloader tests, touching nothing of the host's Docker
# or networking: its own socket, data root, exec root and pidfile under one state directory,
# no bridge, no iptables rules (job containers run with DOCKER_NETWORK=none).
#
#   scripts/test-dockerd.sh start DIR   starts dockerd (overlay2, else vfs) and builds the test
#                                       runner images; prints the DOCKER_HOST to export
#   scripts/test-dockerd.sh stop DIR    stops that dockerd by its PID and removes DIR
set -euo pipefail
cmd="${1:-}"; dir="${2:-}"
[ -n "$cmd" ] && [ -n "$dir" ] || { echo "usage: $0 start|stop DIR" >&2; exit 2; }
sock="$dir/docker.sock"
pidfile="$dir/dockerd.pid"

# Stops the process in pidfile $1: SIGTERM, then SIGKILL after 10 s.
stop_pid() {
  [ -f "$1" ] || return 0
  local pid; pid="$(cat "$1")"
  kill -0 "$pid" 2>/dev/null || return 0
  kill -TERM "$pid"
  for _ in $(seq 1 100); do kill -0 "$pid" 2>/dev/null || return 0; sleep 0.1; done
  kill -KILL "$pid" 2>/dev/null || true
}

stop() {
  # dockerd first (it stops its containers), then the containerd it started, which outlives it
  # briefly and would keep writing into the directory.
  local containerd_pid="$dir/exec/containerd/containerd.pid" saved=""
  [ -f "$containerd_pid" ] && saved="$(mktemp)" && cp "$containerd_pid" "$saved"
  stop_pid "$pidfile"
  if [ -n "$saved" ]; then stop_pid "$saved"; rm -f "$saved"; fi
  # Mounts left by a killed daemon would make the removal fail.
  { grep -o " $dir/[^ ]*" /proc/mounts || true; } | sort -r | while read -r m; do umount -l "$m" 2>/dev/null || true; done
  rm -rf "$dir"
}

start_with() {
  local driver="$1"
  mkdir -p "$dir/data" "$dir/exec"
  dockerd --host "unix://$sock" --data-root "$dir/data" --exec-root "$dir/exec" \
    --pidfile "$pidfile" --bridge=none --iptables=false --ip-masq=false --ip6tables=false \
    --storage-driver "$driver" >"$dir/dockerd.log" 2>&1 &
  local pid=$!
  for _ in $(seq 1 150); do
    if DOCKER_HOST="unix://$sock" docker version >/dev/null 2>&1; then return 0; fi
    kill -0 "$pid" 2>/dev/null || break
    sleep 0.2
  done
  kill -TERM "$pid" 2>/dev/null || true
  wait "$pid" 2>/dev/null || true
  return 1
}

case "$cmd" in
  start)
    command -v dockerd >/dev/null || { echo "dockerd not found: install Debian's docker.io" >&2; exit 1; }
    mkdir -p "$dir"
    if ! start_with overlay2; then
      echo "dockerd with overlay2 failed (log: $dir/dockerd.log.overlay2); retrying with vfs" >&2
      mv "$dir/dockerd.log" "$dir/dockerd.log.overlay2"
      rm -rf "$dir/data" "$dir/exec"
      start_with vfs || { echo "dockerd failed to start; log:" >&2; cat "$dir/dockerd.log" >&2; exit 1; }
    fi
    DOCKER_HOST="unix://$sock" "$(dirname "$0")/offloader-test-images.sh" >&2
    echo "unix://$sock"
    ;;
  stop) stop ;;
  *) echo "usage: $0 start|stop DIR" >&2; exit 2 ;;
esac
