//! Every metric of the bridge: its family (name, label enum, kind of handle) and the label
//! values it can take. The README's metrics table and the alerts depend on these names, labels
//! and values: change them only on purpose, and there at the same time.
//!
//! Recording is `FAMILY.get(label).increment(1)` (or `.set`, `.record`) wherever the thing
//! happens; nothing else here. Labels are closed enums: never a request_id, PII, a body or a
//! secret.

use metrics::{Counter, Gauge, Histogram};

use super::family::{label_values, Family};

label_values! {
    /// How a webhook ended.
    pub enum WebhookOutcome as "outcome" {
        /// Stored (202).
        Accepted = "accepted",
        /// Already stored (202, duplicate).
        Duplicate = "duplicate",
        /// Authentication failed (401).
        Unauthorized = "unauthorized",
        /// Refused before authentication: size, content type, unreadable body.
        Invalid = "invalid",
        /// Authenticated but not JSON or not schema-valid; kept on `rejected` (400/422).
        Rejected = "rejected",
        /// Not stored (503).
        Unavailable = "unavailable",
        /// Over the in-flight limit (429).
        Throttled = "throttled",
    }
}

/// `vx_bridge_webhooks_total{outcome}`.
pub static WEBHOOKS: Family<WebhookOutcome, Counter> = Family::new("vx_bridge_webhooks_total");
/// `vx_bridge_webhook_duration_seconds{outcome}`.
pub static WEBHOOK_DURATION: Family<WebhookOutcome, Histogram> =
    Family::new("vx_bridge_webhook_duration_seconds");
/// `vx_bridge_webhooks_in_flight`.
pub static WEBHOOKS_IN_FLIGHT: Family<(), Gauge> = Family::new("vx_bridge_webhooks_in_flight");
/// `vx_bridge_webhook_body_limit_bytes`: the largest webhook body accepted now.
pub static WEBHOOK_BODY_LIMIT: Family<(), Gauge> =
    Family::new("vx_bridge_webhook_body_limit_bytes");

label_values! {
    /// The kind of a newly stored event (`vx_bridge_events_total{type}`).
    pub enum EventType as "type" {
        /// `completed.pass`.
        Pass = "pass",
        /// `completed.fail`.
        Fail = "fail",
        /// `pending`.
        Pending = "pending",
        /// `unrecognized`.
        Unrecognized = "unrecognized",
        /// A body kept on `rejected`.
        Rejected = "rejected",
    }
}

/// `vx_bridge_events_total{type}`: events newly stored (a duplicate is not counted).
pub static EVENTS: Family<EventType, Counter> = Family::new("vx_bridge_events_total");

label_values! {
    /// How one publish attempt ended (`vx_bridge_publish_duration_seconds{result}`): stored, or
    /// why not. Each `nats::PublishError` maps to one of these, and its code is this label.
    pub enum PublishResult as "result" {
        /// Stored: the PubAck came.
        Ok = "ok",
        /// Not connected to NATS.
        Disconnected = "nats_disconnected",
        /// No PubAck in time.
        Timeout = "puback_timeout",
        /// No stream captures the subject.
        NoStream = "stream_missing",
        /// JetStream answered 503.
        Unavailable = "jetstream_unavailable",
        /// Shutting down.
        ShuttingDown = "shutting_down",
        /// Any other failure.
        Failed = "publish_failed",
        /// Over the server's `max_payload`.
        TooLarge = "too_large",
    }
}

/// `vx_bridge_publish_duration_seconds{result}`: one attempt until its PubAck (or failure).
pub static PUBLISH_DURATION: Family<PublishResult, Histogram> =
    Family::new("vx_bridge_publish_duration_seconds");

label_values! {
    /// How a publish that rode through an outage ended (its first attempt failed in a way a
    /// retry can cure).
    pub enum OutageWaitResult as "result" {
        /// A retry got the PubAck (202).
        Stored = "stored",
        /// `nats.outage_wait` passed (503).
        GaveUp = "gave_up",
        /// Shutdown began while it waited (503).
        Shutdown = "shutdown",
        /// A retry failed in a way waiting cannot cure (503, or what the ingress maps it to).
        Failed = "failed",
    }
}

