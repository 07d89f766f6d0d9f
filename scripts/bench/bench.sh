#!/usr/bin/env bash
# Benchmarks vx-bridge against its baselines in one run and writes docs/PERFORMANCE.md.
#
#   scripts/bench/bench.sh [--quick] [--before REV] [--no-profile] [--out FILE]
#
#   --quick       3 s per measurement instead of 10 s (a smoke run; the document says so)
#   --before REV  also build git revision REV (into target/bench-before) and measure its
#                 ingress and its callgrind instructions per request: before/after in one run
#   --no-profile  skip the callgrind profile
#   --profile-only  measure only (p), callgrind, and print instructions per webhook (with --before:
#                 the before build too); writes no report. Load-independent: for before/after checks
#   --out FILE    write the report there instead of docs/PERFORMANCE.md
#   --report-from DIR  measure nothing: write the report again from a kept run's results
#                 (every run keeps them in target/bench/last-run), e.g. after editing
#                 docs/bench-analysis.md (the report is rendered by scripts/bench/bench-report.py)
#
# Environment: BENCH_DURATION (10s), BENCH_WARMUP (2s), BENCH_CONNECTIONS (64),
# BENCH_IN_FLIGHT (256), BENCH_PROFILE_REQUESTS (2000), BENCH_SWEEP ("0.25 0.5 0.75 0.9": the
# fractions of each peak the latency sweep offers).
#
# Measures, each against its own fresh nats-server on a free port with a temp store:
#   (a) raw JetStream publish of the bridge's own event messages, 256 PubAcks in flight, unique
#       Nats-Msg-Id (vx-load jspub)                                        -- baseline
#   (b) plain axum answering 202 to the same signed POSTs (vx-load serve202) -- baseline
#   (n) the naive handler: HMAC check, serde_json::Value parse, jsonschema is_valid, publish
#       with an awaited PubAck, 202 (vx-load naive), same load and body     -- baseline
#   (c) vx-bridge's full ingress (HMAC, parse, schema, event, awaited PubAck), at its peak and
#       at half of it; peak RSS; time from start to ready; binary size; the session projector's
#       backlog at the peak; peak, CPU and RSS with the session view off (and peak and CPU with
#       it off and 2 webhooks per session); peak and CPU with
#       events.pii = clear (the baseline of the default, encrypted: a new data key per session,
#       each webhook of the load being a new session)
#   (s) latency against offered rate: open-loop runs of (b), (n) and (c) at fractions of each
#       one's peak (BENCH_SWEEP), drawn into docs/perf-latency.png with matplotlib
#   (d) status lookups from cache, from the session view (terminal sessions) and through a 20 ms
#       mock VX API, against a raw NATS echo responder; a burst of 100 identical lookups and the
#       upstream calls it caused
#   (p) callgrind: instructions per webhook in the whole process: vx-bridge (view on, view off,
#       events.pii = clear) and (n)
# Only 127.0.0.1 is ever a target; every loop is bounded; everything started is stopped on exit.
set -euo pipefail

cd "$(dirname "$0")/../.."
ROOT=$PWD
QUICK=0
BEFORE=""
BEFORE_REV=""
REPORT_FROM=""
PROFILE=1
PROFILE_ONLY=0
OUT="$ROOT/docs/PERFORMANCE.md"
while [ $# -gt 0 ]; do
  case "$1" in
    --quick) QUICK=1 ;;
    --before) BEFORE="$2"; shift ;;
    --no-profile) PROFILE=0 ;;
    --profile-only) PROFILE_ONLY=1 ;;
    --out) OUT="$2"; shift ;;
    --report-from) REPORT_FROM="$2"; shift ;;
    -h|--help) sed -n '2,27p' "$0"; exit 0 ;;
    *) echo "unknown argument: $1 (see --help)" >&2; exit 2 ;;
  esac
  shift
done
if [ "$QUICK" = 1 ]; then
  DURATION=${BENCH_DURATION:-3s}; WARMUP=${BENCH_WARMUP:-1s}
else
  DURATION=${BENCH_DURATION:-10s}; WARMUP=${BENCH_WARMUP:-2s}
