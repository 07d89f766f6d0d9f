#!/usr/bin/env bash
# Suite 9: faults beyond kills. A 3-node JetStream cluster, each nats-server in a
# network namespace of its own, joined by veth pairs to a hub namespace (a Linux bridge); two
# bridges (vx-bridge serve) in namespaces of their own, each with its vx-load sending signed
# webhooks to it over loopback. R3 event stream, R3 session bucket, R3 keys bucket, R3 reconcile
# work queue; the session view and the reconciler on (its VX API unreachable, so watched sessions
# stay watched). Under a steady load (120 webhooks/s in total) one named nemesis runs, then heals;
# every delivery never answered 202 is sent again (same delivery id and body, `vx-load resend`),
# and `vx-load verify` reads EVERY replica's copy (an R1 consumer per node, which reads that
# node's store), the session view, the reconcile queue and the data keys. It fails on: a 202 not
# on every replica, exactly once; replicas that differ at any sequence; a refused delivery whose
# retry never got a 202; a non-retryable answer; a view that does not converge to what the stream
# implies; an open session without its watch; an encrypted event without a data key that opens
# it; a bridge that died or is not ready after the heal.
#
#   scripts/reliability/partition.sh [--short|--full] [--nemesis NAME] [--server VERSION]
#   scripts/reliability/partition.sh --self-test      the checker must report loss (R1, wiped)
#   scripts/reliability/partition.sh --matrix [--versions "V..."] [--nemeses "N..."]
#
# Nemeses: leader-isolated (the stream leader loses both peers, the bridges still reach it),
# minority (leader + bridge b1 cut from the two other nodes; b2 cut from the leader), asymmetric
# (leader→follower packets dropped, then bridge b1→leader), pause (SIGSTOP/SIGCONT of the stream
# leader, then of bridge b2, 12 s each: longer than an election), flapping (the leader's link
# down/up every 300 ms), kill-all (SIGKILL of all three nodes, restart after 3 s), sequence (the
# issue's: leader isolated 12 s, then the leader SIGSTOPped 12 s, then bridge→leader cut 8 s).
# --short (default; CI: leader-isolated, ~1 minute) or --full (the matrix's: 65 s of load).
# --matrix runs every nemesis on every server (scripts/nats/nats-servers.sh; default 2.9.10 2.10.26
# 2.12.8 2.15.1), one after another, and prints the table for docs/RELIABILITY.md; results in
# target/reliability/partition-matrix/results.jsonl.
#
# Needs root (network namespaces) and iproute2 + nftables (installed with apt-get when
# missing). All traffic stays inside the namespaces it creates (vxf-<pid>-*, 10.x addresses
# only there; no port 4222 anywhere); every process, namespace and temp dir it made is removed
# on exit, also on failure (trap). Every loop is bounded in count and time.
set -euo pipefail
# The whole script is one compound command, parsed before it runs: editing the file during a
# (long) run cannot change what that run executes.
{
HERE="$(cd "$(dirname "$0")" && pwd)"
ROOT="$(cd "$HERE/../.." && pwd)"

NEMESES_ALL=(leader-isolated minority asymmetric pause flapping kill-all sequence)
NEMESIS="${PARTITION_NEMESIS:-leader-isolated}"
SELF_TEST=0
MATRIX=0
SERVER=""
VERSIONS="2.9.10 2.10.26 2.12.8 2.15.1"
NEMESES="${NEMESES_ALL[*]}"
while (($#)); do
  case "$1" in
    --short) export REL_MODE=short ;;
    --full) export REL_MODE=full ;;
    --nemesis) NEMESIS=$2; shift ;;
    --server) SERVER=$2; shift ;;
    --self-test) SELF_TEST=1 ;;
    --matrix) MATRIX=1 ;;
    --versions) VERSIONS=$2; shift ;;
    --nemeses) NEMESES=$2; shift ;;
    -h | --help) sed -n 2,35p "$0"; exit 0 ;;
    *) echo "partition.sh: unknown argument $1" >&2; exit 64 ;;
  esac
  shift
