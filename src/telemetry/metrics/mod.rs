//! Metrics: the Prometheus recorder and the help text of every metric (here), the one way a
//! metric is recorded (`family.rs`), every metric the bridge has (`catalog.rs`), and the one
//! metric rendered by hand (`info.rs`).
//!
//! Labels are low-cardinality enums only: this module must never take a request_id, PII, a
//! body or a secret as a label value.

mod catalog;
mod family;
mod info;

pub use catalog::*;
pub use family::{Family, Handle, Labels};
pub use info::ServerInfoGauge;

use std::sync::OnceLock;

use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusHandle};

/// The Prometheus recorder, installed on first use (metrics are process-wide by nature).
pub fn metrics_handle() -> PrometheusHandle {
    static HANDLE: OnceLock<PrometheusHandle> = OnceLock::new();
    HANDLE
        .get_or_init(|| {
            let recorder = PrometheusBuilder::new()
                .set_buckets_for_metric(
                    metrics_exporter_prometheus::Matcher::Suffix("_seconds".into()),
                    &[
                        0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5,
                        5.0, 10.0,
                    ],
                )
                .map(|b| b.build_recorder())
                .unwrap_or_else(|_| PrometheusBuilder::new().build_recorder());
            let handle = recorder.handle();
            // Another recorder may already be installed (tests embedding us); then ours only renders.
            let _ = metrics::set_global_recorder(recorder);
            describe_metrics();
            start_upkeep(handle.clone());
            handle
        })
        .clone()
}

/// The `# HELP` text of every metric (the README's metrics table says the same; `promtool
/// check metrics` in scripts/chart/prometheus-check.sh wants one for each).
pub const METRIC_HELP: &[(&str, &str)] = &[
    ("vx_bridge_webhooks_total", "webhooks by how they ended"),
    (
        "vx_bridge_webhook_duration_seconds",
        "time to answer a webhook",
    ),
    ("vx_bridge_events_total", "events newly stored, by subject"),
    (
        "vx_bridge_publish_duration_seconds",
        "one JetStream publish attempt until its PubAck",
    ),
    (
        "vx_bridge_publish_outage_waits_total",
        "publishes that rode through a NATS outage, by how they ended",
    ),
    (
        "vx_bridge_publish_outage_wait_seconds",
        "a publish riding through a NATS outage, from its first attempt to its answer",
    ),
    ("vx_bridge_webhooks_in_flight", "webhooks being processed"),
    ("vx_bridge_nats_connected", "1 connected to NATS, 0 not"),
    ("vx_bridge_stream_ready", "1 the stream is in place, 0 not"),
    (
        "vx_bridge_webhook_body_limit_bytes",
        "the largest webhook body accepted now",
    ),
    (
        "vx_bridge_status_requests_total",
        "status requests by answer",
    ),
    (
        "vx_bridge_status_lookups_in_flight",
        "lookups waiting for an answer",
    ),
    (
        "vx_bridge_status_cache_total",
        "status cache (and coalescing) hits and misses",
    ),
    (
        "vx_bridge_upstream_lookups_total",
        "VX lookups, retries included",
    ),
    (
        "vx_bridge_upstream_lookup_duration_seconds",
        "one VX lookup, retries included",
    ),
    (
        "vx_bridge_upstream_request_duration_seconds",
        "each HTTP call to VX",
    ),
    (
        "vx_bridge_upstream_token_fetches_total",
        "OAuth tokens fetched",
    ),
    (
        "vx_bridge_upstream_circuit_state",
        "VX API circuit: 0 closed, 1 half-open, 2 open",
    ),
    (
        "vx_bridge_sessions_updates_total",
        "session view updates by outcome",
    ),
    (
        "vx_bridge_sessions_lookup_writes_total",
        "status lookups' VX answers written into the session view, by outcome",
    ),
    (
        "vx_bridge_sessions_pending",
        "events not yet projected into the session view",
    ),
    (
        "vx_bridge_sessions_ready",
        "1 the session bucket and its consumer are in place, 0 not",
    ),
    (
        "vx_bridge_reconcile_watched",
        "watched sessions: messages in the reconciler's work-queue stream, sampled every 2 s (every replica reports the whole stream: aggregate with max, not sum)",
    ),
    (
        "vx_bridge_reconcile_checks_total",
        "reconciler checks of watched sessions, by outcome",
    ),
    (
        "vx_bridge_reconcile_events_published_total",
        "events the reconciler newly stored (poll results and expiries), by kind; webhooks' are in vx_bridge_events_total",
    ),
    (
        "vx_bridge_reconcile_oldest_watch_age_seconds",
        "age since registration of the oldest watched session this replica saw delivered within the last two rounds (a round: the longest schedule delay + 30 s); a session finished in that time may still count; 0 when no session is watched",
    ),
];

