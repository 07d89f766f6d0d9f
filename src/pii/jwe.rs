//! JWE compact serialization (RFC 7516) with `alg` `dir` and `enc` `A256GCM`, the one form in
//! which the bridge writes personal data and wrapped data keys to NATS.
//!
//! Written by hand on top of `ring`'s AES-256-GCM (the AEAD the NATS client already links):
//! the whole of this form is five base64url parts, of which the second (the encrypted key) is
//! empty under `dir`. What a JOSE library would add (other algorithms, JSON serialization) we
//! never produce. Interoperability with an independent implementation (Python `jwcrypto`) is a
//! test (`tests/it/pii.rs`, `an_independent_jose_library_…`).
//!
//! Pure: no I/O, no keys stored; keys are passed in and never logged or formatted.

use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;
use base64::Engine as _;
use ring::aead::{self, Aad, LessSafeKey, Nonce, UnboundKey, AES_256_GCM};
use ring::rand::{SecureRandom, SystemRandom};

/// A 256-bit AES-GCM key: a session's data key, or a KEK. `Debug` prints no key bytes.
#[derive(Clone)]
pub struct Key256(pub(crate) [u8; 32]);

impl Key256 {
    /// A fresh random key from the operating system's generator.
    pub fn random() -> Result<Key256, JweError> {
        let mut bytes = [0u8; 32];
        SystemRandom::new()
            .fill(&mut bytes)
            .map_err(|_| JweError::Random)?;
        Ok(Key256(bytes))
    }

    /// The key from exactly 32 bytes.
    pub fn from_slice(bytes: &[u8]) -> Option<Key256> {
        <[u8; 32]>::try_from(bytes).ok().map(Key256)
    }

    /// The raw key bytes: only for wrapping it under a KEK.
    pub fn expose(&self) -> &[u8; 32] {
        &self.0
    }

    fn aead(&self) -> LessSafeKey {
        // AES-256-GCM takes any 32 bytes: this cannot fail.
        LessSafeKey::new(UnboundKey::new(&AES_256_GCM, &self.0).expect("a 32-byte AES-256 key"))
    }
}

impl std::fmt::Debug for Key256 {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Key256([redacted])")
    }
}

/// Why a JWE could not be made or opened. Never carries key or plaintext bytes.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum JweError {
    /// The operating system's random generator failed.
    #[error("the system random generator failed")]
    Random,
    /// Not five base64url parts, or a part that does not decode.
    #[error("not a JWE in compact serialization")]
    Malformed,
    /// A protected header that is not `{"alg":"dir","enc":"A256GCM","kid":…}`.
    #[error("unsupported JWE header (want alg dir, enc A256GCM, a kid)")]
    Header,
    /// The tag does not verify: wrong key, or altered ciphertext or header.
    #[error("the JWE does not decrypt under this key")]
    Decrypt,
}

#[derive(serde::Serialize)]
struct Header<'a> {
    alg: &'a str,
    enc: &'a str,
    kid: &'a str,
}

/// A protected header as read: owned strings (a third-party writer may escape characters), and
/// the two parameters that change how the plaintext is to be read, which we refuse.
#[derive(serde::Deserialize)]
struct ReadHeader {
    alg: String,
    enc: String,
    kid: String,
    #[serde(default)]
    zip: Option<serde_json::Value>,
    #[serde(default)]
    crit: Option<serde_json::Value>,
}

fn read_header(protected: &str) -> Result<ReadHeader, JweError> {
    let header = B64.decode(protected).map_err(|_| JweError::Malformed)?;
    let h: ReadHeader = serde_json::from_slice(&header).map_err(|_| JweError::Header)?;
    if h.zip.is_some() || h.crit.is_some() {
        return Err(JweError::Header);
    }
    Ok(h)
}

/// Encrypts `plaintext` under `key`: `BASE64URL(header)..BASE64URL(iv).BASE64URL(ciphertext).BASE64URL(tag)`,
/// the header `{"alg":"dir","enc":"A256GCM","kid":kid}` bound as additional data.
pub fn encrypt(key: &Key256, kid: &str, plaintext: &[u8]) -> Result<String, JweError> {
    let header = serde_json::to_vec(&Header {
        alg: "dir",
        enc: "A256GCM",
        kid,
    })
    .map_err(|_| JweError::Header)?;
    let mut iv = [0u8; 12];
    SystemRandom::new()
        .fill(&mut iv)
        .map_err(|_| JweError::Random)?;
    let protected = B64.encode(&header);
    let mut buf = plaintext.to_vec();
    let tag = key
        .aead()
        .seal_in_place_separate_tag(
            Nonce::assume_unique_for_key(iv),
            Aad::from(protected.as_bytes()),
            &mut buf,
        )
        .map_err(|_| JweError::Decrypt)?;
    // The five parts written straight into one buffer of the exact size (base64's slice encoder:
    // no intermediate strings).
    let parts: [&[u8]; 3] = [&iv, &buf, tag.as_ref()];
    let len = protected.len()
        + 2
        + parts
            .iter()
            .map(|p| base64::encoded_len(p.len(), false).unwrap_or(0) + 1)
            .sum::<usize>()
        - 1;
    let mut out = Vec::with_capacity(len);
    out.extend_from_slice(protected.as_bytes());
    out.extend_from_slice(b"..");
    for (i, part) in parts.iter().enumerate() {
        if i > 0 {
            out.push(b'.');
        }
        let at = out.len();
        out.resize(at + base64::encoded_len(part.len(), false).unwrap_or(0), 0);
        B64.encode_slice(part, &mut out[at..])
            .map_err(|_| JweError::Malformed)?;
    }
    // Base64url and dots only: always UTF-8.
    String::from_utf8(out).map_err(|_| JweError::Malformed)
}