fi
CONNS=${BENCH_CONNECTIONS:-64}
IN_FLIGHT=${BENCH_IN_FLIGHT:-256}
PROFILE_REQUESTS=${BENCH_PROFILE_REQUESTS:-2000}
SWEEP=${BENCH_SWEEP:-0.25 0.5 0.75 0.9}
SECRET='whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw'

say() { printf '\n== %s\n' "$*" >&2; }
need() {  # need TOOL PACKAGE: install PACKAGE with apt-get when TOOL is missing, saying so
  command -v "$1" >/dev/null && return 0
  echo "bench.sh: $1 is missing; installing Debian package $2 with apt-get" >&2
  apt-get install -y "$2" >/dev/null || { apt-get update >/dev/null && apt-get install -y "$2" >/dev/null; }
}
# NATS_SERVER picks the server binary (scripts/nats/nats-servers.sh prints the matrix's paths).
NATS_SERVER="${NATS_SERVER:-nats-server}"
command -v "$NATS_SERVER" >/dev/null || { echo "bench.sh: $NATS_SERVER not found (apt-get install nats-server, or NATS_SERVER=<path>)" >&2; exit 1; }
need jq jq
need curl curl
[ "$PROFILE" = 1 ] && { need valgrind valgrind; need callgrind_annotate valgrind; }

# The shared helpers: nats-server on free ports, waits, the work dir and the EXIT trap.
VX_WORK_TAG=bench
# shellcheck source=scripts/lib.sh
source "$ROOT/scripts/lib.sh"
KEEP=$ROOT/target/bench/last-run

if [ -z "$REPORT_FROM" ]; then  # ------------------------------------- measurements
LOAD_START=$(cut -d' ' -f1-3 /proc/loadavg)
MEASURED_AT=$(date -u +%Y-%m-%dT%H:%MZ)
MEASURED_REV="$(git rev-parse --short HEAD)$(git diff --quiet HEAD -- src benches scripts Cargo.toml Cargo.lock || echo ' (with uncommitted changes)')"
say "load average before: $LOAD_START (2 cores; run when the 1-minute figure is low)"

say "building release binaries"
cargo build --release --locked --workspace --bins >&2
BIN=$ROOT/target/release/vx-bridge
LOAD=$ROOT/target/release/vx-load

BEFORE_BIN=""
if [ -n "$BEFORE" ]; then
  say "building $BEFORE for before/after"
  src=$ROOT/target/bench-before/src
  # The same revision as last time: its extracted source (and so its build) is reused.
  if [ "$(cat "$src/.bench-rev" 2>/dev/null)" != "$(git rev-parse "$BEFORE")" ]; then
    rm -rf "$src" && mkdir -p "$src"
    git archive "$BEFORE" | tar -x -C "$src"
    git rev-parse "$BEFORE" >"$src/.bench-rev"
  fi
  # Not --locked: an older revision's lock file may need a touch; it is a temp copy.
  (cd "$src" && CARGO_TARGET_DIR=$ROOT/target/bench-before/target cargo build --release --bin vx-bridge >&2)
  BEFORE_BIN=$ROOT/target/bench-before/target/release/vx-bridge
  BEFORE_REV=$(git rev-parse --short "$BEFORE")
fi

