//! `vx-load`: a load generator for vx-bridge, used by `scripts/bench.sh` and the fault suites.
//!
//! Modes, each bounded in time and aimed only where its `--url`/`--nats`/`--listen` point:
//! - `webhook`: signed, seed-like webhooks with distinct request_ids over N HTTP/1.1 connections
//!   (a bare hyper client: one connection per worker, no pool) for T seconds, or a fixed count,
//!   optionally at a fixed total rate; reports req/s, latency percentiles and answers by code.
//!   `--record` writes one CSV line per answer so a suite can check that every 202 is stored.
//! - `verify` reads such records back against the stream (every 202 stored, under its event id,
//!   once; every other answer retryable; time to recover after marked events) and `leader` prints
//!   a stream's cluster leader, for the reliability suites in `scripts/reliability/`.
//! - `status`: drives `{prefix}.status.get` (or any subject) over NATS request-reply; `--burst`
//!   sends N identical lookups at once.
//! - `jspub`: the raw JetStream baseline: the same event messages the bridge would publish, each
//!   with a unique `Nats-Msg-Id`, with a fixed number of PubAcks in flight.
//! - `echo`: the raw request-reply baseline: a NATS responder that answers every request with
//!   a fixed status-like reply.
//! - `serve202`: the plain HTTP baseline: axum answering 202 to every POST after reading its body.
//! - `mock-vx`: a stand-in for the VX API (OAuth token endpoint and session results) with a fixed
//!   latency, counting upstream calls; request_ids ending in `-fa17XXXXXNNN` get HTTP error NNN.
//! - `startup`: starts a command, polls a readiness URL, and reports the time from spawn to 200.
//! - `free-port`: prints a free loopback port, for scripts.

use std::collections::BTreeMap;
use std::io::{Read as _, Write as _};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use clap::{Parser, Subcommand};
use hdrhistogram::Histogram;
use http_body_util::{BodyExt as _, Full};
use hyper::client::conn::http1;
use hyper_util::rt::TokioIo;
use vx_bridge::auth::hmac::sign_headers;
use vx_bridge::config::{HmacConfig, HmacScheme};
use vx_bridge::secret::Secret;

/// The load generator shares the cores with what it measures: keep its allocations cheap too.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

const SEED: &str = include_str!("../../tests/fixtures/seed-pass.json");
const SEED_ID: &str = "4ed2ec66-9471-415d-99ce-7bd1742fc2b8";

#[derive(Parser)]
#[command(
    name = "vx-load",
    about = "Load generator and baselines for vx-bridge (loopback targets only)"
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
    /// Publish to JetStream directly (baseline).
    Jspub(JsPubArgs),
    /// Answer NATS requests with a fixed reply (baseline).
    Echo(EchoArgs),
    /// Answer every POST with 202 after reading the body (baseline).
    Serve202(Serve202Args),
    /// A mock VX API with a fixed latency (a request_id ending in `-fa17XXXXXNNN` gets HTTP
    /// error NNN).
    MockVx(MockVxArgs),
    /// Measure the time from spawning a command to its readiness URL answering 200.
    Startup(StartupArgs),
    /// Print a free TCP port on 127.0.0.1 (for scripts).
    FreePort,
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
    /// File of `<label> <start_ms> <end_ms>` lines (outages): for the answers to deliveries sent
    /// in each window, the share of 503s and the p99 and maximum answer time are reported.
    #[arg(long)]
    windows: Option<std::path::PathBuf>,
    /// Ride-through check: a window whose first 202 (of a delivery sent in it) came sooner than
    /// this many ms after its start must hold no 503 (the bridge's `nats.outage_wait`).
    #[arg(long)]
    no_503_if_recovered_within_ms: Option<u64>,
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
    /// Answers to requests started in this first part of `duration` are not counted.
    #[arg(long, default_value = "0s", value_parser = humantime::parse_duration)]
    warmup: Duration,
    /// How many distinct request_ids to cycle through (1 = all from cache after the first;
    /// 0 = a new request_id for every lookup, so none can come from the cache).
    #[arg(long, default_value_t = 100)]
    ids: usize,
    /// Instead of a timed run: send this many lookups of one new request_id at once.
    #[arg(long)]
    burst: Option<usize>,
    /// Subject to request instead of `{prefix}.status.get` (e.g. a raw echo responder).
    #[arg(long)]
    subject: Option<String>,
    /// Request timeout.
    #[arg(long, default_value = "10s", value_parser = humantime::parse_duration)]
    timeout: Duration,
    /// Print the summary as one JSON object.
    #[arg(long)]
    json: bool,
}

