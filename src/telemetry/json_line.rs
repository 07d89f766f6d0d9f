//! The JSON log line: the span field formatter ([`SpanJsonFields`]) and the event formatter
//! ([`JsonLine`]) of `LogFormat::Json`.
//!
//! Together they write, byte for byte, what `tracing_subscriber`'s JSON format writes with
//! `.json().flatten_event(true).with_current_span(true).with_span_list(false)` and its
//! `JsonFields`: `{"timestamp":…,"level":…,<the event's fields>,"target":…,"span":{<the current
//! span's fields, sorted by key>,"name":…}}`. They only do it with less work:
//! - a span's fields are kept as one JSON object, sorted by key, and a field recorded later is
//!   put into that text where it belongs instead of parsing the object and writing it again;
//! - the line splices that text as it is, where `tracing_subscriber` parses it into a map and
//!   serialises the map again, and writes the event's fields straight into a reused per-thread
//!   buffer (serde_json escaping each string), with no serde map and no `fmt::Write` per token.
//!
//! The tests run every kind of field through both and compare the lines. Nothing here decides
//! what is logged: that is the callers' business (no body, header value, secret or PII).

use std::cell::RefCell;
use std::fmt;

use serde::Serializer as _;
use tracing::field::{Field, Visit};
use tracing::span::Record;
use tracing::{Event, Subscriber};
use tracing_log::NormalizeEvent as _;
use tracing_subscriber::field::RecordFields;
use tracing_subscriber::fmt::format::{JsonFields, Writer};
use tracing_subscriber::fmt::time::FormatTime;
use tracing_subscriber::fmt::{FmtContext, FormatEvent, FormatFields, FormattedFields};
use tracing_subscriber::registry::LookupSpan;

/// The JSON field formatter of spans. A new span's fields are written by `tracing_subscriber`'s
/// `JsonFields` (one object, sorted by key); a field recorded later (`span.record`, as the
/// webhook span does for `trace_id`, `request_id` and `outcome`) is put into that object at its
/// sorted place, or replaces the value of the member with its key, as `JsonFields` would after
/// parsing the object into a sorted map. So the text stays one JSON object, sorted, each key
/// once, the last value kept, and [`JsonLine`] can splice it as it is.
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
        thread_local! {
            static MEMBER: RefCell<Vec<u8>> = const { RefCell::new(Vec::new()) };
        }
        MEMBER.with(|member| {
            // A `Debug` value that records span fields while it is formatted finds it taken.
            let mut own;
            let mut taken;
            let member = match member.try_borrow_mut() {
                Ok(m) => {
                    taken = m;
                    &mut *taken
                }
                Err(_) => {
                    own = Vec::new();
                    &mut own
                }
            };
            let mut members = SpanMembers {
                object: &mut current.fields,
                member,
                result: Ok(()),
            };
            fields.record(&mut members);
            members.result
        })
    }
}

/// Writes recorded span fields into a span's JSON object, with the names and values
/// `JsonFields` gives them: `Debug` values as strings, `log.` metadata skipped and `r#` dropped
/// (both for `Debug` values only, as `JsonFields` does).
struct SpanMembers<'a> {
    object: &'a mut String,
    /// `"name":value` of the field at hand (a per-thread buffer, reused).
    member: &'a mut Vec<u8>,
    result: fmt::Result,
}

