//! Metrics: the Prometheus recorder, the help text of every metric, and the typed outcomes
//! through which every metric is recorded (one function or enum per metric, so names, labels
//! and values are written in one place).
//!
//! Labels are low-cardinality enums only: this module must never take a request_id, PII, a
//! body or a secret as a label value.

use std::sync::OnceLock;
use std::time::Duration;

use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusHandle};

/// The Prometheus recorder, installed on first use (metrics are process-wide by nature).
pub fn metrics_handle() -> PrometheusHandle {
    static HANDLE: OnceLock<PrometheusHandle> = OnceLock::new();
    HANDLE
        .get_or_init(|| {
            let recorder = PrometheusBuilder::new()
                .set_buckets_for_metric(
                    metrics_exporter_prometheus::Matcher::Suffix("_seconds".into()),
                    &[
                        0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5,
                        5.0, 10.0,
                    ],
                )
                .map(|b| b.build_recorder())
                .unwrap_or_else(|_| PrometheusBuilder::new().build_recorder());
            let handle = recorder.handle();
            // Another recorder may already be installed (tests embedding us); then ours only renders.
            let _ = metrics::set_global_recorder(recorder);
            describe_metrics();
            start_upkeep(handle.clone());
            handle
        })
        .clone()
}

/// The `# HELP` text of every metric (the README's metrics table says the same; `promtool
/// check metrics` in scripts/prometheus-check.sh wants one for each).
pub const METRIC_HELP: &[(&str, &str)] = &[
    ("vx_bridge_webhooks_total", "webhooks by how they ended"),
    (
        "vx_bridge_webhook_duration_seconds",
        "time to answer a webhook",
    ),
    ("vx_bridge_events_total", "events newly stored, by subject"),
    (
        "vx_bridge_publish_duration_seconds",
        "one JetStream publish attempt until its PubAck",
    ),
    (
        "vx_bridge_publish_outage_waits_total",
        "publishes that rode through a NATS outage, by how they ended",
    ),
    (
        "vx_bridge_publish_outage_wait_seconds",
        "a publish riding through a NATS outage, from its first attempt to its answer",
    ),
    ("vx_bridge_webhooks_in_flight", "webhooks being processed"),
    ("vx_bridge_nats_connected", "1 connected to NATS, 0 not"),
    ("vx_bridge_stream_ready", "1 the stream is in place, 0 not"),
    (
        "vx_bridge_webhook_body_limit_bytes",
        "the largest webhook body accepted now",
    ),
    (
        "vx_bridge_status_requests_total",
        "status requests by answer",
    ),
    (
        "vx_bridge_status_lookups_in_flight",
        "lookups waiting for an answer",
    ),
    (
        "vx_bridge_status_cache_total",
        "status cache (and coalescing) hits and misses",
    ),
    (
        "vx_bridge_upstream_lookups_total",
        "VX lookups, retries included",
    ),
    (
        "vx_bridge_upstream_lookup_duration_seconds",
        "one VX lookup, retries included",
    ),
    (
        "vx_bridge_upstream_request_duration_seconds",
        "each HTTP call to VX",
    ),
    (
        "vx_bridge_upstream_token_fetches_total",
        "OAuth tokens fetched",
    ),
    (
        "vx_bridge_upstream_circuit_state",
        "VX API circuit: 0 closed, 1 half-open, 2 open",
    ),
    (
        "vx_bridge_sessions_updates_total",
        "session view updates by outcome",
    ),
    (
        "vx_bridge_sessions_lookup_writes_total",
        "status lookups' VX answers written into the session view, by outcome",
    ),
    (
        "vx_bridge_sessions_pending",
        "events not yet projected into the session view",
    ),
    (
        "vx_bridge_sessions_ready",
        "1 the session bucket and its consumer are in place, 0 not",
    ),
    (
        "vx_bridge_reconcile_watched",
        "watched sessions: messages in the reconciler's work-queue stream, sampled every 2 s (every replica reports the whole stream: aggregate with max, not sum)",
    ),
    (
        "vx_bridge_reconcile_checks_total",
        "reconciler checks of watched sessions, by outcome",
    ),
    (
        "vx_bridge_reconcile_events_published_total",
        "events the reconciler newly stored (poll results and expiries), by kind; webhooks' are in vx_bridge_events_total",
    ),
    (
        "vx_bridge_reconcile_oldest_watch_age_seconds",
        "age since registration of the oldest watched session this replica saw delivered within the last two rounds (a round: the longest schedule delay + 30 s); a session finished in that time may still count; 0 when no session is watched",
    ),
];

