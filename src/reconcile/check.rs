//! One check of one watched, due session: the view first (terminal: done, no VX call), then
//! VX; VX's answer goes into the view (`source: lookup`), and a completed result (PASS or FAIL)
//! is published as the event a webhook would have produced ([`crate::event::draft_event`] with
//! [`Origin::Poll`]), through the normal publisher, its PubAck awaited; so is a result body of
//! a running journey (`pending`, once per distinct state) or of an unknown status
//! (`unrecognized`), and the watch goes on. Also the give-up
//! message (`{prefix}.expired`).
//!
//! Decides what becomes of the work message ([`Verdict`]) but does not touch it: that is the
//! consume loop's ([`super`]). Logs carry the request_id, never a body.

use std::time::Duration;

use serde::Serialize;
use time::OffsetDateTime;
use uuid::Uuid;

use super::schedule::Work;
use crate::event::{draft_event, session_notice, EventKind, Origin, OutboundMessage};
use crate::nats::{PublishError, Publisher, Subjects};
use crate::pii::{KeyError, Sealer};
use crate::sessions::{ViewRead, ViewReader};
use crate::telemetry::{ReconcileCheck, ReconcilePublished, TraceContext};
use crate::timestamp::format_timestamp;
use crate::upstream::{CurrentStatus, SessionReply, UpstreamClient, UpstreamError};

/// The shortest wait a VX `Retry-After` gets (a `0` would make the check spin).
pub const MIN_RETRY_AFTER: Duration = Duration::from_secs(1);
/// The longest: a larger `Retry-After` is not taken at its word, so one bad header cannot
/// park a session for days.
pub const MAX_RETRY_AFTER: Duration = Duration::from_secs(3600);

/// Why a polled body or an expiry was not stored as an event.
#[derive(Debug, thiserror::Error)]
pub enum PublishFailed {
    /// VX's result body is not JSON.
    #[error("the result is not JSON")]
    NotJson,
    /// The body could not be sealed (`events.pii = encrypted`).
    #[error("sealing the result failed")]
    Seal(#[source] KeyError),
    /// The event was not stored.
    #[error(transparent)]
    Publish(#[from] PublishError),
}

/// What a check decided for its work message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// The watch ends: ack the message.
    Done(ReconcileCheck),
    /// Check again on the next step; VX last said this `current_status`.
    Next(ReconcileCheck, Option<&'static str>),
    /// Check again after this delay, on the same step.
    Retry(ReconcileCheck, Duration),
}

/// What a check needs.
pub struct Checker<'a> {
    /// The VX API client.
    pub upstream: &'a UpstreamClient,
    /// The session view.
    pub view: &'a ViewReader,
    /// The event publisher.
    pub publisher: &'a Publisher,
    /// The subjects.
    pub subjects: &'a Subjects,
    /// `reconcile.unavailable_delay`.
    pub unavailable_delay: Duration,
    /// Seals the polled body as the ingress seals a webhook's (`events.pii`).
    pub sealer: &'a Sealer,
}

impl Checker<'_> {
    /// Checks `work`'s session once.
    pub async fn check(&self, work: &Work) -> Verdict {
        let id = &work.request_id;
        let Ok(uuid) = Uuid::try_parse(id) else {
            // Only a validated id is ever registered; a foreign message ends here.
            return Verdict::Done(ReconcileCheck::Failed);
        };
        let basis = self.view.read(id).await;
        if let ViewRead::Found(s) = &basis {
            if s.terminal {
                return Verdict::Done(ReconcileCheck::TerminalInView);
            }
        }
        let reply = match self.upstream.session(uuid, &TraceContext::default()).await {
            Ok(r) => r,
            Err(e) => return self.upstream_failed(id, &e),
        };
        let checked_at = format_timestamp(OffsetDateTime::now_utc());
        let current = reply.current_status();
        if let Some(cs) = current {
            self.view
                .record_lookup(basis, cs.as_str(), checked_at.clone(), id)
                .await;
        }
        let state = current.map(CurrentStatus::as_str);
        match reply {
            SessionReply::Result(r) if matches!(r.status.as_deref(), Some("PASS" | "FAIL")) => {
                match self.publish_result(&r.raw, &checked_at).await {
                    Ok(()) => Verdict::Done(ReconcileCheck::Completed),
                    Err(e) => {
                        tracing::warn!(request_id = %id, error = %crate::telemetry::error_chain(&e), "reconcile: publishing the polled result failed; checked again");
                        Verdict::Retry(ReconcileCheck::Failed, self.unavailable_delay)
                    }
                }
            }
            SessionReply::Result(r) => {
                // PENDING / "" (journey running) or a status we do not know: what a webhook
                // with this body would publish (`pending`, `unrecognized`), the watch going on.
                // A `pending` only when VX's state changed since the last check (once per
                // distinct state, also past the duplicate window); an `unrecognized` each
                // check, stored once within the window by its `Nats-Msg-Id`.
                let kind = EventKind::classify(r.status.as_deref().unwrap_or_default());
                let changed = state.is_none() || state != work.last_state.as_deref();
                if kind == EventKind::Unrecognized || changed {
                    if let Err(e) = self.publish_result(&r.raw, &checked_at).await {
                        tracing::warn!(request_id = %id, error = %crate::telemetry::error_chain(&e), "reconcile: publishing the polled body failed; checked again");
                        return Verdict::Retry(ReconcileCheck::Failed, self.unavailable_delay);
                    }
                }
                Verdict::Next(ReconcileCheck::Pending, state)
            }
            SessionReply::Status(CurrentStatus::Completed) => {
                Verdict::Next(ReconcileCheck::CompletedWithoutResult, state)
            }
            _ => Verdict::Next(ReconcileCheck::Pending, state),
        }
    }

