//! The terminal states the status service answers from memory, and how it learns of new ones
//! without asking the bucket on every lookup.
//!
//! [`TerminalStates`] is one in-memory cache (request_id → terminal [`SessionState`]) shared by
//! the [`super::ViewReader`] and, in the same process, the projector: a terminal state the
//! projector writes is inserted before its event is acked (a local signal, no lag). Writes made
//! by other replicas (or by hand) arrive through a KV watch of the bucket ([`spawn_watch`]:
//! updates only, from the moment it starts; terminal values inserted, deletes and purges
//! forgotten), whose lag is one NATS delivery (milliseconds).
//!
//! While the watch is not running (starting, the bucket missing, NATS disconnected or the watch
//! being re-created after a reconnect) [`TerminalStates::watched_since`] says `None`, and the
//! status service reads the bucket on every lookup as before; an answer cached before the watch
//! (re)started is not trusted either (the watch may have missed a write meanwhile).
//!
//! Must not touch: the bucket's values (it only reads them) or the event stream.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_nats::jetstream::{self, kv};
use futures::StreamExt as _;
use time::OffsetDateTime;

use super::rule::SessionState;

/// Terminal session states kept in memory, and since when the bucket's watch has been running.
#[derive(Clone)]
pub struct TerminalStates {
    cache: moka::future::Cache<String, SessionState>,
    /// When the current watch started; `None` while there is none.
    watched_since: Arc<Mutex<Option<OffsetDateTime>>>,
}

impl std::fmt::Debug for TerminalStates {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TerminalStates")
            .field("cached", &self.cache.entry_count())
            .field("watched_since", &self.since())
            .finish()
    }
}

/// How often the watch checks the connection, to re-create itself after a reconnect.
const CONNECTION_CHECK: Duration = Duration::from_millis(250);

impl TerminalStates {
    /// Up to `max` terminal states, each kept `ttl`.
    pub fn new(ttl: Duration, max: u64) -> Self {
        Self {
            cache: moka::future::Cache::builder()
                .name("vx-bridge-view-terminal")
                .max_capacity(max)
                .time_to_live(ttl)
                .build(),
            watched_since: Arc::new(Mutex::new(None)),
        }
    }

    /// The terminal state of `key` (a lower-case request_id), if known.
    pub async fn get(&self, key: &str) -> Option<SessionState> {
        self.cache.get(key).await
    }

    /// Remembers `state` when it is terminal.
    pub async fn insert(&self, state: &SessionState) {
        if state.terminal {
            self.cache
                .insert(state.request_id.to_ascii_lowercase(), state.clone())
                .await;
        }
    }

    /// Since when every terminal write to the bucket reaches this cache (within the watch's
    /// lag): `None` while the watch is not running or `client` is not connected.
    pub fn watched_since(&self, client: &async_nats::Client) -> Option<OffsetDateTime> {
        if client.connection_state() != async_nats::connection::State::Connected {
            return None;
        }
        self.since()
    }

    fn since(&self) -> Option<OffsetDateTime> {
        *self.watched_since.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn set_since(&self, since: Option<OffsetDateTime>) {
        *self.watched_since.lock().unwrap_or_else(|e| e.into_inner()) = since;
    }

    /// One watched entry: a terminal value is remembered, a delete or purge forgotten.
    async fn note(&self, entry: kv::Entry) {
        match entry.operation {
            kv::Operation::Put => {
                if let Ok(state) = serde_json::from_slice::<SessionState>(&entry.value) {
                    self.insert(&state).await;
                }
            }
            kv::Operation::Delete | kv::Operation::Purge => {
                self.cache.invalidate(&entry.key).await;
            }
        }
    }
}

/// Watches `bucket` over `client` (updates only, from now) into `states`, re-creating the watch
/// after a failure or a reconnect (50 ms, doubling to 2 s, between tries), until aborted.
pub fn spawn_watch(
    client: async_nats::Client,
    bucket: String,
    states: TerminalStates,
) -> tokio::task::JoinHandle<()> {
    let js = jetstream::new(client.clone());
    tokio::spawn(async move {
        let mut wait = Duration::from_millis(50);
        loop {
            states.set_since(None);
            if client.connection_state() == async_nats::connection::State::Connected {
                if let Ok(mut watch) = open(&js, &bucket).await {
                    states.set_since(Some(OffsetDateTime::now_utc()));
                    wait = Duration::from_millis(50);
                    let mut check = tokio::time::interval(CONNECTION_CHECK);
                    loop {
                        tokio::select! {
                            next = watch.next() => match next {
                                Some(Ok(entry)) => states.note(entry).await,
                                Some(Err(e)) => {
                                    tracing::debug!(bucket = %bucket, error = %e, "session view watch failed; re-creating it");
                                    break;
                                }
                                None => break,
                            },
                            _ = check.tick() => {
                                if client.connection_state() != async_nats::connection::State::Connected {
                                    break;
                                }
                            }
                        }
                    }
                    states.set_since(None);
                }
            }
            tokio::time::sleep(wait).await;
            wait = (wait * 2).min(Duration::from_secs(2));
        }
    })
}

/// The bucket's watch of every key, updates only: created on the server when this returns.
async fn open(js: &jetstream::Context, bucket: &str) -> Result<kv::Watch, async_nats::Error> {
    let store = js.get_key_value(bucket).await?;
    Ok(store.watch_all().await?)
}
