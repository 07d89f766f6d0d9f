//! The JSON log line's span fields ([`SpanJsonFields`]) of `LogFormat::Json`.
//!
//! A span's fields are kept as one JSON object, sorted by key, as `tracing_subscriber`'s
//! `JsonFields` keeps them, and a field recorded later is put into that text where it belongs
//! instead of parsing the object and writing it again. Nothing here decides what is logged: that
//! is the callers' business (no body, header value, secret or PII).

use std::fmt;

use serde::Serializer as _;
use tracing::field::{Field, Visit};
use tracing::span::Record;
use tracing_subscriber::field::RecordFields;
use tracing_subscriber::fmt::format::{JsonFields, Writer};
use tracing_subscriber::fmt::{FormatFields, FormattedFields};

/// The JSON field formatter of spans. A new span's fields are written by `tracing_subscriber`'s
/// `JsonFields` (one object, sorted by key); a field recorded later (`span.record`, as the
/// webhook span does for `trace_id`, `request_id` and `outcome`) is put into that object at its
/// sorted place, or replaces the value of the member with its key, as `JsonFields` would after
/// parsing the object into a sorted map. So the text stays one JSON object, sorted, each key
/// once, the last value kept, and a line can splice it as it is.
#[derive(Debug, Default, Clone, Copy)]
pub(super) struct SpanJsonFields;

impl<'w> FormatFields<'w> for SpanJsonFields {
    fn format_fields<R: RecordFields>(&self, writer: Writer<'w>, fields: R) -> fmt::Result {
        JsonFields::new().format_fields(writer, fields)
    }

    fn add_fields(
        &self,
        current: &'w mut FormattedFields<Self>,
        fields: &Record<'_>,
    ) -> fmt::Result {
        let mut members = SpanMembers {
            object: &mut current.fields,
            member: Vec::new(),
            result: Ok(()),
        };
        fields.record(&mut members);
        members.result
    }
}

/// Writes recorded span fields into a span's JSON object, with the names and values
/// `JsonFields` gives them: `Debug` values as strings, `log.` metadata skipped and `r#` dropped
/// (both for `Debug` values only, as `JsonFields` does).
struct SpanMembers<'a> {
    object: &'a mut String,
    /// `"name":value` of the field at hand (the buffer reused for each field of the record).
    member: Vec<u8>,
    result: fmt::Result,
}

impl SpanMembers<'_> {
    fn member(&mut self, name: &str, value: impl FnOnce(&mut Json<'_>) -> fmt::Result) {
        if self.result.is_err() {
            return;
        }
        self.member.clear();
        let mut json = Json(&mut self.member);
        let written = json.str(name).and_then(|()| {
            json.raw(b":");
            value(&mut json)
        });
        self.result = written.and_then(|()| {
            let member = std::str::from_utf8(&self.member).map_err(|_| fmt::Error)?;
            upsert_member(self.object, name, member)
        });
    }
}

impl Visit for SpanMembers<'_> {
    fn record_f64(&mut self, field: &Field, value: f64) {
        self.member(field.name(), |j| j.f64(value));
    }

    fn record_i64(&mut self, field: &Field, value: i64) {
        self.member(field.name(), |j| j.i64(value));
    }

    fn record_u64(&mut self, field: &Field, value: u64) {
        self.member(field.name(), |j| j.u64(value));
    }

    fn record_bool(&mut self, field: &Field, value: bool) {
        self.member(field.name(), |j| j.bool(value));
    }

    fn record_str(&mut self, field: &Field, value: &str) {
        self.member(field.name(), |j| j.str(value));
    }

    fn record_bytes(&mut self, field: &Field, value: &[u8]) {
        self.member(field.name(), |j| j.bytes(value));
    }

    fn record_debug(&mut self, field: &Field, value: &dyn fmt::Debug) {
        let name = field.name();
        if name.starts_with("log.") {
            return;
        }
        let name = name.strip_prefix("r#").unwrap_or(name);
        self.member(name, |j| j.debug(value));
    }
}

/// Puts `member` (`"name":value`, `name` JSON-escaped) into the JSON object `object` (which
/// may be empty text): in place of the value of the member named `name`, or else before the
/// first member whose name sorts after `name` (the order of a `BTreeMap<String, _>`).
///
/// The object is one [`SpanJsonFields`] wrote: its values are strings, numbers, booleans, null
/// or arrays of numbers. In such text `{"` and `,"` only occur where a member starts (inside a
/// string a quote is escaped), which is what this relies on.
fn upsert_member(object: &mut String, name: &str, member: &str) -> fmt::Result {
    if object.is_empty() {
        object.push_str("{}");
    }
    if !(object.starts_with('{') && object.ends_with('}')) {
        return Err(fmt::Error);
    }
    let value = &member[quoted_len(member).ok_or(fmt::Error)? + 1..];
    let end = object.len() - 1;
    let mut at = 1;
    while at < end {
        let key_len = quoted_len(&object[at..end]).ok_or(fmt::Error)?;
        let key = &object[at..at + key_len];
        if object.as_bytes().get(at + key_len) != Some(&b':') {
            return Err(fmt::Error);
        }
        let value_at = at + key_len + 1;
        let next = object[value_at..end]
            .find(",\"")
            .map_or(end, |i| value_at + i);
        match key_name(key)?.as_ref().cmp(name) {
            std::cmp::Ordering::Less => at = next + 1,
            std::cmp::Ordering::Equal => {
                object.replace_range(value_at..next, value);
                return Ok(());
            }
            std::cmp::Ordering::Greater => {
                object.insert(at, ',');
                object.insert_str(at, member);
                return Ok(());
            }
        }
    }
    if end > 1 {
        object.insert(end, ',');
        object.insert_str(end + 1, member);
    } else {
        object.insert_str(end, member);
    }
    Ok(())
}

