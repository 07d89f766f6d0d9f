//! The state the bridge derives from the event stream, checked against the stream itself (the
//! stream leader's copy, as [`crate::copies`] read it) for `verify`:
//!
//! - **the session view** (`--sessions-bucket`): every session of the stream has its key, and
//!   the key names the event the view's rule picks (a terminal event beats a non-terminal one,
//!   else the higher stream sequence wins); a key for a session the stream does not hold is a
//!   state derived from a write that was lost;
//! - **the watches** (`--reconcile-stream`): every session whose state is non-terminal has its
//!   message `{prefix}.reconcile.<request_id>` in the reconciler's work queue;
//! - **the data keys** (`--keys-bucket`, `--kek-file`): every encrypted event opens with the
//!   key its `kid` names in the keys bucket (`vx_bridge::pii::open_event`), and the plaintext is
//!   a body of that session.
//!
//! The projector and the registrations lag behind the stream, so [`check`] reads again until
//! nothing differs or its time is up, and then reports what still differs. Only reads.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use async_nats::jetstream::{self, consumer::pull};
use futures::StreamExt as _;
use vx_bridge::pii::{KeyStore, OpenError};

use crate::copies::{header, read_all, NodeCopy};

/// What to check besides the deliveries.
#[derive(clap::Args, Clone, Default)]
pub(crate) struct StateArgs {
    /// The session view's KV bucket: check that it converged to what the stream implies.
    #[arg(long)]
    sessions_bucket: Option<String>,
    /// The reconciler's work-queue stream: check that every open session is watched.
    #[arg(long)]
    reconcile_stream: Option<String>,
    /// Subject prefix of the bridge (for the work queue's subjects).
    #[arg(long, default_value = "verification")]
    prefix: String,
    /// The keys bucket: check that every encrypted event opens with its session's data key.
    #[arg(long)]
    keys_bucket: Option<String>,
    /// The bridge's KEK file (`keys.kek_file`), to unwrap the data keys.
    #[arg(long)]
    kek_file: Option<std::path::PathBuf>,
    /// Seconds to wait for the derived state to converge.
    #[arg(long, default_value_t = 60)]
    converge_wait: u64,
}

impl StateArgs {
    /// Whether any derived state is to be checked.
    pub(crate) fn any(&self) -> bool {
        self.sessions_bucket.is_some()
            || self.reconcile_stream.is_some()
            || self.keys_bucket.is_some()
    }
}

/// The event kinds that set a session's state (the view's projector reads these).
fn is_session_event(kind: &str) -> bool {
    matches!(
        kind,
        "completed.pass" | "completed.fail" | "pending" | "unrecognized"
    )
}

/// What the view should hold for one session: the sequence of the event its rule picks and
/// whether that event is terminal.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Expected {
    pub(crate) seq: u64,
    pub(crate) terminal: bool,
}

/// The view the stream implies, by lower-case request_id: a terminal event is never replaced by
/// a non-terminal one; otherwise the higher sequence wins.
pub(crate) fn expected_view(copy: &NodeCopy) -> BTreeMap<String, Expected> {
    let mut out: BTreeMap<String, Expected> = BTreeMap::new();
    for (seq, s) in &copy.by_seq {
        if !is_session_event(&s.kind) || s.request_id.is_empty() {
            continue;
        }
        let new = Expected {
            seq: *seq,
            terminal: s.kind.starts_with("completed."),
        };
        out.entry(s.request_id.to_ascii_lowercase())
            .and_modify(|e| {
                // Ranked by (terminal, seq): a terminal state outranks any other.
                if (new.terminal, new.seq) > (e.terminal, e.seq) {
                    *e = new;
                }
            })
            .or_insert(new);
    }
    out
}

/// The view as read: key → (`stream_seq`, `terminal`).
pub(crate) type View = BTreeMap<String, (u64, bool)>;

/// Differences between the view and what the stream implies.
#[derive(Debug, Default, PartialEq, Eq)]
pub(crate) struct ViewDiff {
    pub(crate) missing: Vec<String>,
    pub(crate) wrong: Vec<String>,
    pub(crate) not_in_stream: Vec<String>,
}

pub(crate) fn diff_view(expected: &BTreeMap<String, Expected>, view: &View) -> ViewDiff {
    let mut d = ViewDiff::default();
    for (k, e) in expected {
        match view.get(k) {
            None => d.missing.push(k.clone()),
            Some((seq, terminal)) if *seq != e.seq || *terminal != e.terminal => {
                d.wrong
                    .push(format!("{k}: view seq {seq}, stream seq {}", e.seq));
            }
            Some(_) => {}
        }
    }
    d.not_in_stream = view
        .keys()
        .filter(|k| !expected.contains_key(*k))
        .cloned()
        .collect();
    d
}