TMP=$VX_WORK
track() { VX_PIDS+=("$1"); }
listening() {  # PORT: up to 10 s
  wait_port "$1" 10 || die "nothing listens on 127.0.0.1:$1"
}
NATS_URL=""; BENCH_NATS_PID=""
start_nats() {  # NAME: a fresh server on a free port (lib.sh's nats_start)
  local port; free_port port
  nats_start "$1" "$port"
  BENCH_NATS_PID=${NATS_PID[$1]}
  NATS_URL="nats://127.0.0.1:$port"
}
stop_nats() { nats_stop "$1"; }
bridge_env() {  # PORT: the environment of a bench bridge (ingress only, file stream, JSON logs)
  echo VXB_HTTP__LISTEN="127.0.0.1:$1" VXB_NATS__URL="$NATS_URL" \
    VXB_NATS__STREAM__NAME=BENCH VXB_NATS__STREAM__STORAGE=file \
    VXB_WEBHOOK__AUTH__MODE=hmac "VXB_WEBHOOK__AUTH__HMAC__SECRETS=[\"$SECRET\"]"
}
BRIDGE_PID=""
start_bridge() {  # NAME BIN PORT [extra VAR=value ...]
  local name=$1 bin=$2 port=$3; shift 3
  # shellcheck disable=SC2046
  env $(bridge_env "$port") "$@" "$bin" serve 2>"$TMP/$name-bridge.log" &
  BRIDGE_PID=$!; track "$BRIDGE_PID"
  wait_ready "$port" 30 || die "vx-bridge $name not ready on $port"
}
webhook() {  # URL OUT [extra vx-load args]
  local url=$1 out=$2; shift 2
  $LOAD webhook --url "$url" --connections "$CONNS" --duration "$DURATION" --warmup "$WARMUP" \
    --id-prefix "$(basename "$out" .json)-$RANDOM" --json "$@" >"$out"
  cat "$out" >&2
}
ticks() {  # PID: CPU time used so far (user + system), in 1/100 s
  awk '{ sub(/.*\) /, ""); split($0, f, " "); print f[12] + f[13] }' "/proc/$1/stat"
}
cpu_note() {  # NAME PID T0: write the CPU seconds PID used since T0 ticks to $TMP/NAME
  awk -v a="$3" -v b="$(ticks "$2")" 'BEGIN { printf "%.2f", (b - a) / 100 }' >"$TMP/$1"
}

# The session projector's backlog (vx_bridge_sessions_pending) during and after the (c) peak.
pending() {  # PORT: the gauge's value, or nothing
  curl -fs "http://127.0.0.1:$1/metrics" | awk '$1 == "vx_bridge_sessions_pending" { v = $2 } END { print v }'
}

if [ "$PROFILE_ONLY" = 0 ]; then  # everything but (p)
# ---------------------------------------------------------------- (a) raw JetStream publish
say "(a) raw JetStream publish, $IN_FLIGHT PubAcks in flight, unique Nats-Msg-Id, file store"
start_nats a
t_nats=$(ticks "$BENCH_NATS_PID")
$LOAD jspub --nats "$NATS_URL" --in-flight "$IN_FLIGHT" --duration "$DURATION" --warmup "$WARMUP" --json >"$TMP/a.json"
cat "$TMP/a.json" >&2
cpu_note a-nats-cpu "$BENCH_NATS_PID" "$t_nats"
stop_nats a

lag_sampler() {  # PORT FILE: the backlog every 0.5 s (the gauge is refreshed every 0.5 s)
  trap - EXIT INT TERM   # a subshell: the script's clean-up must not run when it is stopped
  while :; do pending "$1" >>"$2"; sleep 0.5; done
}
catch_up() {  # PORT: seconds (to 0.1 s) until the backlog is 0 after the load stopped (at most 60)
  local t0; t0=$(date +%s.%N)
  for _ in $(seq 1 600); do
    if [ "$(pending "$1")" = 0 ]; then
      awk -v a="$t0" -v b="$(date +%s.%N)" 'BEGIN { printf "%.1f\n", b - a }'; return 0
    fi
    sleep 0.1
  done
  echo ">60"
}

sweep() {  # NAME URL: open-loop runs at each fraction of NAME's peak (from $TMP/NAME.json)
  local name=$1 url=$2 peak f
  peak=$(jq -r '.rps' "$TMP/$name.json")
  for f in $SWEEP; do
    webhook "$url" "$TMP/sweep-$name-$f.json" --rate "$(awk -v p="$peak" -v f="$f" 'BEGIN { printf "%d", p * f }')"
  done
}

# ---------------------------------------------------------------- (b) plain axum 202
say "(b) plain axum 202, $CONNS connections"
free_port port
$LOAD serve202 --listen "127.0.0.1:$port" --duration 900s >/dev/null &
S202=$!; track "$S202"
listening "$port"
t_srv=$(ticks "$S202")
webhook "http://127.0.0.1:$port/webhooks/vx" "$TMP/b.json"
cpu_note b-srv-cpu "$S202" "$t_srv"
say "(s) plain axum 202: open loop at $SWEEP of its peak"
sweep b "http://127.0.0.1:$port/webhooks/vx"
stop "$S202"

