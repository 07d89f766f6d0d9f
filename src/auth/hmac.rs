//! HMAC signature schemes: Standard Webhooks, Stripe style, GitHub-style hex, and a generic
//! scheme whose header, prefix, hash, encoding, timestamp and signed string are all configurable.
//!
//! Each scheme is parsed from its header, the expected MACs are computed for every configured
//! secret (several during rotation) and compared in constant time with every signature offered.

use std::time::Duration;

use base64::Engine as _;
use hmac::{Hmac, Mac};
use http::{HeaderMap, HeaderName};
use sha2::{Sha256, Sha512};
use subtle::ConstantTimeEq;

use super::AuthError;
use crate::config::{ConfigError, HmacAlgorithm, HmacConfig, HmacScheme, SignatureEncoding};
use crate::secret::{read_secret_lines, Secret};

const B64: base64::engine::GeneralPurpose = base64::engine::general_purpose::STANDARD;
/// Accepts base64 with or without padding.
const B64_LENIENT: base64::engine::GeneralPurpose = base64::engine::GeneralPurpose::new(
    &base64::alphabet::STANDARD,
    base64::engine::GeneralPurposeConfig::new()
        .with_decode_padding_mode(base64::engine::DecodePaddingMode::Indifferent),
);

/// Longest accepted delivery id (it becomes the `Nats-Msg-Id`).
const MAX_ID_LEN: usize = 256;

/// A configured HMAC scheme with its decoded keys.
pub struct HmacVerifier {
    scheme: Scheme,
    keys: Vec<KeyedMac>,
    tolerance_secs: i64,
}

impl std::fmt::Debug for HmacVerifier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HmacVerifier")
            .field("scheme", &self.scheme)
            .field("keys", &self.keys.len())
            .field("tolerance_secs", &self.tolerance_secs)
            .finish()
    }
}

#[derive(Debug)]
enum Scheme {
    StandardWebhooks,
    Stripe {
        header: HeaderName,
    },
    Hex {
        header: HeaderName,
        prefix: String,
    },
    Generic {
        header: HeaderName,
        prefix: String,
        algorithm: HmacAlgorithm,
        encoding: SignatureEncoding,
        timestamp_header: Option<HeaderName>,
        id_header: Option<HeaderName>,
        template: Vec<Part>,
    },
}

/// A piece of the generic scheme's signed string.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Part {
    Literal(Vec<u8>),
    Body,
    Timestamp,
    Id,
}

impl HmacVerifier {
    /// Builds the verifier from `webhook.auth.hmac`, reading `secrets_file`.
    pub fn from_config(cfg: &HmacConfig) -> Result<Self, ConfigError> {
        let mut secrets: Vec<Secret> = cfg.secrets.clone();
        if let Some(path) = &cfg.secrets_file {
            secrets.extend(
                read_secret_lines(path)
                    .map_err(|e| ConfigError::new("webhook.auth.hmac.secrets_file", e))?,
            );
        }
        if secrets.is_empty() || secrets.iter().any(Secret::is_empty) {
            return Err(ConfigError::new(
                "webhook.auth.hmac.secrets",
                "at least one non-empty secret is needed (or secrets_file)",
            ));
        }
        let keys = secrets
            .iter()
            .enumerate()
            .map(|(i, s)| decode_key(cfg.scheme, s, i).map(|k| KeyedMac::new(&k)))
            .collect::<Result<Vec<_>, _>>()?;
        if cfg.tolerance.is_zero() || cfg.tolerance > Duration::from_secs(7 * 24 * 3600) {
            return Err(ConfigError::new(
                "webhook.auth.hmac.tolerance",
                "must be above 0 and at most 7 days",
            ));
        }
        let header = |default: &str| -> Result<HeaderName, ConfigError> {
            header_name(
                "webhook.auth.hmac.header",
                cfg.header.as_deref().unwrap_or(default),
            )
        };
        let scheme = match cfg.scheme {
            HmacScheme::StandardWebhooks => {
                if cfg.header.is_some() || cfg.prefix.is_some() {
                    return Err(ConfigError::new(
                        "webhook.auth.hmac.header",
                        "standard-webhooks uses fixed headers; header and prefix apply to other schemes",
                    ));
                }
                Scheme::StandardWebhooks
            }
            HmacScheme::Stripe => Scheme::Stripe {
                header: header("stripe-signature")?,
            },
            HmacScheme::Hex => Scheme::Hex {
                header: header("x-hub-signature-256")?,
                prefix: cfg.prefix.clone().unwrap_or_else(|| "sha256=".into()),
            },
            HmacScheme::Generic => {
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
                Scheme::Generic {
                    header: header_name("webhook.auth.hmac.header", h)?,
                    prefix: cfg.prefix.clone().unwrap_or_default(),
                    algorithm: cfg.algorithm,
                    encoding: cfg.encoding,
                    timestamp_header,
                    id_header,
                    template,
                }
            }
        };
        let tolerance_secs = i64::try_from(cfg.tolerance.as_secs()).unwrap_or(i64::MAX);
        Ok(Self {
            scheme,
            keys,
            tolerance_secs,
        })
    }