done
[[ " ${NEMESES_ALL[*]} " == *" $NEMESIS "* ]] || { echo "partition.sh: unknown nemesis $NEMESIS (${NEMESES_ALL[*]})" >&2; exit 64; }
[[ -n "$SERVER" ]] && { NATS_SERVER=$("$ROOT/scripts/nats/nats-servers.sh" "$SERVER" | cut -d' ' -f2); export NATS_SERVER; }

# ------------------------------------------------------------------ the matrix (no topology here)
if ((MATRIX)); then
  export REL_MODE=full REL_PROFILE="${REL_PROFILE:-debug}"
  OUT="$ROOT/target/reliability/partition-matrix"
  mkdir -p "$OUT"
  build=(cargo build --locked --workspace --bins)
  [[ $REL_PROFILE == release ]] && build+=(--release)
  (cd "$ROOT" && "${build[@]}")
  k=0
  for v in $VERSIONS; do
    path=$("$ROOT/scripts/nats/nats-servers.sh" "$v" | cut -d' ' -f2)
    for n in $NEMESES; do
      k=$((k + 1))
      echo "=== $(date -u +%H:%M:%S) matrix: $n on $v (load $(cut -d' ' -f1-3 /proc/loadavg))"
      # One run at a time, bounded; a failed run is a row too (its result line says why).
      rc=0
      PARTITION_NS="vxf-m$$-$k" NATS_SERVER="$path" REL_OUT="$OUT" PARTITION_NEMESIS="$n" \
        VX_KEEP_ON_FAIL=1 timeout --kill-after=15 420 bash "$0" --full || rc=$?
      ((rc == 0)) || echo "=== $n on $v: FAILED (exit $rc)"
      # A run killed by the timeout could not clean up: its namespaces and what runs in them.
      for ns in $(ip netns list | awk '{print $1}' | grep "^vxf-m$$-$k-" || true); do
        for pid in $(ip netns pids "$ns"); do kill -9 "$pid" 2>/dev/null || true; done
        ip netns del "$ns" || true
      done
    done
  done
  echo
  echo "| nemesis | server | deliveries | 202 (first answer) | 503 share | retried → 202 | first 202 after each heal (ms) | acknowledged then lost | replicas diverged (sequences) | view / watches / keys off | ok | command |"
  echo "|---|---|---|---|---|---|---|---|---|---|---|---|"
  jq -r 'select(.suite == "partition") | "| \(.nemesis) | \(.nats_server) | \(.deliveries) | \(.answered_202) | \(.share_503 * 10000 | round / 100) % | \(.retried_accepted)/\(.retried) | \(.first_202_after_heal_ms | map(tostring) | join(", ")) | \(.acknowledged_then_lost) | \(.replicas_diverged) | \(.state_summary) | \(.ok) | `\(.command)` |"' "$OUT/results.jsonl"
  exit 0
fi

# ------------------------------------------------------------------ one run
REL_SUITE=partition
VX_WORK_TAG=rel-partition
PT_KEEP="${VX_KEEP:-0}"
# shellcheck source=../lib.sh
source "$HERE/../lib.sh"
export RUST_BACKTRACE=0   # verify's failure is its JSON, not a backtrace

[[ $(id -u) == 0 ]] || die "needs root (network namespaces)"
if ! command -v ip >/dev/null || ! command -v nft >/dev/null; then
  log "installing iproute2 and nftables"
  { apt-get update -qq && apt-get install -y -qq --no-install-recommends iproute2 nftables; } >/dev/null 2>&1 \
    || die "cannot install iproute2/nftables"
fi

