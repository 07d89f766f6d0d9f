//! Key-encryption keys (KEKs): read from `keys.kek_file` (as Kubernetes mounts a Secret: one
//! `id:base64` per line, 32 bytes each; blank lines and `#` comments skipped). The first KEK
//! wraps new data keys; every KEK unwraps, chosen by the wrapped value's `kid`, so a new KEK
//! can be put first while old wraps still open (rotation), and `vx-bridge keys rewrap` retires
//! the old one.
//!
//! Must not log, format or return key bytes: errors name the file and the line number only.

use std::path::Path;

use base64::Engine as _;

use super::jwe::{self, JweError, Key256};
use crate::config::ConfigError;

/// The KEKs of `keys.kek_file`, first = current.
#[derive(Clone)]
pub struct KekRing {
    keks: Vec<(String, Key256)>,
}

impl std::fmt::Debug for KekRing {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KekRing").field("ids", &self.ids()).finish()
    }
}

/// Why a data key could not be unwrapped.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum UnwrapError {
    /// The wrap names a KEK that `keys.kek_file` does not hold.
    #[error("the data key is wrapped under KEK `{0}`, which keys.kek_file does not hold")]
    UnknownKek(String),
    /// The wrapped value is not a JWE of a 32-byte key under that KEK.
    #[error("the wrapped data key does not open")]
    Jwe(#[source] JweError),
}

impl KekRing {
    /// Reads the KEK file. The error is one line naming the file (and line), never a key.
    pub fn read(path: &Path) -> Result<KekRing, String> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| format!("cannot read {}: {e}", path.display()))?;
        Self::parse(&text).map_err(|e| format!("{}: {e}", path.display()))
    }

    /// Parses the file's text.
    pub fn parse(text: &str) -> Result<KekRing, String> {
        let mut keks: Vec<(String, Key256)> = Vec::new();
        for (n, line) in text.lines().enumerate() {
            let line = line.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let lineno = n + 1;
            let Some((id, b64)) = line.split_once(':') else {
                return Err(format!("line {lineno}: expected `id:base64-of-32-bytes`"));
            };
            let id = id.trim();
            if id.is_empty()
                || !id
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
            {
                return Err(format!(
                    "line {lineno}: the KEK id must be letters, digits, `-`, `_` or `.`"
                ));
            }
            let bytes = decode_any_base64(b64.trim())
                .ok_or_else(|| format!("line {lineno}: KEK `{id}` is not base64"))?;
            let key = Key256::from_slice(&bytes).ok_or_else(|| {
                format!(
                    "line {lineno}: KEK `{id}` is {} bytes; a KEK is 32 bytes (e.g. `openssl rand -base64 32`)",
                    bytes.len()
                )
            })?;
            if keks.iter().any(|(k, _)| k == id) {
                return Err(format!("line {lineno}: KEK id `{id}` appears twice"));
            }
            keks.push((id.to_owned(), key));
        }
        if keks.is_empty() {
            return Err("holds no KEK (one `id:base64` per line)".into());
        }
        Ok(KekRing { keks })
    }

    /// A ring of one KEK (tests, the demo's ephemeral KEK).
    pub fn single(id: &str, key: Key256) -> KekRing {
        KekRing {
            keks: vec![(id.to_owned(), key)],
        }
    }

    /// The KEK ids, current first.
    pub fn ids(&self) -> Vec<&str> {
        self.keks.iter().map(|(id, _)| id.as_str()).collect()
    }

    /// The id of the KEK that wraps new data keys.
    pub fn current_id(&self) -> &str {
        &self.keks[0].0
    }

    /// Wraps a data key under the current KEK: a compact JWE whose `kid` is the KEK's id.
    pub fn wrap(&self, data_key: &Key256) -> Result<String, JweError> {
        let (id, kek) = &self.keks[0];
        jwe::encrypt(kek, id, data_key.expose())
    }

    /// Unwraps a data key with the KEK its `kid` names; also says which KEK that was.
    pub fn unwrap_key(&self, wrapped: &str) -> Result<(Key256, &str), UnwrapError> {
        let kid = jwe::kid(wrapped).map_err(UnwrapError::Jwe)?;
        let (id, kek) = self
            .keks
            .iter()
            .find(|(id, _)| *id == kid)
            .ok_or(UnwrapError::UnknownKek(kid))?;
        let (_, plain) = jwe::decrypt(kek, wrapped).map_err(UnwrapError::Jwe)?;
        let key = Key256::from_slice(&plain).ok_or(UnwrapError::Jwe(JweError::Malformed))?;
        Ok((key, id.as_str()))
    }
}

