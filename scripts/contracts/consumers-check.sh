#!/usr/bin/env bash
# Proves the consumer kits (examples/consumers/: Rust, Python, TypeScript) against the real bridge.
#
#   scripts/contracts/consumers-check.sh [rust|python|typescript ...]    (default: all three)
#
# Starts its own nats-server on a free port (NATS_SERVER, else the newest of
# scripts/nats/nats-servers.sh: the kits' consumer has two filter subjects, which needs >= 2.10), the
# mock VX API (`vx-bridge mock-vx`) and `vx-bridge serve` with the status service pointed at it;
# sends Standard Webhooks-signed webhooks; runs each kit twice under its own durable:
#   run 1: VX_NAK_FIRST=1 (the first delivery is NAKed with a delay) and VX_EXIT_BEFORE_ACK=2
#          (the kit exits, code 3, after handling its second event and before acking it);
#   run 2: a normal run (VX_STATUS_ID = the nil UUID, which the mock answers 404; VX_WATCH_ID =
#          a session no webhook is ever sent for, which the bridge's reconciler polls at the
#          mock until it completes, and publishes as a `vx-source: poll` event); one more
#          webhook is sent while it runs.
# Then checks what each printed: every event handled exactly once over both runs, the event
# left unacked by run 1 redelivered and ignored as a duplicate (the kit's event_id store), a NAK
# seen, a status answer, the 404 error reply read from its headers, the new session seen in the
# KV watch, the watch reply, and the watched session's poll event handled once. Data protection:
# run 1 has no KEK (decision fields only: `pii: no-key-access`), run 2 has the bridge's KEK and
# decrypts the 4th event to the exact bytes sent (SHA-256); `vx-bridge erase` of that session
# then reaches every kit as `{prefix}.erased`, and each deletes its file for the session. Everything runs on 127.0.0.1 and is stopped on exit (scripts/lib.sh).
set -euo pipefail
cd "$(dirname "$0")/../.."
ROOT=$PWD
KITS=("$@")
((${#KITS[@]})) || KITS=(rust python typescript)

if [ -z "${NATS_SERVER:-}" ]; then
  NATS_SERVER=$(scripts/nats/nats-servers.sh --newest | cut -d' ' -f2)
fi
export NATS_SERVER
REL_SUITE=consumers
REL_OUT="${REL_OUT:-$ROOT/target/consumers-check}"
# shellcheck source=lib.sh
source scripts/lib.sh
case "$REL_NATS_VERSION" in
  2.9.*) die "nats-server $REL_NATS_VERSION: the kits need >= 2.10 (several filter subjects); set NATS_SERVER" ;;
esac

log "building vx-bridge, vx-load and the Rust kit (cargo build --locked -p vx-bridge -p vx-load --bins --example consumer)"
cargo build --locked -q -p vx-bridge -p vx-load --bins --example consumer
for kit in "${KITS[@]}"; do
  case "$kit" in
    rust) ;;
    python) # the venv of the kit, made once by its run.sh (outside the source tree)
      export VX_PY_VENV="$ROOT/target/consumer-tools/py-venv" ;;
    typescript) ;;
    *) die "unknown kit $kit (rust, python, typescript)" ;;
  esac
done

kit_cmd() {
  case "$1" in
    rust) echo "$REL_BIN/examples/consumer" ;;
    python) echo "$ROOT/examples/consumers/python/run.sh" ;;
    typescript) echo "$ROOT/examples/consumers/typescript/run.sh" ;;
  esac
}

free_port NPORT
free_port BPORT
free_port MPORT
nats_start n1 "$NPORT"
NATS_URL="nats://127.0.0.1:$NPORT"
PREFIX=ck.verification
STREAM=CK_VERIFICATIONS
# The mock ends each session's cycle (INIT, IN PROGRESS, ...) in a PASS result body, so that a
# watched session completes; the reconciler checks every 300 ms here (1m, 2m, ... by default).
"$REL_BIN/vx-bridge" mock-vx --listen "127.0.0.1:$MPORT" --token mock-token --complete-with PASS \
  >>"$VX_WORK/mock.log" 2>&1 &
VX_PIDS+=("$!")
wait_port "$MPORT" 15 || die "mock-vx did not listen on $MPORT"
bridge_start "$BPORT" "$NATS_URL" "$STREAM" "$PREFIX" \
  VXB_STATUS__ENABLED=true VXB_UPSTREAM__BASE_URL="http://127.0.0.1:$MPORT" VXB_UPSTREAM__TOKEN=mock-token \
  VXB_RECONCILE__SCHEDULE='["300ms"]'
log "nats-server $REL_NATS_VERSION on $NPORT, mock VX on $MPORT, bridge on $BPORT"

