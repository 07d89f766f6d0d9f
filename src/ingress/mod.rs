//! The webhook endpoint: `POST {http.webhook_path}`.
//!
//! Steps, in this order, each with its own answer: in-flight limit (429) → declared size (413) →
//! content type (415) → read the body within the size and time limits (413, 408) →
//! authenticate the raw bytes (401) → parse JSON strictly, duplicate keys refused (400) → JSON Schema (422) → build the event →
//! publish and await the PubAck → 202. Anything not stored is 503 with `Retry-After`. While
//! NATS is away the publish rides through the outage for up to `nats.outage_wait`
//! ([`crate::nats::ridethrough`]), holding its in-flight slot; shutdown answers such a wait 503 at once.
//! Authenticated bodies that fail parsing or the schema are kept on `{prefix}.rejected` before
//! the 400/422 is sent; if they cannot be kept, the answer is 503 so the sender retries.
//! Logs carry the request_id and outcome, never the body. The ingress never reaches the VX API
//! client nor the status service (`scripts/code/check-layers.py`, rules 2 and 4).

use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use bytes::Bytes;
use http_body_util::{BodyExt, LengthLimitError, Limited};
use serde::Serialize;
use serde_json::Value;
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;
use tracing::Instrument as _;

use crate::auth::{Verified, Verifier};
use crate::config::Config;
use crate::event::{
    build_rejected, draft_event, seal_rejected, session_of, OutboundMessage, REJECTED_HEADERS_MAX,
};
use crate::nats::ridethrough::OutageWait;
use crate::nats::stream::StreamState;
use crate::nats::{PublishError, Publisher, Stored, Subjects};
use crate::pii::{KeyError, PiiMode, Sealer};
use crate::schema::Schemas;
use crate::telemetry::{
    EventType, TraceContext, WebhookOutcome, EVENTS, WEBHOOKS, WEBHOOKS_IN_FLIGHT,
    WEBHOOK_BODY_LIMIT, WEBHOOK_DURATION,
};
use crate::timestamp::format_timestamp;

mod refusal;

pub use refusal::{Refusal, Rejection};

/// What the webhook handler needs, shared by all requests.
pub struct Ingress {
    /// Authentication.
    pub verifier: Verifier,
    /// Compiled schemas.
    pub schemas: Schemas,
    /// Subjects under the prefix.
    pub subjects: Subjects,
    /// JetStream publisher.
    pub publisher: Publisher,
    /// Bounds requests in flight (429 beyond).
    pub in_flight: Arc<Semaphore>,
    /// Largest body configured (`http.max_body_bytes`); [`Ingress::body_limit`] is what applies.
    pub max_body_bytes: usize,
    /// Bytes of bodies being read before their signature is checked, all requests together
    /// (`http.max_unauthenticated_bytes`): one permit per byte; none free → 429.
    pub unauthenticated: Arc<Semaphore>,
    /// Time to read a body.
    pub body_timeout: Duration,
    /// `Retry-After` for 429/503.
    pub retry_after_secs: u32,
    /// Told when a publish finds no stream, so it is re-created.
    pub stream_state: Arc<StreamState>,
    /// How long a publish rides through a NATS outage (`nats.outage_wait`).
    pub outage: OutageWait,
    /// Cancelled when shutdown begins: a publish waiting out an outage is answered 503 at once.
    pub shutdown: CancellationToken,
    /// Seals the personal data of events and rejected copies (`events.pii`).
    pub sealer: Sealer,
}

impl Ingress {
    /// The handler's parts for `config` (`http.*` limits, `nats.subject_prefix`,
    /// `nats.outage_wait`), with the compiled schemas and the metric handles.
    pub fn new(
        config: &Config,
        verifier: Verifier,
        publisher: Publisher,
        stream_state: Arc<StreamState>,
        shutdown: CancellationToken,
    ) -> Self {
        let http = &config.http;
        Self {
            verifier,
            schemas: Schemas::get(),
            subjects: Subjects::new(&config.nats.subject_prefix),
            publisher,
            in_flight: Arc::new(Semaphore::new(http.max_in_flight)),
            max_body_bytes: http.max_body_bytes,
            unauthenticated: Arc::new(Semaphore::new(http.max_unauthenticated_bytes)),
            body_timeout: http.body_timeout,
            retry_after_secs: http.retry_after_secs,
            stream_state,
            outage: OutageWait::new(config.nats.outage_wait),
            shutdown,
            sealer: Sealer::clear(),
        }
    }