# ---------------------------------------------------------------- (n) naive handler
say "(n) naive handler (HMAC, Value parse, jsonschema is_valid, awaited PubAck), $CONNS connections"
start_nats n
free_port port
$LOAD naive --listen "127.0.0.1:$port" --nats "$NATS_URL" --secret "$SECRET" --duration 900s >/dev/null &
NAIVE=$!; track "$NAIVE"
listening "$port"
t_nats=$(ticks "$BENCH_NATS_PID"); t_srv=$(ticks "$NAIVE")
webhook "http://127.0.0.1:$port/webhooks/vx" "$TMP/n.json"
cpu_note n-nats-cpu "$BENCH_NATS_PID" "$t_nats"; cpu_note n-srv-cpu "$NAIVE" "$t_srv"
say "(s) naive handler: open loop at $SWEEP of its peak"
sweep n "http://127.0.0.1:$port/webhooks/vx"
awk '/VmHWM/ {print $2}' "/proc/$NAIVE/status" >"$TMP/n-rss-kib"
stop "$NAIVE"
stop_nats n

# ---------------------------------------------------------------- (c) vx-bridge ingress
ingress() {  # NAME BIN: peak, half of peak, RSS
  local name=$1 bin=$2 port
  start_nats "$name"
  free_port port
  start_bridge "$name" "$bin" "$port"
  local t_nats t_srv; t_nats=$(ticks "$BENCH_NATS_PID"); t_srv=$(ticks "$BRIDGE_PID")
  lag_sampler "$port" "$TMP/$name-lag" & local sampler=$!
  webhook "http://127.0.0.1:$port/webhooks/vx" "$TMP/$name.json"
  kill "$sampler" 2>/dev/null || true; wait "$sampler" 2>/dev/null || true
  catch_up "$port" >"$TMP/$name-catchup-s"
  # Counted once the projector has caught up: the events it still had to project are this
  # load's work too (a projector that lags must not look cheap).
  cpu_note "$name-nats-cpu" "$BENCH_NATS_PID" "$t_nats"; cpu_note "$name-srv-cpu" "$BRIDGE_PID" "$t_srv"
  local half; half=$(jq -r '.rps / 2 | floor' "$TMP/$name.json")
  say "($name) at half of peak: $half req/s"
  lag_sampler "$port" "$TMP/$name-half-lag" & sampler=$!
  webhook "http://127.0.0.1:$port/webhooks/vx" "$TMP/$name-half.json" --rate "$half"
  kill "$sampler" 2>/dev/null || true; wait "$sampler" 2>/dev/null || true
  if [ "$name" = c ]; then
    say "(s) vx-bridge: open loop at $SWEEP of its peak"
    sweep c "http://127.0.0.1:$port/webhooks/vx"
  fi
  awk '/VmHWM/ {print $2}' "/proc/$BRIDGE_PID/status" >"$TMP/$name-rss-kib"
  stop "$BRIDGE_PID"
  stop_nats "$name"
}
say "(c) vx-bridge full ingress, $CONNS connections"
ingress c "$BIN"
if [ -n "$BEFORE_BIN" ]; then
  say "(c) before: vx-bridge at $BEFORE_REV"
  ingress cbefore "$BEFORE_BIN"
fi
peak() {  # NAME "EXTRA vx-load ARGS" [VAR=value ...]: one closed-loop peak run of a bridge with
  # those settings against its own nats-server; its CPU per process and its peak RSS are noted
  local name=$1 load_args=$2 port t_nats t_srv; shift 2
  start_nats "$name"
  free_port port
  start_bridge "$name" "$BIN" "$port" "$@"
  t_nats=$(ticks "$BENCH_NATS_PID"); t_srv=$(ticks "$BRIDGE_PID")
  # shellcheck disable=SC2086  # the extra arguments are words
  webhook "http://127.0.0.1:$port/webhooks/vx" "$TMP/$name.json" $load_args
  cpu_note "$name-nats-cpu" "$BENCH_NATS_PID" "$t_nats"; cpu_note "$name-srv-cpu" "$BRIDGE_PID" "$t_srv"
  awk '/VmHWM/ {print $2}' "/proc/$BRIDGE_PID/status" >"$TMP/$name-rss-kib"
  stop "$BRIDGE_PID"
  stop_nats "$name"
}
say "(c) vx-bridge with the session view off (sessions.enabled = false), peak only, for its CPU and RSS"
peak cnoview "" VXB_SESSIONS__ENABLED=false
say "(c) vx-bridge with the session view off, 2 webhooks per session (a journey's PENDING and result), peak only"
peak cnoview2 "--per-session 2" VXB_SESSIONS__ENABLED=false
say "(c) vx-bridge with events.pii = clear (personal data in clear, no data keys), peak only: the baseline of mode encrypted (the default)"
peak cclear "" VXB_EVENTS__PII=clear
# A journey sends more than one webhook (PENDING, then PASS or FAIL): with two per session, one
# data key is made per two webhooks; the same load in both modes.
for mode in encrypted clear; do
  say "(c) vx-bridge, events.pii = $mode, 2 webhooks per session, peak only"
  peak "c2$mode" "--per-session 2" VXB_EVENTS__PII=$mode
