#!/usr/bin/env bash
# The operator's view, proven with the real tools (CI: .ci/run). Debian's `prometheus` package
# gives prometheus and promtool.
#   1. promtool check rules + test rules on helm/vx-bridge/files/alerts.yaml, and the mutants:
#      every alert's firing cases and silent cases can each fail.
#   2. A real Prometheus (own port, temp storage, scrape and rule evaluation every 1 s) scrapes
#      the real vx-bridge (ingress + status service) next to a real nats-server and the mock VX
#      API of vx-load.
#   3. Healthy phase: promtool check metrics on a live scrape; a promtool test made from two
#      scrapes of the healthy binary in which no alert may fire (and which must fail when
#      vx_bridge_nats_connected reads 0); no alert active in Prometheus.
#   4. Faults: webhooks of every outcome, status answers 200/400/404/502/503/504 (the circuit
#      opens), and a NATS restart during which the connected gauge must read 1, then 0, then 1.
#   5. Every dashboard query has data over the run, every alert expression is valid, its query
#      part has data, and every alert the faults provoke became active (ALERTS).
# Everything runs on 127.0.0.1, on free ports, and is killed by the EXIT trap. Bounded: every
# wait has a timeout. NATS_SERVER picks the nats-server binary (default: nats-server on PATH).
# Usage: scripts/chart/prometheus-check.sh   (binaries: target/debug, built by cargo build)
set -euo pipefail
cd "$(dirname "$0")/../.."
BIN=${VXB_BIN_DIR:-target/debug}
NATS_SERVER=${NATS_SERVER:-nats-server}
RULES=helm/vx-bridge/files/alerts.yaml
TESTS=tests/prometheus/alerts.test.yaml
DASH=helm/vx-bridge/files/dashboard.json
SECRET=whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw
PY=python3
$PY -c 'import yaml' 2>/dev/null || PY=.cache/chart-tools/venv/bin/python   # PyYAML
start=$SECONDS
# The shared helpers (free ports, nats-server, the work dir and the EXIT trap that kills VX_PIDS).
VX_WORK_TAG=prom
# shellcheck source=scripts/lib.sh
source scripts/lib.sh
W=$VX_WORK
log() { printf '[%3ss] %s\n' "$((SECONDS - start))" "$*"; }
die() { log "FAIL: $*"; VX_KEEP=1; exit 1; }
for t in prometheus promtool curl "$NATS_SERVER" "$BIN/vx-bridge" "$BIN/vx-load"; do
  command -v "$t" >/dev/null || die "$t not found (prometheus/promtool: apt-get install prometheus)"
done

log "promtool: $(promtool --version 2>&1 | head -1)"
promtool check rules "$RULES" | sed 's/^/  /'
promtool test rules "$TESTS" | sed 's/^/  /'
log "mutants: each alert's firing cases and silent cases must each catch a wrong expr"
$PY scripts/chart/prometheus-check.py mutants "$RULES" "$TESTS" >"$W/mutants.txt" || { cat "$W/mutants.txt"; die "mutants"; }
echo "  $(grep -c caught "$W/mutants.txt") mutants, all caught"

for p in NPORT BPORT VPORT PPORT; do free_port "$p" || die "no free port"; done   # four distinct
NATS_URL=nats://127.0.0.1:$NPORT PROM=http://127.0.0.1:$PPORT BRIDGE=http://127.0.0.1:$BPORT

# wait_for WHAT SECONDS CMD...: until CMD succeeds.
wait_for() {
  local what=$1 deadline=$((SECONDS + $2)); shift 2
  until "$@" >/dev/null 2>&1; do
    ((SECONDS < deadline)) || die "timed out waiting for $what"
    sleep 0.2
  done
}
# prom_has QUERY: the instant query returns at least one series.
prom_has() {
  curl -sf --max-time 2 "$PROM/api/v1/query" --data-urlencode "query=$1" | grep -q '"result":\[{'
}
# next_scrape: returns once Prometheus has scraped the bridge again.
next_scrape() {
  local t0; t0=$(date +%s.%N)
  wait_for "a scrape" 10 prom_has "timestamp(up{job=\"vx-bridge\"}) > $t0"
}