    /// Scheme name for logs.
    pub fn scheme_name(&self) -> &'static str {
        match self.scheme {
            Scheme::StandardWebhooks => "standard-webhooks",
            Scheme::Stripe { .. } => "stripe",
            Scheme::Hex { .. } => "hex",
            Scheme::Generic { .. } => "generic",
        }
    }

    /// Verifies a request; returns the delivery id when the scheme has one.
    pub fn verify(
        &self,
        headers: &HeaderMap,
        body: &[u8],
        now: i64,
    ) -> Result<Option<String>, AuthError> {
        match &self.scheme {
            Scheme::StandardWebhooks => {
                let id = delivery_id(headers, "webhook-id")?;
                let ts_raw = header_str(headers, "webhook-timestamp")?;
                let ts = parse_timestamp("webhook-timestamp", ts_raw)?;
                self.check_time(ts, now)?;
                let sig_header = header_str(headers, "webhook-signature")?;
                let sigs: Vec<Vec<u8>> = sig_header
                    .split_whitespace()
                    .filter_map(|s| s.strip_prefix("v1,"))
                    .filter_map(|s| B64_LENIENT.decode(s).ok())
                    .collect();
                if sigs.is_empty() {
                    return Err(malformed("webhook-signature", "no `v1,<base64>` signature"));
                }
                let parts: [&[u8]; 5] = [id.as_bytes(), b".", ts_raw.as_bytes(), b".", body];
                self.match_any(HmacAlgorithm::Sha256, &parts, &sigs)?;
                Ok(Some(id))
            }
            Scheme::Stripe { header } => {
                let name = header.as_str();
                let value = header_str(headers, name)?;
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
                self.check_time(ts, now)?;
                if sigs.is_empty() {
                    return Err(malformed(name, "no `v1=<hex>` signature"));
                }
                let parts: [&[u8]; 3] = [t_raw.as_bytes(), b".", body];
                self.match_any(HmacAlgorithm::Sha256, &parts, &sigs)?;
                Ok(None)
            }
            Scheme::Hex { header, prefix } => {
                let name = header.as_str();
                let value = header_str(headers, name)?;
                let sigs = offered(value, prefix, SignatureEncoding::Hex);
                if sigs.is_empty() {
                    return Err(malformed(name, "expected `<prefix><hex>`"));
                }
                self.match_any(HmacAlgorithm::Sha256, &[body], &sigs)?;
                Ok(None)
            }
            Scheme::Generic {
                header,
                prefix,
                algorithm,
                encoding,
                timestamp_header,
                id_header,
                template,
            } => {
                let name = header.as_str();
                let value = header_str(headers, name)?;
                let sigs = offered(value, prefix, *encoding);
                if sigs.is_empty() {
                    return Err(malformed(
                        name,
                        "no signature in the expected prefix and encoding",
                    ));
                }
                let ts_raw = match timestamp_header {
                    Some(h) => {
                        let raw = header_str(headers, h.as_str())?;
                        let ts = parse_timestamp(h.as_str(), raw)?;
                        self.check_time(ts, now)?;
                        Some(raw)
                    }
                    None => None,
                };
                let id = match id_header {
                    Some(h) => Some(delivery_id(headers, h.as_str())?),
                    None => None,
                };
                let parts: Vec<&[u8]> = template
                    .iter()
                    .map(|p| match p {
                        Part::Literal(l) => l.as_slice(),
                        Part::Body => body,
                        Part::Timestamp => ts_raw.map(str::as_bytes).unwrap_or_default(),
                        Part::Id => id.as_deref().map(str::as_bytes).unwrap_or_default(),
                    })
                    .collect();
                self.match_any(*algorithm, &parts, &sigs)?;
                Ok(id)
            }
        }
    }

    fn check_time(&self, ts: i64, now: i64) -> Result<(), AuthError> {
        let skew = ts.saturating_sub(now);
        if skew.saturating_abs() > self.tolerance_secs {
            return Err(AuthError::TimestampOutOfTolerance { skew_secs: skew });
        }
        Ok(())
    }

    /// Computes the MAC of `parts` under every key and compares it with every offered signature.
    fn match_any(
        &self,
        alg: HmacAlgorithm,
        parts: &[&[u8]],
        offered: &[Vec<u8>],
    ) -> Result<(), AuthError> {
        let mut ok = subtle::Choice::from(0);
        for key in &self.keys {
            let expected = key.mac(alg, parts);
            for sig in offered {
                // ct_eq on slices of different lengths is false without comparing content.
                ok |= expected.as_slice().ct_eq(sig.as_slice());
            }
        }
        if bool::from(ok) {
            Ok(())
        } else {
            Err(AuthError::SignatureMismatch)
        }
    }
}

