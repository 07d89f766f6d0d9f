//! Configuration: documented defaults → optional TOML file → `VXB_SECTION__KEY` environment,
//! then one validation pass that names the bad key.
//!
//! One file per section (`http`, `nats`, `webhook`, `status`, `upstream`, `sessions`, `replay`,
//! `reconcile`, `events`/`keys`/`retention` (in `pii`), `log`),
//! each with its own `validate()`; `render` prints the effective configuration. The defaults
//! are the documented example, `config/vx-bridge.example.toml`, embedded ([`DEFAULTS_TOML`]): a
//! key added here must be added there (parsing fails without a required key; a test checks that
//! the example lists every key, optional ones included).
//!
//! Secrets are [`Secret`](crate::secret::Secret)s and can come from files (`…_file` keys), which
//! this module does not read: `app::prepare` resolves them once and builds what needs them. This
//! module only parses and checks values (the one file access: that `--config` and the NATS
//! credential files exist); it starts nothing and imports none of the parts it configures.

use std::fmt;
use std::path::Path;
use std::sync::OnceLock;

use figment::providers::{Format, Serialized, Toml};
use figment::Figment;
use serde::{Deserialize, Serialize};

mod http;
mod log;
mod nats;
mod pii;
mod reconcile;
mod render;
mod replay;
mod sessions;
mod status;
mod upstream;
mod webhook;

pub use http::HttpConfig;
pub use log::{LogConfig, LogFormat};
pub use nats::{NatsConfig, NatsTlsConfig, StorageKind, StreamConfig};
pub use pii::{EventsConfig, KeysConfig, PiiMode, RetentionConfig};
pub use reconcile::ReconcileConfig;
pub use replay::ReplayConfig;
pub use sessions::SessionsConfig;
pub use status::StatusConfig;
pub use upstream::{OAuthConfig, UpstreamConfig};
pub use webhook::{
    AuthConfig, AuthMode, BasicAuthConfig, HmacAlgorithm, HmacConfig, HmacScheme,
    LegacyIngressConfig, SignatureEncoding, WebhookConfig,
};

/// The largest `max_payload` a NATS server accepts (64 MiB).
pub const MAX_PAYLOAD_LIMIT: usize = 64 * 1024 * 1024;

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

/// The documented example configuration, which is also the defaults: every key is there, set
/// to its default, or commented out when it has none (an unset option, an empty list). The
/// first layer of [`Config::parse`], and what every `Default` here returns.
pub const DEFAULTS_TOML: &str = include_str!("../../config/vx-bridge.example.toml");

/// [`DEFAULTS_TOML`], parsed once.
fn defaults() -> &'static Config {
    static DEFAULTS: OnceLock<Config> = OnceLock::new();
    DEFAULTS.get_or_init(|| {
        // Embedded text, not input: a test parses it (`the_sample_config_…`).
        toml::from_str(DEFAULTS_TOML).expect("the embedded default configuration parses")
    })
}

/// `Default` for the configuration and its sections: their part of [`DEFAULTS_TOML`].
macro_rules! defaults_from_embedded {
    ($($ty:ty => $($field:ident).*;)*) => {
        $(impl Default for $ty {
            fn default() -> Self {
                defaults()$(.$field)*.clone()
            }
        })*
    };
}

defaults_from_embedded! {
    Config => ;
    HttpConfig => http;
    NatsConfig => nats;
    NatsTlsConfig => nats.tls;
    StreamConfig => nats.stream;
    WebhookConfig => webhook;
    AuthConfig => webhook.auth;
    BasicAuthConfig => webhook.auth.basic;
    HmacConfig => webhook.auth.hmac;
    StatusConfig => status;
    UpstreamConfig => upstream;
    OAuthConfig => upstream.oauth;
    SessionsConfig => sessions;
    ReplayConfig => replay;
    ReconcileConfig => reconcile;
    EventsConfig => events;
    KeysConfig => keys;
    RetentionConfig => retention;
    LogConfig => log;
}

