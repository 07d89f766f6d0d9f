//! `[events]`, `[keys]` and `[retention]`: how personal data travels on the bus (`events.pii`),
//! where the per-session data keys live and which KEKs wrap them (`keys.*`), and how long the
//! keys, hence the personal data, stay readable (`retention.pii`). Only holds and checks the
//! values: the KEK file is read by `app::prepare` (`crate::pii::KekRing`), never here.

use std::path::PathBuf;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::{reject_if, validate_name, ConfigError};

/// How the VX body, the personal data, travels on the bus.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum PiiMode {
    /// As `result_encrypted`, a JWE under the session's data key (the default).
    Encrypted,
    /// Unchanged under `result`, as before (for a bus that is itself a PII zone): a warning at start.
    Clear,
    /// Not at all: consumers get the decision fields only; `result.get` asks VX.
    Omitted,
}

impl PiiMode {
    /// The value as written in the configuration.
    pub fn as_str(self) -> &'static str {
        match self {
            PiiMode::Encrypted => "encrypted",
            PiiMode::Clear => "clear",
            PiiMode::Omitted => "omitted",
        }
    }
}

/// `[events]`: what the published events carry.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct EventsConfig {
    /// `encrypted` (default), `clear` or `omitted`.
    pub pii: PiiMode,
}

/// `[keys]`: the per-session data keys and the KEKs that wrap them.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct KeysConfig {
    /// KV bucket of the wrapped data keys (its stream is `KV_<bucket>`); one key per session.
    pub bucket: String,
    /// The KEK file: one `id:base64` (32 bytes) per line; the first wraps, all unwrap. Required
    /// with `events.pii = "encrypted"` where events are written or results read.
    pub kek_file: Option<PathBuf>,
    /// Replicas of the bucket; unset means `nats.stream.replicas`.
    pub replicas: Option<usize>,
    /// Create or update the bucket when first used; when false, it must exist.
    pub create: bool,
}

/// `[retention]`: how long personal data stays readable.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct RetentionConfig {
    /// A data key lives this long from its creation (the keys bucket's `max_age`); then every
    /// copy of the session's personal data on the bus is unreadable at once.
    #[serde(with = "humantime_serde")]
    pub pii: Duration,
}

impl KeysConfig {
    /// Checks the bucket's keys; names the first bad key.
    pub fn validate(&self) -> Result<(), ConfigError> {
        validate_name("keys.bucket", &self.bucket)?;
        if let Some(r) = self.replicas {
            reject_if(!(1..=5).contains(&r), "keys.replicas", "must be 1 to 5")?;
        }
        if let Some(path) = &self.kek_file {
            reject_if(
                !path.is_file(),
                "keys.kek_file",
                format!("{} is not a readable file", path.display()),
            )?;
        }
        Ok(())
    }
}

impl RetentionConfig {
    /// `retention.pii` must be at least a second (the keys bucket's `max_age`; 0 would keep
    /// keys for ever).
    pub fn validate(&self) -> Result<(), ConfigError> {
        reject_if(
            self.pii < Duration::from_secs(1),
            "retention.pii",
            "must be at least 1s (personal data is kept this long; it cannot be kept for ever)",
        )
    }
}
