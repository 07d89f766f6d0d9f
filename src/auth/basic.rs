//! HTTP Basic authentication: the accepted `user:password` pairs, kept as SHA-256 digests and
//! compared in constant time with the `Authorization: Basic …` header.
//!
//! Only parses and checks; it reads no files (the caller resolves `passwords_file`) and holds no
//! password in clear.

use base64::Engine as _;
use http::HeaderMap;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use super::AuthError;
use crate::config::{reject_if, BasicAuthConfig, ConfigError};
use crate::secret::Secret;

/// Basic authentication: digests of the accepted `user:password` pairs.
pub(super) struct Basic {
    accepted: Vec<[u8; 32]>,
}

impl std::fmt::Debug for Basic {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Basic({} credentials)", self.accepted.len())
    }
}

impl Basic {
    /// Builds the check from `webhook.auth.basic` and every accepted password (those of
    /// `passwords` and of `passwords_file`, already read).
    pub(super) fn new(cfg: &BasicAuthConfig, passwords: &[Secret]) -> Result<Self, ConfigError> {
        reject_if(
            cfg.username.is_empty() || cfg.username.contains(':'),
            "webhook.auth.basic.username",
            "must be set and must not contain `:`",
        )?;
        reject_if(
            passwords.is_empty() || passwords.iter().any(Secret::is_empty),
            "webhook.auth.basic.passwords",
            "at least one non-empty password is needed (or passwords_file)",
        )?;
        let accepted = passwords
            .iter()
            .map(|p| digest(format!("{}:{}", cfg.username, p.expose()).as_bytes()))
            .collect();
        Ok(Self { accepted })
    }

    /// Checks the `Authorization` header.
    pub(super) fn verify(&self, headers: &HeaderMap) -> Result<(), AuthError> {
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
        for accepted in &self.accepted {
            ok |= accepted.ct_eq(&got);
        }
        if bool::from(ok) {
            Ok(())
        } else {
            Err(AuthError::BadCredentials)
        }
    }
}

fn digest(bytes: &[u8]) -> [u8; 32] {
    Sha256::digest(bytes).into()
}
