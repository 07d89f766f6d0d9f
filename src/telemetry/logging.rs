//! Logging set-up: the global `tracing` subscriber (JSON or text on stderr), its filter, and
//! the OTLP span exporter when the binary is built with the `otlp` feature.
//!
//! This module must not log a body, a header value or a secret, and must not let async-nats log
//! at TRACE (it logs whole payloads there).

use super::json_line::{JsonLine, SpanJsonFields};
use crate::config::{LogConfig, LogFormat};

/// Keeps the trace exporter (if any) alive; flushes and stops it when dropped.
#[derive(Default)]
pub struct TelemetryGuard {
    #[cfg(feature = "otlp")]
    provider: Option<opentelemetry_sdk::trace::SdkTracerProvider>,
}

impl Drop for TelemetryGuard {
    fn drop(&mut self) {
        #[cfg(feature = "otlp")]
        if let Some(p) = self.provider.take() {
            let _ = p.shutdown();
        }
    }
}

type BoxedLayer = Box<dyn tracing_subscriber::Layer<tracing_subscriber::Registry> + Send + Sync>;

/// The log filter for `level`. async-nats logs whole message payloads (which hold PII) at TRACE,
/// so it is capped at DEBUG whatever the level asks for.
pub fn log_filter(level: &str) -> tracing_subscriber::EnvFilter {
    let filter = tracing_subscriber::EnvFilter::try_new(level)
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    if filter.max_level_hint() == Some(tracing::level_filters::LevelFilter::TRACE) {
        match "async_nats=debug".parse() {
            Ok(cap) => filter.add_directive(cap),
            Err(_) => filter,
        }
    } else {
        filter
    }
}

/// Installs the global log subscriber (once; later calls are ignored), and the OTLP trace
/// exporter when `log.otlp_endpoint` is set (binary built with the `otlp` feature).
pub fn init_logging(cfg: &LogConfig) -> TelemetryGuard {
    use tracing_subscriber::layer::SubscriberExt as _;
    use tracing_subscriber::util::SubscriberInitExt as _;
    use tracing_subscriber::Layer as _;

    let filter = log_filter(&cfg.level);
    let fmt: BoxedLayer = match cfg.format {
        // What `.json().flatten_event(true).with_current_span(true).with_span_list(false)`
        // writes, with less work (`json_line`).
        LogFormat::Json => tracing_subscriber::fmt::layer()
            .with_ansi(false)
            .fmt_fields(SpanJsonFields)
            .event_format(JsonLine::new(crate::timestamp::LogTimer))
            .with_writer(std::io::stderr)
            .boxed(),
        LogFormat::Text => {
            use std::io::IsTerminal as _;
            tracing_subscriber::fmt::layer()
                .with_ansi(std::io::stderr().is_terminal())
                .with_timer(crate::timestamp::LogTimer)
                .with_writer(std::io::stderr)
                .boxed()
        }
    };
    #[allow(unused_mut)]
    let mut layers: Vec<BoxedLayer> = vec![fmt.with_filter(filter).boxed()];
    #[allow(unused_mut)]
    let mut guard = TelemetryGuard::default();
    #[cfg(feature = "otlp")]
    if let Some(endpoint) = &cfg.otlp_endpoint {
        match otel::layer(endpoint, &cfg.service_name) {
            Ok((layer, provider)) => {
                layers.push(layer);
                guard.provider = Some(provider);
            }
            Err(e) => eprintln!("OTLP trace export disabled: {e}"),
        }
    }
    let _ = tracing_subscriber::registry().with(layers).try_init();
    guard
}

#[cfg(test)]
mod tests {
    use super::*;
    use tracing::level_filters::LevelFilter;

    #[test]
    fn a_json_log_line_shows_the_span_fields_recorded_later_once_with_the_last_value() {
        use tracing_subscriber::layer::SubscriberExt as _;
        #[derive(Clone, Default)]
        struct Buf(std::sync::Arc<std::sync::Mutex<Vec<u8>>>);
        impl std::io::Write for Buf {
            fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
                self.0.lock().unwrap().extend_from_slice(b);
                Ok(b.len())
            }
            fn flush(&mut self) -> std::io::Result<()> {
                Ok(())
            }
        }
        let buf = Buf::default();
        let writer = buf.clone();
        let layer = tracing_subscriber::fmt::layer()
            .json()
            .flatten_event(true)
            .with_current_span(true)
            .with_span_list(false)
            .fmt_fields(SpanJsonFields)
            .with_writer(move || writer.clone());
        let subscriber = tracing_subscriber::registry().with(layer);
        tracing::subscriber::with_default(subscriber, || {
            let span = tracing::info_span!(
                "webhook",
                request_id = tracing::field::Empty,
                outcome = tracing::field::Empty,
                n = 1u64
            );
            span.record("request_id", "r-1");
            span.record("outcome", "first");
            span.record("outcome", "accepted");
            let _enter = span.enter();
            tracing::info!(seq = 7u64, "webhook stored");
        });
        let text = String::from_utf8(buf.0.lock().unwrap().clone()).unwrap();
        let line: serde_json::Value = serde_json::from_str(text.trim()).unwrap();
        assert_eq!(line["span"]["request_id"], "r-1");
        assert_eq!(line["span"]["outcome"], "accepted");
        assert_eq!(line["span"]["n"], 1);
        assert_eq!(line["span"]["name"], "webhook");
        assert_eq!(line["seq"], 7);
        assert_eq!(line["message"], "webhook stored");
    }

    #[test]
    fn async_nats_is_capped_at_debug_because_its_trace_logs_payloads() {
        for level in [
            "trace",
            "vx_bridge=trace,async_nats=trace",
            "async_nats=trace",
        ] {
            let f = log_filter(level).to_string();
            assert!(f.contains("async_nats=debug"), "{level}: {f}");
            assert!(!f.contains("async_nats=trace"), "{level}: {f}");
        }
        assert_eq!(log_filter("info").max_level_hint(), Some(LevelFilter::INFO));
        assert!(!log_filter("debug").to_string().contains("async_nats"));
    }
}

#[cfg(feature = "otlp")]
mod otel {
    //! OTLP/HTTP export of `tracing` spans.

    use opentelemetry::trace::TracerProvider as _;
    use opentelemetry_otlp::WithExportConfig as _;

    use super::BoxedLayer;

    pub(super) fn layer(
        endpoint: &str,
        service_name: &str,
    ) -> anyhow::Result<(BoxedLayer, opentelemetry_sdk::trace::SdkTracerProvider)> {
        use tracing_subscriber::Layer as _;
        let exporter = opentelemetry_otlp::SpanExporter::builder()
            .with_http()
            .with_endpoint(endpoint)
            .build()?;
        let resource = opentelemetry_sdk::Resource::builder()
            .with_service_name(service_name.to_owned())
            .build();
        let provider = opentelemetry_sdk::trace::SdkTracerProvider::builder()
            .with_batch_exporter(exporter)
            .with_resource(resource)
            .build();
        let tracer = provider.tracer("vx-bridge");
        let layer = tracing_opentelemetry::layer()
            .with_tracer(tracer)
            .with_filter(
                tracing_subscriber::filter::Targets::new()
                    .with_target("vx_bridge", tracing::Level::INFO),
            )
            .boxed();
        Ok((layer, provider))
    }
}
