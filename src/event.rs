//! From a verified, parsed VX body to the message we publish: classification to a kind, the
//! versioned envelope, the dedup id and the CloudEvents attributes (as headers).
//!
//! Pure: nothing here does I/O, and this module must not use NATS, HTTP or the VX API. It names
//! kinds, not subjects: the subject of each comes from [`Destinations`] (`nats::Subjects`), so no value
//! from the payload ever becomes a subject token. The personal data goes in the form [`Pii`]
//! says, which `crate::pii` decided: the received bytes unchanged under `result` (mode `clear`,
//! `schema_version` 1, never re-serialized), a JWE under `result_encrypted`, or nothing
//! (`schema_version` 2). [`draft_event`] builds everything but that part, once; the ingress
//! finishes it with the sealed body ([`EventDraft::finish`]), also on a ride-through retry.

use bytes::Bytes;
use serde::Serialize;
use serde_json::Value;
use sha2::{Digest, Sha256};

use crate::auth::Verified;
use crate::schema::Violation;
use crate::telemetry::{EventType, TraceContext};

/// Version of the envelope with `result` in clear (`events.pii = "clear"`): today's form.
pub const SCHEMA_VERSION: u8 = 1;
/// Version of the envelope without `result`: `result_encrypted`, or no personal data at all.
pub const SCHEMA_VERSION_PROTECTED: u8 = 2;

/// The form in which an event or a rejected copy carries its personal data (the VX body).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Pii<'a> {
    /// In clear: these bytes, exactly as received (`result`, schema_version 1).
    Clear(&'a [u8]),
    /// This compact JWE (`result_encrypted`).
    Encrypted(&'a str),
    /// Not at all (`events.pii = "omitted"`).
    Omitted,
    /// Not at all: the session was erased (`erased: true`).
    Erased,
}

impl Pii<'_> {
    /// The `vx-pii` header of a rejected copy: how its body travels.
    pub fn label(&self) -> &'static str {
        match self {
            Pii::Clear(_) => "clear",
            Pii::Encrypted(_) => "encrypted",
            Pii::Omitted => "omitted",
            Pii::Erased => "erased",
        }
    }
}
/// `ce-source` of every event.
pub const CE_SOURCE: &str = "urn:vx-bridge:webhook";
/// Prefix of every `ce-type`.
pub const CE_TYPE_PREFIX: &str = "vx.verification.";

/// The kind of a verification event, from the VX `status`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum EventKind {
    /// `status` = PASS.
    CompletedPass,
    /// `status` = FAIL.
    CompletedFail,
    /// `status` = PENDING, empty or null.
    Pending,
    /// Any other `status`: still published, never dropped.
    Unrecognized,
}

impl EventKind {
    /// Every kind, in subject order.
    pub const ALL: [EventKind; 4] = [
        EventKind::CompletedPass,
        EventKind::CompletedFail,
        EventKind::Pending,
        EventKind::Unrecognized,
    ];

    /// Classifies a VX `status` (exact, case-sensitive, as the vendor documents it).
    pub fn classify(status: &str) -> EventKind {
        match status {
            "PASS" => EventKind::CompletedPass,
            "FAIL" => EventKind::CompletedFail,
            "PENDING" | "" => EventKind::Pending,
            _ => EventKind::Unrecognized,
        }
    }

    /// The subject without its prefix; also the envelope's `type`.
    pub fn suffix(self) -> &'static str {
        match self {
            EventKind::CompletedPass => "completed.pass",
            EventKind::CompletedFail => "completed.fail",
            EventKind::Pending => "pending",
            EventKind::Unrecognized => "unrecognized",
        }
    }

    /// How a newly stored event of this kind is counted (`vx_bridge_events_total{type}`).
    pub fn metric(self) -> EventType {
        match self {
            EventKind::CompletedPass => EventType::Pass,
            EventKind::CompletedFail => EventType::Fail,
            EventKind::Pending => EventType::Pending,
            EventKind::Unrecognized => EventType::Unrecognized,
        }
    }

    /// Label for logs and metrics: pass, fail, pending or unrecognized.
    pub fn label(self) -> &'static str {
        self.metric().label()
    }
}

/// Where the messages built here are published: the subject of each event kind and of the kept
/// copy of a rejected body. `nats::Subjects` is the implementation (subject naming is NATS's);
/// this module names kinds, never subjects.
pub trait Destinations {
    /// Subject of an event kind.
    fn event(&self, kind: EventKind) -> String;
    /// Subject of the copies of rejected bodies.
    fn rejected(&self) -> String;
}

/// The fields of a VX body that the envelope and headers use.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Summary<'a> {
    /// `request_id` (schema-checked UUID).
    pub request_id: &'a str,
    /// `status`, "" when null or absent.
    pub status: &'a str,
    /// `reference`, if a string.
    pub reference: Option<&'a str>,
    /// Number of `journey.stops`.
    pub stops: usize,
}