/// A key's HMAC states with the key already absorbed (the inner and outer padded key blocks
/// hashed once at start-up), cloned per request instead of re-keyed: two compressions fewer
/// per webhook and no key-schedule work on the hot path.
#[derive(Clone)]
struct KeyedMac {
    sha256: Hmac<Sha256>,
    sha512: Hmac<Sha512>,
}

impl KeyedMac {
    fn new(key: &[u8]) -> Self {
        Self {
            sha256: <Hmac<Sha256> as Mac>::new_from_slice(key)
                .expect("HMAC takes keys of any length"),
            sha512: <Hmac<Sha512> as Mac>::new_from_slice(key)
                .expect("HMAC takes keys of any length"),
        }
    }

    /// HMAC of the concatenation of `parts`; the same bytes as [`mac`] with this key.
    fn mac(&self, alg: HmacAlgorithm, parts: &[&[u8]]) -> MacBytes {
        match alg {
            HmacAlgorithm::Sha256 => {
                let mut m = self.sha256.clone();
                parts.iter().for_each(|p| m.update(p));
                MacBytes::Sha256(m.finalize().into_bytes().into())
            }
            HmacAlgorithm::Sha512 => {
                let mut m = self.sha512.clone();
                parts.iter().for_each(|p| m.update(p));
                MacBytes::Sha512(m.finalize().into_bytes().into())
            }
        }
    }
}

/// A MAC on the stack.
enum MacBytes {
    Sha256([u8; 32]),
    Sha512([u8; 64]),
}

impl MacBytes {
    fn as_slice(&self) -> &[u8] {
        match self {
            MacBytes::Sha256(b) => b,
            MacBytes::Sha512(b) => b,
        }
    }
}

/// HMAC of the concatenation of `parts`.
pub fn mac(alg: HmacAlgorithm, key: &[u8], parts: &[&[u8]]) -> Vec<u8> {
    match alg {
        HmacAlgorithm::Sha256 => {
            let mut m =
                <Hmac<Sha256> as Mac>::new_from_slice(key).expect("HMAC takes keys of any length");
            parts.iter().for_each(|p| m.update(p));
            m.finalize().into_bytes().to_vec()
        }
        HmacAlgorithm::Sha512 => {
            let mut m =
                <Hmac<Sha512> as Mac>::new_from_slice(key).expect("HMAC takes keys of any length");
            parts.iter().for_each(|p| m.update(p));
            m.finalize().into_bytes().to_vec()
        }
    }
}

/// Signatures offered in a header value: comma- or space-separated, each with `prefix` removed.
fn offered(value: &str, prefix: &str, encoding: SignatureEncoding) -> Vec<Vec<u8>> {
    value
        .split([',', ' '])
        .filter(|s| !s.is_empty())
        .filter_map(|s| s.strip_prefix(prefix))
        .filter_map(|s| match encoding {
            SignatureEncoding::Hex => hex::decode(s).ok(),
            SignatureEncoding::Base64 => B64_LENIENT.decode(s).ok(),
        })
        .collect()
}

