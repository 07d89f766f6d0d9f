//! `[upstream]`: the VX API client's base URL, credentials (static token or OAuth), deadlines,
//! retries and circuit breaker. Secret files are read by `app::prepare`, not here.

use std::path::PathBuf;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::{reject_if, ConfigError};
use crate::secret::Secret;

/// `[upstream]`
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct UpstreamConfig {
    /// Base URL of the VX API.
    pub base_url: String,
    /// Static bearer token (instead of OAuth).
    pub token: Option<Secret>,
    /// Static bearer token, read from a file.
    pub token_file: Option<PathBuf>,
    /// OAuth2 client credentials.
    pub oauth: OAuthConfig,
    /// Proxy for every call to the VX API and its token endpoint, e.g. `http://proxy:3128`;
    /// unset: none. `HTTP_PROXY`, `HTTPS_PROXY` and `ALL_PROXY` in the environment are ignored.
    pub proxy: Option<String>,
    /// Path for a lookup by email, with `{email}` replaced (URL-encoded); unset disables it.
    pub email_lookup_path: Option<String>,
    /// Total time for one lookup, retries included; keep it under requesters' timeout (10 s).
    #[serde(with = "humantime_serde")]
    pub timeout: Duration,
    /// Time to establish a connection.
    #[serde(with = "humantime_serde")]
    pub connect_timeout: Duration,
    /// Retries after the first attempt (connection errors, 429, 5xx).
    pub max_retries: u32,
    /// Upstream calls at once.
    pub max_concurrency: usize,
    /// Consecutive failures that open the circuit.
    pub circuit_failure_threshold: u32,
    /// How long the circuit stays open before a probe.
    #[serde(with = "humantime_serde")]
    pub circuit_open_for: Duration,
}

/// `[upstream.oauth]`
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct OAuthConfig {
    /// Token endpoint.
    pub token_url: String,
    /// OAuth client id; empty disables OAuth.
    pub client_id: String,
    /// OAuth client secret.
    pub client_secret: Option<Secret>,
    /// OAuth client secret, read from a file.
    pub client_secret_file: Option<PathBuf>,
    /// Audience sent with the token request.
    pub audience: String,
}

impl UpstreamConfig {
    /// Checks the client's keys (when the status service is enabled); names the first bad key.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let u = self;
        reject_if(
            !(u.base_url.starts_with("https://") || u.base_url.starts_with("http://")),
            "upstream.base_url",
            "must be an http(s) URL",
        )?;
        reject_if(
            u.timeout.is_zero() || u.timeout >= Duration::from_secs(10),
            "upstream.timeout",
            "must be above 0 and under 10s, the requesters' default timeout",
        )?;
        reject_if(
            u.connect_timeout.is_zero() || u.connect_timeout > u.timeout,
            "upstream.connect_timeout",
            "must be above 0 and at most upstream.timeout",
        )?;
        reject_if(
            u.max_concurrency == 0,
            "upstream.max_concurrency",
            "must be at least 1",
        )?;
        reject_if(
            u.circuit_failure_threshold == 0,
            "upstream.circuit_failure_threshold",
            "must be at least 1",
        )?;
        reject_if(
            u.token.is_some() && u.token_file.is_some(),
            "upstream.token_file",
            "set either upstream.token or upstream.token_file, not both",
        )?;
        let o = &u.oauth;
        let has_static = u.token.is_some() || u.token_file.is_some();
        let has_oauth = !o.client_id.is_empty();
        reject_if(
            has_static && has_oauth,
            "upstream.oauth.client_id",
            "set either a static upstream.token or OAuth client credentials, not both",
        )?;
        reject_if(!has_static && !has_oauth, "upstream.oauth.client_id",
                "the status service needs upstream.oauth.client_id (with a client secret) or upstream.token; or set status.enabled = false")?;
        if has_oauth {
            reject_if(o.client_secret.is_some() == o.client_secret_file.is_some(), "upstream.oauth.client_secret",
                    "set exactly one of upstream.oauth.client_secret and upstream.oauth.client_secret_file")?;
            reject_if(
                !(o.token_url.starts_with("https://") || o.token_url.starts_with("http://")),
                "upstream.oauth.token_url",
                "must be an http(s) URL",
            )?;
        }
        if let Some(p) = &u.proxy {
            reject_if(
                !(p.starts_with("http://") || p.starts_with("https://")),
                "upstream.proxy",
                "must be an http(s) URL, e.g. http://proxy:3128",
            )?;
        }
        if let Some(p) = &u.email_lookup_path {
            reject_if(
                !p.starts_with('/') || !p.contains("{email}"),
                "upstream.email_lookup_path",
                "must start with `/` and contain `{email}`",
            )?;
        }
        Ok(())
    }
}