if [[ $REL_MODE == full ]]; then DURATION=65 T_FAULT=12 HOLD=12; else DURATION=32 T_FAULT=8 HOLD=10; fi
RATE_EACH=60           # per bridge: 120 webhooks/s in total
STREAM=PT_EVENTS PREFIX=pt
# Namespace prefix (the matrix passes one per run, to sweep up after a run it had to kill).
P="${PARTITION_NS:-vxf-$$}"
SUB="10.$((200 + RANDOM % 50)).$((RANDOM % 250))"
declare -A IP=([n1]=$SUB.11 [n2]=$SUB.12 [n3]=$SUB.13 [b1]=$SUB.21 [b2]=$SUB.22)
MEMBERS=(n1 n2 n3 b1 b2)
CPORT=14222 RPORT=16222 BPORT=18080   # client, route, bridge HTTP (inside the namespaces)
URLS="nats://${IP[n1]}:$CPORT,nats://${IP[n2]}:$CPORT,nats://${IP[n3]}:$CPORT"
NS_MADE=()

# ns MEMBER CMD...: run CMD in MEMBER's namespace (in the foreground; see start_node).
ns() { local m=$1; shift; ip netns exec "$P-$m" "$@"; }

# shellcheck disable=SC2317  # (run by the EXIT trap)
pt_cleanup() {
  local rc=$? n pid
  exec 3>&2 2>/dev/null   # the shell's "Killed" notices for the processes below
  for n in "${NS_MADE[@]:-}"; do
    [[ -n "$n" ]] || continue
    # Only processes inside namespaces this script made: all started by it.
    for pid in $(ip netns pids "$n" 2>/dev/null); do kill -9 "$pid" 2>/dev/null || true; done
  done
  # lib.sh's die keeps the work dir; here it is removed on failure too, unless asked for
  # (VX_KEEP=1 always, VX_KEEP_ON_FAIL=1 on failure: the matrix, for the block files).
  VX_KEEP=$PT_KEEP
  [[ $rc != 0 && "${VX_KEEP_ON_FAIL:-0}" == 1 ]] && VX_KEEP=1
  vx_cleanup
  [[ "${VX_KEEP:-0}" == 1 ]] && echo "work dir kept: $VX_WORK" >&3
  for n in "${NS_MADE[@]:-}"; do if [[ -n "$n" ]]; then ip netns del "$n" 2>/dev/null || true; fi; done
  return "$rc"
}
trap pt_cleanup EXIT

# ------------------------------------------------------------------ topology
topology() {
  local m
  ip netns add "$P-hub" && NS_MADE+=("$P-hub")
  ip -n "$P-hub" link set lo up
  ip -n "$P-hub" link add br0 type bridge
  ip -n "$P-hub" link set br0 up
  for m in "${MEMBERS[@]}"; do
    ip netns add "$P-$m" && NS_MADE+=("$P-$m")
    ip -n "$P-$m" link set lo up
    ip link add "v-$m" netns "$P-hub" type veth peer name eth0 netns "$P-$m"
    ip -n "$P-hub" link set "v-$m" master br0 up
    ip -n "$P-$m" addr add "${IP[$m]}/24" dev eth0
    ip -n "$P-$m" link set eth0 up
    ns "$m" nft -f - <<EOF
table inet vxf {
  chain in { type filter hook input priority 0; policy accept; }
  chain out { type filter hook output priority 0; policy accept; }
}
EOF
  done
}

# cut A B: no packets between members A and B (both directions, dropped in A's namespace).
cut() {
  ns "$1" nft add rule inet vxf out ip daddr "${IP[$2]}" drop
  ns "$1" nft add rule inet vxf in ip saddr "${IP[$2]}" drop
}
# cut_one_way A B: packets from A to B dropped; B to A still arrive.
cut_one_way() { ns "$1" nft add rule inet vxf out ip daddr "${IP[$2]}" drop; }
# heal: every rule gone, every link up.
heal() {
  local m
  for m in "${MEMBERS[@]}"; do
    ns "$m" nft flush chain inet vxf in
    ns "$m" nft flush chain inet vxf out
    ip -n "$P-hub" link set "v-$m" up
  done
}