/// Gauges whose name ends in `_seconds` (the others with that suffix are histograms).
const SECONDS_GAUGES: &[&str] = &["vx_bridge_reconcile_oldest_watch_age_seconds"];

/// Registers [`METRIC_HELP`] with the installed recorder (the type comes from the name).
fn describe_metrics() {
    for (name, help) in METRIC_HELP {
        if name.ends_with("_total") {
            metrics::describe_counter!(*name, *help);
        } else if name.ends_with("_seconds") && !SECONDS_GAUGES.contains(name) {
            metrics::describe_histogram!(*name, metrics::Unit::Seconds, *help);
        } else {
            metrics::describe_gauge!(*name, *help);
        }
    }
}

/// How often histogram samples are folded into their buckets.
pub const METRICS_UPKEEP: std::time::Duration = std::time::Duration::from_secs(5);

/// Name of the upkeep thread (15 characters: the Linux limit).
pub const METRICS_UPKEEP_THREAD: &str = "vx-metrics-upkp";

/// A recorder from `build_recorder` keeps every histogram sample until someone renders or runs
/// upkeep: without a Prometheus scraping `/metrics`, memory grew by every request (found by the
/// soak suite: +4.8 MB RSS over 121 k webhooks). This thread drains them every few seconds.
fn start_upkeep(handle: PrometheusHandle) {
    let spawned = std::thread::Builder::new()
        .name(METRICS_UPKEEP_THREAD.into())
        .spawn(move || loop {
            std::thread::sleep(METRICS_UPKEEP);
            handle.run_upkeep();
        });
    if let Err(e) = spawned {
        tracing::warn!(error = %e, "metrics upkeep thread not started; histogram samples are only drained by /metrics scrapes");
    }
}

/// How a webhook ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WebhookOutcome {
    /// Stored (202).
    Accepted,
    /// Already stored (202, duplicate).
    Duplicate,
    /// Authentication failed (401).
    Unauthorized,
    /// Refused before authentication: size, content type, unreadable body.
    Invalid,
    /// Authenticated but not JSON or not schema-valid; kept on `rejected` (400/422).
    Rejected,
    /// Not stored (503).
    Unavailable,
    /// Over the in-flight limit (429).
    Throttled,
}

impl WebhookOutcome {
    /// Label value.
    pub fn label(self) -> &'static str {
        match self {
            WebhookOutcome::Accepted => "accepted",
            WebhookOutcome::Duplicate => "duplicate",
            WebhookOutcome::Unauthorized => "unauthorized",
            WebhookOutcome::Invalid => "invalid",
            WebhookOutcome::Rejected => "rejected",
            WebhookOutcome::Unavailable => "unavailable",
            WebhookOutcome::Throttled => "throttled",
        }
    }
}

/// Sets the NATS connection gauge (1 connected, 0 not).
pub fn set_nats_connected(connected: bool) {
    metrics::gauge!("vx_bridge_nats_connected").set(if connected { 1.0 } else { 0.0 });
}

/// Sets the body-limit gauge: the largest webhook body accepted now.
pub fn set_body_limit(bytes: usize) {
    metrics::gauge!("vx_bridge_webhook_body_limit_bytes").set(bytes as f64);
}

/// Sets the stream readiness gauge (1 ready, 0 not).
pub fn set_stream_ready(ready: bool) {
    metrics::gauge!("vx_bridge_stream_ready").set(if ready { 1.0 } else { 0.0 });
}

/// What the session projector did with one event (or one write attempt).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SessionUpdate {
    /// Written: a new key, or it outranked the stored state.
    Applied,
    /// Skipped: the stored state outranks it.
    Stale,
    /// Skipped: the stored state is this event already (a redelivery).
    Unchanged,
    /// A compare-and-set lost to another writer; read and decided again.
    ConflictRetried,
    /// Not an event envelope; acked and skipped.
    Invalid,
}

impl SessionUpdate {
    /// Every outcome.
    pub const ALL: [SessionUpdate; 5] = [
        SessionUpdate::Applied,
        SessionUpdate::Stale,
        SessionUpdate::Unchanged,
        SessionUpdate::ConflictRetried,
        SessionUpdate::Invalid,
    ];

