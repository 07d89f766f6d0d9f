#!/usr/bin/env python3
"""Helpers of scripts/chart/prometheus-check.sh and scripts/chart/chart-check.sh for the operator's view:
the alert rules (helm/vx-bridge/files/alerts.yaml) and the Grafana dashboard
(helm/vx-bridge/files/dashboard.json). Python 3 with PyYAML only; talks to a local Prometheus
over HTTP; never prints a secret (there is none in what it reads).

  render-rules RENDER.yaml OUT.yaml
      From a `helm template` output: the PrometheusRule's groups plus one recording rule per
      dashboard query (from the dashboard ConfigMap), as a rule file for `promtool check rules`,
      so that every PromQL the chart ships is parsed by the real tool. Exit 1 on a ConfigMap
      whose dashboard is not JSON or has a panel without a query.
  healthy-test SCRAPE.prom OUT.yaml RULES
      A promtool test from a scrape of the real binary: its series, held for 30 minutes (counters
      growing at the rate seen between two scrapes), and no alert may fire. A gauge the binary
      gets wrong (vx_bridge_nats_connected stuck at 0) makes this test fail.
  mutants RULES TESTS
      Proves each alert's promtool cases can fail: with its expr made never-true its firing
      cases alone must fail, made always-true its silent cases alone must fail.
  live PROM_URL RULES DASHBOARD START END SCRAPE
      Against a real Prometheus that scraped the bridge during the load: every dashboard query
      (range over START..END) returns a finite value; every alert expression is valid, its query
      part returns data, and each alert ALERT_MODE expects to fire became active (ALERTS).
"""
import copy
import json
import math
import os
import re
import subprocess
import sys
import tempfile
import time
import urllib.parse
import urllib.request

import yaml

# What the live check expects of each alert: "fires" (the load provokes it: it must appear in
# ALERTS, pending or firing); "data" (the load does not provoke it: its query part must return
# series); "info" (the NATS server version gauge: if the scrape has no
# vx_bridge_nats_server_info it is skipped, else it must fire exactly when `support` says so).
# A new alert needs a line here (the check fails on an alert without one).
ALERT_MODE = {
    "VxBridgeEventsNotStored": "fires",
    "VxBridgeNatsDisconnected": "fires",
    "VxBridgeStreamNotReady": "data",
    "VxBridgeUnauthorizedWebhooks": "fires",
    "VxBridgeRejectedBodies": "fires",
    "VxBridgeUnrecognizedStatus": "fires",
    "VxBridgeSlowPublishes": "data",
    "VxBridgeUpstreamCircuitOpen": "fires",
    "VxBridgeStatusErrors": "fires",
    "VxBridgeNatsServerDataLoss": "info:data_loss",
    "VxBridgeNatsServerUnsupported": "info:unsupported",
}

# Grafana's variables, as the live check and promtool see them: every job and namespace.
GRAFANA_VARS = {"$__rate_interval": "10s", "$namespace": ".*", "$job": ".*"}

CMP = re.compile(r"^(?P<query>.*\S)\s*(?P<op>==|!=|>=|<=|>|<)\s*(?P<num>-?[0-9.]+)\s*$", re.S)


def alerts(path):
    doc = yaml.safe_load(open(path))
    return [r for g in doc["groups"] for r in g["rules"] if "alert" in r]


def dashboard_exprs(dash):
    """(panel title, expr) of every query of the dashboard, Grafana variables substituted."""
    out = []
    for p in dash.get("panels", []):
        if p.get("type") == "row":
            continue
        targets = p.get("targets") or []
        if not targets:
            raise SystemExit(f"dashboard panel {p.get('title')!r} has no query")
        for t in targets:
            e = t.get("expr", "")
            for k, v in GRAFANA_VARS.items():
                e = e.replace(k, v)
            if "$" in e or not e.strip():
                raise SystemExit(f"dashboard panel {p.get('title')!r}: unresolved query {e!r}")
            out.append((p["title"], e))
    return out


