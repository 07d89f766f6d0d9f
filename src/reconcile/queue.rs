//! The work queue: the `reconcile.stream` stream (retention `WorkQueue`, one message per
//! subject `{prefix}.reconcile.<request_id>`, the newest replacing the older), its one durable
//! pull consumer shared by every replica ([`CONSUMER`]), and registration ([`Registrar`]).
//!
//! Touches only that stream and consumer; never the event stream or the session bucket.

use std::time::Duration;

use async_nats::jetstream::{self, consumer, stream};
use async_nats::HeaderMap;
use time::OffsetDateTime;

use super::schedule::{Schedule, Work};
use crate::config::{Config, StorageKind};
use crate::nats::JetStreamFailure;
use crate::nats::Subjects;

/// Durable name of the reconciler's consumer, shared by every replica.
pub const CONSUMER: &str = "vx-bridge-reconcile";

/// How long a delivered check may run before the message is delivered again. A check starts by
/// resetting this timer (an in-progress ack), because a delivery may wait in the pull batch
/// behind slower checks first; then it has its deadline ([`super::CHECK_DEADLINE`]) and the
/// next step's publish (`nats.publish_timeout`, 5 s by default) before this runs out.
pub const ACK_WAIT: Duration = Duration::from_secs(45);

/// The header that makes a publish conditional on the subject's last sequence (0: empty).
const EXPECTED_LAST_SUBJECT_SEQ: &str = "Nats-Expected-Last-Subject-Sequence";

/// Why the work queue could not be used.
#[derive(Debug, thiserror::Error)]
pub enum QueueError {
    /// The stream is not there (the reconciler has not created it yet).
    #[error("the reconciler's work queue is not in place yet")]
    NoStream,
    /// Another check replaced the message first (a redelivery ran twice).
    #[error("superseded by another check")]
    Superseded,
    /// The JetStream API failed, or NATS is away.
    #[error(transparent)]
    Api(#[from] crate::nats::JetStreamFailure),
    /// The session's work message changed under both tries of a registration.
    #[error("the session's watch changed twice while registering")]
    Contended,
    /// The consumer's message stream ended without an error of its own.
    #[error("JetStream: the consumer's message stream ended")]
    Ended,
}

/// The work-queue stream we want, from `[reconcile]` (storage follows the event stream's).
pub fn desired_stream(config: &Config) -> stream::Config {
    let cfg = &config.reconcile;
    let subjects = Subjects::new(&config.nats.subject_prefix);
    stream::Config {
        name: cfg.stream.clone(),
        description: Some("vx-bridge reconciler: one message per watched session".into()),
        subjects: vec![subjects.reconcile_all()],
        retention: stream::RetentionPolicy::WorkQueue,
        max_messages_per_subject: 1,
        discard: stream::DiscardPolicy::Old,
        storage: match config.nats.stream.storage {
            StorageKind::File => stream::StorageType::File,
            StorageKind::Memory => stream::StorageType::Memory,
        },
        num_replicas: cfg.replicas_or(&config.nats.stream),
        allow_direct: true,
        ..Default::default()
    }
}

/// Creates or updates the stream and its durable consumer.
pub async fn ensure(
    js: &jetstream::Context,
    config: &Config,
) -> Result<(stream::Stream, consumer::PullConsumer), QueueError> {
    let name = &config.reconcile.stream;
    js.create_or_update_stream(desired_stream(config))
        .await
        .map_err(JetStreamFailure::during(format!("creating stream {name}")))?;
    let s = js
        .get_stream(name)
        .await
        .map_err(JetStreamFailure::during(format!("opening stream {name}")))?;
    let consumer = s
        .get_or_create_consumer(
            CONSUMER,
            consumer::pull::Config {
                durable_name: Some(CONSUMER.into()),
                description: Some("vx-bridge reconciler (shared by every replica)".into()),
                ack_policy: consumer::AckPolicy::Explicit,
                deliver_policy: consumer::DeliverPolicy::All,
                ack_wait: ACK_WAIT,
                // A message put back with a delay (not due yet) stays ack-pending until it comes
                // again: any bound here would stop delivery once that many sessions wait, so
                // there is none; `reconcile.concurrency` bounds the checks in flight instead.
                max_ack_pending: -1,
                ..Default::default()
            },
        )
        .await
        .map_err(JetStreamFailure::during(format!(
            "creating consumer {CONSUMER}"
        )))?;
    Ok((s, consumer))
}

/// What a registration found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Registered {
    /// When the session's next check is due.
    pub next_check_at: OffsetDateTime,
    /// This call started the watch (false: it was watched already, its schedule kept).
    pub new: bool,
}

