//! Webhook authentication on the raw request bytes, before anything parses them.
//!
//! [`Verifier`] is built once from `webhook.auth` and checks each request: HTTP Basic
//! (`basic`) or one of the HMAC schemes in [`hmac`], one file per scheme. It fails closed: a missing, malformed or wrong credential is an
//! [`AuthError`] that keeps its reason (for the log and the 401), never the secret. Success yields
//! a [`Verified`] proof, which the event builder requires, so an unverified body cannot be published.
//! All comparisons are constant-time.
//!
//! This module reads no files and no environment, and imports no NATS or HTTP server/client
//! code: secrets arrive resolved (`app::prepare`), requests arrive as a header map and bytes.

mod basic;
pub mod hmac;

use http::HeaderMap;

use crate::config::{AuthConfig, AuthMode, ConfigError};
use crate::secret::Secret;

/// Proof that a request passed authentication. Only [`Verifier::verify`] makes one, outside
/// this crate's own tests and the `test-util` cargo feature (`Verified::for_tests`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Verified {
    delivery_id: Option<String>,
}

impl Verified {
    /// The sender's delivery id (e.g. `webhook-id`), when the scheme carries one; checked to be
    /// 1–256 visible ASCII characters.
    pub fn delivery_id(&self) -> Option<&str> {
        self.delivery_id.as_deref()
    }

    /// A proof for tests and fuzz harnesses that build events without an HTTP request. Only with
    /// the `test-util` cargo feature (or in this crate's unit tests): a service build has none.
    #[cfg(any(test, feature = "test-util"))]
    pub fn for_tests(delivery_id: Option<String>) -> Self {
        Self { delivery_id }
    }
}

/// Why a request failed authentication. The message names headers, never secrets or values.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AuthError {
    /// A required header is absent.
    #[error("missing header `{0}`")]
    MissingHeader(String),
    /// A header is present but cannot be read.
    #[error("malformed header `{header}`: {reason}")]
    Malformed {
        /// Header name.
        header: String,
        /// What is wrong with it.
        reason: &'static str,
    },
    /// The signed timestamp is too far from our clock.
    #[error("timestamp outside tolerance ({skew_secs} s from now)")]
    TimestampOutOfTolerance {
        /// Signed timestamp minus now, in seconds.
        skew_secs: i64,
    },
    /// No signature matched any configured secret.
    #[error("signature does not match")]
    SignatureMismatch,
    /// Basic credentials do not match.
    #[error("bad credentials")]
    BadCredentials,
}

impl AuthError {
    /// A short stable code for logs and metric labels.
    pub fn code(&self) -> &'static str {
        match self {
            AuthError::MissingHeader(_) => "missing_header",
            AuthError::Malformed { .. } => "malformed_header",
            AuthError::TimestampOutOfTolerance { .. } => "timestamp_out_of_tolerance",
            AuthError::SignatureMismatch => "signature_mismatch",
            AuthError::BadCredentials => "bad_credentials",
        }
    }
}

/// Checks requests against the configured scheme.
#[derive(Debug)]
pub struct Verifier {
    kind: Kind,
}

#[derive(Debug)]
enum Kind {
    None,
    Basic(basic::Basic),
    Hmac(hmac::HmacVerifier),
}

impl Verifier {
    /// Builds the verifier from `webhook.auth` and the accepted secrets of its mode, already
    /// resolved (inline and from `…_file`, by `app::prepare`): the passwords for `basic`, the
    /// HMAC secrets for `hmac`. Every problem names its key; nothing is read here.
    pub fn from_config(cfg: &AuthConfig, secrets: &[Secret]) -> Result<Self, ConfigError> {
        let kind = match cfg.mode()? {
            AuthMode::None => Kind::None,
            AuthMode::Basic => Kind::Basic(basic::Basic::new(&cfg.basic, secrets)?),
            AuthMode::Hmac => Kind::Hmac(hmac::HmacVerifier::from_config(&cfg.hmac, secrets)?),
        };
        Ok(Self { kind })
    }

    /// Whether the mode is `none` (the caller warns loudly at start).
    pub fn is_none(&self) -> bool {
        matches!(self.kind, Kind::None)
    }

