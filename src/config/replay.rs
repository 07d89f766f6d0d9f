//! `[replay]`: where `vx-bridge replay` keeps its markers (one per replayed rejected message).
//! Only holds and checks the values; the bucket is created by `replay` itself.

use serde::{Deserialize, Serialize};

use super::{validate_name, ConfigError};

/// `[replay]`: see `crate::replay`.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct ReplayConfig {
    /// KV bucket of the markers (its stream is `KV_<bucket>`); replicas as `nats.stream`.
    pub bucket: String,
}

impl ReplayConfig {
    /// Checks the bucket name.
    pub fn validate(&self) -> Result<(), ConfigError> {
        validate_name("replay.bucket", &self.bucket)
    }
}
