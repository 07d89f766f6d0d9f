//! `vx_bridge_nats_server_info`, the one metric rendered by hand: its `version` label is not a
//! closed set, and after the server is upgraded under us the scrape must show the new version
//! only, which the `metrics` facade cannot do (it never removes a series).

/// `vx_bridge_nats_server_info{version, support} 1`: the NATS server the client is connected to
/// (its `INFO`). Rendered here rather than through the `metrics` facade, which cannot remove a
/// series: after the server is upgraded under us, the scrape must show the new version only.
#[derive(Debug, Default)]
pub struct ServerInfoGauge {
    /// `(version label, support label)` of the last server seen; `None` before the first connect.
    current: std::sync::Mutex<Option<(String, &'static str)>>,
}

impl ServerInfoGauge {
    /// No server seen yet (the metric is absent).
    pub fn new() -> Self {
        Self::default()
    }

    /// Records the server's version and support labels (from
    /// [`crate::nats::version::ServerVersion`], so both are plain `[0-9A-Za-z.-_]`).
    pub fn set(&self, version: String, support: &'static str) {
        let mut cur = self.current.lock().unwrap_or_else(|e| e.into_inner());
        *cur = Some((version, support));
    }

    /// The Prometheus text lines (empty before the first connect).
    pub fn render(&self) -> String {
        let cur = self.current.lock().unwrap_or_else(|e| e.into_inner());
        match &*cur {
            None => String::new(),
            Some((version, support)) => format!(
                "# HELP vx_bridge_nats_server_info Version of the NATS server connected to; support: ok, data_loss, unsupported.\n\
                 # TYPE vx_bridge_nats_server_info gauge\n\
                 vx_bridge_nats_server_info{{version=\"{version}\",support=\"{support}\"}} 1\n"
            ),
        }
    }
}
