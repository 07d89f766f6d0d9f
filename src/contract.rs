//! The consumer side of the contract: owned, deserializable types for what a service reads from
//! the bridge (the event body, the status reply and error, the session view's value, the watch
//! reply and the expiry message), and the
//! names it keys on. Used by `examples/consumer.rs`; mirrors `schemas/*.json`.
//!
//! Types only: nothing here connects, publishes or validates, and the bridge's own publishing
//! path (`event`, `status`, `sessions`) must not depend on this module. Unknown fields are
//! tolerated (a consumer should not break when a later version adds one); the JSON Schemas
//! stay the authority.

use serde::{Deserialize, Serialize};

pub use crate::sessions::rule::{SessionState, Source as SessionSource};

/// Header with the error message of a status-service error reply.
pub const SERVICE_ERROR_HEADER: &str = "Nats-Service-Error";
/// Header with the error code (400, 404, 410, 502, 503, 504) of a status-service error reply.
pub const SERVICE_ERROR_CODE_HEADER: &str = "Nats-Service-Error-Code";

/// The event's `type`: its subject without the prefix.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum EventType {
    /// `{prefix}.completed.pass`.
    #[serde(rename = "completed.pass")]
    CompletedPass,
    /// `{prefix}.completed.fail`.
    #[serde(rename = "completed.fail")]
    CompletedFail,
    /// `{prefix}.pending`.
    #[serde(rename = "pending")]
    Pending,
    /// `{prefix}.unrecognized`.
    #[serde(rename = "unrecognized")]
    Unrecognized,
}

/// How far the journey has come.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Progress {
    /// Number of journey stops in the body.
    pub stops: u64,
}

/// The body of an event (`schemas/verification-event.schema.json`). Key deduplication on
/// [`event_id`](Self::event_id) (stable across retried deliveries and JetStream redeliveries),
/// and the session on [`request_id`](Self::request_id).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct VerificationEvent {
    /// Version of the envelope: 1 with `result` in clear, 2 without (`result_encrypted`, or no
    /// personal data at all).
    pub schema_version: u8,
    /// Stable id of the event; also the CloudEvents `ce-id`.
    pub event_id: String,
    /// The subject without its prefix.
    #[serde(rename = "type")]
    pub event_type: EventType,
    /// The VX session id; also `ce-subject`.
    pub request_id: String,
    /// The VX `status` as received (`""` when empty or null).
    pub status: String,
    /// The VX `reference`, or null.
    pub reference: Option<String>,
    /// When the bridge received the webhook (RFC 3339, UTC).
    pub received_at: String,
    /// Journey progress.
    pub progress: Progress,
    /// The VX body exactly as received (`events.pii = "clear"` only; PII: never log it).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub result: Option<serde_json::Value>,
    /// The VX body as a compact JWE under the session's data key (the default mode): open it
    /// with [`crate::pii::open_event`] (a KEK and read access to the keys bucket), or ask
    /// `{prefix}.result.get`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub result_encrypted: Option<String>,
    /// The session's personal data was erased before this event was written: it carries the
    /// decision only.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub erased: Option<bool>,
}

/// The body of `{prefix}.erased` (`schemas/session-erased.schema.json`): the session's personal
/// data was erased; delete your own copies of it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SessionErased {
    /// Version of the message (1).
    pub schema_version: u8,
    /// The session, lower-case hyphenated.
    pub request_id: String,
    /// When it was erased (RFC 3339).
    pub erased_at: String,
    /// Why, as the requester said.
    pub reason: Option<String>,
}

/// A successful `{prefix}.status.get` reply (`schemas/status-reply.schema.json`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StatusReply {
    /// The session, lower-case hyphenated.
    pub request_id: String,
    /// INIT, IN PROGRESS, COMPLETED or PENDING.
    pub current_status: String,
    /// When VX was asked (RFC 3339).
    pub checked_at: String,
    /// `upstream`, `cache` or `events`.
    pub source: String,
    /// PASS or FAIL, with `source: "events"` only.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub result_status: Option<String>,
}

/// A successful `{prefix}.watch` reply (`schemas/watch-reply.schema.json`): watching, with the
/// next check's time; or, for a session already terminal in the view, the fields of a
/// [`StatusReply`] from it and `watching: false`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct WatchReply {
    /// The session, lower-case hyphenated.
    pub request_id: String,
    /// true: watched; false: terminal already.
    pub watching: bool,
    /// With `watching: true`: when VX is asked next (RFC 3339).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub next_check_at: Option<String>,
    /// With `watching: false`: COMPLETED.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub current_status: Option<String>,
    /// With `watching: false`: when the terminal event was received.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub checked_at: Option<String>,
    /// With `watching: false`: `events`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source: Option<String>,
    /// With `watching: false`: PASS or FAIL.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub result_status: Option<String>,
}

/// The body of `{prefix}.expired` (`schemas/session-expired.schema.json`): the reconciler gave a
/// watched session up, never having seen it terminal.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SessionExpired {
    /// Version of the message (1).
    pub schema_version: u8,
    /// The session, lower-case hyphenated.
    pub request_id: String,
    /// VX's `current_status` at the last check, if VX ever answered one.
    pub last_state: Option<String>,
    /// When the watch began (RFC 3339).
    pub registered_at: String,
    /// When it was given up (RFC 3339).
    pub expired_at: String,
    /// Schedule steps checked before the give-up.
    pub checks: u32,
}