    /// The largest body accepted now: `http.max_body_bytes`, lowered when the connected NATS
    /// server's `max_payload` could not hold it with the headers of the copy kept on
    /// `rejected`; so every authenticated body read can be stored or kept, never only refused
    /// with a 503 that no retry can cure.
    pub fn body_limit(&self) -> usize {
        body_limit_for(
            self.max_body_bytes,
            self.publisher.max_payload(),
            self.sealer.mode(),
        )
    }

    /// The 413 for a body over `limit`.
    fn too_large(&self, limit: usize) -> Refusal {
        Refusal::BodyTooLarge {
            limit,
            max_body_bytes: self.max_body_bytes,
            max_payload: self.publisher.max_payload(),
        }
    }
}

/// The body limit as the connected server's `max_payload` changes: exported as
/// `vx_bridge_webhook_body_limit_bytes`, and a warning once per `max_payload` that lowers it.
#[derive(Debug)]
pub struct BodyLimitWatch {
    max_body_bytes: usize,
    mode: PiiMode,
    /// The `max_payload` last warned about.
    warned_for: Option<usize>,
}

impl BodyLimitWatch {
    /// For `http.max_body_bytes` and `events.pii`.
    pub fn new(config: &Config) -> Self {
        Self {
            max_body_bytes: config.http.max_body_bytes,
            mode: config.events.pii,
            warned_for: None,
        }
    }

    /// The server (re)connected with `max_payload`.
    pub fn update(&mut self, max_payload: usize) {
        let max_body_bytes = self.max_body_bytes;
        let limit = body_limit_for(max_body_bytes, max_payload, self.mode);
        WEBHOOK_BODY_LIMIT.one().set(limit as f64);
        if limit < max_body_bytes && self.warned_for != Some(max_payload) {
            self.warned_for = Some(max_payload);
            tracing::warn!(
                max_body_bytes,
                max_payload,
                limit,
                "http.max_body_bytes does not fit the NATS server's max_payload with the headers of a copy kept on rejected: bodies above {limit} bytes are refused with 413; lower http.max_body_bytes or raise the server's max_payload"
            );
        }
    }
}

/// `max_body_bytes`, lowered to `max_payload` minus [`REJECTED_HEADERS_MAX`] when that is less.
pub fn body_limit(max_body_bytes: usize, max_payload: usize) -> usize {
    max_body_bytes.min(max_payload.saturating_sub(REJECTED_HEADERS_MAX))
}

/// Room for a JWE's header, IV and tag, and the event's envelope, beyond the base64 of the body.
const JWE_OVERHEAD: usize = 1024;

/// [`body_limit`] for a mode: encrypted, a body travels as base64url (4/3 of its size) plus
/// [`JWE_OVERHEAD`], so the largest body that still fits is lower.
pub fn body_limit_for(max_body_bytes: usize, max_payload: usize, mode: PiiMode) -> usize {
    let room = max_payload.saturating_sub(REJECTED_HEADERS_MAX);
    let room = match mode {
        PiiMode::Encrypted => room.saturating_sub(JWE_OVERHEAD) / 4 * 3,
        PiiMode::Clear | PiiMode::Omitted => room,
    };
    max_body_bytes.min(room)
}

/// A key store failure as the publish it stopped: retryable (ridden through, then 503) when
/// NATS was away, else answered at once with 503.
fn key_failure(e: KeyError) -> PublishError {
    if e.is_retryable() {
        PublishError::Unavailable(e.into())
    } else {
        PublishError::Other(e.into())
    }
}

/// The 202 body.
#[derive(Debug, Serialize)]
pub struct Accepted {
    /// Stable event id (`ce-id`).
    pub event_id: String,
    /// Subject it was published on.
    pub subject: String,
    /// Stream it is stored in.
    pub stream: String,
    /// Stream sequence.
    pub seq: u64,
    /// The event was already stored (a retried delivery).
    pub duplicate: bool,
}

