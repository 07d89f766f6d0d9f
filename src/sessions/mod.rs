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

pub mod admin;
pub mod rebuild;
pub mod rule;
pub mod terminal;

pub use terminal::TerminalStates;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use async_nats::jetstream::{self, consumer, kv, AckKind};
use futures::stream::FuturesUnordered;
use futures::StreamExt as _;
use tokio_util::sync::CancellationToken;

use crate::config::{Config, SessionsConfig, StreamConfig};
use crate::nats::Subjects;
use crate::telemetry::{LookupWrite, SessionUpdate, SESSION_LOOKUP_WRITES, SESSION_UPDATES};
use rule::{decide, decide_lookup, Decision, EventFields, SessionState, Source};

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
    ) -> futures::future::BoxFuture<'a, Result<(), String>>;
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

/// How long the projector lets the events in hand finish once `shutdown` is cancelled (each
/// is acked, or left for a redelivery).
pub const DRAIN: Duration = Duration::from_secs(5);

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
    #[error("JetStream: {0}")]
    Api(String),
}

/// The bucket we want, from `[sessions]`, as the configuration of its stream `KV_<bucket>`
/// (storage follows the event stream's).
pub fn desired_bucket(cfg: &SessionsConfig, stream: &StreamConfig) -> jetstream::stream::Config {
    crate::nats::stream::kv_bucket_stream(
        &cfg.bucket,
        "latest state of every VX session, projected by vx-bridge",
        cfg.history,
        cfg.max_age,
        stream.storage,
        cfg.replicas_or(stream),
    )
}

/// Creates or updates the bucket (`sessions.create = true`), or opens it and fails with
/// [`ViewError::Missing`] when it is not there.
pub async fn ensure_bucket(
    js: &jetstream::Context,
    cfg: &SessionsConfig,
    stream: &StreamConfig,
) -> Result<kv::Store, ViewError> {
    if cfg.create {
        js.create_or_update_stream(desired_bucket(cfg, stream))
            .await
            .map_err(|e| ViewError::Api(format!("creating bucket {}: {e}", cfg.bucket)))?;
    }
    js.get_key_value(&cfg.bucket).await.map_err(|e| {
        if crate::nats::stream::is_missing_bucket(&e) {
            ViewError::Missing(cfg.bucket.clone())
        } else {
            ViewError::Api(format!("opening bucket {}: {e}", cfg.bucket))
        }
    })
}

/// The projector's durable consumer on the event stream (created if missing).
pub async fn ensure_consumer(
    js: &jetstream::Context,
    stream: &str,
) -> Result<consumer::PullConsumer, ViewError> {
    let s = js.get_stream(stream).await.map_err(|e| match e.kind() {
        jetstream::context::GetStreamErrorKind::JetStream(j)
            if j.error_code() == jetstream::ErrorCode::STREAM_NOT_FOUND =>
        {
            ViewError::NoStream(stream.to_owned())
        }
        _ => ViewError::Api(e.to_string()),
    })?;
    s.get_or_create_consumer(
        CONSUMER,
        consumer::pull::Config {
            durable_name: Some(CONSUMER.into()),
            description: Some("vx-bridge session view projector".into()),
            ack_policy: consumer::AckPolicy::Explicit,
            deliver_policy: consumer::DeliverPolicy::All,
            // An event delivered but never acked (its projector died, or NATS restarted before
            // the ack) comes again after this; a write takes milliseconds.
            ack_wait: Duration::from_secs(10),
            max_ack_pending: 4 * CONCURRENCY as i64,
            ..Default::default()
        },
    )
    .await
    .map_err(|e| ViewError::Api(format!("creating consumer {CONSUMER}: {e}")))
}

/// Applies `state` to its key under the monotonic rule, with compare-and-set on the key's
/// revision; a conflict (another writer in between) reads the key again and decides again.
pub async fn apply(store: &kv::Store, state: &SessionState) -> Result<SessionUpdate, ViewError> {
    apply_known(store, None, state).await
}

