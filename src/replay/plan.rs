//! One rejected message, checked again: does its body pass today's JSON and schema checks, and
//! which event would it become ([`recheck`]); and the line of the plan that says so ([`Row`]).
//! Pure: no I/O, no NATS. Errors are the schema's masked violations, never body values.

use serde::Serialize;

use crate::event::{draft_event, Destinations, EventDraft, Origin, RejectReason};
use crate::schema::{Schemas, Violation};
use crate::telemetry::TraceContext;

/// A message read from `{prefix}.rejected`, as [`recheck`] needs it.
#[derive(Debug, Clone)]
pub struct Rejected<'a> {
    /// Its stream sequence.
    pub seq: u64,
    /// The body as it was received.
    pub payload: &'a [u8],
    /// `vx-reject-reason`, if it is one we know.
    pub reason: Option<RejectReason>,
    /// Its `Nats-Msg-Id` (`rejected:…`).
    pub msg_id: Option<&'a str>,
    /// When the webhook was received (its `ce-time`).
    pub received_at: &'a str,
    /// Its trace context headers.
    pub trace: TraceContext,
}

/// What a rejected body is today.
#[derive(Debug)]
pub enum Recheck {
    /// It passes: the event it becomes, as the webhook would have produced it, marked as a
    /// replay; its personal data is sealed by the caller ([`EventDraft::finish`]).
    Passes(Box<EventDraft>),
    /// It still fails, with today's reason and violations.
    Fails {
        /// Why, today.
        reason: RejectReason,
        /// The violations (masked), or the JSON error.
        errors: Vec<Violation>,
    },
    /// It was valid but its event was larger than the server's `max_payload`: never replayed.
    TooLarge,
}

/// Checks `r`'s body with `schemas` (strict JSON, then today's result schema) and builds its
/// event: subject, envelope and CloudEvents headers of the webhook, the webhook's `Nats-Msg-Id`
/// ([`webhook_msg_id`]), `vx-source: replay` and `vx-replay-of: <seq>`.
pub fn recheck(subjects: &impl Destinations, schemas: &Schemas, r: &Rejected<'_>) -> Recheck {
    if r.reason == Some(RejectReason::EventTooLarge) {
        return Recheck::TooLarge;
    }
    let value = match crate::json::parse_strict(r.payload) {
        Ok(v) => v,
        Err(e) => {
            return Recheck::Fails {
                reason: RejectReason::InvalidJson,
                errors: vec![Violation {
                    instance_path: String::new(),
                    message: e.to_string(),
                }],
            }
        }
    };
    if let Err(errors) = schemas.check_result(&value) {
        return Recheck::Fails {
            reason: RejectReason::SchemaViolation,
            errors,
        };
    }
    let origin = Origin::Replay {
        msg_id: webhook_msg_id(r.msg_id),
        rejected_seq: r.seq,
    };
    let event = draft_event(subjects, origin, r.payload, &value, r.received_at, &r.trace);
    Recheck::Passes(Box::new(event))
}

/// The `Nats-Msg-Id` the webhook would have had, from its rejected copy's: `rejected:{id}` when
/// the delivery carried an id; `None` for `rejected:sha256:<hash>` (no delivery id: the event
/// gets the body-hash id a webhook without one gets) or no header.
pub fn webhook_msg_id(rejected_msg_id: Option<&str>) -> Option<&str> {
    let id = rejected_msg_id?.strip_prefix("rejected:")?;
    let body_hash_only = id
        .strip_prefix("sha256:")
        .is_some_and(|h| h.len() == 64 && h.bytes().all(|b| b.is_ascii_hexdigit()));
    (!body_hash_only && !id.is_empty()).then_some(id)
}

/// What replay did, or would do, with one rejected message.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Action {
    /// `--dry-run`: it passes and would be published.
    WouldPublish,
    /// Published; the stream stored it.
    Published,
    /// Published; the stream already held its `Nats-Msg-Id` (within the duplicate window), so
    /// nothing new was stored. Its marker is written now.
    AlreadyStored,
    /// A marker says it was replayed before: skipped.
    AlreadyReplayed,
    /// It still fails today's checks: left in place.
    StillFails,
    /// Not replayable (`event_too_large`, or its event is over `max_payload` now): left in place.
    Skipped,
}

impl Action {
    /// Whether this leaves the message failing (exit code 1).
    pub fn is_failing(self) -> bool {
        matches!(self, Action::StillFails | Action::Skipped)
    }

    /// The word of the human table.
    pub fn label(self) -> &'static str {
        match self {
            Action::WouldPublish => "would publish",
            Action::Published => "published",
            Action::AlreadyStored => "already stored",
            Action::AlreadyReplayed => "already replayed, skipped",
            Action::StillFails => "still fails, left in place",
            Action::Skipped => "skipped",
        }
    }
}