impl<'a> Summary<'a> {
    /// Reads the summary from a schema-valid body.
    pub fn of(body: &'a Value) -> Summary<'a> {
        Summary {
            request_id: body["request_id"].as_str().unwrap_or_default(),
            status: body["status"].as_str().unwrap_or_default(),
            reference: body["reference"].as_str(),
            stops: body["journey"]["stops"].as_array().map_or(0, Vec::len),
        }
    }
}

/// A message ready to publish (`nats::publisher::into_nats` gives its NATS form).
#[derive(Debug, Clone)]
pub struct OutboundMessage {
    /// Full subject.
    pub subject: String,
    /// Headers, `Nats-Msg-Id` first.
    pub headers: Vec<(&'static str, String)>,
    /// Body.
    pub payload: Bytes,
    /// The stable event id (`ce-id`).
    pub event_id: String,
    /// The `Nats-Msg-Id`.
    pub msg_id: String,
    /// Metric label of the event's kind: pass, fail, pending, unrecognized or rejected.
    pub kind: &'static str,
}

#[derive(Serialize)]
struct Envelope<'a> {
    event_id: &'a str,
    #[serde(rename = "type")]
    kind: &'a str,
    request_id: &'a str,
    status: &'a str,
    reference: Option<&'a str>,
    received_at: &'a str,
    progress: Progress,
}

#[derive(Serialize)]
struct Progress {
    stops: usize,
}

/// Where a body that becomes an event came from. It decides the `Nats-Msg-Id` and the
/// `vx-source` header; the envelope, subject and CloudEvents headers are the same for all.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Origin<'a> {
    /// A verified webhook, with the delivery id its signature scheme carries (if any). No
    /// `vx-source` header.
    Webhook {
        /// The delivery id (e.g. `webhook-id`).
        delivery_id: Option<&'a str>,
    },
    /// The reconciler's poll of the VX API: `Nats-Msg-Id` `poll:{request_id}:{status}` (so two
    /// replicas polling the same completed session store it once), `vx-source: poll`.
    Poll,
    /// A rejected body published again by `vx-bridge replay`: the `Nats-Msg-Id` the webhook
    /// would have had (`msg_id`, from the rejected copy; none: the body hash, as for a webhook
    /// without a delivery id), `vx-source: replay` and `vx-replay-of: <rejected_seq>`.
    Replay {
        /// The webhook's `Nats-Msg-Id`, if the rejected copy carried a delivery id.
        msg_id: Option<&'a str>,
        /// Stream sequence of the rejected copy.
        rejected_seq: u64,
    },
}

impl<'a> From<&'a Verified> for Origin<'a> {
    fn from(verified: &'a Verified) -> Self {
        Origin::Webhook {
            delivery_id: verified.delivery_id(),
        }
    }
}

impl Origin<'_> {
    /// The `vx-source` header value; none for a webhook.
    pub fn source_header(&self) -> Option<&'static str> {
        match self {
            Origin::Webhook { .. } => None,
            Origin::Poll => Some("poll"),
            Origin::Replay { .. } => Some("replay"),
        }
    }
}

/// The header that carries the envelope's `status`, `reference` and `progress.stops`, the fields of
/// the session view that no CloudEvents header holds (`ce-id`, `ce-type`, `ce-subject` and
/// `ce-time` hold the others), so that the view projects an event from its headers alone.
pub const VIEW_HEADER: &str = "vx-view";

/// The longest [`VIEW_HEADER`] value written; a longer one (a very long `reference`) is left out,
/// and the view reads that event's body instead.
pub const VIEW_HEADER_MAX: usize = 1024;

/// The [`VIEW_HEADER`] value: `{"status":…,"reference":…,"stops":N}` as compact JSON (serde_json
/// escapes control characters, so it holds no line break); `None` when over [`VIEW_HEADER_MAX`].
fn view_header(summary: &Summary<'_>) -> Option<String> {
    #[derive(Serialize)]
    struct View<'a> {
        status: &'a str,
        reference: Option<&'a str>,
        stops: usize,
    }
    let view = View {
        status: summary.status,
        reference: summary.reference,
        stops: summary.stops,
    };
    // A struct of strings and a number always serializes.
    let text = serde_json::to_string(&view).ok()?;
    (text.len() <= VIEW_HEADER_MAX).then_some(text)
}

/// The `Nats-Msg-Id` of a poll event: `poll:{request_id}:{status}`, request_id lower-cased.
pub fn poll_msg_id(request_id: &str, status: &str) -> String {
    format!("poll:{}:{status}", request_id.to_ascii_lowercase())
}

/// Everything of an event but its personal data: built once per body ([`draft_event`]), and
/// finished with the sealed body ([`EventDraft::finish`]).
#[derive(Debug, Clone)]
pub struct EventDraft {
    /// Full subject.
    pub subject: String,
    /// Headers, `Nats-Msg-Id` first.
    pub headers: Vec<(&'static str, String)>,
    /// The stable event id (`ce-id`).
    pub event_id: String,
    /// The `Nats-Msg-Id`.
    pub msg_id: String,
    /// The event's kind.
    pub kind: EventKind,
    /// The envelope's fields as a JSON object, without `schema_version` and the personal data.
    envelope: Vec<u8>,
}

impl EventDraft {
    /// The message, with the personal data in the form `pii` says.
    pub fn finish(&self, pii: Pii<'_>) -> OutboundMessage {
        OutboundMessage {
            subject: self.subject.clone(),
            headers: self.headers.clone(),
            payload: self.payload(pii),
            event_id: self.event_id.clone(),
            msg_id: self.msg_id.clone(),
            kind: self.kind.label(),
        }
    }