def render_rules(render, out):
    groups = []
    for doc in yaml.safe_load_all(open(render)):
        if not doc:
            continue
        if doc.get("kind") == "PrometheusRule":
            groups += doc["spec"]["groups"]
        elif doc.get("kind") == "ConfigMap" and "vx-bridge.json" in (doc.get("data") or {}):
            try:
                dash = json.loads(doc["data"]["vx-bridge.json"])
            except ValueError as e:
                raise SystemExit(f"dashboard ConfigMap: not JSON: {e}")
            rules = [{"record": f"dashboard:panel_{i}", "expr": e}
                     for i, (_, e) in enumerate(dashboard_exprs(dash))]
            groups.append({"name": "dashboard-queries", "rules": rules})
    # An empty group list is a valid rule file: a scenario without rule or dashboard passes.
    yaml.safe_dump({"groups": groups}, open(out, "w"), sort_keys=False)
    print(f"{sum(len(g['rules']) for g in groups)} rules and queries from {render}")


SAMPLE = re.compile(r"^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{.*\})?\s+(\S+)")


def parse_scrape(text):
    """{series text: value} of the vx_bridge_ samples of a Prometheus text exposition."""
    out = {}
    for line in text.splitlines():
        m = SAMPLE.match(line)
        if m and m.group(1).startswith("vx_bridge_"):
            out[m.group(1) + (m.group(2) or "")] = float(m.group(3))
    return out


def with_labels(series, extra):
    name, _, rest = series.partition("{")
    labels = rest.rstrip("}")
    return name + "{" + extra + ("," + labels if labels else "") + "}"


def healthy_test(scrape, out, rules):
    """scrape: two expositions joined by a line `# SCRAPE 2 after N s`."""
    text = open(scrape).read()
    first, _, second = text.partition("# SCRAPE 2 after ")
    secs, _, second = second.partition("\n")
    secs = float(secs.split()[0])
    a = parse_scrape(first)
    b = parse_scrape(second)
    series = []
    for s, v in sorted(b.items()):
        v0 = a.get(s, 0.0)
        counter = s.split("{")[0].endswith(("_total", "_bucket", "_count", "_sum"))
        # Per 1m step: a counter grows as it did between the scrapes; a gauge holds its value.
        step = max(v - v0, 0.0) * 60.0 / secs if counter else 0.0
        series.append({"series": with_labels(s, 'job="vx-bridge",instance="scraped"'),
                       "values": f"{v}+{step}x30"})
    names = [r["alert"] for r in alerts(rules)]
    test = {
        "rule_files": [os.path.abspath(rules)],
        "evaluation_interval": "1m",
        "tests": [{
            "name": "healthy, as scraped from the real binary",
            "interval": "1m",
            "input_series": series,
            "alert_rule_test": [{"eval_time": "25m", "alertname": n, "exp_alerts": []} for n in names],
        }],
    }
    yaml.safe_dump(test, open(out, "w"), sort_keys=False)
    connected = [v for s, v in b.items() if s.startswith("vx_bridge_nats_connected")]
    print(f"{len(series)} series from the scrape (vx_bridge_nats_connected = {connected}), "
          f"{len(names)} alerts expected silent")


def promtool_test(path):
    r = subprocess.run(["promtool", "test", "rules", path], capture_output=True, text=True)
    return r.returncode == 0, r.stdout + r.stderr


def mutants(rules, tests):
    base = yaml.safe_load(open(rules))
    test = yaml.safe_load(open(tests))
    bad = 0
    with tempfile.TemporaryDirectory() as tmp:
        for name in [r["alert"] for r in alerts(rules)]:
            for kind, expr in (("never", "vector(1) < 0"), ("always", "vector(1) > 0")):
                mutant = copy.deepcopy(base)
                for g in mutant["groups"]:
                    for r in g["rules"]:
                        if r.get("alert") == name:
                            r["expr"] = expr
                            r.pop("for", None)
                rf = os.path.join(tmp, "rules.yaml")
                yaml.safe_dump(mutant, open(rf, "w"))
                t = copy.deepcopy(test)
                t["rule_files"] = [rf]
                # Only this alert's firing cases (never-true) or silent ones (always-true):
                # each kind must catch its mutant by itself.
                for case in t["tests"]:
                    case["alert_rule_test"] = [
                        c for c in case.get("alert_rule_test", [])
                        if c["alertname"] == name and bool(c.get("exp_alerts")) == (kind == "never")]
                t["tests"] = [c for c in t["tests"] if c["alert_rule_test"]]
                tf = os.path.join(tmp, "test.yaml")
                yaml.safe_dump(t, open(tf, "w"))
                ok, _ = promtool_test(tf)
                verdict = "caught" if not ok else "NOT CAUGHT"
                bad += ok
                print(f"  {name:32} expr {kind}-true: {verdict}")
    if bad:
        raise SystemExit(f"{bad} mutant(s) not caught: an alert lacks a firing or a silent case")


