//! Logging set-up: the global `tracing` subscriber (JSON or text on stderr), its filter, and
//! the OTLP span exporter when the binary is built with the `otlp` feature.
//!
//! This module must not log a body, a header value or a secret, and must not let async-nats log
//! at TRACE (it logs whole payloads there).

use tracing_subscriber::field::RecordFields;
use tracing_subscriber::fmt::format::{JsonFields, Writer};
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

/// The JSON field formatter of spans: `tracing_subscriber`'s own for a new span; a field
/// recorded later (`span.record`, as the webhook span does for `trace_id`, `request_id` and
/// `outcome`) is written as a JSON member straight onto the span's object, instead of
/// collecting it into a map, parsing the object and writing it whole again. The text stays one
/// JSON object with each key once: a key recorded again takes the slow path (parse, replace,
/// write), keeping the last value as `JsonFields` does.
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
        let mut added = JsonMembers::default();
        fields.record(&mut added);
        let Ok(members) = String::from_utf8(added.text) else {
            return Err(std::fmt::Error);
        };
        if added.names.iter().any(|n| has_member(&current.fields, n)) {
            return merge_reparsed(&mut current.fields, &members);
        }
        splice_members(&mut current.fields, &members);
        Ok(())
    }
}

/// Span fields as JSON object members (`"name":value`, comma-separated), the values as
/// `JsonFields` writes them (`Debug` ones as strings; `log.` metadata skipped, `r#` dropped).
#[derive(Default)]
struct JsonMembers {
    text: Vec<u8>,
    names: Vec<&'static str>,
}

impl JsonMembers {
    fn member(&mut self, name: &'static str, value: impl serde::Serialize) {
        let name = name.strip_prefix("r#").unwrap_or(name);
        let start = self.text.len();
        if !self.text.is_empty() {
            self.text.push(b',');
        }
        let written = serde_json::to_writer(&mut self.text, name).and_then(|()| {
            self.text.push(b':');
            serde_json::to_writer(&mut self.text, &value)
        });
        if written.is_err() {
            self.text.truncate(start);
        } else {
            self.names.push(name);
        }
    }
}

impl tracing::field::Visit for JsonMembers {
    fn record_f64(&mut self, field: &tracing::field::Field, value: f64) {
        self.member(field.name(), serde_json::Value::from(value));
    }

    fn record_i64(&mut self, field: &tracing::field::Field, value: i64) {
        self.member(field.name(), value);
    }

    fn record_u64(&mut self, field: &tracing::field::Field, value: u64) {
        self.member(field.name(), value);
    }

    fn record_bool(&mut self, field: &tracing::field::Field, value: bool) {
        self.member(field.name(), value);
    }

    fn record_str(&mut self, field: &tracing::field::Field, value: &str) {
        self.member(field.name(), value);
    }

    fn record_bytes(&mut self, field: &tracing::field::Field, value: &[u8]) {
        self.member(field.name(), value);
    }

    fn record_debug(&mut self, field: &tracing::field::Field, value: &dyn std::fmt::Debug) {
        if !field.name().starts_with("log.") {
            self.member(field.name(), format!("{value:?}"));
        }
    }
}

/// Whether the JSON object `object` has the member `name` (a key is the only place where
/// `{"name":` or `,"name":` can occur: inside a string a quote is escaped).
fn has_member(object: &str, name: &str) -> bool {
    let Ok(key) = serde_json::to_string(name) else {
        return true;
    };
    [b'{', b','].iter().any(|open| {
        object.match_indices(key.as_str()).any(|(at, _)| {
            at > 0
                && object.as_bytes()[at - 1] == *open
                && object.as_bytes().get(at + key.len()) == Some(&b':')
        })
    })
}

/// Appends `members` (as [`JsonMembers`] writes them) to the JSON object `current` (which may
/// be empty text or `{}`).
fn splice_members(current: &mut String, members: &str) {
    if members.is_empty() {
        return;
    }
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

/// The slow path: `current` parsed, `members` put in (a key again takes the new value), and
/// written again.
fn merge_reparsed(current: &mut String, members: &str) -> std::fmt::Result {
    let parse =
        |text: &str| serde_json::from_str::<serde_json::Map<String, serde_json::Value>>(text);
    let mut object = if current.is_empty() {
        serde_json::Map::new()
    } else {
        parse(current).map_err(|_| std::fmt::Error)?
    };
    object.extend(parse(&format!("{{{members}}}")).map_err(|_| std::fmt::Error)?);
    *current = serde_json::to_string(&object).map_err(|_| std::fmt::Error)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use tracing::level_filters::LevelFilter;

    #[test]
    fn span_fields_recorded_later_are_appended_as_json_each_key_once() {
        let mut s = String::new();
        splice_members(&mut s, "\"a\":1");
        assert_eq!(s, "{\"a\":1}");
        splice_members(&mut s, "");
        assert_eq!(s, "{\"a\":1}");
        splice_members(&mut s, "\"b\":\"x}\\\",\\\"c\\\":\",\"c\":null");
        let v: serde_json::Value = serde_json::from_str(&s).unwrap();
        assert_eq!(v["b"], "x}\",\"c\":");
        assert_eq!(v["c"], serde_json::Value::Null);
        assert!(has_member(&s, "a") && has_member(&s, "c"));
        // Inside a string value a quote is escaped: not a member.
        assert!(!has_member(&s, "x"));
        let mut empty = "{}".to_owned();
        splice_members(&mut empty, "\"d\":true");
        assert_eq!(empty, "{\"d\":true}");
        merge_reparsed(&mut empty, "\"d\":false,\"e\":2").unwrap();
        assert_eq!(empty, "{\"d\":false,\"e\":2}");
    }

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