/// `vx_bridge_publish_outage_waits_total{result}`.
pub static OUTAGE_WAITS: Family<OutageWaitResult, Counter> =
    Family::new("vx_bridge_publish_outage_waits_total");
/// `vx_bridge_publish_outage_wait_seconds{result}`: from the first attempt to the answer.
pub static OUTAGE_WAIT_DURATION: Family<OutageWaitResult, Histogram> =
    Family::new("vx_bridge_publish_outage_wait_seconds");

/// `vx_bridge_nats_connected`: 1 connected, 0 not.
pub static NATS_CONNECTED: Family<(), Gauge> = Family::new("vx_bridge_nats_connected");
/// `vx_bridge_stream_ready`: 1 the stream is in place, 0 not.
pub static STREAM_READY: Family<(), Gauge> = Family::new("vx_bridge_stream_ready");

label_values! {
    /// The status service's endpoints (`endpoint` label).
    pub enum StatusEndpoint as "endpoint" {
        /// `{prefix}.status.get`.
        Status = "status",
        /// `{prefix}.result.get`.
        Result = "result",
        /// `{prefix}.watch`.
        Watch = "watch",
        /// `{prefix}.erase`.
        Erase = "erase",
    }
}

label_values! {
    /// The code a status request was answered with (`code` label): 200, or the service
    /// error's code.
    pub enum StatusCode as "code" {
        /// Answered.
        Ok = "200",
        /// Malformed request.
        BadRequest = "400",
        /// Unknown session.
        NotFound = "404",
        /// Erased or expired personal data.
        Gone = "410",
        /// Any other code (none is answered today).
        Other = "other",
        /// VX answered badly.
        BadGateway = "502",
        /// A retry can succeed.
        Unavailable = "503",
        /// VX did not answer in time.
        Timeout = "504",
    }
}

impl StatusCode {
    /// The label of HTTP-like `code`.
    pub fn of(code: u16) -> Self {
        match code {
            200 => StatusCode::Ok,
            400 => StatusCode::BadRequest,
            404 => StatusCode::NotFound,
            410 => StatusCode::Gone,
            502 => StatusCode::BadGateway,
            503 => StatusCode::Unavailable,
            504 => StatusCode::Timeout,
            _ => StatusCode::Other,
        }
    }
}

/// `vx_bridge_status_requests_total{endpoint, code}`.
pub static STATUS_REQUESTS: Family<(StatusEndpoint, StatusCode), Counter> =
    Family::new("vx_bridge_status_requests_total");
/// `vx_bridge_status_lookups_in_flight`.
pub static STATUS_LOOKUPS_IN_FLIGHT: Family<(), Gauge> =
    Family::new("vx_bridge_status_lookups_in_flight");

label_values! {
    /// Where a status lookup's answer came from (`vx_bridge_status_cache_total{result}`).
    pub enum StatusCache as "result" {
        /// From the cache, or from another requester's call in flight.
        Hit = "hit",
        /// From a new upstream call.
        Miss = "miss",
    }
}

/// `vx_bridge_status_cache_total{result}`.
pub static STATUS_CACHE: Family<StatusCache, Counter> = Family::new("vx_bridge_status_cache_total");

label_values! {
    /// How one VX lookup ended, retries included (`vx_bridge_upstream_lookups_total{outcome}`):
    /// `ok`, or the upstream error's label.
    pub enum LookupOutcome as "outcome" {
        /// Answered.
        Ok = "ok",
        /// VX does not know the session.
        NotFound = "not_found",
        /// No token.
        Auth = "auth",
        /// An unexpected HTTP status.
        HttpStatus = "http_status",
        /// No connection.
        Unreachable = "unreachable",
        /// An unusable body.
        BadReply = "bad_reply",
        /// VX answered 429.
        RateLimited = "rate_limited",
        /// The circuit breaker is open.
        CircuitOpen = "circuit_open",
        /// Too many lookups in flight.
        Busy = "busy",
        /// No answer in time.
        Timeout = "timeout",
    }
}