/// An error reply's body (`schemas/service-error.schema.json`); the same code and message are
/// in the [`SERVICE_ERROR_CODE_HEADER`] and [`SERVICE_ERROR_HEADER`] headers.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ServiceErrorReply {
    /// The error.
    pub error: ServiceErrorDetail,
}

/// Code and message of an error reply.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ServiceErrorDetail {
    /// 400 and 404: do not retry; 502, 503, 504: retry later.
    pub code: u16,
    /// For people; carries no PII.
    pub message: String,
}

impl ServiceErrorDetail {
    /// Whether the requester should try again later (502, 503, 504).
    pub fn retryable(&self) -> bool {
        matches!(self.code, 502..=504)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::schema::Schemas;
    use serde_json::json;

    #[test]
    fn a_schema_valid_event_parses_and_round_trips() {
        let event = json!({
            "schema_version": 1,
            "event_id": "0b6f8c1e-1d2c-4c3b-8a9f-0123456789ab",
            "type": "completed.pass",
            "request_id": "4ed2ec66-9471-415d-99ce-7bd1742fc2b8",
            "status": "PASS",
            "reference": null,
            "received_at": "2026-11-27T10:00:00.123Z",
            "progress": {"stops": 2},
            "result": {"request_id": "4ed2ec66-9471-415d-99ce-7bd1742fc2b8", "status": "PASS"}
        });
        assert!(Schemas::get().check_event(&event).is_ok());
        let parsed: VerificationEvent = serde_json::from_value(event.clone()).expect("parses");
        assert_eq!(parsed.event_type, EventType::CompletedPass);
        assert_eq!(serde_json::to_value(&parsed).expect("serializes"), event);
    }

    /// The property names of a schema (its `properties`, or those of `properties.error`).
    fn properties(schema: &str, pointer: &str) -> Vec<String> {
        let schema: serde_json::Value = serde_json::from_str(schema).expect("schema is JSON");
        let mut names: Vec<String> = schema
            .pointer(pointer)
            .and_then(|p| p.as_object())
            .expect("schema has properties")
            .keys()
            .cloned()
            .collect();
        names.sort();
        names
    }

    fn fields(value: &impl Serialize) -> Vec<String> {
        let value = serde_json::to_value(value).expect("serializes");
        let mut names: Vec<String> = value
            .as_object()
            .expect("an object")
            .keys()
            .cloned()
            .collect();
        names.sort();
        names
    }

    /// The hand-written Rust types have exactly the schemas' fields (the Python and TypeScript
    /// types are generated; these are checked here instead).
    #[test]
    fn the_types_have_the_schemas_fields() {
        use crate::schema::{SESSION_STATE, VERIFICATION_EVENT};
        const STATUS_REPLY: &str = include_str!("../schemas/status-reply.schema.json");
        const SERVICE_ERROR: &str = include_str!("../schemas/service-error.schema.json");
        let event = VerificationEvent {
            schema_version: 1,
            event_id: String::new(),
            event_type: EventType::Pending,
            request_id: String::new(),
            status: String::new(),
            reference: None,
            received_at: String::new(),
            progress: Progress { stops: 0 },
            result: Some(json!({})),
            result_encrypted: Some(String::new()),
            erased: Some(true),
        };
        assert_eq!(
            fields(&event),
            properties(VERIFICATION_EVENT, "/properties")
        );
        let reply = StatusReply {
            request_id: String::new(),
            current_status: String::new(),
            checked_at: String::new(),
            source: String::new(),
            result_status: Some("PASS".into()),
        };
        assert_eq!(fields(&reply), properties(STATUS_REPLY, "/properties"));
        let error = ServiceErrorDetail {
            code: 404,
            message: String::new(),
        };
        assert_eq!(
            fields(&error),
            properties(SERVICE_ERROR, "/properties/error/properties")
        );
        let state = SessionState::from_lookup(
            "4ed2ec66-9471-415d-99ce-7bd1742fc2b8",
            None,
            "INIT",
            String::new(),
        );
        assert_eq!(fields(&state), properties(SESSION_STATE, "/properties"));
        let watch = WatchReply {
            request_id: String::new(),
            watching: false,
            next_check_at: Some(String::new()),
            current_status: Some(String::new()),
            checked_at: Some(String::new()),
            source: Some(String::new()),
            result_status: Some(String::new()),
        };
        assert_eq!(
            fields(&watch),
            properties(crate::schema::WATCH_REPLY, "/properties")
        );
        let expired = SessionExpired {
            schema_version: 1,
            request_id: String::new(),
            last_state: None,
            registered_at: String::new(),
            expired_at: String::new(),
            checks: 0,
        };
        assert_eq!(
            fields(&expired),
            properties(crate::schema::SESSION_EXPIRED, "/properties")
        );
        let erased = SessionErased {
            schema_version: 1,
            request_id: String::new(),
            erased_at: String::new(),
            reason: None,
        };
        assert_eq!(
            fields(&erased),
            properties(crate::schema::SESSION_ERASED, "/properties")
        );
    }

    #[test]
    fn status_reply_and_error_parse() {
        let reply: StatusReply = serde_json::from_value(json!({
            "request_id": "4ed2ec66-9471-415d-99ce-7bd1742fc2b8", "current_status": "COMPLETED",
            "checked_at": "2026-11-27T10:00:00Z", "source": "events", "result_status": "PASS"
        }))
        .expect("parses");
        assert_eq!(reply.result_status.as_deref(), Some("PASS"));
        let err: ServiceErrorReply =
            serde_json::from_value(json!({"error": {"code": 503, "message": "busy"}}))
                .expect("parses");
        assert!(err.error.retryable());
    }
}
