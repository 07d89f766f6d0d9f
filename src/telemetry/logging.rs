//! Logging set-up: the global `tracing` subscriber (JSON or text on stderr), its filter, and
//! the OTLP span exporter when the binary is built with the `otlp` feature.
//!
//! This module must not log a body, a header value or a secret, and must not let async-nats log
//! at TRACE (it logs whole payloads there).

use tracing_subscriber::field::{RecordFields, VisitOutput as _};
use tracing_subscriber::fmt::format::{JsonFields, JsonVisitor, Writer};
use tracing_subscriber::fmt::{FormatFields, FormattedFields};

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
        LogFormat::Json => tracing_subscriber::fmt::layer()
            .json()
            .flatten_event(true)
            .with_current_span(true)
            .with_span_list(false)
            .fmt_fields(SpanJsonFields)
            .with_timer(crate::timestamp::LogTimer)
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

/// The JSON field formatter of spans: `tracing_subscriber`'s own, except that a field recorded
/// later (`span.record`, as the webhook span does for `trace_id`, `request_id` and `outcome`) is
/// appended to the span's JSON object instead of parsing the object and writing it again. The
/// text stays one JSON object; a field recorded twice appears twice and the log line shows the
/// last value, as with `JsonFields` (the event formatter reads the object into a map).
struct SpanJsonFields;

impl<'w> FormatFields<'w> for SpanJsonFields {
    fn format_fields<R: RecordFields>(&self, writer: Writer<'w>, fields: R) -> std::fmt::Result {
        JsonFields::new().format_fields(writer, fields)
    }

    fn add_fields(
        &self,
        current: &'w mut FormattedFields<Self>,
        fields: &tracing::span::Record<'_>,
    ) -> std::fmt::Result {
        let mut added = String::new();
        let mut visitor = JsonVisitor::new(&mut added);
        fields.record(&mut visitor);
        visitor.finish()?;
        splice_json_objects(&mut current.fields, &added);
        Ok(())
    }
}

/// Appends the members of the JSON object `added` to the JSON object `current` (either may be
/// empty text or `{}`).
fn splice_json_objects(current: &mut String, added: &str) {
    let members = added.strip_prefix('{').and_then(|a| a.strip_suffix('}'));
    let Some(members) = members.filter(|m| !m.is_empty()) else {
        return;
    };
    match current.strip_suffix('}') {
        Some(open) if open.len() > 1 => {
            current.truncate(open.len());
            current.push(',');
        }
        _ => {
            current.clear();
            current.push('{');
        }
    }
    current.push_str(members);
    current.push('}');
}

#[cfg(test)]
mod tests {
    use super::*;
    use tracing::level_filters::LevelFilter;

    #[test]
    fn span_fields_recorded_later_are_appended_as_json() {
        let mut s = String::new();
        splice_json_objects(&mut s, "{\"a\":1}");
        assert_eq!(s, "{\"a\":1}");
        splice_json_objects(&mut s, "{}");
        assert_eq!(s, "{\"a\":1}");
        splice_json_objects(&mut s, "{\"b\":\"x}\",\"c\":null}");
        assert_eq!(s, "{\"a\":1,\"b\":\"x}\",\"c\":null}");
        let mut empty = "{}".to_owned();
        splice_json_objects(&mut empty, "{\"d\":true}");
        assert_eq!(empty, "{\"d\":true}");
        let v: serde_json::Value = serde_json::from_str(&s).unwrap();
        assert_eq!(v["b"], "x}");
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
