//! A starter consumer of vx-bridge's events (Rust, async-nats): a durable pull consumer on
//! `{prefix}.completed.>` and `{prefix}.pending`, idempotent handling by `event_id` (a file of
//! handled ids that survives a restart), ack after handling, NAK with delay on a transient
//! failure, `{prefix}.status.get` with its error headers, `{prefix}.watch` for a session it
//! created, and a watch of the session view. With `VX_KEK_FILE` (a KEK file) and read access to
//! the keys bucket it is a PII reader: it decrypts `result_encrypted` with
//! [`vx_bridge::pii::open_event`]; without them it works on the decision fields alone. It keeps
//! one file per session (status and the SHA-256 of the body: no PII) and deletes it on
//! `{prefix}.erased`.
//!
//! `cargo run --example consumer` — configured by env (examples/consumers/README.md). Prints one
//! JSON object per line (`handled`, `duplicate_ignored`, `nak`, `status`, `status_error`, `watch`,
//! `watch_error`, `kv`, `pii_reader`, `pii`, `erased`)
//! so a script can check it (scripts/contracts/consumers-check.sh). Touches nothing but its own durable
//! consumer and its store file; it never deletes or edits the stream or the bucket.

use std::collections::HashSet;
use std::io::Write as _;
use std::path::PathBuf;
use std::time::Duration;

use async_nats::jetstream::{self, consumer::pull, consumer::AckPolicy, kv::Operation, AckKind};
use futures::StreamExt as _;
use serde_json::json;
use sha2::Digest as _;
use vx_bridge::contract::{
    ServiceErrorReply, SessionErased, SessionState, StatusReply, VerificationEvent, WatchReply,
    SERVICE_ERROR_CODE_HEADER, SERVICE_ERROR_HEADER,
};
use vx_bridge::pii::{KekRing, KeyStore, OpenError};

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
    /// The PII reader's KEK file (one `id:base64` per line); none: decision fields only.
    kek_file: Option<PathBuf>,
    /// The keys bucket.
    keys_bucket: String,
    /// One file per session (no PII), deleted on `{prefix}.erased`.
    state_dir: PathBuf,
}

fn env(name: &str, default: &str) -> String {
    std::env::var(name).unwrap_or_else(|_| default.to_owned())
}

