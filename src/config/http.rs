//! `[http]`: the listener, the webhook path and the limits of the HTTP server.

use std::net::SocketAddr;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::{reject_if, ConfigError, MAX_PAYLOAD_LIMIT};

/// `[http]`
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct HttpConfig {
    /// Address the HTTP server listens on (webhook, health, metrics).
    pub listen: SocketAddr,
    /// Path that receives VX webhooks.
    pub webhook_path: String,
    /// Largest accepted webhook body, in bytes; larger → 413. Lowered at run time when the NATS
    /// server's `max_payload` could not hold such a body (see `vx_bridge_webhook_body_limit_bytes`).
    pub max_body_bytes: usize,
    /// Bytes of request bodies held before their signature is checked, all requests together;
    /// beyond → 429. Bounds the memory an unauthenticated flood can take.
    pub max_unauthenticated_bytes: usize,
    /// Webhook requests processed at once; more → 429.
    pub max_in_flight: usize,
    /// Time allowed to read a request body; slower → 408.
    #[serde(with = "humantime_serde")]
    pub body_timeout: Duration,
    /// Time allowed to receive a request's headers, from the connection's start or the end of
    /// its previous request; slower → the connection is closed (slowloris).
    #[serde(with = "humantime_serde")]
    pub header_timeout: Duration,
    /// On SIGTERM, how long in-flight requests may take to finish.
    #[serde(with = "humantime_serde")]
    pub shutdown_timeout: Duration,
    /// `Retry-After` seconds sent with 503 and 429.
    pub retry_after_secs: u32,
}

impl HttpConfig {
    /// Checks what the types cannot; names the first bad key.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let h = self;
        reject_if(
            !h.webhook_path.starts_with('/') || h.webhook_path.len() < 2,
            "http.webhook_path",
            "must start with `/` and name a path, e.g. `/webhooks/vx`",
        )?;
        reject_if(
            ["/healthz", "/readyz", "/metrics"].contains(&h.webhook_path.as_str()),
            "http.webhook_path",
            "collides with a health or metrics path",
        )?;
        reject_if(
            h.max_body_bytes == 0 || h.max_body_bytes > MAX_PAYLOAD_LIMIT,
            "http.max_body_bytes",
            "must be 1 to 67108864 (64 MiB, the largest max_payload a NATS server allows)",
        )?;
        reject_if(h.max_unauthenticated_bytes < h.max_body_bytes || u32::try_from(h.max_unauthenticated_bytes).is_err(), "http.max_unauthenticated_bytes",
                "must be at least http.max_body_bytes (else a body of that size could never be read) and below 4 GiB")?;
        reject_if(
            h.max_in_flight == 0,
            "http.max_in_flight",
            "must be at least 1",
        )?;
        reject_if(
            h.header_timeout.is_zero(),
            "http.header_timeout",
            "must be above 0",
        )?;
        Ok(())
    }
}
