#!/usr/bin/env bash
# Suite 3: retried deliveries. Each delivery (same webhook-id, same body) is sent 3 times, one
# after another and then concurrently; every copy is answered 202, exactly one of them not as a
# duplicate, and the stream holds exactly one message per delivery.
REL_SUITE=retries
source "$(dirname "$0")/../lib.sh"

if [[ $REL_MODE == full ]]; then N=5000; else N=1000; fi
free_port NP
free_port BP
STREAM=REL_RETRIES
nats_start n1 "$NP"
bridge_start "$BP" "nats://127.0.0.1:$NP" "$STREAM" rel
for how in sequential concurrent; do
  extra=()
  [[ $how == concurrent ]] && extra=(--concurrent-repeats)
  log "$N deliveries x3, $how"
  "$REL_BIN/vx-load" webhook --url "http://127.0.0.1:$BP/webhooks/vx" --secret "$REL_SECRET" \
    --connections 16 --requests "$N" --duration 120s --repeat 3 "${extra[@]}" --id-prefix "$how" \
    --record "$VX_WORK/$how.csv" --json >"$VX_WORK/$how.json"
done
V=$("$REL_BIN/vx-load" verify --nats "nats://127.0.0.1:$NP" --stream "$STREAM" --all-accepted \
  --record "$VX_WORK/sequential.csv" --record "$VX_WORK/concurrent.csv") || { echo "$V"; die "verification failed"; }
jq -e '.stream_messages == .deliveries and .deliveries_with_one_first_202 == .deliveries and .answers == 3 * .deliveries' <<<"$V" >/dev/null \
  || { echo "$V"; die "not exactly one stored per delivery"; }
result "$(jq -c --arg mode "$REL_MODE" --arg load "$(load_note)" \
  '{suite:"retries", mode:$mode, copies:3, deliveries, answers, codes, stream_messages,
    stored_more_than_once, deliveries_with_one_first_202, loadavg:$load, ok}' <<<"$V")"