/// `POST {webhook_path}`.
pub async fn handle_webhook(State(ingress): State<Arc<Ingress>>, req: Request) -> Response {
    let started = Instant::now();
    let span = tracing::info_span!(
        "webhook",
        request_id = tracing::field::Empty,
        trace_id = tracing::field::Empty,
        outcome = tracing::field::Empty,
    );
    let trace = crate::telemetry::continue_trace(
        &span,
        trace_header(req.headers(), "traceparent"),
        trace_header(req.headers(), "tracestate"),
    );
    if let Some(trace_id) = trace.trace_id() {
        span.record("trace_id", trace_id);
    }
    let (outcome, response) = async {
        match process(&ingress, req, &trace).await {
            Ok(stored) => stored.answer(),
            Err(refusal) => refusal.answer(ingress.retry_after_secs),
        }
    }
    .instrument(span.clone())
    .await;
    span.record("outcome", outcome.label());
    WEBHOOKS.get(outcome).increment(1);
    WEBHOOK_DURATION
        .get(outcome)
        .record(started.elapsed().as_secs_f64());
    response
}

/// Counts a webhook in the in-flight gauge while it lives.
struct InFlightGuard<'a>(&'a metrics::Gauge);

impl<'a> InFlightGuard<'a> {
    fn new(gauge: &'a metrics::Gauge) -> Self {
        gauge.increment(1.0);
        InFlightGuard(gauge)
    }
}

impl Drop for InFlightGuard<'_> {
    fn drop(&mut self) {
        self.0.decrement(1.0);
    }
}

/// A webhook stored as an event (202).
struct StoredWebhook {
    request_id: String,
    stored: Stored,
    event_id: String,
    subject: String,
}

impl StoredWebhook {
    /// Logs it once and answers 202.
    fn answer(self) -> (WebhookOutcome, Response) {
        let Self {
            request_id,
            stored,
            event_id,
            subject,
        } = self;
        let outcome = if stored.duplicate {
            WebhookOutcome::Duplicate
        } else {
            WebhookOutcome::Accepted
        };
        // Plain strings, not `%` Display: written as they are, with no formatting pass.
        tracing::info!(
            outcome = outcome.label(),
            request_id = request_id.as_str(),
            event_id = event_id.as_str(),
            subject = subject.as_str(),
            seq = stored.seq,
            "webhook stored"
        );
        let body = Accepted {
            event_id,
            subject,
            stream: stored.stream,
            seq: stored.seq,
            duplicate: stored.duplicate,
        };
        (outcome, (StatusCode::ACCEPTED, Json(body)).into_response())
    }
}