/// The length of the JSON string `text` starts with (quotes included), if it starts with one.
fn quoted_len(text: &str) -> Option<usize> {
    let bytes = text.as_bytes();
    if bytes.first() != Some(&b'"') {
        return None;
    }
    let mut i = 1;
    while i < bytes.len() {
        match bytes[i] {
            b'\\' => i += 2,
            b'"' => return Some(i + 1),
            _ => i += 1,
        }
    }
    None
}

/// The name a quoted JSON key stands for (unescaped only when it has an escape).
fn key_name(quoted: &str) -> Result<std::borrow::Cow<'_, str>, fmt::Error> {
    let inner = &quoted[1..quoted.len() - 1];
    if inner.contains('\\') {
        serde_json::from_str::<String>(quoted)
            .map(std::borrow::Cow::Owned)
            .map_err(|_| fmt::Error)
    } else {
        Ok(std::borrow::Cow::Borrowed(inner))
    }
}

/// JSON tokens written into a byte buffer: serde_json's compact serializer for the values (its
/// string escaping and number formatting), raw bytes for the punctuation between them. Only a
/// failing `Debug` impl can fail a write.
struct Json<'b>(&'b mut Vec<u8>);

impl Json<'_> {
    fn raw(&mut self, bytes: &[u8]) {
        self.0.extend_from_slice(bytes);
    }

    fn str(&mut self, value: &str) -> fmt::Result {
        self.value(|s| s.serialize_str(value))
    }

    fn u64(&mut self, value: u64) -> fmt::Result {
        self.value(|s| s.serialize_u64(value))
    }

    fn i64(&mut self, value: i64) -> fmt::Result {
        self.value(|s| s.serialize_i64(value))
    }

    fn f64(&mut self, value: f64) -> fmt::Result {
        self.value(|s| s.serialize_f64(value))
    }

    fn bool(&mut self, value: bool) -> fmt::Result {
        self.value(|s| s.serialize_bool(value))
    }

    fn bytes(&mut self, value: &[u8]) -> fmt::Result {
        self.value(|s| s.serialize_bytes(value))
    }

    /// `value`'s `Debug` form as a JSON string, escaped as it is formatted (no `String`).
    fn debug(&mut self, value: &dyn fmt::Debug) -> fmt::Result {
        self.value(|s| s.collect_str(&format_args!("{value:?}")))
    }

    fn value(
        &mut self,
        write: impl FnOnce(&mut serde_json::Serializer<&mut Vec<u8>>) -> serde_json::Result<()>,
    ) -> fmt::Result {
        write(&mut serde_json::Serializer::new(&mut *self.0)).map_err(|_| fmt::Error)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_member_goes_to_its_sorted_place_or_replaces_the_one_with_its_key() {
        let mut s = String::new();
        upsert_member(&mut s, "m", "\"m\":1").unwrap();
        assert_eq!(s, "{\"m\":1}");
        upsert_member(&mut s, "z", "\"z\":\"x}\\\",\\\"c\\\":\"").unwrap();
        upsert_member(&mut s, "a", "\"a\":[1,2]").unwrap();
        upsert_member(&mut s, "c", "\"c\":null").unwrap();
        assert_eq!(
            s,
            "{\"a\":[1,2],\"c\":null,\"m\":1,\"z\":\"x}\\\",\\\"c\\\":\"}"
        );
        // A quote inside a string is escaped: `,"c":` there is not a member.
        upsert_member(&mut s, "c", "\"c\":true").unwrap();
        upsert_member(&mut s, "z", "\"z\":\"\\\\\"").unwrap();
        upsert_member(&mut s, "a", "\"a\":-0.5").unwrap();
        assert_eq!(s, "{\"a\":-0.5,\"c\":true,\"m\":1,\"z\":\"\\\\\"}");
        let v: serde_json::Value = serde_json::from_str(&s).unwrap();
        assert_eq!(v["z"], "\\");
        let mut empty = "{}".to_owned();
        upsert_member(&mut empty, "d", "\"d\":true").unwrap();
        assert_eq!(empty, "{\"d\":true}");
        // A key with an escape is compared unescaped.
        upsert_member(&mut empty, "b\"", "\"b\\\"\":1").unwrap();
        upsert_member(&mut empty, "b\"", "\"b\\\"\":2").unwrap();
        assert_eq!(empty, "{\"b\\\"\":2,\"d\":true}");
        assert!(upsert_member(&mut "[]".to_owned(), "a", "\"a\":1").is_err());
    }
}
