//! `vx-bridge replay`: brings bodies kept on `{prefix}.rejected` back as ordinary events once
//! today's checks (`webhook.schema_file`, strict JSON) accept them.
//!
//! It reads the rejected copies with an ordered consumer of its own, filtered to that subject
//! (from the first selected sequence or time), up to the last rejected message present when it
//! starts. Each body is checked again ([`plan::recheck`]); one that passes is published through
//! the normal publisher (awaited PubAck) as the webhook's event, with the webhook's
//! `Nats-Msg-Id`, `vx-source: replay` and `vx-replay-of: <seq>`. Then a marker is created for
//! that rejected sequence in the `replay.bucket` KV bucket (create = only if absent), and a
//! message with a marker is skipped ("already replayed"): so replaying a range twice stores
//! nothing new, even after the stream's duplicate window.
//!
//! A crash between the publish and the marker leaves the event stored without a marker; the
//! next replay publishes it again: within the duplicate window the stream recognizes its
//! `Nats-Msg-Id` and stores nothing ("already stored"); after it, the event is stored a second
//! time, with the same `event_id` (consumers deduplicate on it, or key on `request_id`).
//!
//! Must not touch: the rejected copies (never deleted or changed), the stream's configuration,
//! the session view (the projector sees the published events like any other).

pub mod output;
pub mod plan;
pub mod select;

use std::time::Duration;

use async_nats::jetstream::{self, consumer, kv, stream};
use futures::StreamExt as _;
use serde::{Deserialize, Serialize};

use crate::config::Config;
use crate::nats::{PublishError, Publisher, Stored, Subjects};
use crate::pii::{OpenError, Sealer};
use crate::schema::Schemas;
use crate::telemetry::TraceContext;
use crate::timestamp::format_timestamp;
use output::Summary;
use plan::{Action, Recheck, Rejected, Row};
use select::{reason_of, Selection};

/// How long to wait for the next rejected message before giving up (exit 69).
const NEXT_MESSAGE_TIMEOUT: Duration = Duration::from_secs(10);

/// Why a replay stopped before the end (exit code 69): NATS, the stream or the bucket.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct Unavailable(String);

/// What to replay.
#[derive(Debug, Clone, Default)]
pub struct Options {
    /// Which rejected messages.
    pub selection: Selection,
    /// Print the plan only: publish nothing, write no marker.
    pub dry_run: bool,
}

/// The marker of one replayed rejected message (the value in `replay.bucket`).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Marker {
    /// Stream sequence of the published event.
    pub event_seq: u64,
    /// Its `Nats-Msg-Id`.
    pub msg_id: String,
    /// Its subject.
    pub subject: String,
    /// When it was replayed.
    pub replayed_at: String,
}