    /// Label value.
    pub fn label(self) -> &'static str {
        match self {
            SessionUpdate::Applied => "applied",
            SessionUpdate::Stale => "stale",
            SessionUpdate::Unchanged => "unchanged",
            SessionUpdate::ConflictRetried => "conflict_retried",
            SessionUpdate::Invalid => "invalid",
        }
    }

    /// Counts it.
    pub fn record(self) {
        metrics::counter!("vx_bridge_sessions_updates_total", "outcome" => self.label())
            .increment(1);
    }

    /// Registers every outcome at 0, so a scrape shows the series before the first event.
    pub fn register_all() {
        for o in Self::ALL {
            metrics::counter!("vx_bridge_sessions_updates_total", "outcome" => o.label())
                .increment(0);
        }
    }
}

/// The `vx_bridge_sessions_updates_total` handles, registered once (the projector counts every
/// event with them, without a registry lookup).
pub struct SessionUpdateCounters([metrics::Counter; 5]);

impl SessionUpdateCounters {
    /// Registers a handle per outcome.
    pub fn new() -> Self {
        Self(
            SessionUpdate::ALL.map(
                |o| metrics::counter!("vx_bridge_sessions_updates_total", "outcome" => o.label()),
            ),
        )
    }

    /// Counts `update`, as [`SessionUpdate::record`] does.
    pub fn record(&self, update: SessionUpdate) {
        if let Some(c) = SessionUpdate::ALL
            .iter()
            .position(|u| *u == update)
            .and_then(|i| self.0.get(i))
        {
            c.increment(1);
        }
    }
}

impl Default for SessionUpdateCounters {
    fn default() -> Self {
        Self::new()
    }
}

/// What became of a status lookup's VX answer written into the session view
/// (`vx_bridge_sessions_lookup_writes_total{outcome}`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LookupWrite {
    /// Written (`source: lookup`).
    Applied,
    /// Not written: the session is terminal, or an event changed it while VX was asked.
    Stale,
    /// Not written: the view already says this.
    Unchanged,
    /// Not written: the bucket could not be written in time (the reply was not affected).
    Failed,
}

impl LookupWrite {
    /// Every outcome.
    pub const ALL: [LookupWrite; 4] = [
        LookupWrite::Applied,
        LookupWrite::Stale,
        LookupWrite::Unchanged,
        LookupWrite::Failed,
    ];

    /// Label value.
    pub fn label(self) -> &'static str {
        match self {
            LookupWrite::Applied => "applied",
            LookupWrite::Stale => "stale",
            LookupWrite::Unchanged => "unchanged",
            LookupWrite::Failed => "failed",
        }
    }

    /// Counts it.
    pub fn record(self) {
        metrics::counter!("vx_bridge_sessions_lookup_writes_total", "outcome" => self.label())
            .increment(1);
    }

    /// Registers every outcome at 0.
    pub fn register_all() {
        for o in Self::ALL {
            metrics::counter!("vx_bridge_sessions_lookup_writes_total", "outcome" => o.label())
                .increment(0);
        }
    }
}

/// How one reconciler check of a watched session ended (`vx_bridge_reconcile_checks_total`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReconcileCheck {
    /// VX says the journey is not complete: the next step is scheduled.
    Pending,
    /// VX served the completed result: its event was published; the watch ends.
    Completed,
    /// VX says COMPLETED without the result body: checked again on the next step.
    CompletedWithoutResult,
    /// The view already holds a terminal state: the watch ends with no VX call.
    TerminalInView,
    /// VX unavailable (5xx, timeout, 429, circuit open, busy): retried after a delay, the step kept.
    Unavailable,
    /// VX does not know the session (404): the next step is scheduled, until the give-up.
    Unknown,
    /// Given up at `reconcile.give_up_after`: `{prefix}.expired` published; the watch ends.
    Expired,
    /// Another check of this session advanced it first (a redelivery): nothing done.
    Superseded,
    /// NATS or an unusable VX answer failed the check: the message comes again.
    Failed,
}

impl ReconcileCheck {
    /// Every outcome.
    pub const ALL: [ReconcileCheck; 9] = [
        ReconcileCheck::Pending,
        ReconcileCheck::Completed,
        ReconcileCheck::CompletedWithoutResult,
        ReconcileCheck::TerminalInView,
        ReconcileCheck::Unavailable,
        ReconcileCheck::Unknown,
        ReconcileCheck::Expired,
        ReconcileCheck::Superseded,
        ReconcileCheck::Failed,
    ];

