//! Stripe style: one header (default `stripe-signature`) holding `t=<unix>,v1=<hex>[,v1=…]`,
//! HMAC-SHA256 over `<t>.<body>`.
//!
//! Only parses, verifies and signs; keys and the tolerance are [`super::Keys`]'.

use http::HeaderName;

use super::{
    header_name, malformed, parse_timestamp, sole_header_trimmed, KeyedMac, Keys, Request,
};
use crate::auth::AuthError;
use crate::config::{ConfigError, HmacAlgorithm, HmacConfig};

#[derive(Debug)]
pub(super) struct Stripe {
    header: HeaderName,
}

impl Stripe {
    pub(super) fn parse(cfg: &HmacConfig) -> Result<Self, ConfigError> {
        Ok(Self {
            header: header_name(
                "webhook.auth.hmac.header",
                cfg.header.as_deref().unwrap_or("stripe-signature"),
            )?,
        })
    }

    /// Verifies; the scheme carries no delivery id.
    pub(super) fn verify(
        &self,
        keys: &Keys,
        req: &Request<'_>,
    ) -> Result<Option<String>, AuthError> {
        let name = self.header.as_str();
        let value = sole_header_trimmed(req.headers, name)?;
        let mut t: Option<&str> = None;
        let mut sigs = Vec::new();
        for item in value.split(',') {
            match item.trim().split_once('=') {
                Some(("t", v)) => t = Some(v),
                Some(("v1", v)) => {
                    if let Ok(bytes) = hex::decode(v) {
                        sigs.push(bytes);
                    }
                }
                _ => {}
            }
        }
        let t_raw = t.ok_or_else(|| malformed(name, "no `t=` timestamp"))?;
        let ts = parse_timestamp(name, t_raw)?;
        keys.check_time(ts, req.now)?;
        if sigs.is_empty() {
            return Err(malformed(name, "no `v1=<hex>` signature"));
        }
        keys.match_any(HmacAlgorithm::Sha256, &signed(t_raw, req.body), &sigs)?;
        Ok(None)
    }

    /// The header a sender adds.
    pub(super) fn sign(&self, key: &KeyedMac, body: &[u8], ts: &str) -> Vec<(String, String)> {
        let sig = key.mac(HmacAlgorithm::Sha256, &signed(ts, body));
        vec![(
            self.header.as_str().into(),
            format!("t={ts},v1={}", hex::encode(sig.as_slice())),
        )]
    }
}

/// The signed string, `<t>.<body>`, in parts.
fn signed<'a>(ts: &'a str, body: &'a [u8]) -> [&'a [u8]; 3] {
    [ts.as_bytes(), b".", body]
}