/// Replays the rejected messages `options` selects from `config`'s stream, checking them with
/// `schemas`; calls `on_row` for each, in stream order. `Err` when NATS, the stream or the
/// bucket fails (what was done until then was reported).
pub async fn replay(
    client: &async_nats::Client,
    config: &Config,
    schemas: &Schemas,
    sealer: &Sealer,
    options: &Options,
    on_row: &mut dyn FnMut(&Row),
) -> Result<Summary, Unavailable> {
    let mut summary = Summary {
        dry_run: options.dry_run,
        ..Default::default()
    };
    let publisher = Publisher::new(
        client.clone(),
        config.nats.publish_timeout,
        &config.nats.stream.name,
    );
    let js = publisher.jetstream().clone();
    let subjects = Subjects::new(&config.nats.subject_prefix);
    let rejected = subjects.rejected();
    let name = &config.nats.stream.name;
    let stream = js
        .get_stream(name)
        .await
        .map_err(|e| Unavailable(format!("cannot open stream {name}: {e}")))?;
    let last = match stream.get_last_raw_message_by_subject(&rejected).await {
        Ok(m) => m.sequence,
        Err(e) if e.kind() == stream::LastRawMessageErrorKind::NoMessageFound => {
            return Ok(summary)
        }
        Err(e) => return Err(Unavailable(format!("reading {rejected} in {name}: {e}"))),
    };
    let sel = &options.selection;
    let end = sel.last_seq.map_or(last, |l| l.min(last));
    if sel.first_seq.is_some_and(|f| f > end) {
        return Ok(summary);
    }
    let markers = Markers::open(&js, config, !options.dry_run).await?;
    let deliver_policy = match (sel.first_seq, sel.since) {
        (Some(start_sequence), _) => consumer::DeliverPolicy::ByStartSequence { start_sequence },
        (None, Some(start_time)) => consumer::DeliverPolicy::ByStartTime { start_time },
        (None, None) => consumer::DeliverPolicy::All,
    };
    let reader = stream
        .create_consumer(consumer::pull::OrderedConfig {
            filter_subject: rejected.clone(),
            deliver_policy,
            ..Default::default()
        })
        .await
        .map_err(|e| Unavailable(format!("reading {rejected} in {name}: {e}")))?;
    if reader.cached_info().num_pending == 0 {
        return Ok(summary);
    }
    let mut messages = reader
        .messages()
        .await
        .map_err(|e| Unavailable(format!("reading {rejected} in {name}: {e}")))?;
    let ctx = Context {
        subjects: &subjects,
        schemas,
        publisher: &publisher,
        markers: &markers,
        dry_run: options.dry_run,
        sealer,
    };
    loop {
        let msg = match tokio::time::timeout(NEXT_MESSAGE_TIMEOUT, messages.next()).await {
            Err(_) => return Err(Unavailable(format!("{name} stopped delivering {rejected}"))),
            Ok(None) => return Err(Unavailable(format!("the reader of {name} ended early"))),
            Ok(Some(Err(e))) => return Err(Unavailable(format!("reading {name}: {e}"))),
            Ok(Some(Ok(m))) => m,
        };
        let (seq, published, pending) = match msg.info() {
            Ok(i) => (i.stream_sequence, i.published, i.pending),
            Err(e) => return Err(Unavailable(format!("reading {name}: {e}"))),
        };
        if seq > end || sel.until.is_some_and(|u| published > u) {
            break;
        }
        let header = |n: &str| {
            msg.headers
                .as_ref()
                .and_then(|h| h.get(n))
                .map(|v| v.as_str())
        };
        let reason_code = header("vx-reject-reason").unwrap_or("unknown");
        let reason = reason_of(reason_code);
        if sel.selects(seq, published, reason) {
            let received_at =
                header("ce-time").map_or_else(|| format_timestamp(published), str::to_owned);
            let opened = ctx.open(header("vx-pii"), &msg.payload).await?;
            let r = Rejected {
                seq,
                payload: opened.as_deref().unwrap_or_default(),
                reason,
                msg_id: header("Nats-Msg-Id"),
                received_at: &received_at,
                trace: TraceContext::continue_or_start(header("traceparent"), header("tracestate")),
            };
            let row = match &opened {
                Ok(_) => ctx.handle(&r, reason_code).await?,
                Err(note) => {
                    let mut row = Row::new(&r, reason_code, None, Action::Skipped);
                    row.note = Some(note.clone());
                    row
                }
            };
            summary.count(row.action);
            on_row(&row);
        }
        if seq >= end || pending == 0 {
            break;
        }
    }
    Ok(summary)
}

/// What handling one message needs.
struct Context<'a> {
    subjects: &'a Subjects,
    schemas: &'a Schemas,
    publisher: &'a Publisher,
    markers: &'a Markers,
    dry_run: bool,
    sealer: &'a Sealer,
}