# ns_wait_port MEMBER IP PORT SECONDS
ns_wait_port() {
  local deadline=$((SECONDS + $4))
  until ns "$1" bash -c "exec 3<>/dev/tcp/$2/$3" 2>/dev/null; do
    ((SECONDS < deadline)) || return 1
    sleep 0.1
  done
}

# ------------------------------------------------------------------ processes
declare -A PID
start_node() {
  local n=$1 routes=() m
  for m in n1 n2 n3; do [[ $m == "$n" ]] || routes+=("nats://${IP[$m]}:$RPORT"); done
  mkdir -p "$VX_WORK/$n"
  # `ip netns exec` execs the command, so $! is the server itself (a backgrounded shell
  # function would be a subshell around it, and SIGSTOP/SIGKILL would miss the server).
  ip netns exec "$P-$n" "$NATS_SERVER" -a 0.0.0.0 -p "$CPORT" -js -sd "$VX_WORK/$n/js" -n "$n" \
    --cluster_name vxf --cluster "nats://0.0.0.0:$RPORT" --routes "$(IFS=,; echo "${routes[*]}")" \
    >>"$VX_WORK/$n.log" 2>&1 &
  PID[$n]=$!
  VX_PIDS+=("$!")
}
kill_node() {
  kill -9 "${PID[$1]}" 2>/dev/null || true
  wait "${PID[$1]}" 2>/dev/null || true
}

# start_bridge B [VAR=value...]: vx-bridge serve in B's namespace on 127.0.0.1:BPORT.
start_bridge() {
  local b=$1
  shift
  ip netns exec "$P-$b" env -i PATH="$PATH" HOME="${HOME:-/root}" \
    VXB_HTTP__LISTEN="127.0.0.1:$BPORT" VXB_NATS__URL="$URLS" VXB_NATS__NAME="vx-bridge-$b" \
    VXB_NATS__STREAM__NAME="$STREAM" VXB_NATS__SUBJECT_PREFIX="$PREFIX" \
    VXB_NATS__STREAM__REPLICAS="${REPLICAS:-3}" VXB_NATS__PUBLISH_TIMEOUT=3s \
    VXB_NATS__OUTAGE_WAIT="$REL_OUTAGE_WAIT" \
    VXB_WEBHOOK__AUTH__MODE=hmac VXB_WEBHOOK__AUTH__HMAC__SECRETS="[\"$REL_SECRET\"]" \
    VXB_STATUS__ENABLED=true VXB_UPSTREAM__BASE_URL=http://127.0.0.1:9 VXB_UPSTREAM__TOKEN=unreachable \
    VXB_SESSIONS__BUCKET=PT_SESSIONS VXB_KEYS__BUCKET=PT_KEYS VXB_RECONCILE__STREAM=PT_RECONCILE \
    VXB_LOG__LEVEL="${PARTITION_LOG_LEVEL:-warn,vx_bridge::sessions=info}" VXB_KEYS__KEK_FILE="$VXB_KEYS__KEK_FILE" "$@" \
    "$REL_BIN/vx-bridge" serve >>"$VX_WORK/$b.log" 2>&1 &
  PID[$b]=$!
  VX_PIDS+=("$!")
}
code_of() { ns "$1" curl -s -o /dev/null -w '%{http_code}' --max-time 1 "http://127.0.0.1:$BPORT$2" || true; }
wait_bridge_ready() {
  local deadline=$((SECONDS + $2))
  until [[ $(code_of "$1" /readyz) == 200 ]]; do
    ((SECONDS < deadline)) || return 1
    sleep 0.2
  done
}

