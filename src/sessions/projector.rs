//! The projector: one durable pull consumer on the event stream ([`CONSUMER`]), shared by every
//! replica, whose events are decided by the rule and written by `writer.rs`; an event is acked
//! only after its write or its skip. The consumer delivers headers only: an event's view fields
//! are in its headers (`fields.rs`); the body is read by sequence only for an event without them
//! and for an erasure notice. It must not touch the event stream's messages or config (it only
//! reads them), nor anything on the HTTP path.

use std::sync::Arc;
use std::time::Duration;

use async_nats::jetstream::{self, consumer, kv, AckKind};
use futures::stream::FuturesUnordered;
use futures::StreamExt as _;
use tokio_util::sync::CancellationToken;

use super::fields;
use super::rule::{SessionState, Source};
use super::writer::{apply_known, KnownKeys, KNOWN_KEYS, KNOWN_KEYS_TTL};
use super::{ensure_bucket, TerminalStates, ViewError, ViewState};
use crate::config::{Config, SessionsConfig, StreamConfig};
use crate::nats::JetStreamFailure;
use crate::nats::Subjects;
use crate::telemetry::{SessionUpdate, SESSION_UPDATES};

/// Durable name of the projector's consumer on the event stream, shared by every replica.
pub const CONSUMER: &str = "vx-bridge-sessions";

/// Events one projector processes at once (writes to one key stay correct by compare-and-set).
const CONCURRENCY: usize = 64;

/// Called by the projector for every non-terminal webhook or replayed event, before its ack (so a failure
/// brings the event again): the reconciler's registration, when `reconcile.watch_pending`.
pub trait PendingHook: Send + Sync {
    /// Registers `request_id` (lower-case), whose event was stored at `stored_at`; `Err` says
    /// why it could not.
    fn pending<'a>(
        &'a self,
        request_id: &'a str,
        stored_at: time::OffsetDateTime,
    ) -> futures::future::BoxFuture<'a, Result<(), async_nats::Error>>;
}

/// What the projector skips and calls: the non-state subjects and the hook.
struct Projection {
    /// `{prefix}.rejected` and `{prefix}.expired`.
    skipped: [String; 2],
    /// `{prefix}.erased`: the session's view key is purged (again: the eraser purged it
    /// already), so that a rebuild from the stream leaves no key of an erased session.
    erased: String,
    on_pending: Option<Arc<dyn PendingHook>>,
    /// The status service's terminal states in this process: a terminal state written is
    /// inserted before its event is acked.
    terminal: Option<TerminalStates>,
}

/// How often the projector samples its backlog (`vx_bridge_sessions_pending`): one consumer info
/// request each time.
const LAG_SAMPLE: Duration = Duration::from_millis(500);

/// How long the projector lets the events in hand finish once `shutdown` is cancelled (each
/// is acked, or left for a redelivery).
pub const DRAIN: Duration = Duration::from_secs(5);

/// The projector's durable consumer on the event stream (created if missing), and the stream (to
/// read a body by sequence). A consumer made before it delivered headers only is updated to do
/// so; where the server refuses, it goes on delivering bodies, which the projector reads too.
pub async fn ensure_consumer(
    js: &jetstream::Context,
    stream: &str,
) -> Result<(jetstream::stream::Stream, consumer::PullConsumer), ViewError> {
    let s = js.get_stream(stream).await.map_err(|e| match e.kind() {
        jetstream::context::GetStreamErrorKind::JetStream(j)
            if j.error_code() == jetstream::ErrorCode::STREAM_NOT_FOUND =>
        {
            ViewError::NoStream(stream.to_owned())
        }
        _ => JetStreamFailure::during(format!("opening stream {stream}"))(e).into(),
    })?;
    let config = consumer::pull::Config {
        durable_name: Some(CONSUMER.into()),
        description: Some("vx-bridge session view projector".into()),
        ack_policy: consumer::AckPolicy::Explicit,
        deliver_policy: consumer::DeliverPolicy::All,
        // An event delivered but never acked (its projector died, or NATS restarted before
        // the ack) comes again after this; a write takes milliseconds.
        ack_wait: Duration::from_secs(10),
        max_ack_pending: 4 * CONCURRENCY as i64,
        // The view's fields are in the headers: the ~2–4 KB body is not sent to be skipped.
        headers_only: true,
        ..Default::default()
    };
    let mut consumer = s
        .get_or_create_consumer(CONSUMER, config.clone())
        .await
        .map_err(|e| JetStreamFailure::during(format!("creating consumer {CONSUMER}"))(e))?;
    if !consumer.cached_info().config.headers_only {
        match s.create_consumer(config).await {
            Ok(updated) => {
                tracing::info!(
                    consumer = CONSUMER,
                    "session view: the consumer now delivers headers only"
                );
                consumer = updated;
            }
            Err(e) => tracing::info!(
                consumer = CONSUMER,
                error = %crate::telemetry::error_chain(&e),
                "session view: the consumer could not be set to deliver headers only; it goes on reading whole events"
            ),
        }
    }
    Ok((s, consumer))
}