/// What one projector last wrote or read per key: the revision and the rank stored there. Ranks
/// only grow, so a stored rank at least the incoming one is a safe reason to skip without a
/// read; a revision that is no longer the key's last makes the write fail and read again.
///
/// Bounded ([`KNOWN_KEYS`], evicting the least useful) and forgotten [`KNOWN_KEYS_TTL`] after a
/// write, so a key that left the bucket meanwhile (max_age, a rebuild's purge) is read again
/// rather than assumed. One lookup and one insert per event: a `quick_cache` (no per-operation
/// bookkeeping queue, no SipHash), each entry carrying when it was remembered.
pub struct KnownKeys {
    cache: quick_cache::sync::Cache<String, (u64, rule::Rank, std::time::Instant)>,
    ttl: Duration,
}

impl KnownKeys {
    /// Up to `capacity` keys, each forgotten `ttl` after it was remembered.
    pub fn new(capacity: usize, ttl: Duration) -> Self {
        Self {
            cache: quick_cache::sync::Cache::new(capacity),
            ttl,
        }
    }

    /// The revision and rank remembered for `key`, unless forgotten (evicted or too old).
    pub fn get(&self, key: &str) -> Option<(u64, rule::Rank)> {
        let (revision, rank, at) = self.cache.get(key)?;
        (at.elapsed() < self.ttl).then_some((revision, rank))
    }

    /// Forgets `key` (its session was erased: the key is purged, the next write starts anew).
    pub fn forget(&self, key: &str) {
        self.cache.remove(key);
    }

    /// Remembers that `key` holds `rank` at `revision`, from now.
    pub fn insert(&self, key: &str, revision: u64, rank: rule::Rank) {
        self.cache
            .insert(key.to_owned(), (revision, rank, std::time::Instant::now()));
    }
}

/// Keys one projector remembers (a few hundred bytes each with the cache's own overhead): the
/// sessions whose next event is likely soon.
const KNOWN_KEYS: usize = 8_192;

/// How long a remembered key is trusted.
const KNOWN_KEYS_TTL: Duration = Duration::from_secs(600);

/// [`apply`], saving round trips with `known`: a new key is written without a read (a
/// compare-and-set on "no revision yet"), a key this projector wrote last is written on the
/// revision it remembers, and an event its remembered rank outranks is skipped.
pub async fn apply_known(
    store: &kv::Store,
    known: Option<&KnownKeys>,
    state: &SessionState,
) -> Result<SessionUpdate, ViewError> {
    let incoming = state.rank();
    let key = state.request_id.as_str();
    let guess = match known {
        Some(k) => k.get(key),
        None => None,
    };
    let revision = match guess {
        Some((revision, rank)) => match decide(Some(rank), incoming) {
            Decision::Stale => return Ok(SessionUpdate::Stale),
            Decision::Unchanged => return Ok(SessionUpdate::Unchanged),
            Decision::Apply => revision,
        },
        None => 0,
    };
    let value = encode(state)?;
    if known.is_some() {
        match store.update(key, value.clone(), revision).await {
            Ok(r) => {
                remember(known, key, r, incoming);
                return Ok(SessionUpdate::Applied);
            }
            Err(e) if e.kind() == kv::UpdateErrorKind::WrongLastRevision => {}
            Err(e) => return Err(ViewError::Api(e.to_string())),
        }
    }
    let (outcome, revision, rank) = write_under(store, key, value, incoming, |current| {
        decide(current.map(SessionState::rank), incoming)
    })
    .await?;
    if let Some(rank) = rank {
        remember(known, key, revision, rank);
    }
    Ok(outcome)
}

fn remember(known: Option<&KnownKeys>, key: &str, revision: u64, rank: rule::Rank) {
    if let Some(k) = known {
        k.insert(key, revision, rank);
    }
}

/// A state's stored value (the same bytes as `serde_json::to_vec`), written into a buffer sized
/// for a typical state (~330 bytes) so it is not grown on the way.
fn encode(state: &SessionState) -> Result<bytes::Bytes, ViewError> {
    let mut out = Vec::with_capacity(ENCODED_STATE);
    serde_json::to_writer(&mut out, state).map_err(|e| ViewError::Api(e.to_string()))?;
    Ok(out.into())
}

/// The buffer [`encode`] starts with: a state with a 36-character request_id, uuids and an
/// RFC 3339 time is ~330 bytes.
const ENCODED_STATE: usize = 384;

