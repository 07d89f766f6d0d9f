//! Strict JSON reading for webhook bodies and status requests: one parse into a
//! `serde_json::Value`, refusing what different JSON parsers would read differently.
//!
//! - [`parse_strict`] refuses an object with the same key twice. `serde_json` alone keeps the
//!   last value silently; other parsers keep the first. A body `{"status":"PASS","status":"FAIL"}`
//!   would then be classified by us as FAIL and read by a consumer as PASS. Such a body is not JSON
//!   we can vouch for: the ingress answers 400 and keeps it on `rejected`; the status service
//!   answers 400 ([`is_duplicate_key`] tells this refusal from text that is not JSON).
//! - [`has_inexact_number`] finds numbers that `serde_json` (without `arbitrary_precision`)
//!   cannot hold exactly, e.g. `12345678901234567890123` or `0.10000000000000000001`. Two bodies
//!   that differ only in such a number have the same canonical JSON, so the dedup hash must not
//!   be taken from it (see [`crate::event::dedup_hash`]).
//!
//! Nesting depth stays bounded by `serde_json`'s recursion limit (128). Nothing here logs.

use std::fmt;

use serde::de::{self, DeserializeSeed, Deserializer, MapAccess, SeqAccess, Visitor};
use serde_json::map::Entry;
use serde_json::{Map, Number, Value};

/// The message of the error [`parse_strict`] fails with on a repeated key (no key echoed).
const DUPLICATE_KEY: &str = "duplicate key in an object";

/// Whether `e`, from [`parse_strict`], is the refusal of a repeated key (the text was JSON).
pub fn is_duplicate_key(e: &serde_json::Error) -> bool {
    e.is_data() && e.to_string().starts_with(DUPLICATE_KEY)
}

/// Parses `raw` as JSON, refusing duplicate object keys (at any depth).
pub fn parse_strict(raw: &[u8]) -> Result<Value, serde_json::Error> {
    let mut de = serde_json::Deserializer::from_slice(raw);
    let value = StrictValue.deserialize(&mut de)?;
    de.end()?;
    Ok(value)
}

/// Builds a `Value` like `serde_json` does, but fails on a repeated key in an object.
struct StrictValue;

impl<'de> DeserializeSeed<'de> for StrictValue {
    type Value = Value;

    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Value, D::Error> {
        d.deserialize_any(StrictVisitor)
    }
}

struct StrictVisitor;

impl<'de> Visitor<'de> for StrictVisitor {
    type Value = Value;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("any JSON value")
    }

    fn visit_bool<E>(self, v: bool) -> Result<Value, E> {
        Ok(Value::Bool(v))
    }

    fn visit_i64<E>(self, v: i64) -> Result<Value, E> {
        Ok(Value::Number(v.into()))
    }

    fn visit_u64<E>(self, v: u64) -> Result<Value, E> {
        Ok(Value::Number(v.into()))
    }

    fn visit_f64<E: de::Error>(self, v: f64) -> Result<Value, E> {
        Number::from_f64(v)
            .map(Value::Number)
            .ok_or_else(|| E::custom("number is not finite"))
    }

    fn visit_str<E>(self, v: &str) -> Result<Value, E> {
        Ok(Value::String(v.to_owned()))
    }

    fn visit_string<E>(self, v: String) -> Result<Value, E> {
        Ok(Value::String(v))
    }

    fn visit_unit<E>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }

    fn visit_none<E>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }

    fn visit_some<D: Deserializer<'de>>(self, d: D) -> Result<Value, D::Error> {
        StrictValue.deserialize(d)
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Value, A::Error> {
        let mut items = Vec::with_capacity(seq.size_hint().unwrap_or(0).min(64));
        while let Some(v) = seq.next_element_seed(StrictValue)? {
            items.push(v);
        }
        Ok(Value::Array(items))
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Value, A::Error> {
        let mut out = Map::new();
        while let Some(key) = map.next_key::<String>()? {
            // One search of the map per key: the slot found empty is where the value goes.
            match out.entry(key) {
                // The key itself may be PII-free or not; do not echo it.
                Entry::Occupied(_) => return Err(de::Error::custom(DUPLICATE_KEY)),
                Entry::Vacant(slot) => {
                    slot.insert(map.next_value_seed(StrictValue)?);
                }
            }
        }
        Ok(Value::Object(out))
    }
}