impl SpanMembers<'_> {
    fn member(&mut self, name: &str, value: impl FnOnce(&mut Json<'_>) -> fmt::Result) {
        if self.result.is_err() {
            return;
        }
        self.member.clear();
        let mut json = Json(self.member);
        let written = json.str(name).and_then(|()| {
            json.raw(b":");
            value(&mut json)
        });
        self.result = written.and_then(|()| {
            let member = std::str::from_utf8(self.member).map_err(|_| fmt::Error)?;
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
    let value = quoted_len(member)
        .and_then(|n| member.get(n + 1..))
        .ok_or(fmt::Error)?;
    object.reserve(member.len() + 1);
    let end = object.len() - 1;
    let mut at = 1;
    while at < end {
        let key_len = quoted_len(&object[at..end]).ok_or(fmt::Error)?;
        let key = &object[at..at + key_len];
        if object.as_bytes().get(at + key_len) != Some(&b':') {
            return Err(fmt::Error);
        }
        let value_at = at + key_len + 1;
        let next = member_end(&object.as_bytes()[..end], value_at);
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

/// Where the member whose value starts at `from` ends in `members` (the object's text without
/// its closing brace): at the comma of the next member, or at the end.
fn member_end(members: &[u8], from: usize) -> usize {
    let mut at = from;
    while let Some(i) = members
        .get(at..)
        .and_then(|m| m.iter().position(|&b| b == b','))
    {
        at += i;
        if members.get(at + 1) == Some(&b'"') {
            return at;
        }
        at += 1;
    }
    members.len()
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

/// The event formatter of `LogFormat::Json`: one JSON object a line, as described in the module
/// documentation. `timer` writes the `timestamp`.
#[derive(Debug, Default, Clone, Copy)]
pub(super) struct JsonLine<T> {
    timer: T,
}

impl<T> JsonLine<T> {
    pub(super) fn new(timer: T) -> Self {
        Self { timer }
    }
}

/// The per-thread buffers of [`JsonLine`]: the line and its timestamp.
#[derive(Default)]
struct LineBuffers {
    line: Vec<u8>,
    timestamp: String,
}

impl<S, T> FormatEvent<S, SpanJsonFields> for JsonLine<T>
where
    S: Subscriber + for<'a> LookupSpan<'a>,
    T: FormatTime,
{
    fn format_event(
        &self,
        ctx: &FmtContext<'_, S, SpanJsonFields>,
        mut writer: Writer<'_>,
        event: &Event<'_>,
    ) -> fmt::Result {
        thread_local! {
            static BUFFERS: RefCell<LineBuffers> = const {
                RefCell::new(LineBuffers {
                    line: Vec::new(),
                    timestamp: String::new(),
                })
            };
        }
        BUFFERS.with(|buffers| {
            // A `Debug` value that logs while it is formatted finds the buffers taken.
            let mut own;
            let mut taken;
            let buffers = match buffers.try_borrow_mut() {
                Ok(b) => {
                    taken = b;
                    &mut *taken
                }
                Err(_) => {
                    own = LineBuffers::default();
                    &mut own
                }
            };
            buffers.line.clear();
            buffers.timestamp.clear();
            let written = self.write_line(ctx, event, buffers);
            let line = std::str::from_utf8(&buffers.line).map_err(|_| fmt::Error);
            let result = written.and_then(|()| writer.write_str(line?));
            // Keep the buffers of an ordinary line for the next one, not those of a huge one.
            if buffers.line.capacity() > 64 * 1024 {
                *buffers = LineBuffers::default();
            }
            result
        })
    }
}

impl<T: FormatTime> JsonLine<T> {
    fn write_line<S>(
        &self,
        ctx: &FmtContext<'_, S, SpanJsonFields>,
        event: &Event<'_>,
        buffers: &mut LineBuffers,
    ) -> fmt::Result
    where
        S: Subscriber + for<'a> LookupSpan<'a>,
    {
        self.timer
            .format_time(&mut Writer::new(&mut buffers.timestamp))?;
        let normalized = event.normalized_metadata();
        let meta = normalized.as_ref().unwrap_or_else(|| event.metadata());
        let current_span = event
            .parent()
            .and_then(|id| ctx.span(id))
            .or_else(|| ctx.lookup_current());

        let mut json = Json(&mut buffers.line);
        json.raw(b"{\"timestamp\":");
        json.str(&buffers.timestamp)?;
        json.raw(b",\"level\":");
        json.str(meta.level().as_str())?;
        let mut fields = EventFields {
            json: &mut json,
            result: Ok(()),
        };
        event.record(&mut fields);
        fields.result?;
        json.raw(b",\"target\":");
        json.str(meta.target())?;
        if let Some(span) = &current_span {
            json.raw(b",\"span\":");
            // `fmt::Layer` gives every span its fields' object; without one (never seen) the
            // span is written with its name alone, where `tracing_subscriber` would panic.
            let extensions = span.extensions();
            let object = extensions
                .get::<FormattedFields<SpanJsonFields>>()
                .and_then(|f| f.fields.strip_suffix('}'))
                .filter(|open| open.starts_with('{'));
            match object {
                Some(open) if open.len() > 1 => {
                    json.raw(open.as_bytes());
                    json.raw(b",");
                }
                _ => json.raw(b"{"),
            }
            json.raw(b"\"name\":");
            json.str(span.metadata().name())?;
            json.raw(b"}");
        }
        json.raw(b"}\n");
        Ok(())
    }
}

/// An event's fields as members of the line, with the names and values `tracing_subscriber`'s
/// flattened JSON gives them: the names as they are (`r#` and `log.` included), `Debug` values
/// as strings, other types (`i128`, bytes, errors) through their `Debug` form as `Visit`'s
/// defaults do. The first failure (a `Debug` impl failing) stops it.
struct EventFields<'j, 'b> {
    json: &'j mut Json<'b>,
    result: fmt::Result,
}

impl EventFields<'_, '_> {
    fn member(&mut self, name: &str, value: impl FnOnce(&mut Json<'_>) -> fmt::Result) {
        if self.result.is_ok() {
            self.json.raw(b",");
            self.result = self.json.str(name).and_then(|()| {
                self.json.raw(b":");
                value(self.json)
            });
        }
    }
}

impl Visit for EventFields<'_, '_> {
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

    fn record_debug(&mut self, field: &Field, value: &dyn fmt::Debug) {
        self.member(field.name(), |j| j.debug(value));
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
    use std::sync::{Arc, Mutex};

    use serde::de::{DeserializeSeed, MapAccess, SeqAccess, Visitor};
    use tracing::field;
    use tracing_subscriber::layer::SubscriberExt as _;

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

    /// The fixed `timestamp` of the compared lines.
    struct FixedTime;

    impl FormatTime for FixedTime {
        fn format_time(&self, w: &mut Writer<'_>) -> fmt::Result {
            w.write_str("2025-11-27T10:00:00.123Z")
        }
    }

    /// Every `write` call the layer makes, one entry each.
    #[derive(Clone, Default)]
    struct Writes(Arc<Mutex<Vec<Vec<u8>>>>);

    impl std::io::Write for Writes {
        fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().push(b.to_vec());
            Ok(b.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    impl Writes {
        fn lines(&self) -> Vec<String> {
            let writes = self.0.lock().unwrap();
            writes
                .iter()
                .map(|w| {
                    let line = String::from_utf8(w.clone()).unwrap();
                    // One write a line, whole.
                    assert_eq!(line.matches('\n').count(), 1, "{line}");
                    assert!(line.ends_with('\n'), "{line}");
                    line
                })
                .collect()
        }
    }

    /// The lines `events` logs through `JsonLine` and `SpanJsonFields`.
    fn new_lines(events: fn()) -> Vec<String> {
        let writes = Writes::default();
        let w = writes.clone();
        let layer = tracing_subscriber::fmt::layer()
            .with_ansi(false)
            .fmt_fields(SpanJsonFields)
            .event_format(JsonLine::new(FixedTime))
            .with_writer(move || w.clone());
        tracing::subscriber::with_default(tracing_subscriber::registry().with(layer), events);
        writes.lines()
    }

    /// The lines `events` logs through `tracing_subscriber`'s JSON format (as `LogFormat::Json`
    /// configured it), with its `JsonFields` or with `SpanJsonFields` for the spans.
    fn stock_lines(events: fn(), span_json_fields: bool) -> Vec<String> {
        let writes = Writes::default();
        let w = writes.clone();
        let layer = tracing_subscriber::fmt::layer()
            .json()
            .flatten_event(true)
            .with_current_span(true)
            .with_span_list(false)
            .with_timer(FixedTime)
            .with_writer(move || w.clone());
        let registry = tracing_subscriber::registry();
        if span_json_fields {
            let layer = layer.fmt_fields(SpanJsonFields);
            tracing::subscriber::with_default(registry.with(layer), events);
        } else {
            tracing::subscriber::with_default(registry.with(layer), events);
        }
        writes.lines()
    }

    /// The keys of a JSON text in the order they are written, nested ones as `outer.inner`.
    fn keys_in_order(text: &str) -> Vec<String> {
        struct Keys<'a>(&'a mut Vec<String>, String);
        impl<'de> DeserializeSeed<'de> for Keys<'_> {
            type Value = ();
            fn deserialize<D: serde::Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
                d.deserialize_any(self)
            }
        }
        impl<'de> Visitor<'de> for Keys<'_> {
            type Value = ();
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("JSON")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
                while let Some(key) = map.next_key::<String>()? {
                    let path = format!("{}{key}", self.1);
                    self.0.push(path.clone());
                    map.next_value_seed(Keys(&mut *self.0, format!("{path}.")))?;
                }
                Ok(())
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
                while seq
                    .next_element_seed(Keys(&mut *self.0, format!("{}[].", self.1)))?
                    .is_some()
                {}
                Ok(())
            }
            fn visit_bool<E>(self, _: bool) -> Result<(), E> {
                Ok(())
            }
            fn visit_i64<E>(self, _: i64) -> Result<(), E> {
                Ok(())
            }
            fn visit_u64<E>(self, _: u64) -> Result<(), E> {
                Ok(())
            }
            fn visit_f64<E>(self, _: f64) -> Result<(), E> {
                Ok(())
            }
            fn visit_str<E>(self, _: &str) -> Result<(), E> {
                Ok(())
            }
            fn visit_unit<E>(self) -> Result<(), E> {
                Ok(())
            }
        }
        let mut keys = Vec::new();
        Keys(&mut keys, String::new())
            .deserialize(&mut serde_json::Deserializer::from_str(text))
            .unwrap();
        keys
    }

    /// Whether the two sets of lines are the same: as JSON values, in key order and as text.
    fn compare(new: &[String], stock: &[String]) -> Result<(), String> {
        if new.len() != stock.len() {
            return Err(format!("{} lines against {}", new.len(), stock.len()));
        }
        for (new, stock) in new.iter().zip(stock) {
            let value = |l: &str| serde_json::from_str::<serde_json::Value>(l).unwrap();
            if value(new) != value(stock) {
                return Err(format!("values differ\nnew:   {new}stock: {stock}"));
            }
            let (new_keys, stock_keys) = (keys_in_order(new), keys_in_order(stock));
            if new_keys != stock_keys {
                return Err(format!(
                    "key order differs: {new_keys:?} against {stock_keys:?}\nnew:   {new}stock: {stock}"
                ));
            }
            if new != stock {
                return Err(format!("text differs\nnew:   {new}stock: {stock}"));
            }
        }
        Ok(())
    }

    #[derive(Debug)]
    #[allow(dead_code)] // Read through `Debug` only.
    struct Thing {
        name: &'static str,
        list: Vec<u8>,
    }

    /// Strings that JSON must escape, and some it must not.
    const NASTY: &str = "quote\" back\\ slash/ nl\n cr\r tab\t nul\0 ctrl\u{1}\u{1f} del\u{7f} \
                         é 😀 \u{2028}\u{2029} \u{feff} }\",\"x\":{";

    /// Events of every kind: outside any span, in spans whose fields are recorded again, with
    /// fields of every type and names that need care.
    fn every_kind_of_event() {
        tracing::info!("outside any span");
        tracing::info!(a = "x", n = 1u64, "outside any span, with fields");
        tracing::info!(a = 1);
        tracing::warn!(target: "custom::target", level = "field", target = 2, timestamp = 3, message_is = "x", "names of the line's own keys");
        tracing::error!(
            error = &std::io::Error::other(NASTY) as &(dyn std::error::Error + 'static),
            "an error"
        );
        tracing::debug!(text = NASTY, shown = %NASTY, debugged = ?NASTY, "{NASTY}");
        tracing::trace!(
            s = "str",
            u = u64::MAX,
            i = i64::MIN,
            f = 1.5f64,
            tiny = 5e-324f64,
            big = 1e300f64,
            whole = 3.0f64,
            nan = f64::NAN,
            inf = f64::INFINITY,
            neg_zero = -0.0f64,
            b = false,
            d = ?Thing { name: "thing", list: vec![1, 2] },
            opt = ?None::<u8>,
            bytes = &b"ab\xffc"[..],
            wide = 1i128 << 100,
            uwide = u128::MAX,
            r#type = "raw",
            r#ref = ?Some("raw debug"),
            "log.target" = "not from log",
            "log.line" = ?7,
            "with space.and dot" = 1,
            "key \"quoted\"" = true,
            "every type"
        );

        // As the webhook span goes: empty at first, recorded before and after the event.
        let webhook = tracing::info_span!(
            "webhook",
            request_id = field::Empty,
            trace_id = field::Empty,
            outcome = field::Empty,
        );
        webhook.record("trace_id", "4bf92f3577b34da6a3ce929d0e0e4736");
        webhook.in_scope(|| {
            tracing::Span::current().record("request_id", "r-1");
            tracing::info!(
                outcome = "accepted",
                request_id = "r-1",
                event_id = "e-1",
                subject = "vx.verifications.approved",
                seq = 7u64,
                "webhook stored"
            );
        });
        webhook.record("outcome", "accepted");
        webhook.in_scope(|| tracing::info!("after the last record"));

        // Every type in a span's fields, at creation and recorded again (later values win).
        let typed = tracing::info_span!(
            "typed",
            s = "str",
            u = u64::MAX,
            i = -1i64,
            f = 0.1f64,
            nan = f64::NAN,
            b = true,
            d = ?Thing { name: "thing", list: vec![3] },
            bytes = &b"abc"[..],
            wide = 1i128 << 100,
            r#type = "raw str",
            r#kind = ?"raw debug",
            "log.file" = ?"skipped in spans",
            "with space" = NASTY,
            z = field::Empty,
            a = field::Empty,
            m = field::Empty,
            r#later = field::Empty,
            r#later_debug = field::Empty,
            dbg = field::Empty,
            bin = field::Empty,
            nothing = field::Empty,
        );
        typed.in_scope(|| tracing::info!(x = 1u8, "in a span with every type"));
        typed.record("z", NASTY);
        typed.record("a", 1.25f64);
        typed.record("m", -3i64);
        typed.record("u", "now a string");
        typed.record("a", u64::MAX);
        typed.record(
            "s",
            field::debug(&Thing {
                name: "again",
                list: vec![],
            }),
        );
        // `tracing` drops the `r#` of a field name.
        typed.record("later", "raw, recorded");
        typed.record("later_debug", field::debug(&["raw", "debug"]));
        typed.record("kind", field::debug(&"raw debug, recorded"));
        typed.record("dbg", field::display(NASTY));
        typed.record("bin", &b"\x00\x01"[..]);
        typed.record("f", f64::NEG_INFINITY);
        typed.record("b", false);
        typed.record("z", "recorded again");
        typed.in_scope(|| tracing::warn!("after the records"));

        // Nested spans, an explicit parent, a root event inside a span, a span without fields,
        // a span with a field called `name`.
        let outer = tracing::info_span!("outer", depth = 1u64);
        let inner = tracing::debug_span!(parent: &outer, "inner", depth = 2u64);
        inner.in_scope(|| {
            tracing::info!("in the inner span");
            tracing::info!(parent: &outer, "explicit parent");
            tracing::info!(parent: None, "explicit root");
        });
        tracing::info_span!("bare").in_scope(|| tracing::info!("in a span without fields"));
        tracing::info_span!("named", name = "a field called name")
            .in_scope(|| tracing::info!("span fields with a name"));

        // A `log` record, as LogTracer hands it on.
        webhook.in_scope(|| {
            tracing_log::format_trace(
                &tracing_log::log::Record::builder()
                    .args(format_args!("from the log crate: {NASTY}"))
                    .level(tracing_log::log::Level::Warn)
                    .target("some_crate::module")
                    .module_path(Some("some_crate::module"))
                    .file(Some("src/module.rs"))
                    .line(Some(42))
                    .build(),
            )
            .unwrap()
        });
    }

    #[test]
    fn the_line_is_the_one_tracing_subscriber_writes_for_every_kind_of_event() {
        let stock = stock_lines(every_kind_of_event, false);
        // Lines written in this process, for a look with `--nocapture`.
        for line in &stock {
            print!("{line}");
        }
        assert!(stock.len() > 15);
        compare(&new_lines(every_kind_of_event), &stock).unwrap();
        // And `SpanJsonFields` under the stock event formatter (the line before `JsonLine`).
        compare(&stock_lines(every_kind_of_event, true), &stock).unwrap();
    }

    #[test]
    fn the_comparison_sees_a_changed_value_and_a_changed_key_order() {
        let line = "{\"a\":1,\"span\":{\"b\":\"x\",\"name\":\"s\"}}\n".to_owned();
        let other_value = "{\"a\":1,\"span\":{\"b\":\"y\",\"name\":\"s\"}}\n".to_owned();
        let other_order = "{\"a\":1,\"span\":{\"name\":\"s\",\"b\":\"x\"}}\n".to_owned();
        let other_text = "{\"a\":1, \"span\":{\"b\":\"x\",\"name\":\"s\"}}\n".to_owned();
        let same = |a: &String, b: &String| {
            compare(std::slice::from_ref(a), std::slice::from_ref(b)).is_ok()
        };
        assert!(same(&line, &line));
        assert!(!same(&line, &other_value));
        assert!(!same(&line, &other_order));
        assert!(!same(&line, &other_text));
    }
}
