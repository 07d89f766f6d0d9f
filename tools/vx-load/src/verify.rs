//! `verify` reads `webhook --record` files back against the stream (every 202 stored, under its
//! event id, once; every other answer retryable; time to recover after marked events) and
//! `leader` prints a stream's cluster leader, for the suites in `scripts/reliability/`.
//!
//! The stream is its leader's copy, read once every replica is current; each replica's copy is
//! checked against the 202s too and reported apart (`copies`, `replica_missing_after_202`), so a
//! loss on the leader and a replica that diverged are told apart ([`crate::copies`]).

use std::collections::BTreeMap;
use std::time::Duration;

#[derive(clap::Args)]
pub(crate) struct VerifyArgs {
    /// NATS URL(s), comma-separated.
    #[arg(long, default_value = "nats://127.0.0.1:4222")]
    nats: String,
    /// Stream name.
    #[arg(long)]
    stream: String,
    /// Record files written by `webhook --record`.
    #[arg(long = "record", required = true)]
    records: Vec<std::path::PathBuf>,
    /// File of `<label> <unix_ms>` lines; for each, the time until the first 202 of a delivery
    /// sent after it is reported (time to recover).
    #[arg(long)]
    marks: Option<std::path::PathBuf>,
    /// Require every delivery to have been answered 202 (retry suite).
    #[arg(long)]
    all_accepted: bool,
    /// Seconds to wait for the stream to be readable.
    #[arg(long, default_value_t = 30)]
    wait: u64,
    /// File of `<label> <start_ms> <end_ms>` lines (outages): for the answers to deliveries sent
    /// in each window, the share of 503s and the p99 and maximum answer time are reported.
    #[arg(long)]
    windows: Option<std::path::PathBuf>,
    /// Ride-through check: a window whose first 202 (of a delivery sent in it) came sooner than
    /// this many ms after its start must hold no 503 (the bridge's `nats.outage_wait`).
    #[arg(long)]
    no_503_if_recovered_within_ms: Option<u64>,
    /// Every delivery that was answered anything but 202 must have been answered 202 later (the
    /// records of `resend` are among `--record`): a 503 only where a retry then succeeded.
    #[arg(long)]
    require_retried: bool,
    /// Fail when the copies differ at any sequence (a diverged replica), even where no 202 is
    /// missing from one.
    #[arg(long)]
    no_divergence: bool,
    /// The state derived from the stream (session view, watches, data keys).
    #[command(flatten)]
    state: crate::state::StateArgs,
}

#[derive(clap::Args)]
pub(crate) struct LeaderArgs {
    /// NATS URL(s), comma-separated.
    #[arg(long, default_value = "nats://127.0.0.1:4222")]
    nats: String,
    /// Stream name.
    #[arg(long)]
    stream: String,
}

/// One line of a `--record` file.
struct Answer {
    msg_id: String,
    code: String,
    duplicate: bool,
    event_id: String,
    sent_ms: u64,
    answered_ms: u64,
}

fn read_records(paths: &[std::path::PathBuf]) -> anyhow::Result<Vec<Answer>> {
    let mut out = Vec::new();
    for p in paths {
        for line in std::fs::read_to_string(p)?.lines() {
            let f: Vec<&str> = line.split(',').collect();
            if f.len() < 7 {
                anyhow::bail!("{}: short line: {line}", p.display());
            }
            out.push(Answer {
                msg_id: f[0].to_owned(),
                code: f[1].to_owned(),
                duplicate: f[3] == "true",
                event_id: f[4].to_owned(),
                sent_ms: f[5].parse().unwrap_or(0),
                answered_ms: f[6].parse().unwrap_or(0),
            });
        }
    }
    Ok(out)
}

/// Answers a sender retries: 503/429/408, and no answer at all (connection refused or reset,
/// timeout). A sender without an answer retries; dedup makes that safe.
fn retryable(code: &str) -> bool {
    matches!(
        code,
        "503" | "429" | "408" | "connect_error" | "timeout" | "io_error"
    )
}

async fn connect_js(urls: &str) -> anyhow::Result<async_nats::jetstream::Context> {
    Ok(async_nats::jetstream::new(connect(urls).await?))
}

async fn connect(urls: &str) -> anyhow::Result<async_nats::Client> {
    let addrs = urls
        .split(',')
        .map(|u| u.trim().parse::<async_nats::ServerAddr>())
        .collect::<Result<Vec<_>, _>>()?;
    let client = async_nats::ConnectOptions::new()
        .retry_on_initial_connect()
        .connect(addrs)
        .await?;
    Ok(client)
}

