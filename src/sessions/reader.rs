//! The status service's side of the view: a key get, a direct get of the event at a state's
//! `stream_seq` (`None` rather than an error), and [`ViewReader::record_lookup`]. It must not
//! write anything but a lookup's state, and that only under [`super::rule::decide_lookup`].

use std::time::Duration;

use async_nats::jetstream::{self, kv};

use super::rule::SessionState;
use super::writer::apply_lookup;
use super::{terminal, TerminalStates};
use crate::telemetry::{LookupWrite, SessionUpdate, SESSION_LOOKUP_WRITES};

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
