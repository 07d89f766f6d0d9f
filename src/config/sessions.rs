//! `[sessions]`: the session view's JetStream KV bucket.

use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::{reject_if, validate_name, ConfigError, StreamConfig};

/// `[sessions]`: the session view (see `crate::sessions`).
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct SessionsConfig {
    /// Project the event stream into the bucket (every replica with this on shares the work).
    pub enabled: bool,
    /// KV bucket name; its stream is `KV_<bucket>`.
    pub bucket: String,
    /// Create or update the bucket at start; when false, check that it exists (unready until it does).
    pub create: bool,
    /// Replicas of the bucket; unset means `nats.stream.replicas`.
    pub replicas: Option<usize>,
    /// A session not updated for this long leaves the view; `0s` keeps sessions without an age limit.
    #[serde(with = "humantime_serde")]
    pub max_age: Duration,
    /// Revisions kept per session (1 to 64).
    pub history: i64,
}

impl SessionsConfig {
    /// Checks the bucket's keys (when the view is enabled); names the first bad key.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let s = self;
        validate_name("sessions.bucket", &s.bucket)?;
        if let Some(r) = s.replicas {
            reject_if(!(1..=5).contains(&r), "sessions.replicas", "must be 1 to 5")?;
        }
        reject_if(
            !(1..=64).contains(&s.history),
            "sessions.history",
            "must be 1 to 64 (the JetStream KV limit)",
        )?;
        Ok(())
    }

    /// The bucket's replicas: `sessions.replicas`, else the stream's.
    pub fn replicas_or(&self, stream: &StreamConfig) -> usize {
        self.replicas.unwrap_or(stream.replicas)
    }
}