/// The KEKs `config` names (`keys.kek_file`), read once; `None` when none is configured. A bad
/// file is a [`ConfigError`] naming the key (and the line), never a key.
pub fn configured(config: &crate::config::Config) -> Result<Option<KekRing>, ConfigError> {
    config
        .keys
        .kek_file
        .as_deref()
        .map(KekRing::read)
        .transpose()
        .map_err(|e| ConfigError::new("keys.kek_file", e))
}

/// Standard or URL-safe base64, padded or not.
fn decode_any_base64(text: &str) -> Option<Vec<u8>> {
    use base64::engine::general_purpose::{STANDARD, STANDARD_NO_PAD, URL_SAFE, URL_SAFE_NO_PAD};
    [STANDARD, STANDARD_NO_PAD, URL_SAFE, URL_SAFE_NO_PAD]
        .iter()
        .find_map(|e| e.decode(text).ok())
}

/// A KEK file's text with one fresh random KEK `id` (the demo, tests).
pub fn generate_line(id: &str) -> Result<String, JweError> {
    let key = Key256::random()?;
    Ok(format!(
        "{id}:{}\n",
        base64::engine::general_purpose::STANDARD.encode(key.expose())
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_first_kek_wraps_and_every_kek_unwraps() {
        let old = KekRing::parse(&generate_line("k1").unwrap()).unwrap();
        let dk = Key256::random().unwrap();
        let wrapped_old = old.wrap(&dk).unwrap();
        assert_eq!(jwe::kid(&wrapped_old).unwrap(), "k1");
        // Rotation: k2 first, k1 still there.
        let text = format!(
            "# rotated\n{}\n{}",
            generate_line("k2").unwrap(),
            old_line(&old)
        );
        let ring = KekRing::parse(&text).unwrap();
        assert_eq!(ring.ids(), ["k2", "k1"]);
        let (k, by) = ring.unwrap_key(&wrapped_old).unwrap();
        assert_eq!((k.expose(), by), (dk.expose(), "k1"));
        let wrapped_new = ring.wrap(&dk).unwrap();
        assert_eq!(jwe::kid(&wrapped_new).unwrap(), "k2");
        // The old ring cannot open the new wrap: it does not hold k2.
        assert_eq!(
            old.unwrap_key(&wrapped_new).err(),
            Some(UnwrapError::UnknownKek("k2".into()))
        );
    }

    fn old_line(ring: &KekRing) -> String {
        format!(
            "{}:{}",
            ring.keks[0].0,
            base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(ring.keks[0].1.expose())
        )
    }

    #[test]
    fn bad_files_are_named_by_line_without_the_key() {
        for (text, want) in [
            ("", "holds no KEK"),
            ("nocolon", "line 1: expected"),
            ("a:!!!", "line 1: KEK `a` is not base64"),
            ("a:AAAA", "line 1: KEK `a` is 3 bytes"),
            ("bad id:AAAA", "line 1: the KEK id"),
        ] {
            let err = KekRing::parse(text).unwrap_err();
            assert!(err.contains(want), "{text:?}: {err}");
        }
        let line = generate_line("a").unwrap();
        let err = KekRing::parse(&format!("{line}{line}")).unwrap_err();
        assert!(err.contains("appears twice"), "{err}");
        let secret = line.trim().split_once(':').unwrap().1.to_owned();
        assert!(!err.contains(&secret));
        assert!(!format!("{:?}", KekRing::parse(&line).unwrap()).contains(&secret));
    }
}