# load_on B SECONDS: the bridge's own vx-load, over loopback in its namespace.
load_on() {
  ip netns exec "$P-$1" "$REL_BIN/vx-load" webhook --url "http://127.0.0.1:$BPORT/webhooks/vx" --secret "$REL_SECRET" \
    --connections 16 --rate "$RATE_EACH" --duration "${2}s" --id-prefix "$1" \
    --status PASS,FAIL,PENDING,PASS --record "$VX_WORK/$1.csv" --json >"$VX_WORK/$1-load.json" &
  PID[load_$1]=$!
  VX_PIDS+=("$!")
}

# leader: the stream leader's name, asked through the JetStream API ($JS.API.STREAM.INFO) of
# whichever node b1 reaches; empty when none within 10 tries.
leader() {
  local l=""
  for _ in $(seq 1 10); do
    l=$(ns b1 timeout 5 "$REL_BIN/vx-load" leader --nats "$URLS" --stream "$STREAM" 2>/dev/null || true)
    [[ -n "$l" && -n "${IP[$l]:-}" ]] && { echo "$l"; return 0; }
    sleep 1
  done
  return 1
}
others() { local m; for m in n1 n2 n3; do [[ $m == "$1" ]] || printf '%s ' "$m"; done; }

FAULTS=0
mark() { echo "$1 $(now_ms)" >>"$VX_WORK/marks"; }
fault() { FAULTS=$((FAULTS + 1)); mark "fault$FAULTS"; log "fault $FAULTS: $*"; echo "$*" >>"$VX_WORK/faults"; }
healed() { mark "heal$FAULTS"; log "healed"; }

# ------------------------------------------------------------------ nemeses
nemesis() {
  local l f1 f2
  l=$(leader) || die "no stream leader before the fault"
  read -r f1 f2 <<<"$(others "$l")"
  case "$1" in
    leader-isolated)
      fault "leader $l cut from $f1 and $f2 for ${HOLD}s (the bridges still reach it)"
      cut "$l" "$f1"; cut "$l" "$f2"
      sleep "$HOLD"; heal; healed ;;
    minority)
      fault "minority: $l + b1 cut from $f1 $f2 (b2 cut from $l) for ${HOLD}s"
      cut "$l" "$f1"; cut "$l" "$f2"; cut b1 "$f1"; cut b1 "$f2"; cut b2 "$l"
      sleep "$HOLD"; heal; healed ;;
    asymmetric)
      fault "asymmetric: packets $l -> $f1 dropped for ${HOLD}s"
      cut_one_way "$l" "$f1"
      sleep "$HOLD"; heal; healed
      sleep 6
      l=$(leader) || die "no stream leader"
      fault "asymmetric: packets b1 -> $l dropped for 8s"
      cut_one_way b1 "$l"
      sleep 8; heal; healed ;;
    pause)
      fault "SIGSTOP stream leader $l for ${HOLD}s"
      kill -STOP "${PID[$l]}"; sleep "$HOLD"; kill -CONT "${PID[$l]}"; healed
      sleep 8
      fault "SIGSTOP bridge b2 for ${HOLD}s"
      kill -STOP "${PID[b2]}"; sleep "$HOLD"; kill -CONT "${PID[b2]}"; healed ;;
    flapping)
      fault "flapping: $l's link down/up every 300 ms, 17 times"
      for _ in $(seq 1 17); do
        ip -n "$P-hub" link set "v-$l" down; sleep 0.3
        ip -n "$P-hub" link set "v-$l" up; sleep 0.3
      done
      heal; healed ;;
    kill-all)
      fault "SIGKILL n1 n2 n3, restart after 3s"
      kill_node n1; kill_node n2; kill_node n3
      sleep 3
      start_node n1; start_node n2; start_node n3; healed ;;
    sequence)
      fault "leader $l cut from $f1 and $f2 for 12s"
      cut "$l" "$f1"; cut "$l" "$f2"; sleep 12; heal; healed
      sleep 6
      l=$(leader) || die "no stream leader"
      fault "SIGSTOP stream leader $l for 12s"
      kill -STOP "${PID[$l]}"; sleep 12; kill -CONT "${PID[$l]}"; healed
      sleep 6
      l=$(leader) || die "no stream leader"
      fault "packets b1 -> $l dropped for 8s"
      cut_one_way b1 "$l"; sleep 8; heal; healed ;;
  esac
}

