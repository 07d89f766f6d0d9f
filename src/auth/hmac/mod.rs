//! HMAC signature schemes, one file each: Standard Webhooks (`standard_webhooks.rs`), Stripe
//! style (`stripe.rs`), GitHub-style hex (`hex.rs`), and a generic scheme (`generic.rs`) whose
//! header, prefix, hash, encoding, timestamp and signed string are all configurable.
//!
//! Each scheme is parsed once from `webhook.auth.hmac` into a `Scheme`; the verifier and the
//! [`Signer`] are both built from that parse, so what tests and tools sign is what the service
//! checks. The expected MACs are computed for every configured secret (several during rotation)
//! and compared in constant time with every signature offered. Nothing here reads files: the
//! secrets are handed in.

mod generic;
mod hex;
mod standard_webhooks;
mod stripe;

use std::time::Duration;

use base64::Engine as _;
use hmac::{Hmac, Mac};
use http::{HeaderMap, HeaderName};
use sha2::{Sha256, Sha512};
use subtle::ConstantTimeEq;

use super::AuthError;
use crate::config::{
    reject_if, ConfigError, HmacAlgorithm, HmacConfig, HmacScheme, SignatureEncoding,
};
use crate::secret::Secret;

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
    keys: Keys,
}

impl std::fmt::Debug for HmacVerifier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HmacVerifier")
            .field("scheme", &self.scheme)
            .field("keys", &self.keys.macs.len())
            .field("tolerance_secs", &self.keys.tolerance_secs)
            .finish()
    }
}

/// A scheme as parsed from `webhook.auth.hmac`, without keys: what both the verifier and the
/// signer are built from.
#[derive(Debug)]
enum Scheme {
    StandardWebhooks(standard_webhooks::StandardWebhooks),
    Stripe(stripe::Stripe),
    Hex(hex::Hex),
    Generic(generic::Generic),
}

impl Scheme {
    /// Parses the scheme's keys (headers, prefix, template); names the bad key.
    fn parse(cfg: &HmacConfig) -> Result<Self, ConfigError> {
        Ok(match cfg.scheme {
            HmacScheme::StandardWebhooks => {
                Scheme::StandardWebhooks(standard_webhooks::StandardWebhooks::parse(cfg)?)
            }
            HmacScheme::Stripe => Scheme::Stripe(stripe::Stripe::parse(cfg)?),
            HmacScheme::Hex => Scheme::Hex(hex::Hex::parse(cfg)?),
            HmacScheme::Generic => Scheme::Generic(generic::Generic::parse(cfg)?),
        })
    }

    /// The headers a sender adds for `body` signed with `key` at `now` (unix seconds), with
    /// delivery id `id` where the scheme carries one.
    fn sign(&self, key: &KeyedMac, body: &[u8], now: i64, id: &str) -> Vec<(String, String)> {
        let ts = now.to_string();
        match self {
            Scheme::StandardWebhooks(s) => s.sign(key, body, &ts, id),
            Scheme::Stripe(s) => s.sign(key, body, &ts),
            Scheme::Hex(s) => s.sign(key, body),
            Scheme::Generic(s) => s.sign(key, body, &ts, id),
        }
    }
}

impl HmacVerifier {
    /// Builds the verifier from `webhook.auth.hmac` and the accepted secrets (inline and from
    /// `secrets_file`, already read).
    pub fn from_config(cfg: &HmacConfig, secrets: &[Secret]) -> Result<Self, ConfigError> {
        reject_if(
            secrets.is_empty() || secrets.iter().any(Secret::is_empty),
            "webhook.auth.hmac.secrets",
            "at least one non-empty secret is needed (or secrets_file)",
        )?;
        let macs = secrets
            .iter()
            .enumerate()
            .map(|(i, s)| decode_key(cfg.scheme, s, i).map(|k| KeyedMac::new(&k)))
            .collect::<Result<Vec<_>, _>>()?;
        reject_if(
            cfg.tolerance.is_zero() || cfg.tolerance > Duration::from_secs(7 * 24 * 3600),
            "webhook.auth.hmac.tolerance",
            "must be above 0 and at most 7 days",
        )?;
        let scheme = Scheme::parse(cfg)?;
        let tolerance_secs = i64::try_from(cfg.tolerance.as_secs()).unwrap_or(i64::MAX);
        Ok(Self {
            scheme,
            keys: Keys {
                macs,
                tolerance_secs,
            },
        })
    }