# post BODY: a Standard Webhooks-signed delivery (vx-load send, the bridge's own signer); prints
# the event_id of the 202.
post() {
  local reply
  reply=$("$REL_BIN/vx-load" send --url "http://127.0.0.1:$BPORT/webhooks/vx" --secret "$REL_SECRET" \
    --body "$1" --json)
  [[ $(jq -r .code <<<"$reply") == 202 ]] || die "webhook not accepted: $reply"
  jq -er .answer.event_id <<<"$reply"
}
SA=11111111-aaaa-4aaa-8aaa-000000000001
SB=11111111-bbbb-4bbb-8bbb-000000000002
SC=11111111-cccc-4ccc-8ccc-000000000003
SW=11111111-dddd-4ddd-8ddd-000000000004   # watched by the kits, never sent as a webhook
E1=$(post "{\"request_id\":\"$SA\",\"status\":\"PENDING\",\"reference\":\"ck-a\"}")
E2=$(post "{\"request_id\":\"$SA\",\"status\":\"PASS\",\"reference\":\"ck-a\"}")
E3=$(post "{\"request_id\":\"$SB\",\"status\":\"FAIL\",\"reference\":\"ck-b\"}")
log "sent 3 webhooks: $E1 $E2 $E3"

# has FILE JQ-FILTER: some line of FILE matches (jq -e on each JSON line).
has() { [ -s "$1" ] && jq -e -s "any(.[]; $2)" "$1" >/dev/null 2>&1; }
# wait_for FILE JQ-FILTER SECONDS WHAT
wait_for() {
  local deadline=$((SECONDS + $3))
  until has "$1" "$2"; do
    ((SECONDS < deadline)) || die "$4: not seen in $3 s (see $1)"
    sleep 0.2
  done
}
kit_env() {   # kit_env KIT: the kit's configuration (the same names in every kit)
  echo NATS_URL="$NATS_URL" VX_PREFIX="$PREFIX" VX_STREAM="$STREAM" VX_DURABLE="ck-$1" \
    VX_STORE="$VX_WORK/$1.handled" VX_ACK_WAIT_MS=2000
}

# Each kit runs in its own process group (setsid), so that stopping it also stops what its
# run.sh started (tsx runs node as a child); the EXIT trap kills every group left.
KIT_PGIDS=()
kits_cleanup() {
  local pg
  for pg in "${KIT_PGIDS[@]:-}"; do
    [[ -n "$pg" ]] && kill -9 -- "-$pg" 2>/dev/null || true
  done
}
trap 'kits_cleanup; vx_cleanup' EXIT
# kit_start KIT RUN [VAR=value...]: starts the kit; sets KIT_PID (= its process group).
kit_start() {
  local kit=$1 run=$2
  shift 2
  # shellcheck disable=SC2046
  setsid env $(kit_env "$kit") "$@" "$(kit_cmd "$kit")" \
    >"$VX_WORK/$kit.$run.jsonl" 2>"$VX_WORK/$kit.$run.err" &
  KIT_PID=$!
  KIT_PGIDS+=("$KIT_PID")
}
# wait_exit PID SECONDS: waits for the process to end (bounded); sets EXIT_RC.
wait_exit() {
  local deadline=$((SECONDS + $2))
  while kill -0 "$1" 2>/dev/null; do
    ((SECONDS < deadline)) || return 1
    sleep 0.2
  done
  EXIT_RC=0
  wait "$1" || EXIT_RC=$?
}

# Run 1 of every kit, in parallel: NAK the first delivery, exit before the second ack.
declare -A RUN1
for kit in "${KITS[@]}"; do
  kit_start "$kit" 1 VX_NAK_FIRST=1 VX_EXIT_BEFORE_ACK=2
  RUN1[$kit]=$KIT_PID
done
for kit in "${KITS[@]}"; do
  wait_exit "${RUN1[$kit]}" 180 || die "$kit run 1 did not exit in 180 s (see $VX_WORK/$kit.1.*)"
  [[ $EXIT_RC == 3 ]] || { cat "$VX_WORK/$kit.1.err" >&2; die "$kit run 1 exited $EXIT_RC, want 3 (exit before ack)"; }
  log "$kit run 1: exited before its ack, as asked"
done

# Run 2 of every kit, in parallel; a fourth webhook while they run.
declare -A RUN2
for kit in "${KITS[@]}"; do
  # Run 2 is a PII reader: the bridge's KEK and the keys bucket (run 1 has neither).
  kit_start "$kit" 2 VX_STATUS_ID=00000000-0000-0000-0000-000000000000 VX_WATCH_ID="$SW" \
    VX_KEK_FILE="$VXB_KEYS__KEK_FILE"
  RUN2[$kit]=$KIT_PID
done
for kit in "${KITS[@]}"; do
  wait_for "$VX_WORK/$kit.2.jsonl" '.ready' 120 "$kit run 2 ready"
done
B4="{\"request_id\":\"$SC\",\"status\":\"PASS\",\"reference\":\"ck-c\"}"
SHA4=$(printf %s "$B4" | sha256sum | cut -d' ' -f1)
E4=$(post "$B4")
log "sent a 4th webhook while the kits run: $E4"

