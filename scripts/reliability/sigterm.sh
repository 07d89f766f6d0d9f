#!/usr/bin/env bash
# Suite 4: SIGTERM under load. The bridge gets SIGTERM while 64 connections send as fast as
# they can; it must exit 0 within its shutdown timeout, every 202 must be stored, and every
# other answer must be a retryable refusal (503, or no connection/answer at all).
REL_SUITE=sigterm
source "$(dirname "$0")/../lib.sh"

if [[ $REL_MODE == full ]]; then ROUNDS=3 BEFORE=5; else ROUNDS=1 BEFORE=3; fi
free_port NP
STREAM=REL_SIGTERM
nats_start n1 "$NP"
records=()
exits=()
for r in $(seq 1 "$ROUNDS"); do
  free_port BP
  bridge_start "$BP" "nats://127.0.0.1:$NP" "$STREAM" rel VXB_HTTP__SHUTDOWN_TIMEOUT=10s
  "$REL_BIN/vx-load" webhook --url "http://127.0.0.1:$BP/webhooks/vx" --secret "$REL_SECRET" \
    --connections 64 --duration "$((BEFORE + 2))s" --id-prefix "term$r" \
    --record "$VX_WORK/round$r.csv" --json >"$VX_WORK/round$r.json" &
  LOAD=$!
  VX_PIDS+=("$LOAD")
  sleep "$BEFORE"
  t0=$(now_ms)
  kill -TERM "$BRIDGE_PID"
  code=0
  timeout 30 tail --pid="$BRIDGE_PID" -f /dev/null || die "bridge did not exit within 30 s"
  wait "$BRIDGE_PID" || code=$?
  took=$(($(now_ms) - t0))
  log "round $r: exit $code after ${took} ms"
  [[ $code == 0 ]] || die "bridge exited $code after SIGTERM"
  exits+=("$took")
  wait "$LOAD" || die "vx-load failed"
  records+=(--record "$VX_WORK/round$r.csv")
done
V=$("$REL_BIN/vx-load" verify --nats "nats://127.0.0.1:$NP" --stream "$STREAM" "${records[@]}") \
  || { echo "$V"; die "verification failed"; }
EXITS=$(printf '%s\n' "${exits[@]}" | jq -s -c .)
result "$(jq -c --arg mode "$REL_MODE" --arg load "$(load_note)" --argjson exits "$EXITS" \
  '{suite:"sigterm", mode:$mode, rounds:($exits|length), exit_after_ms:$exits, answers, codes,
    accepted_deliveries, missing_after_202, non_retryable_answers, unanswered_but_stored,
    loadavg:$load, ok}' <<<"$V")"
