//! The per-session data keys: the KV bucket `keys.bucket` (`VX_KEYS`), key = the lower-case
//! request_id (or `_day.<YYYY-MM-DD>` for rejected bodies without one), value = the data key
//! wrapped under the current KEK ([`KekRing::wrap`]), or the tombstone [`TOMBSTONE`] once the
//! session is erased. The bucket keeps one revision per key (`history` 1), so the tombstone
//! replaces the key with no earlier revision left, and its `max_age` is `retention.pii`.
//!
//! A new session costs one compare-and-set (`create`, expecting no earlier revision): two
//! replicas racing on a new session both end up with the one key that was stored first (the
//! loser reads it). Known keys are kept unwrapped in memory ([`KEY_CACHE_TTL`], and never past
//! their retention), and dropped on erasure ([`KeyStore::forget`]).
//!
//! Must not log or format key bytes, or a value of the bucket; errors carry their cause.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use async_nats::jetstream::{self, kv};
use bytes::Bytes;

use super::jwe::{JweError, Key256};
use super::kek::{KekRing, UnwrapError};
use crate::config::{Config, StorageKind};

/// The value of an erased session's key.
pub const TOMBSTONE: &[u8] = b"erased";
/// How long an unwrapped data key stays in memory after it was read or made.
pub const KEY_CACHE_TTL: Duration = Duration::from_secs(600);
/// Data keys kept in memory at most (~150 bytes each). A session's later webhooks (its next
/// journey step, minutes later) often reach another replica anyway; the cache is for the
/// retries, bursts and lookups of recent sessions, and its size is part of the resident set.
const KEY_CACHE_CAPACITY: usize = 4_096;

/// A session's data key as the bucket holds it.
#[derive(Clone, Debug)]
pub enum DataKey {
    /// The key, unwrapped.
    Active(Key256),
    /// The session was erased: its key is a tombstone.
    Erased,
}

/// What a read of a key found.
#[derive(Clone, Debug)]
pub enum Lookup {
    /// The key, or its tombstone.
    Found(DataKey),
    /// No key: never made, or gone past `retention.pii`.
    Missing,
}

/// Why the keys bucket could not answer.
#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    /// NATS or JetStream failed (not connected, timeout, no bucket leader, …): a retry may
    /// succeed.
    #[error("keys bucket {bucket}: {op} failed")]
    Nats {
        /// The bucket.
        bucket: String,
        /// What was being done.
        op: &'static str,
        /// The client's error.
        #[source]
        source: async_nats::Error,
    },
    /// The bucket does not exist and `keys.create` is false.
    #[error("keys bucket {0} does not exist (keys.create = false)")]
    Missing(String),
    /// A stored data key does not open with the KEKs of `keys.kek_file`.
    #[error("the data key of {key} cannot be unwrapped")]
    Unwrap {
        /// The bucket key (a request_id, not personal data).
        key: String,
        /// Why.
        #[source]
        source: UnwrapError,
    },
    /// No KEK configured (a process without `keys.kek_file`).
    #[error("no KEK configured (keys.kek_file)")]
    NoKek,
    /// Making a key or a wrap failed.
    #[error("making a data key failed")]
    Jwe(#[source] JweError),
}

impl KeyError {
    /// Whether waiting and trying again can succeed (NATS away), as
    /// `PublishError::is_retryable`.
    pub fn is_retryable(&self) -> bool {
        matches!(self, KeyError::Nats { .. })
    }
}

#[derive(Clone)]
struct Cached {
    key: DataKey,
    until: Instant,
}

/// The keys bucket, its KEKs and the cache of known keys.
pub struct KeyStore {
    js: jetstream::Context,
    bucket: String,
    create: bool,
    retention: Duration,
    storage: StorageKind,
    replicas: usize,
    keks: Option<KekRing>,
    /// The bucket's handle, shared: a `kv::Store` clone copies its stream's whole info.
    store: Mutex<Option<Arc<kv::Store>>>,
    cache: quick_cache::sync::Cache<String, Cached>,
}

impl std::fmt::Debug for KeyStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KeyStore")
            .field("bucket", &self.bucket)
            .field("keks", &self.keks)
            .finish()
    }
}

