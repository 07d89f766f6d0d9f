//! `status`: drives `{prefix}.status.get` (or any subject) over NATS request-reply, timed, or
//! as one burst of identical lookups (`--burst`).

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;

use crate::stats::Stats;

#[derive(clap::Args)]
pub(crate) struct StatusArgs {
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
    /// Take the `ids` request_ids from this stream's `{prefix}.completed.pass` events (the
    /// first ones stored) instead of new ones: sessions the session view holds as terminal.
    #[arg(long)]
    ids_from_stream: Option<String>,
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

pub(crate) async fn run(a: StatusArgs) -> anyhow::Result<()> {
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
    let ids: Arc<Vec<Bytes>> = Arc::new(match &a.ids_from_stream {
        Some(stream) => {
            let filter = format!("{}.completed.pass", a.prefix);
            terminal_ids(&client, stream, &filter, a.ids)
                .await?
                .iter()
                .map(|id| Bytes::from(status_request(id)))
                .collect()
        }
        None => (0..a.ids)
            .map(|_| Bytes::from(status_request(&uuid::Uuid::new_v4().to_string())))
            .collect(),
    });
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

/// The request_ids (`ce-subject`) of the first `n` events on `subject` in `stream`.
async fn terminal_ids(
    client: &async_nats::Client,
    stream: &str,
    subject: &str,
    n: usize,
) -> anyhow::Result<Vec<String>> {
    use futures::StreamExt as _;
    let js = async_nats::jetstream::new(client.clone());
    let consumer = js
        .get_stream(stream)
        .await?
        .create_consumer(async_nats::jetstream::consumer::pull::OrderedConfig {
            headers_only: true,
            filter_subject: subject.to_owned(),
            ..Default::default()
        })
        .await?;
    let mut messages = consumer.messages().await?;
    let mut ids = Vec::with_capacity(n);
    while ids.len() < n {
        let Ok(Some(msg)) = tokio::time::timeout(Duration::from_secs(5), messages.next()).await
        else {
            anyhow::bail!("{stream} has only {} events on {subject}", ids.len());
        };
        let msg = msg?;
        if let Some(id) = msg.headers.as_ref().and_then(|h| h.get("ce-subject")) {
            ids.push(id.as_str().to_owned());
        }
    }
    Ok(ids)
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