    /// Name of the scheme, for logs.
    pub fn scheme(&self) -> &'static str {
        match &self.kind {
            Kind::None => "none",
            Kind::Basic(_) => "basic",
            Kind::Hmac(h) => h.scheme_name(),
        }
    }

    /// Checks one request. `now_unix` is the current time in seconds (passed in for tests).
    pub fn verify(
        &self,
        headers: &HeaderMap,
        body: &[u8],
        now_unix: i64,
    ) -> Result<Verified, AuthError> {
        match &self.kind {
            Kind::None => Ok(Verified { delivery_id: None }),
            Kind::Basic(b) => {
                b.verify(headers)?;
                Ok(Verified { delivery_id: None })
            }
            Kind::Hmac(h) => h
                .verify(headers, body, now_unix)
                .map(|delivery_id| Verified { delivery_id }),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::BasicAuthConfig;
    use base64::Engine as _;
    use http::HeaderValue;

    /// Builds with the inline secrets of the configured mode, as `app::prepare` resolves them.
    fn build(cfg: &AuthConfig) -> Result<Verifier, ConfigError> {
        let secrets = match cfg.mode {
            Some(AuthMode::Basic) => cfg.basic.passwords.clone(),
            _ => cfg.hmac.secrets.clone(),
        };
        Verifier::from_config(cfg, &secrets)
    }

    fn basic(passwords: &[&str]) -> Verifier {
        let cfg = AuthConfig {
            mode: Some(AuthMode::Basic),
            basic: BasicAuthConfig {
                username: "vx".into(),
                passwords: passwords.iter().map(|p| Secret::new(*p)).collect(),
                passwords_file: None,
            },
            ..AuthConfig::default()
        };
        build(&cfg).unwrap()
    }

    fn auth_header(v: &str) -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert("authorization", HeaderValue::from_str(v).unwrap());
        h
    }

    fn basic_value(user: &str, pass: &str) -> String {
        format!(
            "Basic {}",
            base64::engine::general_purpose::STANDARD.encode(format!("{user}:{pass}"))
        )
    }

    #[test]
    fn no_mode_refuses_to_build() {
        let err = build(&AuthConfig::default()).unwrap_err();
        assert_eq!(err.key, "webhook.auth.mode");
    }

    #[test]
    fn explicit_none_accepts_anything() {
        let cfg = AuthConfig {
            mode: Some(AuthMode::None),
            ..AuthConfig::default()
        };
        let v = build(&cfg).unwrap();
        assert!(v.is_none());
        assert!(v.verify(&HeaderMap::new(), b"{}", 0).is_ok());
    }

    #[test]
    fn basic_accepts_either_of_two_passwords() {
        let v = basic(&["old", "new"]);
        assert!(v
            .verify(&auth_header(&basic_value("vx", "old")), b"", 0)
            .is_ok());
        assert!(v
            .verify(&auth_header(&basic_value("vx", "new")), b"", 0)
            .is_ok());
    }

    #[test]
    fn basic_rejects_wrong_user_password_and_malformed_headers() {
        let v = basic(&["pw"]);
        let cases = [
            (basic_value("vx", "nope"), "bad_credentials"),
            (basic_value("other", "pw"), "bad_credentials"),
            ("Basic !!!".to_owned(), "malformed_header"),
            ("Bearer abc".to_owned(), "malformed_header"),
            ("Basic".to_owned(), "malformed_header"),
        ];
        for (header, code) in cases {
            let err = v.verify(&auth_header(&header), b"", 0).unwrap_err();
            assert_eq!(err.code(), code, "{header}");
        }
        let err = v.verify(&HeaderMap::new(), b"", 0).unwrap_err();
        assert_eq!(err, AuthError::MissingHeader("authorization".into()));
    }

    #[test]
    fn basic_config_errors_name_the_key() {
        let mut cfg = AuthConfig {
            mode: Some(AuthMode::Basic),
            ..AuthConfig::default()
        };
        assert_eq!(build(&cfg).unwrap_err().key, "webhook.auth.basic.username");
        cfg.basic.username = "vx".into();
        assert_eq!(build(&cfg).unwrap_err().key, "webhook.auth.basic.passwords");
    }
}
