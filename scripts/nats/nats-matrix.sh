#!/usr/bin/env bash
# The NATS server matrix: the integration tests and the short reliability suites on
# each server version.
#
#   scripts/nats/nats-matrix.sh --all            every version of scripts/nats/nats-servers.sh (run it
#                                           before resolving a NATS-related issue; ~2 min each)
#   scripts/nats/nats-matrix.sh --ci             the oldest supported and the newest (what .ci/run runs)
#   scripts/nats/nats-matrix.sh 2.10.26 2.15.1   those versions
#
# Builds once (debug, as `cargo test` does), then per version, one after the other (the suites
# put load on the cores and measure recovery times, so two at once would disturb each other):
# `cargo test --locked --test it` and `scripts/reliability/run.sh --short`, with NATS_SERVER set.
# Logs and figures go to target/matrix/<version>/; a summary table (markdown) to
# target/matrix/summary.md. Exits non-zero when anything failed on any version.
set -euo pipefail
cd "$(dirname "$0")/../.."

versions=()
case "${1:-}" in
  --all) versions=() ;;
  --ci) versions=(--oldest --newest) ;;
  -h | --help | "") sed -n 2,14p "$0"; [[ -n "${1:-}" ]]; exit $? ;;
  -*) echo "unknown option $1" >&2; exit 64 ;;
  *) versions=("$@") ;;
esac

mapfile -t servers < <(scripts/nats/nats-servers.sh "${versions[@]}")
((${#servers[@]})) || { echo "no servers" >&2; exit 1; }

echo "=== build once: cargo test --locked --no-run; cargo build --locked --workspace --bins"
cargo test --locked --test it --no-run
cargo build --locked --workspace --bins

OUT=target/matrix
mkdir -p "$OUT"
rc=0
rows=()
for line in "${servers[@]}"; do
  v=${line%% *}
  bin=${line#* }
  dir="$OUT/$v"
  rm -rf "$dir"
  mkdir -p "$dir"
  echo "=== $v ($bin), load $(cut -d' ' -f1-3 /proc/loadavg)"
  t0=$SECONDS
  if NATS_SERVER="$bin" cargo test --locked --test it >"$dir/it.log" 2>&1; then it=ok; else it=FAILED; rc=1; fi
  it_s=$((SECONDS - t0))
  it_n=$(grep -o 'test result: [a-zA-Z]*\. [0-9]* passed; [0-9]* failed' "$dir/it.log" | tail -1 | sed -E 's/test result: [a-zA-Z]+\. //')
  echo "    integration tests: $it ($it_n, ${it_s}s)"
  t0=$SECONDS
  if NATS_SERVER="$bin" REL_OUT="$PWD/$dir/reliability" bash scripts/reliability/run.sh --short >"$dir/reliability.log" 2>&1; then rel=ok; else rel=FAILED; rc=1; fi
  rel_s=$((SECONDS - t0))
  echo "    reliability --short: $rel (${rel_s}s)"
  res="$dir/reliability/results.jsonl"
  fig() { jq -r -s "$1" "$res" 2>/dev/null || echo "?"; }
  restarts=$(fig 'map(select(.suite=="nats-restarts"))[0] // empty | "\(.accepted_deliveries) × 202, \(.missing_after_202) missing, recover ≤ \(.recover_ms_max) ms"')
  cluster=$(fig 'map(select(.suite=="cluster"))[0] // empty | "\(.accepted_deliveries) × 202, \(.missing_after_202) missing, first 202 after kill \(.first_202_after_kill_ms | map(tostring) | join(", ")) ms"')
  failed=$(grep -E '^[a-z-]+ +FAILED' "$dir/reliability.log" | awk '{print $1}' | paste -sd, - || true)
  rows+=("| $v | $it: $it_n (${it_s} s) | $rel${failed:+ ($failed)} (${rel_s} s) | ${restarts:-–} | ${cluster:-–} |")
done

{
  echo "Matrix run $(date -u +%Y-%m-%dT%H:%MZ), $(nproc) cores, load at the end $(cut -d' ' -f1-3 /proc/loadavg)"
  echo
  echo "| server | integration tests | reliability --short | nats-restarts (short) | cluster (short) |"
  echo "|---|---|---|---|---|"
  printf '%s\n' "${rows[@]}"
} >"$OUT/summary.md"
echo
cat "$OUT/summary.md"
exit $rc