#[derive(clap::Args)]
struct JsPubArgs {
    /// NATS URL.
    #[arg(long, default_value = "nats://127.0.0.1:4222")]
    nats: String,
    /// Stream to create (file storage) and publish into.
    #[arg(long, default_value = "VXLOAD_BASELINE")]
    stream: String,
    /// Subject (the stream captures exactly this one).
    #[arg(long, default_value = "vxload.baseline")]
    subject: String,
    /// PubAcks in flight.
    #[arg(long, default_value_t = 256)]
    in_flight: usize,
    /// How long to publish.
    #[arg(long, default_value = "10s", value_parser = humantime::parse_duration)]
    duration: Duration,
    /// PubAcks to publishes started in this first part of `duration` are not counted.
    #[arg(long, default_value = "0s", value_parser = humantime::parse_duration)]
    warmup: Duration,
    /// Use memory storage instead of file storage.
    #[arg(long)]
    memory: bool,
    /// Print the summary as one JSON object.
    #[arg(long)]
    json: bool,
}

#[derive(clap::Args)]
struct EchoArgs {
    /// NATS URL.
    #[arg(long, default_value = "nats://127.0.0.1:4222")]
    nats: String,
    /// Subject to answer.
    #[arg(long, default_value = "vxload.echo")]
    subject: String,
    /// Stop after this long.
    #[arg(long, default_value = "120s", value_parser = humantime::parse_duration)]
    duration: Duration,
}

#[derive(clap::Args)]
struct Serve202Args {
    /// Address to listen on (loopback).
    #[arg(long, default_value = "127.0.0.1:8090")]
    listen: std::net::SocketAddr,
    /// Stop after this long.
    #[arg(long, default_value = "120s", value_parser = humantime::parse_duration)]
    duration: Duration,
}

#[derive(clap::Args)]
struct MockVxArgs {
    /// Address to listen on (loopback).
    #[arg(long, default_value = "127.0.0.1:8091")]
    listen: std::net::SocketAddr,
    /// Latency added to every answer.
    #[arg(long, default_value = "20ms", value_parser = humantime::parse_duration)]
    latency: Duration,
    /// Stop after this long.
    #[arg(long, default_value = "120s", value_parser = humantime::parse_duration)]
    duration: Duration,
}

#[derive(clap::Args)]
struct StartupArgs {
    /// Readiness URL (http, loopback), polled every 2 ms.
    #[arg(long)]
    ready_url: String,
    /// How many times to start the command.
    #[arg(long, default_value_t = 5)]
    runs: usize,
    /// Give up on one start after this long.
    #[arg(long, default_value = "10s", value_parser = humantime::parse_duration)]
    timeout: Duration,
    /// Print the summary as one JSON object.
    #[arg(long)]
    json: bool,
    /// The command and its arguments.
    #[arg(last = true, required = true)]
    command: Vec<String>,
}

/// Latencies and outcomes shared by the workers.
struct Stats {
    hist: Mutex<Histogram<u64>>,
    codes: Mutex<BTreeMap<String, u64>>,
    done: AtomicU64,
    /// Every answer, warm-up included (to divide CPU time by).
    all: AtomicU64,
    /// Requests started before this instant are not recorded.
    measure_from: Instant,
}

impl Stats {
    fn new(measure_from: Instant) -> Arc<Stats> {
        Arc::new(Stats {
            hist: Mutex::new(
                Histogram::new_with_bounds(1, 60_000_000, 3).expect("histogram bounds"),
            ),
            codes: Mutex::new(BTreeMap::new()),
            done: AtomicU64::new(0),
            all: AtomicU64::new(0),
            measure_from,
        })
    }

