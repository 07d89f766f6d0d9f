//! Configuration: documented defaults → optional TOML file → `VXB_SECTION__KEY` environment,
//! then one validation pass that names the bad key.
//!
//! Every field has a default here and is documented in `config/vx-bridge.example.toml`; a key
//! added here must be added there (a test checks that the sample parses and matches the defaults).
//! Secrets are [`Secret`]s and can come from files (`…_file` keys), which this module does not
//! read: `app::prepare` resolves them once and builds what needs them. This module only parses
//! and checks values; it starts nothing and imports none of the parts it configures.

use std::fmt;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use figment::providers::{Format, Serialized, Toml};
use figment::Figment;
use serde::{Deserialize, Serialize};

use crate::secret::Secret;

/// The largest `max_payload` a NATS server accepts (64 MiB).
pub const MAX_PAYLOAD_LIMIT: usize = 64 * 1024 * 1024;

/// Process exit code for a bad configuration (`EX_USAGE` from sysexits.h).
pub const EXIT_CONFIG: i32 = 64;

/// A configuration error: the key it concerns and what is wrong, on one line.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid config: `{key}`: {message}")]
pub struct ConfigError {
    /// Dotted key, e.g. `nats.stream.replicas`.
    pub key: String,
    /// What is wrong with it (never a secret's value).
    pub message: String,
}

impl ConfigError {
    /// Builds an error for `key`.
    pub fn new(key: impl Into<String>, message: impl fmt::Display) -> Self {
        Self {
            key: key.into(),
            message: message.to_string(),
        }
    }
}

/// The whole configuration.
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    /// HTTP listener and webhook endpoint.
    pub http: HttpConfig,
    /// NATS connection, subjects and stream.
    pub nats: NatsConfig,
    /// The webhook role: whether it runs, and how webhooks are authenticated.
    pub webhook: WebhookConfig,
    /// Deprecated: `ingress.enabled` is now `webhook.enabled` (accepted for one release, with a
    /// warning at start). Never printed by `check-config`.
    #[serde(skip_serializing)]
    pub ingress: LegacyIngressConfig,
    /// The status/result request-reply service.
    pub status: StatusConfig,
    /// The VX API client used by the status service.
    pub upstream: UpstreamConfig,
    /// The session view: the latest state of every session, in a JetStream KV bucket.
    pub sessions: SessionsConfig,
    /// Logging.
    pub log: LogConfig,
}

/// `[http]`
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
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

impl Default for HttpConfig {
    fn default() -> Self {
        Self {
            listen: SocketAddr::from(([0, 0, 0, 0], 8080)),
            webhook_path: "/webhooks/vx".into(),
            // VX bodies are a few KB; 256 KiB leaves room for odd ones.
            max_body_bytes: 256 * 1024,
            max_unauthenticated_bytes: 16 * 1024 * 1024,
            max_in_flight: 1024,
            body_timeout: Duration::from_secs(10),
            header_timeout: Duration::from_secs(10),
            shutdown_timeout: Duration::from_secs(20),
            retry_after_secs: 5,
        }
    }
}

/// `[nats]`
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
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

impl Default for NatsConfig {
    fn default() -> Self {
        Self {
            url: "nats://127.0.0.1:4222".into(),
            name: "vx-bridge".into(),
            subject_prefix: "verification".into(),
            publish_timeout: Duration::from_secs(5),
            outage_wait: Duration::from_secs(5),
            creds_file: None,
            nkey_seed_file: None,
            token: None,
            token_file: None,
            user: None,
            password: None,
            password_file: None,
            tls: NatsTlsConfig::default(),
            stream: StreamConfig::default(),
        }
    }
}

/// `[nats.tls]`
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
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
#[serde(default, deny_unknown_fields)]
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

impl Default for StreamConfig {
    fn default() -> Self {
        Self {
            name: "VERIFICATIONS".into(),
            create: true,
            replicas: 1,
            storage: StorageKind::File,
            duplicate_window: Duration::from_secs(3600),
            max_age: Duration::ZERO,
            max_bytes: -1,
        }
    }
}

/// `[webhook]`
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct WebhookConfig {
    /// Serve the webhook endpoint (health and metrics are always served).
    pub enabled: bool,
    /// Authentication of incoming webhooks.
    pub auth: AuthConfig,
}

