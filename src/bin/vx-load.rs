//! `vx-load`: a load generator for vx-bridge, used by `scripts/` (benchmarks, fault suites).
//!
//! `webhook` mode sends signed, seed-like webhooks with distinct request_ids over N connections
//! for T seconds (or a fixed count, optionally at a fixed total rate) and reports req/s,
//! latency percentiles and answers by code; `--record` writes one CSV line per answer so a suite
//! can check afterwards that every 202 is in the stream. `status` mode drives
//! `{prefix}.status.get` over NATS. `verify` reads such records back against the stream (every
//! 202 stored, under its event id, once; every other answer retryable; time to recover after
//! marked events) and `leader` prints a stream's cluster leader, for the reliability suites in
//! `scripts/reliability/`. Traffic goes only where `--url`/`--nats` point.

use std::collections::BTreeMap;
use std::io::Write as _;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use clap::{Parser, Subcommand};
use hdrhistogram::Histogram;
use vx_bridge::auth::hmac::sign_headers;
use vx_bridge::config::{HmacConfig, HmacScheme};
use vx_bridge::secret::Secret;

const SEED: &str = include_str!("../../tests/fixtures/seed-pass.json");
const SEED_ID: &str = "4ed2ec66-9471-415d-99ce-7bd1742fc2b8";

#[derive(Parser)]
#[command(
    name = "vx-load",
    about = "Load generator for vx-bridge (loopback targets only)"
)]
struct Cli {
    #[command(subcommand)]
    mode: Mode,
}

#[derive(Subcommand)]
enum Mode {
    /// POST signed webhooks.
    Webhook(WebhookArgs),
    /// Send status requests over NATS.
    Status(StatusArgs),
    /// Check `--record` files against the stream: every 202 stored, once, with its event id.
    Verify(VerifyArgs),
    /// Print the name of the server leading a stream (empty when none).
    Leader(LeaderArgs),
}

#[derive(clap::Args)]
struct VerifyArgs {
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
}

#[derive(clap::Args)]
struct LeaderArgs {
    /// NATS URL(s), comma-separated.
    #[arg(long, default_value = "nats://127.0.0.1:4222")]
    nats: String,
    /// Stream name.
    #[arg(long)]
    stream: String,
}

#[derive(clap::Args)]
struct WebhookArgs {
    /// Webhook URL.
    #[arg(long, default_value = "http://127.0.0.1:8080/webhooks/vx")]
    url: String,
    /// Standard Webhooks secret the bridge accepts.
    #[arg(long, default_value = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw")]
    secret: String,
    /// Concurrent connections.
    #[arg(long, default_value_t = 64)]
    connections: usize,
    /// How long to send.
    #[arg(long, default_value = "10s", value_parser = humantime::parse_duration)]
    duration: Duration,
    /// Stop after this many deliveries (in total).
    #[arg(long)]
    requests: Option<u64>,
    /// Total rate in deliveries per second (open loop); unlimited when absent.
    #[arg(long)]
    rate: Option<f64>,
    /// Send each delivery this many times (same webhook-id and body), to test dedup.
    #[arg(long, default_value_t = 1)]
    repeat: u32,
    /// With --repeat: send the copies concurrently rather than one after another.
    #[arg(long)]
    concurrent_repeats: bool,
    /// Write `msg_id,http_code,seq,duplicate,event_id,sent_ms,answered_ms` per answer to this
    /// CSV file (times in unix milliseconds).
    #[arg(long)]
    record: Option<std::path::PathBuf>,
    /// Print the summary as one JSON object.
    #[arg(long)]
    json: bool,
    /// Delivery id prefix (distinguishes runs against one stream).
    #[arg(long, default_value = "load")]
    id_prefix: String,
}

#[derive(clap::Args)]
struct StatusArgs {
    /// NATS URL.
    #[arg(long, default_value = "nats://127.0.0.1:4222")]
    nats: String,
    /// Subject prefix.
    #[arg(long, default_value = "verification")]
    prefix: String,
    /// Concurrent requesters.
    #[arg(long, default_value = "64")]
    concurrency: usize,
    /// How long to send.
    #[arg(long, default_value = "10s", value_parser = humantime::parse_duration)]
    duration: Duration,
    /// How many distinct request_ids to cycle through (1 = all from cache after the first).
    #[arg(long, default_value_t = 100)]
    ids: usize,
    /// Subject to request instead of `{prefix}.status.get` (e.g. a raw echo responder).
    #[arg(long)]
    subject: Option<String>,
    /// Print the summary as one JSON object.
    #[arg(long)]
    json: bool,
}