    /// The body: `{"schema_version":N,<envelope fields>,<personal data>}`.
    fn payload(&self, pii: Pii<'_>) -> Bytes {
        let fields = &self.envelope[1..self.envelope.len() - 1];
        let extra = match pii {
            Pii::Clear(raw) => trim_json_ws(raw).len() + 16,
            Pii::Encrypted(jwe) => jwe.len() + 24,
            Pii::Omitted | Pii::Erased => 16,
        };
        let mut out = Vec::with_capacity(24 + fields.len() + extra);
        out.extend_from_slice(b"{\"schema_version\":");
        out.push(match pii {
            Pii::Clear(_) => b'0' + SCHEMA_VERSION,
            _ => b'0' + SCHEMA_VERSION_PROTECTED,
        });
        out.push(b',');
        out.extend_from_slice(fields);
        match pii {
            Pii::Clear(raw) => {
                out.extend_from_slice(b",\"result\":");
                out.extend_from_slice(trim_json_ws(raw));
            }
            Pii::Encrypted(jwe) => {
                // A compact JWE is base64url and dots: nothing to escape.
                out.extend_from_slice(b",\"result_encrypted\":\"");
                out.extend_from_slice(jwe.as_bytes());
                out.push(b'"');
            }
            Pii::Erased => out.extend_from_slice(b",\"erased\":true"),
            Pii::Omitted => {}
        }
        out.push(b'}');
        Bytes::from(out)
    }
}

/// Builds the event for an authentic, schema-valid body with the body in clear (`result`,
/// today's form): [`draft_event`] finished with [`Pii::Clear`].
pub fn build_event<'o>(
    subjects: &impl Destinations,
    origin: impl Into<Origin<'o>>,
    raw: &[u8],
    body: &Value,
    received_at: &str,
    trace: &TraceContext,
) -> OutboundMessage {
    draft_event(subjects, origin, raw, body, received_at, trace).finish(Pii::Clear(raw))
}

/// Builds everything of the event for an authentic, schema-valid body but its personal data.
/// `raw` is the body exactly as received (it decides the dedup id); `origin` is a `&Verified`
/// for a webhook, or [`Origin::Poll`] / [`Origin::Replay`].
pub fn draft_event<'o>(
    subjects: &impl Destinations,
    origin: impl Into<Origin<'o>>,
    raw: &[u8],
    body: &Value,
    received_at: &str,
    trace: &TraceContext,
) -> EventDraft {
    let origin = origin.into();
    let summary = Summary::of(body);
    let kind = EventKind::classify(summary.status);
    let hashed = || format!("sha256:{}", hex::encode(dedup_hash(raw, body)));
    let msg_id = match origin {
        Origin::Webhook {
            delivery_id: Some(id),
        } => delivery_msg_id(id, raw),
        Origin::Webhook { delivery_id: None } | Origin::Replay { msg_id: None, .. } => hashed(),
        Origin::Replay {
            msg_id: Some(id), ..
        } => id.to_owned(),
        Origin::Poll => poll_msg_id(summary.request_id, summary.status),
    };
    let event_id = event_id_for(&msg_id);
    let envelope = Envelope {
        event_id: &event_id,
        kind: kind.suffix(),
        request_id: summary.request_id,
        status: summary.status,
        reference: summary.reference,
        received_at,
        progress: Progress {
            stops: summary.stops,
        },
    };
    let mut fields = Vec::with_capacity(256);
    // Serializing a struct of strings and numbers cannot fail.
    if serde_json::to_writer(&mut fields, &envelope).is_err() {
        fields = b"{}".to_vec();
    }
    let mut headers = cloudevents_headers(
        &msg_id,
        &event_id,
        kind.suffix(),
        received_at,
        Some(summary.request_id),
    );
    if let Some(view) = view_header(&summary) {
        headers.push((VIEW_HEADER, view));
    }
    if let Some(source) = origin.source_header() {
        headers.push(("vx-source", source.to_owned()));
    }
    if let Origin::Replay { rejected_seq, .. } = origin {
        headers.push(("vx-replay-of", rejected_seq.to_string()));
    }
    push_trace(&mut headers, trace);
    EventDraft {
        subject: subjects.event(kind),
        headers,
        event_id,
        msg_id,
        kind,
        envelope: fields,
    }
}

