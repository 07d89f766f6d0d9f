//! Fuzz harnesses, shared by the cargo-fuzz targets in `fuzz/` and by the corpus-replay test
//! (`tests/it/fuzz_corpus.rs`), so the seed corpus runs in every `cargo test` on stable Rust.
//!
//! Each harness takes arbitrary bytes, drives one input-facing function, and panics only when an
//! oracle is violated (a forged signature accepted, an event that does not carry its body or
//! fails its schema). Not used by the service itself.

use std::sync::OnceLock;

use http::{HeaderMap, HeaderName, HeaderValue};
use serde_json::Value;

use crate::auth::{Verified, Verifier};
use crate::config::{
    AuthConfig, AuthMode, BasicAuthConfig, HmacAlgorithm, HmacConfig, HmacScheme, SignatureEncoding,
};
use crate::event::{build_event, build_rejected, RejectReason};
use crate::nats::Subjects;
use crate::schema::{Schemas, Violation};
use crate::secret::Secret;
use crate::telemetry::TraceContext;

/// The fixed "now" the signature harness verifies at.
pub const NOW: i64 = 1_700_000_000;

fn verifiers() -> &'static [Verifier] {
    static V: OnceLock<Vec<Verifier>> = OnceLock::new();
    V.get_or_init(|| {
        let secrets = vec![
            Secret::new("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"),
            Secret::new("second-secret"),
        ];
        let hmac = |scheme| HmacConfig {
            scheme,
            secrets: secrets.clone(),
            ..HmacConfig::default()
        };
        let generic = HmacConfig {
            header: Some("x-vx-signature".into()),
            prefix: Some("sha512=".into()),
            algorithm: HmacAlgorithm::Sha512,
            encoding: SignatureEncoding::Base64,
            timestamp_header: Some("x-vx-timestamp".into()),
            id_header: Some("x-vx-delivery".into()),
            signed_template: Some("{id}:{timestamp}:{body}".into()),
            ..hmac(HmacScheme::Generic)
        };
        let configs = [
            hmac(HmacScheme::StandardWebhooks),
            hmac(HmacScheme::Stripe),
            hmac(HmacScheme::Hex),
            generic,
        ];
        let mut out: Vec<Verifier> = configs
            .into_iter()
            .filter_map(|h| {
                Verifier::from_config(
                    &AuthConfig {
                        mode: Some(AuthMode::Hmac),
                        hmac: h,
                        ..AuthConfig::default()
                    },
                    &secrets,
                )
                .ok()
            })
            .collect();
        let basic = AuthConfig {
            mode: Some(AuthMode::Basic),
            basic: BasicAuthConfig {
                username: "vx".into(),
                passwords: vec![Secret::new("p4ss")],
                passwords_file: None,
            },
            ..AuthConfig::default()
        };
        if let Ok(b) = Verifier::from_config(&basic, &basic.basic.passwords) {
            out.push(b);
        }
        out
    })
}

/// Splits fuzz input into headers and a body: `name: value` lines, an empty line, the body.
/// Lines that are not a valid header are skipped (the HTTP server would refuse them).
pub fn split_request(data: &[u8]) -> (HeaderMap, &[u8]) {
    let (head, body) = match data.windows(2).position(|w| w == b"\n\n") {
        Some(p) => (&data[..p], &data[p + 2..]),
        None => (data, &[][..]),
    };
    let mut headers = HeaderMap::new();
    for line in head.split(|b| *b == b'\n') {
        let Some(colon) = line.iter().position(|b| *b == b':') else {
            continue;
        };
        let (name, value) = (&line[..colon], &line[colon + 1..]);
        let value = value.strip_prefix(b" ").unwrap_or(value);
        if let (Ok(n), Ok(v)) = (HeaderName::from_bytes(name), HeaderValue::from_bytes(value)) {
            headers.append(n, v);
        }
    }
    (headers, body)
}

/// Signature header parsers: every scheme must refuse arbitrary headers (nothing forged passes)
/// and never panic.
pub fn signature_headers(data: &[u8]) {
    let (headers, body) = split_request(data);
    for v in verifiers() {
        if let Ok(proof) = v.verify(&headers, body, NOW) {
            panic!(
                "{} accepted a request it was not signed for: {proof:?}",
                v.scheme()
            );
        }
    }
}

/// Body → event: a body either fails strict parsing or the schema (and becomes a bounded
/// rejected message), or becomes an event that validates and carries the body unchanged.
pub fn body_to_event(raw: &[u8]) {
    let subjects = Subjects::new("fuzz");
    let verified = Verified::for_tests(None);
    let trace = TraceContext::default();
    let at = "2026-01-01T00:00:00.000Z";
    let _ = crate::json::has_inexact_number(raw);
    let value = match crate::json::parse_strict(raw) {
        Ok(v) => v,
        Err(e) => {
            let errors = vec![Violation {
                instance_path: String::new(),
                message: e.to_string(),
            }];
            let msg = build_rejected(
                &subjects,
                &verified,
                raw,
                RejectReason::InvalidJson,
                &errors,
                at,
                &trace,
            );
            assert_eq!(&msg.payload[..], raw, "rejected bodies are kept unchanged");
            return;
        }
    };
    // Whatever strict parsing accepts, serde_json reads the same way.
    let lenient: Value = serde_json::from_slice(raw).expect("strict ⊂ lenient");
    assert_eq!(lenient, value);
    if let Err(errors) = Schemas::get().check_result(&value) {
        let msg = build_rejected(
            &subjects,
            &verified,
            raw,
            RejectReason::SchemaViolation,
            &errors,
            at,
            &trace,
        );
        assert!(msg.headers.iter().all(|(_, v)| v.len() <= 8192));
        return;
    }
    let msg = build_event(&subjects, &verified, raw, &value, at, &trace);
    let event: Value = serde_json::from_slice(&msg.payload).expect("the event is JSON");
    assert_eq!(event["result"], value, "the event carries the body");
    assert_eq!(Schemas::get().check_event(&event), Ok(()));
    assert!(msg.subject.starts_with("fuzz.") && !msg.subject.contains(['*', '>', ' ']));
    let again = build_event(&subjects, &verified, raw, &value, at, &trace);
    assert_eq!(msg.msg_id, again.msg_id, "the dedup id is deterministic");
}

/// Status and result request parsing: a request either becomes a canonical UUID (the only thing
/// that ever reaches a VX URL) or an email, or is a 400 whose message does not echo the input.
pub fn status_request(data: &[u8]) {
    let schemas = Schemas::get();
    match crate::status::request::parse_status(data, &schemas) {
        Ok(r) => {
            let id = r.request_id.hyphenated().to_string();
            assert!(
                id.len() == 36 && id.bytes().all(|b| b.is_ascii_hexdigit() || b == b'-'),
                "a non-canonical id would reach a URL: {id}"
            );
        }
        Err(e) => assert_eq!(e.code, 400, "a bad request must be a 400: {e:?}"),
    }
    match crate::status::request::parse_result(data, &schemas) {
        Ok(crate::status::request::ResultRequest::Id(id)) => {
            assert_eq!(id.hyphenated().to_string().len(), 36);
        }
        Ok(crate::status::request::ResultRequest::Email(email)) => {
            assert!(
                email.contains('@') && !email.chars().any(char::is_control),
                "an unchecked email would reach a URL"
            );
        }
        Err(e) => assert_eq!(e.code, 400, "a bad request must be a 400: {e:?}"),
    }
}