impl KeyStore {
    /// The store of `config`'s `[keys]` over `client`, with `keks` (none: it can erase and tell
    /// what a key is, but neither make nor unwrap one).
    pub fn new(client: async_nats::Client, config: &Config, keks: Option<KekRing>) -> KeyStore {
        KeyStore {
            js: jetstream::ContextBuilder::new()
                .timeout(config.nats.publish_timeout)
                .build(client),
            bucket: config.keys.bucket.clone(),
            create: config.keys.create,
            retention: config.retention.pii,
            storage: config.nats.stream.storage,
            replicas: config.keys.replicas.unwrap_or(config.nats.stream.replicas),
            keks,
            store: Mutex::new(None),
            cache: quick_cache::sync::Cache::new(KEY_CACHE_CAPACITY),
        }
    }

    /// The bucket's name.
    pub fn bucket(&self) -> &str {
        &self.bucket
    }

    /// The KEKs, if configured.
    pub fn keks(&self) -> Option<&KekRing> {
        self.keks.as_ref()
    }

    /// The bucket's stream configuration: one revision per key, `max_age` = `retention.pii`.
    pub fn desired_bucket(&self) -> jetstream::stream::Config {
        crate::nats::stream::kv_bucket_stream(
            &self.bucket,
            "vx-bridge: per-session data keys, wrapped under a KEK; max_age is retention.pii",
            1,
            self.retention,
            self.storage,
            self.replicas,
        )
    }

