//! `vx-load`: a load generator for vx-bridge, used by `scripts/` (benchmarks, fault suites).
//!
//! `webhook` mode sends signed, seed-like webhooks with distinct request_ids over N connections
//! for T seconds (or a fixed count, optionally at a fixed total rate) and reports req/s,
//! latency percentiles and answers by code; `--record` writes one CSV line per answer so a suite
//! can check afterwards that every 202 is in the stream. `status` mode drives
//! `{prefix}.status.get` over NATS. Traffic goes only where `--url`/`--nats` point.

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
    /// Write `msg_id,http_code,seq,duplicate,event_id` per answer to this CSV file.
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
                        let res = req.send().await;
                        let took = t0.elapsed();
                        match res {
                            Ok(r) => {
                                let code = r.status().as_u16();
                                let v: serde_json::Value =
                                    r.json().await.unwrap_or(serde_json::Value::Null);
                                (id, code.to_string(), took, v)
                            }
                            Err(e) => {
                                let kind = if e.is_timeout() {
                                    "timeout"
                                } else if e.is_connect() {
                                    "connect_error"
                                } else {
                                    "io_error"
                                };
                                (id, kind.to_owned(), took, serde_json::Value::Null)
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
                for (id, code, took, v) in results {
                    stats.record(&code, took);
                    if let Some(rec) = &record {
                        if let Ok(mut w) = rec.lock() {
                            let _ = writeln!(
                                w,
                                "{id},{code},{},{},{}",
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
