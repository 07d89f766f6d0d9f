//! The operator's side of the session view (`vx-bridge sessions get|rebuild`): reads a key, or
//! runs [`super::rebuild::rebuild`], over a NATS connection the caller made.
//!
//! Must not touch: the projector's consumer, the event stream's messages, or the environment
//! (the CLI in `main` reads it and passes the [`Config`]).

use async_nats::jetstream::{self, kv};

use super::rebuild::RebuildReport;
use super::ViewError;
use crate::config::Config;
use crate::nats::JetStreamFailure;
use crate::nats::Subjects;

fn context(client: &async_nats::Client, config: &Config) -> jetstream::Context {
    jetstream::ContextBuilder::new()
        .timeout(config.nats.publish_timeout)
        .build(client.clone())
}

/// The stored value of `request_id`'s key (any case), as stored; `None` when the view has no
/// state for it (no key, or deleted).
pub async fn get(
    client: &async_nats::Client,
    config: &Config,
    request_id: &str,
) -> Result<Option<String>, ViewError> {
    let js = context(client, config);
    let store =
        js.get_key_value(&config.sessions.bucket)
            .await
            .map_err(JetStreamFailure::during(format!(
                "opening bucket {}",
                config.sessions.bucket
            )))?;
    match store
        .entry(request_id.to_ascii_lowercase())
        .await
        .map_err(JetStreamFailure::during("reading the key"))?
    {
        Some(e) if e.operation == kv::Operation::Put => {
            Ok(Some(String::from_utf8_lossy(&e.value).into_owned()))
        }
        _ => Ok(None),
    }
}

/// Re-projects the event stream into `into` (default: `sessions.bucket`).
pub async fn rebuild(
    client: &async_nats::Client,
    config: &Config,
    into: Option<&str>,
) -> Result<RebuildReport, ViewError> {
    let rejected = Subjects::new(&config.nats.subject_prefix).rejected();
    super::rebuild::rebuild(
        &context(client, config),
        &config.sessions,
        &config.nats.stream,
        &rejected,
        into,
    )
    .await
}