log "starting $("$NATS_SERVER" --version), mock VX API, vx-bridge, prometheus"
nats_start nats "$NPORT"
"$BIN/vx-load" mock-vx --listen "127.0.0.1:$VPORT" --latency 5ms --duration 600s >"$W/mock.log" 2>&1 &
VX_PIDS+=("$!")
env -i PATH="$PATH" HOME="${HOME:-/root}" \
  VXB_HTTP__LISTEN="127.0.0.1:$BPORT" VXB_HTTP__MAX_IN_FLIGHT=8 VXB_NATS__URL="$NATS_URL" \
  VXB_NATS__STREAM__NAME=VX_PROMCHECK VXB_NATS__SUBJECT_PREFIX=promcheck \
  VXB_WEBHOOK__AUTH__MODE=hmac VXB_WEBHOOK__AUTH__HMAC__SECRETS="[\"$SECRET\"]" \
  VXB_STATUS__ENABLED=true VXB_UPSTREAM__BASE_URL="http://127.0.0.1:$VPORT" \
  VXB_UPSTREAM__OAUTH__TOKEN_URL="http://127.0.0.1:$VPORT/oauth/token" \
  VXB_UPSTREAM__OAUTH__CLIENT_ID=promcheck VXB_UPSTREAM__OAUTH__CLIENT_SECRET=promcheck-secret \
  VXB_UPSTREAM__TIMEOUT=2s VXB_UPSTREAM__CIRCUIT_FAILURE_THRESHOLD=6 VXB_LOG__LEVEL=warn \
  VXB_NATS__OUTAGE_WAIT=1s VXB_KEYS__KEK_FILE="$VXB_KEYS__KEK_FILE" \
  "$BIN/vx-bridge" serve >"$W/bridge.log" 2>&1 &
VX_PIDS+=("$!")
wait_for "vx-bridge /readyz" 30 curl -sf --max-time 1 "$BRIDGE/readyz"
cat >"$W/prometheus.yml" <<EOF
global: {scrape_interval: 1s, scrape_timeout: 900ms, evaluation_interval: 1s}
rule_files: [$PWD/$RULES]
scrape_configs:
  - job_name: vx-bridge
    static_configs: [{targets: ["127.0.0.1:$BPORT"]}]
EOF
promtool check config "$W/prometheus.yml" >/dev/null
prometheus --config.file="$W/prometheus.yml" --storage.tsdb.path="$W/prom" \
  --web.listen-address="127.0.0.1:$PPORT" --storage.tsdb.retention.time=1h >"$W/prometheus.log" 2>&1 &
VX_PIDS+=("$!")
wait_for "prometheus ready" 30 curl -sf --max-time 1 "$PROM/-/ready"
wait_for "the first scrape" 15 prom_has 'up{job="vx-bridge"} == 1'
T0=$(date +%s)

# Signed webhooks with a chosen body (Standard Webhooks), for the outcomes vx-load's load does
# not send: vx-load send, the one signer.
post() {   # post BODY [content-type]: prints the HTTP code
  "$BIN/vx-load" send --url "$BRIDGE/webhooks/vx" --secret "$SECRET" --body "$1" \
    --content-type "${2:-application/json}" --id "msg_pc_$RANDOM$RANDOM"
}
expect() { [ "$1" = "$2" ] || die "$3: got HTTP $1, want $2"; }
load() { "$BIN/vx-load" webhook --url "$BRIDGE/webhooks/vx" --json "$@" >>"$W/load.jsonl" 2>>"$W/load.err"; }
status() {   # status REQUEST_ID: the reply code (200 or the error code)
  local out rc=0
  out=$(env -i PATH="$PATH" VXB_NATS__URL="$NATS_URL" VXB_NATS__SUBJECT_PREFIX=promcheck \
    "$BIN/vx-bridge" status "$1" --timeout 10s 2>&1) || rc=$?
  if [ $rc = 0 ]; then echo 200; else echo "$out" | grep -oE '"code":[ ]*"?[0-9]{3}' | grep -oE '[0-9]{3}' | head -1; fi
}