/// One line of the plan (`--json`: one object per line, `"type": "message"`).
#[derive(Debug, Clone, Serialize)]
pub struct Row {
    /// Stream sequence of the rejected copy.
    pub seq: u64,
    /// When the webhook was received.
    pub received_at: String,
    /// `vx-reject-reason` then.
    pub reason: String,
    /// Whether it passes today's checks; null when it was not checked (`event_too_large`).
    pub passes_now: Option<bool>,
    /// What replay did or would do.
    pub action: Action,
    /// The session (when it passes).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub request_id: Option<String>,
    /// The event's subject (when it passes).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub subject: Option<String>,
    /// The event's `Nats-Msg-Id` (when it passes).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub msg_id: Option<String>,
    /// The event's stream sequence (published, or known from the marker).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub event_seq: Option<u64>,
    /// Today's reason, when it still fails.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason_now: Option<&'static str>,
    /// Today's violations (masked), when it still fails.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub errors: Vec<Violation>,
    /// Why it was skipped.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub note: Option<String>,
}

impl Row {
    /// A row for `r` with `action`; the rest is filled in by the caller.
    pub fn new(r: &Rejected<'_>, reason: &str, passes_now: Option<bool>, action: Action) -> Row {
        Row {
            seq: r.seq,
            received_at: r.received_at.to_owned(),
            reason: reason.to_owned(),
            passes_now,
            action,
            request_id: None,
            subject: None,
            msg_id: None,
            event_seq: None,
            reason_now: None,
            errors: Vec::new(),
            note: None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::nats::Subjects;

    const SEED: &[u8] = include_bytes!("../../tests/fixtures/seed-pass.json");

    fn rejected<'a>(
        payload: &'a [u8],
        reason: RejectReason,
        msg_id: Option<&'static str>,
    ) -> Rejected<'a> {
        Rejected {
            seq: 7,
            payload,
            reason: Some(reason),
            msg_id,
            received_at: "2026-12-02T10:00:00.000Z",
            trace: TraceContext::default(),
        }
    }

    #[test]
    fn the_webhook_msg_id_comes_back() {
        let hash = "a".repeat(64);
        let with_id = format!("rejected:msg_1:sha256:{hash}");
        assert_eq!(
            webhook_msg_id(Some(&with_id)),
            Some(format!("msg_1:sha256:{hash}").as_str())
        );
        assert_eq!(
            webhook_msg_id(Some(&format!("rejected:sha256:{hash}"))),
            None
        );
        // A delivery id that is itself "sha256" still is one.
        let odd = format!("rejected:sha256:sha256:{hash}");
        assert_eq!(webhook_msg_id(Some(&odd)), Some(&odd["rejected:".len()..]));
        assert_eq!(webhook_msg_id(Some("other")), None);
        assert_eq!(webhook_msg_id(None), None);
    }

    #[test]
    fn a_passing_body_becomes_the_webhook_event_marked_as_replay() {
        let subjects = Subjects::new("vx.verification");
        let r = rejected(
            SEED,
            RejectReason::SchemaViolation,
            Some("rejected:d1:sha256:00"),
        );
        let Recheck::Passes(event) = recheck(&subjects, &Schemas::get(), &r) else {
            panic!("the seed passes");
        };
        assert_eq!(event.subject, "vx.verification.completed.pass");
        assert_eq!(event.msg_id, "d1:sha256:00");
        let header = |name: &str| {
            event
                .headers
                .iter()
                .find(|(k, _)| *k == name)
                .map(|(_, v)| v.as_str())
        };
        assert_eq!(header("vx-source"), Some("replay"));
        assert_eq!(header("vx-replay-of"), Some("7"));
        assert_eq!(header("ce-time"), Some("2026-12-02T10:00:00.000Z"));
    }

    #[test]
    fn failing_bodies_say_why_today() {
        let subjects = Subjects::new("vx.verification");
        let s = Schemas::get();
        let dup = br#"{"request_id":"4ed2ec66-9471-415d-99ce-7bd1742fc2b8","status":"PASS","status":"FAIL"}"#;
        match recheck(
            &subjects,
            &s,
            &rejected(dup, RejectReason::InvalidJson, None),
        ) {
            Recheck::Fails { reason, errors } => {
                assert_eq!(reason, RejectReason::InvalidJson);
                assert_eq!(errors.len(), 1);
            }
            other => panic!("{other:?}"),
        }
        let bad = br#"{"request_id":"nope","status":"PASS"}"#;
        match recheck(
            &subjects,
            &s,
            &rejected(bad, RejectReason::SchemaViolation, None),
        ) {
            Recheck::Fails { reason, errors } => {
                assert_eq!(reason, RejectReason::SchemaViolation);
                assert_eq!(errors[0].instance_path, "/request_id");
                assert!(!errors[0].message.contains("nope"));
            }
            other => panic!("{other:?}"),
        }
        assert!(matches!(
            recheck(
                &subjects,
                &s,
                &rejected(SEED, RejectReason::EventTooLarge, None)
            ),
            Recheck::TooLarge
        ));
    }
}
