//! `jspub`: the raw JetStream baseline: the event messages the bridge would publish, each with a
//! unique `Nats-Msg-Id`, with a fixed number of PubAcks in flight. Touches no HTTP.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use vx_bridge::auth::hmac::sign_headers;
use vx_bridge::config::{HmacConfig, HmacScheme};
use vx_bridge::secret::Secret;

use crate::stats::Stats;
use crate::{SEED, SEED_ID};

#[derive(clap::Args)]
pub(crate) struct JsPubArgs {
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

pub(crate) async fn run(a: JsPubArgs) -> anyhow::Result<()> {
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