    /// Label value.
    pub fn label(self) -> &'static str {
        match self {
            ReconcileCheck::Pending => "pending",
            ReconcileCheck::Completed => "completed",
            ReconcileCheck::CompletedWithoutResult => "completed_without_result",
            ReconcileCheck::TerminalInView => "terminal_in_view",
            ReconcileCheck::Unavailable => "unavailable",
            ReconcileCheck::Unknown => "unknown",
            ReconcileCheck::Expired => "expired",
            ReconcileCheck::Superseded => "superseded",
            ReconcileCheck::Failed => "failed",
        }
    }

    /// Counts it.
    pub fn record(self) {
        metrics::counter!("vx_bridge_reconcile_checks_total", "outcome" => self.label())
            .increment(1);
    }

    /// Registers every outcome (and every published kind, and the gauges) at 0.
    pub fn register_all() {
        set_reconcile_watched(0);
        set_reconcile_oldest_watch_age(Duration::ZERO);
        for o in Self::ALL {
            metrics::counter!("vx_bridge_reconcile_checks_total", "outcome" => o.label())
                .increment(0);
        }
        for k in ReconcilePublished::ALL {
            metrics::counter!("vx_bridge_reconcile_events_published_total", "kind" => k.label())
                .increment(0);
        }
    }
}

/// What the reconciler newly stored (`vx_bridge_reconcile_events_published_total{kind}`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReconcilePublished {
    /// A `completed.pass` event from a poll.
    Pass,
    /// A `completed.fail` event from a poll.
    Fail,
    /// A result body of a running journey (`status` PENDING or empty): `pending`.
    Pending,
    /// A result body whose status is none of the above: `unrecognized`.
    Unrecognized,
    /// `{prefix}.expired`.
    Expired,
}

impl ReconcilePublished {
    /// Every kind.
    pub const ALL: [ReconcilePublished; 5] = [
        ReconcilePublished::Pass,
        ReconcilePublished::Fail,
        ReconcilePublished::Pending,
        ReconcilePublished::Unrecognized,
        ReconcilePublished::Expired,
    ];

    /// Label value.
    pub fn label(self) -> &'static str {
        match self {
            ReconcilePublished::Pass => "pass",
            ReconcilePublished::Fail => "fail",
            ReconcilePublished::Pending => "pending",
            ReconcilePublished::Unrecognized => "unrecognized",
            ReconcilePublished::Expired => "expired",
        }
    }

    /// Counts one newly stored message (a duplicate is not counted).
    pub fn record(self) {
        metrics::counter!("vx_bridge_reconcile_events_published_total", "kind" => self.label())
            .increment(1);
    }
}

/// Sets `vx_bridge_reconcile_watched`.
pub fn set_reconcile_watched(n: u64) {
    metrics::gauge!("vx_bridge_reconcile_watched").set(n as f64);
}

/// Sets `vx_bridge_reconcile_oldest_watch_age_seconds`.
pub fn set_reconcile_oldest_watch_age(age: Duration) {
    metrics::gauge!("vx_bridge_reconcile_oldest_watch_age_seconds").set(age.as_secs_f64());
}

/// `vx_bridge_nats_server_info{version, support} 1`: the NATS server the client is connected to
/// (its `INFO`). Rendered here rather than through the `metrics` facade, which cannot remove a
/// series: after the server is upgraded under us, the scrape must show the new version only.
#[derive(Debug, Default)]
pub struct ServerInfoGauge {
    /// `(version label, support label)` of the last server seen; `None` before the first connect.
    current: std::sync::Mutex<Option<(String, &'static str)>>,
}

impl ServerInfoGauge {
    /// No server seen yet (the metric is absent).
    pub fn new() -> Self {
        Self::default()
    }

    /// Records the server's version and support labels (from
    /// [`crate::nats::version::ServerVersion`], so both are plain `[0-9A-Za-z.-_]`).
    pub fn set(&self, version: String, support: &'static str) {
        let mut cur = self.current.lock().unwrap_or_else(|e| e.into_inner());
        *cur = Some((version, support));
    }

