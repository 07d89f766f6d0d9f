#!/usr/bin/env bash
# Shared helpers for the reliability suites (sourced, not run). Everything runs on 127.0.0.1:
# nats-server processes on free ports with temp stores (never 4222), the vx-bridge and vx-load
# binaries of this checkout. Every process started here is killed by the EXIT trap; every wait
# is bounded.
set -euo pipefail

REL_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
REL_MODE="${REL_MODE:-short}"            # short | full
REL_PROFILE="${REL_PROFILE:-debug}"       # debug | release (set by scripts/reliability.sh)
REL_BIN="$REL_ROOT/target/$REL_PROFILE"
REL_SECRET="whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
REL_OUT="${REL_OUT:-$REL_ROOT/target/reliability/latest}"
mkdir -p "$REL_OUT"
REL_WORK="$(mktemp -d "${TMPDIR:-/tmp}/vx-rel.XXXXXX")"
# nats.outage_wait for the bridge (ride-through mode); 0s = fail fast, as before issue 18.
REL_OUTAGE_WAIT="${REL_OUTAGE_WAIT:-5s}"
REL_PIDS=()
# The server binary (issue 12): NATS_SERVER, as scripts/nats-servers.sh prints it, else PATH's.
NATS_SERVER="${NATS_SERVER:-nats-server}"
REL_NATS_VERSION="$("$NATS_SERVER" --version 2>/dev/null | sed 's/^nats-server: v//')"

rel_cleanup() {
  local pid
  for pid in "${REL_PIDS[@]:-}"; do
    [[ -n "$pid" ]] && kill -9 "$pid" 2>/dev/null || true
  done
  for pid in "${REL_PIDS[@]:-}"; do
    [[ -n "$pid" ]] && wait "$pid" 2>/dev/null || true
  done
  if [[ "${REL_KEEP:-0}" == 1 ]]; then
    echo "work dir kept: $REL_WORK" >&2
  else
    rm -rf "$REL_WORK"
  fi
}
trap rel_cleanup EXIT
trap 'exit 130' INT TERM

log() { printf '[%s %s] %s\n' "$(date -u +%H:%M:%S)" "${REL_SUITE:-rel}" "$*" >&2; }
die() { log "FAIL: $*"; REL_KEEP=1; exit 1; }
now_ms() { date +%s%3N; }

# free_port VAR: sets VAR to a port in 20000-32767 that nothing listens on and that this suite
# has not handed out yet (no subshell, so the list of handed-out ports is kept). Below Linux's
# ephemeral range (32768+), so no client connection of the load can be holding it.
REL_PORTS=" "
free_port() {
  local _fp
  for _ in $(seq 1 200); do
    _fp=$((20000 + RANDOM % 12768))
    [[ $REL_PORTS == *" $_fp "* ]] && continue
    if ! (exec 3<>"/dev/tcp/127.0.0.1/$_fp") 2>/dev/null; then
      REL_PORTS+="$_fp "
      printf -v "$1" '%s' "$_fp"
      return 0
    fi
  done
  return 1
}