/// A session notice on the event stream (`{prefix}.expired`, `{prefix}.erased`): a JSON body,
/// `Nats-Msg-Id` `{kind}:{request_id}` (so the same notice is stored once within the
/// duplicate window) and `content-type: application/json`. `body` is a struct of strings and
/// numbers, which always serializes.
pub fn session_notice(
    subject: String,
    kind: &'static str,
    request_id: &str,
    body: &impl Serialize,
) -> OutboundMessage {
    let msg_id = format!("{kind}:{request_id}");
    OutboundMessage {
        subject,
        headers: vec![
            ("Nats-Msg-Id", msg_id.clone()),
            ("content-type", "application/json".to_owned()),
        ],
        payload: serde_json::to_vec(body).unwrap_or_default().into(),
        event_id: msg_id.clone(),
        msg_id,
        kind,
    }
}

/// What a stored event body carries of its personal data ([`carried_pii`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CarriedPii {
    /// `result`, exactly as received (`events.pii = "clear"`).
    Clear(Bytes),
    /// `result_encrypted`: a JWE under the session's data key.
    Encrypted(String),
    /// Neither (`omitted`, or written after an erasure).
    Absent,
}

/// The request_id of a stored event body and what it carries of the personal data; `None` when
/// it is not an event body.
pub fn carried_pii(payload: &[u8]) -> Option<(String, CarriedPii)> {
    #[derive(serde::Deserialize)]
    struct Envelope<'a> {
        request_id: String,
        #[serde(borrow, default)]
        result: Option<&'a serde_json::value::RawValue>,
        #[serde(default)]
        result_encrypted: Option<String>,
    }
    let e: Envelope<'_> = serde_json::from_slice(payload).ok()?;
    let pii = match (e.result, e.result_encrypted) {
        (Some(r), _) => CarriedPii::Clear(Bytes::copy_from_slice(r.get().as_bytes())),
        (None, Some(jwe)) => CarriedPii::Encrypted(jwe),
        (None, None) => CarriedPii::Absent,
    };
    Some((e.request_id, pii))
}

/// Why an authenticated body was rejected.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RejectReason {
    /// Not JSON.
    InvalidJson,
    /// JSON that fails the schema.
    SchemaViolation,
    /// A valid body whose event exceeds the NATS server's `max_payload`.
    EventTooLarge,
}

impl RejectReason {
    /// Stable code, also the `vx-reject-reason` header.
    pub fn code(self) -> &'static str {
        match self {
            RejectReason::InvalidJson => "invalid_json",
            RejectReason::SchemaViolation => "schema_violation",
            RejectReason::EventTooLarge => "event_too_large",
        }
    }
}

/// Largest `vx-reject-errors` header we write.
const MAX_REASON_HEADER: usize = 4096;

/// An upper bound of the NATS headers of a rejected message (as `max_payload` counts them):
/// `Nats-Msg-Id` (a 256-character delivery id and a hash), the CloudEvents headers, the reason,
/// at most [`MAX_REASON_HEADER`] of errors and a 512-character `tracestate`, with framing; about
/// 5.3 KB, rounded up. Any body of at most `max_payload` minus this can be kept on `rejected`,
/// so the ingress never accepts a body that it could neither publish nor keep.
pub const REJECTED_HEADERS_MAX: usize = 8 * 1024;

/// Builds the audit message for an authenticated body that failed parsing or the schema:
/// the raw bytes, with the reasons in headers.
pub fn build_rejected(
    subjects: &impl Destinations,
    verified: &Verified,
    raw: &[u8],
    reason: RejectReason,
    errors: &[Violation],
    received_at: &str,
    trace: &TraceContext,
) -> OutboundMessage {
    let msg_id = match verified.delivery_id() {
        Some(id) => format!("rejected:{}", delivery_msg_id(id, raw)),
        None => format!("rejected:sha256:{}", hex::encode(Sha256::digest(raw))),
    };
    let event_id = event_id_for(&msg_id);
    let mut errors_json = serde_json::to_string(errors).unwrap_or_else(|_| "[]".into());
    if errors_json.len() > MAX_REASON_HEADER {
        // Keep the header bounded; the count of violations stays in the 422 answer.
        errors_json =
            serde_json::to_string(&errors[..1.min(errors.len())]).unwrap_or_else(|_| "[]".into());
        if errors_json.len() > MAX_REASON_HEADER {
            // One violation at a very long instance path (the body's own keys).
            errors_json = "[]".into();
        }
    }
    let mut headers = cloudevents_headers(&msg_id, &event_id, "rejected", received_at, None);
    headers.push(("vx-reject-reason", reason.code().to_owned()));
    headers.push(("vx-reject-errors", errors_json));
    push_trace(&mut headers, trace);
    OutboundMessage {
        subject: subjects.rejected(),
        headers,
        payload: Bytes::copy_from_slice(raw),
        event_id,
        msg_id,
        kind: "rejected",
    }
}

/// A rejected copy ([`build_rejected`]) with its body in the form `pii` says: the raw bytes
/// (`clear`: no header, today's form), the JWE's bytes, or nothing; header `vx-pii` says which
/// (`encrypted`, `omitted`, `erased`). The `Nats-Msg-Id` stays the one of the received bytes.
pub fn seal_rejected(mut msg: OutboundMessage, pii: Pii<'_>) -> OutboundMessage {
    match pii {
        Pii::Clear(_) => return msg,
        Pii::Encrypted(jwe) => msg.payload = Bytes::copy_from_slice(jwe.as_bytes()),
        Pii::Omitted | Pii::Erased => msg.payload = Bytes::new(),
    }
    msg.headers.push(("vx-pii", pii.label().to_owned()));
    msg
}

