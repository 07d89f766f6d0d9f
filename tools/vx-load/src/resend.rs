//! `resend`: what a webhook sender does after an outage. Every delivery of `--record` files
//! that was never answered 202 (a 503, a 429, a timeout, no connection) is sent again with the
//! same delivery id and the same body (rebuilt from the record's request_id and status, so the
//! bridge derives the same dedup id), until it is answered 202 or `--attempts` run out; every
//! answer is recorded in the same CSV format, so `verify --require-retried` can check that each
//! refused delivery was stored in the end, and that a retry of a delivery stored despite its 503
//! was answered as a duplicate.
//!
//! Bounded: at most `--attempts` sends per delivery, `--spacing` apart, `--concurrency` at once.

use std::collections::BTreeMap;
use std::io::Write as _;
use std::time::Duration;

use futures::StreamExt as _;
use vx_bridge::auth::hmac::sign_headers;

use crate::client::{post, Target};
use crate::stats::unix_ms;
use crate::webhook::{body_for, signing_config};

#[derive(clap::Args)]
pub(crate) struct ResendArgs {
    /// Webhook URL (http only).
    #[arg(long, default_value = "http://127.0.0.1:8080/webhooks/vx")]
    url: String,
    /// Standard Webhooks secret the bridge accepts.
    #[arg(long, default_value = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw")]
    secret: String,
    /// Record files written by `webhook --record` (with request_id and status columns).
    #[arg(long = "record", required = true)]
    records: Vec<std::path::PathBuf>,
    /// Where the answers to the resent deliveries go (same CSV format).
    #[arg(long)]
    out: std::path::PathBuf,
    /// Sends per delivery at most.
    #[arg(long, default_value_t = 5)]
    attempts: u32,
    /// Pause between two sends of one delivery.
    #[arg(long, default_value = "1s", value_parser = humantime::parse_duration)]
    spacing: Duration,
    /// Deliveries resent at once (one connection each).
    #[arg(long, default_value_t = 16)]
    concurrency: usize,
}

/// A delivery to send again: its id, request_id and status.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Pending {
    pub(crate) id: String,
    pub(crate) session: uuid::Uuid,
    pub(crate) status: String,
}

/// The deliveries of `text` (record lines) never answered 202, in first-seen order. A line
/// without the request_id and status columns (an older record) cannot be resent: an error.
pub(crate) fn unaccepted(text: &str) -> anyhow::Result<Vec<Pending>> {
    let mut order: Vec<String> = Vec::new();
    let mut seen: BTreeMap<String, (bool, Option<Pending>)> = BTreeMap::new();
    for line in text.lines().filter(|l| !l.is_empty()) {
        let f: Vec<&str> = line.split(',').collect();
        let (Some(id), Some(code)) = (f.first(), f.get(1)) else {
            continue;
        };
        let e = seen.entry((*id).to_owned()).or_insert_with(|| {
            order.push((*id).to_owned());
            (false, None)
        });
        e.0 |= *code == "202";
        if e.1.is_none() {
            let (Some(session), Some(status)) = (f.get(7), f.get(8)) else {
                anyhow::bail!("record line without request_id and status: {line}");
            };
            e.1 = Some(Pending {
                id: (*id).to_owned(),
                session: session.parse()?,
                status: (*status).to_owned(),
            });
        }
    }
    Ok(order
        .into_iter()
        .filter_map(|id| match seen.remove(&id) {
            Some((false, p)) => p,
            _ => None,
        })
        .collect())
}

pub(crate) async fn run(a: ResendArgs) -> anyhow::Result<()> {
    let target = Target::parse(&a.url)?;
    let hmac = signing_config(&a.secret);
    let mut todo = Vec::new();
    for p in &a.records {
        todo.extend(unaccepted(&std::fs::read_to_string(p)?)?);
    }
    let total = todo.len();
    let attempts = a.attempts.max(1);
    let lines = futures::stream::iter(todo)
        .map(|p| {
            let (hmac, target) = (hmac.clone(), target.clone());
            async move {
                let body = body_for(&p.status, &p.session);
                let mut slot = None;
                let mut lines = Vec::new();
                let mut accepted = false;
                for i in 0..attempts {
                    if i > 0 {
                        tokio::time::sleep(a.spacing).await;
                    }
                    let now = std::time::SystemTime::now()
                        .duration_since(std::time::UNIX_EPOCH)
                        .map_or(0, |d| d.as_secs() as i64);
                    let headers = sign_headers(&hmac, hmac.secrets[0].expose(), &body, now, &p.id);
                    let sent_ms = unix_ms();
                    let (code, v) = post(&mut slot, &target, &headers, body.clone(), true).await;
                    lines.push(format!(
                        "{},{code},{},{},{},{sent_ms},{},{},{}",
                        p.id,
                        v["seq"],
                        v["duplicate"],
                        v["event_id"].as_str().unwrap_or(""),
                        unix_ms(),
                        p.session,
                        p.status
                    ));
                    if code == "202" {
                        accepted = true;
                        break;
                    }
                }
                (lines, accepted)
            }
        })
        .buffer_unordered(a.concurrency.max(1))
        .collect::<Vec<_>>()
        .await;
    let mut out = std::io::BufWriter::new(std::fs::File::create(&a.out)?);
    let mut accepted = 0;
    for (ls, ok) in &lines {
        for l in ls {
            writeln!(out, "{l}")?;
        }
        accepted += usize::from(*ok);
    }
    out.flush()?;
    println!(
        "{}",
        serde_json::json!({"resent": total, "accepted": accepted, "not_accepted": total - accepted})
    );
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    const S: &str = "4ed2ec66-9471-415d-99ce-7bd1742fc2b8";

    #[test]
    fn only_deliveries_never_answered_202_are_resent_once_each() {
        let text = format!(
            "d1,202,1,false,e1,1,2,{S},PASS\n\
             d2,503,null,null,,1,5002,{S},PENDING\n\
             d3,timeout,null,null,,1,30001,{S},FAIL\n\
             d2,503,null,null,,6000,11000,{S},PENDING\n\
             d4,503,null,null,,1,5002,{S},PASS\n\
             d4,202,7,true,e4,6000,6001,{S},PASS\n"
        );
        let p = unaccepted(&text).expect("records parse");
        let ids: Vec<&str> = p.iter().map(|x| x.id.as_str()).collect();
        assert_eq!(ids, ["d2", "d3"]);
        assert_eq!(p[0].status, "PENDING");
        assert_eq!(p[1].status, "FAIL");
        assert_eq!(p[0].session.to_string(), S);
    }

    #[test]
    fn a_record_without_the_body_columns_cannot_be_resent() {
        assert!(unaccepted("d1,503,null,null,,1,2\n").is_err());
    }

    #[test]
    fn a_resent_body_is_the_same_bytes_as_the_first() {
        let s: uuid::Uuid = S.parse().expect("uuid");
        assert_eq!(body_for("PENDING", &s), body_for("PENDING", &s));
        assert_ne!(body_for("PENDING", &s), body_for("PASS", &s));
        let v: serde_json::Value =
            serde_json::from_slice(&body_for("PENDING", &s)).expect("json body");
        assert_eq!(v["status"], "PENDING");
        assert_eq!(v["request_id"], S);
    }
}
