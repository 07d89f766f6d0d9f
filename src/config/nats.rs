//! `[nats]`: the NATS connection, its credentials and TLS, the subject prefix and the JetStream
//! stream. Credential files are checked to exist here and read when connecting, not here.

use std::path::PathBuf;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::{reject_if, validate_name, ConfigError};
use crate::secret::Secret;

/// `[nats]`
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct NatsConfig {
    /// Server URL(s), comma-separated, e.g. `nats://a:4222,nats://b:4222`.
    pub url: String,
    /// Connection name shown in the server's monitoring.
    pub name: String,
    /// First subject token(s) of every subject, e.g. `verification`.
    pub subject_prefix: String,
    /// How long to wait for a PubAck before answering 503.
    #[serde(with = "humantime_serde")]
    pub publish_timeout: Duration,
    /// How long a webhook rides through a NATS outage (disconnected, reconnecting, no stream
    /// leader: an error a retry can cure) by retrying its publish with the same `Nats-Msg-Id`,
    /// before answering 503. The answer comes at most `outage_wait + publish_timeout` after the
    /// first attempt. `0` fails fast. `/readyz` is unaffected: it still reports 503 while NATS
    /// is disconnected or the stream is missing.
    #[serde(with = "humantime_serde")]
    pub outage_wait: Duration,
    /// NATS credentials file (JWT + nkey seed).
    pub creds_file: Option<PathBuf>,
    /// File holding an nkey seed (`SU…`).
    pub nkey_seed_file: Option<PathBuf>,
    /// Token authentication.
    pub token: Option<Secret>,
    /// Token authentication, read from a file.
    pub token_file: Option<PathBuf>,
    /// User for user/password authentication.
    pub user: Option<String>,
    /// Password for user/password authentication.
    pub password: Option<Secret>,
    /// Password, read from a file.
    pub password_file: Option<PathBuf>,
    /// TLS to the NATS server.
    pub tls: NatsTlsConfig,
    /// The JetStream stream events are stored in.
    pub stream: StreamConfig,
}

/// `[nats.tls]`
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct NatsTlsConfig {
    /// Require TLS even when the URL is `nats://`.
    pub required: bool,
    /// CA certificate(s) to trust (PEM).
    pub ca_file: Option<PathBuf>,
    /// Client certificate (PEM), for mutual TLS.
    pub cert_file: Option<PathBuf>,
    /// Client key (PEM), for mutual TLS.
    pub key_file: Option<PathBuf>,
}

/// Where JetStream keeps messages.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum StorageKind {
    /// On disk.
    File,
    /// In memory (lost on restart; tests and demos only).
    Memory,
}

/// `[nats.stream]`
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct StreamConfig {
    /// Stream name.
    pub name: String,
    /// Create or update the stream at start; when false, check that it exists and captures our subjects.
    pub create: bool,
    /// Replicas (3 for durability in production).
    pub replicas: usize,
    /// Storage backend.
    pub storage: StorageKind,
    /// Window in which a repeated `Nats-Msg-Id` is recognised as a duplicate.
    #[serde(with = "humantime_serde")]
    pub duplicate_window: Duration,
    /// Oldest message kept; `0s` keeps messages without an age limit.
    #[serde(with = "humantime_serde")]
    pub max_age: Duration,
    /// Largest stream size in bytes; `-1` for no limit.
    pub max_bytes: i64,
}

impl NatsConfig {
    /// Checks the connection, subjects and stream keys; names the first bad key.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let n = self;
        reject_if(
            n.url.split(',').all(|u| u.trim().is_empty()),
            "nats.url",
            "is empty",
        )?;
        validate_prefix(&n.subject_prefix)?;
        reject_if(
            n.publish_timeout.is_zero(),
            "nats.publish_timeout",
            "must be above 0",
        )?;
        reject_if(
            n.token.is_some() && n.token_file.is_some(),
            "nats.token_file",
            "set either nats.token or nats.token_file, not both",
        )?;
        reject_if(
            n.password.is_some() && n.password_file.is_some(),
            "nats.password_file",
            "set either nats.password or nats.password_file, not both",
        )?;
        reject_if(
            (n.password.is_some() || n.password_file.is_some()) && n.user.is_none(),
            "nats.user",
            "a password needs a user",
        )?;
        reject_if(
            n.tls.cert_file.is_some() != n.tls.key_file.is_some(),
            "nats.tls.key_file",
            "nats.tls.cert_file and nats.tls.key_file go together",
        )?;
        for (key, path) in [
            ("nats.creds_file", &n.creds_file),
            ("nats.nkey_seed_file", &n.nkey_seed_file),
            ("nats.token_file", &n.token_file),
            ("nats.password_file", &n.password_file),
            ("nats.tls.ca_file", &n.tls.ca_file),
            ("nats.tls.cert_file", &n.tls.cert_file),
            ("nats.tls.key_file", &n.tls.key_file),
        ] {
            if let Some(p) = path {
                reject_if(
                    !p.is_file(),
                    key,
                    format!("{} is not a readable file", p.display()),
                )?;
            }
        }
        let s = &n.stream;
        validate_name("nats.stream.name", &s.name)?;
        reject_if(
            !(1..=5).contains(&s.replicas),
            "nats.stream.replicas",
            "must be 1 to 5",
        )?;
        reject_if(
            s.duplicate_window.is_zero(),
            "nats.stream.duplicate_window",
            "must be above 0, or retried deliveries would be stored twice",
        )?;
        reject_if(
            !s.max_age.is_zero() && s.max_age < s.duplicate_window,
            "nats.stream.max_age",
            "must be 0 (no limit) or at least nats.stream.duplicate_window",
        )?;
        reject_if(
            s.max_bytes == 0 || s.max_bytes < -1,
            "nats.stream.max_bytes",
            "must be -1 or above 0",
        )?;
        Ok(())
    }
}

/// Subject prefix: one or more tokens of `[A-Za-z0-9_-]`, separated by dots.
fn validate_prefix(prefix: &str) -> Result<(), ConfigError> {
    let ok = !prefix.is_empty()
        && prefix.split('.').all(|t| {
            !t.is_empty()
                && t.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        });
    if ok {
        Ok(())
    } else {
        Err(ConfigError::new(
            "nats.subject_prefix",
            "must be dot-separated tokens of letters, digits, `-` or `_` (no wildcards or spaces)",
        ))
    }
}