/// Latencies and outcomes shared by the workers.
struct Stats {
    hist: Mutex<Histogram<u64>>,
    codes: Mutex<BTreeMap<String, u64>>,
    done: AtomicU64,
}

impl Stats {
    fn new() -> Arc<Stats> {
        Arc::new(Stats {
            hist: Mutex::new(
                Histogram::new_with_bounds(1, 60_000_000, 3).expect("histogram bounds"),
            ),
            codes: Mutex::new(BTreeMap::new()),
            done: AtomicU64::new(0),
        })
    }

    fn record(&self, code: &str, took: Duration) {
        if let Ok(mut h) = self.hist.lock() {
            let _ = h.record((took.as_micros() as u64).max(1));
        }
        if let Ok(mut c) = self.codes.lock() {
            *c.entry(code.to_owned()).or_default() += 1;
        }
        self.done.fetch_add(1, Ordering::Relaxed);
    }

    fn report(&self, mode: &str, elapsed: Duration, json: bool) {
        let h = self
            .hist
            .lock()
            .map(|h| h.clone())
            .unwrap_or_else(|_| Histogram::new(3).expect("histogram"));
        let codes = self.codes.lock().map(|c| c.clone()).unwrap_or_default();
        let n = self.done.load(Ordering::Relaxed);
        let rate = n as f64 / elapsed.as_secs_f64();
        let ms = |q: f64| h.value_at_quantile(q) as f64 / 1000.0;
        if json {
            let v = serde_json::json!({
                "mode": mode, "requests": n, "seconds": elapsed.as_secs_f64(), "rps": rate,
                "p50_ms": ms(0.5), "p90_ms": ms(0.9), "p99_ms": ms(0.99), "max_ms": h.max() as f64 / 1000.0,
                "codes": codes,
            });
            println!("{v}");
        } else {
            println!(
                "{mode}: {n} requests in {:.2}s = {rate:.0} req/s",
                elapsed.as_secs_f64()
            );
            println!(
                "latency ms: p50 {:.2}  p90 {:.2}  p99 {:.2}  max {:.2}",
                ms(0.5),
                ms(0.9),
                ms(0.99),
                h.max() as f64 / 1000.0
            );
            println!("answers: {codes:?}");
        }
    }
}

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    rt.block_on(async move {
        match cli.mode {
            Mode::Webhook(a) => webhook(a).await,
            Mode::Status(a) => status(a).await,
            Mode::Verify(a) => verify(a).await,
            Mode::Leader(a) => leader(a).await,
        }
    })
}

