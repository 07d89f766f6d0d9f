//! Writing a state into the bucket under the monotonic rule ([`super::rule`]): compare-and-set
//! on the key's revision, a conflict read and decided again; [`KnownKeys`] saves the read for
//! keys this projector wrote last. It must not decide what a state is (the rule does) nor read
//! the event stream.

use std::sync::Arc;
use std::time::{Duration, Instant};

use async_nats::jetstream::kv;

use super::rule::{self, decide, decide_lookup, Decision, SessionState};
use super::ViewError;
use crate::clock::{Clock, SystemClock};
use crate::nats::JetStreamFailure;
use crate::telemetry::{SessionUpdate, SESSION_UPDATES};

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
    cache: quick_cache::sync::Cache<String, (u64, rule::Rank, Instant)>,
    ttl: Duration,
    clock: Arc<dyn Clock>,
}

impl KnownKeys {
    /// Up to `capacity` keys, each forgotten `ttl` after it was remembered (the system clock).
    pub fn new(capacity: usize, ttl: Duration) -> Self {
        Self::with_clock(capacity, ttl, Arc::new(SystemClock))
    }

    /// [`KnownKeys::new`], reading time from `clock`.
    pub fn with_clock(capacity: usize, ttl: Duration, clock: Arc<dyn Clock>) -> Self {
        Self {
            cache: quick_cache::sync::Cache::new(capacity),
            ttl,
            clock,
        }
    }

    /// The revision and rank remembered for `key`, unless forgotten (evicted or too old).
    pub fn get(&self, key: &str) -> Option<(u64, rule::Rank)> {
        let (revision, rank, at) = self.cache.get(key)?;
        (self.clock.now().saturating_duration_since(at) < self.ttl).then_some((revision, rank))
    }

    /// Forgets `key` (its session was erased: the key is purged, the next write starts anew).
    pub fn forget(&self, key: &str) {
        self.cache.remove(key);
    }

    /// Remembers that `key` holds `rank` at `revision`, from now.
    pub fn insert(&self, key: &str, revision: u64, rank: rule::Rank) {
        self.cache
            .insert(key.to_owned(), (revision, rank, self.clock.now()));
    }
}

/// Keys one projector remembers (a few hundred bytes each with the cache's own overhead): the
/// sessions whose next event is likely soon.
pub(super) const KNOWN_KEYS: usize = 8_192;

/// How long a remembered key is trusted.
pub(super) const KNOWN_KEYS_TTL: Duration = Duration::from_secs(600);

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
            Err(e) => return Err(JetStreamFailure::during("writing a state")(e).into()),
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
    serde_json::to_writer(&mut out, state)?;
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
            .map_err(JetStreamFailure::during("reading a state"))?;
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
            Err(e) => return Err(JetStreamFailure::during("writing a state")(e).into()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sessions::rule::Source;

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
        let clock = crate::clock::ManualClock::new();
        let known = KnownKeys::with_clock(16, Duration::from_secs(600), Arc::new(clock.clone()));
        known.insert("a", 3, rank(false, 7));
        clock.advance(Duration::from_secs(599));
        assert_eq!(known.get("a"), Some((3, rank(false, 7))));
        clock.advance(Duration::from_secs(1));
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