impl Config {
    fn from_env() -> Result<Config, Error> {
        let durable = env("VX_DURABLE", "example-consumer-rust");
        let store = env("VX_STORE", &format!("{durable}.handled"));
        Ok(Config {
            url: env("NATS_URL", "nats://127.0.0.1:4222"),
            prefix: env("VX_PREFIX", "verification"),
            stream: env("VX_STREAM", "VERIFICATIONS"),
            bucket: env("VX_BUCKET", "VX_SESSIONS"),
            state_dir: env("VX_STATE_DIR", &format!("{store}.sessions")).into(),
            store: store.into(),
            ack_wait: Duration::from_millis(env("VX_ACK_WAIT_MS", "30000").parse()?),
            status_id: std::env::var("VX_STATUS_ID").ok().filter(|s| !s.is_empty()),
            watch_id: std::env::var("VX_WATCH_ID").ok().filter(|s| !s.is_empty()),
            exit_before_ack: match std::env::var("VX_EXIT_BEFORE_ACK") {
                Ok(n) if !n.is_empty() => Some(n.parse()?),
                _ => None,
            },
            nak_first: env("VX_NAK_FIRST", "0") == "1",
            kek_file: std::env::var("VX_KEK_FILE")
                .ok()
                .filter(|s| !s.is_empty())
                .map(PathBuf::from),
            keys_bucket: env("VX_KEYS_BUCKET", "VX_KEYS"),
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

/// The PII reader: the keys bucket, opened with the KEKs of `VX_KEK_FILE`; `None` without a KEK
/// file or without access to the bucket (the kit then works on the decision fields alone).
async fn pii_reader(client: &async_nats::Client, cfg: &Config) -> Option<KeyStore> {
    let Some(path) = &cfg.kek_file else {
        emit(json!({"pii_reader": {"enabled": false, "reason": "no VX_KEK_FILE"}}));
        return None;
    };
    let keks = match KekRing::read(path) {
        Ok(k) => k,
        Err(e) => {
            eprintln!("VX_KEK_FILE: {e}");
            std::process::exit(64);
        }
    };
    let js = jetstream::new(client.clone());
    if let Err(e) = js.get_key_value(&cfg.keys_bucket).await {
        emit(
            json!({"pii_reader": {"enabled": false, "reason": format!("keys bucket {}: {e}", cfg.keys_bucket)}}),
        );
        return None;
    }
    let mut bridge_cfg = vx_bridge::config::Config::default();
    bridge_cfg.keys.bucket = cfg.keys_bucket.clone();
    // A reader never creates or updates the bucket.
    bridge_cfg.keys.create = false;
    emit(json!({"pii_reader": {"enabled": true, "bucket": cfg.keys_bucket, "keks": keks.ids()}}));
    Some(KeyStore::new(client.clone(), &bridge_cfg, Some(keks)))
}

/// How the event's personal data was read, as the kit prints it (never the data itself).
async fn read_pii(
    reader: Option<&KeyStore>,
    event: &VerificationEvent,
    payload: &[u8],
) -> Result<serde_json::Value, Error> {
    if event.erased == Some(true) {
        return Ok(json!({"pii": "erased"}));
    }
    if event.result.is_some() {
        return Ok(json!({"pii": "clear"}));
    }
    if event.result_encrypted.is_none() {
        return Ok(json!({"pii": "omitted"}));
    }
    let Some(reader) = reader else {
        return Ok(json!({"pii": "no-key-access"}));
    };
    Ok(
        match vx_bridge::pii::open_event(Some(reader), payload).await {
            Ok(Some(body)) => {
                // A service would use `body` (the VX body, personal data) here.
                json!({"pii": "decrypted", "bytes": body.len(), "sha256": hex::encode(sha2::Sha256::digest(&body))})
            }
            Ok(None) => json!({"pii": "omitted"}),
            Err(OpenError::Erased) => json!({"pii": "erased"}),
            Err(OpenError::Expired) => json!({"pii": "expired-or-unknown"}),
            Err(OpenError::Keys(e)) if e.is_retryable() => return Err(Box::new(e)),
            Err(e) => json!({"pii": "undecryptable", "error": e.to_string()}),
        },
    )
}

/// Deletes every file this kit keeps about `request_id`; how many there were.
fn erase_session(dir: &std::path::Path, request_id: &str) -> usize {
    let prefix = format!("{}.", request_id.to_ascii_lowercase());
    let mut n = 0;
    for entry in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        if entry.file_name().to_string_lossy().starts_with(&prefix)
            && std::fs::remove_file(entry.path()).is_ok()
        {
            n += 1;
        }
    }
    n
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
                format!("{}.erased", cfg.prefix),
            ],
            ack_policy: AckPolicy::Explicit,
            ack_wait: cfg.ack_wait,
            max_deliver: 10,
            ..Default::default()
        })
        .await?;
    let mut store = HandledStore::open(&cfg.store)?;
    let reader = pii_reader(&client, &cfg).await;
    std::fs::create_dir_all(&cfg.state_dir)?;
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
        if msg.subject.as_str() == format!("{}.erased", cfg.prefix) {
            // A session's personal data was erased: delete what this service kept about it.
            // Idempotent (a redelivery deletes nothing more), so no event_id bookkeeping.
            match serde_json::from_slice::<SessionErased>(&msg.payload) {
                Ok(e) => {
                    let deleted = erase_session(&cfg.state_dir, &e.request_id);
                    emit(
                        json!({"erased": e.request_id, "deleted_files": deleted, "erased_at": e.erased_at, "delivered": delivered}),
                    );
                    msg.ack().await?;
                }
                Err(e) => {
                    emit(json!({"term": msg.subject.as_str(), "error": e.to_string()}));
                    msg.ack_with(AckKind::Term).await?;
                }
            }
            continue;
        }
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
        let mut pii = match read_pii(reader.as_ref(), &event, &msg.payload).await {
            Ok(p) => p,
            Err(e) => {
                // The keys bucket did not answer: like any transient failure, NAK with a delay.
                emit(
                    json!({"nak": event.event_id, "delay_ms": 1000, "error": format!("keys bucket: {e}")}),
                );
                msg.ack_with(AckKind::Nak(Some(Duration::from_secs(1))))
                    .await?;
                continue;
            }
        };
        // The handling itself: here, print it and ask the session's current status.
        emit(json!({
            "handled": event.event_id, "request_id": event.request_id,
            "type": event.event_type, "status": event.status, "delivered": delivered,
            "source": source,
        }));
        pii["event_id"] = json!(event.event_id);
        pii["request_id"] = json!(event.request_id);
        emit(pii.clone());
        let session = event.request_id.to_ascii_lowercase();
        if pii["pii"] == "erased" {
            erase_session(&cfg.state_dir, &session);
        } else {
            let record = json!({"request_id": session, "status": event.status, "type": event.event_type,
                "event_id": event.event_id, "pii": pii["pii"], "sha256": pii["sha256"]});
            std::fs::write(
                cfg.state_dir.join(format!("{session}.json")),
                record.to_string(),
            )?;
        }
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