pub(crate) async fn verify(a: VerifyArgs) -> anyhow::Result<()> {
    let answers = read_records(&a.records)?;
    let client = connect(&a.nats).await?;
    let js = async_nats::jetstream::new(client.clone());
    let read = crate::copies::read(&js, &a.stream, Duration::from_secs(a.wait)).await?;
    let total = read.messages;
    // The leader's copy is the stream: what acknowledged writes promise. The other copies are
    // checked against the answers too, and reported apart (`copies`).
    let stored = read.leader_copy().ids();
    let mut codes: BTreeMap<String, u64> = BTreeMap::new();
    let mut accepted: BTreeMap<&str, (&str, u64)> = BTreeMap::new(); // msg_id -> (event_id, non-duplicate 202s)
    let mut delivered: BTreeMap<&str, u64> = BTreeMap::new();
    let mut non_retryable = Vec::new();
    for ans in &answers {
        *codes.entry(ans.code.clone()).or_default() += 1;
        *delivered.entry(&ans.msg_id).or_default() += 0;
        if ans.code == "202" {
            let e = accepted.entry(&ans.msg_id).or_insert((&ans.event_id, 0));
            if !ans.duplicate {
                e.1 += 1;
            }
            *delivered.entry(&ans.msg_id).or_default() += 1;
        } else if !retryable(&ans.code) {
            non_retryable.push(format!("{}:{}", ans.msg_id, ans.code));
        }
    }
    let missing: Vec<&str> = accepted
        .keys()
        .filter(|id| !stored.contains_key(**id))
        .copied()
        .collect();
    let wrong_event_id: Vec<&str> = accepted
        .iter()
        .filter(|(id, (ev, _))| stored.get(**id).is_some_and(|(ce, _)| ce != ev))
        .map(|(id, _)| *id)
        .collect();
    let stored_twice: Vec<&&str> = stored
        .iter()
        .filter(|(_, (_, n))| *n > 1)
        .map(|(k, _)| k)
        .collect();
    let first_twice: Vec<&str> = accepted
        .iter()
        .filter(|(_, (_, n))| *n > 1)
        .map(|(id, _)| *id)
        .collect();
    let never_accepted: Vec<&str> = delivered
        .iter()
        .filter(|(_, n)| **n == 0)
        .map(|(id, _)| *id)
        .collect();
    let replicas = replica_report(&read, &accepted);
    // Accepted deliveries that a replica (not the leader) lacks: a consumer the server places
    // on that replica never delivers them, so they fail the check too, reported apart.
    let replica_missing: u64 = replicas
        .iter()
        .filter(|r| r["is_leader"] == false)
        .filter_map(|r| r["missing_after_202"].as_u64())
        .sum();
    // No-answer deliveries that were nevertheless stored (the sender would retry: a duplicate).
    let unanswered_but_stored = answers
        .iter()
        .filter(|x| {
            x.code != "202"
                && stored.contains_key(x.msg_id.as_str())
                && !accepted.contains_key(x.msg_id.as_str())
        })
        .count();
    // Deliveries refused (anything but 202) and never answered 202 afterwards, also not by a
    // retry (`resend`'s records are among the answers).
    let unretried = &never_accepted;
    let divergence = diverged(&read);
    let (state, state_ok) = if a.state.any() {
        let (r, ok) = crate::state::check(client.clone(), read.leader_copy(), &a.state).await?;
        (Some(r), ok)
    } else {
        (None, true)
    };
    let mut recoveries = Vec::new();
    if let Some(path) = &a.marks {
        for line in std::fs::read_to_string(path)?.lines() {
            let mut parts = line.split_whitespace();
            let (Some(label), Some(at)) = (
                parts.next(),
                parts.next().and_then(|t| t.parse::<u64>().ok()),
            ) else {
                continue;
            };
            let first = answers
                .iter()
                .filter(|x| x.code == "202" && x.sent_ms >= at)
                .map(|x| x.answered_ms)
                .min();
            recoveries.push(serde_json::json!({
                "mark": label,
                "first_202_after_ms": first.map(|t| t.saturating_sub(at)),
            }));
        }
    }
    let answer_ms = |x: &Answer| x.answered_ms.saturating_sub(x.sent_ms);
    let summary = |of: &[&Answer]| {
        let mut took: Vec<u64> = of.iter().map(|x| answer_ms(x)).collect();
        took.sort_unstable();
        let n503 = of.iter().filter(|x| x.code == "503").count();
        let p99 = took
            .get((took.len() * 99).div_ceil(100).saturating_sub(1))
            .copied();
        serde_json::json!({
            "answers": of.len(),
            "answers_503": n503,
            "share_503": if of.is_empty() { 0.0 } else { n503 as f64 / of.len() as f64 },
            "p99_answer_ms": p99,
            "max_answer_ms": took.last().copied(),
        })
    };
    let all: Vec<&Answer> = answers.iter().collect();
    let mut windows = Vec::new();
    let mut ride_through_violations = 0;
    if let Some(path) = &a.windows {
        for line in std::fs::read_to_string(path)?.lines() {
            let f: Vec<&str> = line.split_whitespace().collect();
            let (Some(label), Some(start), Some(end)) = (
                f.first(),
                f.get(1).and_then(|t| t.parse::<u64>().ok()),
                f.get(2).and_then(|t| t.parse::<u64>().ok()),
            ) else {
                continue;
            };
            let inside: Vec<&Answer> = answers
                .iter()
                .filter(|x| x.sent_ms >= start && x.sent_ms < end)
                .collect();
            let recovered = inside
                .iter()
                .filter(|x| x.code == "202")
                .map(|x| x.answered_ms.saturating_sub(start))
                .min();
            let mut w = summary(&inside);
            w["window"] = serde_json::json!(label);
            w["first_202_after_ms"] = serde_json::json!(recovered);
            if let (Some(limit), Some(rec)) = (a.no_503_if_recovered_within_ms, recovered) {
                let bad = rec < limit && w["answers_503"].as_u64().unwrap_or(0) > 0;
                w["ride_through_violated"] = serde_json::json!(bad);
                ride_through_violations += usize::from(bad);
            }
            windows.push(w);
        }
    }
    let mut ok = ride_through_violations == 0
        && missing.is_empty()
        && replica_missing == 0
        && wrong_event_id.is_empty()
        && stored_twice.is_empty()
        && first_twice.is_empty()
        && non_retryable.is_empty()
        && !accepted.is_empty();
    if a.all_accepted && !never_accepted.is_empty() {
        ok = false;
    }
    if a.require_retried && !unretried.is_empty() {
        ok = false;
    }
    if a.no_divergence && !divergence.is_empty() {
        ok = false;
    }
    ok &= state_ok;
    let v = serde_json::json!({
        "ok": ok,
        "answers": answers.len(),
        "codes": codes,
        "deliveries": delivered.len(),
        "accepted_deliveries": accepted.len(),
        "stream_messages": total,
        "missing_after_202": missing.len(),
        "missing_examples": missing.iter().take(10).collect::<Vec<_>>(),
        "leader": read.leader,
        "replica_missing_after_202": replica_missing,
        "copies": replicas,
        "wrong_event_id": wrong_event_id.len(),
        "stored_more_than_once": stored_twice.len(),
        "first_202_more_than_once": first_twice.len(),
        "deliveries_with_one_first_202": accepted.values().filter(|(_, n)| *n == 1).count(),
        "non_retryable_answers": non_retryable.len(),
        "non_retryable_examples": non_retryable.iter().take(10).collect::<Vec<_>>(),
        "never_accepted_deliveries": never_accepted.len(),
        "refused_and_never_accepted": unretried.len(),
        "refused_and_never_accepted_examples": unretried.iter().take(10).collect::<Vec<_>>(),
        "diverged_seqs": divergence.len(),
        "diverged_examples": divergence.iter().take(10).collect::<Vec<_>>(),
        "state": state,
        "state_ok": state_ok,
        "unanswered_but_stored": unanswered_but_stored,
        "recoveries": recoveries,
        "overall": summary(&all),
        "windows": windows,
        "ride_through_violations": ride_through_violations,
    });
    println!("{v}");
    if !ok {
        anyhow::bail!("verification failed");
    }
    Ok(())
}

