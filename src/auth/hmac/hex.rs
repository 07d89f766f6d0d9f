//! GitHub style: one header (default `x-hub-signature-256`) holding `<prefix><hex>` (default
//! prefix `sha256=`), HMAC-SHA256 over the body alone. No timestamp, so no tolerance.
//!
//! Only parses, verifies and signs; keys are [`super::Keys`]'.

use http::HeaderName;

use super::{header_name, signatures, KeyedMac, Keys, Request};
use crate::auth::AuthError;
use crate::config::{ConfigError, HmacAlgorithm, HmacConfig, SignatureEncoding};

#[derive(Debug)]
pub(super) struct Hex {
    header: HeaderName,
    prefix: String,
}

impl Hex {
    pub(super) fn parse(cfg: &HmacConfig) -> Result<Self, ConfigError> {
        Ok(Self {
            header: header_name(
                "webhook.auth.hmac.header",
                cfg.header.as_deref().unwrap_or("x-hub-signature-256"),
            )?,
            prefix: cfg.prefix.clone().unwrap_or_else(|| "sha256=".into()),
        })
    }

    /// Verifies; the scheme carries no delivery id.
    pub(super) fn verify(
        &self,
        keys: &Keys,
        req: &Request<'_>,
    ) -> Result<Option<String>, AuthError> {
        let sigs = signatures(
            req.headers,
            &self.header,
            &self.prefix,
            SignatureEncoding::Hex,
            "expected `<prefix><hex>`",
        )?;
        keys.match_any(HmacAlgorithm::Sha256, &[req.body], &sigs)?;
        Ok(None)
    }

    /// The header a sender adds.
    pub(super) fn sign(&self, key: &KeyedMac, body: &[u8]) -> Vec<(String, String)> {
        let sig = key.mac(HmacAlgorithm::Sha256, &[body]);
        vec![(
            self.header.as_str().into(),
            format!("{}{}", self.prefix, hex::encode(sig.as_slice())),
        )]
    }
}