result_by_email() {   # result_by_email EMAIL: the reply code (200 or the error code)
  local out rc=0
  out=$(env -i PATH="$PATH" VXB_NATS__URL="$NATS_URL" VXB_NATS__SUBJECT_PREFIX=promcheck \
    "$BIN/vx-bridge" result --email "$1" --timeout 10s 2>&1) || rc=$?
  if [ $rc = 0 ]; then echo 200; else echo "$out" | grep -oE '"code":[ ]*"?[0-9]{3}' | grep -oE '[0-9]{3}' | head -1; fi
}

log "healthy phase: webhooks and status lookups"
load --rate 100 --duration 3s --connections 4 --id-prefix healthy-a
"$BIN/vx-load" status --nats "$NATS_URL" --prefix promcheck --concurrency 4 --duration 2s --ids 5 --json >>"$W/status.jsonl"
curl -sf "$BRIDGE/metrics" >"$W/scrape.prom"
s1=$(date +%s.%N)
load --rate 100 --duration 3s --connections 4 --id-prefix healthy-b
"$BIN/vx-load" status --nats "$NATS_URL" --prefix promcheck --concurrency 4 --duration 2s --ids 5 --json >>"$W/status.jsonl"
s2=$(date +%s.%N)
{ echo "# SCRAPE 2 after $(awk "BEGIN{print $s2 - $s1}") s"; curl -sf "$BRIDGE/metrics"; } >>"$W/scrape.prom"

log "promtool check metrics on the live scrape"
curl -sf "$BRIDGE/metrics" | promtool check metrics >"$W/lint.txt" 2>&1 || { cat "$W/lint.txt"; die "promtool check metrics"; }
echo "  $(curl -sf "$BRIDGE/metrics" | grep -c '^vx_bridge_') samples, no lint finding"

log "promtool test from the healthy scrape: no alert may fire"
$PY scripts/chart/prometheus-check.py healthy-test "$W/scrape.prom" "$W/healthy.test.yaml" "$RULES" | sed 's/^/  /'
promtool test rules "$W/healthy.test.yaml" >"$W/healthy.out" 2>&1 || { cat "$W/healthy.out"; die "an alert fires on the healthy bridge"; }
echo "  SUCCESS"
# The same test must fail on a bridge whose connected gauge reads 0 (the bug it guards).
sed 's/^vx_bridge_nats_connected\(.*\) 1$/vx_bridge_nats_connected\1 0/' "$W/scrape.prom" >"$W/stuck.prom"
$PY scripts/chart/prometheus-check.py healthy-test "$W/stuck.prom" "$W/stuck.test.yaml" "$RULES" >/dev/null
if promtool test rules "$W/stuck.test.yaml" >"$W/stuck.out" 2>&1; then die "the healthy test passes with vx_bridge_nats_connected = 0"; fi
grep -q VxBridgeNatsDisconnected "$W/stuck.out" || die "stuck gauge: VxBridgeNatsDisconnected did not fire"
echo "  and it fails (VxBridgeNatsDisconnected) when vx_bridge_nats_connected reads 0"
wait_for "connected = 1 in Prometheus" 10 prom_has 'vx_bridge_nats_connected == 1'
next_scrape; next_scrape
if prom_has 'ALERTS{alertname!~"VxBridgeNatsServer.*"}'; then
  curl -s "$PROM/api/v1/query" --data-urlencode 'query=ALERTS'; echo; die "alerts active on the healthy bridge"
fi
echo "  no alert active in Prometheus"

