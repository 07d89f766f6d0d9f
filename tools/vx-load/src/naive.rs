//! `naive`: the naive-handler baseline (n): what a competent engineer would write
//! first for a webhook, and nothing more. An axum POST handler that checks the Standard Webhooks
//! HMAC, parses the body into a `serde_json::Value`, checks it with `jsonschema`'s `is_valid`
//! against the same `schemas/vx-result.schema.json`, publishes the raw body to JetStream, awaits
//! the PubAck and answers 202. No envelope, headers, dedup id, logs or metrics. It shares no code
//! with the bridge's ingress (only the embedded schema text), so it measures the yardstick, not
//! a variant of the bridge.

use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use async_nats::jetstream;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use base64::Engine as _;
use bytes::Bytes;
use hmac::{Hmac, Mac};
use sha2::Sha256;

use crate::baseline::serve_until;

#[derive(clap::Args)]
pub(crate) struct NaiveArgs {
    /// Address to listen on (loopback).
    #[arg(long, default_value = "127.0.0.1:8091")]
    listen: std::net::SocketAddr,
    /// NATS URL.
    #[arg(long, default_value = "nats://127.0.0.1:4222")]
    nats: String,
    /// Stream to create (file storage) and publish into.
    #[arg(long, default_value = "VXLOAD_NAIVE")]
    stream: String,
    /// Subject every body is published on (the stream captures exactly this one).
    #[arg(long, default_value = "vxload.naive")]
    subject: String,
    /// Standard Webhooks secret (`whsec_` and base64).
    #[arg(long, default_value = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw")]
    secret: String,
    /// Stop after this long.
    #[arg(long, default_value = "120s", value_parser = humantime::parse_duration)]
    duration: Duration,
}

struct Naive {
    key: Vec<u8>,
    schema: jsonschema::Validator,
    js: jetstream::Context,
    subject: String,
}

pub(crate) async fn run(a: NaiveArgs) -> anyhow::Result<()> {
    let key =
        base64::engine::general_purpose::STANDARD.decode(a.secret.trim_start_matches("whsec_"))?;
    let schema_json: serde_json::Value = serde_json::from_str(vx_bridge::schema::VX_RESULT)?;
    let schema = jsonschema::validator_for(&schema_json)?;
    let js = jetstream::new(async_nats::connect(&a.nats).await?);
    js.create_or_update_stream(jetstream::stream::Config {
        name: a.stream,
        subjects: vec![a.subject.clone()],
        storage: jetstream::stream::StorageType::File,
        ..Default::default()
    })
    .await?;
    let state = Arc::new(Naive {
        key,
        schema,
        js,
        subject: a.subject,
    });
    let router = axum::Router::new()
        .route("/{*path}", axum::routing::post(handle))
        .with_state(state);
    serve_until(a.listen, router, a.duration).await
}

async fn handle(State(n): State<Arc<Naive>>, headers: HeaderMap, body: Bytes) -> StatusCode {
    if !signed(&n.key, &headers, &body) {
        return StatusCode::UNAUTHORIZED;
    }
    let Ok(value) = serde_json::from_slice::<serde_json::Value>(&body) else {
        return StatusCode::BAD_REQUEST;
    };
    if !n.schema.is_valid(&value) {
        return StatusCode::UNPROCESSABLE_ENTITY;
    }
    match n.js.publish(n.subject.clone(), body).await {
        Ok(ack) => match ack.await {
            Ok(_) => StatusCode::ACCEPTED,
            Err(_) => StatusCode::SERVICE_UNAVAILABLE,
        },
        Err(_) => StatusCode::SERVICE_UNAVAILABLE,
    }
}

/// Standard Webhooks: `v1,<base64 HMAC-SHA256 of "{id}.{timestamp}.{body}">` among the
/// `webhook-signature` entries, with a timestamp within 5 minutes.
fn signed(key: &[u8], headers: &HeaderMap, body: &[u8]) -> bool {
    let get = |name: &str| headers.get(name).and_then(|v| v.to_str().ok());
    let (Some(id), Some(ts), Some(sigs)) = (
        get("webhook-id"),
        get("webhook-timestamp"),
        get("webhook-signature"),
    ) else {
        return false;
    };
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64);
    if ts.parse::<i64>().map_or(true, |t| (now - t).abs() > 300) {
        return false;
    }
    let Ok(mut mac) = Hmac::<Sha256>::new_from_slice(key) else {
        return false;
    };
    mac.update(id.as_bytes());
    mac.update(b".");
    mac.update(ts.as_bytes());
    mac.update(b".");
    mac.update(body);
    // verify_slice compares in constant time.
    sigs.split(' ').any(|s| {
        s.strip_prefix("v1,")
            .and_then(|b| base64::engine::general_purpose::STANDARD.decode(b).ok())
            .is_some_and(|sig| mac.clone().verify_slice(&sig).is_ok())
    })
}
