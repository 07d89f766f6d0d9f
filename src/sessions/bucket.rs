//! The session bucket: the configuration we want for it (`[sessions]`), created or checked at
//! start. It must not read or write keys.

use async_nats::jetstream::{self, kv};

use super::ViewError;
use crate::config::{SessionsConfig, StreamConfig};
use crate::nats::JetStreamFailure;

/// The bucket we want, from `[sessions]`, as the configuration of its stream `KV_<bucket>`
/// (storage follows the event stream's).
pub fn desired_bucket(cfg: &SessionsConfig, stream: &StreamConfig) -> jetstream::stream::Config {
    crate::nats::stream::kv_bucket_stream(
        &cfg.bucket,
        "latest state of every VX session, projected by vx-bridge",
        cfg.history,
        cfg.max_age,
        stream.storage,
        cfg.replicas_or(stream),
    )
}

/// Creates or updates the bucket (`sessions.create = true`), or opens it and fails with
/// [`ViewError::Missing`] when it is not there.
pub async fn ensure_bucket(
    js: &jetstream::Context,
    cfg: &SessionsConfig,
    stream: &StreamConfig,
) -> Result<kv::Store, ViewError> {
    if cfg.create {
        js.create_or_update_stream(desired_bucket(cfg, stream))
            .await
            .map_err(JetStreamFailure::during(format!(
                "creating bucket {}",
                cfg.bucket
            )))?;
    }
    js.get_key_value(&cfg.bucket).await.map_err(|e| {
        if crate::nats::stream::is_missing_bucket(&e) {
            ViewError::Missing(cfg.bucket.clone())
        } else {
            JetStreamFailure::during(format!("opening bucket {}", cfg.bucket))(e).into()
        }
    })
}