impl Default for WebhookConfig {
    fn default() -> Self {
        Self {
            enabled: true,
            auth: AuthConfig::default(),
        }
    }
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
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
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
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct BasicAuthConfig {
    /// Expected user name.
    pub username: String,
    /// Accepted passwords (several during rotation).
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
#[serde(default, deny_unknown_fields)]
pub struct HmacConfig {
    /// Which signature scheme the sender uses.
    pub scheme: HmacScheme,
    /// Accepted secrets (several during rotation). `whsec_…` secrets are base64-decoded.
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

impl Default for HmacConfig {
    fn default() -> Self {
        Self {
            scheme: HmacScheme::StandardWebhooks,
            secrets: Vec::new(),
            secrets_file: None,
            tolerance: Duration::from_secs(300),
            header: None,
            prefix: None,
            algorithm: HmacAlgorithm::Sha256,
            encoding: SignatureEncoding::Hex,
            timestamp_header: None,
            id_header: None,
            signed_template: None,
        }
    }
}

/// `[ingress]`: deprecated, kept for one release so that existing configurations still start.
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct LegacyIngressConfig {
    /// Deprecated alias of `webhook.enabled`; [`Config::parse`] copies it there.
    pub enabled: Option<bool>,
}

/// `[status]`
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
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

impl Default for StatusConfig {
    fn default() -> Self {
        Self {
            enabled: false,
            queue_group: "vx-bridge".into(),
            cache_ttl: Duration::from_secs(2),
            terminal_cache_ttl: Duration::from_secs(300),
            cache_max_entries: 10_000,
        }
    }
}

/// `[sessions]`: the session view (see `crate::sessions`).
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct SessionsConfig {
    /// Project the event stream into the bucket (every replica with this on shares the work).
    pub enabled: bool,
    /// KV bucket name; its stream is `KV_<bucket>`.
    pub bucket: String,
    /// Create or update the bucket at start; when false, check that it exists (unready until it does).
    pub create: bool,
    /// Replicas of the bucket; unset means `nats.stream.replicas`.
    pub replicas: Option<usize>,
    /// A session not updated for this long leaves the view; `0s` keeps sessions without an age limit.
    #[serde(with = "humantime_serde")]
    pub max_age: Duration,
    /// Revisions kept per session (1 to 64).
    pub history: i64,
}

impl Default for SessionsConfig {
    fn default() -> Self {
        Self {
            enabled: true,
            bucket: "VX_SESSIONS".into(),
            create: true,
            replicas: None,
            max_age: Duration::from_secs(30 * 24 * 3600),
            history: 5,
        }
    }
}

impl SessionsConfig {
    /// The bucket's replicas: `sessions.replicas`, else the stream's.
    pub fn replicas_or(&self, stream: &StreamConfig) -> usize {
        self.replicas.unwrap_or(stream.replicas)
    }
}

/// `[upstream]`
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct UpstreamConfig {
    /// Base URL of the VX API.
    pub base_url: String,
    /// Static bearer token (instead of OAuth).
    pub token: Option<Secret>,
    /// Static bearer token, read from a file.
    pub token_file: Option<PathBuf>,
    /// OAuth2 client credentials.
    pub oauth: OAuthConfig,
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

impl Default for UpstreamConfig {
    fn default() -> Self {
        Self {
            base_url: "https://vx.dcams.app".into(),
            token: None,
            token_file: None,
            oauth: OAuthConfig::default(),
            email_lookup_path: None,
            timeout: Duration::from_secs(8),
            connect_timeout: Duration::from_secs(2),
            max_retries: 2,
            max_concurrency: 32,
            circuit_failure_threshold: 5,
            circuit_open_for: Duration::from_secs(30),
        }
    }
}

/// `[upstream.oauth]`
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
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

impl Default for OAuthConfig {
    fn default() -> Self {
        Self {
            token_url: "https://auth.dcams.app/oauth/token".into(),
            client_id: String::new(),
            client_secret: None,
            client_secret_file: None,
            audience: "dcams.app".into(),
        }
    }
}

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
#[serde(default, deny_unknown_fields)]
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

impl Default for LogConfig {
    fn default() -> Self {
        Self {
            level: "info".into(),
            format: LogFormat::Json,
            otlp_endpoint: None,
            service_name: "vx-bridge".into(),
        }
    }
}

impl Config {
    /// Loads defaults, then the TOML file (if any), then `VXB_SECTION__KEY` variables from `env`,
    /// and validates the result. `env` is passed in so that tests need no process-global state.
    pub fn load(
        file: Option<&Path>,
        env: impl IntoIterator<Item = (String, String)>,
    ) -> Result<Config, ConfigError> {
        let config = Self::parse(file, env)?;
        config.validate()?;
        Ok(config)
    }

    /// Like [`Config::load`], but checks only `[nats]`: for the operator commands that only
    /// send requests (`vx-bridge status`, `vx-bridge result`) and need no webhook auth or
    /// upstream credentials.
    pub fn load_for_requests(
        file: Option<&Path>,
        env: impl IntoIterator<Item = (String, String)>,
    ) -> Result<Config, ConfigError> {
        let config = Self::parse(file, env)?;
        config.validate_nats()?;
        Ok(config)
    }

    /// The layers merged, not validated: for commands that need only part of the
    /// configuration (`demo` uses `[nats]` and `[log]`).
    pub fn parse(
        file: Option<&Path>,
        env: impl IntoIterator<Item = (String, String)>,
    ) -> Result<Config, ConfigError> {
        let mut figment = Figment::new();
        if let Some(path) = file {
            if !path.is_file() {
                return Err(ConfigError::new(
                    "--config",
                    format!("{} is not a readable file", path.display()),
                ));
            }
            figment = figment.merge(Toml::file_exact(path));
        }
        let vars: Vec<(String, String)> = env
            .into_iter()
            .filter(|(k, _)| k.starts_with("VXB_") && k != "VXB_CONFIG")
            .collect();
        // Same mapping as figment's `Env::prefixed("VXB_").split("__")`, but over the variables
        // we were handed rather than the process environment.
        let figment = vars.iter().fold(figment, |fig, (k, v)| {
            let key = k["VXB_".len()..].to_ascii_lowercase().replace("__", ".");
            fig.merge(Serialized::default(&key, env_value(v)))
        });
        let mut config: Config = figment.extract().map_err(figment_error)?;
        if let Some(legacy) = config.ingress.enabled {
            let new_key_set = figment.find_value("webhook.enabled").is_ok();
            if new_key_set && legacy != config.webhook.enabled {
                return Err(ConfigError::new(
                    "ingress.enabled",
                    "is the deprecated name of webhook.enabled, which is also set, to a different value: remove ingress.enabled",
                ));
            }
            config.webhook.enabled = legacy;
        }
        Ok(config)
    }

    /// Warnings about deprecated keys in use, to log at start (and print in `check-config`).
    pub fn deprecations(&self) -> Vec<&'static str> {
        let mut out = Vec::new();
        if self.ingress.enabled.is_some() {
            out.push("`ingress.enabled` (VXB_INGRESS__ENABLED) is deprecated and will be removed in the next release: use `webhook.enabled` (VXB_WEBHOOK__ENABLED)");
        }
        out
    }

    /// Checks values that the types alone cannot: names the first bad key.
    pub fn validate(&self) -> Result<(), ConfigError> {
        if tracing_subscriber::EnvFilter::try_new(&self.log.level).is_err() {
            return Err(ConfigError::new(
                "log.level",
                "is not a level or tracing filter",
            ));
        }
        let h = &self.http;
        if !h.webhook_path.starts_with('/') || h.webhook_path.len() < 2 {
            return Err(ConfigError::new(
                "http.webhook_path",
                "must start with `/` and name a path, e.g. `/webhooks/vx`",
            ));
        }
        if ["/healthz", "/readyz", "/metrics"].contains(&h.webhook_path.as_str()) {
            return Err(ConfigError::new(
                "http.webhook_path",
                "collides with a health or metrics path",
            ));
        }
        if h.max_body_bytes == 0 || h.max_body_bytes > MAX_PAYLOAD_LIMIT {
            return Err(ConfigError::new(
                "http.max_body_bytes",
                "must be 1 to 67108864 (64 MiB, the largest max_payload a NATS server allows)",
            ));
        }
        if h.max_unauthenticated_bytes < h.max_body_bytes
            || u32::try_from(h.max_unauthenticated_bytes).is_err()
        {
            return Err(ConfigError::new(
                "http.max_unauthenticated_bytes",
                "must be at least http.max_body_bytes (else a body of that size could never be read) and below 4 GiB",
            ));
        }
        if h.max_in_flight == 0 {
            return Err(ConfigError::new("http.max_in_flight", "must be at least 1"));
        }
        if h.header_timeout.is_zero() {
            return Err(ConfigError::new("http.header_timeout", "must be above 0"));
        }
        self.validate_nats()?;
        if self.webhook.enabled {
            // The rest of `webhook.auth` is checked with its secrets by `app::prepare`.
            self.webhook.auth.mode()?;
        }
        if !self.webhook.enabled && !self.status.enabled {
            return Err(ConfigError::new(
                "webhook.enabled",
                "the webhook endpoint and the status service are both disabled: nothing to run",
            ));
        }
        if self.status.enabled {
            self.validate_status()?;
        }
        if self.sessions.enabled {
            self.validate_sessions()?;
        }
        if tracing_subscriber::EnvFilter::try_new(&self.log.level).is_err() {
            return Err(ConfigError::new(
                "log.level",
                "is not a level or tracing filter",
            ));
        }
        Ok(())
    }

    /// Checks `[nats]` (connection, subjects, stream).
    pub fn validate_nats(&self) -> Result<(), ConfigError> {
        let n = &self.nats;
        if n.url.split(',').all(|u| u.trim().is_empty()) {
            return Err(ConfigError::new("nats.url", "is empty"));
        }
        validate_prefix(&n.subject_prefix)?;
        if n.publish_timeout.is_zero() {
            return Err(ConfigError::new("nats.publish_timeout", "must be above 0"));
        }
        if n.token.is_some() && n.token_file.is_some() {
            return Err(ConfigError::new(
                "nats.token_file",
                "set either nats.token or nats.token_file, not both",
            ));
        }
        if n.password.is_some() && n.password_file.is_some() {
            return Err(ConfigError::new(
                "nats.password_file",
                "set either nats.password or nats.password_file, not both",
            ));
        }
        if (n.password.is_some() || n.password_file.is_some()) && n.user.is_none() {
            return Err(ConfigError::new("nats.user", "a password needs a user"));
        }
        if n.tls.cert_file.is_some() != n.tls.key_file.is_some() {
            return Err(ConfigError::new(
                "nats.tls.key_file",
                "nats.tls.cert_file and nats.tls.key_file go together",
            ));
        }
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
                if !p.is_file() {
                    return Err(ConfigError::new(
                        key,
                        format!("{} is not a readable file", p.display()),
                    ));
                }
            }
        }
        let s = &n.stream;
        validate_name("nats.stream.name", &s.name)?;
        if !(1..=5).contains(&s.replicas) {
            return Err(ConfigError::new("nats.stream.replicas", "must be 1 to 5"));
        }
        if s.duplicate_window.is_zero() {
            return Err(ConfigError::new(
                "nats.stream.duplicate_window",
                "must be above 0, or retried deliveries would be stored twice",
            ));
        }
        if !s.max_age.is_zero() && s.max_age < s.duplicate_window {
            return Err(ConfigError::new(
                "nats.stream.max_age",
                "must be 0 (no limit) or at least nats.stream.duplicate_window",
            ));
        }
        if s.max_bytes == 0 || s.max_bytes < -1 {
            return Err(ConfigError::new(
                "nats.stream.max_bytes",
                "must be -1 or above 0",
            ));
        }
        Ok(())
    }

    fn validate_sessions(&self) -> Result<(), ConfigError> {
        let s = &self.sessions;
        validate_name("sessions.bucket", &s.bucket)?;
        if let Some(r) = s.replicas {
            if !(1..=5).contains(&r) {
                return Err(ConfigError::new("sessions.replicas", "must be 1 to 5"));
            }
        }
        if !(1..=64).contains(&s.history) {
            return Err(ConfigError::new(
                "sessions.history",
                "must be 1 to 64 (the JetStream KV limit)",
            ));
        }
        Ok(())
    }

    fn validate_status(&self) -> Result<(), ConfigError> {
        let st = &self.status;
        if st.queue_group.is_empty() || st.queue_group.contains(char::is_whitespace) {
            return Err(ConfigError::new(
                "status.queue_group",
                "must be one non-empty token",
            ));
        }
        if st.cache_max_entries == 0 {
            return Err(ConfigError::new(
                "status.cache_max_entries",
                "must be at least 1",
            ));
        }
        let u = &self.upstream;
        if !(u.base_url.starts_with("https://") || u.base_url.starts_with("http://")) {
            return Err(ConfigError::new(
                "upstream.base_url",
                "must be an http(s) URL",
            ));
        }
        if u.timeout.is_zero() || u.timeout >= Duration::from_secs(10) {
            return Err(ConfigError::new(
                "upstream.timeout",
                "must be above 0 and under 10s, the requesters' default timeout",
            ));
        }
        if u.connect_timeout.is_zero() || u.connect_timeout > u.timeout {
            return Err(ConfigError::new(
                "upstream.connect_timeout",
                "must be above 0 and at most upstream.timeout",
            ));
        }
        if u.max_concurrency == 0 {
            return Err(ConfigError::new(
                "upstream.max_concurrency",
                "must be at least 1",
            ));
        }
        if u.circuit_failure_threshold == 0 {
            return Err(ConfigError::new(
                "upstream.circuit_failure_threshold",
                "must be at least 1",
            ));
        }
        if u.token.is_some() && u.token_file.is_some() {
            return Err(ConfigError::new(
                "upstream.token_file",
                "set either upstream.token or upstream.token_file, not both",
            ));
        }
        let o = &u.oauth;
        let has_static = u.token.is_some() || u.token_file.is_some();
        let has_oauth = !o.client_id.is_empty();
        if has_static && has_oauth {
            return Err(ConfigError::new(
                "upstream.oauth.client_id",
                "set either a static upstream.token or OAuth client credentials, not both",
            ));
        }
        if !has_static && !has_oauth {
            return Err(ConfigError::new(
                "upstream.oauth.client_id",
                "the status service needs upstream.oauth.client_id (with a client secret) or upstream.token; or set status.enabled = false",
            ));
        }
        if has_oauth {
            if o.client_secret.is_some() == o.client_secret_file.is_some() {
                return Err(ConfigError::new(
                    "upstream.oauth.client_secret",
                    "set exactly one of upstream.oauth.client_secret and upstream.oauth.client_secret_file",
                ));
            }
            if !(o.token_url.starts_with("https://") || o.token_url.starts_with("http://")) {
                return Err(ConfigError::new(
                    "upstream.oauth.token_url",
                    "must be an http(s) URL",
                ));
            }
        }
        if let Some(p) = &u.email_lookup_path {
            if !p.starts_with('/') || !p.contains("{email}") {
                return Err(ConfigError::new(
                    "upstream.email_lookup_path",
                    "must start with `/` and contain `{email}`",
                ));
            }
        }
        Ok(())
    }

    /// The effective configuration as TOML (what `check-config` prints): only the keys that
    /// apply to the chosen `webhook.auth.mode` and `webhook.auth.hmac.scheme`, unset optional
    /// keys as `# key = (unset)` comments, secrets as `[redacted]`. The output parses as TOML.
    pub fn to_redacted_toml(&self) -> String {
        // Through JSON, which keeps unset options (as null) and the fields' order.
        let tree = serde_json::to_string(self)
            .map_err(|e| e.to_string())
            .and_then(|json| serde_json::from_str::<Node>(&json).map_err(|e| e.to_string()));
        let mut tree = match tree {
            Ok(t) => t,
            Err(e) => return format!("# cannot render config: {e}\n"),
        };
        for path in self.inapplicable_keys() {
            tree.remove(path);
        }
        let mut out = String::new();
        tree.render("", &mut out);
        out
    }

    /// Dotted keys that do nothing with this configuration's mode, scheme and roles.
    fn inapplicable_keys(&self) -> Vec<&'static str> {
        if !self.webhook.enabled {
            return vec!["webhook.auth"];
        }
        let mut keys = match self.webhook.auth.mode {
            Some(AuthMode::Hmac) => vec!["webhook.auth.basic"],
            Some(AuthMode::Basic) => return vec!["webhook.auth.hmac"],
            Some(AuthMode::None) => return vec!["webhook.auth.basic", "webhook.auth.hmac"],
            None => vec![],
        };
        const GENERIC_ONLY: [&str; 5] = [
            "webhook.auth.hmac.algorithm",
            "webhook.auth.hmac.encoding",
            "webhook.auth.hmac.timestamp_header",
            "webhook.auth.hmac.id_header",
            "webhook.auth.hmac.signed_template",
        ];
        match self.webhook.auth.hmac.scheme {
            HmacScheme::StandardWebhooks => {
                keys.extend(GENERIC_ONLY);
                keys.extend(["webhook.auth.hmac.header", "webhook.auth.hmac.prefix"]);
            }
            HmacScheme::Stripe => {
                keys.extend(GENERIC_ONLY);
                keys.push("webhook.auth.hmac.prefix");
            }
            // No timestamp: nothing to hold against the tolerance.
            HmacScheme::Hex => {
                keys.extend(GENERIC_ONLY);
                keys.push("webhook.auth.hmac.tolerance");
            }
            HmacScheme::Generic => {}
        }
        keys
    }
}

