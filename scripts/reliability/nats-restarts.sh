#!/usr/bin/env bash
# Suite 1: NATS restarts under load. Signed webhooks at a steady rate while the (single)
# nats-server is SIGKILLed and restarted on the same port and store, KILLS times. Afterwards:
# every 202's delivery is in the stream under its event id, every other answer was retryable,
# the same bridge process is still running and ready; time to recover per restart. Ride-through
# mode (REL_OUTAGE_WAIT above 0, the default 5s): no 503 during an outage shorter than that.
REL_SUITE=nats-restarts
source "$(dirname "$0")/../lib.sh"

if [[ $REL_MODE == full ]]; then RATE=300 KILLS=6 UP=6 DOWN=2; else RATE=200 KILLS=5 UP=2 DOWN=1; fi
free_port NP
free_port BP
STREAM=REL_RESTARTS
nats_start n1 "$NP"
bridge_start "$BP" "nats://127.0.0.1:$NP" "$STREAM" rel VXB_NATS__PUBLISH_TIMEOUT=2s
BRIDGE=$BRIDGE_PID
DURATION=$((KILLS * (UP + DOWN) + UP + 2))
log "load ${RATE}/s for ${DURATION}s, $KILLS SIGKILL+restart of nats-server (up ${UP}s, down ${DOWN}s)"
load_start "$BP" "$RATE" "$DURATION" restart
sleep "$UP"
for i in $(seq 1 "$KILLS"); do
  nats_kill n1
  # Marked once the process is dead (see cluster.sh).
  echo "kill$i $(now_ms)" >>"$VX_WORK/marks"
  sleep "$DOWN"
  nats_start n1 "$NP"
  echo "up$i $(now_ms)" >>"$VX_WORK/marks"
  sleep "$UP"
done
wait "$LOAD" || die "vx-load failed"
kill -0 "$BRIDGE" 2>/dev/null || die "the bridge process died"
wait_ready "$BP" 20 || die "the bridge did not become ready again"
# Each window ends with the next kill at the latest.
outage_windows "$(( UP * 1000 < 3000 ? UP * 1000 : 3000 ))" >"$VX_WORK/windows"
# shellcheck disable=SC2046
V=$("$REL_BIN/vx-load" verify --nats "nats://127.0.0.1:$NP" --stream "$STREAM" \
  --record "$VX_WORK/answers.csv" --marks <(grep '^up' "$VX_WORK/marks") \
  --windows "$VX_WORK/windows" $(ride_through_args)) || verify_failed "$V"
REC=$(jq -c '[.recoveries[].first_202_after_ms]' <<<"$V")
result "$(jq -c --arg mode "$REL_MODE" --arg load "$(load_note)" --argjson rate "$RATE" --argjson kills "$KILLS" \
  --argjson rec "$REC" --slurpfile l "$VX_WORK/load.json" --arg ow "$REL_OUTAGE_WAIT" \
  '{suite:"nats-restarts", mode:$mode, outage_wait:$ow, rate:$rate, kills:$kills, answers, codes, accepted_deliveries,
    stream_messages, missing_after_202, wrong_event_id, non_retryable_answers, unanswered_but_stored,
    recover_ms:$rec, recover_ms_max:($rec|max), bridge_restarted:false, p99_ms:$l[0].p99_ms,
    overall, during_outages:(.windows | {answers:(map(.answers)|add), answers_503:(map(.answers_503)|add),
      p99_answer_ms:(map(.p99_answer_ms // 0)|max), max_answer_ms:(map(.max_answer_ms // 0)|max)}),
    ride_through_violations, loadavg:$load, ok}' <<<"$V")"