/// Starts the projector: keeps the bucket and the consumer in place and projects every event
/// into the bucket until `shutdown`. `state` says whether it is ready; `on_pending` is called for
/// every non-terminal webhook or replayed event; a terminal state written goes into `terminal`
/// (the status service's, when it runs in this process).
pub fn start(
    client: async_nats::Client,
    config: &Config,
    state: Arc<ViewState>,
    on_pending: Option<Arc<dyn PendingHook>>,
    terminal: Option<TerminalStates>,
    shutdown: CancellationToken,
) -> tokio::task::JoinHandle<()> {
    SESSION_UPDATES.show_all();
    crate::telemetry::SESSIONS_PENDING.one().set(0.0);
    state.set_ready(false);
    let js = jetstream::ContextBuilder::new()
        .timeout(config.nats.publish_timeout)
        .build(client.clone());
    let cfg = config.sessions.clone();
    let stream = config.nats.stream.clone();
    let subjects = Subjects::new(&config.nats.subject_prefix);
    let projection = Projection {
        skipped: [subjects.rejected(), subjects.expired()],
        erased: subjects.erased(),
        on_pending,
        terminal,
    };
    tokio::spawn(async move {
        // 50 ms, doubling to 2 s: at start the stream keeper may create the stream just after us.
        let mut wait = Duration::from_millis(50);
        // The replicated-bucket warning, once for this projector (not at every retry).
        let mut cas_warned = false;
        loop {
            let view = View {
                js: &js,
                cfg: &cfg,
                stream: &stream,
                projection: &projection,
                state: &state,
            };
            if let Err(e) = run_once(&client, view, &shutdown, &mut cas_warned).await {
                let level_error = wait >= Duration::from_secs(1);
                if level_error {
                    tracing::error!(bucket = %cfg.bucket, stream = %stream.name, error = %crate::telemetry::error_chain(&e), "session view not ready; retrying");
                } else {
                    tracing::debug!(bucket = %cfg.bucket, stream = %stream.name, error = %crate::telemetry::error_chain(&e), "session view not ready yet; retrying");
                }
            }
            if state.is_ready() {
                wait = Duration::from_millis(50);
            }
            state.set_ready(false);
            tokio::select! {
                _ = shutdown.cancelled() => return,
                _ = tokio::time::sleep(wait) => {}
            }
            wait = (wait * 2).min(Duration::from_secs(2));
        }
    })
}

/// What one projector works on.
#[derive(Clone, Copy)]
struct View<'a> {
    js: &'a jetstream::Context,
    cfg: &'a SessionsConfig,
    stream: &'a StreamConfig,
    projection: &'a Projection,
    state: &'a ViewState,
}

