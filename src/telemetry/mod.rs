//! Telemetry: logs (`logging.rs`), metrics (`metrics.rs`) and trace context (`trace.rs`), and the
//! typed outcomes that are logged and counted in one place.
//!
//! Logs are JSON (or text) through `tracing`; metrics use the `metrics` facade with a Prometheus
//! exporter, and every metric is recorded through a typed outcome here, never by a `metrics::`
//! macro elsewhere. Nothing here ever records a body, a header value or a secret; labels are
//! low-cardinality enums only, never a request_id or PII. This module must not depend on the
//! parts it observes (event, nats, ingress, status, upstream): they call it, not the reverse.

mod logging;
mod metrics;
mod trace;

pub use self::metrics::*;
pub use logging::{init_logging, log_filter, TelemetryGuard};
pub use trace::{continue_trace, TraceContext};