    /// The Prometheus text lines (empty before the first connect).
    pub fn render(&self) -> String {
        let cur = self.current.lock().unwrap_or_else(|e| e.into_inner());
        match &*cur {
            None => String::new(),
            Some((version, support)) => format!(
                "# HELP vx_bridge_nats_server_info Version of the NATS server connected to; support: ok, data_loss, unsupported.\n\
                 # TYPE vx_bridge_nats_server_info gauge\n\
                 vx_bridge_nats_server_info{{version=\"{version}\",support=\"{support}\"}} 1\n"
            ),
        }
    }
}

/// Sets the number of events not yet projected (the consumer's pending plus unacked).
pub fn set_sessions_pending(n: u64) {
    metrics::gauge!("vx_bridge_sessions_pending").set(n as f64);
}

/// Sets whether the session bucket and its consumer are in place.
pub fn set_sessions_ready(ready: bool) {
    metrics::gauge!("vx_bridge_sessions_ready").set(if ready { 1.0 } else { 0.0 });
}

/// Counts a newly stored event by kind (pass, fail, pending, unrecognized, rejected).
pub fn record_event(kind: &'static str) {
    metrics::counter!("vx_bridge_events_total", "type" => kind).increment(1);
}

impl WebhookOutcome {
    /// Every outcome, in declaration order (the index of each in per-outcome tables).
    pub const ALL: [WebhookOutcome; 7] = [
        WebhookOutcome::Accepted,
        WebhookOutcome::Duplicate,
        WebhookOutcome::Unauthorized,
        WebhookOutcome::Invalid,
        WebhookOutcome::Rejected,
        WebhookOutcome::Unavailable,
        WebhookOutcome::Throttled,
    ];
}

/// The webhook metrics' handles (`vx_bridge_webhooks_total`, `vx_bridge_webhook_duration_seconds`,
/// `vx_bridge_webhooks_in_flight`), each registered with the installed recorder on first use and
/// kept, so recording does not build, hash and look up a key per webhook. A series still appears
/// only once it has been recorded.
pub struct WebhookMetrics {
    in_flight: OnceLock<metrics::Gauge>,
    /// `(count, duration)` per outcome, indexed like [`WebhookOutcome::ALL`].
    by_outcome: [OnceLock<(metrics::Counter, metrics::Histogram)>; 7],
    /// `vx_bridge_events_total` per type, indexed like [`EVENT_TYPES`].
    events: [OnceLock<metrics::Counter>; 5],
}

/// The `type` labels of `vx_bridge_events_total` the ingress counts: the event kinds' labels
/// and `rejected`.
const EVENT_TYPES: [&str; 5] = ["pass", "fail", "pending", "unrecognized", "rejected"];

impl WebhookMetrics {
    /// No handle is registered yet.
    pub fn new() -> Self {
        Self {
            in_flight: OnceLock::new(),
            by_outcome: Default::default(),
            events: Default::default(),
        }
    }

    /// The in-flight gauge.
    pub fn in_flight(&self) -> &metrics::Gauge {
        self.in_flight
            .get_or_init(|| metrics::gauge!("vx_bridge_webhooks_in_flight"))
    }

    /// [`record_event`] through a handle registered once per type.
    pub fn record_event(&self, kind: &'static str) {
        match EVENT_TYPES.iter().position(|t| *t == kind) {
            Some(i) => self.events[i]
                .get_or_init(
                    || metrics::counter!("vx_bridge_events_total", "type" => EVENT_TYPES[i]),
                )
                .increment(1),
            None => record_event(kind),
        }
    }

    /// Counts a webhook and its handling time.
    pub fn record(&self, outcome: WebhookOutcome, took: Duration) {
        if let Some(cell) = self.by_outcome.get(outcome as usize) {
            let (count, duration) = cell.get_or_init(|| {
                (
                    metrics::counter!("vx_bridge_webhooks_total", "outcome" => outcome.label()),
                    metrics::histogram!("vx_bridge_webhook_duration_seconds", "outcome" => outcome.label()),
                )
            });
            count.increment(1);
            duration.record(took.as_secs_f64());
        }
    }
}

impl Default for WebhookMetrics {
    fn default() -> Self {
        Self::new()
    }
}

impl std::fmt::Debug for WebhookMetrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("WebhookMetrics")
    }
}

/// How one publish attempt ended (`vx_bridge_publish_duration_seconds{result}`): stored, or
/// why not. Each `nats::PublishError` maps to one of these, and its code is this label: the
/// strings are written here only.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PublishResult {
    /// Stored: the PubAck came.
    Ok,
    /// Not connected to NATS.
    Disconnected,
    /// No PubAck in time.
    Timeout,
    /// No stream captures the subject.
    NoStream,
    /// JetStream answered 503.
    Unavailable,
    /// Shutting down.
    ShuttingDown,
    /// Any other failure.
    Failed,
    /// Over the server's `max_payload`.
    TooLarge,
}