/// Sets up, then projects until the message stream fails or `shutdown`. `cas_warned` says
/// whether this projector has warned of a replicated bucket on a server without safe
/// compare-and-set (it warns once, not at every retry).
async fn run_once(
    client: &async_nats::Client,
    view: View<'_>,
    shutdown: &CancellationToken,
    cas_warned: &mut bool,
) -> Result<(), ViewError> {
    let View {
        js,
        cfg,
        stream,
        projection,
        state,
    } = view;
    let store = ensure_bucket(js, cfg, stream).await?;
    let replicas = cfg.replicas_or(stream);
    let version = crate::nats::version::ServerVersion::parse(&client.server_info().version);
    if replicas > 1 && !version.capabilities().replicated_kv_cas && !*cas_warned {
        *cas_warned = true;
        tracing::warn!(
            bucket = %cfg.bucket,
            replicas,
            version = %version.label(),
            "the session bucket is replicated on a NATS server before 2.9.22, where two racing compare-and-set writes can both succeed: the view may keep an older state of a session; upgrade the server or use sessions.replicas = 1"
        );
    }
    let (events, consumer) = ensure_consumer(js, &stream.name).await?;
    let mut messages = consumer
        .stream()
        .max_messages_per_batch(CONCURRENCY)
        .heartbeat(Duration::from_secs(5))
        .messages()
        .await
        .map_err(JetStreamFailure::during("reading the consumer's messages"))?;
    if !state.is_ready() {
        tracing::info!(bucket = %cfg.bucket, consumer = CONSUMER, "session view ready");
    }
    state.set_ready(true);
    let mut lag = tokio::time::interval(LAG_SAMPLE);
    // Per connection: after a reconnect the bucket may have been recreated.
    let known = KnownKeys::new(KNOWN_KEYS, KNOWN_KEYS_TTL);
    let mut in_flight = FuturesUnordered::new();
    let result = loop {
        tokio::select! {
            _ = shutdown.cancelled() => break Ok(()),
            Some(()) = in_flight.next(), if !in_flight.is_empty() => {}
            _ = lag.tick() => {
                if let Ok(info) = consumer.get_info().await {
                    crate::telemetry::SESSIONS_PENDING.one().set((info.num_pending + info.num_ack_pending as u64) as f64);
                }
            }
            next = messages.next(), if in_flight.len() < CONCURRENCY => match next {
                Some(Ok(msg)) => in_flight.push(handle(&store, &events, &known, projection, msg)),
                Some(Err(e)) => break Err(JetStreamFailure::during("reading the consumer's messages")(e).into()),
                None => break Err(ViewError::Stopped("the consumer's message stream ended")),
            },
        }
    };
    // Let the events in hand finish (each is acked or left for redelivery), bounded.
    let _ = tokio::time::timeout(DRAIN, async { while in_flight.next().await.is_some() {} }).await;
    if shutdown.is_cancelled() {
        return Ok(());
    }
    result
}

/// The message's body: as delivered, or read from the stream by its sequence when the consumer
/// delivered headers only. `Err`: the read failed (the message should come again).
async fn body_of(
    events: &jetstream::stream::Stream,
    msg: &jetstream::Message,
    seq: u64,
) -> Result<bytes::Bytes, async_nats::Error> {
    if !msg.payload.is_empty() || !msg.headers.as_ref().is_some_and(is_headers_only) {
        return Ok(msg.payload.clone());
    }
    Ok(events.get_raw_message(seq).await?.payload)
}

/// A message delivered without its body (`headers_only`): the server says its size instead.
fn is_headers_only(headers: &async_nats::HeaderMap) -> bool {
    headers.get("Nats-Msg-Size").is_some()
}

/// Asks for the message again a second later (the projection could not finish).
async fn retry_later(msg: &jetstream::Message) {
    let _ = msg
        .ack_with(AckKind::Nak(Some(Duration::from_secs(1))))
        .await;
}

/// Purges the view key of an erased session (`{prefix}.erased`), then acks; a failure leaves
/// the message for a redelivery.
async fn forget_erased(
    store: &kv::Store,
    events: &jetstream::stream::Stream,
    known: &KnownKeys,
    msg: &jetstream::Message,
) {
    #[derive(serde::Deserialize)]
    struct Erased {
        request_id: String,
    }
    let body = match msg.info() {
        Ok(info) => body_of(events, msg, info.stream_sequence).await,
        Err(_) => Ok(msg.payload.clone()),
    };
    let body = match body {
        Ok(b) => b,
        Err(e) => {
            tracing::warn!(error = %crate::telemetry::error_chain(&*e), "session view: reading an erasure notice failed; it will come again");
            retry_later(msg).await;
            return;
        }
    };
    let Ok(e) = serde_json::from_slice::<Erased>(&body) else {
        let _ = msg.ack().await;
        return;
    };
    let key = e.request_id.to_ascii_lowercase();
    if key.len() != 36 || uuid::Uuid::try_parse(&key).is_err() {
        let _ = msg.ack().await;
        return;
    }
    known.forget(&key);
    match store.purge(&key).await {
        Ok(()) => {
            let _ = msg.ack().await;
        }
        Err(e) => {
            tracing::warn!(request_id = %key, error = %e, "session view: purging an erased session's key failed; the message will come again");
            retry_later(msg).await;
        }
    }
}