fn malformed(header: &str, reason: &'static str) -> AuthError {
    AuthError::Malformed {
        header: header.to_owned(),
        reason,
    }
}

fn header_str<'a>(headers: &'a HeaderMap, name: &str) -> Result<&'a str, AuthError> {
    let mut values = headers.get_all(name).iter();
    let value = values
        .next()
        .ok_or_else(|| AuthError::MissingHeader(name.to_owned()))?;
    if values.next().is_some() {
        return Err(malformed(name, "sent more than once"));
    }
    let s = value
        .to_str()
        .map_err(|_| malformed(name, "not visible ASCII"))?;
    Ok(s.trim())
}

fn parse_timestamp(header: &str, raw: &str) -> Result<i64, AuthError> {
    if raw.is_empty() || raw.len() > 12 || !raw.bytes().all(|b| b.is_ascii_digit()) {
        return Err(malformed(header, "timestamp is not unix seconds"));
    }
    raw.parse()
        .map_err(|_| malformed(header, "timestamp is not unix seconds"))
}

/// A delivery id header: 1–256 visible ASCII characters, since it becomes the `Nats-Msg-Id`.
fn delivery_id(headers: &HeaderMap, name: &str) -> Result<String, AuthError> {
    let id = header_str(headers, name)?;
    if id.is_empty() || id.len() > MAX_ID_LEN || !id.bytes().all(|b| b.is_ascii_graphic()) {
        return Err(malformed(name, "id must be 1-256 visible ASCII characters"));
    }
    Ok(id.to_owned())
}

fn header_name(key: &str, name: &str) -> Result<HeaderName, ConfigError> {
    HeaderName::from_bytes(name.trim().to_ascii_lowercase().as_bytes())
        .map_err(|_| ConfigError::new(key, "is not a valid HTTP header name"))
}

