//! `vx-bridge sessions rebuild`: re-projects the whole event stream into the session bucket,
//! or into another, empty one (`--into`), through the same rule as the live projector.
//!
//! Safe while bridges run: it reads the stream with an ordered consumer of its own (the
//! projector's durable consumer is not touched), and every write goes through [`apply`], so the
//! live projector and the rebuild converge on the same values whatever order they write in.
//! Rebuilding in place purges the bucket first; until the rebuild has passed a session, lookups
//! of it are asked of VX, as for a session the view has never seen. Lookup states
//! (`source: lookup`) are not in the stream, so a rebuild does not bring them back.
//! Must not touch: the event stream's messages or config, or the projector's consumer.

use std::collections::HashSet;
use std::time::Duration;

use async_nats::jetstream::{self, consumer};
use futures::StreamExt as _;

use super::fields;
use super::projector::source_of;
use super::rule::SessionState;
use super::{apply, desired_bucket, ViewError};
use crate::config::{SessionsConfig, StreamConfig};
use crate::nats::JetStreamFailure;
use crate::telemetry::SessionUpdate;

/// Events whose writes run at once.
const BATCH: usize = 128;

/// What a rebuild did.
#[derive(Debug, Default, Clone, PartialEq, Eq, serde::Serialize)]
pub struct RebuildReport {
    /// The bucket written.
    pub bucket: String,
    /// Events read from the stream (rejected bodies and unreadable messages are skipped).
    pub events: u64,
    /// Distinct keys this rebuild wrote at least once.
    pub keys_written: u64,
    /// Writes made (a key outranked by a later event of its session is written again).
    pub writes: u64,
    /// Messages that are not events (rejected bodies, foreign messages).
    pub skipped: u64,
    /// The stream's last sequence when the rebuild started; later events are left to the live
    /// projector.
    pub last_seq: u64,
}

/// Re-projects every event of `stream` up to its last sequence at start into `into` (default:
/// the configured bucket), purged first. `rejected` is the rejected-bodies subject.
pub async fn rebuild(
    js: &jetstream::Context,
    cfg: &SessionsConfig,
    stream: &StreamConfig,
    rejected: &str,
    into: Option<&str>,
) -> Result<RebuildReport, ViewError> {
    let mut target = cfg.clone();
    if let Some(bucket) = into {
        target.bucket = bucket.to_owned();
    }
    let kv_stream = desired_bucket(&target, stream);
    js.create_or_update_stream(kv_stream.clone())
        .await
        .map_err(JetStreamFailure::during(format!(
            "creating bucket {}",
            target.bucket
        )))?;
    let kv = js
        .get_stream(&kv_stream.name)
        .await
        .map_err(JetStreamFailure::during(format!(
            "opening bucket {}",
            target.bucket
        )))?;
    kv.purge().await.map_err(JetStreamFailure::during(format!(
        "purging bucket {}",
        target.bucket
    )))?;
    let store = js
        .get_key_value(&target.bucket)
        .await
        .map_err(JetStreamFailure::during(format!(
            "opening bucket {}",
            target.bucket
        )))?;

    let mut events = js
        .get_stream(&stream.name)
        .await
        .map_err(|e| match e.kind() {
            jetstream::context::GetStreamErrorKind::JetStream(j)
                if j.error_code() == jetstream::ErrorCode::STREAM_NOT_FOUND =>
            {
                ViewError::NoStream(stream.name.clone())
            }
            _ => JetStreamFailure::during(format!("opening stream {}", stream.name))(e).into(),
        })?;
    let last_seq = events
        .info()
        .await
        .map_err(JetStreamFailure::during(format!(
            "reading the state of stream {}",
            stream.name
        )))?
        .state
        .last_sequence;
    let mut report = RebuildReport {
        bucket: target.bucket.clone(),
        last_seq,
        ..Default::default()
    };
    if last_seq == 0 {
        return Ok(report);
    }
    let reader = events
        .create_consumer(consumer::pull::OrderedConfig {
            deliver_policy: consumer::DeliverPolicy::All,
            ..Default::default()
        })
        .await
        .map_err(JetStreamFailure::during(format!(
            "reading stream {}",
            stream.name
        )))?;
    let mut messages = reader
        .messages()
        .await
        .map_err(JetStreamFailure::during(format!(
            "reading stream {}",
            stream.name
        )))?;
    let mut keys = HashSet::new();
    let mut batch = Vec::with_capacity(BATCH);
    loop {
        let next = tokio::time::timeout(Duration::from_secs(10), messages.next())
            .await
            .map_err(|_| ViewError::Stopped("the stream stopped delivering"))?;
        let msg = match next {
            Some(Ok(m)) => m,
            Some(Err(e)) => {
                return Err(
                    JetStreamFailure::during(format!("reading stream {}", stream.name))(e).into(),
                )
            }
            None => return Err(ViewError::Stopped("the stream reader ended early")),
        };
        let Ok(info) = msg.info() else {
            report.skipped += 1;
            continue;
        };
        let seq = info.stream_sequence;
        let fields = (msg.subject.as_str() != rejected)
            .then(|| {
                fields::from_headers(msg.headers.as_ref())
                    .or_else(|| fields::from_body(&msg.payload).ok())
            })
            .flatten();
        match fields {
            Some(event) => {
                report.events += 1;
                batch.push(SessionState::from_event(event, seq, source_of(&msg)));
            }
            None => report.skipped += 1,
        }
        let done = seq >= last_seq;
        if batch.len() >= BATCH || done {
            // Writes of one batch run at once; two of one key are ordered by compare-and-set.
            let outcomes =
                futures::future::join_all(batch.iter().map(|state| apply(&store, state))).await;
            for (state, outcome) in batch.drain(..).zip(outcomes) {
                if outcome? == SessionUpdate::Applied {
                    report.writes += 1;
                    keys.insert(state.request_id);
                }
            }
        }
        if done {
            break;
        }
    }
    report.keys_written = keys.len() as u64;
    Ok(report)
}