# ------------------------------------------------------------------ run
topology
for n in n1 n2 n3; do start_node "$n"; done
for n in n1 n2 n3; do ns_wait_port "$n" "${IP[$n]}" "$CPORT" 20 || die "nats-server $n did not listen"; done
log "cluster up: $("$NATS_SERVER" --version) in $P-{n1,n2,n3} ($SUB.0/24)"

if ((SELF_TEST)); then
  # The checker must be able to fail: an R1 stream (and R1 buckets) whose only node's store
  # is wiped under it. verify has to report the accepted deliveries as lost.
  REPLICAS=1 start_bridge b1
  wait_bridge_ready b1 60 || die "bridge b1 not ready (see $VX_WORK/b1.log)"
  load_on b1 10
  wait "${PID[load_b1]}" || die "vx-load failed"
  l=$(leader) || die "no stream leader"
  log "self-test: SIGKILL $l (the R1 stream's only node), wipe its store, restart it"
  kill_node "$l"; rm -rf "${VX_WORK:?}/$l/js"; start_node "$l"
  ns_wait_port "$l" "${IP[$l]}" "$CPORT" 20 || die "nats-server $l did not listen"
  set +e
  V=$(ns b1 "$REL_BIN/vx-load" verify --nats "$URLS" --stream "$STREAM" --record "$VX_WORK/b1.csv" \
    --wait 60 --no-divergence --sessions-bucket PT_SESSIONS --prefix "$PREFIX" \
    --keys-bucket PT_KEYS --kek-file "$VXB_KEYS__KEK_FILE" --converge-wait 10)
  vrc=$?
  set -e
  [[ -n "$V" ]] || V='{}'
  lost=$(jq -r '.missing_after_202 // 0' <<<"$V")
  accepted=$(jq -r '.accepted_deliveries // 0' <<<"$V")
  result "$(jq -nc --arg node "$l" --argjson lost "${lost:-0}" --argjson acc "${accepted:-0}" --argjson rc "$vrc" \
    '{suite:"partition", nemesis:"self-test (R1, store wiped)", wiped:$node, accepted:$acc,
      reported_lost:$lost, verify_exit:$rc, ok:($rc != 0 and $lost > 0)}')"
  ((vrc != 0 && lost > 0)) || die "self-test: the checker did not report the loss (exit $vrc, lost $lost)"
  log "self-test ok: verify failed and reported $lost of $accepted accepted deliveries lost"
  exit 0
fi

start_bridge b1
start_bridge b2
wait_bridge_ready b1 60 || die "bridge b1 not ready (see $VX_WORK/b1.log)"
wait_bridge_ready b2 60 || die "bridge b2 not ready (see $VX_WORK/b2.log)"
FDS0="$(fds "${PID[b1]}") $(fds "${PID[b2]}")"
log "nemesis $NEMESIS; load ${RATE_EACH}/s on each bridge for ${DURATION}s; fault at ${T_FAULT}s"
load_on b1 "$DURATION"
load_on b2 "$DURATION"
sleep "$T_FAULT"
nemesis "$NEMESIS"
wait "${PID[load_b1]}" || die "vx-load b1 failed"
wait "${PID[load_b2]}" || die "vx-load b2 failed"
for b in b1 b2; do
  kill -0 "${PID[$b]}" 2>/dev/null || die "bridge $b died (see $VX_WORK/$b.log)"
  wait_bridge_ready "$b" 60 || die "bridge $b not ready again 60 s after the load (a hang across the heal?)"
