#!/usr/bin/env bash
# Validates the contract documents with real parsers from the registries:
#  - schemas/openapi.yaml with openapi-spec-validator (PyPI), plus every file $ref it makes;
#  - schemas/asyncapi.yaml (when present) with the official @asyncapi/parser (npm);
#  - every schemas/*.schema.json against the JSON Schema draft 2020-12 meta-schema (PyPI jsonschema).
# Tools are installed once, pinned, under target/contract-tools/. Exits non-zero on any failure.
set -euo pipefail
cd "$(dirname "$0")/../.."
tools=target/contract-tools
mkdir -p "$tools"

if [ ! -x "$tools/venv/bin/openapi-spec-validator" ]; then
  python3 -m venv "$tools/venv"
  "$tools/venv/bin/pip" install -q --disable-pip-version-check \
    'openapi-spec-validator==0.7.2' 'jsonschema==4.26.0' 'PyYAML==6.0.4'
fi
if [ -f schemas/asyncapi.yaml ] && [ ! -d "$tools/node/node_modules/@asyncapi/parser" ]; then
  mkdir -p "$tools/node"
  [ -f "$tools/node/package.json" ] || (cd "$tools/node" && npm init -y >/dev/null)
  (cd "$tools/node" && npm install --no-audit --no-fund --silent '@asyncapi/parser@3.6.6')
fi

echo "--- JSON Schemas (draft 2020-12 meta-schema)"
"$tools/venv/bin/python" - <<'PY'
import json, pathlib, sys
from jsonschema import Draft202012Validator
bad = 0
for p in sorted(pathlib.Path("schemas").glob("*.schema.json")):
    try:
        Draft202012Validator.check_schema(json.loads(p.read_text()))
        print(f"{p}: OK")
    except Exception as e:
        bad += 1
        print(f"{p}: INVALID: {e}")
sys.exit(1 if bad else 0)
PY

echo "--- OpenAPI"
"$tools/venv/bin/openapi-spec-validator" schemas/openapi.yaml
"$tools/venv/bin/python" - <<'PY'
import pathlib, sys, yaml
def refs(node):
    if isinstance(node, dict):
        for k, v in node.items():
            if k == "$ref" and isinstance(v, str):
                yield v
            else:
                yield from refs(v)
    elif isinstance(node, list):
        for v in node:
            yield from refs(v)
doc = yaml.safe_load(pathlib.Path("schemas/openapi.yaml").read_text())
missing = [r for r in refs(doc) if not r.startswith("#") and not (pathlib.Path("schemas") / r.split("#")[0]).is_file()]
for r in missing:
    print(f"schemas/openapi.yaml: $ref to a missing file: {r}")
sys.exit(1 if missing else 0)
PY

if [ -f schemas/asyncapi.yaml ]; then
  echo "--- AsyncAPI"
  cp scripts/contracts/asyncapi-validate.mjs "$tools/node/asyncapi-validate.mjs"
  node "$tools/node/asyncapi-validate.mjs" "$PWD/schemas/asyncapi.yaml"
fi
echo "contracts OK"
