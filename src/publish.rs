//! NATS and JetStream: the connection, the stream, and publishing with an awaited PubAck.
//!
//! [`connect`] builds the client from `[nats]` (several URLs, creds, nkey, token, user/password,
//! TLS) and reconnects without end. [`ensure_stream`] creates or updates the stream, or checks it,
//! so that it captures exactly our event subjects and never a request-reply subject.
//! [`Publisher::publish`] returns only once the server has acknowledged the message, or fails
//! with a [`PublishError`] that the ingress answers with 503. It is one attempt; riding through
//! an outage by retrying it is [`crate::nats::ridethrough`]'s job, guided by
//! [`PublishError::is_retryable`].

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use async_nats::connection::State;
use async_nats::jetstream::{self, stream};

use crate::config::{NatsConfig, StorageKind, StreamConfig};
use crate::event::{OutboundMessage, Subjects};
use crate::secret::read_secret_file;
use crate::telemetry::PublishMetrics;

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
    #[error("JetStream unavailable: {0}")]
    Unavailable(String),
    /// The service is shutting down; the publish was not retried again.
    #[error("shutting down")]
    ShuttingDown,
    /// Any other failure, with its source.
    #[error("publish failed: {0}")]
    Other(String),
}

impl PublishError {
    /// Stable code for logs and metrics.
    pub fn code(&self) -> &'static str {
        match self {
            PublishError::Disconnected => "nats_disconnected",
            PublishError::Timeout(_) => "puback_timeout",
            PublishError::NoStream => "stream_missing",
            PublishError::Unavailable(_) => "jetstream_unavailable",
            PublishError::ShuttingDown => "shutting_down",
            PublishError::Other(_) => "publish_failed",
            PublishError::TooLarge { .. } => "too_large",
        }
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

/// Connects to NATS as `[nats]` says. With `retry_initial`, returns at once and keeps trying in
/// the background (the service starts while NATS is still coming up).
pub async fn connect(cfg: &NatsConfig, retry_initial: bool) -> anyhow::Result<async_nats::Client> {
    // Whether this client has ever been connected: the very first attempt at start-up goes at
    // once (readiness waits on it; async-nats calls the delay callback before every attempt,
    // the first included), while reconnects keep their back-off and jitter.
    let ever_connected = Arc::new(AtomicBool::new(false));
    let connected_flag = ever_connected.clone();
    let mut opts = async_nats::ConnectOptions::new()
        .name(&cfg.name)
        .max_reconnects(None::<usize>)
        .connection_timeout(Duration::from_secs(5))
        .reconnect_delay_callback(move |attempts| {
            if attempts <= 1 && !ever_connected.load(Ordering::Relaxed) {
                return Duration::ZERO;
            }
            // 100, 200 … ms up to 2 s, with jitter so replicas do not reconnect in step.
            let base = (attempts as u64).saturating_mul(100).min(2000);
            Duration::from_millis(base + rand::random::<u64>() % 100)
        })
        .event_callback(move |event| {
            let connected_flag = connected_flag.clone();
            async move {
                match event {
                    async_nats::Event::Connected => {
                        connected_flag.store(true, Ordering::Relaxed);
                        crate::telemetry::set_nats_connected(true);
                        tracing::info!(target: "vx_bridge::nats", "connected to NATS")
                    }
                    async_nats::Event::Disconnected => {
                        crate::telemetry::set_nats_connected(false);
                        tracing::warn!(target: "vx_bridge::nats", "disconnected from NATS")
                    }
                    async_nats::Event::Closed => {
                        crate::telemetry::set_nats_connected(false);
                        tracing::warn!(target: "vx_bridge::nats", "NATS connection closed")
                    }
                    other => {
                        tracing::info!(target: "vx_bridge::nats", event = %other, "NATS event")
                    }
                }
            }
        });
    if retry_initial {
        opts = opts.retry_on_initial_connect();
    }
    if let Some(path) = &cfg.creds_file {
        opts = opts.credentials_file(path).await?;
    }
    if let Some(path) = &cfg.nkey_seed_file {
        let seed = read_secret_file(path).map_err(anyhow::Error::msg)?;
        opts = opts.nkey(seed.expose().trim().to_owned());
    }
    if let Some(token) = &cfg.token {
        opts = opts.token(token.expose().to_owned());
    }
    if let Some(path) = &cfg.token_file {
        opts = opts.token(
            read_secret_file(path)
                .map_err(anyhow::Error::msg)?
                .expose()
                .to_owned(),
        );
    }
    if let Some(user) = &cfg.user {
        let password = match (&cfg.password, &cfg.password_file) {
            (Some(p), _) => p.clone(),
            (None, Some(path)) => read_secret_file(path).map_err(anyhow::Error::msg)?,
            (None, None) => Default::default(),
        };
        opts = opts.user_and_password(user.clone(), password.expose().to_owned());
    }
    if cfg.tls.required {
        opts = opts.require_tls(true);
    }
    if let Some(ca) = &cfg.tls.ca_file {
        opts = opts.add_root_certificates(ca.clone());
    }
    if let (Some(cert), Some(key)) = (&cfg.tls.cert_file, &cfg.tls.key_file) {
        opts = opts.add_client_certificate(cert.clone(), key.clone());
    }
    let urls: Vec<String> = cfg
        .url
        .split(',')
        .map(str::trim)
        .filter(|u| !u.is_empty())
        .map(str::to_owned)
        .collect();
    let addrs = urls
        .iter()
        .map(|u| u.parse::<async_nats::ServerAddr>())
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| anyhow::anyhow!("nats.url: {e}"))?;
    Ok(opts.connect(addrs).await?)
}

