//! Webhook authentication on the raw request bytes, before anything parses them.
//!
//! [`Verifier`] is built once from `webhook.auth` and checks each request: HTTP Basic or one of
//! the HMAC schemes in [`hmac`]. It fails closed: a missing, malformed or wrong credential is an
//! [`AuthError`] that keeps its reason (for the log and the 401), never the secret. Success yields
//! a [`Verified`] proof, which the event builder requires, so an unverified body cannot be published.
//! All comparisons are constant-time.

pub mod hmac;

use base64::Engine as _;
use http::HeaderMap;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use crate::config::{AuthConfig, AuthMode, ConfigError};
use crate::secret::{read_secret_lines, Secret};

/// Proof that a request passed authentication. Only this module can make one.
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

    /// A proof for tests and tools that build events without an HTTP request.
    #[doc(hidden)]
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
    Basic(Basic),
    Hmac(hmac::HmacVerifier),
}

/// Basic authentication: digests of the accepted `user:password` pairs.
struct Basic {
    accepted: Vec<[u8; 32]>,
}

impl std::fmt::Debug for Basic {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Basic({} credentials)", self.accepted.len())
    }
}

impl Verifier {
    /// Builds the verifier, reading secret files; every problem names its key.
    pub fn from_config(cfg: &AuthConfig) -> Result<Self, ConfigError> {
        let kind = match cfg.mode {
            None => {
                return Err(ConfigError::new(
                    "webhook.auth.mode",
                    "no webhook authentication configured: set \"basic\" or \"hmac\" (or \"none\", explicitly, for tests only)",
                ))
            }
            Some(AuthMode::None) => Kind::None,
            Some(AuthMode::Basic) => {
                let b = &cfg.basic;
                if b.username.is_empty() || b.username.contains(':') {
                    return Err(ConfigError::new(
                        "webhook.auth.basic.username",
                        "must be set and must not contain `:`",
                    ));
                }
                let mut passwords: Vec<Secret> = b.passwords.clone();
                if let Some(path) = &b.passwords_file {
                    passwords.extend(
                        read_secret_lines(path)
                            .map_err(|e| ConfigError::new("webhook.auth.basic.passwords_file", e))?,
                    );
                }
                if passwords.is_empty() || passwords.iter().any(Secret::is_empty) {
                    return Err(ConfigError::new(
                        "webhook.auth.basic.passwords",
                        "at least one non-empty password is needed (or passwords_file)",
                    ));
                }
                let accepted = passwords
                    .iter()
                    .map(|p| digest(format!("{}:{}", b.username, p.expose()).as_bytes()))
                    .collect();
                Kind::Basic(Basic { accepted })
            }
            Some(AuthMode::Hmac) => Kind::Hmac(hmac::HmacVerifier::from_config(&cfg.hmac)?),
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
                verify_basic(b, headers)?;
                Ok(Verified { delivery_id: None })
            }
            Kind::Hmac(h) => h
                .verify(headers, body, now_unix)
                .map(|delivery_id| Verified { delivery_id }),
        }
    }
}

fn digest(bytes: &[u8]) -> [u8; 32] {
    Sha256::digest(bytes).into()
}

fn verify_basic(b: &Basic, headers: &HeaderMap) -> Result<(), AuthError> {
    const H: &str = "authorization";
    let value = headers
        .get(H)
        .ok_or_else(|| AuthError::MissingHeader(H.into()))?;
    let value = value.to_str().map_err(|_| AuthError::Malformed {
        header: H.into(),
        reason: "not visible ASCII",
    })?;
    let (scheme, encoded) = value.trim().split_once(' ').ok_or(AuthError::Malformed {
        header: H.into(),
        reason: "expected `Basic <base64>`",
    })?;
    if !scheme.eq_ignore_ascii_case("basic") {
        return Err(AuthError::Malformed {
            header: H.into(),
            reason: "not the Basic scheme",
        });
    }
    let decoded = base64::engine::general_purpose::STANDARD
        .decode(encoded.trim())
        .map_err(|_| AuthError::Malformed {
            header: H.into(),
            reason: "credentials are not base64",
        })?;
    // Compare fixed-size digests so neither length nor content leaks through timing.
    let got = digest(&decoded);
    let mut ok = subtle::Choice::from(0);
    for accepted in &b.accepted {
        ok |= accepted.ct_eq(&got);
    }
    if bool::from(ok) {
        Ok(())
    } else {
        Err(AuthError::BadCredentials)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::BasicAuthConfig;
    use http::HeaderValue;

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
        Verifier::from_config(&cfg).unwrap()
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
        let err = Verifier::from_config(&AuthConfig::default()).unwrap_err();
        assert_eq!(err.key, "webhook.auth.mode");
    }

    #[test]
    fn explicit_none_accepts_anything() {
        let cfg = AuthConfig {
            mode: Some(AuthMode::None),
            ..AuthConfig::default()
        };
        let v = Verifier::from_config(&cfg).unwrap();
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
        assert_eq!(
            Verifier::from_config(&cfg).unwrap_err().key,
            "webhook.auth.basic.username"
        );
        cfg.basic.username = "vx".into();
        assert_eq!(
            Verifier::from_config(&cfg).unwrap_err().key,
            "webhook.auth.basic.passwords"
        );
    }
}
