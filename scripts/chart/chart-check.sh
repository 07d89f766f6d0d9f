#!/usr/bin/env bash
# Chart check for helm/vx-bridge, run by .ci/run. For every scenario helm/vx-bridge/ci/*-values.yaml:
#   lint      helm lint --strict (includes values.schema.json), at each Kubernetes version
#   render    helm template at each Kubernetes version (1.29.0 and 1.36.0)
#   k8s       kubernetes-validate --strict: built-in kinds at that version, unknown fields rejected
#   models    kubernetes-models: types, enums, quantities; ServiceMonitor against its CRD models
#   dupkeys   yamllint key-duplicates on the rendered output (and yamllint on the values files)
#   drift     vx-bridge check-config on each rendered Deployment's config and secret files
#   promql    promtool check rules on the rendered PrometheusRule and on every query of the
#             rendered dashboard ConfigMap (scripts/chart/prometheus-check.py render-rules)
# plus chart/crate version agreement, the dashboard file equal to scripts/chart/dashboard.py's output,
# and helm/ci-broken-values.yaml on which EVERY check must fail.
#
# Usage: scripts/chart/chart-check.sh [VXB_BIN]   (or env VXB_BIN; default target/debug/vx-bridge,
#        already built). Tools are installed once into .cache/chart-tools (see chart-tools.sh).
# Exit 0 only when all checks pass on all scenarios and all checks fail on the broken file.
set -uo pipefail
cd "$(dirname "$0")/../.."
ROOT=$PWD CHART=helm/vx-bridge BROKEN=helm/ci-broken-values.yaml
VXB_BIN=${1:-${VXB_BIN:-target/debug/vx-bridge}}
KUBE_VERSIONS=(1.29.0 1.36.0)
export TOOLS=${TOOLS:-$ROOT/.cache/chart-tools}
T=$TOOLS
export HELM_CACHE_HOME=$T/helm-home/cache HELM_CONFIG_HOME=$T/helm-home/config HELM_DATA_HOME=$T/helm-home/data
start=$SECONDS

[ -x "$VXB_BIN" ] || { echo "chart-check: $VXB_BIN is not an executable vx-bridge binary (build it first)"; exit 2; }
command -v promtool >/dev/null || { echo "chart-check: promtool missing (Debian: apt-get install prometheus)"; exit 2; }
bash scripts/chart/chart-tools.sh || { echo "chart-check: cannot install the tools"; exit 2; }
cp scripts/chart/chart-k8s-models.mjs "$T/node/"   # ES modules resolve next to their node_modules
OUT=$(mktemp -d); trap 'rm -rf "$OUT"' EXIT
API=(--api-versions monitoring.coreos.com/v1)   # as if the ServiceMonitor CRD were installed
fails=() ; ran=0

# run NAME CHECK CMD...: runs a check, logging into $OUT/NAME.CHECK.log; returns its status.
run() {
  local name=$1 check=$2; shift 2
  "$@" >"$OUT/$name.$check.log" 2>&1
}

