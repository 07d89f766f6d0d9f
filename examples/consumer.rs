//! A starter consumer of vx-bridge's events (Rust, async-nats): a durable pull consumer on
//! `{prefix}.completed.>` and `{prefix}.pending`, idempotent handling by `event_id` (a file of
//! handled ids that survives a restart), ack after handling, NAK with delay on a transient
//! failure, `{prefix}.status.get` with its error headers, `{prefix}.watch` for a session it
//! created, and a watch of the session view.
//!
//! `cargo run --example consumer` — configured by env (examples/consumers/README.md). Prints one
//! JSON object per line (`handled`, `duplicate_ignored`, `nak`, `status`, `status_error`, `watch`,
//! `watch_error`, `kv`)
//! so a script can check it (scripts/consumers-check.sh). Touches nothing but its own durable
//! consumer and its store file; it never deletes or edits the stream or the bucket.

use std::collections::HashSet;
use std::io::Write as _;
use std::path::PathBuf;
use std::time::Duration;

use async_nats::jetstream::{self, consumer::pull, consumer::AckPolicy, kv::Operation, AckKind};
use futures::StreamExt as _;
use serde_json::json;
use vx_bridge::contract::{
    ServiceErrorReply, SessionState, StatusReply, VerificationEvent, WatchReply,
    SERVICE_ERROR_CODE_HEADER, SERVICE_ERROR_HEADER,
};

/// The header that says where an event came from (`poll`, `replay`; none for a webhook).
const SOURCE_HEADER: &str = "vx-source";

type Error = Box<dyn std::error::Error + Send + Sync>;

/// Configuration from the environment (same names in every kit).
struct Config {
    url: String,
    prefix: String,
    stream: String,
    durable: String,
    bucket: String,
    store: PathBuf,
    ack_wait: Duration,
    status_id: Option<String>,
    /// A session this service created at VX, to have the bridge watch (`{prefix}.watch`).
    watch_id: Option<String>,
    /// Test hook: exit (code 3) after handling the N-th event, before acking it.
    exit_before_ack: Option<u64>,
    /// Demo hook: the first delivery of the first event fails "transiently" and is NAKed.
    nak_first: bool,
}

fn env(name: &str, default: &str) -> String {
    std::env::var(name).unwrap_or_else(|_| default.to_owned())
}

impl Config {
    fn from_env() -> Result<Config, Error> {
        let durable = env("VX_DURABLE", "example-consumer-rust");
        Ok(Config {
            url: env("NATS_URL", "nats://127.0.0.1:4222"),
            prefix: env("VX_PREFIX", "verification"),
            stream: env("VX_STREAM", "VERIFICATIONS"),
            bucket: env("VX_BUCKET", "VX_SESSIONS"),
            store: env("VX_STORE", &format!("{durable}.handled")).into(),
            ack_wait: Duration::from_millis(env("VX_ACK_WAIT_MS", "30000").parse()?),
            status_id: std::env::var("VX_STATUS_ID").ok().filter(|s| !s.is_empty()),
            watch_id: std::env::var("VX_WATCH_ID").ok().filter(|s| !s.is_empty()),
            exit_before_ack: match std::env::var("VX_EXIT_BEFORE_ACK") {
                Ok(n) if !n.is_empty() => Some(n.parse()?),
                _ => None,
            },
            nak_first: env("VX_NAK_FIRST", "0") == "1",
            durable,
        })
    }
}

fn emit(line: serde_json::Value) {
    println!("{line}");
}

/// The idempotency store: the `event_id`s already handled, one per line, synced before the ack.
/// A real service records the id in the same transaction as its effect (e.g. a table with a
/// unique key on `event_id`), so "handled" and "recorded" cannot part.
struct HandledStore {
    ids: HashSet<String>,
    file: std::fs::File,
}

impl HandledStore {
    fn open(path: &PathBuf) -> Result<HandledStore, Error> {
        let ids = match std::fs::read_to_string(path) {
            Ok(text) => text.lines().map(str::to_owned).collect(),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => HashSet::new(),
            Err(e) => return Err(e.into()),
        };
        let file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)?;
        Ok(HandledStore { ids, file })
    }

    fn contains(&self, event_id: &str) -> bool {
        self.ids.contains(event_id)
    }

    fn record(&mut self, event_id: &str) -> Result<(), Error> {
        writeln!(self.file, "{event_id}")?;
        self.file.sync_data()?;
        self.ids.insert(event_id.to_owned());
        Ok(())
    }
}

/// One request to the status service (`{prefix}.status.get`, `{prefix}.watch`): the reply's
/// payload, or what went wrong as a JSON object. An error reply is told by its
/// `Nats-Service-Error-Code` header (the body says the same).
async fn call(
    client: &async_nats::Client,
    subject: String,
    request_id: &str,
) -> Result<bytes::Bytes, serde_json::Value> {
    let payload = json!({ "request_id": request_id }).to_string();
    let reply = match client.request(subject, payload.into()).await {
        Ok(reply) => reply,
        // No responder (no status service running) or a timeout: retry later.
        Err(e) => return Err(json!({"request_id": request_id, "error": e.to_string()})),
    };
    let header = |name: &str| {
        reply
            .headers
            .as_ref()
            .and_then(|h| h.get(name))
            .map(|v| v.as_str().to_owned())
    };
    if let Some(code) = header(SERVICE_ERROR_CODE_HEADER) {
        let code: u16 = code.parse().unwrap_or(0);
        let body = serde_json::from_slice::<ServiceErrorReply>(&reply.payload).ok();
        return Err(json!({
            "request_id": request_id,
            "code": code,
            "message": header(SERVICE_ERROR_HEADER),
            "body_code": body.map(|b| b.error.code),
            // 400/404: do not retry; 502/503/504: retry later.
            "retryable": matches!(code, 502..=504),
        }));
    }
    Ok(reply.payload)
}