/// The steps of the module docs, in order; each refusal is answered by [`Refusal::answer`].
async fn process(
    ing: &Ingress,
    req: Request,
    trace: &TraceContext,
) -> Result<StoredWebhook, Refusal> {
    let _permit = ing
        .in_flight
        .clone()
        .try_acquire_owned()
        .map_err(|_| Refusal::InFlightLimit)?;
    let _in_flight = InFlightGuard::new(WEBHOOKS_IN_FLIGHT.one());
    let (parts, body) = req.into_parts();
    let limit = ing.body_limit();
    let declared = declared_length(&parts.headers);
    if declared.is_some_and(|len| len > limit as u64) {
        return Err(ing.too_large(limit));
    }
    if !is_json_content_type(&parts.headers) {
        return Err(Refusal::NotJson);
    }
    // Memory for bodies not yet authenticated is bounded for all requests together: reserve
    // the declared length (or the limit, for a body of unknown length) before reading.
    let reserve = declared.map_or(limit, |l| l as usize);
    let unauthenticated = u32::try_from(reserve)
        .ok()
        .and_then(|n| ing.unauthenticated.clone().try_acquire_many_owned(n).ok())
        .ok_or(Refusal::UnauthenticatedBytes)?;
    let raw = read_body(body, limit, ing.body_timeout, declared.map(|l| l as usize))
        .await
        .map_err(|e| match e {
            ReadError::TooLarge => ing.too_large(limit),
            ReadError::Timeout => Refusal::BodyTimeout(ing.body_timeout),
            ReadError::Broken => Refusal::UnreadableBody,
        })?;
    let now = SystemTime::now();
    let unix = now
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64);
    let verified = ing
        .verifier
        .verify(&parts.headers, &raw, unix)
        .map_err(|error| Refusal::Unauthorized {
            error,
            scheme: ing.verifier.scheme(),
        })?;
    // Authenticated: the body no longer counts against the unauthenticated budget.
    drop(unauthenticated);
    let received_at = format_timestamp(now);
    let received = Received {
        verified: &verified,
        raw: &raw,
        received_at: &received_at,
        trace,
    };
    let value: Value = match crate::json::parse_strict(&raw) {
        Ok(v) => v,
        Err(e) => return Err(keep(ing, &received, Rejection::invalid_json(&e)).await),
    };
    if let Err(errors) = ing.schemas.check_result(&value) {
        return Err(keep(ing, &received, Rejection::schema(errors)).await);
    }
    let draft = draft_event(&ing.subjects, &verified, &raw, &value, &received_at, trace);
    let request_id = value["request_id"].as_str().unwrap_or_default();
    tracing::Span::current().record("request_id", request_id);
    let kid = request_id.to_ascii_lowercase();
    // The key lookup (a new session: one compare-and-set) is part of each attempt, so a NATS
    // outage during it is ridden through like the publish.
    let sealed_publish = |()| {
        let (draft, raw, kid) = (&draft, &raw, kid.as_str());
        async move {
            let sealed = seal(ing, kid, raw).await?;
            publish_once(ing, draft.finish(sealed.form(raw))).await
        }
    };
    match ing.outage.publish((), &ing.shutdown, sealed_publish).await {
        Ok(stored) => {
            if !stored.duplicate {
                EVENTS.get(draft.kind.metric()).increment(1);
            }
            Ok(StoredWebhook {
                request_id: request_id.to_owned(),
                stored,
                event_id: draft.event_id,
                subject: draft.subject,
            })
        }
        // Permanent: no retry of this body can ever be stored as an event. Keep it on
        // `rejected` (which always fits: see `body_limit`) and say so.
        Err(PublishError::TooLarge { size, max }) => {
            let rejection = Rejection::event_too_large(size, max, &ing.subjects.rejected());
            Err(keep(ing, &received, rejection).await)
        }
        Err(error) => Err(Refusal::NotStored {
            error,
            request_id: Some(request_id.to_owned()),
            rejected_copy: false,
        }),
    }
}

/// An authenticated webhook as received: what both the event and a kept rejected copy are
/// built from.
struct Received<'a> {
    verified: &'a Verified,
    raw: &'a Bytes,
    /// When it was received ([`format_timestamp`]).
    received_at: &'a str,
    trace: &'a TraceContext,
}

/// Keeps `received` on `{prefix}.rejected` and returns the rejection's refusal; a 503 one if
/// it cannot be kept (so the sender retries).
async fn keep(ing: &Ingress, received: &Received<'_>, rejection: Rejection) -> Refusal {
    let msg = build_rejected(
        &ing.subjects,
        received.verified,
        received.raw,
        rejection.reason,
        &rejection.errors,
        received.received_at,
        received.trace,
    );
    // Sealed under the session's key when the body names one, else under the day's key; as
    // for an event, the key lookup is part of each ride-through attempt.
    let kid = session_of(received.raw)
        .unwrap_or_else(|| crate::pii::keys::day_kid(time::OffsetDateTime::now_utc()));
    let raw: &[u8] = received.raw;
    let attempt = |()| {
        let (msg, kid) = (&msg, kid.as_str());
        async move {
            let sealed = seal(ing, kid, raw).await?;
            publish_once(ing, seal_rejected(msg.clone(), sealed.form(raw))).await
        }
    };
    match ing.outage.publish((), &ing.shutdown, attempt).await {
        Ok(stored) => {
            if !stored.duplicate {
                EVENTS.get(EventType::Rejected).increment(1);
            }
            rejection.kept(stored.seq)
        }
        // Only when the server's max_payload is below the rejected headers' bound: nothing
        // can be kept, and no retry would change that.
        Err(PublishError::TooLarge { size, max }) => Refusal::TooLargeToKeep { size, max },
        Err(error) => Refusal::NotStored {
            error,
            request_id: None,
            rejected_copy: true,
        },
    }
}

