//! GitHub style: one header (default `x-hub-signature-256`) holding `<prefix><hex>` (default
//! prefix `sha256=`), HMAC-SHA256 over the body alone. No timestamp, so no tolerance.
//!
//! Only parses, verifies and signs; keys are [`super::Keys`]'.

use http::{HeaderMap, HeaderName};

use super::{header_name, malformed, offered, sole_header_trimmed, KeyedMac, Keys};
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
        headers: &HeaderMap,
        body: &[u8],
    ) -> Result<Option<String>, AuthError> {
        let name = self.header.as_str();
        let value = sole_header_trimmed(headers, name)?;
        let sigs = offered(value, &self.prefix, SignatureEncoding::Hex);
        if sigs.is_empty() {
            return Err(malformed(name, "expected `<prefix><hex>`"));
        }
        keys.match_any(HmacAlgorithm::Sha256, &[body], &sigs)?;
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