/// A stream's messages on `filter`, last per subject, read through an R1 consumer.
async fn last_per_subject(
    js: &jetstream::Context,
    stream: &str,
    filter: String,
    deadline: Instant,
) -> anyhow::Result<Vec<async_nats::Message>> {
    let s = js.get_stream(stream).await?;
    let consumer = s
        .create_consumer(pull::Config {
            deliver_policy: jetstream::consumer::DeliverPolicy::LastPerSubject,
            filter_subject: filter,
            ack_policy: jetstream::consumer::AckPolicy::None,
            memory_storage: true,
            num_replicas: 1,
            inactive_threshold: Duration::from_secs(30),
            ..Default::default()
        })
        .await?;
    let name = consumer.cached_info().name.clone();
    let read = read_all(&consumer, stream, deadline).await;
    let _ = s.delete_consumer(&name).await;
    Ok(read?.into_values().collect())
}

async fn read_view(
    js: &jetstream::Context,
    bucket: &str,
    deadline: Instant,
) -> anyhow::Result<View> {
    let prefix = format!("$KV.{bucket}.");
    let mut view = View::new();
    let stream = format!("KV_{bucket}");
    for msg in last_per_subject(js, &stream, format!("{prefix}>"), deadline).await? {
        if !header(&msg, "KV-Operation").is_empty() {
            continue; // a deletion or purge marker
        }
        let Some(key) = msg.subject.as_str().strip_prefix(&prefix) else {
            continue;
        };
        let v: serde_json::Value = serde_json::from_slice(&msg.payload).unwrap_or_default();
        let seq = v["stream_seq"].as_u64().unwrap_or(0);
        let terminal = v["terminal"].as_bool().unwrap_or(false);
        view.insert(key.to_owned(), (seq, terminal));
    }
    Ok(view)
}

/// Open sessions without their work message.
async fn unwatched(
    js: &jetstream::Context,
    stream: &str,
    prefix: &str,
    open: &[&String],
) -> anyhow::Result<Vec<String>> {
    let s = js.get_stream(stream).await?;
    let found = futures::stream::iter(open.iter().map(|rid| {
        let s = &s;
        async move {
            let subject = format!("{prefix}.reconcile.{rid}");
            match s.get_last_raw_message_by_subject(&subject).await {
                Ok(_) => Ok(None),
                Err(e)
                    if e.kind() == jetstream::stream::LastRawMessageErrorKind::NoMessageFound =>
                {
                    Ok(Some((*rid).clone()))
                }
                Err(e) => Err(anyhow::anyhow!("{subject}: {e}")),
            }
        }
    }))
    .buffer_unordered(32)
    .collect::<Vec<_>>()
    .await;
    found.into_iter().filter_map(Result::transpose).collect()
}

/// Encrypted events that do not open with their session's key (or open to another session's
/// body), as `seq: why`.
async fn unopened(keys: &KeyStore, copy: &NodeCopy) -> Vec<String> {
    let events: Vec<(u64, &crate::copies::Stored)> = copy
        .by_seq
        .iter()
        .filter(|(_, s)| is_session_event(&s.kind))
        .map(|(q, s)| (*q, s))
        .collect();
    let bad = futures::stream::iter(events.into_iter().map(|(seq, s)| async move {
        let why = match vx_bridge::pii::open_event(Some(keys), &s.body).await {
            Ok(Some(plain)) => {
                let v: serde_json::Value = serde_json::from_slice(&plain).unwrap_or_default();
                let rid = v["request_id"].as_str().unwrap_or("");
                if rid.eq_ignore_ascii_case(&s.request_id) {
                    return None;
                }
                "opens to another session's body".to_owned()
            }
            Ok(None) => "carries no personal data".to_owned(),
            Err(OpenError::Expired) => "no data key in the bucket".to_owned(),
            Err(e) => format!("{e}"),
        };
        Some(format!("{seq} ({}): {why}", s.request_id))
    }))
    .buffer_unordered(32)
    .collect::<Vec<_>>()
    .await;
    bad.into_iter().flatten().collect()
}