async fn webhook(a: WebhookArgs) -> anyhow::Result<()> {
    let hmac = HmacConfig {
        scheme: HmacScheme::StandardWebhooks,
        secrets: vec![Secret::new(a.secret.clone())],
        ..HmacConfig::default()
    };
    let stats = Stats::new();
    let record = match &a.record {
        Some(p) => Some(Arc::new(Mutex::new(std::io::BufWriter::new(
            std::fs::File::create(p)?,
        )))),
        None => None,
    };
    let next = Arc::new(AtomicU64::new(0));
    let started = Instant::now();
    let deadline = started + a.duration;
    let per_conn_interval = a
        .rate
        .map(|r| Duration::from_secs_f64(a.connections as f64 / r));
    let mut tasks = Vec::new();
    for c in 0..a.connections {
        let client = reqwest::Client::builder()
            .pool_max_idle_per_host(1)
            .http1_only()
            .timeout(Duration::from_secs(30))
            .build()?;
        let (stats, record, next, hmac, url, prefix) = (
            stats.clone(),
            record.clone(),
            next.clone(),
            hmac.clone(),
            a.url.clone(),
            a.id_prefix.clone(),
        );
        let (limit, repeat, concurrent) = (a.requests, a.repeat, a.concurrent_repeats);
        tasks.push(tokio::spawn(async move {
            let mut tick = per_conn_interval.map(|i| {
                let mut t = tokio::time::interval_at(
                    tokio::time::Instant::now() + i.mul_f64(c as f64 / 64.0 % 1.0),
                    i,
                );
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
                }
                let id = format!("{prefix}_{n}");
                let body = SEED
                    .replace(SEED_ID, &uuid::Uuid::new_v4().to_string())
                    .into_bytes();
                let send = |client: reqwest::Client, id: String, body: Vec<u8>| {
                    let now = std::time::SystemTime::now()
                        .duration_since(std::time::UNIX_EPOCH)
                        .map_or(0, |d| d.as_secs() as i64);
                    let mut req = client.post(&url).header("content-type", "application/json");
                    for (k, v) in sign_headers(&hmac, hmac.secrets[0].expose(), &body, now, &id) {
                        req = req.header(k, v);
                    }
                    let req = req.body(body);
                    async move {
                        let t0 = Instant::now();
                        let sent_ms = unix_ms();
                        let res = req.send().await;
                        let took = t0.elapsed();
                        match res {
                            Ok(r) => {
                                let code = r.status().as_u16();
                                let v: serde_json::Value =
                                    r.json().await.unwrap_or(serde_json::Value::Null);
                                (id, code.to_string(), took, v, sent_ms)
                            }
                            Err(e) => {
                                let kind = if e.is_timeout() {
                                    "timeout"
                                } else if e.is_connect() {
                                    "connect_error"
                                } else {
                                    "io_error"
                                };
                                (id, kind.to_owned(), took, serde_json::Value::Null, sent_ms)
                            }
                        }
                    }
                };
                let results = if concurrent && repeat > 1 {
                    futures::future::join_all(
                        (0..repeat).map(|_| send(client.clone(), id.clone(), body.clone())),
                    )
                    .await
                } else {
                    let mut out = Vec::new();
                    for _ in 0..repeat {
                        out.push(send(client.clone(), id.clone(), body.clone()).await);
                    }
                    out
                };
                for (id, code, took, v, sent_ms) in results {
                    stats.record(&code, took);
                    if let Some(rec) = &record {
                        if let Ok(mut w) = rec.lock() {
                            let _ = writeln!(
                                w,
                                "{id},{code},{},{},{},{sent_ms},{}",
                                v["seq"],
                                v["duplicate"],
                                v["event_id"].as_str().unwrap_or(""),
                                sent_ms + took.as_millis() as u64
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
    stats.report("webhook", started.elapsed(), a.json);
    Ok(())
}

async fn status(a: StatusArgs) -> anyhow::Result<()> {
    let client = async_nats::connect(&a.nats).await?;
    let subject = a
        .subject
        .clone()
        .unwrap_or_else(|| format!("{}.status.get", a.prefix));
    let ids: Arc<Vec<String>> = Arc::new(
        (0..a.ids.max(1))
            .map(|_| uuid::Uuid::new_v4().to_string())
            .collect(),
    );
    let stats = Stats::new();
    let started = Instant::now();
    let deadline = started + a.duration;
    let next = Arc::new(AtomicU64::new(0));
    let mut tasks = Vec::new();
    for _ in 0..a.concurrency {
        let (client, subject, ids, stats, next) = (
            client.clone(),
            subject.clone(),
            ids.clone(),
            stats.clone(),
            next.clone(),
        );
        tasks.push(tokio::spawn(async move {
            while Instant::now() < deadline {
                let n = next.fetch_add(1, Ordering::Relaxed) as usize;
                let payload = format!("{{\"request_id\":\"{}\"}}", ids[n % ids.len()]);
                let t0 = Instant::now();
                let res = client.request(subject.clone(), payload.into()).await;
                let code = match res {
                    Ok(m) => m
                        .headers
                        .as_ref()
                        .and_then(|h| h.get("Nats-Service-Error-Code"))
                        .map_or_else(|| "ok".to_owned(), |c| c.to_string()),
                    Err(e) => format!("{:?}", e.kind()),
                };
                stats.record(&code, t0.elapsed());
            }
        }));
    }
    for t in tasks {
        let _ = t.await;
    }
    stats.report("status", started.elapsed(), a.json);
    Ok(())
}

fn unix_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
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
    let addrs = urls
        .split(',')
        .map(|u| u.trim().parse::<async_nats::ServerAddr>())
        .collect::<Result<Vec<_>, _>>()?;
    let client = async_nats::ConnectOptions::new()
        .retry_on_initial_connect()
        .connect(addrs)
        .await?;
    Ok(async_nats::jetstream::new(client))
}

/// Every `Nats-Msg-Id` stored in the stream, with its `ce-id` and how often it is stored.
async fn stored_ids(
    js: &async_nats::jetstream::Context,
    stream: &str,
    wait: Duration,
) -> anyhow::Result<(BTreeMap<String, (String, u64)>, u64)> {
    use futures::StreamExt as _;
    let deadline = Instant::now() + wait;
    let mut s = loop {
        match js.get_stream(stream).await {
            Ok(s) => break s,
            Err(e) if Instant::now() < deadline => {
                eprintln!("verify: stream not readable yet: {e}");
                tokio::time::sleep(Duration::from_millis(500)).await;
            }
            Err(e) => return Err(e.into()),
        }
    };
    let total = s.info().await?.state.messages;
    let consumer = s
        .create_consumer(async_nats::jetstream::consumer::pull::OrderedConfig {
            headers_only: true,
            ..Default::default()
        })
        .await?;
    let mut messages = consumer.messages().await?;
    let mut ids: BTreeMap<String, (String, u64)> = BTreeMap::new();
    let mut seen = 0u64;
    while seen < total {
        let left = deadline.saturating_duration_since(Instant::now()) + Duration::from_secs(10);
        let Ok(Some(msg)) = tokio::time::timeout(left, messages.next()).await else {
            anyhow::bail!("read {seen} of {total} messages before the deadline");
        };
        let msg = msg?;
        seen += 1;
        let h = |k: &str| {
            msg.headers
                .as_ref()
                .and_then(|h| h.get(k))
                .map(|v| v.as_str().to_owned())
                .unwrap_or_default()
        };
        let e = ids.entry(h("Nats-Msg-Id")).or_insert((h("ce-id"), 0));
        e.1 += 1;
    }
    Ok((ids, total))
}

async fn verify(a: VerifyArgs) -> anyhow::Result<()> {
    let answers = read_records(&a.records)?;
    let js = connect_js(&a.nats).await?;
    let (stored, total) = stored_ids(&js, &a.stream, Duration::from_secs(a.wait)).await?;
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
    let stored_twice: Vec<&String> = stored
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
    // No-answer deliveries that were nevertheless stored (the sender would retry: a duplicate).
    let unanswered_but_stored = answers
        .iter()
        .filter(|x| {
            x.code != "202"
                && stored.contains_key(&x.msg_id)
                && !accepted.contains_key(x.msg_id.as_str())
        })
        .count();
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
    let mut ok = missing.is_empty()
        && wrong_event_id.is_empty()
        && stored_twice.is_empty()
        && first_twice.is_empty()
        && non_retryable.is_empty()
        && !accepted.is_empty();
    if a.all_accepted && !never_accepted.is_empty() {
        ok = false;
    }
    let v = serde_json::json!({
        "ok": ok,
        "answers": answers.len(),
        "codes": codes,
        "deliveries": delivered.len(),
        "accepted_deliveries": accepted.len(),
        "stream_messages": total,
        "missing_after_202": missing.len(),
        "missing_examples": missing.iter().take(10).collect::<Vec<_>>(),
        "wrong_event_id": wrong_event_id.len(),
        "stored_more_than_once": stored_twice.len(),
        "first_202_more_than_once": first_twice.len(),
        "deliveries_with_one_first_202": accepted.values().filter(|(_, n)| *n == 1).count(),
        "non_retryable_answers": non_retryable.len(),
        "non_retryable_examples": non_retryable.iter().take(10).collect::<Vec<_>>(),
        "never_accepted_deliveries": never_accepted.len(),
        "unanswered_but_stored": unanswered_but_stored,
        "recoveries": recoveries,
    });
    println!("{v}");
    if !ok {
        anyhow::bail!("verification failed");
    }
    Ok(())
}

async fn leader(a: LeaderArgs) -> anyhow::Result<()> {
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