# wait_port PORT SECONDS: until something accepts on 127.0.0.1:PORT.
wait_port() {
  local port=$1 deadline=$((SECONDS + $2))
  until (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; do
    ((SECONDS < deadline)) || return 1
    sleep 0.05
  done
}

# wait_ready BRIDGE_PORT SECONDS: until /readyz answers 200.
wait_ready() {
  local port=$1 deadline=$((SECONDS + $2))
  until [[ "$(curl -s -o /dev/null -w '%{http_code}' --max-time 1 "http://127.0.0.1:$port/readyz")" == 200 ]]; do
    ((SECONDS < deadline)) || return 1
    sleep 0.1
  done
}

# healthy BRIDGE_PORT: /healthz answers 200 within 2 s.
healthy() {
  [[ "$(curl -s -o /dev/null -w '%{http_code}' --max-time 2 "http://127.0.0.1:$1/healthz")" == 200 ]]
}

# nats_start NAME PORT [extra nats-server args...]: JetStream server with its store in the work dir.
declare -A NATS_PID
nats_start() {
  local name=$1 port=$2
  shift 2
  mkdir -p "$REL_WORK/$name"
  "$NATS_SERVER" -a 127.0.0.1 -p "$port" -js -sd "$REL_WORK/$name/js" -n "$name" "$@" \
    >>"$REL_WORK/$name.log" 2>&1 &
  NATS_PID[$name]=$!
  REL_PIDS+=("$!")
  wait_port "$port" 15 || die "nats-server $name did not listen on $port"
}

nats_kill() {
  local name=$1 pid=${NATS_PID[$1]:-}
  [[ -n "$pid" ]] || return 0
  kill -9 "$pid" 2>/dev/null || true
  wait "$pid" 2>/dev/null || true
  NATS_PID[$name]=""
}

# bridge_start PORT NATS_URLS STREAM PREFIX [VAR=value...]: vx-bridge serve, waits for /readyz.
BRIDGE_PID=""
bridge_start() {
  local port=$1 nats=$2 stream=$3 prefix=$4
  shift 4
  env -i PATH="$PATH" HOME="${HOME:-/root}" \
    VXB_HTTP__LISTEN="127.0.0.1:$port" VXB_NATS__URL="$nats" \
    VXB_NATS__STREAM__NAME="$stream" VXB_NATS__SUBJECT_PREFIX="$prefix" \
    VXB_WEBHOOK__AUTH__MODE=hmac VXB_WEBHOOK__AUTH__HMAC__SECRETS="[\"$REL_SECRET\"]" \
    VXB_LOG__LEVEL=warn VXB_NATS__OUTAGE_WAIT="$REL_OUTAGE_WAIT" "$@" \
    "$REL_BIN/vx-bridge" serve >>"$REL_WORK/bridge.log" 2>&1 &
  BRIDGE_PID=$!
  REL_PIDS+=("$BRIDGE_PID")
  wait_ready "$port" 30 || die "vx-bridge not ready on $port (see $REL_WORK/bridge.log)"
}

# rss_kb PID / fds PID: resident memory and open descriptors of a process.
rss_kb() { awk '/^VmRSS:/ {print $2}' "/proc/$1/status"; }
fds() { ls "/proc/$1/fd" | wc -l; }

# result JSON: appends one figure line to the suite's results file, with the server version.
result() {
  local line
  line=$(jq -c --arg v "$REL_NATS_VERSION" '. + {nats_server: $v}' <<<"$1")
  printf '%s\n' "$line" >>"$REL_OUT/results.jsonl"
  printf '%s\n' "$line"
}

# load_note: machine load for the figures.
load_note() { awk '{print $1" "$2" "$3}' /proc/loadavg; }

# outage_wait_ms: REL_OUTAGE_WAIT (`5s`, `500ms`, `0`) in milliseconds.
outage_wait_ms() {
  case "$REL_OUTAGE_WAIT" in
    *ms) echo "${REL_OUTAGE_WAIT%ms}" ;;
    *s) echo "$((${REL_OUTAGE_WAIT%s} * 1000))" ;;
    *) echo "$REL_OUTAGE_WAIT" ;;
  esac
}

# ride_through_args: vx-load verify arguments for the ride-through check (none when failing
# fast): no 503 in an outage that ended at least 1 s before outage_wait. The second is slack for
# the retry spacing (up to 500 ms: a webhook whose last retry came just before the recovery
# gives up at its deadline) and for scheduling on a loaded machine.
ride_through_args() {
  local ms
  ms=$(outage_wait_ms)
  ((ms > 1000)) && echo "--no-503-if-recovered-within-ms $((ms - 1000))"
  return 0
}

# outage_windows [AFTER_MS]: from $REL_WORK/marks (`killN ms` / `upN ms` lines), one
# `roundN kill_ms end_ms` line per outage, ending AFTER_MS (default 3000) after the server came
# back (reconnect or election included).
outage_windows() {
  awk -v after="${1:-3000}" '/^kill/ {k[substr($1,5)]=$2} /^up/ {u[substr($1,3)]=$2}
       END {for (i in k) if (i in u) print "round" i, k[i], u[i] + after}' "$REL_WORK/marks" | sort
}