    /// Scheme name for logs.
    pub fn scheme_name(&self) -> &'static str {
        match self.scheme {
            Scheme::StandardWebhooks(_) => "standard-webhooks",
            Scheme::Stripe(_) => "stripe",
            Scheme::Hex(_) => "hex",
            Scheme::Generic(_) => "generic",
        }
    }

    /// Verifies a request; returns the delivery id when the scheme has one.
    pub fn verify(
        &self,
        headers: &HeaderMap,
        body: &[u8],
        now: i64,
    ) -> Result<Option<String>, AuthError> {
        let (keys, req) = (&self.keys, &Request { headers, body, now });
        match &self.scheme {
            Scheme::StandardWebhooks(s) => s.verify(keys, req),
            Scheme::Stripe(s) => s.verify(keys, req),
            Scheme::Hex(s) => s.verify(keys, req),
            Scheme::Generic(s) => s.verify(keys, req),
        }
    }
}

/// One request as a scheme checks it: its headers, its raw body, and the time (unix seconds).
struct Request<'a> {
    headers: &'a HeaderMap,
    body: &'a [u8],
    now: i64,
}

/// The accepted keys and the timestamp tolerance: what every scheme checks against.
struct Keys {
    macs: Vec<KeyedMac>,
    tolerance_secs: i64,
}

impl Keys {
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
        for key in &self.macs {
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

/// Signs like a sender would, for one secret: built from the same parsed `Scheme` as the
/// verifier, so tests, the demo and the load generator exercise exactly the verifier's schemes.
pub struct Signer {
    scheme: Scheme,
    key: KeyedMac,
}

impl std::fmt::Debug for Signer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Signer")
            .field("scheme", &self.scheme)
            .finish()
    }
}

impl Signer {
    /// A signer for `webhook.auth.hmac` and `secret`; refuses what the verifier refuses.
    pub fn new(cfg: &HmacConfig, secret: &str) -> Result<Self, ConfigError> {
        let key = decode_key(cfg.scheme, &Secret::new(secret), 0)?;
        Ok(Self {
            scheme: Scheme::parse(cfg)?,
            key: KeyedMac::new(&key),
        })
    }

    /// The header(s) to add for `body` signed at `now` (unix seconds), with delivery id `id`
    /// where the scheme carries one.
    pub fn sign(&self, body: &[u8], now: i64, id: &str) -> Vec<(String, String)> {
        self.scheme.sign(&self.key, body, now, id)
    }
}