/// The session a rejected body is about, if it says so: its `request_id`, when the body is a
/// JSON object whose `request_id` is a UUID (lower-cased). Its copy is then sealed under the
/// session's key, so erasing the session reaches it too.
pub fn session_of(raw: &[u8]) -> Option<String> {
    #[derive(serde::Deserialize)]
    struct Id<'a> {
        #[serde(borrow)]
        request_id: Option<std::borrow::Cow<'a, str>>,
    }
    let id: Id<'_> = serde_json::from_slice(raw).ok()?;
    let rid = id.request_id?;
    (rid.len() == 36 && uuid::Uuid::try_parse(&rid).is_ok()).then(|| rid.to_ascii_lowercase())
}

/// The `Nats-Msg-Id` and CloudEvents (binary mode) headers of every message we publish, in the
/// one place they are written: `Nats-Msg-Id` first, then `ce-specversion`, `ce-id`, `ce-type`
/// (`vx.verification.{type_suffix}`), `ce-source`, `ce-time`; and, for an event about one session
/// (`subject`: its request_id, the body our JSON envelope), `ce-subject` and `ce-datacontenttype`.
fn cloudevents_headers(
    msg_id: &str,
    event_id: &str,
    type_suffix: &str,
    time: &str,
    subject: Option<&str>,
) -> Vec<(&'static str, String)> {
    // Room for the subject, the view's header, two reason (or source) headers and the trace
    // context without growing.
    let mut headers = Vec::with_capacity(13);
    headers.extend([
        ("Nats-Msg-Id", msg_id.to_owned()),
        ("ce-specversion", "1.0".to_owned()),
        ("ce-id", event_id.to_owned()),
        ("ce-type", format!("{CE_TYPE_PREFIX}{type_suffix}")),
        ("ce-source", CE_SOURCE.to_owned()),
        ("ce-time", time.to_owned()),
    ]);
    if let Some(subject) = subject {
        headers.push(("ce-subject", subject.to_owned()));
        headers.push(("ce-datacontenttype", "application/json".to_owned()));
    }
    headers
}

fn push_trace(headers: &mut Vec<(&'static str, String)>, trace: &TraceContext) {
    if let Some(tp) = &trace.traceparent {
        headers.push(("traceparent", tp.clone()));
    }
    if let Some(ts) = &trace.tracestate {
        headers.push(("tracestate", ts.clone()));
    }
}

/// The `Nats-Msg-Id` of a delivery that carries an id: the id bound to the body it came with,
/// `{delivery_id}:sha256:{hex of the trimmed body}`. A retry (same id, same bytes) gets the same
/// message id and is deduplicated; a different body under a reused id is a different message,
/// so it is stored rather than answered "duplicate" with another message's sequence.
pub fn delivery_msg_id(delivery_id: &str, raw: &[u8]) -> String {
    let digest = Sha256::digest(trim_json_ws(raw));
    let mut out = String::with_capacity(delivery_id.len() + 8 + 64);
    out.push_str(delivery_id);
    out.push_str(":sha256:");
    out.push_str(&hex::encode(digest));
    out
}

/// A stable UUID (version 8) for a message id, so a retried delivery keeps its event id.
pub fn event_id_for(msg_id: &str) -> String {
    let mut h = Sha256::new();
    h.update(b"vx-bridge/event-id/");
    h.update(msg_id.as_bytes());
    let digest = h.finalize();
    let mut bytes = [0u8; 16];
    bytes.copy_from_slice(&digest[..16]);
    uuid::Uuid::new_v8(bytes).hyphenated().to_string()
}

fn trim_json_ws(raw: &[u8]) -> &[u8] {
    let ws = |b: &u8| matches!(b, b' ' | b'\t' | b'\n' | b'\r');
    let start = raw.iter().position(|b| !ws(b)).unwrap_or(raw.len());
    let end = raw.iter().rposition(|b| !ws(b)).map_or(start, |e| e + 1);
    &raw[start..end]
}

/// The dedup hash of a body without a delivery id: [`canonical_hash`] of the parsed value, so a
/// retry that only changes whitespace or key order is recognised; but when the body holds a
/// number that the parsed value cannot hold exactly ([`crate::json::has_inexact_number`]),
/// the hash of the raw bytes, so two bodies differing only in such a number are never taken
/// for one another (which would answer 202 "duplicate" for an event that was never stored).
pub fn dedup_hash(raw: &[u8], value: &Value) -> [u8; 32] {
    if crate::json::has_inexact_number(raw) {
        let mut h = Sha256::new();
        h.update(b"raw:");
        h.update(trim_json_ws(raw));
        h.finalize().into()
    } else {
        canonical_hash(value)
    }
}

/// SHA-256 of the canonical JSON of a value: object keys sorted by their UTF-8 bytes, no insignificant whitespace, strings and numbers as serde_json writes them.
/// Two bodies that differ only in key order or whitespace hash alike.
pub fn canonical_hash(value: &Value) -> [u8; 32] {
    let mut h = Sha256::new();
    write_canonical(value, &mut h);
    h.finalize().into()
}

fn write_canonical(value: &Value, h: &mut Sha256) {
    match value {
        Value::Object(map) => {
            // serde_json's map is ordered by key already unless `preserve_order` is on; sorting
            // the (key, value) pairs keeps this right either way and needs no lookup per key.
            let mut entries: Vec<(&String, &Value)> = map.iter().collect();
            entries.sort_unstable_by(|a, b| a.0.cmp(b.0));
            h.update(b"{");
            for (i, (k, v)) in entries.into_iter().enumerate() {
                if i > 0 {
                    h.update(b",");
                }
                write_scalar(k, h);
                h.update(b":");
                write_canonical(v, h);
            }
            h.update(b"}");
        }
        Value::Array(items) => {
            h.update(b"[");
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    h.update(b",");
                }
                write_canonical(item, h);
            }
            h.update(b"]");
        }
        scalar => write_scalar(scalar, h),
    }
}