/// The configuration as an ordered tree, for [`Config::to_redacted_toml`]: unlike
/// `toml::Value` it keeps unset keys, and unlike `serde_json::Value` (without its
/// `preserve_order` feature) the fields' order.
enum Node {
    Unset,
    Value(toml::Value),
    Table(Vec<(String, Node)>),
}

impl Node {
    fn remove(&mut self, dotted: &str) {
        let (head, rest) = match dotted.split_once('.') {
            Some((h, r)) => (h, Some(r)),
            None => (dotted, None),
        };
        if let Node::Table(entries) = self {
            match rest {
                None => entries.retain(|(k, _)| k != head),
                Some(rest) => {
                    for (k, v) in entries.iter_mut() {
                        if k == head {
                            v.remove(rest);
                        }
                    }
                }
            }
        }
    }

    /// Writes the table at `path`: its keys, then its sub-tables.
    fn render(&self, path: &str, out: &mut String) {
        let Node::Table(entries) = self else { return };
        if !path.is_empty() {
            if !out.is_empty() {
                out.push('\n');
            }
            out.push_str(&format!("[{path}]\n"));
        }
        for (k, v) in entries {
            match v {
                Node::Unset => out.push_str(&format!("# {k} = (unset)\n")),
                Node::Value(v) => out.push_str(&format!("{k} = {v}\n")),
                Node::Table(_) => {}
            }
        }
        for (k, v) in entries {
            if let Node::Table(_) = v {
                let sub = if path.is_empty() {
                    k.clone()
                } else {
                    format!("{path}.{k}")
                };
                v.render(&sub, out);
            }
        }
    }
}

