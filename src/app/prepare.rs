//! The one step with side effects before anything starts: every secret file is read once, and
//! the webhook verifier, the VX API client, the schemas and the KEKs are built from them.
//! `check-config` runs it too, so a bad secret is a configuration error (exit 64) before
//! anything connects. It must not connect to anything.

use std::sync::Arc;

use crate::auth::Verifier;
use crate::clock::{Clock, SystemClock};
use crate::config::{AuthMode, Config, ConfigError};
use crate::pii::KekRing;
use crate::schema::Schemas;
use crate::secret::{read_secret_lines, Secret};
use crate::upstream::UpstreamClient;

/// What [`prepare`] builds from a validated [`Config`]: the parts that need secrets or files.
#[derive(Debug)]
pub struct Parts {
    /// The webhook verifier, when `webhook.enabled`.
    pub verifier: Option<Verifier>,
    /// The VX API client, when `status.enabled`.
    pub upstream: Option<Arc<UpstreamClient>>,
    /// The compiled schemas, with today's result schema ([`result_schemas`]).
    pub schemas: Schemas,
    /// The KEKs of `keys.kek_file`, when set.
    pub keks: Option<KekRing>,
}

/// Resolves every secret of the webhook and the status service once (inline or from its
/// `…_file`) and builds the verifier and the VX API client; every problem names its key.
/// `config` must be validated. NATS credentials are read when connecting. Reads
/// `webhook.schema_file` too ([`result_schemas`]).
pub fn prepare(config: &Config) -> Result<Parts, ConfigError> {
    let schemas = result_schemas(config)?;
    if config.needs_kek() && config.keys.kek_file.is_none() {
        return Err(ConfigError::new(
            "keys.kek_file",
            "events.pii = \"encrypted\" (the default) needs a KEK file (one `id:base64` of 32 random bytes per line, e.g. `echo \"k1:$(openssl rand -base64 32)\" > kek`), or set events.pii = \"clear\" or \"omitted\"",
        ));
    }
    let keks = crate::pii::kek::configured(config)?;
    let verifier = if config.webhook.enabled {
        let auth = &config.webhook.auth;
        let secrets = match auth.mode()? {
            AuthMode::None => Vec::new(),
            AuthMode::Basic => secret_list(
                &auth.basic.passwords,
                auth.basic.passwords_file.as_deref(),
                "webhook.auth.basic.passwords_file",
            )?,
            AuthMode::Hmac => secret_list(
                &auth.hmac.secrets,
                auth.hmac.secrets_file.as_deref(),
                "webhook.auth.hmac.secrets_file",
            )?,
        };
        Some(Verifier::from_config(auth, &secrets)?)
    } else {
        None
    };
    let upstream = if config.status.enabled {
        let clock: Arc<dyn Clock> = Arc::new(SystemClock);
        Some(Arc::new(
            UpstreamClient::from_config(&config.upstream, clock)?.with_schemas(schemas.clone()),
        ))
    } else {
        None
    };
    Ok(Parts {
        verifier,
        upstream,
        schemas,
        keks,
    })
}

/// The schemas with today's result schema: `webhook.schema_file` read and compiled when set,
/// else the embedded `schemas/vx-result.schema.json`. Every problem is one error naming the key.
/// The one place the file is read (`prepare`, and `vx-bridge replay`, call it).
pub fn result_schemas(config: &Config) -> Result<Schemas, ConfigError> {
    const KEY: &str = "webhook.schema_file";
    let embedded = Schemas::get();
    let Some(path) = &config.webhook.schema_file else {
        return Ok(embedded);
    };
    let text = std::fs::read(path)
        .map_err(|e| ConfigError::new(KEY, format!("cannot read {}: {e}", path.display())))?;
    let schema: serde_json::Value = serde_json::from_slice(&text)
        .map_err(|e| ConfigError::new(KEY, format!("{} is not JSON: {e}", path.display())))?;
    embedded
        .with_result_schema(&schema)
        .map_err(|e| ConfigError::new(KEY, format!("{}: {e}", path.display())))
}

/// The inline secrets followed by those of `file` (one a line), if set.
fn secret_list(
    inline: &[Secret],
    file: Option<&std::path::Path>,
    key: &str,
) -> Result<Vec<Secret>, ConfigError> {
    let mut out = inline.to_vec();
    if let Some(path) = file {
        out.extend(read_secret_lines(path).map_err(|e| ConfigError::new(key, e))?);
    }
    Ok(out)
}