/// Writes a scalar (or a key, as a JSON string) as serde_json does, straight into the hash.
fn write_scalar<T: Serialize + ?Sized>(value: &T, h: &mut Sha256) {
    // Writing into a hash cannot fail.
    let _ = serde_json::to_writer(HashWriter(h), value);
}

/// Feeds serialized bytes to the hash without an intermediate buffer.
struct HashWriter<'a>(&'a mut Sha256);

impl std::io::Write for HashWriter<'_> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.update(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::nats::Subjects;
    use serde_json::json;

    const SEED: &str = include_str!("../tests/fixtures/seed-pass.json");
    const AT: &str = "2026-11-27T10:00:00.123Z";

    fn subjects() -> Subjects {
        Subjects::new("verification")
    }

    #[test]
    fn event_embeds_the_body_unchanged_and_validates() {
        let body: Value = serde_json::from_str(SEED).unwrap();
        let msg = build_event(
            &subjects(),
            &Verified::for_tests(None),
            SEED.as_bytes(),
            &body,
            AT,
            &TraceContext::default(),
        );
        assert_eq!(msg.subject, "verification.completed.pass");
        let event: Value = serde_json::from_slice(&msg.payload).unwrap();
        assert_eq!(event["result"], body);
        assert_eq!(event["type"], "completed.pass");
        assert_eq!(event["request_id"], "4ed2ec66-9471-415d-99ce-7bd1742fc2b8");
        assert_eq!(event["reference"], "Ref123");
        assert_eq!(event["progress"]["stops"], 2);
        assert_eq!(event["received_at"], AT);
        assert_eq!(crate::schema::Schemas::get().check_event(&event), Ok(()));
        // The raw bytes appear verbatim (field order and spacing kept).
        let text = std::str::from_utf8(&msg.payload).unwrap();
        assert!(text.ends_with(&format!("\"result\":{}}}", SEED.trim())));
    }

    #[test]
    fn dedup_id_is_the_delivery_id_or_a_canonical_hash() {
        let a: Value = serde_json::from_str(
            r#"{"status":"PENDING","request_id":"4ed2ec66-9471-415d-99ce-7bd1742fc2b8"}"#,
        )
        .unwrap();
        let b: Value = serde_json::from_str(
            r#"{ "request_id" : "4ed2ec66-9471-415d-99ce-7bd1742fc2b8", "status" : "PENDING" }"#,
        )
        .unwrap();
        let c: Value = serde_json::from_str(
            r#"{"request_id":"4ed2ec66-9471-415d-99ce-7bd1742fc2b8","status":"PASS"}"#,
        )
        .unwrap();
        let none = Verified::for_tests(None);
        let t = TraceContext::default();
        let ma = build_event(&subjects(), &none, b"{}", &a, AT, &t);
        let mb = build_event(&subjects(), &none, b"{}", &b, AT, &t);
        let mc = build_event(&subjects(), &none, b"{}", &c, AT, &t);
        assert_eq!(ma.msg_id, mb.msg_id);
        assert_eq!(ma.event_id, mb.event_id);
        assert_ne!(ma.msg_id, mc.msg_id);
        assert!(ma.msg_id.starts_with("sha256:"));
        let with_id = build_event(
            &subjects(),
            &Verified::for_tests(Some("msg_1".into())),
            b"{}",
            &a,
            AT,
            &t,
        );
        assert_eq!(with_id.msg_id, delivery_msg_id("msg_1", b"{}"));
        assert!(with_id.msg_id.starts_with("msg_1:sha256:"));
        assert_eq!(with_id.headers[0], ("Nats-Msg-Id", with_id.msg_id.clone()));
    }

    #[test]
    fn poll_and_replay_events_differ_from_a_webhook_only_in_id_and_source() {
        let raw = SEED.as_bytes();
        let body: Value = serde_json::from_slice(raw).unwrap();
        let t = TraceContext::default();
        let hook = Verified::for_tests(Some("msg_9".into()));
        let webhook = build_event(&subjects(), &hook, raw, &body, AT, &t);
        let poll = build_event(&subjects(), Origin::Poll, raw, &body, AT, &t);
        let replay = build_event(
            &subjects(),
            Origin::Replay {
                msg_id: Some(&webhook.msg_id),
                rejected_seq: 42,
            },
            raw,
            &body,
            AT,
            &t,
        );
        let rid = body["request_id"].as_str().unwrap();
        assert_eq!(
            poll.msg_id,
            format!("poll:{}:PASS", rid.to_ascii_lowercase())
        );
        assert_eq!(
            replay.msg_id, webhook.msg_id,
            "a replay has the webhook's own id"
        );
        assert_eq!(replay.event_id, webhook.event_id);
        let header = |m: &OutboundMessage, name: &str| {
            m.headers
                .iter()
                .find(|(k, _)| *k == name)
                .map(|(_, v)| v.clone())
        };
        assert_eq!(header(&webhook, "vx-source"), None);
        assert_eq!(header(&poll, "vx-source").as_deref(), Some("poll"));
        assert_eq!(header(&replay, "vx-source").as_deref(), Some("replay"));
        assert_eq!(header(&replay, "vx-replay-of").as_deref(), Some("42"));
        assert_eq!(header(&poll, "vx-replay-of"), None);
        for m in [&poll, &replay] {
            assert_eq!(m.subject, webhook.subject);
            assert_eq!(m.kind, webhook.kind);
            assert_eq!(header(m, "ce-type"), header(&webhook, "ce-type"));
            assert_eq!(header(m, "ce-subject"), header(&webhook, "ce-subject"));
        }
        // Same envelope apart from the event id.
        let env = |m: &OutboundMessage| {
            let mut v: Value = serde_json::from_slice(&m.payload).unwrap();
            v.as_object_mut().unwrap().remove("event_id");
            v
        };
        assert_eq!(env(&poll), env(&webhook));
        // Without a delivery id a replay falls back to the body hash, as the webhook did.
        let bare = build_event(&subjects(), &Verified::for_tests(None), raw, &body, AT, &t);
        let replay_bare = build_event(
            &subjects(),
            Origin::Replay {
                msg_id: None,
                rejected_seq: 1,
            },
            raw,
            &body,
            AT,
            &t,
        );
        assert_eq!(replay_bare.msg_id, bare.msg_id);
    }

    #[test]
    fn a_reused_delivery_id_with_another_body_is_another_message() {
        // Regression: PENDING then FAIL under one `webhook-id` got the same Nats-Msg-Id, so the
        // FAIL was answered 202 "duplicate" with the PENDING event's sequence, and dropped.
        let id = Verified::for_tests(Some("msg_reused".into()));
        let t = TraceContext::default();
        let pending =
            br#"{"request_id":"4ed2ec66-9471-415d-99ce-7bd1742fc2b8","status":"PENDING"}"#;
        let fail = br#"{"request_id":"4ed2ec66-9471-415d-99ce-7bd1742fc2b8","status":"FAIL"}"#;
        let vp: Value = serde_json::from_slice(pending).unwrap();
        let vf: Value = serde_json::from_slice(fail).unwrap();
        let a = build_event(&subjects(), &id, pending, &vp, AT, &t);
        let b = build_event(&subjects(), &id, fail, &vf, AT, &t);
        assert_ne!(a.msg_id, b.msg_id);
        assert_ne!(a.event_id, b.event_id);
        // A retry of either (same id, same bytes) is the same message.
        let again = build_event(&subjects(), &id, fail, &vf, AT, &t);
        assert_eq!(b.msg_id, again.msg_id);
        assert_eq!(b.event_id, again.event_id);
        // The same holds for the copy kept on `rejected`.
        let ra = build_rejected(
            &subjects(),
            &id,
            b"{x",
            RejectReason::InvalidJson,
            &[],
            AT,
            &t,
        );
        let rb = build_rejected(
            &subjects(),
            &id,
            b"{y",
            RejectReason::InvalidJson,
            &[],
            AT,
            &t,
        );
        assert_ne!(ra.msg_id, rb.msg_id);
    }

    #[test]
    fn bodies_differing_only_in_a_number_beyond_f64_are_different_events() {
        // Regression: both numbers parse to the same f64, so their canonical JSON is the same;
        // the second body was answered 202 "duplicate" and never stored.
        let raw_a = br#"{"request_id":"4ed2ec66-9471-415d-99ce-7bd1742fc2b8","status":"PASS","n":12345678901234567890123}"#;
        let raw_b = br#"{"request_id":"4ed2ec66-9471-415d-99ce-7bd1742fc2b8","status":"PASS","n":12345678901234567890124}"#;
        let a: Value = serde_json::from_slice(raw_a).unwrap();
        let b: Value = serde_json::from_slice(raw_b).unwrap();
        assert_eq!(canonical_hash(&a), canonical_hash(&b), "the lossy case");
        let none = Verified::for_tests(None);
        let t = TraceContext::default();
        let ma = build_event(&subjects(), &none, raw_a, &a, AT, &t);
        let mb = build_event(&subjects(), &none, raw_b, &b, AT, &t);
        assert_ne!(ma.msg_id, mb.msg_id);
        // The same bytes sent again are still one event.
        let again = build_event(&subjects(), &none, raw_a, &a, AT, &t);
        assert_eq!(ma.msg_id, again.msg_id);
    }

    #[test]
    fn cloudevents_headers_are_complete() {
        let body = json!({"request_id": "4ed2ec66-9471-415d-99ce-7bd1742fc2b8", "status": "FAIL"});
        let tp = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
        let trace = TraceContext::continue_or_start(Some(tp), Some("vendor=x"));
        let msg = build_event(
            &subjects(),
            &Verified::for_tests(None),
            b"{}",
            &body,
            AT,
            &trace,
        );
        let get = |k: &str| {
            msg.headers
                .iter()
                .find(|(n, _)| *n == k)
                .map(|(_, v)| v.as_str())
        };
        assert_eq!(get("ce-specversion"), Some("1.0"));
        assert_eq!(get("ce-id"), Some(msg.event_id.as_str()));
        assert_eq!(get("ce-type"), Some("vx.verification.completed.fail"));
        assert_eq!(get("ce-source"), Some(CE_SOURCE));
        assert_eq!(get("ce-time"), Some(AT));
        assert_eq!(
            get("ce-subject"),
            Some("4ed2ec66-9471-415d-99ce-7bd1742fc2b8")
        );
        assert_eq!(get("ce-datacontenttype"), Some("application/json"));
        assert_eq!(get("traceparent"), trace.traceparent.as_deref());
        assert_eq!(get("tracestate"), Some("vendor=x"));
    }

    #[test]
    fn rejected_message_keeps_raw_bytes_and_reasons() {
        let raw = b"{not json";
        let msg = build_rejected(
            &subjects(),
            &Verified::for_tests(None),
            raw,
            RejectReason::InvalidJson,
            &[],
            AT,
            &TraceContext::default(),
        );
        assert_eq!(msg.subject, "verification.rejected");
        assert_eq!(&msg.payload[..], raw);
        assert!(msg.msg_id.starts_with("rejected:sha256:"));
        assert!(msg
            .headers
            .contains(&("vx-reject-reason", "invalid_json".to_owned())));
    }
}