/// The stream configuration we want, from `[nats.stream]`.
pub fn desired_stream(cfg: &StreamConfig, subjects: &Subjects) -> stream::Config {
    stream::Config {
        name: cfg.name.clone(),
        description: Some("VX verification events published by vx-bridge".into()),
        subjects: subjects.stream_subjects(),
        storage: match cfg.storage {
            StorageKind::File => stream::StorageType::File,
            StorageKind::Memory => stream::StorageType::Memory,
        },
        num_replicas: cfg.replicas,
        duplicate_window: cfg.duplicate_window,
        max_age: cfg.max_age,
        max_bytes: cfg.max_bytes,
        max_messages: -1,
        max_messages_per_subject: -1,
        max_consumers: -1,
        max_message_size: -1,
        // When the stream is full, refuse new events (the sender gets 503 and retries) rather
        // than silently dropping old ones.
        discard: stream::DiscardPolicy::New,
        retention: stream::RetentionPolicy::Limits,
        allow_direct: true,
        ..Default::default()
    }
}

/// Why the stream is not usable.
#[derive(Debug, thiserror::Error)]
pub enum StreamError {
    /// The stream does not exist and we may not create it.
    #[error("stream {0} does not exist (nats.stream.create = false)")]
    Missing(String),
    /// It exists but does not capture one of our subjects.
    #[error("stream {stream} does not capture subject {subject}")]
    NotCapturing {
        /// Stream name.
        stream: String,
        /// The subject it misses.
        subject: String,
    },
    /// It captures a request-reply subject, which would answer requests with PubAcks.
    #[error("stream {stream} captures request subject {subject}; requests would be answered by the stream")]
    CapturesRequests {
        /// Stream name.
        stream: String,
        /// The captured request subject.
        subject: String,
    },
    /// The servers cannot hold `nats.stream.replicas` copies (a single server, or a cluster
    /// with fewer JetStream servers up than replicas).
    #[error("nats.stream.replicas = {replicas}, but the NATS servers cannot place {replicas} replicas (a single server holds only 1; a cluster needs at least as many JetStream servers up): lower nats.stream.replicas or add servers; the server said: {server}")]
    TooFewServers {
        /// `nats.stream.replicas`.
        replicas: usize,
        /// The server's error.
        server: String,
    },
    /// The JetStream API failed.
    #[error("JetStream: {0}")]
    Api(String),
}

/// JetStream errors meaning the stream's replicas do not fit the servers: replicas > 1 on a
/// non-clustered server, no suitable peers for placement, insufficient resources.
const TOO_FEW_SERVERS: [jetstream::ErrorCode; 3] = [
    jetstream::ErrorCode::STREAM_REPLICAS_NOT_SUPPORTED,
    jetstream::ErrorCode::CLUSTER_NO_PEERS,
    jetstream::ErrorCode::INSUFFICIENT_RESOURCES,
];

/// Creates or updates the stream (`create = true`), or checks that it exists and captures our
/// subjects. Returns the stream's replica count.
pub async fn ensure_stream(
    js: &jetstream::Context,
    cfg: &StreamConfig,
    subjects: &Subjects,
) -> Result<usize, StreamError> {
    let info = if cfg.create {
        js.create_or_update_stream(desired_stream(cfg, subjects))
            .await
            .map_err(|e| match e.kind() {
                jetstream::context::CreateStreamErrorKind::JetStream(inner)
                    if TOO_FEW_SERVERS.contains(&inner.error_code()) =>
                {
                    StreamError::TooFewServers {
                        replicas: cfg.replicas,
                        server: inner.to_string(),
                    }
                }
                _ => StreamError::Api(e.to_string()),
            })?
    } else {
        let stream = js.get_stream(&cfg.name).await.map_err(|e| match e.kind() {
            jetstream::context::GetStreamErrorKind::JetStream(inner)
                if inner.error_code() == jetstream::ErrorCode::STREAM_NOT_FOUND =>
            {
                StreamError::Missing(cfg.name.clone())
            }
            _ => StreamError::Api(e.to_string()),
        })?;
        stream.cached_info().clone()
    };
    check_subjects(&info.config.name, &info.config.subjects, subjects)?;
    Ok(info.config.num_replicas)
}