/// Gauges whose name ends in `_seconds` (the others with that suffix are histograms).
const SECONDS_GAUGES: &[&str] = &["vx_bridge_reconcile_oldest_watch_age_seconds"];

/// Registers [`METRIC_HELP`] with the installed recorder (the type comes from the name).
fn describe_metrics() {
    for (name, help) in METRIC_HELP {
        if name.ends_with("_total") {
            metrics::describe_counter!(*name, *help);
        } else if name.ends_with("_seconds") && !SECONDS_GAUGES.contains(name) {
            metrics::describe_histogram!(*name, metrics::Unit::Seconds, *help);
        } else {
            metrics::describe_gauge!(*name, *help);
        }
    }
}

/// How often histogram samples are folded into their buckets.
pub const METRICS_UPKEEP: std::time::Duration = std::time::Duration::from_secs(5);

/// Name of the upkeep thread (15 characters: the Linux limit).
pub const METRICS_UPKEEP_THREAD: &str = "vx-metrics-upkp";

/// A recorder from `build_recorder` keeps every histogram sample until someone renders or runs
/// upkeep: without a Prometheus scraping `/metrics`, memory grew by every request (found by the
/// soak suite: +4.8 MB RSS over 121 k webhooks). This thread drains them every few seconds.
fn start_upkeep(handle: PrometheusHandle) {
    let spawned = std::thread::Builder::new()
        .name(METRICS_UPKEEP_THREAD.into())
        .spawn(move || loop {
            std::thread::sleep(METRICS_UPKEEP);
            handle.run_upkeep();
        });
    if let Err(e) = spawned {
        tracing::warn!(error = %e, "metrics upkeep thread not started; histogram samples are only drained by /metrics scrapes");
    }
}

#[cfg(test)]
mod upkeep_tests {
    use super::*;

    #[test]
    fn histogram_samples_are_drained_without_a_scrape() {
        // Regression (soak suite): samples piled up until /metrics was scraped.
        let _ = metrics_handle();
        // The thread names itself once it runs: look for up to 5 s.
        let named = || {
            std::fs::read_dir("/proc/self/task")
                .map(|d| {
                    d.filter_map(Result::ok)
                        .filter_map(|t| std::fs::read_to_string(t.path().join("comm")).ok())
                        .any(|c| c.trim() == METRICS_UPKEEP_THREAD)
                })
                .unwrap_or(true)
        };
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
        let mut found = named();
        while !found && std::time::Instant::now() < deadline {
            std::thread::sleep(std::time::Duration::from_millis(10));
            found = named();
        }
        assert!(found, "no {METRICS_UPKEEP_THREAD} thread");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_family_has_help_and_every_help_a_family() {
        let families = catalog::names();
        let helped: Vec<&str> = METRIC_HELP.iter().map(|(name, _)| *name).collect();
        for name in &families {
            assert!(helped.contains(name), "{name} has no help text");
        }
        for name in &helped {
            assert!(
                families.contains(name),
                "help for {name}, which no family records"
            );
        }
    }

    #[test]
    fn two_labels_index_every_pair_once() {
        let mut seen = [false; <(StatusEndpoint, StatusCode)>::COUNT];
        for pair in <(StatusEndpoint, StatusCode)>::values() {
            let i = pair.index();
            assert!(!seen[i], "{pair:?} shares index {i}");
            seen[i] = true;
        }
        assert!(seen.iter().all(|s| *s));
        assert_eq!(
            (StatusEndpoint::Result, StatusCode::Gone).pairs(),
            vec![("endpoint", "result"), ("code", "410")]
        );
    }

    #[test]
    fn a_recorded_series_renders_with_its_labels_and_value() {
        let handle = metrics_handle();
        RECONCILE_PUBLISHED
            .get(ReconcilePublished::Unrecognized)
            .increment(3);
        let text = handle.render();
        let line = text
            .lines()
            .find(|l| {
                l.starts_with("vx_bridge_reconcile_events_published_total{kind=\"unrecognized\"}")
            })
            .unwrap_or_else(|| panic!("no series in:\n{text}"));
        let value: f64 = line
            .rsplit(' ')
            .next()
            .and_then(|v| v.parse().ok())
            .unwrap_or(-1.0);
        assert!(value >= 3.0, "{line}");
    }
}
