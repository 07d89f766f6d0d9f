//! The stream: [`ensure_stream`] creates or updates it, or checks it, so that it captures exactly
//! our event subjects and never a request-reply subject. [`keep_stream`] (the stream keeper) keeps
//! it so while the service runs, and [`StreamState`] is what it knows, for readiness and for the
//! ingress to report a stream that went missing.
//!
//! This module must not publish events or decide what is retryable (that is
//! [`crate::nats::publisher`]).

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use async_nats::jetstream::{self, stream};
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

use crate::config::{StorageKind, StreamConfig};
use crate::nats::publisher::Publisher;
use crate::nats::subjects::{subject_matches, Subjects};
use crate::nats::version::ServerVersion;
use crate::nats::JetStreamFailure;

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

/// A JetStream KV bucket, as the configuration of its stream `KV_<bucket>` (what a bucket is):
/// `history` values per key, kept for `max_age` (zero: no limit), storage and replicas as given.
/// Built here rather than with async-nats' `create_key_value`, whose account query fails on
/// nats-server 2.9. Used for the session view and for `vx-bridge replay`'s markers.
pub fn kv_bucket_stream(
    bucket: &str,
    description: &str,
    history: i64,
    max_age: Duration,
    storage: StorageKind,
    replicas: usize,
) -> stream::Config {
    stream::Config {
        name: format!("KV_{bucket}"),
        description: Some(description.to_owned()),
        subjects: vec![format!("$KV.{bucket}.>")],
        max_messages_per_subject: history,
        max_messages: -1,
        max_bytes: -1,
        max_message_size: -1,
        max_age,
        // The server's default window (2 min) may not exceed max_age.
        duplicate_window: if max_age.is_zero() {
            Duration::from_secs(120)
        } else {
            max_age.min(Duration::from_secs(120))
        },
        storage: match storage {
            StorageKind::File => stream::StorageType::File,
            StorageKind::Memory => stream::StorageType::Memory,
        },
        num_replicas: replicas,
        allow_rollup: true,
        deny_delete: true,
        deny_purge: false,
        allow_direct: true,
        discard: stream::DiscardPolicy::New,
        ..Default::default()
    }
}

/// Whether opening a KV bucket failed because its stream does not exist (rather than NATS
/// being unreachable): the caller then says "missing", not "unavailable".
pub fn is_missing_bucket(e: &async_nats::jetstream::context::KeyValueError) -> bool {
    use async_nats::jetstream::context::{GetStreamError, GetStreamErrorKind};
    matches!(
        std::error::Error::source(e)
            .and_then(|s| s.downcast_ref::<GetStreamError>())
            .map(|g| g.kind()),
        Some(GetStreamErrorKind::JetStream(j))
            if j.error_code() == async_nats::jetstream::ErrorCode::STREAM_NOT_FOUND
    )
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
    #[error("nats.stream.replicas = {replicas}, but the NATS servers cannot place {replicas} replicas (a single server holds only 1; a cluster needs at least as many JetStream servers up): lower nats.stream.replicas or add servers; the server said")]
    TooFewServers {
        /// `nats.stream.replicas`.
        replicas: usize,
        /// The server's error.
        #[source]
        source: jetstream::Error,
    },
    /// The JetStream API failed.
    #[error(transparent)]
    Api(#[from] crate::nats::JetStreamFailure),
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
                        source: inner.clone(),
                    }
                }
                _ => JetStreamFailure::during(format!("creating stream {}", cfg.name))(e).into(),
            })?
    } else {
        let stream = js.get_stream(&cfg.name).await.map_err(|e| match e.kind() {
            jetstream::context::GetStreamErrorKind::JetStream(inner)
                if inner.error_code() == jetstream::ErrorCode::STREAM_NOT_FOUND =>
            {
                StreamError::Missing(cfg.name.clone())
            }
            _ => JetStreamFailure::during(format!("opening stream {}", cfg.name))(e).into(),
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

/// Whether the stream is in place, and a way to ask for it to be checked again.
#[derive(Debug, Default)]
pub struct StreamState {
    ready: AtomicBool,
    recheck: Notify,
}

impl StreamState {
    /// The stream was found or created.
    pub fn set_ready(&self, ready: bool) {
        crate::telemetry::STREAM_READY
            .one()
            .set(crate::telemetry::flag(ready));
        self.ready.store(ready, Ordering::Release);
    }

    /// Whether the stream is in place.
    pub fn is_ready(&self) -> bool {
        self.ready.load(Ordering::Acquire)
    }

    /// A publish found no stream: mark not ready and wake the keeper.
    pub fn lost(&self) {
        self.set_ready(false);
        self.recheck.notify_one();
    }

    /// Waits until someone calls [`StreamState::lost`].
    pub async fn wait_recheck(&self) {
        self.recheck.notified().await;
    }
}

/// Makes sure the stream is in place: at start, whenever a publish finds it missing, and every
/// 30 s. Marks readiness accordingly and warns once when it has a single replica. Each time the
/// stream is found in place (connected, so the server's INFO is known), `on_ready` is given the
/// server's `max_payload`.
pub async fn keep_stream(
    publisher: Publisher,
    cfg: StreamConfig,
    subjects: Subjects,
    state: Arc<StreamState>,
    mut on_ready: impl FnMut(usize) + Send,
    shutdown: CancellationToken,
) {
    let js = publisher.jetstream();
    let cfg = &cfg;
    let mut warned = false;
    let mut warned_version = false;
    loop {
        let result = if state.is_ready() {
            // Already set up: only look that it is still there and still right.
            match js.get_stream(&cfg.name).await {
                Ok(s) => {
                    let info = s.cached_info();
                    check_subjects(&cfg.name, &info.config.subjects, &subjects)
                        .map(|_| info.config.num_replicas)
                }
                Err(e) => {
                    Err(JetStreamFailure::during(format!("opening stream {}", cfg.name))(e).into())
                }
            }
        } else {
            ensure_stream(js, cfg, &subjects).await
        };
        match result {
            Ok(replicas) => {
                if !state.is_ready() {
                    tracing::info!(stream = %cfg.name, replicas, "stream ready");
                }
                // Connected, so the server's INFO (max_payload) is known.
                on_ready(publisher.max_payload());
                state.set_ready(true);
                // Once per process: a replicated stream on a server version where our partition
                // suite saw replicas diverge (`nats::version`).
                if !warned_version {
                    let version = ServerVersion::parse(&js.client().server_info().version);
                    if let Some(w) = version.replicated_stream_warning(replicas) {
                        warned_version = true;
                        tracing::warn!(stream = %cfg.name, replicas, version = %version.label(), "{w}");
                    }
                }
                if replicas < 3 && !warned {
                    warned = true;
                    tracing::warn!(
                        stream = %cfg.name,
                        replicas,
                        "the stream has fewer than 3 replicas: a 202 means the event reached one server's memory and disk cache, and a single server failure can lose it; use replicas = 3 in production"
                    );
                }
            }
            Err(e) => {
                state.set_ready(false);
                tracing::error!(stream = %cfg.name, error = %crate::telemetry::error_chain(&e), "stream not ready; retrying");
            }
        }
        // While not ready, re-check every second and no faster: webhooks riding through an
        // outage report a missing stream on every attempt.
        let ready = state.is_ready();
        let wait = if ready {
            Duration::from_secs(30)
        } else {
            Duration::from_secs(1)
        };
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = state.wait_recheck(), if ready => {}
            _ = tokio::time::sleep(wait) => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
            "verification.expired".into(),
            "verification.erased".into(),
        ];
        assert!(check_subjects("X", &ok, &s).is_ok());
    }
}
