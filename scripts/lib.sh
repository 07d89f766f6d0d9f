#!/usr/bin/env bash
# Shared helpers of the scripts (sourced, not run): scripts/bench/bench.sh, scripts/chart/prometheus-check.sh,
# scripts/nats/nats-sync-cost.sh and the reliability suites (scripts/reliability/*.sh). Everything runs
# on 127.0.0.1: nats-server processes on free ports with temp stores (never 4222), the vx-bridge
# and vx-load binaries of this checkout. Every process started through VX_PIDS is killed by the
# EXIT trap; every wait is bounded. This is the one place a script starts a nats-server.
#
# Sourcing it gives: VX_ROOT (the checkout), VX_WORK (a temp dir, removed on exit unless
# VX_KEEP=1), VX_PIDS (processes to kill on exit), NATS_SERVER (the server binary: NATS_SERVER as
# scripts/nats/nats-servers.sh prints it, else PATH's) and NATS_VERSION; the functions below. The
# reliability suites' settings (REL_*) are at the end.
set -euo pipefail

VX_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VX_WORK_TAG="${VX_WORK_TAG:-${REL_SUITE:+rel}}"
VX_WORK="$(mktemp -d "${TMPDIR:-/tmp}/vx-${VX_WORK_TAG:-run}.XXXXXX")"
VX_PIDS=()
# The key-encryption key of the bridges these scripts start (events.pii = "encrypted", the
# default, needs one): 32 random bytes made for this run, in the run's own folder. Exported, so
# every bridge started with the caller's environment gets it; bridge_start passes it on.
export VXB_KEYS__KEK_FILE="$VX_WORK/kek"
echo "k1:$(head -c 32 /dev/urandom | base64 -w0)" >"$VXB_KEYS__KEK_FILE"
chmod 600 "$VXB_KEYS__KEK_FILE"
NATS_SERVER="${NATS_SERVER:-nats-server}"
NATS_VERSION="$("$NATS_SERVER" --version 2>/dev/null | sed 's/^nats-server: v//')" || NATS_VERSION=""

vx_cleanup() {
  local pid
  for pid in "${VX_PIDS[@]:-}"; do
    [[ -n "$pid" ]] && kill -9 "$pid" 2>/dev/null || true
  done
  for pid in "${VX_PIDS[@]:-}"; do
    [[ -n "$pid" ]] && wait "$pid" 2>/dev/null || true
  done
  if [[ "${VX_KEEP:-0}" == 1 ]]; then
    echo "work dir kept: $VX_WORK" >&2
  else
    rm -rf "$VX_WORK"
  fi
}
trap vx_cleanup EXIT
trap 'exit 130' INT TERM

# log MESSAGE / die MESSAGE: a timestamped line on stderr; die keeps the work dir and exits 1.
log() { printf '[%s %s] %s\n' "$(date -u +%H:%M:%S)" "${REL_SUITE:-${VX_WORK_TAG:-vx}}" "$*" >&2; }
die() { log "FAIL: $*"; VX_KEEP=1; exit 1; }
now_ms() { date +%s%3N; }