impl<'de> Deserialize<'de> for Node {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> serde::de::Visitor<'de> for V {
            type Value = Node;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a configuration value")
            }
            fn visit_unit<E>(self) -> Result<Node, E> {
                Ok(Node::Unset)
            }
            fn visit_bool<E>(self, v: bool) -> Result<Node, E> {
                Ok(Node::Value(v.into()))
            }
            fn visit_i64<E>(self, v: i64) -> Result<Node, E> {
                Ok(Node::Value(v.into()))
            }
            fn visit_u64<E: serde::de::Error>(self, v: u64) -> Result<Node, E> {
                i64::try_from(v)
                    .map(|v| Node::Value(v.into()))
                    .map_err(|_| E::custom("integer too large for TOML"))
            }
            fn visit_f64<E>(self, v: f64) -> Result<Node, E> {
                Ok(Node::Value(v.into()))
            }
            fn visit_str<E>(self, v: &str) -> Result<Node, E> {
                Ok(Node::Value(v.into()))
            }
            fn visit_seq<A: serde::de::SeqAccess<'de>>(self, mut seq: A) -> Result<Node, A::Error> {
                let mut items = Vec::new();
                while let Some(item) = seq.next_element::<toml::Value>()? {
                    items.push(item);
                }
                Ok(Node::Value(toml::Value::Array(items)))
            }
            fn visit_map<A: serde::de::MapAccess<'de>>(self, mut map: A) -> Result<Node, A::Error> {
                let mut entries = Vec::new();
                while let Some((k, v)) = map.next_entry::<String, Node>()? {
                    entries.push((k, v));
                }
                Ok(Node::Table(entries))
            }
        }
        d.deserialize_any(V)
    }
}