/// Registers sessions: the watch endpoint and the projector (`watch_pending`) share it.
#[derive(Debug, Clone)]
pub struct Registrar {
    js: jetstream::Context,
    subjects: Subjects,
    schedule: Schedule,
    stream: String,
}

impl Registrar {
    /// A registrar over `client`, for `config`'s prefix, stream and schedule.
    pub fn new(client: async_nats::Client, config: &Config) -> Self {
        Self {
            js: jetstream::ContextBuilder::new()
                .timeout(config.nats.publish_timeout)
                .build(client),
            subjects: Subjects::new(&config.nats.subject_prefix),
            schedule: Schedule::from_config(&config.reconcile),
            stream: config.reconcile.stream.clone(),
        }
    }

    /// Starts watching `request_id` (a validated UUID) unless it is watched already: the first
    /// message is published only on an empty subject, so a second registration never resets a
    /// schedule; it reads the existing one's due time instead.
    pub async fn register(&self, request_id: &str) -> Result<Registered, QueueError> {
        self.register_since(request_id, OffsetDateTime::now_utc())
            .await
    }

    /// When a session watched since `since` is given up.
    pub fn give_up_at(&self, since: OffsetDateTime) -> OffsetDateTime {
        self.schedule.give_up_at(since)
    }

    /// Registers a session watched since `since` (see [`Schedule::first_since`]).
    pub async fn register_since(
        &self,
        request_id: &str,
        since: OffsetDateTime,
    ) -> Result<Registered, QueueError> {
        let subject = self.subjects.reconcile(request_id);
        // Twice: the existing message may be acked (the watch ended) between the two calls.
        for _ in 0..2 {
            let work = self
                .schedule
                .first_since(request_id, since, OffsetDateTime::now_utc());
            match publish_work(&self.js, &subject, &work, 0).await {
                Ok(()) => {
                    return Ok(Registered {
                        next_check_at: work.due_at,
                        new: true,
                    })
                }
                Err(QueueError::Superseded) => {}
                Err(e) => return Err(e),
            }
            if let Some(existing) = self.current(&subject).await? {
                return Ok(Registered {
                    next_check_at: existing.due_at,
                    new: false,
                });
            }
        }
        Err(QueueError::Contended)
    }

    /// The work message on `subject`, if any.
    async fn current(&self, subject: &str) -> Result<Option<Work>, QueueError> {
        let stream = self
            .js
            .get_stream_no_info(&self.stream)
            .await
            .map_err(JetStreamFailure::during("opening the work queue"))?;
        match stream.direct_get_last_for_subject(subject).await {
            Ok(msg) => Ok(Work::from_json(&msg.payload).ok()),
            Err(e) if e.kind() == stream::DirectGetErrorKind::NotFound => Ok(None),
            Err(e) => Err(JetStreamFailure::during("reading a work message")(e).into()),
        }
    }
}

/// Publishes `work` on `subject` if the subject's last message is `expected_seq` (0: none),
/// awaiting the PubAck. [`QueueError::Superseded`] when it is not.
pub async fn publish_work(
    js: &jetstream::Context,
    subject: &str,
    work: &Work,
    expected_seq: u64,
) -> Result<(), QueueError> {
    use jetstream::context::PublishErrorKind as K;
    let mut headers = HeaderMap::new();
    headers.insert(EXPECTED_LAST_SUBJECT_SEQ, expected_seq.to_string().as_str());
    let ack = js
        .publish_with_headers(subject.to_owned(), headers, work.to_json().into())
        .await;
    let result = match ack {
        Ok(ack) => ack.await.map(|_| ()),
        Err(e) => Err(e),
    };
    result.map_err(|e| match e.kind() {
        K::WrongLastSequence => QueueError::Superseded,
        K::StreamNotFound => QueueError::NoStream,
        _ => JetStreamFailure::during("publishing a work message")(e).into(),
    })
}
