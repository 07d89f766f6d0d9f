//! GitHub style: one header (default `x-hub-signature-256`) holding `<prefix><hex>` (default
//! prefix `sha256=`), HMAC-SHA256 over the body alone. No timestamp, so no tolerance.
//!
//! Only parses, verifies and signs; keys are [`super::Keys`]'.

use super::{header_name, KeyedMac, Keys, Request, SignatureHeader};
use crate::auth::AuthError;
use crate::config::{ConfigError, HmacAlgorithm, HmacConfig, SignatureEncoding};

/// Why a request without a usable signature is malformed.
const NO_SIGNATURE: &str = "expected `<prefix><hex>`";

#[derive(Debug)]
pub(super) struct Hex {
    sig: SignatureHeader,
}

impl Hex {
    pub(super) fn parse(cfg: &HmacConfig) -> Result<Self, ConfigError> {
        Ok(Self {
            sig: SignatureHeader {
                name: header_name(
                    "webhook.auth.hmac.header",
                    cfg.header.as_deref().unwrap_or("x-hub-signature-256"),
                )?,
                prefix: cfg.prefix.clone().unwrap_or_else(|| "sha256=".into()),
                encoding: SignatureEncoding::Hex,
            },
        })
    }

    /// Verifies; the scheme carries no delivery id.
    pub(super) fn verify(
        &self,
        keys: &Keys,
        req: &Request<'_>,
    ) -> Result<Option<String>, AuthError> {
        let offered = self.sig.signatures(req.headers, NO_SIGNATURE)?;
        keys.match_any(HmacAlgorithm::Sha256, &[req.body], &offered)?;
        Ok(None)
    }

    /// The header a sender adds.
    pub(super) fn sign(&self, key: &KeyedMac, body: &[u8]) -> Vec<(String, String)> {
        let sig = key.mac(HmacAlgorithm::Sha256, &[body]);
        vec![self.sig.signed(sig.as_slice())]
    }
}