/// `vx_bridge_upstream_lookups_total{outcome}`.
pub static UPSTREAM_LOOKUPS: Family<LookupOutcome, Counter> =
    Family::new("vx_bridge_upstream_lookups_total");
/// `vx_bridge_upstream_lookup_duration_seconds`: one VX lookup, retries included.
pub static UPSTREAM_LOOKUP_DURATION: Family<(), Histogram> =
    Family::new("vx_bridge_upstream_lookup_duration_seconds");

label_values! {
    /// How one HTTP call to VX ended (`vx_bridge_upstream_request_duration_seconds{class}`).
    pub enum UpstreamCall as "class" {
        /// A 2xx answer.
        Success = "2xx",
        /// A 4xx answer.
        ClientError = "4xx",
        /// A 5xx answer.
        ServerError = "5xx",
        /// Any other status.
        Other = "other",
        /// No answer in time.
        Timeout = "timeout",
        /// No answer (connection failed).
        Error = "error",
    }
}

/// `vx_bridge_upstream_request_duration_seconds{class}`.
pub static UPSTREAM_REQUEST_DURATION: Family<UpstreamCall, Histogram> =
    Family::new("vx_bridge_upstream_request_duration_seconds");
/// `vx_bridge_upstream_token_fetches_total`.
pub static UPSTREAM_TOKEN_FETCHES: Family<(), Counter> =
    Family::new("vx_bridge_upstream_token_fetches_total");

/// The VX API circuit breaker's state (`vx_bridge_upstream_circuit_state`: its value).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CircuitState {
    /// Calls go through (0).
    Closed = 0,
    /// One probe call goes through (1).
    HalfOpen = 1,
    /// Calls are refused (2).
    Open = 2,
}

impl CircuitState {
    /// The gauge's value.
    pub fn value(self) -> f64 {
        f64::from(self as u8)
    }
}

/// `vx_bridge_upstream_circuit_state`: 0 closed, 1 half-open, 2 open ([`CircuitState::value`]).
pub static UPSTREAM_CIRCUIT_STATE: Family<(), Gauge> =
    Family::new("vx_bridge_upstream_circuit_state");

label_values! {
    /// What the session projector did with one event (or one write attempt).
    pub enum SessionUpdate as "outcome" {
        /// Written: a new key, or it outranked the stored state.
        Applied = "applied",
        /// Skipped: the stored state outranks it.
        Stale = "stale",
        /// Skipped: the stored state is this event already (a redelivery).
        Unchanged = "unchanged",
        /// A compare-and-set lost to another writer; read and decided again.
        ConflictRetried = "conflict_retried",
        /// Not an event envelope; acked and skipped.
        Invalid = "invalid",
    }
}

/// `vx_bridge_sessions_updates_total{outcome}`.
pub static SESSION_UPDATES: Family<SessionUpdate, Counter> =
    Family::new("vx_bridge_sessions_updates_total");

label_values! {
    /// What became of a status lookup's VX answer written into the session view.
    pub enum LookupWrite as "outcome" {
        /// Written (`source: lookup`).
        Applied = "applied",
        /// Not written: the session is terminal, or an event changed it while VX was asked.
        Stale = "stale",
        /// Not written: the view already says this.
        Unchanged = "unchanged",
        /// Not written: the bucket could not be written in time (the reply was not affected).
        Failed = "failed",
    }
}

/// `vx_bridge_sessions_lookup_writes_total{outcome}`.
pub static SESSION_LOOKUP_WRITES: Family<LookupWrite, Counter> =
    Family::new("vx_bridge_sessions_lookup_writes_total");
/// `vx_bridge_sessions_pending`: events not yet projected (the consumer's pending plus unacked).
pub static SESSIONS_PENDING: Family<(), Gauge> = Family::new("vx_bridge_sessions_pending");
/// `vx_bridge_sessions_ready`: 1 the session bucket and its consumer are in place, 0 not.
pub static SESSIONS_READY: Family<(), Gauge> = Family::new("vx_bridge_sessions_ready");

