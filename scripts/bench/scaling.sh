#!/usr/bin/env bash
# Measures, per replica, the figures docs/SCALING.md's capacity model is built from, and prints
# them as one JSON object per line (also kept in target/scaling/results.jsonl):
#
#   scripts/bench/scaling.sh [--sessions N] [--checks N]
#
#   ingress      webhooks/s of one bridge (session view off in that process), N distinct
#                sessions as fast as 64 connections go; bytes per event in the stream
#   projector    session-view updates/s: a second process (ingress off) projects the N events
#                the first one stored, from a standing start; KV bytes per session (one revision)
#   reconciler   checks/s: M sessions watched (PENDING webhooks, reconcile.watch_pending) and
#                polled on a 100 ms schedule against the mock VX API until every one completed;
#                VX API calls per completed session (the mock's count)
#
# Release build; its own nats-server (NATS_SERVER or PATH) on a free port with a temp store and
# its monitoring port for the stream sizes (/jsz). Everything on 127.0.0.1, stopped on exit.
set -euo pipefail
cd "$(dirname "$0")/../.."
SESSIONS=20000
CHECKS=2000
while (($#)); do
  case "$1" in
    --sessions) SESSIONS=$2; shift ;;
    --checks) CHECKS=$2; shift ;;
    -h|--help) sed -n '2,17p' "$0"; exit 0 ;;
    *) echo "unknown argument $1" >&2; exit 64 ;;
  esac
  shift
done
export REL_PROFILE=release
REL_SUITE=scaling
REL_OUT="${REL_OUT:-$PWD/target/scaling}"
# shellcheck source=lib.sh
source scripts/lib.sh
: >"$REL_OUT/results.jsonl"

log "building (cargo build --release --locked -p vx-bridge -p vx-load --bins)"
cargo build --release --locked -q -p vx-bridge -p vx-load --bins

free_port NPORT
free_port MON
nats_start n1 "$NPORT" -m "$MON"
NATS_URL="nats://127.0.0.1:$NPORT"
STREAM=SCALE_VERIFICATIONS
PREFIX=scale
BUCKET=SCALE_SESSIONS

# jsz STREAM: {messages, bytes} of a stream from the server's monitoring endpoint.
jsz() {
  curl -fs "http://127.0.0.1:$MON/jsz?streams=true" |
    jq -c --arg s "$1" '[.account_details[]?.stream_detail[]? | select(.name == $s) | .state
      | {messages, bytes}][0] // {messages: 0, bytes: 0}'
}
ms_now() { date +%s%3N; }

# ---------------------------------------------------------------- ingress
free_port BP
bridge_start "$BP" "$NATS_URL" "$STREAM" "$PREFIX" VXB_SESSIONS__ENABLED=false
log "ingress: $SESSIONS webhooks, distinct sessions, 64 connections"
"$REL_BIN/vx-load" webhook --url "http://127.0.0.1:$BP/webhooks/vx" --secret "$REL_SECRET" \
  --connections 64 --requests "$SESSIONS" --duration 600s --id-prefix scale --json >"$VX_WORK/ingress.json"
S=$(jsz "$STREAM")
result "$(jq -c --argjson s "$S" '{part: "ingress", webhooks: .requests, per_s: (.rps | floor), p99_ms: .p99_ms,
  codes, stream_messages: $s.messages, bytes_per_event: (($s.bytes / ([$s.messages, 1] | max)) | floor)}' \
  "$VX_WORK/ingress.json")"
stop "$BRIDGE_PID"

# ---------------------------------------------------------------- projector
free_port PP
# A process must run the ingress or the status service: a status-only one (never asked here).
bridge_start "$PP" "$NATS_URL" "$STREAM" "$PREFIX" VXB_WEBHOOK__ENABLED=false \
  VXB_STATUS__ENABLED=true VXB_UPSTREAM__BASE_URL=http://127.0.0.1:9 VXB_UPSTREAM__TOKEN=unused \
  VXB_SESSIONS__BUCKET="$BUCKET"
log "projector: catching up on $SESSIONS events"
deadline=$((SECONDS + 300))
# The rate between the first sample that shows keys and the one that shows them all, read from
# the bucket's own message count (one put per new session) every 0.1 s: the process's start-up
# is not counted, nor are the keys written before the first sample.
first_n="" first_t=""
while :; do
  n=$(jsz "KV_$BUCKET" | jq .messages)
  if [[ -z "$first_n" ]] && ((n > 0)); then first_n=$n first_t=$(ms_now); fi
  ((n >= SESSIONS)) && break
  ((SECONDS < deadline)) || die "the projector did not catch up in 300 s"
  sleep 0.1
