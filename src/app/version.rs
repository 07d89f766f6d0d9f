//! The NATS server's version, as the client last saw it in `INFO`: logged (a warning for a
//! data-loss release, an unsupported one, and 2.9) and exported as `vx_bridge_nats_server_info`
//! after every (re)connect. It reads the client's state only; it must not publish or subscribe.

use std::sync::Arc;
use std::time::Duration;

use tokio_util::sync::CancellationToken;

use crate::nats::version::ServerVersion;
use crate::telemetry::ServerInfoGauge;

/// How often the server's `INFO` is looked at (a local read: async-nats keeps the last `INFO`).
const VERSION_CHECK: Duration = Duration::from_secs(1);

/// The NATS server's version as last seen, and its gauge.
pub(super) struct ServerVersionWatch {
    client: async_nats::Client,
    pub(super) gauge: ServerInfoGauge,
    /// The `INFO` version string last reported.
    seen: std::sync::Mutex<Option<String>>,
}

impl ServerVersionWatch {
    pub(super) fn new(client: async_nats::Client) -> Self {
        Self {
            client,
            gauge: ServerInfoGauge::new(),
            seen: std::sync::Mutex::new(None),
        }
    }

    /// Reports the server's version when it differs from the last one seen (the first connect, a
    /// reconnect to another server, or the server upgraded under us).
    pub(super) fn refresh(&self) {
        let Some(info) = self.client.try_server_info() else {
            return;
        };
        let mut seen = self.seen.lock().unwrap_or_else(|e| e.into_inner());
        if seen.as_deref() == Some(info.version.as_str()) {
            return;
        }
        report_server_version(
            &ServerVersion::parse(&info.version),
            &info.server_name,
            &self.gauge,
        );
        *seen = Some(info.version);
    }
}

/// Looks at the server's version every [`VERSION_CHECK`] (and `/metrics` on every scrape).
pub(super) async fn watch_server_version(
    watch: Arc<ServerVersionWatch>,
    shutdown: CancellationToken,
) {
    loop {
        watch.refresh();
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = tokio::time::sleep(VERSION_CHECK) => {}
        }
    }
}

/// Logs and exports one server version (a warning for a data-loss release, an unsupported one,
/// and 2.9), in one place.
fn report_server_version(version: &ServerVersion, server_name: &str, gauge: &ServerInfoGauge) {
    let support = version.support();
    let caps = version.capabilities();
    let label = version.label();
    gauge.set(label.clone(), support.label());
    match version.warning() {
        Some(warning) => tracing::warn!(
            target: "vx_bridge::nats",
            version = %label,
            support = support.label(),
            server = %server_name,
            "{warning}"
        ),
        None => tracing::info!(
            target: "vx_bridge::nats",
            version = %label,
            support = support.label(),
            server = %server_name,
            message_ttl = caps.message_ttl,
            message_schedules = caps.message_schedules,
            "NATS server version"
        ),
    }
}
