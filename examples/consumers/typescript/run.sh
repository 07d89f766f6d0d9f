#!/usr/bin/env bash
# Runs the TypeScript consumer kit: installs the pinned packages once (npm ci, from
# package-lock.json), type-checks, then runs consumer.ts with tsx.
#   run.sh               the consumer (configured by env, see ../README.md)
#   run.sh --self-test   the PII reader's self-test (pii-test.ts), no NATS needed
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
case "${1:-}" in
  --self-test) main=pii-test.ts ;;
  "") main=consumer.ts ;;
  *) echo "usage: $0 [--self-test]" >&2; exit 64 ;;
esac
if ! cmp -s "$here/package-lock.json" "$here/node_modules/.package-lock.json.ci" 2>/dev/null; then
  (cd "$here" && npm ci --no-audit --no-fund --silent)
  cp "$here/package-lock.json" "$here/node_modules/.package-lock.json.ci"
fi
"$here/node_modules/.bin/tsc" -p "$here/tsconfig.json"
# The handled-ids store (VX_STORE) and the session directory (VX_STATE_DIR) are relative to the
# caller's directory.
exec "$here/node_modules/.bin/tsx" "$here/$main"