done
t1=$(ms_now)
K=$(jsz "KV_$BUCKET")
result "$(jq -n -c --argjson k "$K" --argjson n "$SESSIONS" --argjson n0 "$first_n" \
  --argjson ms "$((t1 - first_t))" \
  '{part: "projector", events: $n, measured_events: ($n - $n0), seconds: ($ms / 1000),
    updates_per_s: ((($n - $n0) * 1000 / ([$ms, 1] | max)) | floor),
    kv_messages: $k.messages, kv_bytes_per_session: (($k.bytes / ([$k.messages, 1] | max)) | floor),
    note: "keys written between the first sample that shows keys and the one that shows all"}')"
stop "$BRIDGE_PID"

# ---------------------------------------------------------------- reconciler
free_port MP
"$REL_BIN/vx-bridge" mock-vx --listen "127.0.0.1:$MP" --token mock-token --complete-with PASS \
  >>"$VX_WORK/mock.log" 2>&1 &
VX_PIDS+=("$!")
wait_port "$MP" 15 || die "mock-vx did not listen on $MP"
free_port RP
RSTREAM=SCALE_RECONCILE_VERIFICATIONS
bridge_start "$RP" "$NATS_URL" "$RSTREAM" scaler VXB_SESSIONS__BUCKET=SCALE_R_SESSIONS \
  VXB_STATUS__ENABLED=true VXB_UPSTREAM__BASE_URL="http://127.0.0.1:$MP" VXB_UPSTREAM__TOKEN=mock-token \
  VXB_RECONCILE__STREAM=SCALE_RECONCILE VXB_RECONCILE__SCHEDULE='["100ms"]'
checks() {  # the sum of vx_bridge_reconcile_checks_total over its outcomes
  curl -fs "http://127.0.0.1:$RP/metrics" |
    awk '$1 ~ /^vx_bridge_reconcile_checks_total/ { n += $2 } END { printf "%d", n }'
}
log "reconciler: $CHECKS PENDING webhooks (each registers its session), polled every 100 ms until done"
t0=$(ms_now)
"$REL_BIN/vx-load" webhook --url "http://127.0.0.1:$RP/webhooks/vx" --secret "$REL_SECRET" \
  --connections 32 --requests "$CHECKS" --duration 600s --id-prefix rec --status PENDING --json \
  >"$VX_WORK/reconcile-load.json"
deadline=$((SECONDS + 600))
WQ_MAX='{"messages":0,"bytes":0}'   # the work queue at its fullest (bytes per watched session)
# Done: every session's poll event stored (one completed.pass per session) and the queue empty.
while :; do
  W=$(jsz SCALE_RECONCILE)
  (($(jq .messages <<<"$W") > $(jq .messages <<<"$WQ_MAX"))) && WQ_MAX=$W
  [[ "$(curl -fs "http://127.0.0.1:$RP/metrics" |
    awk '$1 == "vx_bridge_reconcile_events_published_total{kind=\"pass\"}" { print $2 }')" == "$CHECKS" ]] &&
    [[ "$(jq .messages <<<"$W")" == 0 ]] && break
  ((SECONDS < deadline)) || die "the reconciler did not complete $CHECKS sessions in 600 s"
  sleep 0.1
done
t1=$(ms_now)
result "$(jq -n -c --argjson n "$CHECKS" --argjson checks "$(checks)" --argjson ms "$((t1 - t0))" \
  --argjson wq "$WQ_MAX" \
  --argjson vx "$(curl -fs "http://127.0.0.1:$MP/mock/stats" | jq .result_calls)" \
  '{part: "reconciler", sessions: $n, checks: $checks, seconds: ($ms / 1000),
    checks_per_s: (($checks * 1000 / $ms) | floor), vx_calls: $vx,
    vx_calls_per_completed_session: (($vx / $n * 100 | round) / 100),
    work_queue_max_messages: $wq.messages,
    work_queue_bytes_per_session: (($wq.bytes / ([$wq.messages, 1] | max)) | floor),
    note: "from the first PENDING webhook to the last poll event; the mock answers INIT, IN PROGRESS, then a PASS body"}')"
stop "$BRIDGE_PID"

log "done: $REL_OUT/results.jsonl"