/// Writes a lookup's state (made on `basis`, the state read before VX was asked) under
/// [`decide_lookup`], with compare-and-set like [`apply`].
pub async fn apply_lookup(
    store: &kv::Store,
    basis: Option<&SessionState>,
    state: &SessionState,
) -> Result<SessionUpdate, ViewError> {
    let (outcome, _, _) = write_under(
        store,
        &state.request_id,
        encode(state)?,
        state.rank(),
        |current| decide_lookup(current, basis, state),
    )
    .await?;
    Ok(outcome)
}

/// The read, decide, compare-and-set loop shared by events and lookups: writes `value` (of rank
/// `rank_written`) to `key` when `rule` says so. Returns the outcome, and the key's revision and
/// rank after it (no rank: the stored value is not ours).
async fn write_under(
    store: &kv::Store,
    key: &str,
    value: bytes::Bytes,
    rank_written: rule::Rank,
    rule: impl Fn(Option<&SessionState>) -> Decision,
) -> Result<(SessionUpdate, u64, Option<rule::Rank>), ViewError> {
    loop {
        let entry = store
            .entry(key)
            .await
            .map_err(|e| ViewError::Api(e.to_string()))?;
        let (current, revision) = match entry {
            Some(e) if e.operation == kv::Operation::Put => {
                // A value we cannot read (written by hand, or a future version) is replaced.
                (
                    serde_json::from_slice::<SessionState>(&e.value).ok(),
                    e.revision,
                )
            }
            Some(e) => (None, e.revision),
            None => (None, 0),
        };
        let rank = current.as_ref().map(SessionState::rank);
        match rule(current.as_ref()) {
            Decision::Stale => return Ok((SessionUpdate::Stale, revision, rank)),
            Decision::Unchanged => return Ok((SessionUpdate::Unchanged, revision, rank)),
            Decision::Apply => {}
        }
        match store.update(key, value.clone(), revision).await {
            Ok(r) => return Ok((SessionUpdate::Applied, r, Some(rank_written))),
            Err(e) if e.kind() == kv::UpdateErrorKind::WrongLastRevision => {
                SESSION_UPDATES
                    .get(SessionUpdate::ConflictRetried)
                    .increment(1);
            }
            Err(e) => return Err(ViewError::Api(e.to_string())),
        }
    }
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
        loop {
            if let Err(e) =
                run_once(&client, &js, &cfg, &stream, &projection, &state, &shutdown).await
            {
                let level_error = wait >= Duration::from_secs(1);
                if level_error {
                    tracing::error!(bucket = %cfg.bucket, stream = %stream.name, error = %e, "session view not ready; retrying");
                } else {
                    tracing::debug!(bucket = %cfg.bucket, stream = %stream.name, error = %e, "session view not ready yet; retrying");
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

/// Sets up, then projects until the message stream fails or `shutdown`.
async fn run_once(
    client: &async_nats::Client,
    js: &jetstream::Context,
    cfg: &SessionsConfig,
    stream: &StreamConfig,
    projection: &Projection,
    state: &ViewState,
    shutdown: &CancellationToken,
) -> Result<(), ViewError> {
    let store = ensure_bucket(js, cfg, stream).await?;
    let replicas = cfg.replicas_or(stream);
    let version = crate::nats::version::ServerVersion::parse(&client.server_info().version);
    if replicas > 1 && !version.capabilities().replicated_kv_cas {
        // Once per process: `run_once` runs again on every retry of the projector.
        static WARNED: std::sync::Once = std::sync::Once::new();
        WARNED.call_once(|| {
            tracing::warn!(
                bucket = %cfg.bucket,
                replicas,
                version = %version.label(),
                "the session bucket is replicated on a NATS server before 2.9.22, where two racing compare-and-set writes can both succeed: the view may keep an older state of a session; upgrade the server or use sessions.replicas = 1"
            );
        });
    }
    let consumer = ensure_consumer(js, &stream.name).await?;
    let mut messages = consumer
        .stream()
        .max_messages_per_batch(CONCURRENCY)
        .heartbeat(Duration::from_secs(5))
        .messages()
        .await
        .map_err(|e| ViewError::Api(e.to_string()))?;
    if !state.is_ready() {
        tracing::info!(bucket = %cfg.bucket, consumer = CONSUMER, "session view ready");
    }
    state.set_ready(true);
    let mut lag = tokio::time::interval(Duration::from_secs(2));
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
                Some(Ok(msg)) => in_flight.push(handle(&store, &known, projection, msg)),
                Some(Err(e)) => break Err(ViewError::Api(e.to_string())),
                None => break Err(ViewError::Api("the consumer's message stream ended".into())),
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

/// Purges the view key of an erased session (`{prefix}.erased`), then acks; a failure leaves
/// the message for a redelivery.
async fn forget_erased(store: &kv::Store, known: &KnownKeys, msg: &jetstream::Message) {
    #[derive(serde::Deserialize)]
    struct Erased {
        request_id: String,
    }
    let Ok(e) = serde_json::from_slice::<Erased>(&msg.payload) else {
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
            let _ = msg
                .ack_with(AckKind::Nak(Some(Duration::from_secs(1))))
                .await;
        }
    }
}

/// Where a stored event came from: its `vx-source` header (none: a webhook).
fn source_of(msg: &jetstream::Message) -> Source {
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
        forget_erased(store, known, &msg).await;
        return;
    }
    let (seq, stored_at) = match msg.info() {
        Ok(info) => (info.stream_sequence, info.published),
        Err(e) => {
            tracing::warn!(error = %e, "session view: a message without JetStream metadata; skipped");
            let _ = msg.ack().await;
            return;
        }
    };
    let source = source_of(&msg);
    let event = match serde_json::from_slice::<EventFields>(&msg.payload) {
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
                    tracing::warn!(stream_seq = seq, request_id = %state.request_id, error = %e, "session view: registering the pending session with the reconciler failed; the event will come again");
                    let _ = msg
                        .ack_with(AckKind::Nak(Some(Duration::from_secs(1))))
                        .await;
                    return;
                }
            }
            if let Err(e) = msg.ack().await {
                tracing::warn!(stream_seq = seq, error = %e, "session view: ack failed; the event will come again and change nothing");
            }
        }
        Err(e) => {
            tracing::warn!(stream_seq = seq, error = %e, "session view: write failed; the event will come again");
            let _ = msg
                .ack_with(AckKind::Nak(Some(Duration::from_secs(1))))
                .await;
        }
    }
}

