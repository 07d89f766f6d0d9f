//! Publishing with an awaited PubAck: [`Publisher::publish`] returns only once the server has
//! acknowledged the message, or fails with a [`PublishError`] that the ingress answers with 503.
//! It is one attempt; riding through an outage by retrying it is [`crate::nats::ridethrough`]'s
//! job, guided by [`PublishError::is_retryable`].
//!
//! This module must not build or change the message (that is [`crate::event`]), nor retry.

use std::sync::Arc;
use std::time::Duration;

use async_nats::connection::State;
use async_nats::jetstream;
use bytes::Bytes;

use crate::event::OutboundMessage;
use crate::telemetry::{PublishResult, PUBLISH_DURATION};

/// Where a message was stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Stored {
    /// Stream name.
    pub stream: String,
    /// Stream sequence.
    pub seq: u64,
    /// The stream already held this `Nats-Msg-Id` (a retried delivery).
    pub duplicate: bool,
}

/// Why a message was not stored. Every variant but [`PublishError::TooLarge`] is transient:
/// the sender should retry. Whether the bridge itself retries while riding through an outage
/// is [`PublishError::is_retryable`] (an allow-list, narrower than transient).
#[derive(Debug, thiserror::Error)]
pub enum PublishError {
    /// The message (headers and payload, as NATS counts it) exceeds the server's `max_payload`:
    /// permanent, a retry of the same message can never be stored.
    #[error("the message is {size} bytes, over the NATS server's max_payload of {max} bytes")]
    TooLarge {
        /// Headers plus payload, in bytes on the wire.
        size: usize,
        /// The connected server's `max_payload`.
        max: usize,
    },
    /// The client is not connected to any server.
    #[error("not connected to NATS")]
    Disconnected,
    /// No PubAck within the timeout.
    #[error("no PubAck within {0:?}")]
    Timeout(Duration),
    /// No stream captures the subject: the server answered "no responders". A deleted stream
    /// looks like this, and so does a clustered stream while it has no leader.
    #[error("no stream captures the subject")]
    NoStream,
    /// JetStream answered 503 "temporarily unavailable" (no leader, cluster not available).
    #[error("JetStream unavailable")]
    Unavailable(#[source] async_nats::Error),
    /// The service is shutting down; the publish was not retried again.
    #[error("shutting down")]
    ShuttingDown,
    /// Any other failure, with its source.
    #[error("publish failed")]
    Other(#[source] async_nats::Error),
}

impl PublishError {
    /// The publish result this error is counted as.
    pub fn result(&self) -> PublishResult {
        match self {
            PublishError::Disconnected => PublishResult::Disconnected,
            PublishError::Timeout(_) => PublishResult::Timeout,
            PublishError::NoStream => PublishResult::NoStream,
            PublishError::Unavailable(_) => PublishResult::Unavailable,
            PublishError::ShuttingDown => PublishResult::ShuttingDown,
            PublishError::Other(_) => PublishResult::Failed,
            PublishError::TooLarge { .. } => PublishResult::TooLarge,
        }
    }

    /// Stable code for logs and metrics (the label of its [`PublishError::result`]).
    pub fn code(&self) -> &'static str {
        self.result().label()
    }

    /// Whether waiting and publishing again (same `Nats-Msg-Id`) can store the message: not
    /// connected, no PubAck in time, no responders (no stream leader during an election, or a
    /// deleted stream that the stream keeper recreates), JetStream 503. An allow-list: every
    /// other error, and any variant added later, is answered at once.
    pub fn is_retryable(&self) -> bool {
        matches!(
            self,
            PublishError::Disconnected
                | PublishError::Timeout(_)
                | PublishError::NoStream
                | PublishError::Unavailable(_)
        )
    }
    /// Whether a retry of the same message can succeed.
    pub fn is_transient(&self) -> bool {
        !matches!(self, PublishError::TooLarge { .. })
    }
}

/// The size NATS counts against `max_payload` for a message with these headers and payload:
/// `NATS/1.0\r\n`, each `name: value\r\n`, a blank line, then the payload (as async-nats'
/// own check and the server's `HPUB` count it).
pub fn wire_size(headers: &[(&'static str, String)], payload_len: usize) -> usize {
    let head = if headers.is_empty() {
        0
    } else {
        headers
            .iter()
            .map(|(k, v)| k.len() + 2 + v.len() + 2)
            .sum::<usize>()
            + "NATS/1.0\r\n".len()
            + 2
    };
    head + payload_len
}

/// One header as NATS names it: the name is `'static`, so it is named without parsing or
/// allocating.
fn nats_header(
    name: &'static str,
    value: impl Into<async_nats::HeaderValue>,
) -> (async_nats::header::HeaderName, async_nats::HeaderValue) {
    (
        async_nats::header::HeaderName::from_static(name),
        value.into(),
    )
}

/// The message's headers as NATS headers (copies the values; [`into_nats`] moves them).
pub fn nats_headers(msg: &OutboundMessage) -> async_nats::HeaderMap {
    msg.headers
        .iter()
        .map(|(k, v)| nats_header(k, v.as_str()))
        .collect()
}

/// Subject, NATS headers and payload, moving the header values rather than copying them.
pub fn into_nats(msg: OutboundMessage) -> (String, async_nats::HeaderMap, Bytes) {
    let headers = msg
        .headers
        .into_iter()
        .map(|(k, v)| nats_header(k, v))
        .collect();
    (msg.subject, headers, msg.payload)
}

/// Publishes events and waits for their PubAcks.
#[derive(Clone, Debug)]
pub struct Publisher {
    client: async_nats::Client,
    js: jetstream::Context,
    timeout: Duration,
    /// `nats.stream.name`: a PubAck must come from it.
    stream: Arc<str>,
}

impl Publisher {
    /// A publisher over `client` into `stream` whose PubAck wait is bounded by `timeout`.
    pub fn new(client: async_nats::Client, timeout: Duration, stream: &str) -> Self {
        let js = jetstream::ContextBuilder::new()
            .timeout(timeout)
            .ack_timeout(timeout)
            .build(client.clone());
        Self {
            client,
            js,
            timeout,
            stream: stream.into(),
        }
    }

    /// The PubAck wait of one publish (`nats.publish_timeout`).
    pub fn timeout(&self) -> Duration {
        self.timeout
    }

    /// The JetStream context.
    pub fn jetstream(&self) -> &jetstream::Context {
        &self.js
    }

    /// The connected server's `max_payload` (from its INFO; async-nats' default before the
    /// first INFO).
    pub fn max_payload(&self) -> usize {
        self.client.max_payload()
    }

    /// Publishes and awaits the PubAck. Fails fast while disconnected, so requests do not wait on
    /// a dead connection (a message buffered now could be stored after we answered 503; the
    /// sender's retry is then recognised as a duplicate by its `Nats-Msg-Id`).
    /// Takes the message by value so its header values move into the NATS headers uncopied.
    pub async fn publish(&self, msg: OutboundMessage) -> Result<Stored, PublishError> {
        let started = std::time::Instant::now();
        if self.client.connection_state() != State::Connected {
            PUBLISH_DURATION
                .get(PublishResult::Disconnected)
                .record(started.elapsed().as_secs_f64());
            return Err(PublishError::Disconnected);
        }
        let (size, max) = (
            wire_size(&msg.headers, msg.payload.len()),
            self.max_payload(),
        );
        if size > max {
            PUBLISH_DURATION
                .get(PublishResult::TooLarge)
                .record(started.elapsed().as_secs_f64());
            return Err(PublishError::TooLarge { size, max });
        }
        let (subject, headers, payload) = into_nats(msg);
        let work = async {
            let ack = self
                .js
                .publish_with_headers(subject, headers, payload)
                .await
                .map_err(|e| map_publish_error(e, size, max))?;
            ack.await.map_err(|e| map_publish_error(e, size, max))
        };
        let result = match tokio::time::timeout(self.timeout, work).await {
            Err(_) => Err(PublishError::Timeout(self.timeout)),
            Ok(Err(e)) => Err(e),
            Ok(Ok(ack)) => stored_in(&self.stream, ack),
        };
        let label = result
            .as_ref()
            .map_or_else(PublishError::result, |_| PublishResult::Ok);
        PUBLISH_DURATION
            .get(label)
            .record(started.elapsed().as_secs_f64());
        result
    }
}

/// A PubAck as [`Stored`], if it names the stream the bridge publishes into with a sequence.
/// Another stream's PubAck (one that captures the subject while ours does not) is not a 202:
/// the event is not where consumers read it.
fn stored_in(stream: &str, ack: jetstream::publish::PublishAck) -> Result<Stored, PublishError> {
    if ack.stream != stream || ack.sequence == 0 {
        return Err(PublishError::Other(
            format!(
                "PubAck names stream {:?} sequence {}, not a message in stream {stream:?}",
                ack.stream, ack.sequence
            )
            .into(),
        ));
    }
    Ok(Stored {
        stream: ack.stream,
        seq: ack.sequence,
        duplicate: ack.duplicate,
    })
}

fn map_publish_error(e: jetstream::context::PublishError, size: usize, max: usize) -> PublishError {
    use jetstream::context::PublishErrorKind as K;
    match e.kind() {
        // async-nats checks again against the max_payload it holds now (a reconnect may have
        // brought a server with a smaller one).
        K::MaxPayloadExceeded => PublishError::TooLarge { size, max },
        K::StreamNotFound => PublishError::NoStream,
        K::TimedOut => PublishError::Timeout(Duration::ZERO),
        K::BrokenPipe => PublishError::Disconnected,
        _ => match std::error::Error::source(&e).and_then(|s| s.downcast_ref::<jetstream::Error>())
        {
            Some(js) if js_unavailable(js.code(), js.error_code()) => {
                PublishError::Unavailable(e.into())
            }
            _ => PublishError::Other(e.into()),
        },
    }
}

/// A JetStream API error that waiting can cure: HTTP-like code 503, except the ones that need an
/// operator: a store failure (10077: the stream is full with `discard: new`, or the disk
/// failed), insufficient resources (10023), JetStream not enabled (10076, 10039).
fn js_unavailable(code: usize, err_code: jetstream::ErrorCode) -> bool {
    const NEEDS_OPERATOR: [u64; 4] = [10077, 10023, 10076, 10039];
    code == 503 && !NEEDS_OPERATOR.contains(&err_code.0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_errors_a_wait_can_cure_are_retryable() {
        for e in [
            PublishError::Disconnected,
            PublishError::Timeout(Duration::from_secs(1)),
            PublishError::NoStream,
            PublishError::Unavailable("no leader".into()),
        ] {
            assert!(e.is_retryable(), "{e}");
        }
        for e in [
            PublishError::Other("wrong last sequence".into()),
            PublishError::ShuttingDown,
        ] {
            assert!(!e.is_retryable(), "{e}");
        }
        // JetStream 503 "temporarily unavailable" (cluster, no leader) is; a full stream is not.
        assert!(js_unavailable(503, jetstream::ErrorCode(10008)));
        assert!(js_unavailable(503, jetstream::ErrorCode(0)));
        assert!(!js_unavailable(503, jetstream::ErrorCode(10077)));
        assert!(!js_unavailable(503, jetstream::ErrorCode(10076)));
        assert!(!js_unavailable(500, jetstream::ErrorCode(10008)));
        assert!(!js_unavailable(400, jetstream::ErrorCode(10060)));
    }

    #[test]
    fn only_a_puback_of_our_stream_with_a_sequence_is_stored() {
        let ack = |stream: &str, seq: u64| jetstream::publish::PublishAck {
            stream: stream.into(),
            sequence: seq,
            duplicate: seq == 7,
            ..Default::default()
        };
        let stored = stored_in("VX", ack("VX", 7)).unwrap();
        assert_eq!(
            (stored.stream.as_str(), stored.seq, stored.duplicate),
            ("VX", 7, true)
        );
        for (stream, seq) in [("OTHER", 7), ("VX", 0), ("", 3)] {
            let e = stored_in("VX", ack(stream, seq)).unwrap_err();
            assert!(matches!(e, PublishError::Other(_)), "{e}");
            // The reason is the source; the chain shows it as before.
            let chain = crate::telemetry::error_chain(&e);
            assert!(
                chain.starts_with("publish failed: PubAck names stream"),
                "{chain}"
            );
            assert!(!e.is_retryable(), "{e}");
        }
    }

    #[test]
    fn the_rejected_headers_bound_holds_for_the_worst_case() {
        use crate::event::{build_rejected, RejectReason, REJECTED_HEADERS_MAX};
        use crate::schema::Violation;
        use crate::telemetry::TraceContext;
        let id = "i".repeat(256);
        let verified = crate::auth::Verified::for_tests(Some(id));
        // Many violations at long paths: the errors header is cut to its bound.
        let errors: Vec<Violation> = (0..200)
            .map(|i| Violation {
                instance_path: format!("/{}", "k".repeat(3000 + i)),
                message: "m".repeat(300),
            })
            .collect();
        let trace = TraceContext {
            traceparent: Some(format!("00-{}-{}-01", "a".repeat(32), "b".repeat(16))),
            tracestate: Some("s".repeat(512)),
        };
        let s = crate::nats::Subjects::new("a.very.long.prefix.of.several.tokens");
        for reason in [
            RejectReason::InvalidJson,
            RejectReason::SchemaViolation,
            RejectReason::EventTooLarge,
        ] {
            for errs in [&errors[..], &errors[..1], &[]] {
                let msg = build_rejected(
                    &s,
                    &verified,
                    b"{}",
                    reason,
                    errs,
                    "2026-01-01T00:00:00.000Z",
                    &trace,
                );
                let head = wire_size(&msg.headers, 0);
                assert!(
                    head <= REJECTED_HEADERS_MAX,
                    "{head} > {REJECTED_HEADERS_MAX}"
                );
            }
        }
    }

    #[test]
    fn wire_size_counts_like_async_nats() {
        let headers = vec![("Nats-Msg-Id", "abc".to_owned()), ("ce-id", "x".to_owned())];
        let map: async_nats::HeaderMap = headers
            .iter()
            .map(|(k, v)| {
                (
                    async_nats::header::HeaderName::from_static(k),
                    async_nats::HeaderValue::from(v.as_str()),
                )
            })
            .collect();
        let serialized = format!(
            "NATS/1.0\r\n{}\r\n",
            map.iter()
                .flat_map(|(k, vs)| vs.iter().map(move |v| format!("{k}: {}\r\n", v.as_str())))
                .collect::<String>()
        );
        assert_eq!(wire_size(&headers, 10), serialized.len() + 10);
        assert_eq!(wire_size(&[], 10), 10);
    }
}