/// Each node's copy against the answers: accepted deliveries it lacks (with the sequence the
/// leader stores each at, and what this copy holds there) and messages only it holds.
fn replica_report(
    read: &crate::copies::Copies,
    accepted: &BTreeMap<&str, (&str, u64)>,
) -> Vec<serde_json::Value> {
    let leader = read.leader_copy();
    let leader_ids = leader.ids();
    read.copies
        .iter()
        .map(|c| {
            let ids = c.ids();
            let missing: Vec<&str> = accepted
                .keys()
                .filter(|id| !ids.contains_key(**id))
                .copied()
                .collect();
            let examples: Vec<serde_json::Value> = missing
                .iter()
                .take(10)
                .map(|id| {
                    let at = leader.seq_of(id);
                    serde_json::json!({
                        "id": id,
                        "leader_seq": at,
                        "here_at_that_seq": at.and_then(|q| c.by_seq.get(&q)).map(|s| &s.delivery),
                    })
                })
                .collect();
            let only_here = ids
                .keys()
                .filter(|id| !leader_ids.contains_key(**id))
                .count();
            serde_json::json!({
                "node": c.node,
                "is_leader": std::ptr::eq(c, leader),
                "messages": c.by_seq.len(),
                "first_seq": c.by_seq.keys().next(),
                "last_seq": c.by_seq.keys().next_back(),
                "missing_after_202": missing.len(),
                "missing_examples": examples,
                "only_in_this_copy": only_here,
            })
        })
        .collect()
}