def query(prom, path, **params):
    url = f"{prom}/api/v1/{path}?" + urllib.parse.urlencode(params)
    try:
        with urllib.request.urlopen(url, timeout=10) as r:
            body = json.load(r)
    except urllib.error.HTTPError as e:
        body = json.load(e)
    if body.get("status") != "success":
        return None, body.get("error", "query failed")
    return body["data"]["result"], None


def finite(result):
    for s in result:
        for _, v in s.get("values", [s.get("value", [0, "NaN"])]):
            if math.isfinite(float(v)):
                return True
    return False


def live(prom, rules, dashboard, start, end, scrape):
    failures = []
    span = f"{int(time.time() - float(start)) + 30}s"
    for title, e in dashboard_exprs(json.load(open(dashboard))):
        res, err = query(prom, "query_range", query=e, start=start, end=end, step="1")
        ok = res is not None and finite(res)
        print(f"  panel {title:30} {'data' if ok else 'NO DATA'}: {e[:90]}")
        if not ok:
            failures.append(f"panel {title!r}: {err or 'no finite value over the run'}")
    scraped = open(scrape).read()
    info_series = re.findall(r'^vx_bridge_nats_server_info\{[^}]*support="([a-z_]+)"', scraped, re.M)
    names = set()
    for a in alerts(rules):
        name, e = a["alert"], a["expr"].strip()
        names.add(name)
        mode = ALERT_MODE.get(name)
        if mode is None:
            failures.append(f"{name}: no line in ALERT_MODE (scripts/chart/prometheus-check.py)")
            continue
        res, err = query(prom, "query", query=e, time=end)
        if res is None:
            failures.append(f"{name}: invalid expression: {err}")
            continue
        m = CMP.match(e)
        if not m:
            failures.append(f"{name}: expr is not `<query> <comparison> <number>`")
            continue
        # Rules run every second; give an alert the faults provoke a few evaluations to show.
        deadline = time.monotonic() + (20 if mode == "fires" else 0)
        while True:
            active, _ = query(prom, "query", query=f'max_over_time(ALERTS{{alertname="{name}"}}[{span}])')
            was_active = bool(active)
            if was_active or time.monotonic() >= deadline:
                break
            time.sleep(0.5)
        inner, _ = query(prom, "query_range", query=m.group("query"), start=start, end=end, step="1")
        has_data = bool(inner) and finite(inner)
        if mode.startswith("info:"):
            if not info_series:
                print(f"  alert {name:32} skipped: vx_bridge_nats_server_info not exported yet")
                continue
            want = mode.split(":")[1] in info_series
            ok = was_active == want
            verdict = f"support={info_series} -> {'active' if was_active else 'silent'}"
        elif mode == "fires":
            ok, verdict = was_active, "became active" if was_active else "NEVER ACTIVE"
        else:
            ok, verdict = has_data, "query has data" if has_data else "QUERY HAS NO DATA"
        print(f"  alert {name:32} {mode:6} {verdict}")
        if not ok:
            failures.append(f"{name} ({mode}): {verdict}")
    for name in set(ALERT_MODE) - names:
        failures.append(f"ALERT_MODE names {name}, which is no alert")
    if failures:
        print("FAILED:\n  " + "\n  ".join(failures))
        raise SystemExit(1)


def main():
    cmd, args = sys.argv[1], sys.argv[2:]
    {"render-rules": render_rules, "healthy-test": healthy_test, "mutants": mutants,
     "live": live}[cmd](*args)


if __name__ == "__main__":
    main()
