//! `webhook`: signed, seed-like webhooks with distinct request_ids over N connections, timed or
//! counted, optionally at a fixed rate; `--record` writes one CSV line per answer for `verify`.

use std::io::Write as _;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use vx_bridge::auth::hmac::sign_headers;
use vx_bridge::config::{HmacConfig, HmacScheme};
use vx_bridge::secret::Secret;

use crate::client::{post, Sender, Target};
use crate::stats::{unix_ms, Stats};
use crate::{SEED, SEED_ID};

#[derive(clap::Args)]
pub(crate) struct WebhookArgs {
    /// Webhook URL (http only).
    #[arg(long, default_value = "http://127.0.0.1:8080/webhooks/vx")]
    url: String,
    /// Standard Webhooks secret the bridge accepts.
    #[arg(long, default_value = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw")]
    secret: String,
    /// Concurrent connections (one request in flight on each).
    #[arg(long, default_value_t = 64)]
    connections: usize,
    /// How long to send.
    #[arg(long, default_value = "10s", value_parser = humantime::parse_duration)]
    duration: Duration,
    /// Answers to requests started in this first part of `duration` are not counted.
    #[arg(long, default_value = "0s", value_parser = humantime::parse_duration)]
    warmup: Duration,
    /// Stop after this many deliveries (in total).
    #[arg(long)]
    requests: Option<u64>,
    /// Total rate in deliveries per second (open loop); unlimited when absent.
    #[arg(long)]
    rate: Option<f64>,
    /// Send each delivery this many times (same webhook-id and body), to test dedup.
    #[arg(long, default_value_t = 1)]
    repeat: u32,
    /// With --repeat: send the copies concurrently (over separate connections).
    #[arg(long)]
    concurrent_repeats: bool,
    /// Write `msg_id,http_code,seq,duplicate,event_id,sent_ms,answered_ms,request_id,status` per
    /// answer to this CSV file (times in unix milliseconds); `resend` rebuilds a delivery's body
    /// from its request_id and status.
    #[arg(long)]
    record: Option<std::path::PathBuf>,
    /// Print the summary as one JSON object.
    #[arg(long)]
    json: bool,
    /// Delivery id prefix (distinguishes runs against one stream).
    #[arg(long, default_value = "load")]
    id_prefix: String,
    /// The body's top-level `status` (the seed's is PASS), e.g. PENDING for sessions that stay
    /// open (the reconciler's registrations). Comma-separated: delivery n gets the (n mod k)-th
    /// (`PASS,FAIL,PENDING,PASS` mixes terminal and watched sessions).
    #[arg(long, default_value = "PASS")]
    status: String,
    /// Webhooks per session: K deliveries in a row on one connection share one request_id, as a
    /// journey's PENDING and final webhooks do (one after the other, never at once). 1: every
    /// delivery is a new session, the worst case of `events.pii = "encrypted"` (a data key made
    /// per webhook).
    #[arg(long, default_value_t = 1)]
    per_session: u64,
}

/// `s` as a JSON string literal.
fn json_string(s: &str) -> String {
    serde_json::Value::from(s).to_string()
}