done
say "(c) vx-bridge with log.level = warn (no log line per webhook), peak only"
peak cwarn "" VXB_LOG__LEVEL=warn

say "start to ready (5 starts, each from exec to /readyz 200)"
start_nats s
free_port port
# shellcheck disable=SC2046
env $(bridge_env "$port") $LOAD startup --ready-url "http://127.0.0.1:$port/readyz" --runs 5 --json -- "$BIN" serve >"$TMP/startup.json"
cat "$TMP/startup.json" >&2
stop_nats s
BIN_BYTES=$(stat -c %s "$BIN")

# ---------------------------------------------------------------- (d) status lookups
STATUS=0
start_nats d
if env VXB_WEBHOOK__AUTH__MODE=none VXB_WEBHOOK__ENABLED=false VXB_STATUS__ENABLED=true \
     VXB_UPSTREAM__BASE_URL=http://127.0.0.1:1 VXB_UPSTREAM__TOKEN=bench \
     "$BIN" check-config >/dev/null 2>&1; then
  STATUS=1
fi
if [ "$STATUS" = 1 ]; then
  say "(d) raw NATS request-reply (echo responder), 64 requesters"
  $LOAD echo --nats "$NATS_URL" --subject bench.echo --duration 300s >/dev/null &
  ECHO=$!; track "$ECHO"
  sleep 0.5
  $LOAD status --nats "$NATS_URL" --subject bench.echo --duration "$DURATION" --warmup "$WARMUP" --json >"$TMP/d-raw.json"
  cat "$TMP/d-raw.json" >&2
  stop "$ECHO"

  free_port mport
  $LOAD mock-vx --listen "127.0.0.1:$mport" --latency 20ms --token bench --duration 300s >/dev/null &
  MOCK=$!; track "$MOCK"
  listening "$mport"
  free_port port
  start_bridge d "$BIN" "$port" VXB_WEBHOOK__ENABLED=false VXB_STATUS__ENABLED=true \
    VXB_UPSTREAM__BASE_URL="http://127.0.0.1:$mport" VXB_UPSTREAM__TOKEN=bench
  say "(d) status from cache: 100 request_ids, 64 requesters (first lookups in the warm-up)"
  $LOAD status --nats "$NATS_URL" --ids 100 --duration "$DURATION" --warmup "$WARMUP" --json >"$TMP/d-cache.json"
  cat "$TMP/d-cache.json" >&2
  say "(d) status through the 20 ms mock VX API: every lookup a new request_id"
  $LOAD status --nats "$NATS_URL" --ids 0 --duration "$DURATION" --warmup "$WARMUP" --json >"$TMP/d-upstream.json"
  cat "$TMP/d-upstream.json" >&2
  say "(d) status from the session view: 1000 sessions terminal in the view, 64 requesters"
  free_port vport
  # shellcheck disable=SC2046
  env $(bridge_env "$vport") VXB_STATUS__ENABLED=true VXB_STATUS__QUEUE_GROUP=bench-view \
    VXB_NATS__SUBJECT_PREFIX=viewbench VXB_NATS__STREAM__NAME=VIEWBENCH VXB_SESSIONS__BUCKET=VIEWBENCH \
    VXB_UPSTREAM__BASE_URL="http://127.0.0.1:$mport" VXB_UPSTREAM__TOKEN=bench \
    "$BIN" serve 2>"$TMP/dview-bridge.log" &
  VIEW_PID=$!; track "$VIEW_PID"
  wait_ready "$vport" 30 || die "vx-bridge dview not ready on $vport"
  $LOAD webhook --url "http://127.0.0.1:$vport/webhooks/vx" --connections 16 --requests 1000 \
    --duration 60s --id-prefix "view-$RANDOM" >/dev/null
  catch_up "$vport" >"$TMP/dview-catchup-s"
  calls0=$(curl -fs "http://127.0.0.1:$mport/mock/stats" | jq .result_calls)
  $LOAD status --nats "$NATS_URL" --prefix viewbench --ids-from-stream VIEWBENCH --ids 1000 \
    --duration "$DURATION" --warmup "$WARMUP" --json >"$TMP/d-view.json"
  calls1=$(curl -fs "http://127.0.0.1:$mport/mock/stats" | jq .result_calls)
  echo $(( calls1 - calls0 )) >"$TMP/d-view-calls"
  cat "$TMP/d-view.json" >&2; echo "upstream calls: $(cat "$TMP/d-view-calls")" >&2
  stop "$VIEW_PID"
  say "(d) burst: 100 identical lookups of a new request_id"
  calls0=$(curl -fs "http://127.0.0.1:$mport/mock/stats" | jq .result_calls)
  $LOAD status --nats "$NATS_URL" --burst 100 --json >"$TMP/d-burst.json"
  calls1=$(curl -fs "http://127.0.0.1:$mport/mock/stats" | jq .result_calls)
  echo $(( calls1 - calls0 )) >"$TMP/d-burst-calls"
  cat "$TMP/d-burst.json" >&2; echo "upstream calls: $(cat "$TMP/d-burst-calls")" >&2
  stop "$BRIDGE_PID"
  stop "$MOCK"
