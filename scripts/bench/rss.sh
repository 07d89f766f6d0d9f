#!/usr/bin/env bash
# Where vx-bridge's resident memory is at the ingress peak, and what settings change it: the
# conditions of scripts/bench/bench.sh's (c) peak run (same bridge environment, 64 connections, its own
# nats-server with a file store), one short closed-loop run per variant, each against a fresh server.
#
#   scripts/bench/rss.sh [NAME[:VAR=value,VAR=value...]]...     (default: one variant, `default`)
#   e.g. scripts/bench/rss.sh default purge0:MIMALLOC_PURGE_DELAY=0 noview:VXB_SESSIONS__ENABLED=false
#   (BIN=path among the variables runs that binary instead of target/release/vx-bridge)
#
# Per variant: VmHWM after the run, the split of the resident set near the end of the load (from
# /proc/PID/smaps: the binary's own file-backed pages, other files, thread stacks, other anonymous
# memory = the allocator's heap), req/s, the bridge's and nats-server's CPU µs per webhook (counted
# until the session projector's backlog is 0 again, so that a projector that lags is not counted
# cheap), the projector's largest backlog and how long it took to drain after the load, and the
# ratios to the first variant's (run first variants' ratios only within one invocation: the machine
# is shared). Does not build: run `cargo build --release --locked --workspace --bins` first.
# Environment: RSS_DURATION (8s), RSS_WARMUP (1s), RSS_CONNECTIONS (64), RSS_KEEP_SMAPS (a dir to
# copy each variant's smaps into). Heavy: run it under `flock /tmp/vx-heavy.lock`.
# Only 127.0.0.1 is a target; everything started is stopped on exit (scripts/lib.sh).
set -euo pipefail