/// Asks `{prefix}.status.get` for a session's current status.
async fn ask_status(client: &async_nats::Client, prefix: &str, request_id: &str) {
    match call(client, format!("{prefix}.status.get"), request_id).await {
        Ok(payload) => match serde_json::from_slice::<StatusReply>(&payload) {
            Ok(status) => emit(json!({ "status": status })),
            Err(e) => {
                emit(json!({"status_error": {"request_id": request_id, "error": e.to_string()}}))
            }
        },
        Err(error) => emit(json!({ "status_error": error })),
    }
}

/// Asks `{prefix}.watch` to watch a session this service created at VX: the bridge polls VX for
/// it until it is terminal, and publishes its result as the same event a webhook would give
/// (header `vx-source: poll`), which the consumer below then handles like any other.
async fn watch(client: &async_nats::Client, prefix: &str, request_id: &str) {
    match call(client, format!("{prefix}.watch"), request_id).await {
        Ok(payload) => match serde_json::from_slice::<WatchReply>(&payload) {
            Ok(reply) => emit(json!({ "watch": reply })),
            Err(e) => {
                emit(json!({"watch_error": {"request_id": request_id, "error": e.to_string()}}))
            }
        },
        Err(error) => emit(json!({ "watch_error": error })),
    }
}

/// Watches the session view: the current value of every key, then each change.
async fn watch_sessions(js: jetstream::Context, bucket: String) -> Result<(), Error> {
    // `watch_with_history` starts with the last value of every key (`watch_all` would only
    // deliver changes made after it started).
    let mut watch = js
        .get_key_value(&bucket)
        .await?
        .watch_with_history(">")
        .await?;
    while let Some(entry) = watch.next().await {
        let entry = entry?;
        if entry.operation != Operation::Put {
            emit(json!({"kv_removed": entry.key}));
            continue;
        }
        match serde_json::from_slice::<SessionState>(&entry.value) {
            Ok(s) => emit(json!({
                "kv": entry.key, "revision": entry.revision, "status": s.status,
                "current_status": s.current_status, "terminal": s.terminal, "source": s.source,
            })),
            Err(e) => eprintln!("{}: not a session state: {e}", entry.key),
        }
    }
    Ok(())
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), Error> {
    let cfg = Config::from_env()?;
    let client = async_nats::connect(&cfg.url).await?;
    let js = jetstream::new(client.clone());

    // Create the durable, or update it to this config if it exists (needs nats-server >= 2.10
    // for several filter subjects). Its position is kept by the server across restarts.
    let stream = js.get_stream(&cfg.stream).await?;
    let consumer = stream
        .create_consumer(pull::Config {
            durable_name: Some(cfg.durable.clone()),
            filter_subjects: vec![
                format!("{}.completed.>", cfg.prefix),
                format!("{}.pending", cfg.prefix),
            ],
            ack_policy: AckPolicy::Explicit,
            ack_wait: cfg.ack_wait,
            max_deliver: 10,
            ..Default::default()
        })
        .await?;
    let mut store = HandledStore::open(&cfg.store)?;
    emit(json!({"ready": {"lang": "rust", "durable": cfg.durable, "known_ids": store.ids.len()}}));

    tokio::spawn(async move {
        if let Err(e) = watch_sessions(js, cfg.bucket).await {
            eprintln!("session view watch ended: {e}");
        }
    });
    if let Some(id) = &cfg.status_id {
        ask_status(&client, &cfg.prefix, id).await;
    }
    if let Some(id) = &cfg.watch_id {
        watch(&client, &cfg.prefix, id).await;
    }

    let mut messages = consumer.messages().await?;
    let mut handled = 0u64;
    let mut nak_pending = cfg.nak_first;
    while let Some(msg) = messages.next().await {
        let msg = msg?;
        let delivered = msg.info().map(|i| i.delivered).unwrap_or(0);
        // Where the event came from: a webhook (no header), the bridge's poll of VX, a replay.
        let source = msg
            .headers
            .as_ref()
            .and_then(|h| h.get(SOURCE_HEADER))
            .map_or("webhook", |v| v.as_str())
            .to_owned();
        let event: VerificationEvent = match serde_json::from_slice(&msg.payload) {
            Ok(event) => event,
            Err(e) => {
                // Not an event this code understands: redelivering will not help.
                emit(json!({"term": msg.subject.as_str(), "error": e.to_string()}));
                msg.ack_with(AckKind::Term).await?;
                continue;
            }
        };
        if store.contains(&event.event_id) {
            // A redelivery (our ack was lost, or we died before it): already done, just ack.
            emit(json!({"duplicate_ignored": event.event_id, "delivered": delivered}));
            msg.ack().await?;
            continue;
        }
        if nak_pending {
            // Where a transient failure goes (a database down, a downstream 503): NAK with a
            // delay, and the server redelivers it then (up to max_deliver times).
            nak_pending = false;
            emit(json!({"nak": event.event_id, "delay_ms": 500}));
            msg.ack_with(AckKind::Nak(Some(Duration::from_millis(500))))
                .await?;
            continue;
        }
        // The handling itself: here, print it and ask the session's current status.
        emit(json!({
            "handled": event.event_id, "request_id": event.request_id,
            "type": event.event_type, "status": event.status, "delivered": delivered,
            "source": source,
        }));
        store.record(&event.event_id)?;
        handled += 1;
        if cfg.exit_before_ack == Some(handled) {
            emit(json!({"exit_before_ack": event.event_id}));
            std::process::exit(3);
        }
        msg.ack().await?;
        ask_status(&client, &cfg.prefix, &event.request_id).await;
    }
    Ok(())
}