/// Reads the view for the status service: opens the bucket on first use (and again after a
/// failure), and answers `None` whenever the view cannot answer, so the caller falls back to VX.
/// Terminal states it read, or learned of from the projector in this process or its watch of
/// the bucket ([`terminal`]), are kept in memory for `status.terminal_cache_ttl` (like a
/// terminal VX answer), so lookups of a finished session cost no NATS round trip.
pub struct ViewReader {
    client: async_nats::Client,
    js: jetstream::Context,
    bucket: String,
    /// The event stream, for [`ViewReader::result`].
    stream: String,
    store: std::sync::Mutex<Option<kv::Store>>,
    terminal: TerminalStates,
    /// The watch of the bucket feeding `terminal` ([`ViewReader::watching`]); aborted with the
    /// reader.
    watch: Option<tokio::task::AbortHandle>,
}

impl Drop for ViewReader {
    fn drop(&mut self) {
        if let Some(w) = &self.watch {
            w.abort();
        }
    }
}

impl std::fmt::Debug for ViewReader {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ViewReader")
            .field("bucket", &self.bucket)
            .field("terminal", &self.terminal)
            .finish()
    }
}

/// The longest a status lookup waits on the view before it asks VX instead.
const READ_TIMEOUT: Duration = Duration::from_millis(500);

impl ViewReader {
    /// A reader of `bucket` (and of the events of `stream` it points at) over `client`, keeping
    /// the terminal states it reads in `terminal`.
    pub fn new(
        client: async_nats::Client,
        bucket: &str,
        stream: &str,
        terminal: TerminalStates,
    ) -> Self {
        Self {
            js: jetstream::ContextBuilder::new()
                .timeout(READ_TIMEOUT)
                .build(client.clone()),
            client,
            bucket: bucket.to_owned(),
            stream: stream.to_owned(),
            store: std::sync::Mutex::new(None),
            terminal,
            watch: None,
        }
    }