    /// Records an answer to a request started at `t0`.
    fn record(&self, code: &str, t0: Instant) {
        self.all.fetch_add(1, Ordering::Relaxed);
        if t0 < self.measure_from {
            return;
        }
        let took = t0.elapsed();
        if let Ok(mut h) = self.hist.lock() {
            let _ = h.record((took.as_micros() as u64).max(1));
        }
        if let Ok(mut c) = self.codes.lock() {
            match c.get_mut(code) {
                Some(n) => *n += 1,
                None => {
                    c.insert(code.to_owned(), 1);
                }
            }
        }
        self.done.fetch_add(1, Ordering::Relaxed);
    }

    fn report(&self, mode: &str, json: bool) {
        let elapsed = self.measure_from.elapsed();
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
                "codes": codes, "all_requests": self.all.load(Ordering::Relaxed), "cpu_s": own_cpu_seconds(),
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

/// CPU time (user + system) this process has used so far, from `/proc/self/stat`; 0 elsewhere.
fn own_cpu_seconds() -> f64 {
    let Ok(stat) = std::fs::read_to_string("/proc/self/stat") else {
        return 0.0;
    };
    // Fields after the command name (which is in parentheses and may contain spaces).
    let rest = stat.rsplit_once(')').map_or("", |(_, r)| r);
    let fields: Vec<&str> = rest.split_whitespace().collect();
    // utime and stime are fields 14 and 15 of the line: indexes 11 and 12 after the name. Linux
    // counts them in USER_HZ, which is 100.
    let ticks = |i: usize| {
        fields
            .get(i)
            .and_then(|v| v.parse::<f64>().ok())
            .unwrap_or(0.0)
    };
    (ticks(11) + ticks(12)) / 100.0
}

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    match cli.mode {
        Mode::Startup(a) => return startup(a),
        Mode::FreePort => {
            let port = std::net::TcpListener::bind("127.0.0.1:0")?
                .local_addr()?
                .port();
            println!("{port}");
            return Ok(());
        }
        _ => {}
    }
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    rt.block_on(async move {
        match cli.mode {
            Mode::Webhook(a) => webhook(a).await,
            Mode::Status(a) => status(a).await,
            Mode::Jspub(a) => jspub(a).await,
            Mode::Echo(a) => echo(a).await,
            Mode::Serve202(a) => serve202(a).await,
            Mode::MockVx(a) => mock_vx(a).await,
            Mode::Verify(a) => verify(a).await,
            Mode::Leader(a) => leader(a).await,
            Mode::Startup(_) | Mode::FreePort => Ok(()),
        }
    })
}

/// Where a webhook goes: the TCP address, the `Host` header and the path.
#[derive(Clone)]
struct Target {
    addr: String,
    authority: String,
    path: String,
}

impl Target {
    fn parse(url: &str) -> anyhow::Result<Target> {
        let uri: http::Uri = url.parse()?;
        anyhow::ensure!(
            uri.scheme_str() == Some("http"),
            "only http:// URLs are supported"
        );
        let authority = uri
            .authority()
            .ok_or_else(|| anyhow::anyhow!("URL without host"))?
            .clone();
        let port = authority.port_u16().unwrap_or(80);
        Ok(Target {
            addr: format!("{}:{port}", authority.host()),
            authority: authority.to_string(),
            path: uri
                .path_and_query()
                .map_or_else(|| "/".to_owned(), |p| p.to_string()),
        })
    }
}

type Sender = http1::SendRequest<Full<Bytes>>;

async fn open(target: &Target) -> std::io::Result<Sender> {
    let stream = tokio::net::TcpStream::connect(&target.addr).await?;
    stream.set_nodelay(true)?;
    let (sender, conn) = http1::handshake(TokioIo::new(stream))
        .await
        .map_err(std::io::Error::other)?;
    tokio::spawn(async move {
        let _ = conn.await;
    });
    Ok(sender)
}

/// One POST over `slot`'s connection (opened or re-opened as needed): the code (or error kind)
/// and, when `want_body`, the parsed JSON answer.
async fn post(
    slot: &mut Option<Sender>,
    target: &Target,
    headers: &[(String, String)],
    body: Bytes,
    want_body: bool,
) -> (String, serde_json::Value) {
    let attempt = async {
        if slot.is_none() {
            *slot = Some(open(target).await.map_err(|_| "connect_error")?);
        }
        let sender = slot.as_mut().ok_or("connect_error")?;
        sender.ready().await.map_err(|_| "io_error")?;
        let mut req = http::Request::post(target.path.as_str())
            .header(http::header::HOST, target.authority.as_str())
            .header(http::header::CONTENT_TYPE, "application/json");
        for (k, v) in headers {
            req = req.header(k.as_str(), v.as_str());
        }
        let req = req.body(Full::new(body)).map_err(|_| "bad_request")?;
        let res = sender.send_request(req).await.map_err(|_| "io_error")?;
        let code = res.status().as_u16();
        let bytes = res
            .into_body()
            .collect()
            .await
            .map_err(|_| "io_error")?
            .to_bytes();
        let v = if want_body {
            serde_json::from_slice(&bytes).unwrap_or(serde_json::Value::Null)
        } else {
            serde_json::Value::Null
        };
        Ok::<_, &'static str>((code.to_string(), v))
    };
    match tokio::time::timeout(Duration::from_secs(30), attempt).await {
        Ok(Ok(r)) => r,
        Ok(Err(kind)) => {
            *slot = None;
            (kind.to_owned(), serde_json::Value::Null)
        }
        Err(_) => {
            *slot = None;
            ("timeout".to_owned(), serde_json::Value::Null)
        }
    }
}

async fn webhook(a: WebhookArgs) -> anyhow::Result<()> {
    let target = Target::parse(&a.url)?;
    let hmac = HmacConfig {
        scheme: HmacScheme::StandardWebhooks,
        secrets: vec![Secret::new(a.secret.clone())],
        ..HmacConfig::default()
    };
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
    for c in 0..a.connections {
        let (stats, record, next, hmac, target, prefix) = (
            stats.clone(),
            record.clone(),
            next.clone(),
            hmac.clone(),
            target.clone(),
            a.id_prefix.clone(),
        );
        let (limit, repeat, concurrent) = (a.requests, a.repeat.max(1), a.concurrent_repeats);
        let n_conns = connections_for(concurrent, repeat);
        let connections = a.connections;
        tasks.push(tokio::spawn(async move {
            let mut slots: Vec<Option<Sender>> = (0..n_conns).map(|_| None).collect();
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
                let body = Bytes::from(
                    SEED.replace(SEED_ID, &uuid::Uuid::new_v4().to_string())
                        .into_bytes(),
                );
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
                                "{id},{code},{},{},{},{sent_ms},{answered_ms}",
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

async fn status(a: StatusArgs) -> anyhow::Result<()> {
    let client = async_nats::ConnectOptions::new()
        .request_timeout(Some(a.timeout))
        .connect(&a.nats)
        .await?;
    let subject = a
        .subject
        .clone()
        .unwrap_or_else(|| format!("{}.status.get", a.prefix));
    if let Some(n) = a.burst {
        return status_burst(client, subject, n, a.json).await;
    }
    let ids: Arc<Vec<Bytes>> = Arc::new(
        (0..a.ids)
            .map(|_| Bytes::from(status_request(&uuid::Uuid::new_v4().to_string())))
            .collect(),
    );
    let started = Instant::now();
    let stats = Stats::new(started + a.warmup);
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
                let payload = match ids.len() {
                    0 => Bytes::from(status_request(&uuid::Uuid::new_v4().to_string())),
                    len => ids[n % len].clone(),
                };
                let t0 = Instant::now();
                let res = client.request(subject.clone(), payload).await;
                stats.record(&reply_code(res), t0);
            }
        }));
    }
    for t in tasks {
        let _ = t.await;
    }
    stats.report("status", a.json);
    Ok(())
}

fn status_request(request_id: &str) -> String {
    format!("{{\"request_id\":\"{request_id}\"}}")
}

fn reply_code(res: Result<async_nats::Message, async_nats::RequestError>) -> String {
    match res {
        Ok(m) => m
            .headers
            .as_ref()
            .and_then(|h| h.get("Nats-Service-Error-Code"))
            .map_or_else(|| "ok".to_owned(), |c| c.to_string()),
        Err(e) => format!("{:?}", e.kind()),
    }
}

/// `n` lookups of one new request_id, all sent before any answer is awaited.
async fn status_burst(
    client: async_nats::Client,
    subject: String,
    n: usize,
    json: bool,
) -> anyhow::Result<()> {
    let started = Instant::now();
    let stats = Stats::new(started);
    let payload = Bytes::from(status_request(&uuid::Uuid::new_v4().to_string()));
    let answers = futures::future::join_all((0..n).map(|_| {
        let (client, subject, payload, stats) = (
            client.clone(),
            subject.clone(),
            payload.clone(),
            stats.clone(),
        );
        async move {
            let t0 = Instant::now();
            let res = client.request(subject, payload).await;
            stats.record(&reply_code(res), t0);
        }
    }));
    answers.await;
    stats.report("status-burst", json);
    Ok(())
}

/// The message the bridge would publish for the seed body, with a fresh request_id. Its proof of
/// authentication comes from the bridge's own verifier (a Standard Webhooks delivery signed
/// here, delivery id `baseline`), as the service's would.
fn sample_event() -> anyhow::Result<vx_bridge::event::OutboundMessage> {
    use vx_bridge::config::{AuthConfig, AuthMode};
    let raw = SEED.replace(SEED_ID, &uuid::Uuid::new_v4().to_string());
    let body: serde_json::Value = serde_json::from_str(&raw).unwrap_or(serde_json::Value::Null);
    let secret = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
    let auth = AuthConfig {
        mode: Some(AuthMode::Hmac),
        hmac: HmacConfig {
            scheme: HmacScheme::StandardWebhooks,
            ..HmacConfig::default()
        },
        ..AuthConfig::default()
    };
    let verifier = vx_bridge::auth::Verifier::from_config(&auth, &[Secret::new(secret)])?;
    let now = 1_700_000_000;
    let mut headers = http::HeaderMap::new();
    for (k, v) in sign_headers(&auth.hmac, secret, raw.as_bytes(), now, "baseline") {
        headers.insert(
            http::HeaderName::from_bytes(k.as_bytes())?,
            http::HeaderValue::from_str(&v)?,
        );
    }
    let verified = verifier.verify(&headers, raw.as_bytes(), now)?;
    Ok(vx_bridge::event::build_event(
        &vx_bridge::nats::Subjects::new("vxload"),
        &verified,
        raw.as_bytes(),
        &body,
        "2026-01-01T00:00:00.000Z",
        &vx_bridge::telemetry::TraceContext::continue_or_start(None, None),
    ))
}

async fn jspub(a: JsPubArgs) -> anyhow::Result<()> {
    use async_nats::jetstream::{self, stream};
    let client = async_nats::connect(&a.nats).await?;
    let js = jetstream::new(client);
    js.create_or_update_stream(stream::Config {
        name: a.stream.clone(),
        subjects: vec![a.subject.clone()],
        storage: if a.memory {
            stream::StorageType::Memory
        } else {
            stream::StorageType::File
        },
        duplicate_window: Duration::from_secs(3600),
        ..Default::default()
    })
    .await?;
    let template = Arc::new(sample_event()?);
    let started = Instant::now();
    let stats = Stats::new(started + a.warmup);
    let deadline = started + a.duration;
    let next = Arc::new(AtomicU64::new(0));
    let run = uuid::Uuid::new_v4().simple().to_string();
    let mut tasks = Vec::new();
    for _ in 0..a.in_flight {
        let (js, stats, next, template, subject, run) = (
            js.clone(),
            stats.clone(),
            next.clone(),
            template.clone(),
            a.subject.clone(),
            run.clone(),
        );
        tasks.push(tokio::spawn(async move {
            while Instant::now() < deadline {
                let n = next.fetch_add(1, Ordering::Relaxed);
                let mut headers = vx_bridge::nats::publisher::nats_headers(&template);
                headers.insert("Nats-Msg-Id", format!("{run}-{n}").as_str());
                let t0 = Instant::now();
                let res = async {
                    js.publish_with_headers(subject.clone(), headers, template.payload.clone())
                        .await?
                        .await
                }
                .await;
                let code = match res {
                    Ok(ack) if ack.duplicate => "duplicate".to_owned(),
                    Ok(_) => "ok".to_owned(),
                    Err(e) => format!("{:?}", e.kind()),
                };
                stats.record(&code, t0);
            }
        }));
    }
    for t in tasks {
        let _ = t.await;
    }
    stats.report("jspub", a.json);
    Ok(())
}

/// A reply of the size and shape of a status answer.
const ECHO_REPLY: &str = r#"{"request_id":"4ed2ec66-9471-415d-99ce-7bd1742fc2b8","current_status":"COMPLETED","checked_at":"2026-01-01T00:00:00.000Z","source":"cache"}"#;

async fn echo(a: EchoArgs) -> anyhow::Result<()> {
    use futures::StreamExt as _;
    let client = async_nats::connect(&a.nats).await?;
    let mut sub = client
        .queue_subscribe(a.subject.clone(), "vxload-echo".into())
        .await?;
    client.flush().await?;
    println!("echo: answering {}", a.subject);
    let reply = Bytes::from_static(ECHO_REPLY.as_bytes());
    let stop = tokio::time::sleep(a.duration);
    tokio::pin!(stop);
    let mut answered = 0u64;
    loop {
        tokio::select! {
            _ = &mut stop => break,
            _ = tokio::signal::ctrl_c() => break,
            m = sub.next() => match m {
                Some(m) => {
                    if let Some(to) = m.reply {
                        client.publish(to, reply.clone()).await?;
                        answered += 1;
                    }
                }
                None => break,
            }
        }
    }
    println!("echo: answered {answered}");
    Ok(())
}

async fn serve_until(
    listen: std::net::SocketAddr,
    router: axum::Router,
    duration: Duration,
) -> anyhow::Result<()> {
    let listener = tokio::net::TcpListener::bind(listen).await?;
    println!("listening on {}", listener.local_addr()?);
    axum::serve(listener, router)
        .with_graceful_shutdown(async move {
            tokio::select! {
                _ = tokio::time::sleep(duration) => {}
                _ = tokio::signal::ctrl_c() => {}
            }
        })
        .await?;
    Ok(())
}

async fn serve202(a: Serve202Args) -> anyhow::Result<()> {
    use axum::routing::post;
    async fn accept(body: Bytes) -> impl axum::response::IntoResponse {
        std::hint::black_box(&body);
        (
            http::StatusCode::ACCEPTED,
            [(http::header::CONTENT_TYPE, "application/json")],
            r#"{"event_id":"0b6f8c1e-0000-8000-8000-000000000000","subject":"verification.completed.pass","stream":"VERIFICATIONS","seq":1,"duplicate":false}"#,
        )
    }
    let router = axum::Router::new().route("/{*path}", post(accept));
    serve_until(a.listen, router, a.duration).await
}

/// Counts of what the mock VX API served.
#[derive(Default)]
struct MockCounts {
    token: AtomicU64,
    result: AtomicU64,
}

async fn mock_vx(a: MockVxArgs) -> anyhow::Result<()> {
    use axum::extract::{Path, State};
    use axum::routing::{get, post};
    let counts = Arc::new(MockCounts::default());
    let latency = a.latency;
    let token = {
        let counts = counts.clone();
        move || async move {
            counts.token.fetch_add(1, Ordering::Relaxed);
            tokio::time::sleep(latency).await;
            axum::Json(serde_json::json!({
                "access_token": "mock-token", "token_type": "Bearer", "expires_in": 3600
            }))
        }
    };
    let result = move |State(counts): State<Arc<MockCounts>>, Path(id): Path<String>| async move {
        counts.result.fetch_add(1, Ordering::Relaxed);
        tokio::time::sleep(latency).await;
        if let Some(code) = mock_fault(&id) {
            if code == http::StatusCode::GATEWAY_TIMEOUT {
                // A VX that does not answer: the bridge's own deadline must.
                tokio::time::sleep(Duration::from_secs(60)).await;
            }
            return (
                code,
                [(http::header::CONTENT_TYPE, "application/json")],
                Vec::new(),
            );
        }
        let body = SEED.replace(SEED_ID, &id);
        (
            http::StatusCode::OK,
            [(http::header::CONTENT_TYPE, "application/json")],
            body.into_bytes(),
        )
    };
    let stats = |State(counts): State<Arc<MockCounts>>| async move {
        axum::Json(serde_json::json!({
            "token_calls": counts.token.load(Ordering::Relaxed),
            "result_calls": counts.result.load(Ordering::Relaxed),
        }))
    };
    let router = axum::Router::new()
        .route("/oauth/token", post(token))
        .route("/api/session/result/{id}", get(result))
        .route("/mock/stats", get(stats))
        .with_state(counts);
    serve_until(a.listen, router, a.duration).await
}

/// The fault the mock VX API plays for a session: a request_id whose last group is `fa17`, any
/// 5 hex digits, then an HTTP error status NNN is answered NNN (504 only after 60 s: a VX that
/// hangs), e.g. `00000000-0000-4000-8000-fa1700001404` → 404. Lets scripts provoke each answer
/// of the status service, with as many distinct sessions as they need.
fn mock_fault(request_id: &str) -> Option<http::StatusCode> {
    let last = request_id.rsplit('-').next()?;
    if last.len() != 12 || !last.starts_with("fa17") {
        return None;
    }
    let code = http::StatusCode::from_bytes(last.get(9..)?.as_bytes()).ok()?;
    (code.is_client_error() || code.is_server_error()).then_some(code)
}

/// Blocking: one `GET` over a new connection; the status code, if any.
fn get_status(addr: &str, authority: &str, path: &str) -> Option<u16> {
    let mut s = std::net::TcpStream::connect(addr).ok()?;
    s.set_read_timeout(Some(Duration::from_millis(500))).ok()?;
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: {authority}\r\nConnection: close\r\n\r\n"
    )
    .ok()?;
    let mut head = [0u8; 12];
    s.read_exact(&mut head).ok()?;
    std::str::from_utf8(&head[9..12]).ok()?.parse().ok()
}