cd "$(dirname "$0")/../.."
ROOT=$PWD
DURATION=${RSS_DURATION:-8s}
WARMUP=${RSS_WARMUP:-1s}
CONNS=${RSS_CONNECTIONS:-64}
SECRET='whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw'
BIN=$ROOT/target/release/vx-bridge
VXLOAD=$ROOT/target/release/vx-load
[ -x "$BIN" ] && [ -x "$VXLOAD" ] || { echo "rss.sh: build the release binaries first" >&2; exit 1; }
[ $# -gt 0 ] || set -- default

VX_WORK_TAG=rss
# shellcheck source=scripts/lib.sh
source "$ROOT/scripts/lib.sh"
TMP=$VX_WORK

ticks() { awk '{ sub(/.*\) /, ""); split($0, f, " "); print f[12] + f[13] }' "/proc/$1/stat"; }

# split SMAPS BIN: "bin other_files stacks anon total" resident KiB. A thread stack is an
# anonymous rw mapping that directly follows a 4 KiB ---p guard mapping (glibc's pthread stacks),
# or [stack]; every other anonymous mapping is the allocator's (mimalloc arenas, [heap]).
split_smaps() {
  gawk -v bin="$2" '
    function flush() { if (cat != "") r[cat] += rss }
    /^[0-9a-f]+-[0-9a-f]+ / {
      flush()
      split($1, a, "-"); start = strtonum("0x" a[1]); end = strtonum("0x" a[2])
      perms = $2; path = (NF >= 6) ? $6 : ""
      if (path == bin) cat = "bin"
      else if (path == "[stack]") cat = "stack"
      else if (path ~ /^\//) cat = "files"
      else if (path == "" && perms ~ /^rw/ && prev_guard && prev_end == start) cat = "stack"
      else if (path == "" || path == "[heap]") cat = "anon"
      else cat = "other"
      prev_guard = (perms == "---p" && path == "" && end - start == 4096); prev_end = end
      rss = 0; next
    }
    $1 == "Rss:" { rss = $2 }
    END { flush(); t = r["bin"] + r["files"] + r["stack"] + r["anon"] + r["other"]
          printf "%d %d %d %d %d\n", r["bin"], r["files"], r["stack"], r["anon"] + r["other"], t }
  ' "$1"
}

RESULTS=$TMP/results
: >"$RESULTS"
for spec in "$@"; do
  name=${spec%%:*}
  vars=()
  if [[ $spec == *:* ]]; then IFS=, read -r -a vars <<<"${spec#*:}"; fi
  bin=$BIN  # BIN=path among the variables: that binary instead (e.g. a copy of an older build)
  for i in "${!vars[@]}"; do
    [[ ${vars[$i]} == BIN=* ]] && { bin=${vars[$i]#BIN=}; unset "vars[$i]"; }
  done
  port=; free_port port
  nport=; free_port nport
  nats_start "$name" "$nport"
  NATS_URL="nats://127.0.0.1:$nport"
  env VXB_HTTP__LISTEN="127.0.0.1:$port" VXB_NATS__URL="$NATS_URL" \
    VXB_NATS__STREAM__NAME=BENCH VXB_NATS__STREAM__STORAGE=file \
    VXB_WEBHOOK__AUTH__MODE=hmac "VXB_WEBHOOK__AUTH__HMAC__SECRETS=[\"$SECRET\"]" \
    "${vars[@]}" "$bin" serve 2>"$TMP/$name-bridge.log" &
  pid=$!; VX_PIDS+=("$pid")
  wait_ready "$port" 30 || die "vx-bridge $name not ready (see $TMP/$name-bridge.log)"
  idle_kib=$(rss_kb "$pid")
  t0=$(ticks "$pid")
  n0=$(ticks "${NATS_PID[$name]}")
  # The projector's backlog (vx_bridge_sessions_pending; absent with the view off) every 0.25 s.
  ( trap - EXIT INT TERM
    while :; do curl -fs "http://127.0.0.1:$port/metrics" | awk '$1 == "vx_bridge_sessions_pending" { print $2 }'; sleep 0.25; done
  ) >"$TMP/$name.backlog" 2>/dev/null &
  sampler=$!; VX_PIDS+=("$sampler")
  "$VXLOAD" webhook --url "http://127.0.0.1:$port/webhooks/vx" --connections "$CONNS" \
    --duration "$DURATION" --warmup "$WARMUP" --id-prefix "rss-$name-$RANDOM" --json >"$TMP/$name.json" &
  load=$!; VX_PIDS+=("$load")
  # The resident set's split near the end of the load (1 s before it stops), when it is largest.
  secs=${DURATION%s}
  sleep $((secs - 1))
  cp "/proc/$pid/smaps" "$TMP/$name.smaps"
  threads=$(ls "/proc/$pid/task" | wc -l)
  wait "$load"
  # Until the backlog is 0 again (at most 30 s): its work is this load's too.
  drained=$(date +%s.%N); drain=">30"
  for _ in $(seq 1 300); do
    b=$(curl -fs "http://127.0.0.1:$port/metrics" | awk '$1 == "vx_bridge_sessions_pending" { print $2 }')
    if [ -z "$b" ] || [ "$b" = 0 ]; then
      drain=$(awk -v a="$drained" -v b="$(date +%s.%N)" 'BEGIN { printf "%.2f", b - a }'); break
    fi
    sleep 0.1
  done
  kill "$sampler" 2>/dev/null || true
  backlog=$(awk 'BEGIN { m = 0 } $1 + 0 > m { m = $1 + 0 } END { print m }' "$TMP/$name.backlog")
  cpu=$(( $(ticks "$pid") - t0 ))
  ncpu=$(( $(ticks "${NATS_PID[$name]}") - n0 ))
  hwm=$(awk '/^VmHWM:/ {print $2}' "/proc/$pid/status")
  read -r bin files stacks anon total < <(split_smaps "$TMP/$name.smaps" "$(readlink -f "$bin")")
  rps=$(jq -r '.rps' "$TMP/$name.json")
  all=$(jq -r '.all_requests' "$TMP/$name.json")
  ok=$(jq -r '.ok // .accepted // empty' "$TMP/$name.json")
  us=$(awk -v c="$cpu" -v n="$all" 'BEGIN { printf "%.1f", c * 1e4 / n }')
  nus=$(awk -v c="$ncpu" -v n="$all" 'BEGIN { printf "%.1f", c * 1e4 / n }')
  stop "$pid"
  [ -n "${RSS_KEEP_SMAPS:-}" ] && { mkdir -p "$RSS_KEEP_SMAPS"; cp "$TMP/$name.smaps" "$TMP/$name-bridge.log" "$RSS_KEEP_SMAPS/"; }
  nats_stop "$name"
  echo "$name $hwm $idle_kib $bin $files $stacks $anon $total $threads $rps $us ${ok:-?} $nus $backlog $drain" >>"$RESULTS"
  echo "rss.sh: $name done (load $(load_note))" >&2
done

awk 'function m(k) { return sprintf("%.1f", k / 1024) }
  BEGIN { printf "%-12s %7s %6s | %-36s | %4s %8s %6s %6s %7s %6s | %7s %7s %7s %7s\n", "variant", "VmHWM", "idle",
          "split at the peak MiB: bin files stacks anon = sum", "thr", "req/s", "µs/wh", "nats", "backlog", "drain", "hwm/0", "rps/0", "cpu/0", "nats/0" }
  NR == 1 { h0 = $2; r0 = $10; u0 = $11; n0 = $13 }
  { printf "%-12s %7s %6s | %6s %6s %6s %6s = %6s   | %4d %8.0f %6s %6s %7s %6s | %7.3f %7.3f %7.3f %7.3f\n", $1, m($2), m($3),
      m($4), m($5), m($6), m($7), m($8), $9, $10, $11, $13, $14, $15, $2 / h0, $10 / r0, $11 / u0, $13 / n0 }' "$RESULTS"