log "faults: every webhook outcome"
load --requests 40 --repeat 2 --connections 4 --id-prefix dup                    # accepted + duplicate
load --rate 150 --duration 3s --connections 8 --secret whsec_d3JvbmdzZWNyZXRhbHRvZ2V0aGVy   # unauthorized
load --duration 2s --connections 64 --id-prefix burst                            # throttled (max_in_flight 8)
body_ok='{"request_id":"4ed2ec66-9471-415d-99ce-7bd1742fc2b8","status":"PASS","reference":"promcheck"}'
expect "$(post "$body_ok" text/plain)" 415 "invalid (content type)"
for i in 1 2; do
  expect "$(post '{"request_id":"not-a-uuid","status":"PASS"}')" 422 "rejected (schema)"
  expect "$(post "{\"request_id\":\"$(cat /proc/sys/kernel/random/uuid)\",\"status\":\"ON_HOLD_$i\"}")" 202 "unrecognized status"
  next_scrape   # so the counters grow between two samples: increase() sees them
done

log "faults: status answers"
expect "$(status 4ed2ec66-9471-415d-99ce-7bd1742fc2b8)" 200 "status ok"
# The CLI refuses a malformed request_id before sending it (exit 64), so the 400 comes from
# the service: a lookup by email, which this bridge does not have configured.
expect "$(result_by_email nobody@example.com)" 400 "result 400 (email lookup not configured)"
expect "$(status 00000000-0000-4000-8000-fa1700001404)" 404 "status 404"
expect "$(status 00000000-0000-4000-8000-fa1700001504)" 504 "status 504 (VX hangs)"
expect "$(status 00000000-0000-4000-8000-fa1700000500)" 502 "status 502 (VX 500)"
for i in 1 2 3 4 5 6; do   # failed attempts (3 per lookup, the 504 one too) open the circuit at 6
  c=$(status "00000000-0000-4000-8000-fa170000${i}500")
  [[ $c == 502 || $c == 503 ]] || die "status during VX 500s: got $c, want 502 or 503"
  next_scrape
  prom_has 'vx_bridge_upstream_circuit_state == 2' && break
done
wait_for "the circuit open in Prometheus" 5 prom_has 'vx_bridge_upstream_circuit_state == 2'
expect "$(status 00000000-0000-4000-8000-fa1700009500)" 503 "status 503 (circuit open)"
"$BIN/vx-load" status --nats "$NATS_URL" --prefix promcheck --concurrency 4 --duration 2s --ids 5 --json >>"$W/status.jsonl"

log "faults: NATS restart (connected must read 1, 0, 1)"
prom_has 'vx_bridge_nats_connected == 1' || die "connected gauge is not 1 before the restart"
nats_kill nats
wait_for "connected = 0 in Prometheus" 20 prom_has 'vx_bridge_nats_connected == 0'
# outage_wait is 1 s here (5 s by default): the 503s come in a wave per second, so the
# unavailable counter increases between scrapes (a series first seen at 4 has no rate).
load --rate 20 --duration 3s --connections 4 --id-prefix down                    # unavailable (503)
tail -n 1 "$W/load.jsonl" | grep -q '"503":' || die "no 503 while NATS was down"
nats_start nats "$NPORT"
wait_for "connected = 1 in Prometheus after the restart" 30 prom_has 'vx_bridge_nats_connected == 1'
wait_for "vx-bridge ready after the restart" 30 curl -sf --max-time 1 "$BRIDGE/readyz"
load --rate 50 --duration 2s --connections 4 --id-prefix after
next_scrape; next_scrape
T1=$(date +%s)

log "Prometheus has seen every webhook outcome and every status answer"
for o in accepted duplicate unauthorized invalid rejected unavailable throttled; do
  prom_has "vx_bridge_webhooks_total{outcome=\"$o\"} > 0" || die "no webhook with outcome $o in Prometheus"
done
for c in 200 400 404 502 503 504; do
  prom_has "vx_bridge_status_requests_total{code=\"$c\"} > 0" || die "no status answer $c in Prometheus"
done
echo "  outcomes: accepted duplicate unauthorized invalid rejected unavailable throttled; codes: 200 400 404 502 503 504"

log "every dashboard query and alert expression against Prometheus ($((T1 - T0)) s of data)"
curl -sf "$BRIDGE/metrics" >"$W/final.prom"
$PY scripts/chart/prometheus-check.py live "$PROM" "$RULES" "$DASH" "$T0" "$T1" "$W/final.prom" || die "live check"
log "prometheus-check: ok ($((SECONDS - start)) s)"
