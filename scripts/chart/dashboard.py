#!/usr/bin/env python3
"""Generates the vx-bridge Grafana dashboard with grafana-foundation-sdk (Grafana's own typed
builders; pinned in scripts/chart/chart-tools.sh) and prints its JSON. The output is committed as
helm/vx-bridge/files/dashboard.json (docs/grafana-dashboard.json links to it); the chart ships
it as a ConfigMap (grafanaDashboard.enabled), chart-check.sh checks the file equals this output,
and scripts/chart/prometheus-check.sh runs every query against a real Prometheus scraping the real
bridge: a panel without data fails there.

Usage: dashboard.py [OUT.json]   (without OUT: print)

Adding a panel: one `ts(...)` or `stat(...)` line below, then regenerate; the live check picks
its queries up by itself.
"""
import json
import sys

from grafana_foundation_sdk.builders import common as cb
from grafana_foundation_sdk.builders import dashboard as d
from grafana_foundation_sdk.builders import prometheus, stat as statb, timeseries
from grafana_foundation_sdk.cog.encoder import JSONEncoder
from grafana_foundation_sdk.models import common as c
from grafana_foundation_sdk.models import dashboard as m

DS = m.DataSourceRef(type_val="prometheus", uid="${datasource}")
# Every query selects on these, so one dashboard serves every release and namespace.
SEL = 'namespace=~"$namespace", job=~"$job"'


def q(expr, legend):
    return prometheus.Dataquery().expr(expr).legend_format(legend).datasource(DS)


def rate(metric, by, extra=""):
    sel = SEL + (", " + extra if extra else "")
    return f"sum by ({by}) (rate({metric}{{{sel}}}[$__rate_interval]))"


def quantiles(metric, by=""):
    grouping = f"{by}, le" if by else "le"
    return [
        q(f"histogram_quantile({p}, sum by ({grouping}) "
          f"(rate({metric}_bucket{{{SEL}}}[$__rate_interval])))", f"p{int(p * 100)}")
        for p in (0.5, 0.99)
    ]


def ts(title, desc, unit, targets, w=8):
    p = (timeseries.Panel().title(title).description(desc).unit(unit).datasource(DS)
         .height(8).span(w).fill_opacity(10).line_width(1))
    for i, t in enumerate(targets):
        p = p.with_target(t.ref_id(chr(ord("A") + i)))
    return p


def state(title, desc, expr, legend, mapping, w=8):
    """A stat panel of a small-integer gauge, each value shown as words and a colour."""
    vm = m.ValueMap(options={
        str(v): m.ValueMappingResult(text=text, color=color, index=i)
        for i, (v, text, color) in enumerate(mapping)
    })
    return (statb.Panel().title(title).description(desc).datasource(DS).height(4).span(w)
            .mappings([vm]).color_mode(c.BigValueColorMode.BACKGROUND)
            .graph_mode(c.BigValueGraphMode.NONE)
            .reduce_options(cb.ReduceDataOptions().calcs(["lastNotNull"]))
            .with_target(q(expr, legend).ref_id("A")))


UP_DOWN = [(0, "down", "red"), (1, "up", "green")]


def build():
    var = lambda name, metric: (d.QueryVariable(name).label(name)
                                .query(f"label_values({metric}, {name})").datasource(DS)
                                .multi(True).include_all(True).all_value(".*")
                                .refresh(m.VariableRefresh.ON_TIME_RANGE_CHANGED))
    dash = (d.Dashboard("vx-bridge").uid("vx-bridge").tags(["vx-bridge", "nats"])
            .description("VX webhooks to NATS JetStream, and status lookups: "
                         "docs/RUNBOOK.md says what to do when an alert fires.")
            .refresh("30s").time("now-1h", "now").timezone("browser").editable()
            .with_variable(d.DatasourceVariable("datasource").label("Data source").type("prometheus"))
            .with_variable(var("namespace", "vx_bridge_nats_connected"))
            .with_variable(var("job", "vx_bridge_nats_connected")))

    dash = (dash.with_row(d.Row("Webhooks"))
            .with_panel(ts("Webhooks by outcome", "Answers per second: accepted and duplicate are 202; "
                           "unavailable (503) means not stored.", "reqps",
                           [q(rate("vx_bridge_webhooks_total", "outcome"), "{{outcome}}")]))
            .with_panel(ts("Answer latency", "Time to answer a webhook, all outcomes.", "s",
                           quantiles("vx_bridge_webhook_duration_seconds")))
            .with_panel(ts("Publish latency (to PubAck)", "JetStream publish until PubAck.", "s",
                           quantiles("vx_bridge_publish_duration_seconds")))
            .with_panel(ts("Events stored by type", "New events per second by subject; "
                           "unrecognized: VX sent a new status value.", "ops",
                           [q(rate("vx_bridge_events_total", "type"), "{{type}}")]))
            .with_panel(ts("Publishes by result", "ok, or why the PubAck did not come.", "ops",
                           [q(rate("vx_bridge_publish_duration_seconds_count", "result"), "{{result}}")]))
            .with_panel(ts("Webhooks in flight", "Being processed (limit: http.max_in_flight).", "short",
                           [q(f"sum by (instance) (vx_bridge_webhooks_in_flight{{{SEL}}})", "{{instance}}")])))

    dash = (dash.with_row(d.Row("NATS"))
            .with_panel(state("NATS connected", "Per pod: 0 means no webhook can be stored.",
                              f"min by (instance) (vx_bridge_nats_connected{{{SEL}}})", "{{instance}}",
                              UP_DOWN, w=12))
            .with_panel(state("Stream ready", "Per ingress pod: the stream is in place.",
                              f"min by (instance) (vx_bridge_stream_ready{{{SEL}}})", "{{instance}}",
                              UP_DOWN, w=12)))

    dash = (dash.with_row(d.Row("Status service and VX API"))
            .with_panel(ts("Status requests by code", "200 answered; 400/404 the requester's; "
                           "502/503/504 trouble with the VX API.", "reqps",
                           [q(rate("vx_bridge_status_requests_total", "endpoint, code"), "{{endpoint}} {{code}}")]))
            .with_panel(ts("Cache hit ratio", "Lookups answered from the cache (or a shared call).",
                           "percentunit",
                           [q(rate("vx_bridge_status_cache_total", "job", 'result="hit"') + " / "
                              + rate("vx_bridge_status_cache_total", "job"), "{{job}}")]))
            .with_panel(ts("Upstream lookup latency", "One VX lookup, retries included.", "s",
                           quantiles("vx_bridge_upstream_lookup_duration_seconds")))
            .with_panel(ts("Upstream lookups by outcome", "VX lookups by how they ended.", "ops",
                           [q(rate("vx_bridge_upstream_lookups_total", "outcome"), "{{outcome}}")]))
            .with_panel(ts("VX API calls by class", "Each HTTP call to VX.", "reqps",
                           [q(rate("vx_bridge_upstream_request_duration_seconds_count", "class"), "{{class}}")]))
            .with_panel(state("VX API circuit", "Open: lookups fail fast with 503; probes close it.",
                              f"max by (instance) (vx_bridge_upstream_circuit_state{{{SEL}}})",
                              "{{instance}}",
                              [(0, "closed", "green"), (1, "half-open", "orange"), (2, "open", "red")])))
    return dash.build()


def main():
    text = json.dumps(json.loads(JSONEncoder().encode(build())), indent=2, sort_keys=True) + "\n"
    if len(sys.argv) > 1:
        open(sys.argv[1], "w").write(text)
    else:
        sys.stdout.write(text)


if __name__ == "__main__":
    main()