    /// The reader, with the bucket's watch feeding its terminal states from now on (so
    /// [`ViewReader::watched_since`] can answer); must be called within the runtime.
    pub fn watching(mut self) -> Self {
        if self.watch.is_none() {
            let task = terminal::spawn_watch(
                self.client.clone(),
                self.bucket.clone(),
                self.terminal.clone(),
            );
            self.watch = Some(task.abort_handle());
        }
        self
    }

    /// The session's terminal state, if known in memory (no NATS round trip).
    pub async fn terminal_cached(&self, request_id: &str) -> Option<SessionState> {
        self.terminal.get(&request_id.to_ascii_lowercase()).await
    }

    /// Since when a terminal write to the bucket reaches [`ViewReader::terminal_cached`] within
    /// the watch's lag; `None` while the watch is not running (or was never started) or NATS is
    /// not connected (then only [`ViewReader::read`] can tell).
    pub fn watched_since(&self) -> Option<time::OffsetDateTime> {
        self.watch.as_ref()?;
        self.terminal.watched_since(&self.client)
    }

    /// The personal data of a session that is terminal in the view: what the event at its
    /// `stream_seq` (a direct get by sequence) carries: `result` exactly as received, or
    /// `result_encrypted`, or nothing. `None` whenever that cannot be answered (not terminal,
    /// the event gone with the stream's `max_age`, a read failure), so the caller asks VX.
    pub async fn result(&self, request_id: &str) -> Option<crate::event::CarriedPii> {
        let state = self.get(request_id).await.filter(|s| s.terminal)?;
        let seq = state.stream_seq?;
        let work = async {
            let stream = self.js.get_stream_no_info(&self.stream).await.ok()?;
            let msg = stream.direct_get(seq).await.ok()?;
            let (request_id, pii) = crate::event::carried_pii(&msg.payload)?;
            // The sequence must still hold this session's event.
            request_id
                .eq_ignore_ascii_case(&state.request_id)
                .then_some(pii)
        };
        tokio::time::timeout(READ_TIMEOUT, work)
            .await
            .ok()
            .flatten()
    }

    /// The session's state, if the view has one and can be read within [`READ_TIMEOUT`].
    pub async fn get(&self, request_id: &str) -> Option<SessionState> {
        match self.read(request_id).await {
            ViewRead::Found(s) => Some(s),
            ViewRead::Missing | ViewRead::Unavailable => None,
        }
    }

    /// What the view holds for the session, telling a missing key from an unreadable view.
    pub async fn read(&self, request_id: &str) -> ViewRead {
        let key = request_id.to_ascii_lowercase();
        if let Some(s) = self.terminal.get(&key).await {
            return ViewRead::Found(s);
        }
        let work = async {
            let Some(store) = self.store().await else {
                return ViewRead::Unavailable;
            };
            match store.entry(key.as_str()).await {
                Ok(Some(e)) if e.operation == kv::Operation::Put => {
                    match serde_json::from_slice::<SessionState>(&e.value) {
                        Ok(s) => ViewRead::Found(s),
                        // Not ours to interpret: asked of VX, and not overwritten by a lookup.
                        Err(_) => ViewRead::Unavailable,
                    }
                }
                Ok(_) => ViewRead::Missing,
                Err(e) => {
                    tracing::debug!(bucket = %self.bucket, error = %e, "session view unreadable; asking VX");
                    self.forget_store();
                    ViewRead::Unavailable
                }
            }
        };
        let read = tokio::time::timeout(READ_TIMEOUT, work)
            .await
            .unwrap_or(ViewRead::Unavailable);
        if let ViewRead::Found(s) = &read {
            self.terminal.insert(s).await;
        }
        read
    }