impl Context<'_> {
    /// The body of a rejected copy as it was received: as stored (no `vx-pii` header: in
    /// clear), or decrypted under its session's (or day's) data key. `Ok(Err(note))`: it cannot
    /// be had any more (erased, past retention, not kept), so it is skipped, saying why.
    async fn open(
        &self,
        pii: Option<&str>,
        payload: &[u8],
    ) -> Result<Result<Vec<u8>, String>, Unavailable> {
        match pii {
            None | Some("clear") => Ok(Ok(payload.to_vec())),
            Some("encrypted") => {
                let Some(keys) = self.sealer.keys().filter(|k| k.keks().is_some()) else {
                    return Err(Unavailable(
                        "the rejected bodies are encrypted: set keys.kek_file to replay them"
                            .into(),
                    ));
                };
                let text = std::str::from_utf8(payload).unwrap_or_default();
                let kid = crate::pii::jwe::kid(text).unwrap_or_default();
                match crate::pii::open(keys, &kid, text).await {
                    Ok(body) => Ok(Ok(body)),
                    Err(OpenError::Erased) => Ok(Err(
                        "erased: the session's personal data was erased; not replayed".into(),
                    )),
                    Err(OpenError::Expired) => Ok(Err(
                        "expired: the body's data key is past retention.pii; not replayed".into(),
                    )),
                    Err(OpenError::Keys(e)) if e.is_retryable() => Err(Unavailable(format!(
                        "reading the keys bucket: {}",
                        crate::telemetry::error_chain(&e)
                    ))),
                    Err(e) => Ok(Err(format!(
                        "undecryptable: {}; not replayed",
                        crate::telemetry::error_chain(&e)
                    ))),
                }
            }
            Some("erased") => Ok(Err(
                "erased: the body was not kept (its session was erased); not replayed".into(),
            )),
            Some(other) => Ok(Err(format!(
                "not kept: vx-pii {other} (the body was not stored); not replayed"
            ))),
        }
    }

    /// Checks, and unless dry-running publishes and marks, one rejected message.
    async fn handle(&self, r: &Rejected<'_>, reason: &str) -> Result<Row, Unavailable> {
        let draft = match plan::recheck(self.subjects, self.schemas, r) {
            Recheck::TooLarge => {
                let mut row = Row::new(r, reason, None, Action::Skipped);
                row.note = Some("event_too_large: its event exceeded the NATS server's max_payload; not replayable".into());
                return Ok(row);
            }
            Recheck::Fails {
                reason: now,
                errors,
            } => {
                let mut row = Row::new(r, reason, Some(false), Action::StillFails);
                row.reason_now = Some(now.code());
                row.errors = errors;
                return Ok(row);
            }
            Recheck::Passes(draft) => draft,
        };
        let mut row = Row::new(r, reason, Some(true), Action::WouldPublish);
        row.request_id = draft
            .headers
            .iter()
            .find(|(k, _)| *k == "ce-subject")
            .map(|(_, v)| v.clone());
        row.subject = Some(draft.subject.clone());
        row.msg_id = Some(draft.msg_id.clone());
        if let Some(marker) = self.markers.get(r.seq).await? {
            row.action = Action::AlreadyReplayed;
            row.event_seq = Some(marker.event_seq);
            return Ok(row);
        }
        if self.dry_run {
            // A dry run writes nothing, not even a data key.
            return Ok(row);
        }
        let kid = row
            .request_id
            .as_deref()
            .unwrap_or_default()
            .to_ascii_lowercase();
        let sealed = self.sealer.seal(&kid, r.payload).await.map_err(|e| {
            Unavailable(format!(
                "sealing the replay of seq {}: {}",
                r.seq,
                crate::telemetry::error_chain(&e)
            ))
        })?;
        if matches!(sealed, crate::pii::Sealed::Erased) {
            row.action = Action::Skipped;
            row.note = Some("erased: the session's personal data was erased; not replayed".into());
            return Ok(row);
        }
        let event = Box::new(draft.finish(sealed.form(r.payload)));
        let (msg_id, subject) = (event.msg_id.clone(), event.subject.clone());
        match self.publisher.publish(*event).await {
            Ok(stored) => {
                self.markers.create(r.seq, &stored, msg_id, subject).await?;
                row.action = if stored.duplicate {
                    Action::AlreadyStored
                } else {
                    Action::Published
                };
                row.event_seq = Some(stored.seq);
                Ok(row)
            }
            Err(e @ PublishError::TooLarge { .. }) => {
                row.action = Action::Skipped;
                row.note = Some(format!("event_too_large: {e}"));
                Ok(row)
            }
            Err(e) => Err(Unavailable(format!(
                "publishing the replay of seq {}: {}",
                r.seq,
                crate::telemetry::error_chain(&e)
            ))),
        }
    }
}