/// [`Signer::sign`] in one call. A configuration the verifier would refuse signs nothing (no
/// headers), so such a request fails authentication as it would from a real sender.
pub fn sign_headers(
    cfg: &HmacConfig,
    secret: &str,
    body: &[u8],
    now: i64,
    id: &str,
) -> Vec<(String, String)> {
    Signer::new(cfg, secret)
        .map(|s| s.sign(body, now, id))
        .unwrap_or_default()
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

    /// HMAC of the concatenation of `parts`; the same bytes as keying a fresh MAC each time
    /// (a test proves it).
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

/// The one header that carries a scheme's signatures, each `prefix` and then the MAC in
/// `encoding` (hex and generic).
#[derive(Debug)]
struct SignatureHeader {
    name: HeaderName,
    prefix: String,
    encoding: SignatureEncoding,
}

impl SignatureHeader {
    /// The signatures offered in the header (see [`offered`]); none is malformed, with
    /// `none_reason`.
    fn signatures(
        &self,
        headers: &HeaderMap,
        none_reason: &'static str,
    ) -> Result<Vec<Vec<u8>>, AuthError> {
        let name = self.name.as_str();
        let sigs = offered(
            sole_header_trimmed(headers, name)?,
            &self.prefix,
            self.encoding,
        );
        if sigs.is_empty() {
            return Err(malformed(name, none_reason));
        }
        Ok(sigs)
    }

    /// The header a sender adds for the MAC `sig`.
    fn signed(&self, sig: &[u8]) -> (String, String) {
        let encoded = match self.encoding {
            SignatureEncoding::Hex => ::hex::encode(sig),
            SignatureEncoding::Base64 => B64.encode(sig),
        };
        (
            self.name.as_str().into(),
            format!("{}{encoded}", self.prefix),
        )
    }
}

/// Signatures offered in a header value: comma- or space-separated, each with `prefix` removed.
fn offered(value: &str, prefix: &str, encoding: SignatureEncoding) -> Vec<Vec<u8>> {
    value
        .split([',', ' '])
        .filter(|s| !s.is_empty())
        .filter_map(|s| s.strip_prefix(prefix))
        .filter_map(|s| match encoding {
            SignatureEncoding::Hex => ::hex::decode(s).ok(),
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

/// The value of a header that must be sent exactly once, as visible ASCII, trimmed. Missing,
/// repeated or unreadable is an [`AuthError`] naming the header.
fn sole_header_trimmed<'a>(headers: &'a HeaderMap, name: &str) -> Result<&'a str, AuthError> {
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
    let id = sole_header_trimmed(headers, name)?;
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

#[cfg(test)]
mod tests {
    use super::*;
    use http::HeaderValue;

    const NOW: i64 = 1_700_000_000;
    const BODY: &[u8] = br#"{"request_id":"4ed2ec66-9471-415d-99ce-7bd1742fc2b8","status":"PASS"}"#;

    /// HMAC of the concatenation of `parts`, keyed afresh.
    fn mac(alg: HmacAlgorithm, key: &[u8], parts: &[&[u8]]) -> Vec<u8> {
        match alg {
            HmacAlgorithm::Sha256 => {
                let mut m = <Hmac<Sha256> as Mac>::new_from_slice(key).unwrap();
                parts.iter().for_each(|p| m.update(p));
                m.finalize().into_bytes().to_vec()
            }
            HmacAlgorithm::Sha512 => {
                let mut m = <Hmac<Sha512> as Mac>::new_from_slice(key).unwrap();
                parts.iter().for_each(|p| m.update(p));
                m.finalize().into_bytes().to_vec()
            }
        }
    }

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

    /// The verifier for `c` with its inline secrets, as `app::prepare` resolves them.
    fn verifier(c: &HmacConfig) -> Result<HmacVerifier, ConfigError> {
        HmacVerifier::from_config(c, &c.secrets)
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
        let v = verifier(&cfg(HmacScheme::StandardWebhooks, &[SECRET_A])).unwrap();
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
            let v = verifier(&c).unwrap();
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
            let v = verifier(&c).unwrap();
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
            let v = verifier(&c).unwrap();
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
            let v = verifier(&c).unwrap();
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
        let sw = verifier(&cfg(HmacScheme::StandardWebhooks, &[SECRET_A])).unwrap();
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

        let st = verifier(&cfg(HmacScheme::Stripe, &[SECRET_A])).unwrap();
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
        let hx = verifier(&cfg(HmacScheme::Hex, &[SECRET_A])).unwrap();
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
        let v = verifier(&c).unwrap();
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
        let v = verifier(&c).unwrap();
        let mut pairs = sign_headers(&c, SECRET_A, BODY, NOW, "delivery-7");
        assert_eq!(
            v.verify(&headers(&pairs), BODY, NOW).unwrap().as_deref(),
            Some("delivery-7")
        );
        // Changing the id breaks the signature, since the template signs it.
        for kv in &mut pairs {
            if kv.0.eq_ignore_ascii_case("X-VX-Delivery") {
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
        assert_eq!(verifier(&c).unwrap_err().key, "webhook.auth.hmac.header");
        c.header = Some("bad header".into());
        assert_eq!(verifier(&c).unwrap_err().key, "webhook.auth.hmac.header");
        c.header = Some("x-sig".into());
        c.signed_template = Some("{timestamp}".into());
        assert_eq!(
            verifier(&c).unwrap_err().key,
            "webhook.auth.hmac.signed_template"
        );
        c.signed_template = Some("{body}".into());
        assert!(verifier(&c).is_ok());
        assert_eq!(
            verifier(&cfg(HmacScheme::Hex, &[])).unwrap_err().key,
            "webhook.auth.hmac.secrets"
        );
        let bad = verifier(&cfg(HmacScheme::StandardWebhooks, &["whsec_!!!"])).unwrap_err();
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
                let v = HmacVerifier::from_config(&c, &c.secrets).unwrap();
                let _ = v.verify(&h, &body, 1_700_000_000);
            }
        }

        /// A correct signature verifies for any body; flipping any bit of the body breaks it.
        #[test]
        fn signatures_bind_every_byte(body in proptest::collection::vec(any::<u8>(), 1..512), flip in any::<proptest::sample::Index>(), bit in 0u8..8) {
            for c in configs() {
                let v = HmacVerifier::from_config(&c, &c.secrets).unwrap();
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
