//! The session view: the latest state of every session, in a JetStream KV bucket
//! (`sessions.bucket`, key = the lower-case request_id, value = `schemas/session-state.schema.json`),
//! projected from the event stream.
//!
//! Touches: the bucket (created or checked at start), and one durable pull consumer on the event
//! stream ([`CONSUMER`]) that every replica with the view enabled shares, so the work is split and
//! each event is read once in the common case. Must not touch: the event stream's messages or
//! config (it only reads them), the ingress, or anything on the HTTP path; no personal field of a
//! result is ever written to the bucket.
//!
//! At-least-once: an event is acked only after its write, or after the rule decided to skip it;
//! a failure leaves it unacked, to be delivered again. Writes are compare-and-set on the key's
//! revision, so concurrent projectors (and redeliveries) converge through [`rule::decide`].
//!
//! With a [`PendingHook`] (the reconciler's registration, `reconcile.watch_pending`), every
//! non-terminal webhook or replayed event registers its session before it is acked (a replayed
//! PENDING is a webhook whose successors may have been rejected too: a lost-webhook case; the
//! reconciler's own poll events do not, their session is watched already); the view itself
//! knows nothing of the reconciler. `{prefix}.rejected` and `{prefix}.expired` are not session states:
//! acked and skipped.
//!
//! [`ViewReader`] is the status service's side: a key get, and a direct get of the event at a
//! state's `stream_seq`, answering `None` rather than an error; and [`ViewReader::record_lookup`],
//! which writes a VX answer (`source: lookup`) under [`rule::decide_lookup`]. [`rebuild`]
//! re-projects the whole stream (`vx-bridge sessions rebuild`).
//!
//! Files: `bucket.rs` (the bucket's setup), `writer.rs` (compare-and-set writes, [`KnownKeys`]),
//! `projector.rs` (the consumer and the projection), `fields.rs` (an event's view fields, from
//! its headers or its body), `reader.rs` (the status service's side),
//! `rule.rs` (what a state is and which one wins), `terminal.rs` (terminal states in memory),
//! `rebuild.rs` and `admin.rs` (the CLI's operations).

pub mod admin;
pub mod rebuild;
pub mod rule;
pub mod terminal;

mod bucket;
mod fields;
mod projector;
mod reader;
mod writer;

pub use bucket::{desired_bucket, ensure_bucket};
pub use projector::{ensure_consumer, start, PendingHook, CONSUMER, DRAIN};
pub use reader::{ViewRead, ViewReader};
pub use terminal::TerminalStates;
pub use writer::{apply, apply_known, apply_lookup, KnownKeys};

use std::sync::atomic::{AtomicBool, Ordering};

/// Whether the bucket and the consumer are in place (part of `/readyz`).
#[derive(Debug, Default)]
pub struct ViewState {
    ready: AtomicBool,
}

impl ViewState {
    fn set_ready(&self, ready: bool) {
        crate::telemetry::SESSIONS_READY
            .one()
            .set(crate::telemetry::flag(ready));
        self.ready.store(ready, Ordering::Release);
    }

    /// The bucket and the consumer are in place.
    pub fn is_ready(&self) -> bool {
        self.ready.load(Ordering::Acquire)
    }
}

/// Why the view is not usable.
#[derive(Debug, thiserror::Error)]
pub enum ViewError {
    /// The bucket does not exist and we may not create it.
    #[error("session bucket {0} does not exist (sessions.create = false)")]
    Missing(String),
    /// The event stream is not there (yet).
    #[error("event stream {0} not found")]
    NoStream(String),
    /// The JetStream API failed.
    #[error(transparent)]
    Api(#[from] crate::nats::JetStreamFailure),
    /// A message stream ended or stalled without an error of its own.
    #[error("JetStream: {0}")]
    Stopped(&'static str),
    /// A state could not be encoded as JSON.
    #[error("encoding a session state")]
    Encode(#[from] serde_json::Error),
}

#[cfg(test)]
mod tests {
    use super::*;
    use async_nats::jetstream::kv::{EntryError, EntryErrorKind};

    #[test]
    fn a_jetstream_failure_keeps_its_cause_and_the_chain_prints_both() {
        let cause = EntryError::with_source(
            EntryErrorKind::TimedOut,
            std::io::Error::new(std::io::ErrorKind::TimedOut, "deadline has elapsed"),
        );
        let e = ViewError::from(crate::nats::JetStreamFailure::during("reading a state")(
            cause,
        ));
        // Display is this layer's context only; the cause is the source.
        assert_eq!(e.to_string(), "JetStream: reading a state");
        let source = std::error::Error::source(&e).expect("the client's error is the source");
        assert!(source.downcast_ref::<EntryError>().is_some(), "{source:?}");
        let chain = crate::telemetry::error_chain(&e);
        assert_eq!(chain, format!("JetStream: reading a state: {source}"));
        assert!(chain.ends_with("deadline has elapsed"), "{chain}");
    }

    #[test]
    fn an_encoding_failure_converts_with_its_cause() {
        let json = serde_json::from_str::<u8>("x").unwrap_err();
        let text = json.to_string();
        let e: ViewError = json.into();
        assert!(std::error::Error::source(&e).is_some());
        assert_eq!(
            crate::telemetry::error_chain(&e),
            format!("encoding a session state: {text}")
        );
    }
}
