#!/usr/bin/env bash
# Suite 2: a 3-node JetStream cluster on loopback, stream with 3 replicas; under load the node
# leading the stream is SIGKILLed and brought back (ROUNDS times). Afterwards no delivery
# answered 202 is missing, every other answer was retryable. Ride-through mode (REL_OUTAGE_WAIT
# above 0, the default 5s): no 503 during an election that ended sooner than outage_wait.
REL_SUITE=cluster
source "$(dirname "$0")/../lib.sh"

if [[ $REL_MODE == full ]]; then RATE=300 ROUNDS=3 UP=8 DOWN=4; else RATE=200 ROUNDS=1 UP=4 DOWN=3; fi
declare -A CP NP
for n in n1 n2 n3; do free_port p; NP[$n]=$p; free_port p; CP[$n]=$p; done
start_node() {
  local n=$1 routes=()
  for m in n1 n2 n3; do [[ $m == "$n" ]] || routes+=("nats://127.0.0.1:${CP[$m]}"); done
  nats_start "$n" "${NP[$n]}" --cluster_name rel --cluster "nats://127.0.0.1:${CP[$n]}" \
    --routes "$(IFS=,; echo "${routes[*]}")"
}
for n in n1 n2 n3; do start_node "$n"; done
URLS="nats://127.0.0.1:${NP[n1]},nats://127.0.0.1:${NP[n2]},nats://127.0.0.1:${NP[n3]}"
free_port BP
STREAM=REL_CLUSTER
# The keeper retries stream creation every second until the cluster has a meta leader.
bridge_start "$BP" "$URLS" "$STREAM" rel VXB_NATS__STREAM__REPLICAS=3 VXB_NATS__PUBLISH_TIMEOUT=3s
BRIDGE=$BRIDGE_PID
DURATION=$((ROUNDS * (UP + DOWN) + UP + 2))
log "load ${RATE}/s for ${DURATION}s; $ROUNDS round(s) of killing the stream leader (down ${DOWN}s)"
load_start "$BP" "$RATE" "$DURATION" cluster
sleep "$UP"
KILLED=()
for i in $(seq 1 "$ROUNDS"); do
  leader=$(timeout 10 "$REL_BIN/vx-load" leader --nats "$URLS" --stream "$STREAM" || true)
  [[ -n "$leader" && -n "${NP[$leader]:-}" ]] || leader=n1
  KILLED+=("$leader")
  log "round $i: SIGKILL $leader (stream leader)"
  nats_kill "$leader"
  # Marked once the process is dead: a delivery sent between a mark and the kill is answered
  # 202 by the dying leader, which read as a recovery at 0 ms (and, with an election longer
  # than outage_wait, as a ride-through violation).
  echo "kill$i $(now_ms)" >>"$VX_WORK/marks"
  sleep "$DOWN"
  start_node "$leader"
  echo "up$i $(now_ms)" >>"$VX_WORK/marks"
  sleep "$UP"
done
wait "$LOAD" || die "vx-load failed"
kill -0 "$BRIDGE" 2>/dev/null || die "the bridge process died"
wait_ready "$BP" 30 || die "the bridge did not become ready again"
outage_windows >"$VX_WORK/windows"
# shellcheck disable=SC2046
V=$("$REL_BIN/vx-load" verify --nats "$URLS" --stream "$STREAM" --record "$VX_WORK/answers.csv" \
  --marks <(grep '^kill' "$VX_WORK/marks") --windows "$VX_WORK/windows" $(ride_through_args)) \
  || verify_failed "$V"
REC=$(jq -c '[.recoveries[].first_202_after_ms]' <<<"$V")
result "$(jq -c --arg mode "$REL_MODE" --arg load "$(load_note)" --argjson rate "$RATE" \
  --arg killed "${KILLED[*]}" --argjson rec "$REC" --slurpfile l "$VX_WORK/load.json" \
  --arg ow "$REL_OUTAGE_WAIT" \
  '{suite:"cluster", mode:$mode, outage_wait:$ow, rate:$rate, replicas:3, killed:$killed, answers, codes,
    accepted_deliveries, stream_messages, missing_after_202, wrong_event_id, non_retryable_answers,
    leader, replica_missing_after_202,
    copies:(.copies | map({node, is_leader, messages, missing_after_202, only_in_this_copy})),
    first_202_after_kill_ms:$rec, p99_ms:$l[0].p99_ms, overall,
    elections:(.windows | map({first_202_after_ms, answers, answers_503, p99_answer_ms, max_answer_ms})),
    ride_through_violations, loadavg:$load, ok}' <<<"$V")"