else
  say "(d) skipped: this build has no status service (status.enabled is refused)"
fi
stop_nats d

fi  # everything but (p)

# ---------------------------------------------------------------- (p) callgrind
drained() {  # PORT: until the projector's backlog is 0 (or the view is off), at most 120 s
  local b
  for _ in $(seq 1 600); do
    b=$(pending "$1")
    [ -z "$b" ] || [ "$b" = 0 ] && return 0
    sleep 0.2
  done
  say "WARNING: the projector's backlog did not drain within 120 s under callgrind"
}
profile() {  # NAME BIN|naive [VAR=value ...]: instructions per webhook in the whole process
  local name=$1 bin=$2 port dump; shift 2
  start_nats "$name"
  free_port port
  if [ "$bin" = naive ]; then
    # (n) the same way: its own process under callgrind, the same load.
    valgrind --tool=callgrind --callgrind-out-file="$TMP/$name.cg.%p" \
      "$LOAD" naive --listen "127.0.0.1:$port" --nats "$NATS_URL" --secret "$SECRET" --duration 900s \
      >/dev/null 2>"$TMP/$name-naive.log" &
    BRIDGE_PID=$!; track "$BRIDGE_PID"
    wait_port "$port" 120 || die "naive handler not listening on $port under callgrind"
  else
    # shellcheck disable=SC2046
    env $(bridge_env "$port") "$@" valgrind --tool=callgrind --callgrind-out-file="$TMP/$name.cg.%p" \
      "$bin" serve 2>"$TMP/$name-bridge.log" &
    BRIDGE_PID=$!; track "$BRIDGE_PID"
    wait_ready "$port" 120 || die "vx-bridge $name not ready on $port under callgrind"
  fi
  $LOAD webhook --url "http://127.0.0.1:$port/webhooks/vx" --connections 8 --requests 300 --duration 120s --id-prefix warm >/dev/null
  # The session projector (when on) may lag under callgrind: the counters start and stop with its
  # backlog at 0, so that they hold the projection of exactly these webhooks.
  [ "$bin" = naive ] || drained "$port"
  callgrind_control -z "$BRIDGE_PID" >/dev/null
  $LOAD webhook --url "http://127.0.0.1:$port/webhooks/vx" --connections 8 --requests "$PROFILE_REQUESTS" --duration 300s --id-prefix prof --json >"$TMP/$name-load.json"
  [ "$bin" = naive ] || drained "$port"
  callgrind_control -d "$BRIDGE_PID" >/dev/null
  dump=$(ls -t "$TMP/$name.cg.$BRIDGE_PID".* 2>/dev/null | grep -v '\.cg\.[0-9]*$' | head -1 || true)
  [ -n "$dump" ] || dump=$(ls -t "$TMP/$name.cg."* | head -1)
  callgrind_annotate --inclusive=yes "$dump" >"$TMP/$name-annotate.txt" 2>/dev/null || true
  # Kept for a closer look: callgrind_annotate target/bench/$name.callgrind (or kcachegrind).
  mkdir -p "$ROOT/target/bench" && cp "$dump" "$ROOT/target/bench/$name.callgrind"
  local total; total=$(awk '/PROGRAM TOTALS/ {gsub(",","",$1); print $1; exit}' "$TMP/$name-annotate.txt")
  local ok; ok=$(jq -r '.codes["202"] // 0' "$TMP/$name-load.json")
  [ "$ok" = "$PROFILE_REQUESTS" ] || say "WARNING: ($name) under callgrind: $ok of $PROFILE_REQUESTS webhooks answered 202"
  echo $(( total / PROFILE_REQUESTS )) >"$TMP/$name-ir"
  say "($name) $total instructions for $PROFILE_REQUESTS webhooks ($ok answered 202): $(cat "$TMP/$name-ir") per webhook"
  stop "$BRIDGE_PID"
  stop_nats "$name"
}
if [ "$PROFILE" = 1 ]; then
  say "(p) callgrind over $PROFILE_REQUESTS webhooks (8 connections)"
  profile p "$BIN"
  profile pnoview "$BIN" VXB_SESSIONS__ENABLED=false
  profile pclear "$BIN" VXB_EVENTS__PII=clear
  profile pn naive
  [ -n "$BEFORE_BIN" ] && profile pbefore "$BEFORE_BIN"