    fn upstream_failed(&self, id: &str, e: &UpstreamError) -> Verdict {
        match e {
            UpstreamError::NotFound => Verdict::Next(ReconcileCheck::Unknown, None),
            UpstreamError::Status(code) if *code < 500 && *code != 429 => {
                tracing::warn!(request_id = %id, error = %crate::telemetry::error_chain(e), "reconcile: VX refused the lookup; checked again on the next step");
                Verdict::Next(ReconcileCheck::Failed, None)
            }
            UpstreamError::Auth(_) | UpstreamError::BadReply(_) => {
                tracing::warn!(request_id = %id, error = %crate::telemetry::error_chain(e), "reconcile: VX answer unusable; checked again on the next step");
                Verdict::Next(ReconcileCheck::Failed, None)
            }
            UpstreamError::RateLimited(Some(wait)) => {
                let delay = (*wait).clamp(MIN_RETRY_AFTER, MAX_RETRY_AFTER);
                tracing::debug!(request_id = %id, delay_s = delay.as_secs(), "reconcile: VX rate limited; checked again after its Retry-After");
                Verdict::Retry(ReconcileCheck::Unavailable, delay)
            }
            _ => {
                tracing::debug!(request_id = %id, error = %crate::telemetry::error_chain(e), "reconcile: VX unavailable; checked again later");
                Verdict::Retry(ReconcileCheck::Unavailable, self.unavailable_delay)
            }
        }
    }

    /// Publishes a completed result body as its event (`vx-source: poll`).
    async fn publish_result(&self, raw: &[u8], received_at: &str) -> Result<(), PublishFailed> {
        let body: serde_json::Value =
            serde_json::from_slice(raw).map_err(|_| PublishFailed::NotJson)?;
        let draft = draft_event(
            self.subjects,
            Origin::Poll,
            raw,
            &body,
            received_at,
            &TraceContext::default(),
        );
        let kid = body["request_id"]
            .as_str()
            .unwrap_or_default()
            .to_ascii_lowercase();
        let sealed = self
            .sealer
            .seal(&kid, raw)
            .await
            .map_err(PublishFailed::Seal)?;
        let msg = draft.finish(sealed.form(raw));
        let kind = match EventKind::classify(body["status"].as_str().unwrap_or_default()) {
            EventKind::CompletedPass => ReconcilePublished::Pass,
            EventKind::CompletedFail => ReconcilePublished::Fail,
            EventKind::Pending => ReconcilePublished::Pending,
            EventKind::Unrecognized => ReconcilePublished::Unrecognized,
        };
        self.publish(msg, kind).await
    }

    /// Publishes `{prefix}.expired` for `work`, given up at `now`.
    pub async fn publish_expired(
        &self,
        work: &Work,
        now: OffsetDateTime,
    ) -> Result<(), PublishFailed> {
        let msg = expired_message(self.subjects, work, now);
        self.publish(msg, ReconcilePublished::Expired).await
    }

    async fn publish(
        &self,
        msg: OutboundMessage,
        kind: ReconcilePublished,
    ) -> Result<(), PublishFailed> {
        let stored = self.publisher.publish(msg).await?;
        if !stored.duplicate {
            crate::telemetry::RECONCILE_PUBLISHED.get(kind).increment(1);
        }
        Ok(())
    }
}

/// The body of `{prefix}.expired` (`schemas/session-expired.schema.json`).
#[derive(Debug, Serialize)]
struct Expired<'a> {
    schema_version: u8,
    request_id: &'a str,
    /// VX's `current_status` at the last check (null: never answered).
    last_state: Option<&'a str>,
    registered_at: String,
    expired_at: String,
    checks: u32,
}

/// The `{prefix}.expired` message of `work`: `Nats-Msg-Id: expired:{request_id}`.
pub fn expired_message(subjects: &Subjects, work: &Work, now: OffsetDateTime) -> OutboundMessage {
    let body = Expired {
        schema_version: 1,
        request_id: &work.request_id,
        last_state: work.last_state.as_deref(),
        registered_at: format_timestamp(work.registered_at),
        expired_at: format_timestamp(now),
        checks: work.step,
    };
    session_notice(subjects.expired(), "expired", &work.request_id, &body)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::reconcile::schedule::Schedule;

    #[test]
    fn the_expired_message_says_who_when_and_what_was_last_seen() {
        let s = Schedule::new(vec![Duration::from_secs(60)], Duration::from_secs(3600));
        let t0 = OffsetDateTime::from_unix_timestamp(1_800_000_000).unwrap();
        let id = "4ed2ec66-9471-415d-99ce-7bd1742fc2b8";
        let w = s.next(&s.first(id, t0), t0, Some("IN PROGRESS"));
        let msg = expired_message(&Subjects::new("v"), &w, t0 + time::Duration::hours(1));
        assert_eq!(msg.subject, "v.expired");
        assert_eq!(msg.headers[0], ("Nats-Msg-Id", format!("expired:{id}")));
        let v: serde_json::Value = serde_json::from_slice(&msg.payload).unwrap();
        assert_eq!(v["request_id"], id);
        assert_eq!(v["last_state"], "IN PROGRESS");
        assert_eq!(v["checks"], 1);
        assert_eq!(v["registered_at"], "2027-01-15T08:00:00.000Z");
        assert_eq!(v["expired_at"], "2027-01-15T09:00:00.000Z");
        let schema = crate::schema::Schemas::get();
        assert!(schema.check_session_expired(&v).is_ok(), "{v}");
    }
}
