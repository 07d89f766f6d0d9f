//! `[status]`: the status/result request-reply service (queue group, reply cache).

use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::{reject_if, ConfigError};

/// `[status]`
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct StatusConfig {
    /// Serve `{prefix}.status.get` and `{prefix}.result.get`.
    pub enabled: bool,
    /// Queue group the endpoints join, so replicas share requests.
    pub queue_group: String,
    /// How long a non-terminal reply is cached.
    #[serde(with = "humantime_serde")]
    pub cache_ttl: Duration,
    /// How long a terminal reply (COMPLETED, PASS, FAIL) is cached.
    #[serde(with = "humantime_serde")]
    pub terminal_cache_ttl: Duration,
    /// Most cached replies.
    pub cache_max_entries: u64,
}

impl StatusConfig {
    /// Checks the service's keys (when it is enabled); names the first bad key.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let st = self;
        reject_if(
            st.queue_group.is_empty() || st.queue_group.contains(char::is_whitespace),
            "status.queue_group",
            "must be one non-empty token",
        )?;
        reject_if(
            st.cache_max_entries == 0,
            "status.cache_max_entries",
            "must be at least 1",
        )?;
        Ok(())
    }
}
