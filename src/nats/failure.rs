//! A JetStream API call that failed, with what was being done: the one shape of "the JetStream
//! API failed" that the stream keeper, the session view and the reconciler's work queue share
//! (each wraps it as its `Api` variant). Display is the context only; the client's error is the
//! source, printed by `telemetry::error_chain` at the edge. It does no I/O.

use std::borrow::Cow;

/// The JetStream API failed while doing `op`.
#[derive(Debug, thiserror::Error)]
#[error("JetStream: {op}")]
pub struct JetStreamFailure {
    /// What was being done (`opening bucket …`, `writing a state`).
    op: Cow<'static, str>,
    /// The client's error.
    #[source]
    source: async_nats::Error,
}

impl JetStreamFailure {
    /// For `map_err`: the failure of the call that was doing `op`.
    pub fn during<E: Into<async_nats::Error>>(
        op: impl Into<Cow<'static, str>>,
    ) -> impl FnOnce(E) -> Self {
        let op = op.into();
        move |e| JetStreamFailure {
            op,
            source: e.into(),
        }
    }
}