    /// The bucket, created or updated on first use (`keys.create`), opened again after a failure.
    pub async fn store(&self) -> Result<Arc<kv::Store>, KeyError> {
        if let Some(s) = self.lock().clone() {
            return Ok(s);
        }
        let nats = |op: &'static str| {
            let bucket = self.bucket.clone();
            move |e: async_nats::Error| KeyError::Nats {
                bucket,
                op,
                source: e,
            }
        };
        if self.create {
            self.js
                .create_or_update_stream(self.desired_bucket())
                .await
                .map_err(|e| nats("creating the bucket")(e.into()))?;
        }
        let store = self.js.get_key_value(&self.bucket).await.map_err(|e| {
            if crate::nats::stream::is_missing_bucket(&e) {
                KeyError::Missing(self.bucket.clone())
            } else {
                nats("opening the bucket")(e.into())
            }
        })?;
        let store = Arc::new(store);
        *self.lock() = Some(store.clone());
        Ok(store)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Option<Arc<kv::Store>>> {
        self.store.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn nats_error(&self, op: &'static str, e: impl Into<async_nats::Error>) -> KeyError {
        // The handle may be stale (bucket deleted, leader moved): open it again next time.
        *self.lock() = None;
        KeyError::Nats {
            bucket: self.bucket.clone(),
            op,
            source: e.into(),
        }
    }

    /// Fails fast while the client is not connected (as the publisher does), rather than
    /// leaving a request in the client's buffer until the JetStream timeout: a ride-through
    /// then sees the outage at once and retries.
    fn connected(&self, op: &'static str) -> Result<(), KeyError> {
        if self.js.client().connection_state() == async_nats::connection::State::Connected {
            Ok(())
        } else {
            Err(KeyError::Nats {
                bucket: self.bucket.clone(),
                op,
                source: "not connected to NATS".into(),
            })
        }
    }

    fn cached(&self, kid: &str) -> Option<DataKey> {
        let c = self.cache.get(kid)?;
        if Instant::now() < c.until {
            Some(c.key)
        } else {
            self.cache.remove(kid);
            None
        }
    }

    fn remember(&self, kid: &str, key: &DataKey, age: Duration) {
        let left = self.retention.saturating_sub(age).min(KEY_CACHE_TTL);
        if left.is_zero() {
            return;
        }
        // A read that began before an erasure must not bring the erased key back.
        if matches!(key, DataKey::Active(_))
            && self
                .cache
                .get(kid)
                .is_some_and(|c| matches!(c.key, DataKey::Erased))
        {
            return;
        }
        self.cache.insert(
            kid.to_owned(),
            Cached {
                key: key.clone(),
                until: Instant::now() + left,
            },
        );
    }

    /// Marks `kid` erased in memory (it was erased, here or by another replica): its key is
    /// never used again by this process, and a read in flight cannot bring it back.
    pub fn forget(&self, kid: &str) {
        self.cache.insert(
            kid.to_owned(),
            Cached {
                key: DataKey::Erased,
                until: Instant::now() + KEY_CACHE_TTL,
            },
        );
    }

    /// The data key to write `kid`'s personal data under: the cached one, the stored one, or a
    /// new one stored with one compare-and-set. A tombstone answers [`DataKey::Erased`].
    pub async fn data_key(&self, kid: &str) -> Result<DataKey, KeyError> {
        if let Some(k) = self.cached(kid) {
            return Ok(k);
        }
        let keks = self.keks.as_ref().ok_or(KeyError::NoKek)?;
        self.connected("making a data key")?;
        let store = self.store().await?;
        let fresh = Key256::random().map_err(KeyError::Jwe)?;
        let wrapped = keks.wrap(&fresh).map_err(KeyError::Jwe)?;
        match store.create(kid, Bytes::from(wrapped)).await {
            Ok(_) => {
                let key = DataKey::Active(fresh);
                self.remember(kid, &key, Duration::ZERO);
                Ok(key)
            }
            Err(e) if e.kind() == kv::CreateErrorKind::AlreadyExists => {
                // Another writer (a replica, or an earlier delivery) made it first: use theirs.
                match self.lookup_in(&store, kid).await? {
                    Lookup::Found(k) => Ok(k),
                    // Gone between the two calls (max_age): a retry makes a new one.
                    Lookup::Missing => Err(KeyError::Nats {
                        bucket: self.bucket.clone(),
                        op: "reading a key that was just there",
                        source: "the key expired between create and read".into(),
                    }),
                }
            }
            Err(e) => Err(self.nats_error("creating a data key", e)),
        }
    }

    /// What the bucket holds for `kid` now, read from the bucket even when the key is in memory
    /// (an erasure in memory is believed): for reading personal data, so that a key destroyed
    /// elsewhere is never used from this process's memory.
    pub async fn lookup(&self, kid: &str) -> Result<Lookup, KeyError> {
        if let Some(DataKey::Erased) = self.cached(kid) {
            return Ok(Lookup::Found(DataKey::Erased));
        }
        self.connected("reading a data key")?;
        let store = self.store().await?;
        self.lookup_in(&store, kid).await
    }

    async fn lookup_in(&self, store: &kv::Store, kid: &str) -> Result<Lookup, KeyError> {
        let entry = store
            .entry(kid)
            .await
            .map_err(|e| self.nats_error("reading a data key", e))?;
        let Some(entry) = entry.filter(|e| e.operation == kv::Operation::Put) else {
            return Ok(Lookup::Missing);
        };
        let age = (time::OffsetDateTime::now_utc() - entry.created)
            .try_into()
            .unwrap_or(Duration::ZERO);
        let key = if entry.value.as_ref() == TOMBSTONE {
            DataKey::Erased
        } else {
            let keks = self.keks.as_ref().ok_or(KeyError::NoKek)?;
            let text = std::str::from_utf8(&entry.value).unwrap_or_default();
            let (key, _) = keks.unwrap_key(text).map_err(|e| KeyError::Unwrap {
                key: kid.to_owned(),
                source: e,
            })?;
            DataKey::Active(key)
        };
        self.remember(kid, &key, age);
        Ok(Lookup::Found(key))
    }

    /// Whether `kid`'s key is a tombstone (a read of the value only: needs no KEK).
    /// Only an erasure is believed from memory: a cached live key is checked against the bucket
    /// (a replica that missed the `erased` message must not answer for a destroyed key). A
    /// bucket that does not exist holds no tombstone.
    pub async fn is_erased(&self, kid: &str) -> Result<bool, KeyError> {
        if let Some(DataKey::Erased) = self.cached(kid) {
            return Ok(true);
        }
        self.connected("reading a data key")?;
        let store = match self.store().await {
            Ok(s) => s,
            Err(KeyError::Missing(_)) => return Ok(false),
            Err(e) => return Err(e),
        };
        let entry = store
            .entry(kid)
            .await
            .map_err(|e| self.nats_error("reading a data key", e))?;
        Ok(entry
            .is_some_and(|e| e.operation == kv::Operation::Put && e.value.as_ref() == TOMBSTONE))
    }

    /// Replaces `kid`'s key with the tombstone (one revision per key: no earlier revision is
    /// left). Returns whether it was a tombstone already.
    pub async fn erase(&self, kid: &str) -> Result<bool, KeyError> {
        let store = self.store().await?;
        let before = store
            .entry(kid)
            .await
            .map_err(|e| self.nats_error("reading a data key", e))?;
        let already = before
            .as_ref()
            .is_some_and(|e| e.operation == kv::Operation::Put && e.value.as_ref() == TOMBSTONE);
        if !already {
            store
                .put(kid, Bytes::from_static(TOMBSTONE))
                .await
                .map_err(|e| self.nats_error("writing a tombstone", e))?;
        }
        self.remember(kid, &DataKey::Erased, Duration::ZERO);
        Ok(already)
    }

    /// Re-wraps every data key under the current KEK (`vx-bridge keys rewrap`): each with a
    /// compare-and-set on its revision, so a key erased or rewritten meanwhile by a running
    /// bridge is left as it is now.
    pub async fn rewrap(&self) -> Result<RewrapReport, KeyError> {
        use futures::TryStreamExt as _;
        let keks = self.keks.as_ref().ok_or(KeyError::NoKek)?;
        let store = self.store().await?;
        let keys: Vec<String> = store
            .keys()
            .await
            .map_err(|e| self.nats_error("listing keys", e))?
            .try_collect()
            .await
            .map_err(|e| self.nats_error("listing keys", e))?;
        let mut report = RewrapReport::default();
        for kid in keys {
            report.seen += 1;
            let Some(entry) = store
                .entry(kid.as_str())
                .await
                .map_err(|e| self.nats_error("reading a data key", e))?
                .filter(|e| e.operation == kv::Operation::Put)
            else {
                report.gone += 1;
                continue;
            };
            if entry.value.as_ref() == TOMBSTONE {
                report.tombstones += 1;
                continue;
            }
            let text = std::str::from_utf8(&entry.value).unwrap_or_default();
            let (key, by) = match keks.unwrap_key(text) {
                Ok(k) => k,
                Err(UnwrapError::UnknownKek(id)) => {
                    report.unknown_kek.push((kid.clone(), id));
                    continue;
                }
                Err(_) => {
                    report.unreadable.push(kid.clone());
                    continue;
                }
            };
            if by == keks.current_id() {
                report.current += 1;
                continue;
            }
            let wrapped = keks.wrap(&key).map_err(KeyError::Jwe)?;
            match store
                .update(kid.as_str(), Bytes::from(wrapped), entry.revision)
                .await
            {
                Ok(_) => {
                    *report.rewrapped.entry(by.to_owned()).or_default() += 1;
                }
                Err(e) if e.kind() == kv::UpdateErrorKind::WrongLastRevision => {
                    // Erased or rewrapped meanwhile: what is there now is not ours to change.
                    report.raced += 1;
                }
                Err(e) => return Err(self.nats_error("rewrapping a data key", e)),
            }
        }
        Ok(report)
    }
}

/// What `vx-bridge keys rewrap` did.
#[derive(Debug, Default, serde::Serialize)]
pub struct RewrapReport {
    /// Keys listed.
    pub seen: u64,
    /// Already under the current KEK.
    pub current: u64,
    /// Re-wrapped, by the KEK id they were under.
    pub rewrapped: std::collections::BTreeMap<String, u64>,
    /// Tombstones (erased sessions), left as they are.
    pub tombstones: u64,
    /// Gone between the listing and the read (expired).
    pub gone: u64,
    /// Changed by someone else between the read and the write: left as they are now.
    pub raced: u64,
    /// Wrapped under a KEK that keys.kek_file does not hold: (key, KEK id). Left as they are.
    pub unknown_kek: Vec<(String, String)>,
    /// Values that are not a wrapped key: left as they are.
    pub unreadable: Vec<String>,
}

/// The key of a rejected body without a session: `_day.<YYYY-MM-DD>` (UTC).
pub fn day_kid(now: time::OffsetDateTime) -> String {
    let d = now.date();
    format!(
        "_day.{:04}-{:02}-{:02}",
        d.year(),
        u8::from(d.month()),
        d.day()
    )
}

/// Shared handle.
pub type Keys = Arc<KeyStore>;
