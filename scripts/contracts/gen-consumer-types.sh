#!/usr/bin/env bash
# Generates the consumer kits' typed models from the JSON Schemas (schemas/*.schema.json):
#   - Python pydantic v2 models: examples/consumers/python/vx_events/ (datamodel-code-generator,
#     pinned with its whole dependency set in examples/consumers/python/requirements-gen.txt,
#     installed once into a venv under target/consumer-tools/);
#   - TypeScript types: examples/consumers/typescript/generated/ (json-schema-to-typescript,
#     pinned in examples/consumers/typescript/package-lock.json, installed with `npm ci`).
#
#   scripts/contracts/gen-consumer-types.sh           regenerate the committed files
#   scripts/contracts/gen-consumer-types.sh --check   regenerate into a temp dir and fail (exit 1, with the
#                                           diff) when the committed files differ (CI drift check)
set -euo pipefail
cd "$(dirname "$0")/../.."
root=$PWD
check=0
case "${1:-}" in
  --check) check=1 ;;
  "") ;;
  *) echo "usage: $0 [--check]" >&2; exit 64 ;;
esac

py_dir=examples/consumers/python
ts_dir=examples/consumers/typescript
tools=target/consumer-tools
venv=$tools/gen-venv
req=$py_dir/requirements-gen.txt

# The generator venv, rebuilt when the pins change.
if ! cmp -s "$req" "$venv/.installed" 2>/dev/null; then
  rm -rf "$venv"
  python3 -m venv "$venv"
  "$venv/bin/pip" install -q --disable-pip-version-check -r "$req"
  cp "$req" "$venv/.installed"
fi
if [ ! -x "$ts_dir/node_modules/.bin/json2ts" ] || ! cmp -s "$ts_dir/package-lock.json" "$ts_dir/node_modules/.package-lock.json.ci" 2>/dev/null; then
  (cd "$ts_dir" && npm ci --no-audit --no-fund --silent)
  cp "$ts_dir/package-lock.json" "$ts_dir/node_modules/.package-lock.json.ci"
fi

out=$(mktemp -d "${TMPDIR:-/tmp}/vx-gen.XXXXXX")
trap 'rm -rf "$out"' EXIT
# The schemas alone (schemas/ also holds the OpenAPI and AsyncAPI documents); $refs between
# them are by file name, so they resolve inside the copy.
mkdir -p "$out/schemas" "$out/python" "$out/typescript"
cp schemas/*.schema.json "$out/schemas/"

# (Its FutureWarnings are about its own future defaults; the options below are all explicit.)
PYTHONWARNINGS=ignore::FutureWarning "$venv/bin/datamodel-codegen" --input "$out/schemas" --input-file-type jsonschema \
  --output "$out/python/vx_events" --output-model-type pydantic_v2.BaseModel \
  --target-python-version 3.10 --formatters black isort --disable-timestamp \
  --use-schema-description --field-constraints --use-double-quotes \
  --use-standard-collections --use-union-operator --enum-field-as-literal all
# Paths in the generated headers are the temp dir's: make them the repository's.
sed -i "s#$out/schemas/#schemas/#g" "$out"/python/vx_events/*.py

(cd "$out/schemas" && "$root/$ts_dir/node_modules/.bin/json2ts" -i '*.schema.json' -o "$out/typescript/generated")

if ((check)); then
  rc=0
  diff -ru "$py_dir/vx_events" "$out/python/vx_events" || rc=1
  diff -ru "$ts_dir/generated" "$out/typescript/generated" || rc=1
  if ((rc)); then
    echo "gen-consumer-types: the generated types differ from schemas/: run scripts/contracts/gen-consumer-types.sh and commit" >&2
    exit 1
  fi
  echo "gen-consumer-types: generated types match schemas/"
else
  rm -rf "$py_dir/vx_events" "$ts_dir/generated"
  cp -r "$out/python/vx_events" "$py_dir/vx_events"
  cp -r "$out/typescript/generated" "$ts_dir/generated"
  echo "gen-consumer-types: wrote $py_dir/vx_events/ and $ts_dir/generated/"
fi
