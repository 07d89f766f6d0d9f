#!/usr/bin/env bash
# Benchmarks vx-bridge against its baselines in one run and writes docs/PERFORMANCE.md.
#
#   scripts/bench.sh [--quick] [--before REV] [--no-profile] [--out FILE]
#
#   --quick       3 s per measurement instead of 10 s (a smoke run; the document says so)
#   --before REV  also build git revision REV (into target/bench-before) and measure its
#                 ingress and its callgrind instructions per request: before/after in one run
#   --no-profile  skip the callgrind profile
#   --out FILE    write the report there instead of docs/PERFORMANCE.md
#   --report-from DIR  measure nothing: write the report again from a kept run's results
#                 (every run keeps them in target/bench/last-run), e.g. after editing
#                 scripts/bench-analysis.md
#
# Environment: BENCH_DURATION (10s), BENCH_WARMUP (2s), BENCH_CONNECTIONS (64),
# BENCH_IN_FLIGHT (256), BENCH_PROFILE_REQUESTS (2000).
#
# Measures, each against its own fresh nats-server on a free port with a temp store:
#   (a) raw JetStream publish of the bridge's own event messages, 256 PubAcks in flight, unique
#       Nats-Msg-Id (vx-load jspub)                                        -- baseline
#   (b) plain axum answering 202 to the same signed POSTs (vx-load serve202) -- baseline
#   (c) vx-bridge's full ingress (HMAC, parse, schema, event, awaited PubAck), at its peak and
#       at half of it; peak RSS; time from start to ready; binary size
#   (d) status lookups from cache and through a 20 ms mock VX API, against a raw NATS echo
#       responder; a burst of 100 identical lookups and the upstream calls it caused
#   (p) callgrind: instructions per webhook in the whole vx-bridge process
# Only 127.0.0.1 is ever a target; every loop is bounded; everything started is stopped on exit.
set -euo pipefail

cd "$(dirname "$0")/.."
ROOT=$PWD
QUICK=0
BEFORE=""
BEFORE_REV=""
REPORT_FROM=""
PROFILE=1
OUT="$ROOT/docs/PERFORMANCE.md"
while [ $# -gt 0 ]; do
  case "$1" in
    --quick) QUICK=1 ;;
    --before) BEFORE="$2"; shift ;;
    --no-profile) PROFILE=0 ;;
    --out) OUT="$2"; shift ;;
    --report-from) REPORT_FROM="$2"; shift ;;
    -h|--help) sed -n '2,25p' "$0"; exit 0 ;;
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
SECRET='whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw'

say() { printf '\n== %s\n' "$*" >&2; }
need() {  # need TOOL PACKAGE: install PACKAGE with apt-get when TOOL is missing, saying so
  command -v "$1" >/dev/null && return 0
  echo "bench.sh: $1 is missing; installing Debian package $2 with apt-get" >&2
  apt-get install -y "$2" >/dev/null || { apt-get update >/dev/null && apt-get install -y "$2" >/dev/null; }
}
# NATS_SERVER picks the server binary (scripts/nats-servers.sh prints the matrix's paths).
NATS_SERVER="${NATS_SERVER:-nats-server}"
command -v "$NATS_SERVER" >/dev/null || { echo "bench.sh: $NATS_SERVER not found (apt-get install nats-server, or NATS_SERVER=<path>)" >&2; exit 1; }
need jq jq
need curl curl
[ "$PROFILE" = 1 ] && { need valgrind valgrind; need callgrind_annotate valgrind; }

j() { jq -r "$1" "$2"; }

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
  rm -rf "$src" && mkdir -p "$src"
  git archive "$BEFORE" | tar -x -C "$src"
  # Not --locked: an older revision's lock file may need a touch; it is a temp copy.
  (cd "$src" && CARGO_TARGET_DIR=$ROOT/target/bench-before/target cargo build --release --bin vx-bridge >&2)
  BEFORE_BIN=$ROOT/target/bench-before/target/release/vx-bridge
  BEFORE_REV=$(git rev-parse --short "$BEFORE")
fi