/// The `kid` of a compact JWE's protected header, without decrypting it.
pub fn kid(compact: &str) -> Result<String, JweError> {
    let protected = compact.split('.').next().ok_or(JweError::Malformed)?;
    Ok(read_header(protected)?.kid)
}

/// Decrypts a compact JWE made by [`encrypt`] (or any `dir`/`A256GCM` JWE): returns its `kid`
/// and the plaintext.
pub fn decrypt(key: &Key256, compact: &str) -> Result<(String, Vec<u8>), JweError> {
    let mut parts = compact.split('.');
    let (Some(protected), Some(ek), Some(iv), Some(ct), Some(tag), None) = (
        parts.next(),
        parts.next(),
        parts.next(),
        parts.next(),
        parts.next(),
        parts.next(),
    ) else {
        return Err(JweError::Malformed);
    };
    if !ek.is_empty() {
        return Err(JweError::Header);
    }
    let h = read_header(protected)?;
    if h.alg != "dir" || h.enc != "A256GCM" {
        return Err(JweError::Header);
    }
    let iv: [u8; 12] = B64
        .decode(iv)
        .ok()
        .and_then(|v| v.try_into().ok())
        .ok_or(JweError::Malformed)?;
    let mut buf = B64.decode(ct).map_err(|_| JweError::Malformed)?;
    let tag = B64.decode(tag).map_err(|_| JweError::Malformed)?;
    if tag.len() != aead::MAX_TAG_LEN {
        return Err(JweError::Malformed);
    }
    buf.extend_from_slice(&tag);
    let plain = key
        .aead()
        .open_in_place(
            Nonce::assume_unique_for_key(iv),
            Aad::from(protected.as_bytes()),
            &mut buf,
        )
        .map_err(|_| JweError::Decrypt)?;
    let len = plain.len();
    buf.truncate(len);
    Ok((h.kid, buf))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_round_trip_keeps_the_bytes_and_the_kid() {
        let key = Key256::random().unwrap();
        let body = br#" {"request_id":"x","status":"PASS"} "#;
        let jwe = encrypt(&key, "abc", body).unwrap();
        assert_eq!(jwe.split('.').count(), 5);
        assert_eq!(jwe.split('.').nth(1), Some(""));
        assert_eq!(kid(&jwe).unwrap(), "abc");
        let (kid, plain) = decrypt(&key, &jwe).unwrap();
        assert_eq!((kid.as_str(), plain.as_slice()), ("abc", &body[..]));
        // A fresh IV each time.
        assert_ne!(encrypt(&key, "abc", body).unwrap(), jwe);
    }

    #[test]
    fn another_key_an_altered_header_or_ciphertext_do_not_open() {
        let key = Key256::random().unwrap();
        let jwe = encrypt(&key, "abc", b"secret").unwrap();
        let other = Key256::random().unwrap();
        assert_eq!(decrypt(&other, &jwe), Err(JweError::Decrypt));
        // The header is bound: another kid with the same ciphertext fails.
        let forged_header = B64.encode(br#"{"alg":"dir","enc":"A256GCM","kid":"xyz"}"#);
        let rest = jwe.split_once('.').unwrap().1;
        assert_eq!(
            decrypt(&key, &format!("{forged_header}.{rest}")),
            Err(JweError::Decrypt)
        );
        let mut parts: Vec<String> = jwe.split('.').map(str::to_owned).collect();
        parts[3] = B64.encode(b"Secret");
        assert_eq!(decrypt(&key, &parts.join(".")), Err(JweError::Decrypt));
        assert_eq!(decrypt(&key, "a.b.c"), Err(JweError::Malformed));
        // zip and crit change how the plaintext is read: refused. An escaped kid is read.
        let rest = jwe.split_once('.').unwrap().1;
        for header in [
            r#"{"alg":"dir","enc":"A256GCM","kid":"abc","zip":"DEF"}"#,
            r#"{"alg":"dir","enc":"A256GCM","kid":"abc","crit":["x"]}"#,
        ] {
            let forged = format!("{}.{rest}", B64.encode(header));
            assert_eq!(decrypt(&key, &forged), Err(JweError::Header));
        }
        let escaped = B64.encode(r#"{"alg":"dir","enc":"A256GCM","kid":"a\u0062c"}"#);
        assert_eq!(kid(&format!("{escaped}.{rest}")).unwrap(), "abc");
    }

    #[test]
    fn debug_prints_no_key_bytes() {
        let key = Key256([7u8; 32]);
        assert_eq!(format!("{key:?}"), "Key256([redacted])");
    }
}