/// Whether `raw` (already known to be valid JSON) holds a number that a `serde_json::Value`
/// cannot represent exactly: an integer outside `i64`/`u64`, or a fraction/exponent whose
/// shortest `f64` form differs from its text (more digits than an `f64` holds).
pub fn has_inexact_number(raw: &[u8]) -> bool {
    let mut i = 0;
    let mut in_string = false;
    while i < raw.len() {
        let b = raw[i];
        if in_string {
            match b {
                b'\\' => i += 1, // skip the escaped byte
                b'"' => in_string = false,
                _ => {}
            }
            i += 1;
            continue;
        }
        match b {
            b'"' => {
                in_string = true;
                i += 1;
            }
            b'-' | b'0'..=b'9' => {
                let start = i;
                while i < raw.len()
                    && matches!(raw[i], b'-' | b'+' | b'.' | b'e' | b'E' | b'0'..=b'9')
                {
                    i += 1;
                }
                if !number_is_exact(&raw[start..i]) {
                    return true;
                }
            }
            _ => i += 1,
        }
    }
    false
}

fn number_is_exact(token: &[u8]) -> bool {
    let Ok(text) = std::str::from_utf8(token) else {
        return false;
    };
    let integral = !text.contains(['.', 'e', 'E']);
    if integral {
        return text.parse::<i64>().is_ok() || text.parse::<u64>().is_ok();
    }
    let Ok(f) = text.parse::<f64>() else {
        return false;
    };
    if !f.is_finite() {
        return false;
    }
    // Exact when the text carries no more significant digits than the shortest round-trip form
    // of the f64 it parses to, and names the same value.
    let (mantissa, exp) = match text.split_once(['e', 'E']) {
        Some((m, e)) => (m, e.parse::<i64>().unwrap_or(i64::MAX)),
        None => (text, 0),
    };
    if exp == i64::MAX {
        return false;
    }
    let digits: String = mantissa
        .chars()
        .filter(char::is_ascii_digit)
        .collect::<String>();
    let significant = digits.trim_start_matches('0').trim_end_matches('0').len();
    if f == 0.0 && significant > 0 {
        // Underflow: 1e-400 and 2e-400 both read as 0.
        return false;
    }
    // f64 round-trips any decimal of at most 15 significant digits.
    significant <= 15
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn strict_parse_equals_serde_json_on_ordinary_bodies() {
        let raw = include_bytes!("../tests/fixtures/seed-pass.json");
        let a = parse_strict(raw).unwrap();
        let b: Value = serde_json::from_slice(raw).unwrap();
        assert_eq!(a, b);
        assert_eq!(
            parse_strict(br#" [1, -2, 3.5, 1e3, true, null, "x\u0041", {}] "#).unwrap(),
            json!([1, -2, 3.5, 1000.0, true, null, "xA", {}])
        );
    }

    #[test]
    fn duplicate_keys_are_refused_at_any_depth() {
        for raw in [
            &br#"{"status":"PASS","status":"FAIL"}"#[..],
            br#"{"a":{"b":1,"b":1}}"#,
            br#"[{"x":1},{"y":1,"y":2}]"#,
            br#"{"a":1,"\u0061":2}"#,
        ] {
            let err = parse_strict(raw).unwrap_err();
            assert!(err.to_string().contains("duplicate key"), "{err}");
            assert!(is_duplicate_key(&err), "{err}");
        }
        assert!(parse_strict(br#"{"a":{"b":1},"b":{"a":1}}"#).is_ok());
        for other in [&b"{"[..], b"{} x", b"1e400", b"[1,]"] {
            assert!(!is_duplicate_key(&parse_strict(other).unwrap_err()));
        }
    }

    #[test]
    fn trailing_garbage_deep_nesting_and_huge_numbers_are_errors() {
        assert!(parse_strict(b"{} x").is_err());
        let deep = format!("{}{}", "[".repeat(10_000), "]".repeat(10_000));
        assert!(parse_strict(deep.as_bytes()).is_err());
        assert!(parse_strict(b"1e400").is_err());
        assert!(parse_strict(b"\"\\ud800\"").is_err(), "lone surrogate");
    }

    #[test]
    fn inexact_numbers_are_found_and_strings_are_skipped() {
        for (raw, inexact) in [
            (&br#"{"a":1,"b":-2,"c":3.25,"d":1e3}"#[..], false),
            (br#"{"a":18446744073709551615}"#, false),
            (br#"{"a":-9223372036854775808}"#, false),
            (br#"{"a":18446744073709551616}"#, true),
            (br#"{"a":12345678901234567890123}"#, true),
            (br#"{"a":0.10000000000000000001}"#, true),
            (br#"{"a":"12345678901234567890123"}"#, false),
            (br#"{"a":"\"12345678901234567890123"}"#, false),
            (br#"{"12345678901234567890123":0.5}"#, false),
            (br#"{"spoof_score":0.123456789012}"#, false),
            (br#"{"a":1e-400}"#, true),
            (br#"{"a":0.0e5}"#, false),
        ] {
            assert_eq!(
                has_inexact_number(raw),
                inexact,
                "{}",
                String::from_utf8_lossy(raw)
            );
        }
    }
}