# free_port VAR: sets VAR to a port in 20000-32767 that nothing listens on and that this script
# has not handed out yet (no subshell, so the list of handed-out ports is kept). Below Linux's
# ephemeral range (32768+), so no client connection of a load can be holding it.
VX_PORTS=" "
free_port() {
  local _fp
  for _ in $(seq 1 200); do
    _fp=$((20000 + RANDOM % 12768))
    [[ $VX_PORTS == *" $_fp "* ]] && continue
    if ! (exec 3<>"/dev/tcp/127.0.0.1/$_fp") 2>/dev/null; then
      VX_PORTS+="$_fp "
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

# wait_http URL SECONDS: until URL answers 200.
wait_http() {
  local url=$1 deadline=$((SECONDS + $2))
  until [[ "$(curl -s -o /dev/null -w '%{http_code}' --max-time 1 "$url")" == 200 ]]; do
    ((SECONDS < deadline)) || return 1
    sleep 0.05
  done
}

# wait_ready BRIDGE_PORT SECONDS: until the bridge's /readyz answers 200.
wait_ready() { wait_http "http://127.0.0.1:$1/readyz" "$2"; }

# healthy BRIDGE_PORT: /healthz answers 200 within 2 s.
healthy() {
  [[ "$(curl -s -o /dev/null -w '%{http_code}' --max-time 2 "http://127.0.0.1:$1/healthz")" == 200 ]]
}

# stop PID: SIGTERM, then wait up to 5 s, then SIGKILL.
stop() {
  kill "$1" 2>/dev/null || return 0
  for _ in $(seq 1 250); do
    kill -0 "$1" 2>/dev/null || { wait "$1" 2>/dev/null || true; return 0; }
    sleep 0.02
  done
  kill -9 "$1" 2>/dev/null || true
  wait "$1" 2>/dev/null || true
}

# nats_start NAME PORT [extra nats-server args...]: a JetStream server named NAME with its store
# in $VX_WORK/NAME/js (kept across nats_kill, so a restart finds it) and its log in
# $VX_WORK/NAME.log; waits until it listens. NATS_PID[NAME] is its pid.
declare -A NATS_PID
nats_start() {
  local name=$1 port=$2
  shift 2
  mkdir -p "$VX_WORK/$name"
  "$NATS_SERVER" -a 127.0.0.1 -p "$port" -js -sd "$VX_WORK/$name/js" -n "$name" "$@" \
    >>"$VX_WORK/$name.log" 2>&1 &
  NATS_PID[$name]=$!
  VX_PIDS+=("$!")
  wait_port "$port" 15 || die "nats-server $name did not listen on $port"
}

# nats_kill NAME: SIGKILL (the store stays). nats_stop NAME: SIGTERM (bounded), store removed.
nats_kill() {
  local name=$1 pid=${NATS_PID[$1]:-}
  [[ -n "$pid" ]] || return 0
  kill -9 "$pid" 2>/dev/null || true
  wait "$pid" 2>/dev/null || true
  NATS_PID[$name]=""
}
nats_stop() {
  [[ -n "${NATS_PID[$1]:-}" ]] && stop "${NATS_PID[$1]}"
  NATS_PID[$1]=""
  rm -rf "${VX_WORK:?}/$1"
}

# rss_kb PID / fds PID: resident memory and open descriptors of a process.
rss_kb() { awk '/^VmRSS:/ {print $2}' "/proc/$1/status"; }
fds() { ls "/proc/$1/fd" | wc -l; }

# load_note: machine load for the figures.
load_note() { awk '{print $1" "$2" "$3}' /proc/loadavg; }

# ---------------------------------------------------------------- the reliability suites
REL_ROOT="$VX_ROOT"
REL_MODE="${REL_MODE:-short}"            # short | full
REL_PROFILE="${REL_PROFILE:-debug}"       # debug | release (set by scripts/reliability/run.sh)
REL_BIN="$REL_ROOT/target/$REL_PROFILE"
REL_SECRET="whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
REL_OUT="${REL_OUT:-$REL_ROOT/target/reliability/latest}"
# nats.outage_wait for the bridge (ride-through mode); 0s = fail fast.
REL_OUTAGE_WAIT="${REL_OUTAGE_WAIT:-5s}"
REL_NATS_VERSION="$NATS_VERSION"
[[ -n "${REL_SUITE:-}" ]] && mkdir -p "$REL_OUT"

# bridge_start PORT NATS_URLS STREAM PREFIX [VAR=value...]: vx-bridge serve, waits for /readyz.
BRIDGE_PID=""
bridge_start() {
  local port=$1 nats=$2 stream=$3 prefix=$4
  shift 4
  env -i PATH="$PATH" HOME="${HOME:-/root}" \
    VXB_HTTP__LISTEN="127.0.0.1:$port" VXB_NATS__URL="$nats" \
    VXB_NATS__STREAM__NAME="$stream" VXB_NATS__SUBJECT_PREFIX="$prefix" \
    VXB_WEBHOOK__AUTH__MODE=hmac VXB_WEBHOOK__AUTH__HMAC__SECRETS="[\"$REL_SECRET\"]" \
    VXB_LOG__LEVEL=warn VXB_NATS__OUTAGE_WAIT="$REL_OUTAGE_WAIT" \
    VXB_KEYS__KEK_FILE="$VXB_KEYS__KEK_FILE" "$@" \
    "$REL_BIN/vx-bridge" serve >>"$VX_WORK/bridge.log" 2>&1 &
  BRIDGE_PID=$!
  VX_PIDS+=("$BRIDGE_PID")
  wait_ready "$port" 30 || die "vx-bridge not ready on $port (see $VX_WORK/bridge.log)"
}

# load_start PORT RATE SECONDS ID_PREFIX: vx-load signs webhooks to the bridge on PORT at RATE/s
# for SECONDS over 32 connections, in the background; every answer recorded in
# $VX_WORK/answers.csv, the summary in $VX_WORK/load.json. Sets LOAD (killed on exit).
LOAD=""
load_start() {
  "$REL_BIN/vx-load" webhook --url "http://127.0.0.1:$1/webhooks/vx" --secret "$REL_SECRET" \
    --connections 32 --rate "$2" --duration "${3}s" --id-prefix "$4" \
    --record "$VX_WORK/answers.csv" --json >"$VX_WORK/load.json" &
  LOAD=$!
  VX_PIDS+=("$LOAD")
}

# verify_failed JSON: prints `vx-load verify`'s output and dies saying which checks failed (the
# output is empty when verify could not read the stream; its reason is on stderr above).
verify_failed() {
  local why
  why=$(jq -r --arg ow "$REL_OUTAGE_WAIT" '[
      (select(.missing_after_202 > 0) | "\(.missing_after_202) accepted missing on the stream leader \(.leader // "")"),
      (select((.replica_missing_after_202 // 0) > 0) | "\(.replica_missing_after_202) accepted missing on replica(s) \([.copies[] | select(.is_leader | not) | select(.missing_after_202 > 0) | .node] | join(", "))"),
      (select(.wrong_event_id > 0) | "\(.wrong_event_id) stored under another event id"),
      (select(.stored_more_than_once > 0) | "\(.stored_more_than_once) stored more than once"),
      (select(.first_202_more_than_once > 0) | "\(.first_202_more_than_once) answered non-duplicate 202 twice"),
      (select(.non_retryable_answers > 0) | "\(.non_retryable_answers) non-retryable answers"),
      (select(.ride_through_violations > 0) | "\(.ride_through_violations) outage(s) that ended within outage_wait=\($ow) had a 503")
    ] | join("; ")' <<<"$1" 2>/dev/null) || why=""
  printf '%s\n' "$1"
  die "verification failed: ${why:-see above}"
}

# result JSON: appends one figure line to the suite's results file, with the server version.
result() {
  local line
  line=$(jq -c --arg v "$REL_NATS_VERSION" '. + {nats_server: $v}' <<<"$1")
  printf '%s\n' "$line" >>"$REL_OUT/results.jsonl"
  printf '%s\n' "$line"
}

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

# outage_windows [AFTER_MS]: from $VX_WORK/marks (`killN ms` / `upN ms` lines), one
# `roundN kill_ms end_ms` line per outage, ending AFTER_MS (default 3000) after the server came
# back (reconnect or election included).
outage_windows() {
  awk -v after="${1:-3000}" '/^kill/ {k[substr($1,5)]=$2} /^up/ {u[substr($1,3)]=$2}
       END {for (i in k) if (i in u) print "round" i, k[i], u[i] + after}' "$VX_WORK/marks" | sort
}
