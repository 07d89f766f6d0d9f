//! The stream: [`ensure_stream`] creates or updates it, or checks it, so that it captures exactly
//! our event subjects and never a request-reply subject.
//!
//! This module must not publish events or decide what is retryable (that is
//! [`crate::nats::publisher`]).

use async_nats::jetstream::{self, stream};

use crate::config::{StorageKind, StreamConfig};
use crate::event::Subjects;

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

#[cfg(test)]
mod tests {
    use super::*;

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
