#!/usr/bin/env bash
# What `sync_interval: always` (fsync before every PubAck) costs against the default (fsync
# every 2 minutes), on one server binary, in one run:
#
#   NATS_SERVER=<path> scripts/nats/nats-sync-cost.sh [--release|--debug] [SECONDS]
#
# Two figures per setting, alternating settings over 2 rounds so that drift on a shared machine
# hits both: (a) raw JetStream publish rate (`vx-load jspub`, 256 PubAcks in flight, file store)
# and (b) the bridge's signed webhooks/s (`vx-load webhook`, 64 connections, unlimited rate),
# each SECONDS long (default 10, the first 2 s not counted), every run against a fresh server
# and store. A heavy run: wrap it in `flock /tmp/vx-heavy.lock` on a shared machine.
# Prints one JSON line per run and a summary; lines also go to target/reliability/sync-cost.jsonl.
set -euo pipefail
cd "$(dirname "$0")/../.."
PROFILE=release
SECS=10
for arg in "$@"; do
  case "$arg" in
    --release) PROFILE=release ;;
    --debug) PROFILE=debug ;;
    -h | --help) sed -n 2,12p "$0"; exit 0 ;;
    -*) echo "unknown option $arg" >&2; exit 64 ;;
    *) SECS=$arg ;;
  esac
done
build=(cargo build --locked --workspace --bins)
[[ $PROFILE == release ]] && build+=(--release)
"${build[@]}" >&2
export REL_PROFILE=$PROFILE REL_MODE=full REL_SUITE=sync-cost REL_OUT="$PWD/target/reliability"
source scripts/lib.sh
OUT="$REL_OUT/sync-cost.jsonl"
: >"$OUT"
log "$("$NATS_SERVER" --version), ${SECS}s per run, 2 rounds, load $(load_note)"

run() {  # SETTING ROUND
  local setting=$1 round=$2 np bp conf=() name="s-$1-$2"
  if [[ $setting == always ]]; then
    printf 'jetstream { sync_interval: always }\n' >"$VX_WORK/always.conf"
    conf=(-c "$VX_WORK/always.conf")
  fi
  free_port np
  nats_start "$name-a" "$np" "${conf[@]}"
  "$REL_BIN/vx-load" jspub --nats "nats://127.0.0.1:$np" --in-flight 256 --duration "${SECS}s" \
    --warmup 2s --json >"$VX_WORK/$name-a.json"
  nats_kill "$name-a"
  free_port np
  free_port bp
  nats_start "$name-b" "$np" "${conf[@]}"
  bridge_start "$bp" "nats://127.0.0.1:$np" SYNC_COST sync
  "$REL_BIN/vx-load" webhook --url "http://127.0.0.1:$bp/webhooks/vx" --secret "$REL_SECRET" \
    --connections 64 --duration "${SECS}s" --warmup 2s --id-prefix "sync-$setting-$round" \
    --json >"$VX_WORK/$name-b.json"
  kill -9 "$BRIDGE_PID" 2>/dev/null || true
  wait "$BRIDGE_PID" 2>/dev/null || true
  nats_kill "$name-b"
  jq -c --arg s "$setting" --argjson r "$round" --arg v "$REL_NATS_VERSION" --arg load "$(load_note)" \
    --slurpfile a "$VX_WORK/$name-a.json" --slurpfile b "$VX_WORK/$name-b.json" -n \
    '{setting:$s, round:$r, nats_server:$v, jspub_per_s:($a[0].rps|floor), jspub_p50_ms:$a[0].p50_ms,
      webhooks_per_s:($b[0].rps|floor), webhook_p50_ms:$b[0].p50_ms, webhook_p99_ms:$b[0].p99_ms,
      webhook_codes:$b[0].codes, loadavg:$load}' | tee -a "$OUT"
}

for round in 1 2; do
  run default "$round"
  run always "$round"
done
jq -s -c 'group_by(.setting) | map({setting: .[0].setting,
  jspub_per_s: ([.[].jspub_per_s] | add / length | floor),
  webhooks_per_s: ([.[].webhooks_per_s] | add / length | floor),
  webhook_p50_ms: ([.[].webhook_p50_ms] | add / length)})' "$OUT"