/// The sequences at which the copies differ (one lacks it, or they hold different messages
/// there), each with what every node holds: `{seq, node: delivery or null}`.
fn diverged(read: &crate::copies::Copies) -> Vec<serde_json::Value> {
    let seqs: std::collections::BTreeSet<u64> = read
        .copies
        .iter()
        .flat_map(|c| c.by_seq.keys().copied())
        .collect();
    seqs.into_iter()
        .filter_map(|q| {
            let held: Vec<Option<&crate::copies::Stored>> =
                read.copies.iter().map(|c| c.by_seq.get(&q)).collect();
            let first = held.first().copied().flatten();
            if held.iter().all(|h| *h == first) {
                return None;
            }
            let mut v = serde_json::json!({ "seq": q });
            for (c, h) in read.copies.iter().zip(&held) {
                v[c.node.as_str()] = serde_json::json!(h.map(|s| s.delivery.as_str()));
            }
            Some(v)
        })
        .collect()
}

pub(crate) async fn leader(a: LeaderArgs) -> anyhow::Result<()> {
    let js = connect_js(&a.nats).await?;
    let mut s = js.get_stream(&a.stream).await?;
    let info = s.info().await?;
    let name = info
        .cluster
        .as_ref()
        .and_then(|c| c.leader.clone())
        .unwrap_or_default();
    println!("{name}");
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::copies::{Copies, NodeCopy, Stored};

    fn copy(node: &str, ids: &[&str]) -> NodeCopy {
        NodeCopy {
            node: node.into(),
            by_seq: ids
                .iter()
                .enumerate()
                .map(|(i, d)| {
                    let stored = Stored {
                        delivery: (*d).into(),
                        ce_id: format!("ev-{d}"),
                        request_id: format!("rid-{d}"),
                        kind: "completed.pass".into(),
                        body: bytes::Bytes::from(format!("body-{d}")),
                    };
                    (i as u64 + 1, stored)
                })
                .collect(),
        }
    }

    #[test]
    fn a_replica_that_diverged_is_told_apart_from_the_leader() {
        // n3 holds d3 where the leader holds d2 (and d3 once more): it lacks d2.
        let read = Copies {
            leader: "n1".into(),
            messages: 3,
            copies: vec![
                copy("n1", &["d1", "d2", "d3"]),
                copy("n2", &["d1", "d2", "d3"]),
                copy("n3", &["d1", "d3", "d3"]),
            ],
        };
        let accepted: BTreeMap<&str, (&str, u64)> = [("d1", ("ev-d1", 1)), ("d2", ("ev-d2", 1))]
            .into_iter()
            .collect();
        let r = replica_report(&read, &accepted);
        assert_eq!(r.len(), 3);
        assert_eq!(r[0]["node"], "n1");
        assert_eq!(r[0]["is_leader"], true);
        assert_eq!(r[0]["missing_after_202"], 0);
        assert_eq!(r[1]["missing_after_202"], 0);
        assert_eq!(r[2]["is_leader"], false);
        assert_eq!(r[2]["missing_after_202"], 1);
        assert_eq!(r[2]["missing_examples"][0]["id"], "d2");
        assert_eq!(r[2]["missing_examples"][0]["leader_seq"], 2);
        assert_eq!(r[2]["missing_examples"][0]["here_at_that_seq"], "d3");
        assert_eq!(r[2]["only_in_this_copy"], 0);
        assert_eq!(r[2]["messages"], 3);
        // The same read, by sequence: only seq 2 differs, and every node's holding is named.
        let d = diverged(&read);
        assert_eq!(d.len(), 1);
        assert_eq!(d[0]["seq"], 2);
        assert_eq!(d[0]["n1"], "d2");
        assert_eq!(d[0]["n3"], "d3");
    }

    #[test]
    fn copies_of_one_count_that_differ_in_content_or_length_diverge() {
        let same = Copies {
            leader: "n1".into(),
            messages: 2,
            copies: vec![copy("n1", &["d1", "d2"]), copy("n2", &["d1", "d2"])],
        };
        assert!(diverged(&same).is_empty());
        let shorter = Copies {
            leader: "n1".into(),
            messages: 2,
            copies: vec![copy("n1", &["d1", "d2"]), copy("n2", &["d1"])],
        };
        let d = diverged(&shorter);
        assert_eq!(d.len(), 1);
        assert_eq!(d[0]["n2"], serde_json::Value::Null);
    }
}
