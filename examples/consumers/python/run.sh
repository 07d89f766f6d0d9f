#!/usr/bin/env bash
# Runs the Python consumer kit: makes its venv once (pinned requirements.txt), then consumer.py.
# VX_PY_VENV picks the venv's place (default: .venv beside this script).
#   run.sh               the consumer (configured by env, see ../README.md)
#   run.sh --self-test   the PII reader's self-test (test_pii.py), no NATS needed
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
venv="${VX_PY_VENV:-$here/.venv}"
if ! cmp -s "$here/requirements.txt" "$venv/.installed" 2>/dev/null; then
  rm -rf "$venv"
  python3 -m venv "$venv"
  "$venv/bin/pip" install -q --disable-pip-version-check -r "$here/requirements.txt"
  cp "$here/requirements.txt" "$venv/.installed"
fi
case "${1:-}" in
  --self-test) PYTHONPATH="$here" exec "$venv/bin/python" -u "$here/test_pii.py" ;;
  "") ;;
  *) echo "usage: $0 [--self-test]" >&2; exit 64 ;;
esac
# The handled-ids store (VX_STORE) and the session directory (VX_STATE_DIR) are relative to the
# caller's directory.
PYTHONPATH="$here" exec "$venv/bin/python" -u "$here/consumer.py"