/// An environment value as figment would read it: TOML-like scalars and arrays, else a string.
fn env_value(raw: &str) -> figment::value::Value {
    use figment::value::Value;
    let parsed: Value = raw.parse().unwrap_or_else(|_| Value::from(raw.to_owned()));
    parsed
}

/// Subject prefix: one or more tokens of `[A-Za-z0-9_-]`, separated by dots.
/// A JetStream stream or bucket name: letters, digits, `-` or `_`.
fn validate_name(key: &str, name: &str) -> Result<(), ConfigError> {
    if name.is_empty()
        || !name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
    {
        return Err(ConfigError::new(key, "must be letters, digits, `-` or `_`"));
    }
    Ok(())
}

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

/// Turns figment's error into ours, naming the first bad key.
fn figment_error(err: figment::Error) -> ConfigError {
    use figment::error::Kind;
    let first = err.into_iter().next();
    let Some(e) = first else {
        return ConfigError::new("(config)", "unreadable configuration");
    };
    let mut key = e.path.join(".");
    let message = match &e.kind {
        Kind::UnknownField(field, _) => {
            if e.path.last() != Some(field) {
                key = if key.is_empty() {
                    field.clone()
                } else {
                    format!("{key}.{field}")
                };
            }
            "unknown key".to_owned()
        }
        Kind::InvalidType(actual, expected) | Kind::InvalidValue(actual, expected) => {
            format!(
                "expected {}, found {}",
                expected_in_words(expected),
                kind_of(actual)
            )
        }
        Kind::UnknownVariant(_, expected) => {
            let documented: Vec<&str> = expected
                .iter()
                .copied()
                .filter(|v| !UNDOCUMENTED_ALIASES.contains(v))
                .collect();
            format!("must be one of: {}", documented.join(", "))
        }
        Kind::Message(m) => {
            // Messages from parsers (TOML syntax, durations) do not contain secrets we hold.
            m.clone()
        }
        other => other.to_string(),
    };
    if key.is_empty() {
        key = "(config file)".into();
    }
    ConfigError::new(key, message)
}

/// Values serde accepts for compatibility but the documentation does not list: left out of
/// "must be one of" messages.
const UNDOCUMENTED_ALIASES: &[&str] = &["stripe-style"];

