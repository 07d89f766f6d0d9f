#!/usr/bin/env bash
# Suite 5: upstream faults for the status service. The status service is not on this branch
# yet (src/status is a stub); until it is, this suite reports itself as skipped.
REL_SUITE=status
source "$(dirname "$0")/lib.sh"
if grep -q "not available in this build" "$REL_ROOT/src/status/mod.rs"; then
  log "skipped: the status service is not in this build"
  result "$(jq -nc --arg mode "$REL_MODE" '{suite:"status", mode:$mode, skipped:"status service not merged", ok:true}')"
  exit 0
fi
die "status suite not written yet"
