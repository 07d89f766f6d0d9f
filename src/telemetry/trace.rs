//! W3C trace context: [`TraceContext`] is what one hop (a webhook, a status request) writes into
//! what it sends on (the NATS message's headers, the VX API call), and [`continue_trace`] makes
//! it: from the exported span when OTLP export is on, else by continuing the incoming
//! `traceparent` with a new span id, or starting a new trace.
//!
//! This module must not read or write headers itself (callers pass the incoming values and write
//! the result), and must not log.

/// W3C trace context written into the message: the webhook's trace continued with a new span
/// id for our hop, or a new trace when the webhook carried none (or a malformed one).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TraceContext {
    /// W3C `traceparent` for our hop.
    pub traceparent: Option<String>,
    /// W3C `tracestate`, passed through.
    pub tracestate: Option<String>,
}

impl TraceContext {
    /// Continues a well-formed incoming `traceparent` (same trace id and flags, a new span id),
    /// keeping `tracestate` with it; otherwise starts a new sampled trace.
    pub fn continue_or_start(traceparent: Option<&str>, tracestate: Option<&str>) -> Self {
        let span_id = random_span_id();
        match traceparent.filter(|t| valid_traceparent(t)) {
            Some(tp) => {
                let trace_id = &tp[3..35];
                let flags = &tp[53..55];
                let ts = tracestate
                    .filter(|s| s.len() <= 512 && s.bytes().all(|b| (0x20..0x7f).contains(&b)));
                Self {
                    traceparent: Some(format!("00-{trace_id}-{span_id:016x}-{flags}")),
                    tracestate: ts.map(str::to_owned),
                }
            }
            None => Self {
                traceparent: Some(format!("00-{:032x}-{span_id:016x}-01", random_trace_id())),
                tracestate: None,
            },
        }
    }

    /// The trace id, for logs.
    pub fn trace_id(&self) -> Option<&str> {
        self.traceparent.as_deref().map(|t| &t[3..35])
    }
}

// One random word per id (formatted as lower-case hex, zero-padded) rather than one RNG call and a
// vector per byte. All-zero ids are invalid in W3C trace context.
fn random_span_id() -> u64 {
    loop {
        let v: u64 = rand::random();
        if v != 0 {
            return v;
        }
    }
}

fn random_trace_id() -> u128 {
    loop {
        let v: u128 = rand::random();
        if v != 0 {
            return v;
        }
    }
}

fn valid_traceparent(t: &str) -> bool {
    let parts: Vec<&str> = t.split('-').collect();
    let hex = |s: &str, n: usize| {
        s.len() == n
            && s.bytes()
                .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
    };
    parts.len() == 4
        && hex(parts[0], 2)
        && parts[0] != "ff"
        && hex(parts[1], 32)
        && parts[1] != "0".repeat(32)
        && hex(parts[2], 16)
        && parts[2] != "0".repeat(16)
        && hex(parts[3], 2)
}

/// The trace context of one hop (a webhook, a status request), to write into what it sends on
/// (the NATS message, the VX API call): with OTLP export on, that of the exported `span` (made a
/// child of the incoming `traceparent`); otherwise the incoming trace continued with a new span
/// id, or a new trace.
pub fn continue_trace(
    span: &tracing::Span,
    traceparent: Option<&str>,
    tracestate: Option<&str>,
) -> TraceContext {
    #[cfg(feature = "otlp")]
    if let Some(t) = otel::link(span, traceparent, tracestate) {
        return t;
    }
    let _ = span;
    TraceContext::continue_or_start(traceparent, tracestate)
}

#[cfg(feature = "otlp")]
mod otel {
    //! W3C trace context linking with the exported `tracing` spans.

    use opentelemetry::trace::{
        SpanContext, SpanId, TraceContextExt as _, TraceFlags, TraceId, TraceState,
    };
    use tracing_opentelemetry::OpenTelemetrySpanExt as _;

    use super::TraceContext;

    /// Makes `span` a child of a valid incoming `traceparent`, and returns the trace context
    /// of `span` itself; `None` when spans are not exported.
    pub(super) fn link(
        span: &tracing::Span,
        traceparent: Option<&str>,
        tracestate: Option<&str>,
    ) -> Option<TraceContext> {
        // `continue_or_start` keeps the trace id (and tracestate) only of a well-formed parent.
        let incoming = TraceContext::continue_or_start(traceparent, tracestate);
        let kept_state = incoming.tracestate.clone();
        if let Some(tp) = traceparent.filter(|tp| incoming.trace_id() == tp.get(3..35)) {
            let trace_id = TraceId::from_hex(tp.get(3..35)?).ok()?;
            let span_id = SpanId::from_hex(tp.get(36..52)?).ok()?;
            let flags = u8::from_str_radix(tp.get(53..55)?, 16).ok()?;
            let state = kept_state
                .as_deref()
                .and_then(|s| s.parse::<TraceState>().ok())
                .unwrap_or_default();
            let remote = SpanContext::new(trace_id, span_id, TraceFlags::new(flags), true, state);
            let _ = span.set_parent(opentelemetry::Context::new().with_remote_span_context(remote));
        }
        let cx = span.context();
        let sc = cx.span().span_context().clone();
        if !sc.is_valid() {
            return None;
        }
        Some(TraceContext {
            traceparent: Some(format!(
                "00-{}-{}-{:02x}",
                sc.trace_id(),
                sc.span_id(),
                sc.trace_flags().to_u8()
            )),
            tracestate: kept_state,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn new_trace_ids_are_well_formed() {
        for _ in 0..200 {
            let t = TraceContext::continue_or_start(None, None);
            let tp = t.traceparent.unwrap();
            assert!(valid_traceparent(&tp), "{tp}");
            assert!(tp.ends_with("-01"));
            let cont = TraceContext::continue_or_start(Some(&tp), Some("k=v"));
            let cp = cont.traceparent.unwrap();
            assert!(valid_traceparent(&cp), "{cp}");
            assert_eq!(&cp[3..35], &tp[3..35]);
        }
    }

    #[test]
    fn a_valid_traceparent_is_continued_with_a_new_span_id() {
        let tp = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
        let t = TraceContext::continue_or_start(Some(tp), Some("vendor=x"));
        let out = t.traceparent.as_deref().unwrap();
        assert!(valid_traceparent(out), "{out}");
        assert_eq!(&out[..36], &tp[..36], "same version and trace id");
        assert_ne!(&out[36..52], &tp[36..52], "our own span id");
        assert_eq!(&out[52..], "-01");
        assert_eq!(t.tracestate.as_deref(), Some("vendor=x"));
        assert_eq!(t.trace_id(), Some("4bf92f3577b34da6a3ce929d0e0e4736"));
    }

    #[test]
    fn a_missing_or_malformed_traceparent_starts_a_new_trace() {
        for tp in [
            None,
            Some(""),
            Some("00-xyz"),
            Some("ff-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"),
            Some("00-00000000000000000000000000000000-00f067aa0ba902b7-01"),
        ] {
            let t = TraceContext::continue_or_start(tp, Some("a=b"));
            let out = t.traceparent.as_deref().unwrap();
            assert!(valid_traceparent(out), "{out}");
            assert!(!out.contains("4bf92f3577b34da6a3ce929d0e0e4736"));
            assert_eq!(
                t.tracestate, None,
                "tracestate belongs to the dropped trace"
            );
        }
    }
}
