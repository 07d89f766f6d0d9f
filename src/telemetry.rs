//! Logging and metrics set-up, and the typed outcomes that are logged and counted in one place.
//!
//! Logs are JSON (or text) through `tracing`; nothing here ever records a body, a header value or
//! a secret. Metrics use the `metrics` facade with a Prometheus exporter; labels are
//! low-cardinality enums only, never a request_id or PII.

use std::sync::OnceLock;
use std::time::Duration;

use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusHandle};

use crate::config::{LogConfig, LogFormat};

/// Installs the global log subscriber (once; later calls are ignored).
pub fn init_logging(cfg: &LogConfig) {
    let filter = tracing_subscriber::EnvFilter::try_new(&cfg.level)
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    let result = match cfg.format {
        LogFormat::Json => builder
            .json()
            .flatten_event(true)
            .with_current_span(true)
            .with_span_list(false)
            .try_init(),
        LogFormat::Text => {
            use std::io::IsTerminal as _;
            builder
                .with_ansi(std::io::stderr().is_terminal())
                .try_init()
        }
    };
    drop(result);
}

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
            handle
        })
        .clone()
}

/// How a webhook ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WebhookOutcome {
    /// Stored (202).
    Accepted,
    /// Already stored (202, duplicate).
    Duplicate,
    /// Authentication failed (401).
    Unauthorized,
    /// Refused before authentication: size, content type, unreadable body.
    Invalid,
    /// Authenticated but not JSON or not schema-valid; kept on `rejected` (400/422).
    Rejected,
    /// Not stored (503).
    Unavailable,
    /// Over the in-flight limit (429).
    Throttled,
}

impl WebhookOutcome {
    /// Label value.
    pub fn label(self) -> &'static str {
        match self {
            WebhookOutcome::Accepted => "accepted",
            WebhookOutcome::Duplicate => "duplicate",
            WebhookOutcome::Unauthorized => "unauthorized",
            WebhookOutcome::Invalid => "invalid",
            WebhookOutcome::Rejected => "rejected",
            WebhookOutcome::Unavailable => "unavailable",
            WebhookOutcome::Throttled => "throttled",
        }
    }
}

/// Records how long a PubAck took, by result (`ok` or the error code).
pub fn record_publish(result: &'static str, took: Duration) {
    metrics::histogram!("vx_bridge_publish_duration_seconds", "result" => result)
        .record(took.as_secs_f64());
}

/// Sets the NATS connection gauge (1 connected, 0 not).
pub fn set_nats_connected(connected: bool) {
    metrics::gauge!("vx_bridge_nats_connected").set(if connected { 1.0 } else { 0.0 });
}

/// Sets the stream readiness gauge (1 ready, 0 not).
pub fn set_stream_ready(ready: bool) {
    metrics::gauge!("vx_bridge_stream_ready").set(if ready { 1.0 } else { 0.0 });
}

/// Counts a webhook and its handling time.
pub fn record_webhook(outcome: WebhookOutcome, took: Duration) {
    metrics::counter!("vx_bridge_webhooks_total", "outcome" => outcome.label()).increment(1);
    metrics::histogram!("vx_bridge_webhook_duration_seconds", "outcome" => outcome.label())
        .record(took.as_secs_f64());
}
