#!/usr/bin/env bash
# Open-loop latency of the ingress at one rate, with the session view in the ingress's process, in
# a projector-only bridge of its own, or off: where the p99 tail comes from.
#
#   scripts/bench/tail-latency.sh RATE MODE...      MODE: in | split | off
#   e.g. scripts/bench/tail-latency.sh 1500 in off split in off split
#   NATS_SERVER=/path/to/nats-server picks the server (scripts/nats/nats-servers.sh --newest).
#
# Per MODE: a fresh nats-server with a file store, the bridge(s), then `vx-load webhook --rate RATE`
# (64 connections, 10 s, 2 s warm-up); prints one JSON line: mode, rate, p50, p99, max.
# Does not build: run `cargo build --release --locked --workspace --bins` first. Heavy: run it
# under `flock /tmp/vx-heavy.lock`. Only 127.0.0.1; everything started is stopped on exit.
set -euo pipefail

cd "$(dirname "$0")/../.."
ROOT=$PWD
[ $# -ge 2 ] || { sed -n '2,12p' "$0"; exit 2; }
RATE=$1; shift
BIN=$ROOT/target/release/vx-bridge
VXLOAD=$ROOT/target/release/vx-load
[ -x "$BIN" ] && [ -x "$VXLOAD" ] || { echo "tail-latency.sh: build the release binaries first" >&2; exit 1; }
NATS_SERVER="${NATS_SERVER:-nats-server}"
SECRET='whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw'

VX_WORK_TAG=tail
# shellcheck source=scripts/lib.sh
source "$ROOT/scripts/lib.sh"

for mode in "$@"; do
  case "$mode" in in|split|off) ;; *) die "unknown mode $mode (in, split or off)" ;; esac
  nport=; free_port nport
  nats_start "$mode" "$nport"
  common=(VXB_NATS__URL="nats://127.0.0.1:$nport" VXB_NATS__STREAM__NAME=BENCH VXB_NATS__STREAM__STORAGE=file
    VXB_WEBHOOK__AUTH__MODE=hmac "VXB_WEBHOOK__AUTH__HMAC__SECRETS=[\"$SECRET\"]")
  view=true; [ "$mode" = in ] || view=false
  port=; free_port port
  env "${common[@]}" VXB_HTTP__LISTEN="127.0.0.1:$port" VXB_SESSIONS__ENABLED=$view \
    "$BIN" serve 2>"$VX_WORK/$mode-bridge.log" &
  bridge=$!; VX_PIDS+=("$bridge")
  wait_ready "$port" 30 || die "vx-bridge ($mode) not ready"
  projector=""
  if [ "$mode" = split ]; then
    pport=; free_port pport
    env "${common[@]}" VXB_HTTP__LISTEN="127.0.0.1:$pport" VXB_WEBHOOK__ENABLED=false \
      VXB_STATUS__ENABLED=false VXB_RECONCILE__ENABLED=false \
      "$BIN" serve 2>"$VX_WORK/$mode-projector.log" &
    projector=$!; VX_PIDS+=("$projector")
    wait_ready "$pport" 30 || die "projector-only bridge not ready"
  fi
  "$VXLOAD" webhook --url "http://127.0.0.1:$port/webhooks/vx" --connections 64 --duration 10s \
    --warmup 2s --rate "$RATE" --id-prefix "tail-$mode-$RANDOM" --json >"$VX_WORK/$mode.json"
  stop "$bridge"
  [ -n "$projector" ] && stop "$projector"
  nats_stop "$mode"
  jq -c --arg mode "$mode" --arg server "$("$NATS_SERVER" --version)" \
    '{mode: $mode, server: $server, rate: (.rps | floor), p50_ms, p99_ms, max_ms}' "$VX_WORK/$mode.json"
done