/// The seed body with top-level `status` and request_id `session`: what delivery `n` of a run
/// sends, and what `resend` sends again for it (the same bytes, so the same dedup id).
pub(crate) fn body_for(status: &str, session: &uuid::Uuid) -> Bytes {
    // The seed's first `"status"` is its top-level one.
    let seed = SEED.replacen(
        r#""status": "PASS""#,
        &format!(r#""status": {}"#, json_string(status)),
        1,
    );
    Bytes::from(seed.replace(SEED_ID, &session.to_string()).into_bytes())
}

/// The scheme vx-load signs with: Standard Webhooks with `secret`.
pub(crate) fn signing_config(secret: &str) -> HmacConfig {
    HmacConfig {
        scheme: HmacScheme::StandardWebhooks,
        secrets: vec![Secret::new(secret)],
        ..HmacConfig::default()
    }
}

pub(crate) async fn run(a: WebhookArgs) -> anyhow::Result<()> {
    let target = Target::parse(&a.url)?;
    let hmac = signing_config(&a.secret);
    let started = Instant::now();
    let stats = Stats::new(started + a.warmup);
    let record = match &a.record {
        Some(p) => Some(Arc::new(Mutex::new(std::io::BufWriter::new(
            std::fs::File::create(p)?,
        )))),
        None => None,
    };
    let next = Arc::new(AtomicU64::new(0));
    let deadline = started + a.duration;
    let per_conn_interval = a
        .rate
        .map(|r| Duration::from_secs_f64(a.connections as f64 / r));
    let mut tasks = Vec::new();
    let statuses: Arc<[String]> = a
        .status
        .split(',')
        .map(|s| s.trim().to_owned())
        .collect::<Vec<_>>()
        .into();
    for c in 0..a.connections {
        let (stats, record, next, hmac, target, prefix) = (
            stats.clone(),
            record.clone(),
            next.clone(),
            hmac.clone(),
            target.clone(),
            a.id_prefix.clone(),
        );
        let statuses: Arc<[String]> = statuses.clone();
        let (limit, repeat, concurrent) = (a.requests, a.repeat.max(1), a.concurrent_repeats);
        let per_session = a.per_session.max(1);
        let n_conns = connections_for(concurrent, repeat);
        let connections = a.connections;
        tasks.push(tokio::spawn(async move {
            let mut slots: Vec<Option<Sender>> = (0..n_conns).map(|_| None).collect();
            // This connection's current session and the deliveries it still gets.
            let (mut session, mut left) = (uuid::Uuid::new_v4(), per_session);
            let mut tick = per_conn_interval.map(|i| {
                // Spread the workers' first ticks evenly over one interval.
                let offset = i.mul_f64(c as f64 / connections as f64);
                let mut t = tokio::time::interval_at(tokio::time::Instant::now() + offset, i);
                t.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
                t
            });
            loop {
                if Instant::now() >= deadline {
                    break;
                }
                let n = next.fetch_add(1, Ordering::Relaxed);
                if limit.is_some_and(|l| n >= l) {
                    break;
                }
                if let Some(t) = tick.as_mut() {
                    t.tick().await;
                    if Instant::now() >= deadline {
                        break;
                    }
                }
                let id = format!("{prefix}_{n}");
                if left == 0 {
                    (session, left) = (uuid::Uuid::new_v4(), per_session);
                }
                left -= 1;
                let status = &statuses[(n % statuses.len() as u64) as usize];
                let body = body_for(status, &session);
                let now = std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .map_or(0, |d| d.as_secs() as i64);
                let headers = sign_headers(&hmac, hmac.secrets[0].expose(), &body, now, &id);
                let want_body = record.is_some();
                let results: Vec<(String, Instant, u64, u64, serde_json::Value)> = if concurrent {
                    let (t0, sent_ms) = (Instant::now(), unix_ms());
                    let answers = futures::future::join_all(
                        slots
                            .iter_mut()
                            .map(|s| post(s, &target, &headers, body.clone(), want_body)),
                    )
                    .await;
                    let answered_ms = unix_ms();
                    answers
                        .into_iter()
                        .map(|(c, v)| (c, t0, sent_ms, answered_ms, v))
                        .collect()
                } else {
                    let mut out = Vec::new();
                    for _ in 0..repeat {
                        let (t0, sent_ms) = (Instant::now(), unix_ms());
                        let (code, v) =
                            post(&mut slots[0], &target, &headers, body.clone(), want_body).await;
                        out.push((code, t0, sent_ms, unix_ms(), v));
                    }
                    out
                };
                for (code, t0, sent_ms, answered_ms, v) in results {
                    stats.record(&code, t0);
                    if let Some(rec) = &record {
                        if let Ok(mut w) = rec.lock() {
                            let _ = writeln!(
                                w,
                                "{id},{code},{},{},{},{sent_ms},{answered_ms},{session},{status}",
                                v["seq"],
                                v["duplicate"],
                                v["event_id"].as_str().unwrap_or("")
                            );
                        }
                    }
                }
            }
        }));
    }
    for t in tasks {
        let _ = t.await;
    }
    if let Some(rec) = record {
        if let Ok(mut w) = rec.lock() {
            w.flush()?;
        }
    }
    stats.report("webhook", a.json);
    Ok(())
}

/// Connections one webhook worker keeps: one per concurrent copy, else one.
fn connections_for(concurrent: bool, repeat: u32) -> usize {
    if concurrent {
        repeat as usize
    } else {
        1
    }
}
