#!/usr/bin/env bash
# Runs the TypeScript consumer kit: installs the pinned packages once (npm ci, from
# package-lock.json), type-checks, then runs consumer.ts with tsx.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
if ! cmp -s "$here/package-lock.json" "$here/node_modules/.package-lock.json.ci" 2>/dev/null; then
  (cd "$here" && npm ci --no-audit --no-fund --silent)
  cp "$here/package-lock.json" "$here/node_modules/.package-lock.json.ci"
fi
"$here/node_modules/.bin/tsc" -p "$here/tsconfig.json"
# The handled-ids store (VX_STORE) is relative to the caller's directory.
exec "$here/node_modules/.bin/tsx" "$here/consumer.ts"