done
# A sender retries what was refused: the same delivery id and body, up to 10 times, 1 s apart.
for b in b1 b2; do
  ns "$b" "$REL_BIN/vx-load" resend --url "http://127.0.0.1:$BPORT/webhooks/vx" --secret "$REL_SECRET" \
    --record "$VX_WORK/$b.csv" --out "$VX_WORK/$b-retry.csv" --attempts 10 --spacing 1s >"$VX_WORK/$b-retry.json"
done
log "resent: $(cat "$VX_WORK/b1-retry.json") $(cat "$VX_WORK/b2-retry.json")"
grep '^heal' "$VX_WORK/marks" >"$VX_WORK/heal-marks"
set +e
V=$(ns b1 "$REL_BIN/vx-load" verify --nats "$URLS" --stream "$STREAM" \
  --record "$VX_WORK/b1.csv" --record "$VX_WORK/b2.csv" \
  --record "$VX_WORK/b1-retry.csv" --record "$VX_WORK/b2-retry.csv" \
  --marks "$VX_WORK/heal-marks" --wait 90 --require-retried --no-divergence \
  --sessions-bucket PT_SESSIONS --reconcile-stream PT_RECONCILE --prefix "$PREFIX" \
  --keys-bucket PT_KEYS --kek-file "$VXB_KEYS__KEK_FILE" --converge-wait 60)
vrc=$?
set -e
[[ -n "$V" ]] || die "vx-load verify could not read the cluster (exit $vrc)"
FDS1="$(fds "${PID[b1]}") $(fds "${PID[b2]}")"
CMD="scripts/reliability/partition.sh --$REL_MODE --nemesis $NEMESIS --server ${NATS_VERSION:-?}"
R=$(jq -c --arg nemesis "$NEMESIS" --arg mode "$REL_MODE" --arg load "$(load_note)" \
  --arg faults "$(paste -sd';' "$VX_WORK/faults")" --arg fds0 "$FDS0" --arg fds1 "$FDS1" --arg cmd "$CMD" \
  --slurpfile l1 "$VX_WORK/b1-load.json" --slurpfile l2 "$VX_WORK/b2-load.json" \
  --slurpfile r1 "$VX_WORK/b1-retry.json" --slurpfile r2 "$VX_WORK/b2-retry.json" \
  '($l1[0].codes) as $c1 | ($l2[0].codes) as $c2 |
   ($l1[0].all_requests + $l2[0].all_requests) as $sent |
   {suite:"partition", nemesis:$nemesis, mode:$mode, faults:$faults,
    deliveries:$sent, answered_202:(($c1["202"] // 0) + ($c2["202"] // 0)),
    answered_503:(($c1["503"] // 0) + ($c2["503"] // 0)),
    share_503:((($c1["503"] // 0) + ($c2["503"] // 0)) / ([$sent, 1] | max)),
    first_answers:{b1:$c1, b2:$c2},
    retried:($r1[0].resent + $r2[0].resent), retried_accepted:($r1[0].accepted + $r2[0].accepted),
    first_202_after_heal_ms:[.recoveries[].first_202_after_ms],
    acknowledged_then_lost:(.missing_after_202 + .replica_missing_after_202),
    missing_on_leader:.missing_after_202, missing_on_replicas:.replica_missing_after_202,
    replicas_diverged:.diverged_seqs, diverged_examples, leader,
    copies:(.copies | map({node, is_leader, messages, missing_after_202, only_in_this_copy, missing_examples})),
    stored_more_than_once, wrong_event_id, non_retryable_answers, refused_and_never_accepted,
    state_summary:(if .state == null then "-" else
      "\(.state.view_missing + .state.view_wrong + .state.view_not_in_stream) / \(.state.watches_lost) / \(.state.events_not_opening)" end),
    state, bridge_fds_before:$fds0, bridge_fds_after:$fds1, p99_ms:[$l1[0].p99_ms, $l2[0].p99_ms],
    loadavg:$load, command:$cmd, ok}' <<<"$V")
result "$R"
((vrc == 0)) || verify_failed "$V"
log "ok"
exit 0
}