TMP=$(mktemp -d /tmp/vx-bench.XXXXXX)
PIDS=()
cleanup() {
  for p in "${PIDS[@]:-}"; do [ -n "$p" ] && kill "$p" 2>/dev/null || true; done
  for p in "${PIDS[@]:-}"; do [ -n "$p" ] && wait "$p" 2>/dev/null || true; done
  rm -rf "$TMP"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

wait_port() {  # up to 10 s
  for _ in $(seq 1 500); do (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null && return 0; sleep 0.02; done
  echo "nothing listens on 127.0.0.1:$1" >&2; return 1
}
wait_ready() {  # URL [seconds]
  local n=$(( ${2:-10} * 50 ))
  for _ in $(seq 1 "$n"); do curl -fs -o /dev/null "$1" && return 0; sleep 0.02; done
  echo "$1 not ready" >&2; return 1
}
stop() {  # PID: TERM, then wait (bounded), then KILL
  kill "$1" 2>/dev/null || return 0
  for _ in $(seq 1 250); do kill -0 "$1" 2>/dev/null || { wait "$1" 2>/dev/null || true; return 0; }; sleep 0.02; done
  kill -9 "$1" 2>/dev/null || true; wait "$1" 2>/dev/null || true
}
NATS_PID=""; NATS_URL=""
start_nats() {  # NAME
  local port; port=$($LOAD free-port)
  "$NATS_SERVER" -a 127.0.0.1 -p "$port" -js -sd "$TMP/$1-store" >"$TMP/$1-nats.log" 2>&1 &
  NATS_PID=$!; PIDS+=("$NATS_PID")
  wait_port "$port"
  NATS_URL="nats://127.0.0.1:$port"
}
stop_nats() { stop "$NATS_PID"; rm -rf "$TMP/$1-store"; }
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
  BRIDGE_PID=$!; PIDS+=("$BRIDGE_PID")
  wait_ready "http://127.0.0.1:$port/readyz" 30
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

# ---------------------------------------------------------------- (a) raw JetStream publish
say "(a) raw JetStream publish, $IN_FLIGHT PubAcks in flight, unique Nats-Msg-Id, file store"
start_nats a
t_nats=$(ticks "$NATS_PID")
$LOAD jspub --nats "$NATS_URL" --in-flight "$IN_FLIGHT" --duration "$DURATION" --warmup "$WARMUP" --json >"$TMP/a.json"
cat "$TMP/a.json" >&2
cpu_note a-nats-cpu "$NATS_PID" "$t_nats"
stop_nats a

# ---------------------------------------------------------------- (b) plain axum 202
say "(b) plain axum 202, $CONNS connections"
port=$($LOAD free-port)
$LOAD serve202 --listen "127.0.0.1:$port" --duration 300s >/dev/null &
S202=$!; PIDS+=("$S202")
wait_port "$port"
t_srv=$(ticks "$S202")
webhook "http://127.0.0.1:$port/webhooks/vx" "$TMP/b.json"
cpu_note b-srv-cpu "$S202" "$t_srv"
stop "$S202"

# ---------------------------------------------------------------- (c) vx-bridge ingress
ingress() {  # NAME BIN: peak, half of peak, RSS
  local name=$1 bin=$2 port
  start_nats "$name"
  port=$($LOAD free-port)
  start_bridge "$name" "$bin" "$port"
  local t_nats t_srv; t_nats=$(ticks "$NATS_PID"); t_srv=$(ticks "$BRIDGE_PID")
  webhook "http://127.0.0.1:$port/webhooks/vx" "$TMP/$name.json"
  cpu_note "$name-nats-cpu" "$NATS_PID" "$t_nats"; cpu_note "$name-srv-cpu" "$BRIDGE_PID" "$t_srv"
  local half; half=$(jq -r '.rps / 2 | floor' "$TMP/$name.json")
  say "($name) at half of peak: $half req/s"
  webhook "http://127.0.0.1:$port/webhooks/vx" "$TMP/$name-half.json" --rate "$half"
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
say "(c) vx-bridge with log.level = warn (no log line per webhook), peak only"
start_nats cwarn
port=$($LOAD free-port)
start_bridge cwarn "$BIN" "$port" VXB_LOG__LEVEL=warn
webhook "http://127.0.0.1:$port/webhooks/vx" "$TMP/cwarn.json"
stop "$BRIDGE_PID"
stop_nats cwarn

say "start to ready (5 starts, each from exec to /readyz 200)"
start_nats s
port=$($LOAD free-port)
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
  ECHO=$!; PIDS+=("$ECHO")
  sleep 0.5
  $LOAD status --nats "$NATS_URL" --subject bench.echo --duration "$DURATION" --warmup "$WARMUP" --json >"$TMP/d-raw.json"
  cat "$TMP/d-raw.json" >&2
  stop "$ECHO"

  mport=$($LOAD free-port)
  $LOAD mock-vx --listen "127.0.0.1:$mport" --latency 20ms --token bench --duration 300s >/dev/null &
  MOCK=$!; PIDS+=("$MOCK")
  wait_port "$mport"
  port=$($LOAD free-port)
  start_bridge d "$BIN" "$port" VXB_WEBHOOK__ENABLED=false VXB_STATUS__ENABLED=true \
    VXB_UPSTREAM__BASE_URL="http://127.0.0.1:$mport" VXB_UPSTREAM__TOKEN=bench
  say "(d) status from cache: 100 request_ids, 64 requesters (first lookups in the warm-up)"
  $LOAD status --nats "$NATS_URL" --ids 100 --duration "$DURATION" --warmup "$WARMUP" --json >"$TMP/d-cache.json"
  cat "$TMP/d-cache.json" >&2
  say "(d) status through the 20 ms mock VX API: every lookup a new request_id"
  $LOAD status --nats "$NATS_URL" --ids 0 --duration "$DURATION" --warmup "$WARMUP" --json >"$TMP/d-upstream.json"
  cat "$TMP/d-upstream.json" >&2
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

# ---------------------------------------------------------------- (p) callgrind
profile() {  # NAME BIN: instructions per webhook in the whole process
  local name=$1 bin=$2 port dump
  start_nats "$name"
  port=$($LOAD free-port)
  # shellcheck disable=SC2046
  env $(bridge_env "$port") valgrind --tool=callgrind --callgrind-out-file="$TMP/$name.cg.%p" \
    "$bin" serve 2>"$TMP/$name-bridge.log" &
  BRIDGE_PID=$!; PIDS+=("$BRIDGE_PID")
  wait_ready "http://127.0.0.1:$port/readyz" 120
  $LOAD webhook --url "http://127.0.0.1:$port/webhooks/vx" --connections 8 --requests 300 --duration 120s --id-prefix warm >/dev/null
  callgrind_control -z "$BRIDGE_PID" >/dev/null
  $LOAD webhook --url "http://127.0.0.1:$port/webhooks/vx" --connections 8 --requests "$PROFILE_REQUESTS" --duration 300s --id-prefix prof --json >"$TMP/$name-load.json"
  callgrind_control -d "$BRIDGE_PID" >/dev/null
  dump=$(ls -t "$TMP/$name.cg.$BRIDGE_PID".* 2>/dev/null | grep -v '\.cg\.[0-9]*$' | head -1 || true)
  [ -n "$dump" ] || dump=$(ls -t "$TMP/$name.cg."* | head -1)
  callgrind_annotate --inclusive=yes "$dump" >"$TMP/$name-annotate.txt" 2>/dev/null || true
  # Kept for a closer look: callgrind_annotate target/bench/$name.callgrind (or kcachegrind).
  mkdir -p "$ROOT/target/bench" && cp "$dump" "$ROOT/target/bench/$name.callgrind"
  local total; total=$(awk '/PROGRAM TOTALS/ {gsub(",","",$1); print $1; exit}' "$TMP/$name-annotate.txt")
  local ok; ok=$(jq -r '.codes["202"] // 0' "$TMP/$name-load.json")
  echo $(( total / PROFILE_REQUESTS )) >"$TMP/$name-ir"
  say "($name) $total instructions for $PROFILE_REQUESTS webhooks ($ok answered 202): $(cat "$TMP/$name-ir") per webhook"
  stop "$BRIDGE_PID"
  stop_nats "$name"
}
if [ "$PROFILE" = 1 ]; then
  say "(p) callgrind over $PROFILE_REQUESTS webhooks (8 connections)"
  profile p "$BIN"
  [ -n "$BEFORE_BIN" ] && profile pbefore "$BEFORE_BIN"
fi

LOAD_END=$(cut -d' ' -f1-3 /proc/loadavg)

# Keep the raw results, so the report can be written again from them (--report-from).
BEFORE_BIN_SET=$([ -n "$BEFORE_BIN" ] && echo 1 || echo "")
declare -p QUICK BEFORE BEFORE_REV DURATION WARMUP CONNS IN_FLIGHT PROFILE PROFILE_REQUESTS STATUS \
  LOAD_START LOAD_END BIN_BYTES BEFORE_BIN_SET MEASURED_AT MEASURED_REV 2>/dev/null >"$TMP/vars.sh" || true
KEEP=$ROOT/target/bench/last-run
rm -rf "$KEEP" && mkdir -p "$KEEP" && cp "$TMP"/*.json "$TMP"/*-cpu "$TMP"/*-kib "$TMP"/*-ir "$TMP"/*-annotate.txt "$TMP"/d-burst-calls "$TMP/vars.sh" "$KEEP"/ 2>/dev/null || true
else  # ---------------------------------------------------------------- --report-from DIR
  TMP=$REPORT_FROM
  # shellcheck disable=SC1091
  . "$TMP/vars.sh"
  BEFORE_BIN=${BEFORE_BIN_SET:+before}
fi

# ---------------------------------------------------------------- report
say "writing $OUT"
pct() { awk -v a="$1" -v b="$2" 'BEGIN { if (b > 0) printf "%.0f %%", 100 * a / b; else print "n/a" }'; }
row() {  # LABEL FILE
  jq -r --arg l "$1" '"| \($l) | \(.rps | floor) | \(.p50_ms) | \(.p90_ms) | \(.p99_ms) | \(.codes | to_entries | map("\(.key): \(.value)") | join(", ")) |"' "$2"
}
step_ir() {  # ANNOTATE FUNCTION: inclusive instructions per webhook of the first exact match
  awk -v fn="$2" -v n="$PROFILE_REQUESTS" '
    { line = $0; sub(/^ *[0-9,]+ *(\([ 0-9.%]*\))? */, "", line); sub(/ \[.*$/, "", line); sub(/^[^:]*:/, "", line) }
    line == fn { ir = $1; gsub(",", "", ir); printf "%d", ir / n; found = 1; exit }
    END { if (!found) printf "n/a" }' "$1"
}
cpu_row() {  # LABEL LOAD_JSON NATS_CPU_FILE SERVER_CPU_FILE
  local n l s
  n=$(jq -r '.all_requests' "$2"); l=$(jq -r '.cpu_s' "$2")
  local nats=0 srv=0
  [ -n "$3" ] && nats=$(cat "$3"); [ -n "$4" ] && srv=$(cat "$4")
  awk -v label="$1" -v n="$n" -v l="$l" -v a="$nats" -v b="$srv" -v has_a="$3" -v has_b="$4" -v cores="$(nproc)" 'BEGIN {
    f = 1e6 / n; sum = (a + b + l) * f
    printf "| %s | %s | %s | %.1f | %.1f | %.0f req/s |\n", label,
      has_a == "" ? "-" : sprintf("%.1f", a * f), has_b == "" ? "-" : sprintf("%.1f", b * f), l * f, sum, cores * 1e6 / sum }'
}
yes_no() { if [ "$1" = 1 ]; then echo "**met**"; else echo "**missed**"; fi; }
A=$(j .rps "$TMP/a.json"); B=$(j .rps "$TMP/b.json"); C=$(j .rps "$TMP/c.json")
CH_P99=$(j .p99_ms "$TMP/c-half.json")
RSS_KIB=$(cat "$TMP/c-rss-kib")
READY_MS=$(j .median_ms "$TMP/startup.json")
met_ca=$(awk -v c="$C" -v a="$A" 'BEGIN { print (c >= 0.5 * a) ? 1 : 0 }')
met_p99=$(awk -v p="$CH_P99" 'BEGIN { print (p <= 10) ? 1 : 0 }')
met_rss=$(awk -v r="$RSS_KIB" 'BEGIN { print (r <= 40 * 1024) ? 1 : 0 }')
met_ready=$(awk -v r="$READY_MS" 'BEGIN { print (r <= 200) ? 1 : 0 }')
{
  echo "# Performance"
  echo
  echo "Written by \`scripts/bench.sh$([ "$QUICK" = 1 ] && echo ' --quick')$([ -n "$BEFORE" ] && echo " --before $BEFORE")\` on $MEASURED_AT, at commit \`$MEASURED_REV\`. Do not edit by hand: run the script again."
  [ "$QUICK" = 1 ] && { echo; echo "**A quick run (3 s per measurement): indicative only.**"; }
  echo
  echo "Load generator, NATS and vx-bridge share the machine's cores, so absolute numbers drift from run to run;"
  echo "every target is a ratio to a baseline measured in the same run. Each measurement runs $DURATION"
  echo "(the first $WARMUP not counted) against a fresh \`nats-server\` with a file store in a temp dir."
  echo
  echo "## Machine"
  echo
  echo "- CPU: $(lscpu | awk -F: '/Model name/ {gsub(/^ +/,"",$2); print $2; exit}'), $(nproc) cores; memory $(free -g | awk '/Mem:/ {print $2}') GiB; Linux $(uname -r)"
  echo "- load average (1, 5, 15 min): $LOAD_START before the run, $LOAD_END after (the machine is shared with other builds)"
  echo "- $("$NATS_SERVER" --version), $(rustc --version)"
  echo
  echo "## Results"
  echo
  echo "| measurement | req/s | p50 ms | p90 ms | p99 ms | answers |"
  echo "|---|---:|---:|---:|---:|---|"
  row "(a) raw JetStream publish, $IN_FLIGHT in flight, Nats-Msg-Id (baseline)" "$TMP/a.json"
  row "(b) plain axum 202, $CONNS connections (baseline)" "$TMP/b.json"
  row "(c) vx-bridge ingress, $CONNS connections, peak" "$TMP/c.json"
  row "(c) vx-bridge ingress at half of peak (open loop)" "$TMP/c-half.json"
  row "(c) vx-bridge ingress, log.level = warn, peak" "$TMP/cwarn.json"
  if [ -n "$BEFORE_BIN" ]; then
    row "(c) before ($BEFORE_REV), peak" "$TMP/cbefore.json"
    row "(c) before ($BEFORE_REV), half of its peak" "$TMP/cbefore-half.json"
  fi
  if [ "$STATUS" = 1 ]; then
    row "(d) raw NATS request-reply, 64 requesters (baseline)" "$TMP/d-raw.json"
    row "(d) status from cache, 64 requesters" "$TMP/d-cache.json"
    row "(d) status, each lookup upstream (mock VX API, 20 ms)" "$TMP/d-upstream.json"
  fi
  echo
  echo "## Where the CPU goes (peak runs)"
  echo
  echo "CPU time (user + system, from \`/proc/PID/stat\`) each process used during the run, divided by every"
  echo "request it served (warm-up included). The three share $(nproc) cores, so their sum bounds the rate:"
  echo "$(nproc) cores ÷ (µs per request) is the most the machine could do if nothing else ran."
  echo
  echo "| run | nats-server µs/req | server µs/req | load generator µs/req | sum | $(nproc) cores ÷ sum |"
  echo "|---|---:|---:|---:|---:|---:|"
  cpu_row "(a) raw JetStream publish" "$TMP/a.json" "$TMP/a-nats-cpu" ""
  cpu_row "(b) plain axum 202" "$TMP/b.json" "" "$TMP/b-srv-cpu"
  cpu_row "(c) vx-bridge ingress" "$TMP/c.json" "$TMP/c-nats-cpu" "$TMP/c-srv-cpu"
  [ -n "$BEFORE_BIN" ] && cpu_row "(c) before ($BEFORE_REV)" "$TMP/cbefore.json" "$TMP/cbefore-nats-cpu" "$TMP/cbefore-srv-cpu"
  echo
  echo "## Targets"
  echo
  echo "| target | measured | |"
  echo "|---|---|---|"
  echo "| full ingress ≥ 50 % of raw JetStream publish (c/a) | $(pct "$C" "$A") | $(yes_no "$met_ca") |"
  echo "| (c/b: ingress against plain axum, for reference) | $(pct "$C" "$B") | |"
  echo "| p99 ≤ 10 ms at half of peak rate | $CH_P99 ms | $(yes_no "$met_p99") |"
  if [ "$STATUS" = 1 ]; then
    D=$(j .rps "$TMP/d-cache.json"); DR=$(j .rps "$TMP/d-raw.json"); BURST=$(cat "$TMP/d-burst-calls")
    met_d=$(awk -v d="$D" -v r="$DR" 'BEGIN { print (d >= 0.5 * r) ? 1 : 0 }')
    echo "| status from cache ≥ 50 % of raw request-reply (d/raw) | $(pct "$D" "$DR") | $(yes_no "$met_d") |"
    echo "| burst of 100 identical lookups → 1 upstream call | $BURST call(s), answers $(jq -c .codes "$TMP/d-burst.json") | $(yes_no "$([ "$BURST" = 1 ] && echo 1 || echo 0)") |"
  else
    echo "| status targets | not measured: no status service in this build | |"
  fi
  echo "| peak RSS ≤ 40 MiB under load (VmHWM after the (c) runs) | $(awk -v r="$RSS_KIB" 'BEGIN { printf "%.1f MiB", r / 1024 }') | $(yes_no "$met_rss") |"
  echo "| ready ≤ 200 ms after start (median of 5, exec to /readyz 200) | $READY_MS ms (min $(j .min_ms "$TMP/startup.json"), max $(j .max_ms "$TMP/startup.json")) | $(yes_no "$met_ready") |"
  echo "| binary size (release, debug info stripped) | $(awk -v b="$BIN_BYTES" 'BEGIN { printf "%.1f MiB", b / 1048576 }') | |"
  if [ -n "$BEFORE_BIN" ]; then
    echo "| before ($BEFORE_REV): peak RSS | $(awk -v r="$(cat "$TMP/cbefore-rss-kib")" 'BEGIN { printf "%.1f MiB", r / 1024 }') | |"
  fi
  if [ "$PROFILE" = 1 ]; then
    echo
    echo "## Instructions per webhook (callgrind)"
    echo
    echo "The whole vx-bridge process under \`valgrind --tool=callgrind\`, counters zeroed after 300 warm-up"
    echo "webhooks, then $PROFILE_REQUESTS signed seed webhooks over 8 connections: every instruction the process"
    echo "ran (hyper, axum, auth, parse, schema, event, async-nats, tokio, logging, metrics), divided by the count."
    echo "Instruction counts do not drift with the machine's load."
    echo
    echo "| build | instructions per webhook |"
    echo "|---|---:|"
    echo "| this commit | $(cat "$TMP/p-ir") |"
    [ -n "$BEFORE_BIN" ] && echo "| before ($BEFORE_REV) | $(cat "$TMP/pbefore-ir") |"
    echo
    echo "By step (inclusive instructions per webhook; functions as named in the release binary's symbols):"
    echo
    echo "| step | function | this commit |$([ -n "$BEFORE_BIN" ] && echo " before ($BEFORE_REV) |")"
    echo "|---|---|---:|$([ -n "$BEFORE_BIN" ] && echo "---:|")"
    while IFS='|' read -r step fn; do
      local_now=$(step_ir "$TMP/p-annotate.txt" "$fn")
      if [ -n "$BEFORE_BIN" ]; then
        echo "| $step | \`$fn\` | $local_now | $(step_ir "$TMP/pbefore-annotate.txt" "$fn") |"
      else
        echo "| $step | \`$fn\` | $local_now |"
      fi
    done <<'STEPS'
whole handler|<F as axum::handler::Handler<(M,T1,T2),S>>::call::{{closure}}
signature (HMAC-SHA256 over the body)|vx_bridge::auth::Verifier::verify
JSON parse to Value|serde_json::de::from_slice
dropping the Value|core::ptr::drop_in_place<serde_json::value::Value>
schema validation|vx_bridge::schema::check
event build (envelope, ids, headers)|vx_bridge::event::build_event
trace context|vx_bridge::telemetry::trace::TraceContext::continue_or_start
publish and PubAck (incl. NATS headers)|vx_bridge::ingress::publish::{{closure}}
log line (tracing JSON formatter)|<tracing_subscriber::layer::layered::Layered<L,S> as tracing_core::subscriber::Subscriber>::event
glibc malloc (all callers)|malloc
glibc free (all callers)|free
mimalloc alloc (all callers)|mi_malloc_aligned
mimalloc free (all callers)|mi_free
STEPS
    echo
    echo "Largest inclusive costs, this commit (\`callgrind_annotate --inclusive=yes\`, per webhook):"
    echo
    echo '```'
    awk -v n="$PROFILE_REQUESTS" '
      /^-+$/ { dashes++; next }
      dashes >= 4 && $1 ~ /^[0-9,]+$/ && NF >= 2 {
        ir = $1; gsub(",", "", ir); $1 = ""; sub(/^ +/, ""); sub(/\(.*%\) */, "");
        name = $0; sub(/ \[.*$/, "", name);
        if (length(name) > 110) name = substr(name, 1, 107) "...";
        printf "%10d  %s\n", ir / n, name; if (++shown == 30) exit
      }' "$TMP/p-annotate.txt"
    echo '```'
  fi
  if [ -f "$ROOT/scripts/bench-analysis.md" ]; then
    echo
    cat "$ROOT/scripts/bench-analysis.md"
  fi
  echo
  echo "Reproduce: \`scripts/bench.sh$([ -n "$BEFORE" ] && echo " --before $BEFORE")\` (needs nats-server; installs jq and valgrind with apt-get when missing)."
  echo "Micro-benchmarks of the hot functions: \`cargo bench --bench hot\`."
} >"$OUT.tmp"
mv "$OUT.tmp" "$OUT"
say "done: $OUT"