# Data protection: run 2 decrypted the 4th event to the bytes sent (its SHA-256) and keeps a file
# for its session; run 1, without a KEK, handled its events on the decision fields alone. Then
# one erasure of that session, which every kit must see (below).
for kit in "${KITS[@]}"; do
  out2="$VX_WORK/$kit.2.jsonl"
  wait_for "$out2" '.pii_reader.enabled == true' 60 "$kit: the PII reader on"
  wait_for "$out2" ".pii == \"decrypted\" and .event_id == \"$E4\" and .sha256 == \"$SHA4\"" 60 \
    "$kit: the 4th event decrypted to the body sent"
  has "$VX_WORK/$kit.1.jsonl" '.pii == "no-key-access"' || die "$kit: run 1 (no KEK) did not say no-key-access"
  has "$VX_WORK/$kit.1.jsonl" '.pii == "decrypted"' && die "$kit: run 1 decrypted without a KEK"
  [ -f "$VX_WORK/$kit.handled.sessions/$SC.json" ] || die "$kit: no state file for session C"
done
env -i PATH="$PATH" VXB_NATS__URL="$NATS_URL" VXB_NATS__SUBJECT_PREFIX="$PREFIX" \
  VXB_NATS__STREAM__NAME="$STREAM" "$REL_BIN/vx-bridge" erase "$SC" --reason consumers-check \
  >"$VX_WORK/erase.json" || die "vx-bridge erase failed"
log "erased session C: $(cat "$VX_WORK/erase.json")"

for kit in "${KITS[@]}"; do
  out2="$VX_WORK/$kit.2.jsonl"
  state="$VX_WORK/$kit.handled.sessions/$SC.json"
  wait_for "$out2" ".handled == \"$E4\"" 60 "$kit: the 4th event handled"
  wait_for "$out2" '.duplicate_ignored' 30 "$kit: the redelivered event ignored"
  wait_for "$out2" ".kv == \"$SA\" and .terminal == true" 30 "$kit: session A's current value at the start of the KV watch"
  wait_for "$out2" ".kv == \"$SC\" and .terminal == true" 30 "$kit: session C in the KV watch"
  wait_for "$out2" "(.status | objects | .request_id) == \"$SC\"" 30 "$kit: a status answer for session C"
  wait_for "$out2" '.status_error.code == 404' 30 "$kit: the 404 error reply"
  wait_for "$out2" "(.watch | objects | .request_id) == \"$SW\" and (.watch.watching | type) == \"boolean\"" 30 "$kit: the watch reply"
  wait_for "$out2" ".request_id == \"$SW\" and .handled and .source == \"poll\" and .type == \"completed.pass\"" 60 \
    "$kit: the watched session's poll event"
  # (data protection: checked before this loop, the erasure seen here)
  wait_for "$out2" ".erased == \"$SC\" and .deleted_files == 1" 30 "$kit: the erased event handled"
  [ -f "$state" ] && die "$kit: session C's state file is still there after the erasure"
  kill -TERM -- "-${RUN2[$kit]}" 2>/dev/null || true
  wait_exit "${RUN2[$kit]}" 15 || kill -9 -- "-${RUN2[$kit]}" 2>/dev/null || true

  all="$VX_WORK/$kit.all.jsonl"
  cat "$VX_WORK/$kit.1.jsonl" "$out2" >"$all"
  # Every event handled exactly once over both runs, and nothing else handled.
  counts=$(jq -s -c '[.[] | select(.handled) | .handled] | group_by(.) | map({(.[0]): length}) | add // {}' "$all")
  # The poll event of the watched session (one event for all kits: the reconciler publishes it once).
  EP=$(jq -r -s --arg w "$SW" '[.[] | select(.handled and .request_id == $w) | .handled][0]' "$all")
  want=$(jq -n -c --arg a "$E1" --arg b "$E2" --arg c "$E3" --arg d "$E4" --arg p "$EP" '{($a):1,($b):1,($c):1,($d):1,($p):1}')
  [[ $(jq -S -c . <<<"$counts") == $(jq -S -c . <<<"$want") ]] || die "$kit: handled counts $counts, want $want"
  # The event run 1 handled but did not ack came again and was ignored by event_id.
  unacked=$(jq -r 'select(.exit_before_ack) | .exit_before_ack' "$VX_WORK/$kit.1.jsonl")
  has "$out2" ".duplicate_ignored == \"$unacked\" and .delivered >= 2" ||
    die "$kit: the unacked event $unacked was not redelivered and ignored"
  has "$VX_WORK/$kit.1.jsonl" '.nak' || die "$kit: no NAK in run 1"
  has "$out2" '.status_error.code == 404 and .status_error.body_code == 404 and .status_error.retryable == false' ||
    die "$kit: the 404 reply's header and body disagree"
  if [[ -n "${POLL_EVENT:-}" ]]; then
    [[ "$EP" == "$POLL_EVENT" ]] || die "$kit: the poll event $EP is not the one the other kits handled ($POLL_EVENT)"
  fi
  POLL_EVENT=$EP
  result "$(jq -n -c --arg kit "$kit" --argjson handled "$counts" --arg dup "$unacked" --arg poll "$EP" \
    '{kit: $kit, handled_once: ($handled | length), duplicate_ignored: $dup, nak: true, status: true, status_error_404: true, kv_seen: true, watch: true, poll_event: $poll, pii_decrypted: true, no_key_access_without_kek: true, erased_deleted: true}')"
done
echo "consumers-check: ${#KITS[@]} passed, 0 failed"