/// Reads the derived state until it matches the stream's `copy` or `a.converge_wait` passes;
/// the report, and whether it matched.
pub(crate) async fn check(
    client: async_nats::Client,
    copy: &NodeCopy,
    a: &StateArgs,
) -> anyhow::Result<(serde_json::Value, bool)> {
    let js = jetstream::new(client.clone());
    let deadline = Instant::now() + Duration::from_secs(a.converge_wait);
    let expected = expected_view(copy);
    let open: Vec<&String> = expected
        .iter()
        .filter(|(_, e)| !e.terminal)
        .map(|(k, _)| k)
        .collect();
    let keys = match (&a.keys_bucket, &a.kek_file) {
        (Some(bucket), Some(kek)) => {
            let ring = vx_bridge::pii::KekRing::read(kek).map_err(|e| anyhow::anyhow!("{e}"))?;
            let mut config = vx_bridge::config::Config::default();
            config.keys.bucket.clone_from(bucket);
            config.keys.create = false;
            Some(Arc::new(KeyStore::new(client.clone(), &config, Some(ring))))
        }
        (Some(_), None) => anyhow::bail!("--keys-bucket needs --kek-file"),
        _ => None,
    };
    let started = Instant::now();
    let mut rounds = 0u32;
    loop {
        rounds += 1;
        let round: anyhow::Result<(ViewDiff, Vec<String>, Vec<String>)> = async {
            let view = match &a.sessions_bucket {
                Some(b) => diff_view(&expected, &read_view(&js, b, deadline).await?),
                None => ViewDiff::default(),
            };
            let watches = match &a.reconcile_stream {
                Some(s) => unwatched(&js, s, &a.prefix, &open).await?,
                None => Vec::new(),
            };
            let unopened = match &keys {
                Some(k) => unopened(k, copy).await,
                None => Vec::new(),
            };
            Ok((view, watches, unopened))
        }
        .await;
        let (clean, report) = match &round {
            Ok((view, watches, unopened)) => {
                let clean = view.missing.is_empty()
                    && view.wrong.is_empty()
                    && view.not_in_stream.is_empty()
                    && watches.is_empty()
                    && unopened.is_empty();
                let ex = |v: &[String]| v.iter().take(5).cloned().collect::<Vec<_>>();
                (
                    clean,
                    serde_json::json!({
                        "sessions": expected.len(),
                        "open_sessions": open.len(),
                        "view_checked": a.sessions_bucket.is_some(),
                        "view_missing": view.missing.len(),
                        "view_wrong": view.wrong.len(),
                        "view_not_in_stream": view.not_in_stream.len(),
                        "view_examples": ex(&[ex(&view.missing), ex(&view.wrong), ex(&view.not_in_stream)].concat()),
                        "watches_checked": a.reconcile_stream.is_some(),
                        "watches_lost": watches.len(),
                        "watches_lost_examples": ex(watches),
                        "keys_checked": keys.is_some(),
                        "events_not_opening": unopened.len(),
                        "events_not_opening_examples": ex(unopened),
                        "rounds": rounds,
                        "converged_after_ms": started.elapsed().as_millis() as u64,
                    }),
                )
            }
            Err(e) => (
                false,
                serde_json::json!({"error": e.to_string(), "rounds": rounds}),
            ),
        };
        if clean || Instant::now() >= deadline {
            return Ok((report, clean));
        }
        eprintln!("verify: derived state not converged yet: {report}");
        tokio::time::sleep(Duration::from_secs(2)).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::copies::Stored;

    fn copy(events: &[(u64, &str, &str)]) -> NodeCopy {
        NodeCopy {
            node: "n1".into(),
            by_seq: events
                .iter()
                .map(|(q, rid, kind)| {
                    let s = Stored {
                        delivery: format!("d{q}"),
                        ce_id: format!("e{q}"),
                        request_id: (*rid).into(),
                        kind: (*kind).into(),
                        body: bytes::Bytes::new(),
                    };
                    (*q, s)
                })
                .collect(),
        }
    }

    #[test]
    fn the_view_the_stream_implies_keeps_terminal_states_and_else_the_newest() {
        let c = copy(&[
            (1, "A", "pending"),
            (2, "A", "completed.pass"),
            (3, "A", "pending"),
            (4, "b", "pending"),
            (5, "b", "unrecognized"),
            (6, "c", "completed.fail"),
            (7, "c", "completed.pass"),
            (8, "d", "rejected"),
        ]);
        let e = expected_view(&c);
        assert_eq!(e.len(), 3);
        assert_eq!(
            e["a"],
            Expected {
                seq: 2,
                terminal: true
            }
        );
        assert_eq!(
            e["b"],
            Expected {
                seq: 5,
                terminal: false
            }
        );
        assert_eq!(
            e["c"],
            Expected {
                seq: 7,
                terminal: true
            }
        );
    }

    #[test]
    fn a_view_behind_ahead_or_beside_the_stream_is_reported() {
        let e = expected_view(&copy(&[(1, "a", "completed.pass"), (2, "b", "pending")]));
        let ok: View = [("a".to_owned(), (1, true)), ("b".to_owned(), (2, false))].into();
        assert_eq!(diff_view(&e, &ok), ViewDiff::default());
        let bad: View = [("a".to_owned(), (9, true)), ("z".to_owned(), (3, true))].into();
        let d = diff_view(&e, &bad);
        assert_eq!(d.missing, ["b"]);
        assert_eq!(d.wrong, ["a: view seq 9, stream seq 1"]);
        assert_eq!(d.not_in_stream, ["z"]);
    }
}
