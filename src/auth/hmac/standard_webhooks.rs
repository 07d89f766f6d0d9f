//! Standard Webhooks: `webhook-id`, `webhook-timestamp` and `webhook-signature: v1,<base64> …`,
//! HMAC-SHA256 over `<id>.<timestamp>.<body>`.
//!
//! Only parses, verifies and signs; keys and the tolerance are [`super::Keys`]'.

use base64::Engine as _;

use super::{
    delivery_id, malformed, parse_timestamp, sole_header_trimmed, Keys, Request, B64, B64_LENIENT,
};
use crate::auth::AuthError;
use crate::config::{reject_if, ConfigError, HmacAlgorithm, HmacConfig};

const ID: &str = "webhook-id";
const TIMESTAMP: &str = "webhook-timestamp";
const SIGNATURE: &str = "webhook-signature";

/// The scheme has fixed headers: nothing to configure.
#[derive(Debug)]
pub(super) struct StandardWebhooks;

impl StandardWebhooks {
    pub(super) fn parse(cfg: &HmacConfig) -> Result<Self, ConfigError> {
        reject_if(
            cfg.header.is_some() || cfg.prefix.is_some(),
            "webhook.auth.hmac.header",
            "standard-webhooks uses fixed headers; header and prefix apply to other schemes",
        )?;
        Ok(Self)
    }

    /// Verifies; the delivery id is `webhook-id`.
    pub(super) fn verify(
        &self,
        keys: &Keys,
        req: &Request<'_>,
    ) -> Result<Option<String>, AuthError> {
        let id = delivery_id(req.headers, ID)?;
        let ts_raw = sole_header_trimmed(req.headers, TIMESTAMP)?;
        let ts = parse_timestamp(TIMESTAMP, ts_raw)?;
        keys.check_time(ts, req.now)?;
        let sig_header = sole_header_trimmed(req.headers, SIGNATURE)?;
        let sigs: Vec<Vec<u8>> = sig_header
            .split_whitespace()
            .filter_map(|s| s.strip_prefix("v1,"))
            .filter_map(|s| B64_LENIENT.decode(s).ok())
            .collect();
        if sigs.is_empty() {
            return Err(malformed(SIGNATURE, "no `v1,<base64>` signature"));
        }
        keys.match_any(HmacAlgorithm::Sha256, &signed(&id, ts_raw, req.body), &sigs)?;
        Ok(Some(id))
    }

    /// The headers a sender adds.
    pub(super) fn sign(
        &self,
        key: &super::KeyedMac,
        body: &[u8],
        ts: &str,
        id: &str,
    ) -> Vec<(String, String)> {
        let sig = key.mac(HmacAlgorithm::Sha256, &signed(id, ts, body));
        vec![
            (ID.into(), id.into()),
            (TIMESTAMP.into(), ts.into()),
            (
                SIGNATURE.into(),
                format!("v1,{}", B64.encode(sig.as_slice())),
            ),
        ]
    }
}

/// The signed string, `<id>.<timestamp>.<body>`, in parts.
fn signed<'a>(id: &'a str, ts: &'a str, body: &'a [u8]) -> [&'a [u8]; 5] {
    [id.as_bytes(), b".", ts.as_bytes(), b".", body]
}