/// The whole configuration.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// HTTP listener and webhook endpoint.
    pub http: HttpConfig,
    /// NATS connection, subjects and stream.
    pub nats: NatsConfig,
    /// The webhook role: whether it runs, and how webhooks are authenticated.
    pub webhook: WebhookConfig,
    /// Deprecated: `ingress.enabled` is now `webhook.enabled` (accepted for one release, with a
    /// warning at start). Never printed by `check-config`.
    #[serde(default, skip_serializing)]
    pub ingress: LegacyIngressConfig,
    /// The status/result request-reply service.
    pub status: StatusConfig,
    /// The VX API client used by the status service.
    pub upstream: UpstreamConfig,
    /// The session view: the latest state of every session, in a JetStream KV bucket.
    pub sessions: SessionsConfig,
    /// `vx-bridge replay`: its markers' bucket.
    pub replay: ReplayConfig,
    /// The reconciler: watched sessions polled against the VX API.
    pub reconcile: ReconcileConfig,
    /// What the events carry of the personal data (`events.pii`).
    pub events: EventsConfig,
    /// The per-session data keys and their KEKs.
    pub keys: KeysConfig,
    /// How long personal data stays readable.
    pub retention: RetentionConfig,
    /// Logging.
    pub log: LogConfig,
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
        // The user's layers; the defaults go under them below.
        let mut figment = Figment::new();
        if let Some(path) = file {
            reject_if(
                !path.is_file(),
                "--config",
                format!("{} is not a readable file", path.display()),
            )?;
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
        let mut config: Config = Figment::from(Toml::string(DEFAULTS_TOML))
            .merge(&figment)
            .extract()
            .map_err(figment_error)?;
        if let Some(legacy) = config.ingress.enabled {
            let new_key_set = figment.find_value("webhook.enabled").is_ok();
            reject_if(
                new_key_set && legacy != config.webhook.enabled,
                "ingress.enabled",
                "is the deprecated name of webhook.enabled, which is also set, to a different value: remove ingress.enabled",
            )?;
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
        self.log.validate()?;
        self.http.validate()?;
        self.validate_nats()?;
        self.webhook.validate()?;
        // A process with only the session view on is a projector: the ingress replicas can
        // then run with `sessions.enabled = false` and spend their CPU on webhooks.
        reject_if(
            !self.webhook.enabled && !self.status.enabled && !self.sessions.enabled,
            "webhook.enabled",
            "the webhook endpoint, the status service and the session view are all disabled: nothing to run",
        )?;
        if self.status.enabled {
            self.status.validate()?;
            self.upstream.validate()?;
        }
        if self.sessions.enabled {
            self.sessions.validate()?;
        }
        self.replay.validate()?;
        self.keys.validate()?;
        self.retention.validate()?;
        if self.reconcile.enabled == Some(true) {
            reject_if(
                !self.status.enabled || !self.sessions.enabled,
                "reconcile.enabled",
                "needs status.enabled (with the VX credentials of [upstream]) and sessions.enabled",
            )?;
        }
        if self.reconcile_enabled() {
            self.reconcile
                .validate(&self.nats.stream, &self.sessions.bucket)?;
        }
        Ok(())
    }

    /// Whether the reconciler runs (and `{prefix}.watch` is served): `reconcile.enabled`, and
    /// when unset, whether the status service (which has the VX credentials) and the session
    /// view are on.
    pub fn reconcile_enabled(&self) -> bool {
        self.reconcile
            .enabled
            .unwrap_or(self.status.enabled && self.sessions.enabled)
            && self.status.enabled
            && self.sessions.enabled
    }

    /// Whether this process reads or writes personal data under the KEKs: `events.pii =
    /// "encrypted"` with the webhook ingress or the status service (result.get, the
    /// reconciler's poll events) on. A projector-only process needs none.
    pub fn needs_kek(&self) -> bool {
        self.events.pii == PiiMode::Encrypted && (self.webhook.enabled || self.status.enabled)
    }

    /// Checks `[nats]` (connection, subjects, stream).
    pub fn validate_nats(&self) -> Result<(), ConfigError> {
        self.nats.validate()
    }
}

/// An environment value as figment would read it: TOML-like scalars and arrays, else a string.
fn env_value(raw: &str) -> figment::value::Value {
    use figment::value::Value;
    let parsed: Value = raw.parse().unwrap_or_else(|_| Value::from(raw.to_owned()));
    parsed
}

/// `Err` for `key` when `refused`: the shape of every check in the sections' `validate()`.
pub fn reject_if(refused: bool, key: &str, message: impl fmt::Display) -> Result<(), ConfigError> {
    if refused {
        Err(ConfigError::new(key, message))
    } else {
        Ok(())
    }
}

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
    use std::time::Duration;

    const SAMPLE: &str = include_str!("../../config/vx-bridge.example.toml");

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

        // The webhook endpoint off alone leaves the session view: a projector-only process.
        let c = Config::load(None, env(&[("VXB_WEBHOOK__ENABLED", "false")])).unwrap();
        assert!(!c.webhook.enabled && !c.status.enabled && c.sessions.enabled);
        // With the view off too there is nothing to run.
        let err = Config::load(
            None,
            env(&[
                ("VXB_WEBHOOK__ENABLED", "false"),
                ("VXB_SESSIONS__ENABLED", "false"),
            ]),
        )
        .unwrap_err();
        assert_eq!(err.key, "webhook.enabled", "{err}");
        assert!(err.message.contains("nothing to run"), "{err}");
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
