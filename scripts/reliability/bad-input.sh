#!/usr/bin/env bash
# Suite 6: the bad-input catalogue, a table-driven integration test (tests/it/bad_input.rs) that
# is also part of `cargo test`. Here it runs alone and its per-case lines are kept.
REL_SUITE=bad-input
source "$(dirname "$0")/../lib.sh"
cd "$REL_ROOT"
cargo test --locked --test it bad_input -- --nocapture >"$REL_OUT/bad-input.log" 2>&1 \
  || { tail -40 "$REL_OUT/bad-input.log"; die "bad-input catalogue failed"; }
line=$(grep -E '^bad-input: [0-9]+ cases' "$REL_OUT/bad-input.log" | tail -1)
cases=$(awk '{print $2}' <<<"$line")
stored=$(awk '{print $4}' <<<"$line")
result "$(jq -nc --arg mode "$REL_MODE" --argjson cases "$cases" --argjson stored "$stored" --arg load "$(load_note)" \
  '{suite:"bad-input", mode:$mode, cases:$cases, failed:0, stored_as_expected:$stored, loadavg:$load, ok:true}')"