fn startup(a: StartupArgs) -> anyhow::Result<()> {
    let target = Target::parse(&a.ready_url)?;
    let (program, args) = a
        .command
        .split_first()
        .ok_or_else(|| anyhow::anyhow!("no command"))?;
    let mut times = Vec::new();
    let mut failures = 0u32;
    for _ in 0..a.runs.max(1) {
        let t0 = Instant::now();
        let mut child = std::process::Command::new(program)
            .args(args)
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()?;
        let mut ready = None;
        while t0.elapsed() < a.timeout {
            if get_status(&target.addr, &target.authority, &target.path) == Some(200) {
                ready = Some(t0.elapsed());
                break;
            }
            if let Ok(Some(_)) = child.try_wait() {
                break;
            }
            std::thread::sleep(Duration::from_millis(2));
        }
        let _ = child.kill();
        let _ = child.wait();
        match ready {
            Some(t) => times.push(t.as_secs_f64() * 1000.0),
            None => failures += 1,
        }
    }
    times.sort_by(f64::total_cmp);
    let median = times.get(times.len() / 2).copied().unwrap_or(f64::NAN);
    let (min, max) = (
        times.first().copied().unwrap_or(f64::NAN),
        times.last().copied().unwrap_or(f64::NAN),
    );
    if a.json {
        println!(
            "{}",
            serde_json::json!({"mode": "startup", "runs": times.len(), "failures": failures,
                "median_ms": median, "min_ms": min, "max_ms": max})
        );
    } else {
        println!(
            "startup: {} runs, median {median:.1} ms (min {min:.1}, max {max:.1}), {failures} failed",
            times.len()
        );
    }
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
        // The bridge binds the delivery id to the body (`{id}:sha256:{hash}`); the records
        // know the delivery id.
        let msg_id = h("Nats-Msg-Id");
        let delivery = msg_id
            .split_once(":sha256:")
            .map_or(msg_id.as_str(), |(d, _)| d)
            .to_owned();
        let e = ids.entry(delivery).or_insert((h("ce-id"), 0));
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

#[cfg(test)]
mod tests {
    use super::mock_fault;

    #[test]
    fn the_mock_vx_plays_the_error_a_request_id_asks_for_and_only_errors() {
        let id = |tail: &str| format!("00000000-0000-4000-8000-fa17{tail}");
        assert_eq!(mock_fault(&id("00001404")).map(|c| c.as_u16()), Some(404));
        assert_eq!(mock_fault(&id("abcde503")).map(|c| c.as_u16()), Some(503));
        assert_eq!(mock_fault(&id("00001200")), None);
        assert_eq!(mock_fault(&id("00001302")), None);
        assert_eq!(mock_fault(&id("0001404")), None);
        assert_eq!(mock_fault("4ed2ec66-9471-415d-99ce-7bd1742fc2b8"), None);
    }
}