impl PublishResult {
    /// Every result, in declaration order (the index of each in [`PublishMetrics`]).
    pub const ALL: [PublishResult; 8] = [
        PublishResult::Ok,
        PublishResult::Disconnected,
        PublishResult::Timeout,
        PublishResult::NoStream,
        PublishResult::Unavailable,
        PublishResult::ShuttingDown,
        PublishResult::Failed,
        PublishResult::TooLarge,
    ];

    /// Label value (`ok`, or the error's code).
    pub fn label(self) -> &'static str {
        match self {
            PublishResult::Ok => "ok",
            PublishResult::Disconnected => "nats_disconnected",
            PublishResult::Timeout => "puback_timeout",
            PublishResult::NoStream => "stream_missing",
            PublishResult::Unavailable => "jetstream_unavailable",
            PublishResult::ShuttingDown => "shutting_down",
            PublishResult::Failed => "publish_failed",
            PublishResult::TooLarge => "too_large",
        }
    }
}

/// The publish-duration histogram's handles by result, registered on first use (see
/// [`WebhookMetrics`]).
pub struct PublishMetrics {
    /// Indexed like [`PublishResult::ALL`].
    by_result: [OnceLock<metrics::Histogram>; 8],
}

impl PublishMetrics {
    /// No handle is registered yet.
    pub fn new() -> Self {
        Self {
            by_result: Default::default(),
        }
    }

    /// Records how long a publish attempt took until its PubAck (or its failure), by result.
    pub fn record(&self, result: PublishResult, took: Duration) {
        if let Some(cell) = self.by_result.get(result as usize) {
            cell.get_or_init(|| {
                metrics::histogram!("vx_bridge_publish_duration_seconds", "result" => result.label())
            })
            .record(took.as_secs_f64());
        }
    }
}

impl Default for PublishMetrics {
    fn default() -> Self {
        Self::new()
    }
}

impl std::fmt::Debug for PublishMetrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("PublishMetrics")
    }
}

/// How a publish that rode through an outage ended (its first attempt failed in a way a retry
/// can cure).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OutageWaitResult {
    /// A retry got the PubAck (202).
    Stored,
    /// `nats.outage_wait` passed (503).
    GaveUp,
    /// Shutdown began while it waited (503).
    Shutdown,
    /// A retry failed in a way waiting cannot cure (503, or what the ingress maps it to).
    Failed,
}

impl OutageWaitResult {
    /// Every result, in declaration order (the index of each in [`OutageMetrics`]).
    pub const ALL: [OutageWaitResult; 4] = [
        OutageWaitResult::Stored,
        OutageWaitResult::GaveUp,
        OutageWaitResult::Shutdown,
        OutageWaitResult::Failed,
    ];

    /// Label value.
    pub fn label(self) -> &'static str {
        match self {
            OutageWaitResult::Stored => "stored",
            OutageWaitResult::GaveUp => "gave_up",
            OutageWaitResult::Shutdown => "shutdown",
            OutageWaitResult::Failed => "failed",
        }
    }
}

/// `vx_bridge_publish_outage_waits_total` and `vx_bridge_publish_outage_wait_seconds` by result,
/// registered at once (so the series exist, at 0, before the first outage).
pub struct OutageMetrics {
    /// `(count, duration)` per result, indexed like [`OutageWaitResult::ALL`].
    by_result: [(metrics::Counter, metrics::Histogram); 4],
}

impl OutageMetrics {
    /// Registers every series with the installed recorder.
    pub fn new() -> Self {
        Self {
            by_result: OutageWaitResult::ALL.map(|r| {
                (
                    metrics::counter!("vx_bridge_publish_outage_waits_total", "result" => r.label()),
                    metrics::histogram!("vx_bridge_publish_outage_wait_seconds", "result" => r.label()),
                )
            }),
        }
    }

    /// Counts one publish that rode through an outage, and how long it took in all, from its
    /// first attempt to its answer.
    pub fn record(&self, result: OutageWaitResult, took: Duration) {
        if let Some((count, duration)) = self.by_result.get(result as usize) {
            count.increment(1);
            duration.record(took.as_secs_f64());
        }
    }
}

