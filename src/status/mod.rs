//! The status and result request-reply service (`{prefix}.status.get`, `{prefix}.result.get`).
//!
//! Not built yet: `status.enabled = true` is refused by config validation until it is.

use tokio_util::sync::CancellationToken;

use crate::config::Config;

/// A running status service.
#[derive(Debug)]
pub struct StatusHandle;

impl StatusHandle {
    /// Stops the endpoints.
    pub async fn stop(self) {}
}

/// Starts the service.
pub async fn start(
    _config: &Config,
    _client: async_nats::Client,
    _shutdown: CancellationToken,
) -> anyhow::Result<StatusHandle> {
    anyhow::bail!("the status service is not available in this build (set status.enabled = false)")
}
