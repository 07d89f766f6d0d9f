//! Erasing one session's personal data (GDPR Art. 17), for the `{prefix}.erase` endpoint and
//! `vx-bridge erase`: the data key becomes a tombstone (no earlier revision left, so no copy of
//! the session's events that the bridge wrote can be decrypted again, wherever it is), the
//! session-view key and the reconciler's watch are removed, and `{prefix}.erased` is published on
//! the event stream so that consumers delete their own copies. Idempotent: erasing again does
//! it all again and says the key was a tombstone already.
//!
//! Touches the keys bucket, the view's bucket and the work-queue stream by their configured
//! names only (it does not import the projector or the reconciler), and publishes through the
//! normal publisher. Must not log a reason's text (free text may hold anything).

use std::sync::Arc;

use async_nats::jetstream;
use serde::Serialize;

use super::keys::{KeyError, KeyStore};
use crate::config::Config;
use crate::event::session_notice;
use crate::nats::{PublishError, Publisher, Subjects};
use crate::timestamp::format_timestamp;

/// Longest `reason` kept (characters).
pub const MAX_REASON: usize = 200;

/// What an erasure did (the endpoint's reply, `schemas/erase-reply.schema.json`).
#[derive(Debug, Clone, Serialize, serde::Deserialize, PartialEq, Eq)]
pub struct Erasure {
    /// The session, lower-case.
    pub request_id: String,
    /// When this request erased it.
    pub erased_at: String,
    /// The data key was a tombstone already.
    pub already_erased: bool,
    /// The view had a key for the session, now removed.
    pub view_key_removed: bool,
    /// The reconciler's watch of the session was removed.
    pub watch_removed: bool,
}

/// Why an erasure did not complete; every step is idempotent, so the request can be sent again.
#[derive(Debug, thiserror::Error)]
pub enum EraseError {
    /// The keys bucket could not be written.
    #[error("the data key could not be replaced by a tombstone")]
    Keys(#[source] KeyError),
    /// The view's key or the watch could not be removed.
    #[error("{what} could not be removed")]
    Cleanup {
        /// The view key or the watch.
        what: &'static str,
        /// The client's error.
        #[source]
        source: async_nats::Error,
    },
    /// `{prefix}.erased` could not be stored.
    #[error("the erased event could not be stored")]
    Publish(#[source] PublishError),
}

/// The body of `{prefix}.erased` (`schemas/session-erased.schema.json`).
#[derive(Debug, Serialize)]
struct Erased<'a> {
    schema_version: u8,
    request_id: &'a str,
    erased_at: &'a str,
    reason: Option<&'a str>,
}

/// Erases sessions: what it needs of the configuration and the connection.
pub struct Eraser {
    js: jetstream::Context,
    keys: Arc<KeyStore>,
    publisher: Publisher,
    subjects: Subjects,
    sessions_bucket: String,
    reconcile_stream: String,
}

impl Eraser {
    /// An eraser for `config` over `client`, with its key store.
    pub fn new(client: async_nats::Client, config: &Config, keys: Arc<KeyStore>) -> Eraser {
        Eraser {
            js: jetstream::ContextBuilder::new()
                .timeout(config.nats.publish_timeout)
                .build(client.clone()),
            keys,
            publisher: Publisher::new(
                client,
                config.nats.publish_timeout,
                &config.nats.stream.name,
            ),
            subjects: Subjects::new(&config.nats.subject_prefix),
            sessions_bucket: config.sessions.bucket.clone(),
            reconcile_stream: config.reconcile.stream.clone(),
        }
    }

    /// Erases `request_id` (a validated UUID; lower-cased here), `reason` cut to
    /// [`MAX_REASON`] characters.
    pub async fn erase(
        &self,
        request_id: &str,
        reason: Option<&str>,
    ) -> Result<Erasure, EraseError> {
        let rid = request_id.to_ascii_lowercase();
        let already_erased = self.keys.erase(&rid).await.map_err(EraseError::Keys)?;
        let view_key_removed = self.remove_view_key(&rid).await?;
        let watch_removed = self.remove_watch(&rid).await?;
        let erased_at = format_timestamp(std::time::SystemTime::now());
        let reason: Option<String> = reason.map(|r| r.chars().take(MAX_REASON).collect());
        let body = Erased {
            schema_version: 1,
            request_id: &rid,
            erased_at: &erased_at,
            reason: reason.as_deref(),
        };
        let msg = session_notice(self.subjects.erased(), "erased", &rid, &body);
        self.publisher
            .publish(msg)
            .await
            .map_err(EraseError::Publish)?;
        // Also told to every replica by the message itself (`spawn_forget_erased`).
        self.keys.forget(&rid);
        Ok(Erasure {
            request_id: rid,
            erased_at,
            already_erased,
            view_key_removed,
            watch_removed,
        })
    }

    /// Purges the session's key from the view (every revision); false when the view has no
    /// bucket or no key for it.
    async fn remove_view_key(&self, rid: &str) -> Result<bool, EraseError> {
        let cleanup = |e: async_nats::Error| EraseError::Cleanup {
            what: "the session-view key",
            source: e,
        };
        let store = match self.js.get_key_value(&self.sessions_bucket).await {
            Ok(s) => s,
            Err(e) if crate::nats::stream::is_missing_bucket(&e) => return Ok(false),
            Err(e) => return Err(cleanup(e.into())),
        };
        let had = store
            .entry(rid)
            .await
            .map_err(|e| cleanup(e.into()))?
            .is_some_and(|e| e.operation == jetstream::kv::Operation::Put);
        if had {
            store.purge(rid).await.map_err(|e| cleanup(e.into()))?;
        }
        Ok(had)
    }

    /// Purges the session's work message from the reconciler's queue; false when there is no
    /// queue or no watch.
    async fn remove_watch(&self, rid: &str) -> Result<bool, EraseError> {
        let stream = match self.js.get_stream(&self.reconcile_stream).await {
            Ok(s) => s,
            Err(e)
                if matches!(e.kind(), jetstream::context::GetStreamErrorKind::JetStream(j)
                    if j.error_code() == jetstream::ErrorCode::STREAM_NOT_FOUND) =>
            {
                return Ok(false)
            }
            Err(e) => {
                return Err(EraseError::Cleanup {
                    what: "the watch",
                    source: e.into(),
                })
            }
        };
        let purged = stream
            .purge()
            .filter(self.subjects.reconcile(rid))
            .await
            .map_err(|e| EraseError::Cleanup {
                what: "the watch",
                source: e.into(),
            })?;
        Ok(purged.purged > 0)
    }
}
