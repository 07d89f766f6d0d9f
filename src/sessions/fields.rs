//! The fields of a stored event that the session view reads ([`EventFields`]): from the event's
//! headers (`ce-id`, `ce-type`, `ce-subject`, `ce-time` and `vx-view`), which is all that the
//! projector's headers-only consumer receives, or else from its body (an event stored before the
//! `vx-view` header existed, or one whose header was too long to write).
//!
//! Pure, no I/O. It must not read `result`, `result_encrypted` or any other personal field.

use async_nats::HeaderMap;
use serde::Deserialize;

use super::rule::{EventFields, Progress};
use crate::event::{CE_TYPE_PREFIX, VIEW_HEADER};

/// The fields from an event's headers; `None` when one of them is missing or malformed (then the
/// body decides).
pub fn from_headers(headers: Option<&HeaderMap>) -> Option<EventFields> {
    #[derive(Deserialize)]
    struct View {
        status: String,
        reference: Option<String>,
        stops: u64,
    }
    let headers = headers?;
    let get = |name: &str| headers.get(name).map(|v| v.as_str());
    let view: View = serde_json::from_str(get(VIEW_HEADER)?).ok()?;
    Some(EventFields {
        event_id: get("ce-id")?.to_owned(),
        event_type: get("ce-type")?.strip_prefix(CE_TYPE_PREFIX)?.to_owned(),
        request_id: get("ce-subject")?.to_owned(),
        status: view.status,
        reference: view.reference,
        received_at: get("ce-time")?.to_owned(),
        progress: Progress { stops: view.stops },
    })
}

/// The fields from an event's body (`result` is skipped unparsed).
pub fn from_body(payload: &[u8]) -> Result<EventFields, serde_json::Error> {
    serde_json::from_slice(payload)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::event::{build_event, Origin, OutboundMessage, VIEW_HEADER_MAX};
    use crate::nats::Subjects;
    use crate::telemetry::TraceContext;
    use serde_json::{json, Value};

    const SEED: &str = include_str!("../../tests/fixtures/seed-pass.json");
    const AT: &str = "2026-11-27T10:00:00.123Z";

    fn event(body: &Value, origin: Origin<'_>) -> OutboundMessage {
        let raw = serde_json::to_vec(body).unwrap();
        build_event(
            &Subjects::new("verification"),
            origin,
            &raw,
            body,
            AT,
            &TraceContext::continue_or_start(None, None),
        )
    }

    fn headers(msg: &OutboundMessage) -> HeaderMap {
        crate::nats::publisher::into_nats(msg.clone()).1
    }

    #[test]
    fn the_headers_say_what_the_body_says() {
        let seed: Value = serde_json::from_str(SEED).unwrap();
        let mut odd = seed.clone();
        // Line breaks, quotes, non-ASCII and a null reference must all survive a header.
        odd["reference"] = json!("line\r\nbreak \"quoted\" Zoë ✓");
        odd["status"] = json!("PENDING");
        let mut no_ref = seed.clone();
        no_ref["reference"] = Value::Null;
        no_ref["status"] = Value::Null;
        let mut cases = 0;
        for body in [&seed, &odd, &no_ref] {
            for origin in [
                Origin::Webhook {
                    delivery_id: Some("msg_1"),
                },
                Origin::Webhook { delivery_id: None },
                Origin::Poll,
                Origin::Replay {
                    msg_id: None,
                    rejected_seq: 7,
                },
            ] {
                let msg = event(body, origin);
                let from_body = from_body(&msg.payload).unwrap();
                let from_headers = from_headers(Some(&headers(&msg)))
                    .unwrap_or_else(|| panic!("{origin:?}: no fields in {:?}", msg.headers));
                assert_eq!(from_headers, from_body, "{origin:?}");
                cases += 1;
            }
        }
        assert_eq!(cases, 12);
    }

    #[test]
    fn a_reference_too_long_for_a_header_leaves_the_body_to_decide() {
        let mut body: Value = serde_json::from_str(SEED).unwrap();
        body["reference"] = json!("r".repeat(VIEW_HEADER_MAX));
        let msg = event(&body, Origin::Webhook { delivery_id: None });
        assert!(msg.headers.iter().all(|(k, _)| *k != VIEW_HEADER));
        assert_eq!(from_headers(Some(&headers(&msg))), None);
        let fields = from_body(&msg.payload).unwrap();
        assert_eq!(fields.reference.as_deref(), Some(&*"r".repeat(1024)));
    }

    #[test]
    fn missing_or_malformed_headers_give_none() {
        let body: Value = serde_json::from_str(SEED).unwrap();
        let msg = event(&body, Origin::Webhook { delivery_id: None });
        assert_eq!(from_headers(None), None);
        for (drop, replace) in [
            ("ce-id", None),
            ("ce-type", None),
            ("ce-subject", None),
            ("ce-time", None),
            (VIEW_HEADER, None),
            (VIEW_HEADER, Some("{\"status\":\"PASS\"}")),
            ("ce-type", Some("other.type")),
        ] {
            let mut h = HeaderMap::new();
            for (k, v) in &msg.headers {
                if *k != drop {
                    h.insert(*k, v.as_str());
                }
            }
            if let Some(v) = replace {
                h.insert(drop, v);
            }
            assert_eq!(from_headers(Some(&h)), None, "{drop} {replace:?}");
        }
    }
}
