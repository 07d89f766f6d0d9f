//! Telemetry: logs (`logging.rs`: the subscriber and its filter, OTLP span export;
//! `json_line.rs`: the JSON log line's span and event formatters), metrics
//! (`metrics/`: the Prometheus recorder, every metric's help, and every metric as a family of
//! handles keyed by a label enum) and trace context (`trace.rs`: W3C `traceparent`/`tracestate`).
//!
//! Logs are JSON (or text) through `tracing`, written where things happen; metrics use the
//! `metrics` facade with a Prometheus exporter, and every metric is recorded through its family
//! here (`WEBHOOKS.get(outcome).increment(1)`), never by a `metrics::` macro elsewhere. Nothing here ever records a body, a header value or a secret; labels are
//! low-cardinality enums only, never a request_id or PII. This module must not depend on the
//! parts it observes (event, nats, ingress, status, upstream): they call it, not the reverse.

mod json_line;
mod logging;
mod metrics;
mod trace;

pub use self::metrics::*;
pub use logging::{init_logging, log_filter, TelemetryGuard};
pub use trace::{continue_trace, TraceContext};

/// An error and its causes on one line, `outer: cause: root`, for the one log line (or reply)
/// at the edge where the error ends.
pub fn error_chain(e: &(dyn std::error::Error + 'static)) -> String {
    let mut out = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        let text = s.to_string();
        if !out.ends_with(&text) {
            out.push_str(": ");
            out.push_str(&text);
        }
        source = s.source();
    }
    out
}