fi
if [ "$PROFILE_ONLY" = 1 ]; then
  for f in "$TMP"/*-ir; do echo "$(basename "$f" -ir): $(cat "$f") instructions per webhook"; done
  exit 0
fi

LOAD_END=$(cut -d' ' -f1-3 /proc/loadavg)

# Keep the raw results, so the report can be written again from them (--report-from).
BEFORE_BIN_SET=$([ -n "$BEFORE_BIN" ] && echo 1 || echo "")
jq -n --arg QUICK "$QUICK" --arg BEFORE "$BEFORE" --arg BEFORE_REV "$BEFORE_REV" \
  --arg DURATION "$DURATION" --arg WARMUP "$WARMUP" --arg CONNS "$CONNS" --arg IN_FLIGHT "$IN_FLIGHT" \
  --arg PROFILE "$PROFILE" --arg PROFILE_REQUESTS "$PROFILE_REQUESTS" --arg STATUS "$STATUS" \
  --arg LOAD_START "$LOAD_START" --arg LOAD_END "$LOAD_END" --arg BIN_BYTES "$BIN_BYTES" \
  --arg BEFORE_BIN_SET "$BEFORE_BIN_SET" --arg MEASURED_AT "$MEASURED_AT" --arg MEASURED_REV "$MEASURED_REV" \
  --arg SWEEP "$SWEEP" \
  '$ARGS.named' >"$TMP/run.json"
rm -rf "$KEEP" && mkdir -p "$KEEP" && cp "$TMP"/*.json "$TMP"/*-cpu "$TMP"/*-kib "$TMP"/*-ir "$TMP"/*-annotate.txt "$TMP"/d-burst-calls "$TMP"/d-view-calls "$TMP"/*-lag "$TMP"/*-catchup-s "$KEEP"/ 2>/dev/null || true
REPORT_FROM=$KEEP
fi

# ---------------------------------------------------------------- report
say "writing $OUT"
python3 "$ROOT/scripts/bench/bench-report.py" "$REPORT_FROM" "$OUT" --analysis "$ROOT/docs/bench-analysis.md"
# The picture: next to the report, from the same results (matplotlib in its own pinned venv).
python3 "$ROOT/scripts/bench/bench-plot.py" --venv "$REPORT_FROM" "$(dirname "$OUT")/perf-latency.png"
say "done: $OUT"