/// Standard Webhooks keys are `whsec_<base64>`; other schemes use the secret's bytes as given.
fn decode_key(scheme: HmacScheme, secret: &Secret, index: usize) -> Result<Vec<u8>, ConfigError> {
    let raw = secret.expose();
    match (scheme, raw.strip_prefix("whsec_")) {
        (HmacScheme::StandardWebhooks, Some(encoded)) => {
            B64_LENIENT.decode(encoded).map_err(|_| {
                ConfigError::new(
                    "webhook.auth.hmac.secrets",
                    format!(
                        "secret #{} starts with `whsec_` but the rest is not base64",
                        index + 1
                    ),
                )
            })
        }
        _ => Ok(raw.as_bytes().to_vec()),
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
            if !has_ts {
                return Err(ConfigError::new(
                    KEY,
                    "uses {timestamp} but timestamp_header is not set",
                ));
            }
            (Some(Part::Timestamp), 11)
        } else if rest.starts_with("{id}") {
            if !has_id {
                return Err(ConfigError::new(KEY, "uses {id} but id_header is not set"));
            }
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
    if !parts.contains(&Part::Body) {
        return Err(ConfigError::new(KEY, "must contain {body}"));
    }
    if has_ts && !parts.contains(&Part::Timestamp) {
        return Err(ConfigError::new(
            KEY,
            "must contain {timestamp} when timestamp_header is set, or the timestamp is not signed",
        ));
    }
    Ok(parts)
}

/// Signs like a sender would: the header(s) to add for `body` under `secret`. Used by tests,
/// the demo and the load generator, so they exercise exactly the verifier's schemes.
pub fn sign_headers(
    cfg: &HmacConfig,
    secret: &str,
    body: &[u8],
    now: i64,
    id: &str,
) -> Vec<(String, String)> {
    let key = decode_key(cfg.scheme, &Secret::new(secret), 0)
        .unwrap_or_else(|_| secret.as_bytes().to_vec());
    let ts = now.to_string();
    match cfg.scheme {
        HmacScheme::StandardWebhooks => {
            let sig = mac(
                HmacAlgorithm::Sha256,
                &key,
                &[id.as_bytes(), b".", ts.as_bytes(), b".", body],
            );
            vec![
                ("webhook-id".into(), id.into()),
                ("webhook-timestamp".into(), ts),
                (
                    "webhook-signature".into(),
                    format!("v1,{}", B64.encode(sig)),
                ),
            ]
        }
        HmacScheme::Stripe => {
            let sig = mac(HmacAlgorithm::Sha256, &key, &[ts.as_bytes(), b".", body]);
            let h = cfg
                .header
                .clone()
                .unwrap_or_else(|| "stripe-signature".into());
            vec![(h, format!("t={ts},v1={}", hex::encode(sig)))]
        }
        HmacScheme::Hex => {
            let sig = mac(HmacAlgorithm::Sha256, &key, &[body]);
            let h = cfg
                .header
                .clone()
                .unwrap_or_else(|| "x-hub-signature-256".into());
            let p = cfg.prefix.clone().unwrap_or_else(|| "sha256=".into());
            vec![(h, format!("{p}{}", hex::encode(sig)))]
        }
        HmacScheme::Generic => {
            let default_template = if cfg.timestamp_header.is_some() {
                "{timestamp}.{body}"
            } else {
                "{body}"
            };
            let template = cfg.signed_template.as_deref().unwrap_or(default_template);
            let signed = template
                .replace("{timestamp}", &ts)
                .replace("{id}", id)
                .into_bytes();
            // Substitute the body last, byte-wise, so a body containing "{id}" is not rewritten.
            let mut msg = Vec::new();
            let mut rest = signed.as_slice();
            while let Some(pos) = find(rest, b"{body}") {
                msg.extend_from_slice(&rest[..pos]);
                msg.extend_from_slice(body);
                rest = &rest[pos + 6..];
            }
            msg.extend_from_slice(rest);
            let sig = mac(cfg.algorithm, &key, &[&msg]);
            let encoded = match cfg.encoding {
                SignatureEncoding::Hex => hex::encode(sig),
                SignatureEncoding::Base64 => B64.encode(sig),
            };
            let mut out = vec![(
                cfg.header.clone().unwrap_or_default(),
                format!("{}{encoded}", cfg.prefix.clone().unwrap_or_default()),
            )];
            if let Some(h) = &cfg.timestamp_header {
                out.push((h.clone(), ts));
            }
            if let Some(h) = &cfg.id_header {
                out.push((h.clone(), id.into()));
            }
            out
        }
    }
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::HeaderValue;

    const NOW: i64 = 1_700_000_000;
    const BODY: &[u8] = br#"{"request_id":"4ed2ec66-9471-415d-99ce-7bd1742fc2b8","status":"PASS"}"#;

    #[test]
    fn a_prepared_key_gives_the_same_mac_as_keying_each_time() {
        let long_key = [7u8; 200]; // longer than a block: hashed first
        for key in [&b"k"[..], &b"whsec-like key bytes"[..], &long_key[..]] {
            let prepared = KeyedMac::new(key);
            for alg in [HmacAlgorithm::Sha256, HmacAlgorithm::Sha512] {
                let parts: [&[u8]; 3] = [b"id.", b"1700000000.", BODY];
                // Twice: the prepared state must not be consumed by the first use.
                assert_eq!(prepared.mac(alg, &parts).as_slice(), mac(alg, key, &parts));
                assert_eq!(prepared.mac(alg, &parts).as_slice(), mac(alg, key, &parts));
            }
        }
    }

    fn cfg(scheme: HmacScheme, secrets: &[&str]) -> HmacConfig {
        HmacConfig {
            scheme,
            secrets: secrets.iter().map(|s| Secret::new(*s)).collect(),
            ..HmacConfig::default()
        }
    }

    fn generic_cfg(secrets: &[&str]) -> HmacConfig {
        HmacConfig {
            header: Some("X-VX-Signature".into()),
            prefix: Some("sha512=".into()),
            algorithm: HmacAlgorithm::Sha512,
            encoding: SignatureEncoding::Base64,
            timestamp_header: Some("X-VX-Timestamp".into()),
            id_header: Some("X-VX-Delivery".into()),
            signed_template: Some("{id}:{timestamp}:{body}".into()),
            ..cfg(HmacScheme::Generic, secrets)
        }
    }

    fn all_configs(secrets: &[&str]) -> Vec<HmacConfig> {
        vec![
            cfg(HmacScheme::StandardWebhooks, secrets),
            cfg(HmacScheme::Stripe, secrets),
            cfg(HmacScheme::Hex, secrets),
            generic_cfg(secrets),
        ]
    }

    fn headers(pairs: &[(String, String)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.append(
                HeaderName::from_bytes(k.to_ascii_lowercase().as_bytes()).unwrap(),
                HeaderValue::from_str(v).unwrap(),
            );
        }
        h
    }

    const SECRET_A: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
    const SECRET_B: &str = "whsec_c2Vjb25kLXNlY3JldC1mb3Itcm90YXRpb24=";

    #[test]
    fn standard_webhooks_spec_test_vector_verifies() {
        // From the Standard Webhooks specification's reference tests.
        let v = HmacVerifier::from_config(&cfg(HmacScheme::StandardWebhooks, &[SECRET_A])).unwrap();
        let h = headers(&[
            ("webhook-id".into(), "msg_p5jXN8AQM9LWM0D4loKWxJek".into()),
            ("webhook-timestamp".into(), "1614265330".into()),
            (
                "webhook-signature".into(),
                "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=".into(),
            ),
        ]);
        let id = v
            .verify(&h, br#"{"test": 2432232314}"#, 1_614_265_330)
            .unwrap();
        assert_eq!(id.as_deref(), Some("msg_p5jXN8AQM9LWM0D4loKWxJek"));
    }

    #[test]
    fn every_scheme_accepts_a_valid_signature_and_the_second_secret() {
        for c in all_configs(&[SECRET_A, SECRET_B]) {
            let v = HmacVerifier::from_config(&c).unwrap();
            for secret in [SECRET_A, SECRET_B] {
                let h = headers(&sign_headers(&c, secret, BODY, NOW, "msg_1"));
                let got = v.verify(&h, BODY, NOW);
                assert!(got.is_ok(), "{:?} {got:?}", c.scheme);
            }
        }
    }

    #[test]
    fn every_scheme_rejects_a_tampered_body_and_a_wrong_secret() {
        for c in all_configs(&[SECRET_A]) {
            let v = HmacVerifier::from_config(&c).unwrap();
            let h = headers(&sign_headers(&c, SECRET_A, BODY, NOW, "msg_1"));
            let mut tampered = BODY.to_vec();
            tampered[60] ^= 1;
            assert_eq!(
                v.verify(&h, &tampered, NOW),
                Err(AuthError::SignatureMismatch),
                "{:?}",
                c.scheme
            );
            let h = headers(&sign_headers(&c, SECRET_B, BODY, NOW, "msg_1"));
            assert_eq!(
                v.verify(&h, BODY, NOW),
                Err(AuthError::SignatureMismatch),
                "{:?}",
                c.scheme
            );
        }
    }

    #[test]
    fn timestamped_schemes_reject_expired_and_future_timestamps() {
        for c in [
            cfg(HmacScheme::StandardWebhooks, &[SECRET_A]),
            cfg(HmacScheme::Stripe, &[SECRET_A]),
            generic_cfg(&[SECRET_A]),
        ] {
            let v = HmacVerifier::from_config(&c).unwrap();
            for signed_at in [NOW - 301, NOW + 301] {
                let h = headers(&sign_headers(&c, SECRET_A, BODY, signed_at, "msg_1"));
                let err = v.verify(&h, BODY, NOW).unwrap_err();
                assert_eq!(err.code(), "timestamp_out_of_tolerance", "{:?}", c.scheme);
            }
            for signed_at in [NOW - 299, NOW + 299] {
                let h = headers(&sign_headers(&c, SECRET_A, BODY, signed_at, "msg_1"));
                assert!(v.verify(&h, BODY, NOW).is_ok());
            }
        }
    }

    #[test]
    fn missing_and_malformed_headers_are_reported_by_name() {
        for c in all_configs(&[SECRET_A]) {
            let v = HmacVerifier::from_config(&c).unwrap();
            let err = v.verify(&HeaderMap::new(), BODY, NOW).unwrap_err();
            assert_eq!(err.code(), "missing_header", "{:?}", c.scheme);
            // Every header present, but each signature value replaced by garbage.
            let mut pairs = sign_headers(&c, SECRET_A, BODY, NOW, "msg_1");
            pairs[0].1 = if c.scheme == HmacScheme::StandardWebhooks {
                "id with space".into()
            } else {
                "garbage".into()
            };
            let err = v.verify(&headers(&pairs), BODY, NOW).unwrap_err();
            assert_eq!(err.code(), "malformed_header", "{:?}", c.scheme);
        }
    }

    #[test]
    fn malformed_variants_of_each_header() {
        let sw =
            HmacVerifier::from_config(&cfg(HmacScheme::StandardWebhooks, &[SECRET_A])).unwrap();
        let good = sign_headers(
            &cfg(HmacScheme::StandardWebhooks, &[SECRET_A]),
            SECRET_A,
            BODY,
            NOW,
            "msg_1",
        );
        let with = |name: &str, value: &str| {
            let mut p = good.clone();
            for kv in &mut p {
                if kv.0 == name {
                    kv.1 = value.into();
                }
            }
            headers(&p)
        };
        for (name, value) in [
            ("webhook-signature", "v2,abc"),
            ("webhook-signature", "v1,!!!"),
            ("webhook-signature", ""),
            ("webhook-timestamp", "-5"),
            ("webhook-timestamp", "12.5"),
            ("webhook-timestamp", "99999999999999999999"),
            ("webhook-id", ""),
        ] {
            let err = sw.verify(&with(name, value), BODY, NOW).unwrap_err();
            assert_eq!(err.code(), "malformed_header", "{name}={value}");
        }
        // A duplicated signature header is refused rather than guessed at.
        let mut dup = good.clone();
        dup.push(("webhook-signature".into(), "v1,AAAA".into()));
        assert_eq!(
            sw.verify(&headers(&dup), BODY, NOW).unwrap_err().code(),
            "malformed_header"
        );

        let st = HmacVerifier::from_config(&cfg(HmacScheme::Stripe, &[SECRET_A])).unwrap();
        for value in [
            "v1=abcd",
            "t=1700000000",
            "t=abc,v1=00",
            "t=1700000000,v1=zz",
        ] {
            let h = headers(&[("stripe-signature".into(), value.into())]);
            assert_eq!(
                st.verify(&h, BODY, NOW).unwrap_err().code(),
                "malformed_header",
                "{value}"
            );
        }
        let hx = HmacVerifier::from_config(&cfg(HmacScheme::Hex, &[SECRET_A])).unwrap();
        for value in ["sha1=abcd", "sha256=xyz", "abcdef"] {
            let h = headers(&[("x-hub-signature-256".into(), value.into())]);
            assert_eq!(
                hx.verify(&h, BODY, NOW).unwrap_err().code(),
                "malformed_header",
                "{value}"
            );
        }
    }

    #[test]
    fn stripe_accepts_any_of_several_v1_signatures() {
        let c = cfg(HmacScheme::Stripe, &[SECRET_A]);
        let v = HmacVerifier::from_config(&c).unwrap();
        let good = sign_headers(&c, SECRET_A, BODY, NOW, "");
        let sig = good[0].1.split("v1=").nth(1).unwrap();
        let h = headers(&[(
            "stripe-signature".into(),
            format!("t={NOW},v1={},v1={sig},v0=00", "00".repeat(32)),
        )]);
        assert!(v.verify(&h, BODY, NOW).is_ok());
    }

    #[test]
    fn generic_returns_the_delivery_id_and_signs_it() {
        let c = generic_cfg(&[SECRET_A]);
        let v = HmacVerifier::from_config(&c).unwrap();
        let mut pairs = sign_headers(&c, SECRET_A, BODY, NOW, "delivery-7");
        assert_eq!(
            v.verify(&headers(&pairs), BODY, NOW).unwrap().as_deref(),
            Some("delivery-7")
        );
        // Changing the id breaks the signature, since the template signs it.
        for kv in &mut pairs {
            if kv.0 == "X-VX-Delivery" {
                kv.1 = "delivery-8".into();
            }
        }
        assert_eq!(
            v.verify(&headers(&pairs), BODY, NOW),
            Err(AuthError::SignatureMismatch)
        );
    }

    #[test]
    fn config_errors_name_their_key() {
        let mut c = cfg(HmacScheme::Generic, &[SECRET_A]);
        assert_eq!(
            HmacVerifier::from_config(&c).unwrap_err().key,
            "webhook.auth.hmac.header"
        );
        c.header = Some("bad header".into());
        assert_eq!(
            HmacVerifier::from_config(&c).unwrap_err().key,
            "webhook.auth.hmac.header"
        );
        c.header = Some("x-sig".into());
        c.signed_template = Some("{timestamp}".into());
        assert_eq!(
            HmacVerifier::from_config(&c).unwrap_err().key,
            "webhook.auth.hmac.signed_template"
        );
        c.signed_template = Some("{body}".into());
        assert!(HmacVerifier::from_config(&c).is_ok());
        assert_eq!(
            HmacVerifier::from_config(&cfg(HmacScheme::Hex, &[]))
                .unwrap_err()
                .key,
            "webhook.auth.hmac.secrets"
        );
        let bad = HmacVerifier::from_config(&cfg(HmacScheme::StandardWebhooks, &["whsec_!!!"]))
            .unwrap_err();
        assert_eq!(bad.key, "webhook.auth.hmac.secrets");
        assert!(
            !bad.message.contains("!!!"),
            "the secret must not be echoed"
        );
    }
}

#[cfg(test)]
mod proptests {
    use super::*;
    use http::HeaderValue;
    use proptest::prelude::*;

    fn configs() -> Vec<HmacConfig> {
        let base = |scheme| HmacConfig {
            scheme,
            secrets: vec![Secret::new("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw")],
            ..HmacConfig::default()
        };
        vec![
            base(HmacScheme::StandardWebhooks),
            base(HmacScheme::Stripe),
            base(HmacScheme::Hex),
            HmacConfig {
                header: Some("x-sig".into()),
                timestamp_header: Some("x-ts".into()),
                id_header: Some("x-id".into()),
                encoding: SignatureEncoding::Base64,
                signed_template: Some("{id}|{timestamp}|{body}".into()),
                ..base(HmacScheme::Generic)
            },
        ]
    }

    const HEADERS: [&str; 8] = [
        "webhook-id",
        "webhook-timestamp",
        "webhook-signature",
        "stripe-signature",
        "x-hub-signature-256",
        "x-sig",
        "x-ts",
        "x-id",
    ];

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(256))]

        /// Any header values at all: an error or a success, never a panic.
        #[test]
        fn arbitrary_headers_never_panic(values in proptest::collection::vec("[ -~]{0,120}", 8), body in proptest::collection::vec(any::<u8>(), 0..256)) {
            let mut h = HeaderMap::new();
            for (name, v) in HEADERS.iter().zip(values.iter()) {
                if let Ok(hv) = HeaderValue::from_str(v) {
                    h.insert(*name, hv);
                }
            }
            for c in configs() {
                let v = HmacVerifier::from_config(&c).unwrap();
                let _ = v.verify(&h, &body, 1_700_000_000);
            }
        }

        /// A correct signature verifies for any body; flipping any bit of the body breaks it.
        #[test]
        fn signatures_bind_every_byte(body in proptest::collection::vec(any::<u8>(), 1..512), flip in any::<proptest::sample::Index>(), bit in 0u8..8) {
            for c in configs() {
                let v = HmacVerifier::from_config(&c).unwrap();
                let pairs = sign_headers(&c, c.secrets[0].expose(), &body, 1_700_000_000, "msg_prop");
                let mut h = HeaderMap::new();
                for (k, val) in &pairs {
                    h.insert(HeaderName::from_bytes(k.to_ascii_lowercase().as_bytes()).unwrap(), HeaderValue::from_str(val).unwrap());
                }
                prop_assert!(v.verify(&h, &body, 1_700_000_000).is_ok());
                let mut tampered = body.clone();
                let i = flip.index(tampered.len());
                tampered[i] ^= 1 << bit;
                prop_assert_eq!(v.verify(&h, &tampered, 1_700_000_000), Err(AuthError::SignatureMismatch));
            }
        }
    }
}
