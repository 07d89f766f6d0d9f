#!/usr/bin/env bash
# Suite 7: fuzzing. --short replays the seed corpora through the harnesses on stable Rust (the
# same test runs in `cargo test`; the proptests of the same functions run there too). --full runs
# each cargo-fuzz target for FUZZ_SECS (default 600) seconds, one at a time, in one process (the
# -jobs=1 equivalent without libFuzzer's fuzz-N.log redirection), and reports
# execs. Needs `cargo install cargo-fuzz`; nightly features come from RUSTC_BOOTSTRAP=1.
REL_SUITE=fuzz
source "$(dirname "$0")/../lib.sh"
cd "$REL_ROOT"
TARGETS=(signature_headers body_to_event)
[[ -f fuzz/fuzz_targets/status_request.rs ]] && TARGETS+=(status_request)
if [[ $REL_MODE != full ]]; then
  cargo test --locked --test it fuzz_corpus >"$REL_OUT/fuzz-corpus.log" 2>&1 \
    || { tail -30 "$REL_OUT/fuzz-corpus.log"; die "corpus replay failed"; }
  seeds=$(find fuzz/corpus -type f | wc -l)
  result "$(jq -nc --arg mode "$REL_MODE" --argjson seeds "$seeds" --arg t "${TARGETS[*]}" \
    '{suite:"fuzz", mode:$mode, targets:$t, corpus_replayed:$seeds, ok:true}')"
  exit 0
fi
command -v cargo-fuzz >/dev/null || die "cargo-fuzz not installed (cargo install cargo-fuzz)"
SECS=${FUZZ_SECS:-600}
for t in "${TARGETS[@]}"; do
  log "cargo fuzz run $t for ${SECS}s"
  work="$VX_WORK/corpus-$t"
  mkdir -p "$work"
  (cd fuzz && RUSTC_BOOTSTRAP=1 cargo fuzz run "$t" "$work" "corpus/$t" -- \
    -max_total_time="$SECS" -print_final_stats=1 -max_len=65536) \
    >"$REL_OUT/fuzz-$t.log" 2>&1 || { tail -40 "$REL_OUT/fuzz-$t.log"; die "fuzz target $t found a failure"; }
  execs=$(grep -E '^stat::number_of_executed_units' "$REL_OUT/fuzz-$t.log" | awk '{print $2}' | tail -1)
  cov=$(grep -E '#[0-9]+.*cov:' "$REL_OUT/fuzz-$t.log" | tail -1 | sed -E 's/.*cov: ([0-9]+).*/\1/')
  result "$(jq -nc --arg t "$t" --argjson s "$SECS" --argjson e "${execs:-0}" --arg cov "${cov:-?}" --arg load "$(load_note)" \
    '{suite:"fuzz", mode:"full", target:$t, seconds:$s, execs:$e, cov:$cov, crashes:0, loadavg:$load, ok:true}')"
done
