//! The generic scheme: signature header, prefix, hash, encoding, an optional timestamp header,
//! an optional delivery-id header and the signed string (`signed_template`, with `{body}`,
//! `{timestamp}` and `{id}`) are all configured.
//!
//! The template is parsed once into [`Part`]s; verifying and signing both walk those parts, so
//! a signer cannot read the template differently from the verifier.

use http::HeaderName;

use super::{
    delivery_id, header_name, parse_timestamp, sole_header_trimmed, KeyedMac, Keys, Request,
    SignatureHeader,
};
use crate::auth::AuthError;
use crate::config::{reject_if, ConfigError, HmacAlgorithm, HmacConfig};

/// Why a request without a usable signature is malformed.
const NO_SIGNATURE: &str = "no signature in the expected prefix and encoding";

#[derive(Debug)]
pub(super) struct Generic {
    sig: SignatureHeader,
    algorithm: HmacAlgorithm,
    timestamp_header: Option<HeaderName>,
    id_header: Option<HeaderName>,
    template: Vec<Part>,
}

/// A piece of the generic scheme's signed string.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Part {
    Literal(Vec<u8>),
    Body,
    Timestamp,
    Id,
}

impl Generic {
    pub(super) fn parse(cfg: &HmacConfig) -> Result<Self, ConfigError> {
        let Some(h) = cfg.header.as_deref() else {
            return Err(ConfigError::new(
                "webhook.auth.hmac.header",
                "the generic scheme needs the signature header's name",
            ));
        };
        let timestamp_header = cfg
            .timestamp_header
            .as_deref()
            .map(|h| header_name("webhook.auth.hmac.timestamp_header", h))
            .transpose()?;
        let id_header = cfg
            .id_header
            .as_deref()
            .map(|h| header_name("webhook.auth.hmac.id_header", h))
            .transpose()?;
        let default_template = if timestamp_header.is_some() {
            "{timestamp}.{body}"
        } else {
            "{body}"
        };
        let template = parse_template(
            cfg.signed_template.as_deref().unwrap_or(default_template),
            timestamp_header.is_some(),
            id_header.is_some(),
        )?;
        Ok(Self {
            sig: SignatureHeader {
                name: header_name("webhook.auth.hmac.header", h)?,
                prefix: cfg.prefix.clone().unwrap_or_default(),
                encoding: cfg.encoding,
            },
            algorithm: cfg.algorithm,
            timestamp_header,
            id_header,
            template,
        })
    }

    /// Verifies; the delivery id is the `id_header`'s value, when there is one.
    pub(super) fn verify(
        &self,
        keys: &Keys,
        req: &Request<'_>,
    ) -> Result<Option<String>, AuthError> {
        let sigs = self.sig.signatures(req.headers, NO_SIGNATURE)?;
        let ts_raw = match &self.timestamp_header {
            Some(h) => {
                let raw = sole_header_trimmed(req.headers, h.as_str())?;
                let ts = parse_timestamp(h.as_str(), raw)?;
                keys.check_time(ts, req.now)?;
                Some(raw)
            }
            None => None,
        };
        let id = match &self.id_header {
            Some(h) => Some(delivery_id(req.headers, h.as_str())?),
            None => None,
        };
        let parts = self.signed(
            req.body,
            ts_raw.unwrap_or_default(),
            id.as_deref().unwrap_or_default(),
        );
        keys.match_any(self.algorithm, &parts, &sigs)?;
        Ok(id)
    }

    /// The headers a sender adds: the signature, and the timestamp and id when configured.
    pub(super) fn sign(
        &self,
        key: &KeyedMac,
        body: &[u8],
        ts: &str,
        id: &str,
    ) -> Vec<(String, String)> {
        let sig = key.mac(self.algorithm, &self.signed(body, ts, id));
        let mut out = vec![self.sig.signed(sig.as_slice())];
        if let Some(h) = &self.timestamp_header {
            out.push((h.as_str().into(), ts.into()));
        }
        if let Some(h) = &self.id_header {
            out.push((h.as_str().into(), id.into()));
        }
        out
    }

    /// The signed string in parts: the template with the body, timestamp and id put in.
    fn signed<'a>(&'a self, body: &'a [u8], ts: &'a str, id: &'a str) -> Vec<&'a [u8]> {
        self.template
            .iter()
            .map(|p| match p {
                Part::Literal(l) => l.as_slice(),
                Part::Body => body,
                Part::Timestamp => ts.as_bytes(),
                Part::Id => id.as_bytes(),
            })
            .collect()
    }
}

fn parse_template(t: &str, has_ts: bool, has_id: bool) -> Result<Vec<Part>, ConfigError> {
    const KEY: &str = "webhook.auth.hmac.signed_template";
    let mut parts = Vec::new();
    let mut rest = t;
    let mut literal = String::new();
    while !rest.is_empty() {
        let (part, len) = if rest.starts_with("{body}") {
            (Some(Part::Body), 6)
        } else if rest.starts_with("{timestamp}") {
            reject_if(
                !has_ts,
                KEY,
                "uses {timestamp} but timestamp_header is not set",
            )?;
            (Some(Part::Timestamp), 11)
        } else if rest.starts_with("{id}") {
            reject_if(!has_id, KEY, "uses {id} but id_header is not set")?;
            (Some(Part::Id), 4)
        } else {
            let c = rest.chars().next().unwrap_or_default();
            literal.push(c);
            (None, c.len_utf8())
        };
        if let Some(p) = part {
            if !literal.is_empty() {
                parts.push(Part::Literal(std::mem::take(&mut literal).into_bytes()));
            }
            parts.push(p);
        }
        rest = &rest[len..];
    }
    if !literal.is_empty() {
        parts.push(Part::Literal(literal.into_bytes()));
    }
    reject_if(!parts.contains(&Part::Body), KEY, "must contain {body}")?;
    reject_if(
        has_ts && !parts.contains(&Part::Timestamp),
        KEY,
        "must contain {timestamp} when timestamp_header is set, or the timestamp is not signed",
    )?;
    Ok(parts)
}