/// Checks that `captured` (a stream's subject filters) covers every event subject and no
/// request subject.
pub fn check_subjects(
    stream: &str,
    captured: &[String],
    subjects: &Subjects,
) -> Result<(), StreamError> {
    for s in subjects.stream_subjects() {
        if !captured.iter().any(|f| subject_matches(f, &s)) {
            return Err(StreamError::NotCapturing {
                stream: stream.into(),
                subject: s,
            });
        }
    }
    for s in subjects.request_subjects() {
        if captured.iter().any(|f| subject_matches(f, &s)) {
            return Err(StreamError::CapturesRequests {
                stream: stream.into(),
                subject: s,
            });
        }
    }
    Ok(())
}

/// NATS subject matching: `*` matches one token, `>` one or more trailing tokens.
pub fn subject_matches(filter: &str, subject: &str) -> bool {
    let mut f = filter.split('.');
    let mut s = subject.split('.');
    loop {
        match (f.next(), s.next()) {
            (Some(">"), Some(_)) => return true,
            (Some("*"), Some(_)) => {}
            (Some(a), Some(b)) if a == b => {}
            (None, None) => return true,
            _ => return false,
        }
    }
}

/// Publishes events and waits for their PubAcks.
#[derive(Clone, Debug)]
pub struct Publisher {
    client: async_nats::Client,
    js: jetstream::Context,
    timeout: Duration,
    /// PubAck durations by result, registered once.
    metrics: Arc<PublishMetrics>,
}

impl Publisher {
    /// A publisher over `client` whose PubAck wait is bounded by `timeout`.
    pub fn new(client: async_nats::Client, timeout: Duration) -> Self {
        let js = jetstream::ContextBuilder::new()
            .timeout(timeout)
            .ack_timeout(timeout)
            .build(client.clone());
        Self {
            client,
            js,
            timeout,
            metrics: Arc::new(PublishMetrics::new()),
        }
    }

    /// The JetStream context.
    pub fn jetstream(&self) -> &jetstream::Context {
        &self.js
    }

    /// The client.
    pub fn client(&self) -> &async_nats::Client {
        &self.client
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
            self.metrics.record("nats_disconnected", started.elapsed());
            return Err(PublishError::Disconnected);
        }
        let (size, max) = (
            wire_size(&msg.headers, msg.payload.len()),
            self.max_payload(),
        );
        if size > max {
            self.metrics.record("too_large", started.elapsed());
            return Err(PublishError::TooLarge { size, max });
        }
        let (subject, headers, payload) = msg.into_nats();
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
            Ok(Ok(ack)) => Ok(Stored {
                stream: ack.stream,
                seq: ack.sequence,
                duplicate: ack.duplicate,
            }),
        };
        let label = result.as_ref().map_or_else(PublishError::code, |_| "ok");
        self.metrics.record(label, started.elapsed());
        result
    }
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
                PublishError::Unavailable(e.to_string())
            }
            _ => PublishError::Other(e.to_string()),
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
    fn the_rejected_headers_bound_holds_for_the_worst_case() {
        use crate::event::{build_rejected, RejectReason, TraceContext, REJECTED_HEADERS_MAX};
        use crate::schema::Violation;
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
        let s = Subjects::new("a.very.long.prefix.of.several.tokens");
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

    #[test]
    fn wildcards_match_like_nats() {
        assert!(subject_matches("a.b", "a.b"));
        assert!(subject_matches("a.*", "a.b"));
        assert!(!subject_matches("a.*", "a.b.c"));
        assert!(subject_matches("a.>", "a.b.c"));
        assert!(!subject_matches("a.>", "a"));
        assert!(subject_matches(">", "a"));
        assert!(!subject_matches("a.b", "a.b.c"));
        assert!(!subject_matches("a.b.c", "a.b"));
    }

    #[test]
    fn a_catch_all_stream_is_refused_because_it_captures_requests() {
        let s = Subjects::new("verification");
        let err = check_subjects("X", &["verification.>".into()], &s).unwrap_err();
        assert!(matches!(err, StreamError::CapturesRequests { .. }), "{err}");
        let err = check_subjects("X", &["verification.completed.*".into()], &s).unwrap_err();
        assert!(matches!(err, StreamError::NotCapturing { .. }), "{err}");
        assert!(check_subjects("X", &s.stream_subjects(), &s).is_ok());
        let ok = [
            "verification.completed.*".into(),
            "verification.pending".into(),
            "verification.unrecognized".into(),
            "verification.rejected".into(),
        ];
        assert!(check_subjects("X", &ok, &s).is_ok());
    }
}
