//! `[webhook]`: whether the webhook endpoint runs, how webhooks are authenticated
//! (`[webhook.auth]`, Basic or HMAC), and the user's own result schema (`schema_file`); and the
//! deprecated `[ingress]`. The auth keys are checked with their secrets by `auth`, and the
//! schema file is read and compiled, through `app::prepare`: this module only holds them.

use std::path::PathBuf;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::ConfigError;
use crate::secret::Secret;

/// `[webhook]`
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct WebhookConfig {
    /// Serve the webhook endpoint (health and metrics are always served).
    pub enabled: bool,
    /// A JSON Schema file that replaces the embedded `schemas/vx-result.schema.json` as
    /// today's result schema (webhook bodies, VX API result bodies, `vx-bridge replay`). Unset:
    /// the embedded one. Read once by `app::prepare`.
    pub schema_file: Option<PathBuf>,
    /// Authentication of incoming webhooks.
    pub auth: AuthConfig,
}

/// `webhook.auth.mode`
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum AuthMode {
    /// No authentication: only when set explicitly (tests, demos).
    None,
    /// HTTP Basic authentication.
    Basic,
    /// An HMAC signature header.
    Hmac,
}

/// `[webhook.auth]`
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct AuthConfig {
    /// `none`, `basic` or `hmac`; unset refuses to start.
    pub mode: Option<AuthMode>,
    /// Basic authentication settings.
    pub basic: BasicAuthConfig,
    /// HMAC signature settings.
    pub hmac: HmacConfig,
}

impl AuthConfig {
    /// `mode`, which must be set: there is no default authentication.
    pub fn mode(&self) -> Result<AuthMode, ConfigError> {
        self.mode.ok_or_else(|| {
            ConfigError::new(
                "webhook.auth.mode",
                "no webhook authentication configured: set \"basic\" or \"hmac\" (or \"none\", explicitly, for tests only)",
            )
        })
    }
}

/// `[webhook.auth.basic]`
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct BasicAuthConfig {
    /// Expected user name (unset in the defaults: empty).
    #[serde(default)]
    pub username: String,
    /// Accepted passwords (several during rotation; unset in the defaults: none).
    #[serde(default)]
    pub passwords: Vec<Secret>,
    /// File with one accepted password per line.
    pub passwords_file: Option<PathBuf>,
}

/// `webhook.auth.hmac.scheme`
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum HmacScheme {
    /// Standard Webhooks: `webhook-id`, `webhook-timestamp`, `webhook-signature: v1,<base64>`.
    StandardWebhooks,
    /// Stripe style: `t=<unix>,v1=<hex>` over `<t>.<body>`.
    #[serde(alias = "stripe-style")]
    Stripe,
    /// GitHub style: `sha256=<hex>` over the body.
    Hex,
    /// Everything configurable.
    Generic,
}

/// Hash of the generic scheme.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum HmacAlgorithm {
    /// HMAC-SHA256.
    Sha256,
    /// HMAC-SHA512.
    Sha512,
}

/// Encoding of a signature.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum SignatureEncoding {
    /// Lower- or upper-case hex.
    Hex,
    /// Standard base64 (padding optional).
    Base64,
}

/// `[webhook.auth.hmac]`
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct HmacConfig {
    /// Which signature scheme the sender uses.
    pub scheme: HmacScheme,
    /// Accepted secrets (several during rotation). `whsec_…` secrets are base64-decoded.
    /// Unset in the defaults: none.
    #[serde(default)]
    pub secrets: Vec<Secret>,
    /// File with one accepted secret per line.
    pub secrets_file: Option<PathBuf>,
    /// Largest accepted clock difference for signed timestamps, both directions.
    #[serde(with = "humantime_serde")]
    pub tolerance: Duration,
    /// Signature header; default by scheme (`webhook-signature`, `stripe-signature`, `x-hub-signature-256`).
    pub header: Option<String>,
    /// Prefix before the signature in the header (`hex` default `sha256=`; `generic` default none).
    pub prefix: Option<String>,
    /// `generic`: hash algorithm.
    pub algorithm: HmacAlgorithm,
    /// `generic`: signature encoding.
    pub encoding: SignatureEncoding,
    /// `generic`: header holding a unix timestamp (seconds) that is checked against `tolerance`.
    pub timestamp_header: Option<String>,
    /// `generic`: header holding a delivery id, used for deduplication.
    pub id_header: Option<String>,
    /// `generic`: the signed string; `{body}`, `{timestamp}` and `{id}` are replaced.
    pub signed_template: Option<String>,
}

/// `[ingress]`: deprecated, kept for one release so that existing configurations still start.
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct LegacyIngressConfig {
    /// Deprecated alias of `webhook.enabled`; [`Config::parse`](super::Config::parse) copies it there.
    pub enabled: Option<bool>,
}

impl WebhookConfig {
    /// Checks what can be checked without the secrets: an authentication mode is chosen.
    pub fn validate(&self) -> Result<(), ConfigError> {
        if self.enabled {
            // The rest of `webhook.auth` is checked with its secrets by `app::prepare`.
            self.auth.mode()?;
        }
        Ok(())
    }
}