/// The markers' bucket; none in a dry run when it does not exist yet (nothing was replayed).
struct Markers {
    store: Option<kv::Store>,
    stream: String,
}

impl Markers {
    /// Opens `replay.bucket`, creating it first when `create`.
    async fn open(
        js: &jetstream::Context,
        config: &Config,
        create: bool,
    ) -> Result<Self, Unavailable> {
        let bucket = &config.replay.bucket;
        if create {
            js.create_or_update_stream(marker_bucket(config))
                .await
                .map_err(|e| Unavailable(format!("creating bucket {bucket}: {e}")))?;
        }
        let store = match js.get_key_value(bucket).await {
            Ok(s) => Some(s),
            Err(_) if !create && !bucket_exists(js, bucket).await? => None,
            Err(e) => return Err(Unavailable(format!("opening bucket {bucket}: {e}"))),
        };
        Ok(Self {
            store,
            stream: config.nats.stream.name.clone(),
        })
    }

    /// The key of rejected sequence `seq` of the event stream.
    fn key(&self, seq: u64) -> String {
        format!("{}.{seq}", self.stream)
    }

    async fn get(&self, seq: u64) -> Result<Option<Marker>, Unavailable> {
        let Some(store) = &self.store else {
            return Ok(None);
        };
        let value = store
            .get(self.key(seq))
            .await
            .map_err(|e| Unavailable(format!("reading replay marker {}: {e}", self.key(seq))))?;
        // A marker that is not ours still says "replayed": keep it, with an unknown sequence.
        Ok(value.map(|v| {
            serde_json::from_slice(&v).unwrap_or(Marker {
                event_seq: 0,
                msg_id: String::new(),
                subject: String::new(),
                replayed_at: String::new(),
            })
        }))
    }

    /// Creates the marker of `seq` (revision 0 only: an existing one, from a concurrent replay,
    /// is left as it is).
    async fn create(
        &self,
        seq: u64,
        stored: &Stored,
        msg_id: String,
        subject: String,
    ) -> Result<(), Unavailable> {
        let Some(store) = &self.store else {
            return Err(Unavailable("the replay bucket is not open".into()));
        };
        let marker = Marker {
            event_seq: stored.seq,
            msg_id,
            subject,
            replayed_at: format_timestamp(std::time::SystemTime::now()),
        };
        let value = serde_json::to_vec(&marker).unwrap_or_default();
        match store.create(self.key(seq), value.into()).await {
            Ok(_) => Ok(()),
            Err(e) if e.kind() == kv::CreateErrorKind::AlreadyExists => Ok(()),
            Err(e) => Err(Unavailable(format!(
                "writing replay marker {} (the event is stored as seq {}; a new replay of it stores nothing within the duplicate window): {e}",
                self.key(seq),
                stored.seq
            ))),
        }
    }
}

/// Whether the bucket's stream exists (a dry run does not create it).
async fn bucket_exists(js: &jetstream::Context, bucket: &str) -> Result<bool, Unavailable> {
    match js.get_stream(format!("KV_{bucket}")).await {
        Ok(_) => Ok(true),
        Err(e) => match e.kind() {
            jetstream::context::GetStreamErrorKind::JetStream(j)
                if j.error_code() == jetstream::ErrorCode::STREAM_NOT_FOUND =>
            {
                Ok(false)
            }
            _ => Err(Unavailable(format!("opening bucket {bucket}: {e}"))),
        },
    }
}

/// The markers' bucket: one value per key, no age limit (a marker must outlive the duplicate
/// window), replicas and storage as the event stream's.
fn marker_bucket(config: &Config) -> stream::Config {
    let s = &config.nats.stream;
    crate::nats::stream::kv_bucket_stream(
        &config.replay.bucket,
        "vx-bridge replay: one marker per replayed rejected message",
        1,
        Duration::ZERO,
        s.storage,
        s.replicas,
    )
}
