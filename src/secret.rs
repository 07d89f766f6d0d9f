//! Secret values: a newtype whose `Debug`, `Display` and `Serialize` print `[redacted]`.
//!
//! Every password, HMAC key and token in the configuration is a [`Secret`], so printing the
//! configuration (`check-config`), a log line or a panic message can never show one.
//! Secrets may also be read from files, as Kubernetes mounts them ([`read_secret_file`]).

use std::fmt;
use std::path::Path;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// A string that must never be printed.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    /// Wraps a value.
    pub fn new(value: impl Into<String>) -> Self {
        Self(value.into())
    }

    /// The secret itself: only for the code that uses it (HMAC keys, auth headers).
    pub fn expose(&self) -> &str {
        &self.0
    }

    /// Whether the secret is empty.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("[redacted]")
    }
}

impl fmt::Display for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("[redacted]")
    }
}

impl Serialize for Secret {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str("[redacted]")
    }
}

impl<'de> Deserialize<'de> for Secret {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        String::deserialize(deserializer).map(Secret)
    }
}

/// Reads a secret from a file, trimming one trailing newline (as `kubectl create secret` and
/// editors leave one). Returns the I/O error's text without the file's content.
pub fn read_secret_file(path: &Path) -> Result<Secret, String> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| format!("cannot read {}: {e}", path.display()))?;
    let value = text
        .strip_suffix("\r\n")
        .or_else(|| text.strip_suffix('\n'))
        .unwrap_or(&text);
    if value.is_empty() {
        return Err(format!("{} is empty", path.display()));
    }
    Ok(Secret(value.to_owned()))
}

/// Reads a file holding one secret per line (blank lines and `#` comments skipped).
pub fn read_secret_lines(path: &Path) -> Result<Vec<Secret>, String> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| format!("cannot read {}: {e}", path.display()))?;
    let secrets: Vec<Secret> = text
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .map(|l| Secret(l.to_owned()))
        .collect();
    if secrets.is_empty() {
        return Err(format!("{} holds no secret", path.display()));
    }
    Ok(secrets)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_display_and_serialize_never_show_the_value() {
        let s = Secret::new("hunter2");
        assert_eq!(format!("{s:?}"), "[redacted]");
        assert_eq!(format!("{s}"), "[redacted]");
        assert_eq!(serde_json::to_string(&s).unwrap(), "\"[redacted]\"");
        assert_eq!(s.expose(), "hunter2");
    }

    #[test]
    fn secret_files_trim_one_newline_and_skip_comments() {
        let dir = tempfile::tempdir().unwrap();
        let one = dir.path().join("one");
        std::fs::write(&one, "abc\n").unwrap();
        assert_eq!(read_secret_file(&one).unwrap().expose(), "abc");
        let many = dir.path().join("many");
        std::fs::write(&many, "# rotated 2026-11\nfirst\n\n second \n").unwrap();
        let got: Vec<String> = read_secret_lines(&many)
            .unwrap()
            .iter()
            .map(|s| s.expose().to_owned())
            .collect();
        assert_eq!(got, ["first", "second"]);
        let empty = dir.path().join("empty");
        std::fs::write(&empty, "\n").unwrap();
        assert!(read_secret_file(&empty).is_err());
        assert!(read_secret_lines(&empty).is_err());
        assert!(read_secret_file(&dir.path().join("missing")).is_err());
    }
}