# check_set NAME VALUES EXPECT: all checks on one values file. EXPECT=pass or fail.
# For the broken file each check runs on its own and each must fail: the checks after
# render read a render made with --skip-schema-validation, so they see the output.
check_set() {
  local name=$1 values=$2 expect=$3 k ok skip=()
  [ "$expect" = fail ] && skip=(--skip-schema-validation)
  declare -A res=()
  for k in "${KUBE_VERSIONS[@]}"; do
    run "$name" "lint-$k" "$T/helm" lint --strict "$CHART" -f "$values" --kube-version "$k" -n ci
    res[lint]+=$?
    run "$name" "render-$k" "$T/helm" template ci "$CHART" -f "$values" --kube-version "$k" -n ci "${API[@]}"
    res[render]+=$?
    # The manifests for the next checks; for the broken file rendered past the schema.
    "$T/helm" template ci "$CHART" -f "$values" --kube-version "$k" -n ci "${API[@]}" "${skip[@]}" \
      >"$OUT/$name-$k.yaml" 2>/dev/null
    run "$name" "k8s-$k" "$T/venv/bin/kubernetes-validate" --strict --quiet -k "$k" "$OUT/$name-$k.yaml"
    res[k8s]+=$?
  done
  local m=$OUT/$name-${KUBE_VERSIONS[-1]}.yaml   # version-independent checks on the newest render
  run "$name" models node "$T/node/chart-k8s-models.mjs" "$m"; res[models]=$?
  run "$name" dupkeys "$T/venv/bin/yamllint" -f parsable -d '{rules: {key-duplicates: enable}}' "$values" "$m"
  res[dupkeys]=$?
  run "$name" drift "$T/venv/bin/python" scripts/chart/chart-drift.py "$VXB_BIN" "$m"; res[drift]=$?
  run "$name" promql bash -c '"$1" scripts/chart/prometheus-check.py render-rules "$2" "$3" && promtool check rules "$3"' \
    _ "$T/venv/bin/python" "$m" "$OUT/$name.rules.yaml"; res[promql]=$?
  local line="" c
  for c in lint render k8s models dupkeys drift promql; do
    ran=$((ran + 1))
    if [[ ${res[$c]} =~ ^0+$ ]]; then ok=pass; else ok=fail; fi
    if [ "$ok" = "$expect" ]; then line+=" $c:$([ "$expect" = pass ] && echo ok || echo caught)"
    else line+=" $c:BAD"; fails+=("$name/$c (expected $expect)"); fi
  done
  printf '%-22s%s\n' "$name" "$line"
  # Show what caught what (verdict lines only; no secret is ever printed by these tools).
  for c in lint-${KUBE_VERSIONS[-1]} render-${KUBE_VERSIONS[-1]} k8s-${KUBE_VERSIONS[-1]} models dupkeys drift promql; do
    local log=$OUT/$name.$c.log
    if [ "$expect" = fail ] || ! [[ ${res[${c%%-*}]} =~ ^0+$ ]] || [ "$c" = drift ]; then
      grep -E 'ERROR|Error|error|drift|invalid|duplication|fail' "$log" | grep -v '^Error: 1 chart' \
        | head -4 | cut -c1-220 | sed "s|$OUT/||; s/^/    $c: /"
    fi
  done
}

echo "chart-check: helm $("$T/helm" version --short), kubernetes ${KUBE_VERSIONS[*]}, binary $VXB_BIN"
# Chart and crate versions agree.
crate=$(sed -n 's/^version = "\(.*\)"/\1/p' Cargo.toml | head -1)
app=$(sed -n 's/^appVersion: "\(.*\)"/\1/p' "$CHART/Chart.yaml")
ran=$((ran + 1))
if [ "$crate" = "$app" ]; then echo "appVersion $app = crate version: ok"
else echo "appVersion $app != crate version $crate"; fails+=("appVersion"); fi
ran=$((ran + 1))
"$T/venv/bin/yamllint" -f parsable -d relaxed "$CHART/Chart.yaml" "$CHART/values.yaml" "$CHART"/ci/*-values.yaml >"$OUT/yamllint.log" 2>&1 \
  && ! grep -q error "$OUT/yamllint.log" && echo "yamllint values files: ok" || { cat "$OUT/yamllint.log"; fails+=("yamllint"); }

ran=$((ran + 1))   # the README's values table is the one generated from values.yaml
cp "$CHART/README.md" "$OUT/README.md"
"$T/venv/bin/python" scripts/chart/chart-values-table.py "$CHART/values.yaml" "$OUT/README.md" \
  && cmp -s "$CHART/README.md" "$OUT/README.md" && echo "README values table up to date: ok" \
  || { echo "README values table out of date: run scripts/chart/chart-values-table.py $CHART/values.yaml $CHART/README.md"
       fails+=("readme"); }

ran=$((ran + 1))   # the shipped dashboard is the generator's output
"$T/venv/bin/python" scripts/chart/dashboard.py "$OUT/dashboard.json" \
  && cmp -s "$CHART/files/dashboard.json" "$OUT/dashboard.json" && echo "dashboard up to date: ok" \
  || { echo "dashboard out of date: run $T/venv/bin/python scripts/chart/dashboard.py $CHART/files/dashboard.json"
       fails+=("dashboard"); }

for f in "$CHART"/ci/*-values.yaml; do
  check_set "$(basename "$f" -values.yaml)" "$f" pass
done
echo "-- deliberately broken values ($BROKEN): every check must fail"
check_set broken "$BROKEN" fail

echo "chart-check: $((SECONDS - start))s"
[ ${#fails[@]} -gt 0 ] && printf '  FAILED: %s\n' "${fails[@]}"
echo "chart-check: $((ran - ${#fails[@]})) passed, ${#fails[@]} failed"
[ ${#fails[@]} -eq 0 ]