label_values! {
    /// How one reconciler check of a watched session ended.
    pub enum ReconcileCheck as "outcome" {
        /// VX says the journey is not complete: the next step is scheduled.
        Pending = "pending",
        /// VX served the completed result: its event was published; the watch ends.
        Completed = "completed",
        /// VX says COMPLETED without the result body: checked again on the next step.
        CompletedWithoutResult = "completed_without_result",
        /// The view already holds a terminal state: the watch ends with no VX call.
        TerminalInView = "terminal_in_view",
        /// VX unavailable (5xx, timeout, 429, circuit open, busy): retried after a delay.
        Unavailable = "unavailable",
        /// VX does not know the session (404): the next step is scheduled, until the give-up.
        Unknown = "unknown",
        /// Given up at `reconcile.give_up_after`: `{prefix}.expired` published; the watch ends.
        Expired = "expired",
        /// Another check of this session advanced it first (a redelivery): nothing done.
        Superseded = "superseded",
        /// NATS or an unusable VX answer failed the check: the message comes again.
        Failed = "failed",
    }
}

/// `vx_bridge_reconcile_checks_total{outcome}`.
pub static RECONCILE_CHECKS: Family<ReconcileCheck, Counter> =
    Family::new("vx_bridge_reconcile_checks_total");

label_values! {
    /// What the reconciler newly stored.
    pub enum ReconcilePublished as "kind" {
        /// A `completed.pass` event from a poll.
        Pass = "pass",
        /// A `completed.fail` event from a poll.
        Fail = "fail",
        /// A result body of a running journey (`status` PENDING or empty): `pending`.
        Pending = "pending",
        /// A result body whose status is none of the above: `unrecognized`.
        Unrecognized = "unrecognized",
        /// `{prefix}.expired`.
        Expired = "expired",
    }
}

/// `vx_bridge_reconcile_events_published_total{kind}` (a duplicate is not counted).
pub static RECONCILE_PUBLISHED: Family<ReconcilePublished, Counter> =
    Family::new("vx_bridge_reconcile_events_published_total");
/// `vx_bridge_reconcile_watched`: messages in the reconciler's work-queue stream.
pub static RECONCILE_WATCHED: Family<(), Gauge> = Family::new("vx_bridge_reconcile_watched");
/// `vx_bridge_reconcile_oldest_watch_age_seconds`.
pub static RECONCILE_OLDEST_WATCH_AGE: Family<(), Gauge> =
    Family::new("vx_bridge_reconcile_oldest_watch_age_seconds");

/// Every family's name (each has its help text in [`super::METRIC_HELP`]).
#[cfg(test)]
pub(super) fn names() -> Vec<&'static str> {
    vec![
        WEBHOOKS.name(),
        WEBHOOK_DURATION.name(),
        WEBHOOKS_IN_FLIGHT.name(),
        WEBHOOK_BODY_LIMIT.name(),
        EVENTS.name(),
        PUBLISH_DURATION.name(),
        OUTAGE_WAITS.name(),
        OUTAGE_WAIT_DURATION.name(),
        NATS_CONNECTED.name(),
        STREAM_READY.name(),
        STATUS_REQUESTS.name(),
        STATUS_LOOKUPS_IN_FLIGHT.name(),
        STATUS_CACHE.name(),
        UPSTREAM_LOOKUPS.name(),
        UPSTREAM_LOOKUP_DURATION.name(),
        UPSTREAM_REQUEST_DURATION.name(),
        UPSTREAM_TOKEN_FETCHES.name(),
        UPSTREAM_CIRCUIT_STATE.name(),
        SESSION_UPDATES.name(),
        SESSION_LOOKUP_WRITES.name(),
        SESSIONS_PENDING.name(),
        SESSIONS_READY.name(),
        RECONCILE_CHECKS.name(),
        RECONCILE_PUBLISHED.name(),
        RECONCILE_WATCHED.name(),
        RECONCILE_OLDEST_WATCH_AGE.name(),
    ]
}

/// A yes/no gauge's value: 1 or 0.
pub fn flag(on: bool) -> f64 {
    if on {
        1.0
    } else {
        0.0
    }
}