    /// Writes VX's answer for a session (`current_status` at `checked_at`) into the view as a
    /// `source: lookup` state, on top of `basis` (what [`ViewReader::read`] said before VX was
    /// asked), under [`rule::decide_lookup`]. Never fails the caller: a write that cannot be
    /// made is logged at debug and counted.
    pub async fn record_lookup(
        &self,
        basis: ViewRead,
        current_status: &str,
        checked_at: String,
        request_id: &str,
    ) {
        let basis = match basis {
            ViewRead::Found(s) => Some(s),
            ViewRead::Missing => None,
            ViewRead::Unavailable => return,
        };
        let state =
            SessionState::from_lookup(request_id, basis.as_ref(), current_status, checked_at);
        let work = async {
            let store = self.store().await?;
            apply_lookup(&store, basis.as_ref(), &state).await.ok()
        };
        let outcome = match tokio::time::timeout(READ_TIMEOUT, work).await {
            Ok(Some(SessionUpdate::Applied)) => LookupWrite::Applied,
            Ok(Some(SessionUpdate::Unchanged)) => LookupWrite::Unchanged,
            Ok(Some(_)) => LookupWrite::Stale,
            _ => {
                tracing::debug!(bucket = %self.bucket, "session view: a lookup's answer was not written");
                LookupWrite::Failed
            }
        };
        SESSION_LOOKUP_WRITES.get(outcome).increment(1);
    }

    /// The bucket, opened on first use and again after a failure.
    async fn store(&self) -> Option<kv::Store> {
        let cached = self.store.lock().unwrap_or_else(|e| e.into_inner()).clone();
        if cached.is_some() {
            return cached;
        }
        let opened = self.js.get_key_value(&self.bucket).await.ok()?;
        *self.store.lock().unwrap_or_else(|e| e.into_inner()) = Some(opened.clone());
        Some(opened)
    }

    fn forget_store(&self) {
        *self.store.lock().unwrap_or_else(|e| e.into_inner()) = None;
    }
}

/// What [`ViewReader::read`] found.
#[derive(Debug, Clone)]
pub enum ViewRead {
    /// The session's state.
    Found(SessionState),
    /// No key: the view has never heard of the session.
    Missing,
    /// The view cannot say (bucket unreadable, a timeout, a value that is not ours).
    Unavailable,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rank(terminal: bool, stream_seq: u64) -> rule::Rank {
        rule::Rank {
            terminal,
            stream_seq,
        }
    }

    #[test]
    fn known_keys_remember_the_last_revision_and_rank_of_a_key() {
        let known = KnownKeys::new(16, Duration::from_secs(600));
        assert_eq!(known.get("a"), None);
        known.insert("a", 3, rank(false, 7));
        known.insert("b", 4, rank(true, 8));
        assert_eq!(known.get("a"), Some((3, rank(false, 7))));
        known.insert("a", 5, rank(true, 9));
        assert_eq!(known.get("a"), Some((5, rank(true, 9))));
        assert_eq!(known.get("b"), Some((4, rank(true, 8))));
    }

    #[test]
    fn known_keys_are_forgotten_after_their_ttl() {
        let known = KnownKeys::new(16, Duration::from_millis(20));
        known.insert("a", 3, rank(false, 7));
        assert_eq!(known.get("a"), Some((3, rank(false, 7))));
        std::thread::sleep(Duration::from_millis(40));
        assert_eq!(known.get("a"), None);
    }

    #[test]
    fn known_keys_stay_bounded() {
        let known = KnownKeys::new(100, Duration::from_secs(600));
        for i in 0..10_000u64 {
            known.insert(&i.to_string(), i, rank(false, i));
        }
        let kept = (0..10_000u64)
            .filter(|i| known.get(&i.to_string()).is_some())
            .count();
        assert!(kept > 0 && kept <= 200, "{kept}");
    }

    #[test]
    fn encode_writes_the_same_bytes_as_to_vec() {
        let state = SessionState {
            schema_version: rule::STATE_VERSION,
            request_id: "4ed2ec66-9471-415d-99ce-7bd1742fc2b8".into(),
            status: "PASS".into(),
            current_status: Some("COMPLETED".into()),
            terminal: true,
            event_id: Some("0190a0b4-1c2d-8e3f-9a4b-5c6d7e8f9a0b".into()),
            event_type: Some("completed.pass".into()),
            stream_seq: Some(12_345_678),
            source: Source::Webhook,
            updated_at: "2026-01-01T00:00:00.000Z".into(),
            reference: Some("Ref123".into()),
            stops: 3,
        };
        let encoded = encode(&state).unwrap();
        assert_eq!(&encoded[..], &serde_json::to_vec(&state).unwrap()[..]);
        assert!(encoded.len() <= ENCODED_STATE, "{}", encoded.len());
    }
}
