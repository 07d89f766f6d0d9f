#!/usr/bin/env bash
# Suite 8: soak. Moderate steady load for 10 minutes (30 s in --short); resident memory and
# open file descriptors of the bridge sampled at start (after a 10 s warm-up) and every 30 s;
# every 202 stored.
REL_SUITE=soak
source "$(dirname "$0")/../lib.sh"

if [[ $REL_MODE == full ]]; then SECS=600 RATE=200; else SECS=30 RATE=200; fi
free_port NP
free_port BP
STREAM=REL_SOAK
nats_start n1 "$NP"
bridge_start "$BP" "nats://127.0.0.1:$NP" "$STREAM" rel
"$REL_BIN/vx-load" webhook --url "http://127.0.0.1:$BP/webhooks/vx" --secret "$REL_SECRET" \
  --connections 16 --rate "$RATE" --duration "$((SECS + 10))s" --id-prefix soak \
  --record "$VX_WORK/answers.csv" --json >"$VX_WORK/load.json" &
LOAD=$!
VX_PIDS+=("$LOAD")
sleep 10
echo "t_s,rss_kb,fds" >"$REL_OUT/soak-samples.csv"
start_rss=$(rss_kb "$BRIDGE_PID") start_fds=$(fds "$BRIDGE_PID")
echo "0,$start_rss,$start_fds" >>"$REL_OUT/soak-samples.csv"
t=0
while ((t < SECS)); do
  step=$((SECS - t < 30 ? SECS - t : 30))
  sleep "$step"
  t=$((t + step))
  echo "$t,$(rss_kb "$BRIDGE_PID"),$(fds "$BRIDGE_PID")" >>"$REL_OUT/soak-samples.csv"
done
end_rss=$(rss_kb "$BRIDGE_PID") end_fds=$(fds "$BRIDGE_PID")
wait "$LOAD" || die "vx-load failed"
sleep 1
idle_fds=$(fds "$BRIDGE_PID")
V=$("$REL_BIN/vx-load" verify --nats "nats://127.0.0.1:$NP" --stream "$STREAM" \
  --record "$VX_WORK/answers.csv") || { echo "$V"; die "verification failed"; }
result "$(jq -c --arg mode "$REL_MODE" --arg load "$(load_note)" --argjson secs "$SECS" --argjson rate "$RATE" \
  --argjson r0 "$start_rss" --argjson r1 "$end_rss" --argjson f0 "$start_fds" --argjson f1 "$end_fds" \
  --argjson fi "$idle_fds" --slurpfile l "$VX_WORK/load.json" \
  '{suite:"soak", mode:$mode, seconds:$secs, rate:$rate, rss_kb_start:$r0, rss_kb_end:$r1,
    fds_start:$f0, fds_end:$f1, fds_after_load:$fi, answers, codes, missing_after_202,
    p99_ms:$l[0].p99_ms, loadavg:$load, ok}' <<<"$V")"
