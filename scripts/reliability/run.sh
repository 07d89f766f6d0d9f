#!/usr/bin/env bash
# Reliability suites. One entry point:
#
#   scripts/reliability/run.sh [--short|--full] [--debug|--release] [--skip SUITE]... [suite...]
#
# Suites: nats-restarts cluster retries sigterm status bad-input fuzz soak (default: all), and
# partition (network partitions and pauses of a 3-node cluster in network namespaces;
# root only, so not among the defaults; CI runs it on the newest server). --skip leaves a suite
# out of the default list (CI skips `cluster` on 2.9.10: R3 needs 2.12.8 or newer).
# --short (default) is the CI version: every suite, a few seconds each, debug binaries (which
# `cargo test` has already built), at most ~4 minutes in total on a 2-core machine.
# --full is the version whose figures docs/RELIABILITY.md reports: release binaries, longer
# load, more faults, the 10-minute soak and 10-minute cargo-fuzz runs per target.
# Everything runs on 127.0.0.1 with nats-server processes on free ports (never 4222) and temp
# stores; each suite kills what it started. Results: target/reliability/<mode>/results.jsonl.
# Environment: NATS_SERVER (the nats-server binary, default PATH's), REL_OUTAGE_WAIT (the
# bridge's nats.outage_wait, default 5s; 0s = fail fast): with it above 0, nats-restarts and
# cluster fail on any 503 during an outage that ended more than 1 s before outage_wait.
set -euo pipefail
cd "$(dirname "$0")/../.."

MODE=short
PROFILE=""
SUITES=()
SKIP=" "
while (($#)); do
  arg=$1
  shift
  case "$arg" in
    --skip) SKIP+="${1:?--skip needs a suite} "; shift ;;
    --short) MODE=short ;;
    --full) MODE=full ;;
    --debug) PROFILE=debug ;;
    --release) PROFILE=release ;;
    -h|--help) sed -n 2,19p "$0"; exit 0 ;;
    -*) echo "unknown option $arg" >&2; exit 64 ;;
    *) SUITES+=("$arg") ;;
  esac
done
ALL=(bad-input retries nats-restarts cluster sigterm status fuzz soak)
((${#SUITES[@]})) || SUITES=("${ALL[@]}")
KEEP=()
for s in "${SUITES[@]}"; do [[ $SKIP == *" $s "* ]] || KEEP+=("$s"); done
SUITES=("${KEEP[@]}")
[[ -n "$PROFILE" ]] || { [[ $MODE == full ]] && PROFILE=release || PROFILE=debug; }

# NATS_SERVER picks the server binary (scripts/nats/nats-servers.sh prints the matrix's paths).
NATS_SERVER="${NATS_SERVER:-nats-server}"
command -v "$NATS_SERVER" >/dev/null || { echo "$NATS_SERVER not found (set NATS_SERVER or put nats-server on PATH)" >&2; exit 1; }
export NATS_SERVER
command -v jq >/dev/null || { echo "jq is not on PATH" >&2; exit 1; }

build=(cargo build --locked --workspace --bins)
[[ $PROFILE == release ]] && build+=(--release)
echo "=== $("$NATS_SERVER" --version) ($NATS_SERVER)"
echo "=== build: ${build[*]}"
"${build[@]}"

export REL_MODE=$MODE REL_PROFILE=$PROFILE
export REL_OUT="${REL_OUT:-$PWD/target/reliability/$MODE}"
mkdir -p "$REL_OUT"
: >"$REL_OUT/results.jsonl"
# Per-suite bound: the suites bound their own loops; this is the backstop.
if [[ $MODE == full ]]; then LIMIT=2400; else LIMIT=150; fi

declare -A STATUS
started=$SECONDS
for s in "${SUITES[@]}"; do
  script="scripts/reliability/$s.sh"
  [[ -f "$script" && $s != run ]] || { echo "unknown suite $s" >&2; exit 64; }
  echo "=== suite $s ($MODE, $PROFILE) at $((SECONDS - started))s, load $(cut -d' ' -f1-3 /proc/loadavg)"
  t0=$SECONDS
  if timeout --kill-after=10 "$LIMIT" bash "$script"; then
    STATUS[$s]="ok ($((SECONDS - t0))s)"
  else
    STATUS[$s]="FAILED ($((SECONDS - t0))s)"
  fi
done
echo
echo "=== summary ($MODE, $PROFILE, $((SECONDS - started))s; figures in $REL_OUT/results.jsonl)"
rc=0
for s in "${SUITES[@]}"; do
  printf '%-14s %s\n' "$s" "${STATUS[$s]}"
  [[ ${STATUS[$s]} == ok* ]] || rc=1
done
exit $rc