impl Default for OutageMetrics {
    fn default() -> Self {
        Self::new()
    }
}

impl std::fmt::Debug for OutageMetrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("OutageMetrics")
    }
}

/// Counts a status request by endpoint (`status`, `result`) and the code it was answered with
/// (200, or the service error's code).
pub fn record_status_request(endpoint: &'static str, code: u16) {
    metrics::counter!("vx_bridge_status_requests_total", "endpoint" => endpoint, "code" => code.to_string())
        .increment(1);
}

/// Sets how many status lookups wait for an answer.
pub fn set_status_lookups_in_flight(n: usize) {
    metrics::gauge!("vx_bridge_status_lookups_in_flight").set(n as f64);
}

/// Where a status lookup's answer came from (`vx_bridge_status_cache_total{result}`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StatusCache {
    /// From the cache, or from another requester's call in flight.
    Hit,
    /// From a new upstream call.
    Miss,
}

impl StatusCache {
    /// Label value.
    pub fn label(self) -> &'static str {
        match self {
            StatusCache::Hit => "hit",
            StatusCache::Miss => "miss",
        }
    }

    /// Counts it.
    pub fn record(self) {
        metrics::counter!("vx_bridge_status_cache_total", "result" => self.label()).increment(1);
    }
}

/// Counts one VX lookup, retries included, by outcome (`ok`, or the upstream error's label), and
/// how long it took.
pub fn record_upstream_lookup(outcome: &'static str, took: Duration) {
    metrics::counter!("vx_bridge_upstream_lookups_total", "outcome" => outcome).increment(1);
    metrics::histogram!("vx_bridge_upstream_lookup_duration_seconds").record(took.as_secs_f64());
}

/// How one HTTP call to VX ended (`vx_bridge_upstream_request_duration_seconds{class}`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UpstreamCall {
    /// A 2xx answer.
    Success,
    /// A 4xx answer.
    ClientError,
    /// A 5xx answer.
    ServerError,
    /// Any other status.
    Other,
    /// No answer in time.
    Timeout,
    /// No answer (connection failed).
    Error,
}

impl UpstreamCall {
    /// Label value.
    pub fn label(self) -> &'static str {
        match self {
            UpstreamCall::Success => "2xx",
            UpstreamCall::ClientError => "4xx",
            UpstreamCall::ServerError => "5xx",
            UpstreamCall::Other => "other",
            UpstreamCall::Timeout => "timeout",
            UpstreamCall::Error => "error",
        }
    }

    /// Records how long the call took.
    pub fn record(self, took: Duration) {
        metrics::histogram!("vx_bridge_upstream_request_duration_seconds", "class" => self.label())
            .record(took.as_secs_f64());
    }
}

/// The VX API circuit breaker's state (`vx_bridge_upstream_circuit_state`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CircuitState {
    /// Calls go through (0).
    Closed,
    /// One probe call goes through (1).
    HalfOpen,
    /// Calls are refused (2).
    Open,
}

impl CircuitState {
    /// Sets the gauge: 0 closed, 1 half-open, 2 open.
    pub fn set(self) {
        let v = match self {
            CircuitState::Closed => 0.0,
            CircuitState::HalfOpen => 1.0,
            CircuitState::Open => 2.0,
        };
        metrics::gauge!("vx_bridge_upstream_circuit_state").set(v);
    }
}

/// Counts an OAuth token fetched for the VX API.
pub fn record_token_fetch() {
    metrics::counter!("vx_bridge_upstream_token_fetches_total").increment(1);
}

#[cfg(test)]
mod upkeep_tests {
    use super::*;

    #[test]
    fn histogram_samples_are_drained_without_a_scrape() {
        // Regression (soak suite): samples piled up until /metrics was scraped.
        let _ = metrics_handle();
        // The thread names itself once it runs: look for up to 5 s.
        let named = || {
            std::fs::read_dir("/proc/self/task")
                .map(|d| {
                    d.filter_map(Result::ok)
                        .filter_map(|t| std::fs::read_to_string(t.path().join("comm")).ok())
                        .any(|c| c.trim() == METRICS_UPKEEP_THREAD)
                })
                .unwrap_or(true)
        };
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
        let mut found = named();
        while !found && std::time::Instant::now() < deadline {
            std::thread::sleep(std::time::Duration::from_millis(10));
            found = named();
        }
        assert!(found, "no {METRICS_UPKEEP_THREAD} thread");
    }
}
