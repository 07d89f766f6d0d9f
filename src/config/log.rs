//! `[log]`: log level and format, and the OTLP trace export.

use serde::{Deserialize, Serialize};

use super::{reject_if, ConfigError};

/// Log output format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    /// One JSON object per line.
    Json,
    /// Human-readable text.
    Text,
}

/// `[log]`
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct LogConfig {
    /// Level or `tracing` filter, e.g. `info` or `vx_bridge=debug,info`.
    pub level: String,
    /// `json` or `text`.
    pub format: LogFormat,
    /// OTLP/HTTP traces endpoint, e.g. `http://otel-collector:4318/v1/traces`; unset: no export.
    /// Needs a binary built with the `otlp` cargo feature.
    pub otlp_endpoint: Option<String>,
    /// `service.name` of exported traces.
    pub service_name: String,
}

impl LogConfig {
    /// Checks the level filter.
    pub fn validate(&self) -> Result<(), ConfigError> {
        reject_if(
            tracing_subscriber::EnvFilter::try_new(&self.level).is_err(),
            "log.level",
            "is not a level or tracing filter",
        )?;
        Ok(())
    }
}