/// Where a stored event came from: its `vx-source` header (none: a webhook).
pub(super) fn source_of(msg: &jetstream::Message) -> Source {
    Source::from_header(
        msg.headers
            .as_ref()
            .and_then(|h| h.get("vx-source"))
            .map(|v| v.as_str()),
    )
}

/// Projects one message; acks it after the write or the decision to skip, else asks for a
/// redelivery a second later.
async fn handle(
    store: &kv::Store,
    events: &jetstream::stream::Stream,
    known: &KnownKeys,
    projection: &Projection,
    msg: jetstream::Message,
) {
    if projection.skipped.iter().any(|s| s == msg.subject.as_str()) {
        // Rejected bodies and expiries are not sessions' states; acked so the consumer moves on.
        let _ = msg.ack().await;
        return;
    }
    if msg.subject.as_str() == projection.erased {
        forget_erased(store, events, known, &msg).await;
        return;
    }
    let (seq, stored_at, delivered) = match msg.info() {
        Ok(info) => (info.stream_sequence, info.published, info.delivered),
        Err(e) => {
            tracing::warn!(error = %e, "session view: a message without JetStream metadata; skipped");
            let _ = msg.ack().await;
            return;
        }
    };
    let source = source_of(&msg);
    let from_body = match fields::from_headers(msg.headers.as_ref()) {
        Some(event) => Ok(event),
        // An event stored without the view's header: its body, read by sequence when the
        // consumer delivered headers only.
        None => match body_of(events, &msg, seq).await {
            Ok(body) => fields::from_body(&body),
            Err(e) => {
                tracing::warn!(stream_seq = seq, error = %crate::telemetry::error_chain(&*e), "session view: reading an event's body failed; it will come again");
                retry_later(&msg).await;
                return;
            }
        },
    };
    let event = match from_body {
        Ok(e) => e,
        Err(e) => {
            // Only the position and the kind of error: serde's message may quote a value.
            tracing::warn!(stream_seq = seq, error_kind = ?e.classify(), "session view: an event that does not parse as ours; skipped");
            SESSION_UPDATES.get(SessionUpdate::Invalid).increment(1);
            let _ = msg.ack().await;
            return;
        }
    };
    let state = SessionState::from_event(event, seq, source);
    match apply_known(store, Some(known), &state).await {
        Ok(outcome) => {
            SESSION_UPDATES.get(outcome).increment(1);
            if let (SessionUpdate::Applied, Some(t)) = (outcome, &projection.terminal) {
                t.insert(&state).await;
            }
            let register = !state.terminal
                && matches!(source, Source::Webhook | Source::Replay)
                && outcome != SessionUpdate::Stale;
            if let (true, Some(hook)) = (register, &projection.on_pending) {
                if let Err(e) = hook.pending(&state.request_id, stored_at).await {
                    tracing::warn!(stream_seq = seq, request_id = %state.request_id, error = %crate::telemetry::error_chain(&*e), "session view: registering the pending session with the reconciler failed; the event will come again");
                    retry_later(&msg).await;
                    return;
                }
                if delivered > 1 {
                    // The other half of the warning above: a registration that failed once is
                    // done (the partition suite lost one watch and could not tell which half
                    // was missing, docs/RELIABILITY.md).
                    tracing::info!(stream_seq = seq, request_id = %state.request_id, delivered, "session view: the pending session is registered with the reconciler on a redelivery");
                }
            }
            if let Err(e) = msg.ack().await {
                tracing::warn!(stream_seq = seq, error = %e, "session view: ack failed; the event will come again and change nothing");
            }
        }
        Err(e) => {
            tracing::warn!(stream_seq = seq, error = %crate::telemetry::error_chain(&e), "session view: write failed; the event will come again");
            retry_later(&msg).await;
        }
    }
}
