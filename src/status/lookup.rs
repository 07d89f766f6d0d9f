//! Cached, coalesced upstream lookups.
//!
//! One `moka` future cache holds the upstream's reply per session (by id, or by email when
//! configured); `status.get` and `result.get` read the same entry, since the VX API serves both
//! from one path. Concurrent lookups of one key share one upstream call (moka's
//! `or_try_insert_with`). Replies are kept `status.cache_ttl`; terminal ones (COMPLETED, PASS,
//! FAIL) `status.terminal_cache_ttl`. Errors are never cached.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use moka::future::Cache;
use moka::Expiry;
use time::OffsetDateTime;
use uuid::Uuid;

use crate::config::StatusConfig;
use crate::telemetry::{StatusCache, TraceContext, STATUS_CACHE};
use crate::upstream::{SessionReply, UpstreamClient, UpstreamError};

/// What a lookup is keyed by.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Key {
    /// A session id.
    Id(Uuid),
    /// A user's email (kept in memory only; never logged).
    Email(String),
}

/// An upstream reply and when it was fetched.
#[derive(Debug)]
pub struct Fetched {
    /// The reply.
    pub reply: SessionReply,
    /// When the upstream answered.
    pub checked_at: OffsetDateTime,
}

/// Where an answer came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Source {
    /// This lookup called the upstream.
    Upstream,
    /// The cache, or a call made by a concurrent lookup.
    Cache,
}

impl Source {
    /// `upstream` or `cache`.
    pub fn as_str(self) -> &'static str {
        match self {
            Source::Upstream => "upstream",
            Source::Cache => "cache",
        }
    }
}

struct Ttl {
    normal: Duration,
    terminal: Duration,
}

impl Expiry<Key, Arc<Fetched>> for Ttl {
    fn expire_after_create(
        &self,
        _key: &Key,
        value: &Arc<Fetched>,
        _created_at: std::time::Instant,
    ) -> Option<Duration> {
        Some(if value.reply.is_terminal() {
            self.terminal
        } else {
            self.normal
        })
    }
}

/// The lookups.
pub struct Lookups {
    upstream: Arc<UpstreamClient>,
    cache: Cache<Key, Arc<Fetched>>,
    in_flight: Arc<AtomicUsize>,
}

impl std::fmt::Debug for Lookups {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Lookups")
            .field("entries", &self.cache.entry_count())
            .field("in_flight", &self.in_flight())
            .finish()
    }
}

/// Decrements the in-flight count when a lookup ends, however it ends.
struct InFlight(Arc<AtomicUsize>);

impl InFlight {
    fn enter(counter: &Arc<AtomicUsize>) -> Self {
        let n = counter.fetch_add(1, Ordering::SeqCst) + 1;
        crate::telemetry::STATUS_LOOKUPS_IN_FLIGHT
            .one()
            .set(n as f64);
        Self(counter.clone())
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        let n = self.0.fetch_sub(1, Ordering::SeqCst).saturating_sub(1);
        crate::telemetry::STATUS_LOOKUPS_IN_FLIGHT
            .one()
            .set(n as f64);
    }
}

impl Lookups {
    /// A cache sized and timed by `[status]`.
    pub fn new(cfg: &StatusConfig, upstream: Arc<UpstreamClient>) -> Self {
        let cache = Cache::builder()
            .name("vx-bridge-status")
            .max_capacity(cfg.cache_max_entries)
            .expire_after(Ttl {
                normal: cfg.cache_ttl,
                terminal: cfg.terminal_cache_ttl,
            })
            .build();
        Self {
            upstream,
            cache,
            in_flight: Arc::new(AtomicUsize::new(0)),
        }
    }

    /// The upstream client.
    pub fn upstream(&self) -> &UpstreamClient {
        &self.upstream
    }

    /// Lookups currently waiting for an answer (cached ones finish at once).
    pub fn in_flight(&self) -> usize {
        self.in_flight.load(Ordering::SeqCst)
    }

    /// The cached reply for `key` fetched at `since` or later, if there is one (counted as a
    /// cache hit: only an answer that is used counts); never asks the upstream.
    pub async fn cached_since(&self, key: &Key, since: OffsetDateTime) -> Option<Arc<Fetched>> {
        let hit = self
            .cache
            .get(key)
            .await
            .filter(|f| f.checked_at >= since)?;
        STATUS_CACHE.get(StatusCache::Hit).increment(1);
        Some(hit)
    }

    /// The reply for `key`, from the cache or the upstream. `Key::Email` must only be asked for
    /// when an email path is configured.
    /// `trace` goes with the upstream call (the first requester's, when lookups coalesce).
    pub async fn get(
        &self,
        key: Key,
        trace: &TraceContext,
    ) -> Result<(Arc<Fetched>, Source), Arc<UpstreamError>> {
        let _in_flight = InFlight::enter(&self.in_flight);
        let upstream = self.upstream.clone();
        let load_key = key.clone();
        let trace = trace.clone();
        let load = async move {
            let reply = match &load_key {
                Key::Id(id) => upstream.session(*id, &trace).await,
                Key::Email(email) => match upstream.by_email(email, &trace).await {
                    Some(r) => r,
                    None => Err(UpstreamError::NotFound),
                },
            }?;
            Ok::<_, UpstreamError>(Arc::new(Fetched {
                reply,
                checked_at: OffsetDateTime::now_utc(),
            }))
        };
        let entry = self.cache.entry(key).or_try_insert_with(load).await?;
        let source = if entry.is_fresh() {
            Source::Upstream
        } else {
            Source::Cache
        };
        let cache = match source {
            Source::Upstream => StatusCache::Miss,
            Source::Cache => StatusCache::Hit,
        };
        STATUS_CACHE.get(cache).increment(1);
        Ok((entry.into_value(), source))
    }
}