/// serde's description of the expected type, in words for a config file's author
/// (`usize` → `a non-negative integer`).
fn expected_in_words(expected: &str) -> &str {
    match expected {
        "u8" | "u16" | "u32" | "u64" | "u128" | "usize" => "a non-negative integer",
        "i8" | "i16" | "i32" | "i64" | "i128" | "isize" => "an integer",
        "f32" | "f64" => "a number",
        "a sequence" => "a list",
        "socket address" => "an address like \"0.0.0.0:8080\"",
        "path string" => "a file path",
        "a duration" => "a duration like \"5s\" or \"500ms\"",
        "option" => "a value",
        other => other,
    }
}

/// Describes a value's type without its content (a wrong-typed secret must not be echoed).
fn kind_of(actual: &figment::error::Actual) -> &'static str {
    use figment::error::Actual;
    match actual {
        Actual::Bool(_) => "a boolean",
        Actual::Signed(n) if *n < 0 => "a negative integer",
        Actual::Unsigned(_) | Actual::Signed(_) => "an integer",
        Actual::Float(_) => "a float",
        Actual::Char(_) | Actual::Str(_) => "a string",
        Actual::Bytes(_) => "bytes",
        Actual::Unit | Actual::Option => "nothing",
        Actual::Seq => "a list",
        Actual::Map => "a table",
        _ => "another type",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SAMPLE: &str = include_str!("../config/vx-bridge.example.toml");

    fn env(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    fn write(text: &str) -> tempfile::NamedTempFile {
        let f = tempfile::NamedTempFile::new().unwrap();
        std::fs::write(f.path(), text).unwrap();
        f
    }

    fn hmac_env() -> Vec<(String, String)> {
        env(&[
            ("VXB_WEBHOOK__AUTH__MODE", "hmac"),
            (
                "VXB_WEBHOOK__AUTH__HMAC__SECRETS",
                "[\"whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw\"]",
            ),
        ])
    }

    /// Every leaf key of `value` (unset options included), as `(table, key)`.
    fn leaf_keys(table: &str, value: &serde_json::Value, out: &mut Vec<(String, String)>) {
        if let serde_json::Value::Object(map) = value {
            for (k, v) in map {
                if v.is_object() {
                    let sub = if table.is_empty() {
                        k.clone()
                    } else {
                        format!("{table}.{k}")
                    };
                    leaf_keys(&sub, v, out);
                } else {
                    out.push((table.to_owned(), k.clone()));
                }
            }
        }
    }

    #[test]
    fn the_sample_config_documents_exactly_the_defaults() {
        let f = write(SAMPLE);
        let sample = Config::parse(Some(f.path()), vec![]).unwrap();
        // Exactly: every field, unset options included, compared as values.
        assert_eq!(
            serde_json::to_value(&sample).unwrap(),
            serde_json::to_value(Config::default()).unwrap()
        );
        assert!(
            sample.deprecations().is_empty(),
            "the sample uses a deprecated key"
        );
        // Every key is in the sample, set to its default or commented out on its own line.
        let mut written = Vec::new();
        let mut table = String::new();
        for line in SAMPLE.lines() {
            if let Some(h) = line.strip_prefix('[').and_then(|l| l.strip_suffix(']')) {
                table = h.to_owned();
            } else if let Some((k, _)) = line.trim_start_matches("# ").split_once(" = ") {
                written.push((table.clone(), k.trim().to_owned()));
            }
        }
        let mut keys = Vec::new();
        leaf_keys(
            "",
            &serde_json::to_value(Config::default()).unwrap(),
            &mut keys,
        );
        for (table, key) in keys {
            assert!(
                written.contains(&(table.clone(), key.clone())),
                "`{table}.{key}` is not in config/vx-bridge.example.toml"
            );
        }
    }

    #[test]
    fn the_bare_sample_is_refused_only_for_the_missing_auth_mode() {
        let f = write(SAMPLE);
        let err = Config::load(Some(f.path()), vec![]).unwrap_err();
        assert_eq!(err.key, "webhook.auth.mode", "{err}");
        assert!(err.message.contains("\"hmac\""), "{err}");
        // What the sample's header tells the user to add is enough.
        Config::load(Some(f.path()), hmac_env()).unwrap();
    }

    #[test]
    fn ingress_enabled_is_a_deprecated_alias_of_webhook_enabled() {
        let status_only = env(&[
            ("VXB_STATUS__ENABLED", "true"),
            ("VXB_UPSTREAM__TOKEN", "t"),
        ]);
        let mut vars = status_only.clone();
        vars.extend(env(&[("VXB_INGRESS__ENABLED", "false")]));
        let c = Config::load(None, vars).unwrap();
        assert!(!c.webhook.enabled);
        assert_eq!(c.deprecations().len(), 1);
        assert!(c.deprecations()[0].contains("webhook.enabled"));
        assert!(!c.to_redacted_toml().contains("[ingress]"));

        let f = write("[webhook]\nenabled = false\n");
        let c = Config::load(Some(f.path()), status_only.clone()).unwrap();
        assert!(!c.webhook.enabled);
        assert!(c.deprecations().is_empty());

        // Both set: agreeing is fine, disagreeing is an error naming the old key.
        let mut vars = status_only.clone();
        vars.extend(env(&[("VXB_INGRESS__ENABLED", "false")]));
        assert!(!Config::load(Some(f.path()), vars).unwrap().webhook.enabled);
        let mut vars = status_only;
        vars.extend(env(&[("VXB_INGRESS__ENABLED", "true")]));
        let err = Config::load(Some(f.path()), vars).unwrap_err();
        assert_eq!(err.key, "ingress.enabled");
        assert!(err.message.contains("webhook.enabled"), "{err}");

        let err = Config::load(None, env(&[("VXB_WEBHOOK__ENABLED", "false")])).unwrap_err();
        assert_eq!(err.key, "webhook.enabled", "{err}");
    }

    #[test]
    fn type_errors_are_in_words_and_list_only_documented_values() {
        let cases = [
            (
                "[nats.stream]\nreplicas = \"three\"\n",
                "expected a non-negative integer, found a string",
            ),
            (
                "[nats.stream]\nreplicas = -1\n",
                "expected a non-negative integer, found a negative integer",
            ),
            (
                "[http]\nmax_in_flight = 1.5\n",
                "expected a non-negative integer, found a float",
            ),
            (
                "[http]\nbody_timeout = 5\n",
                "expected a duration like \"5s\"",
            ),
            (
                "[nats.stream]\nmax_bytes = \"lots\"\n",
                "expected an integer, found a string",
            ),
            (
                "[nats]\ncreds_file = 5\n",
                "expected a file path, found an integer",
            ),
            (
                "[webhook.auth.hmac]\nsecrets = \"k\"\n",
                "expected a list, found a string",
            ),
            (
                "[webhook.auth.hmac]\nscheme = \"md5\"\n",
                "must be one of: standard-webhooks, stripe, hex, generic",
            ),
        ];
        for (file, message) in cases {
            let f = write(file);
            let mode = env(&[("VXB_WEBHOOK__AUTH__MODE", "hmac")]);
            let err = Config::load(Some(f.path()), mode).unwrap_err();
            assert!(err.message.contains(message), "{file}: {err}");
            for rust in ["usize", "u32", "i64", "stripe-style", "sequence"] {
                assert!(!err.message.contains(rust), "{file}: {err}");
            }
        }
        // The alias itself is still accepted.
        let f = write("[webhook.auth.hmac]\nscheme = \"stripe-style\"\n");
        let c = Config::load(Some(f.path()), hmac_env()).unwrap();
        assert_eq!(c.webhook.auth.hmac.scheme, HmacScheme::Stripe);
    }

    /// `[table]` of `check-config`'s output, as (key, value or "(unset)") lines.
    fn printed_table(out: &str, table: &str) -> Option<Vec<String>> {
        let header = format!("[{table}]\n");
        let start = out.find(&header)? + header.len();
        let body = &out[start..];
        let end = body.find("\n[").map_or(body.len(), |i| i + 1);
        Some(
            body[..end]
                .lines()
                .filter(|l| !l.is_empty())
                .map(str::to_owned)
                .collect(),
        )
    }

    #[test]
    fn check_config_output_shows_what_applies_and_the_unset_keys() {
        let mut vars = hmac_env();
        let c = Config::load(None, vars.clone()).unwrap();
        let out = c.to_redacted_toml();
        assert_eq!(
            printed_table(&out, "webhook.auth.hmac").unwrap(),
            [
                "scheme = \"standard-webhooks\"",
                "secrets = [\"[redacted]\"]",
                "# secrets_file = (unset)",
                "tolerance = \"5m\"",
            ]
        );
        assert!(printed_table(&out, "webhook.auth.basic").is_none(), "{out}");
        let nats = printed_table(&out, "nats").unwrap();
        for unset in [
            "# creds_file = (unset)",
            "# token = (unset)",
            "# password_file = (unset)",
        ] {
            assert!(nats.iter().any(|l| l == unset), "{nats:?}");
        }

        vars.extend(env(&[
            ("VXB_WEBHOOK__AUTH__HMAC__SCHEME", "generic"),
            ("VXB_WEBHOOK__AUTH__HMAC__HEADER", "x-sig"),
        ]));
        let out = Config::load(None, vars.clone()).unwrap().to_redacted_toml();
        let hmac = printed_table(&out, "webhook.auth.hmac").unwrap();
        for line in [
            "header = \"x-sig\"",
            "# prefix = (unset)",
            "algorithm = \"sha256\"",
            "encoding = \"hex\"",
            "# timestamp_header = (unset)",
            "# signed_template = (unset)",
        ] {
            assert!(hmac.iter().any(|l| l == line), "{line}: {hmac:?}");
        }

        vars.extend(env(&[("VXB_WEBHOOK__AUTH__HMAC__SCHEME", "hex")]));
        let out = Config::load(None, vars).unwrap().to_redacted_toml();
        let hmac = printed_table(&out, "webhook.auth.hmac").unwrap();
        assert!(hmac.iter().any(|l| l == "# prefix = (unset)"), "{hmac:?}");
        for gone in ["algorithm", "encoding", "tolerance", "signed_template"] {
            assert!(!hmac.iter().any(|l| l.contains(gone)), "{gone}: {hmac:?}");
        }

        let basic = env(&[
            ("VXB_WEBHOOK__AUTH__MODE", "basic"),
            ("VXB_WEBHOOK__AUTH__BASIC__USERNAME", "vx"),
            ("VXB_WEBHOOK__AUTH__BASIC__PASSWORDS", "[\"pw-secret\"]"),
        ]);
        let out = Config::load(None, basic).unwrap().to_redacted_toml();
        assert!(printed_table(&out, "webhook.auth.hmac").is_none(), "{out}");
        assert_eq!(
            printed_table(&out, "webhook.auth.basic").unwrap(),
            [
                "username = \"vx\"",
                "passwords = [\"[redacted]\"]",
                "# passwords_file = (unset)",
            ]
        );
        assert!(!out.contains("pw-secret"));
    }

    #[test]
    fn check_config_output_reads_back_as_the_same_config() {
        let vars = env(&[
            ("VXB_WEBHOOK__AUTH__MODE", "none"),
            ("VXB_NATS__STREAM__REPLICAS", "3"),
            ("VXB_NATS__USER", "bridge"),
            ("VXB_HTTP__LISTEN", "127.0.0.1:9000"),
            ("VXB_LOG__OTLP_ENDPOINT", "http://collector:4318/v1/traces"),
        ]);
        let c = Config::load(None, vars).unwrap();
        let printed = write(&c.to_redacted_toml());
        let again = Config::load(Some(printed.path()), vec![]).unwrap();
        assert_eq!(
            serde_json::to_value(&again).unwrap(),
            serde_json::to_value(&c).unwrap()
        );
    }

    #[test]
    fn environment_overrides_file_and_defaults() {
        let f = write(
            "[nats.stream]\nname = \"FROM_FILE\"\nreplicas = 3\n[http]\nmax_body_bytes = 10\n",
        );
        let mut vars = hmac_env();
        vars.extend(env(&[
            ("VXB_NATS__STREAM__NAME", "FROM_ENV"),
            ("VXB_HTTP__MAX_IN_FLIGHT", "7"),
            ("VXB_NATS__STREAM__DUPLICATE_WINDOW", "2h"),
            ("VXB_CONFIG", "/ignored"),
            ("PATH", "/usr/bin"),
        ]));
        let c = Config::load(Some(f.path()), vars).unwrap();
        assert_eq!(c.nats.stream.name, "FROM_ENV");
        assert_eq!(c.nats.stream.replicas, 3);
        assert_eq!(c.http.max_body_bytes, 10);
        assert_eq!(c.http.max_in_flight, 7);
        assert_eq!(c.nats.stream.duplicate_window, Duration::from_secs(7200));
        assert_eq!(c.webhook.auth.hmac.secrets.len(), 1);
        assert_eq!(c.http.webhook_path, "/webhooks/vx");
    }

    #[test]
    fn no_authentication_refuses_to_start() {
        let err = Config::load(None, vec![]).unwrap_err();
        assert_eq!(err.key, "webhook.auth.mode");
        let ok = Config::load(None, env(&[("VXB_WEBHOOK__AUTH__MODE", "none")]));
        assert!(ok.is_ok());
    }

    #[test]
    fn errors_name_the_key() {
        type Case = (&'static str, Vec<(String, String)>, &'static str);
        let cases: Vec<Case> = vec![
            ("[http]\nnope = 1\n", vec![], "http.nope"),
            ("surprise = 1\n", vec![], "surprise"),
            (
                "[nats.stream]\nreplicas = \"three\"\n",
                vec![],
                "nats.stream.replicas",
            ),
            (
                "[nats.stream]\nreplicas = 7\n",
                vec![],
                "nats.stream.replicas",
            ),
            ("[sessions]\nreplicas = 0\n", vec![], "sessions.replicas"),
            ("[sessions]\nhistory = 65\n", vec![], "sessions.history"),
            ("[sessions]\nbucket = \"a.b\"\n", vec![], "sessions.bucket"),
            (
                "[nats]\nsubject_prefix = \"a.*\"\n",
                vec![],
                "nats.subject_prefix",
            ),
            (
                "[nats]\nsubject_prefix = \"a..b\"\n",
                vec![],
                "nats.subject_prefix",
            ),
            (
                "[http]\nwebhook_path = \"nope\"\n",
                vec![],
                "http.webhook_path",
            ),
            (
                "[nats.stream]\nduplicate_window = \"forever\"\n",
                vec![],
                "nats.stream.duplicate_window",
            ),
            (
                "[nats.stream]\nstorage = \"tape\"\n",
                vec![],
                "nats.stream.storage",
            ),
            (
                "[webhook.auth.hmac]\nscheme = \"md5\"\n",
                vec![],
                "webhook.auth.hmac.scheme",
            ),
            (
                "",
                env(&[("VXB_HTTP__MAX_BODY_BYTES", "lots")]),
                "http.max_body_bytes",
            ),
            (
                "[nats]\ntoken_file = \"/nonexistent/token\"\n",
                vec![],
                "nats.token_file",
            ),
            ("[nats]\npassword = \"x\"\n", vec![], "nats.user"),
            ("[log]\nlevel = \"[[[\"\n", vec![], "log.level"),
        ];
        for (file, extra, key) in cases {
            let f = write(file);
            let mut vars = hmac_env();
            vars.extend(extra);
            let err = Config::load(Some(f.path()), vars).unwrap_err();
            assert_eq!(err.key, key, "{file}: {err}");
            assert!(!err.to_string().contains('\n'), "one line: {err}");
        }
    }

    #[test]
    fn a_wrongly_typed_secret_is_not_echoed() {
        let f = write("[webhook.auth.hmac]\nsecrets = \"s3cr3t-value\"\n");
        let err =
            Config::load(Some(f.path()), env(&[("VXB_WEBHOOK__AUTH__MODE", "hmac")])).unwrap_err();
        assert_eq!(err.key, "webhook.auth.hmac.secrets");
        assert!(!err.to_string().contains("s3cr3t"), "{err}");
    }

    #[test]
    fn a_missing_config_file_is_an_error() {
        let err = Config::load(Some(Path::new("/nonexistent/vx.toml")), hmac_env()).unwrap_err();
        assert_eq!(err.key, "--config");
    }

    #[test]
    fn redacted_output_hides_secrets() {
        let c = Config::load(None, hmac_env()).unwrap();
        let out = c.to_redacted_toml();
        assert!(out.contains("[redacted]"));
        assert!(!out.contains("MfKQ9r8GKYqr"));
    }
}
