#!/usr/bin/env bash
# Suite 5: upstream faults for the status service. A scripted VX API on loopback is slow,
# answers 500, 429 (Retry-After longer than the deadline), 401, garbage, resets the connection,
# or hangs; every status request must be answered with its code before `upstream.timeout`
# (well before the requester's 10 s). Then the circuit must open after repeated failures and
# recover. Both checks are integration tests against a real nats-server; this runs them and
# keeps their figures.
REL_SUITE=status
source "$(dirname "$0")/../lib.sh"

cd "$REL_ROOT"
log "upstream faults, each answered before its deadline"
out=$(cargo test -q --test it -- --exact --nocapture \
  status::every_upstream_fault_is_answered_before_the_deadline \
  status::circuit_opens_after_repeated_failures_and_recovers \
  status::hanging_upstream_is_504_before_the_requesters_timeout 2>&1) || { echo "$out"; die "status fault tests failed"; }
echo "$out" | grep -q "test result: ok. 3 passed" || { echo "$out"; die "the status fault tests did not all run"; }
faults=$(echo "$out" | sed -n 's/.*status-faults: //p' | tail -n 1)
[[ -n $faults ]] || die "no figures from the fault test"
result "$(jq -nc --arg mode "$REL_MODE" --arg load "$(load_note)" --argjson faults "$faults" \
  '{suite:"status", mode:$mode, faults:$faults, circuit_opens_and_recovers:true, all_before_deadline:true, loadavg:$load, ok:true}')"