/// Seals `raw` for session `kid` (the data key looked up or made), bounded by
/// `nats.publish_timeout` so that one ride-through attempt stays bounded; a failure is the
/// publish error it stands for (retryable when NATS is away).
async fn seal(ing: &Ingress, kid: &str, raw: &[u8]) -> Result<crate::pii::Sealed, PublishError> {
    match ing.sealer.mode() {
        PiiMode::Clear => return Ok(crate::pii::Sealed::Clear),
        PiiMode::Omitted => return Ok(crate::pii::Sealed::Omitted),
        PiiMode::Encrypted => {}
    }
    let timeout = ing.publisher.timeout();
    match tokio::time::timeout(timeout, ing.sealer.seal(kid, raw)).await {
        Ok(Ok(sealed)) => Ok(sealed),
        Ok(Err(e)) => Err(key_failure(e)),
        Err(_) => Err(PublishError::Timeout(timeout)),
    }
}

/// One attempt. A missing stream wakes the keeper at once, so that a wait can see it recreated.
async fn publish_once(ing: &Ingress, msg: OutboundMessage) -> Result<Stored, PublishError> {
    let result = ing.publisher.publish(msg).await;
    if let Err(PublishError::NoStream) = result {
        ing.stream_state.lost();
    }
    result
}

fn declared_length(headers: &HeaderMap) -> Option<u64> {
    headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse().ok())
}

/// `application/json` or `application/<anything>+json`, parameters (charset) allowed.
pub fn is_json_content_type(headers: &HeaderMap) -> bool {
    let Some(value) = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
    else {
        return false;
    };
    let mime = value.split(';').next().unwrap_or_default().trim();
    // Compared without a lower-cased copy: ASCII case-insensitive, per byte.
    let (Some(kind), Some(sub)) = (mime.get(..12), mime.get(12..)) else {
        return false;
    };
    kind.eq_ignore_ascii_case("application/")
        && (sub.eq_ignore_ascii_case("json")
            || sub
                .len()
                .checked_sub(5)
                .and_then(|at| sub.get(at..))
                .is_some_and(|end| end.eq_ignore_ascii_case("+json")))
}

/// A trace header (`traceparent`, `tracestate`) as text; `None` when absent or not visible
/// ASCII, so that a malformed one starts a new trace rather than failing the webhook.
fn trace_header<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers.get(name).and_then(|v| v.to_str().ok())
}

enum ReadError {
    TooLarge,
    Timeout,
    Broken,
}

/// Reads the body into one buffer, sized up front when the length is declared (no second
/// copy, no doubling growth: memory stays what the unauthenticated budget reserved).
async fn read_body(
    body: Body,
    max: usize,
    within: Duration,
    declared: Option<usize>,
) -> Result<Bytes, ReadError> {
    let mut limited = Limited::new(body, max);
    let read = async {
        let mut buf = bytes::BytesMut::with_capacity(declared.unwrap_or(0).min(max));
        while let Some(frame) = limited.frame().await {
            if let Ok(data) = frame?.into_data() {
                buf.extend_from_slice(&data);
            }
        }
        Ok::<_, axum::BoxError>(buf.freeze())
    };
    match tokio::time::timeout(within, read).await {
        Err(_) => Err(ReadError::Timeout),
        Ok(Ok(bytes)) => Ok(bytes),
        Ok(Err(e)) if e.downcast_ref::<LengthLimitError>().is_some() => Err(ReadError::TooLarge),
        Ok(Err(_)) => Err(ReadError::Broken),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::HeaderValue;

    #[test]
    fn json_content_types() {
        let mut h = HeaderMap::new();
        assert!(!is_json_content_type(&h));
        for (v, ok) in [
            ("application/json", true),
            ("Application/JSON; charset=utf-8", true),
            ("application/cloudevents+json", true),
            ("text/plain", false),
            ("application/x-www-form-urlencoded", false),
            ("application/jsonx", false),
            ("APPLICATION/VND.VX+JSON", true),
            ("application/+json", true),
            ("application", false),
            ("application/", false),
        ] {
            h.insert(header::CONTENT_TYPE, HeaderValue::from_static(v));
            assert_eq!(is_json_content_type(&h), ok, "{v}");
        }
    }
}