#[cfg(test)]
mod proptests {
    use super::*;
    use crate::nats::Subjects;
    use proptest::prelude::*;
    use serde_json::json;

    fn json_value() -> impl Strategy<Value = Value> {
        let leaf = prop_oneof![
            Just(Value::Null),
            any::<bool>().prop_map(Value::Bool),
            any::<i64>().prop_map(|n| json!(n)),
            "[\\PC]{0,12}".prop_map(Value::String),
        ];
        leaf.prop_recursive(3, 24, 4, |inner| {
            prop_oneof![
                proptest::collection::vec(inner.clone(), 0..4).prop_map(Value::Array),
                proptest::collection::btree_map("[a-zA-Z_]{1,8}", inner, 0..4)
                    .prop_map(|m| Value::Object(m.into_iter().collect())),
            ]
        })
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(256))]

        /// Whatever else a valid body holds, the event carries it unchanged, validates, and is
        /// deduplicated by content regardless of formatting.
        #[test]
        fn any_body_becomes_a_valid_event_carrying_it_unchanged(extra in proptest::collection::btree_map("[a-z]{1,10}", json_value(), 0..6), status in "[A-Z ]{0,10}") {
            let mut body = json!({"request_id": "4ed2ec66-9471-415d-99ce-7bd1742fc2b8", "status": status});
            for (k, v) in extra {
                if k != "request_id" && k != "status" && k != "reference" && k != "journey" {
                    body[k] = v;
                }
            }
            // Events are built only from schema-valid bodies (the ingress checks first).
            prop_assume!(crate::schema::Schemas::get().check_result(&body).is_ok());
            let compact = serde_json::to_vec(&body).unwrap();
            let pretty = serde_json::to_vec_pretty(&body).unwrap();
            let none = crate::auth::Verified::for_tests(None);
            let t = TraceContext::default();
            let a = build_event(&Subjects::new("p"), &none, &compact, &body, "2026-01-01T00:00:00.000Z", &t);
            let b = build_event(&Subjects::new("p"), &none, &pretty, &body, "2026-01-01T00:00:00.000Z", &t);
            prop_assert_eq!(&a.msg_id, &b.msg_id);
            let event: Value = serde_json::from_slice(&b.payload).unwrap();
            prop_assert_eq!(&event["result"], &body);
            prop_assert_eq!(crate::schema::Schemas::get().check_event(&event), Ok(()));
            prop_assert_eq!(a.subject, format!("p.{}", EventKind::classify(body["status"].as_str().unwrap()).suffix()));
        }
    }
}
