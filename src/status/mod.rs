//! The status and result request-reply service: a NATS micro service (`$SRV.PING/INFO/STATS`)
//! with two endpoints in the queue group `status.queue_group`, so replicas share requests:
//!
//! - `{prefix}.status.get`: `{"request_id"}` → `{"request_id", "current_status", "checked_at", "source"}`
//!   (a terminal session in the session view is answered from it: `source: "events"` plus
//!   `result_status`, no VX call). Terminal states reach memory without a read (the projector
//!   in this process, and a KV watch of the bucket for other replicas: stale by at most the
//!   watch's lag, milliseconds), so a cached VX answer is answered without reading the view
//!   while the watch runs; otherwise (watch down, NATS reconnecting) the view is read first.
//! - `{prefix}.result.get`: for a terminal session in the view, the `result` of the event at
//!   its `stream_seq`, with no VX call
//! - `{prefix}.result.get`: `{"request_id"}` or `{"email"}` (if configured) → the VX result body
//! - `{prefix}.watch` (only where the reconciler runs, `reconcile.enabled`): `{"request_id"}` →
//!   `{"request_id", "watching": true, "next_check_at"}` (registered with the reconciler, or
//!   watched already: its schedule kept), or for a session terminal in the view the
//!   `status.get` reply from it plus `"watching": false`. Parsed exactly as `status.get`.
//!
//! Requests are validated ([`request`]) before anything reaches the upstream; lookups are
//! cached and coalesced ([`lookup`]); errors are answered with the `Nats-Service-Error` headers
//! and a JSON body ([`error`]). [`client`] is the requester side (the CLI and tests). Logs carry
//! the request_id, never an email or a body. The service never reaches the ingress: the two
//! meet only in config, events, NATS and telemetry (`scripts/code/check-layers.py`, rule 4).

pub mod client;
pub mod error;
pub mod lookup;
pub mod request;

use std::sync::Arc;
use std::time::{Duration, Instant};

use async_nats::service::{self, ServiceExt};
use bytes::Bytes;
use futures::StreamExt;
use serde::Serialize;
use tokio::task::{JoinHandle, JoinSet};
use tokio_util::sync::CancellationToken;

use crate::clock::{Clock, SystemClock};
use crate::config::Config;
use crate::event::CarriedPii;
use crate::nats::Subjects;
use crate::pii::erase::Eraser;
use crate::pii::{KeyStore, OpenError, Sealer};
use crate::schema::Schemas;
use crate::sessions::ViewRead;
use crate::telemetry::TraceContext;
use crate::timestamp::format_timestamp;
use crate::upstream::{CurrentStatus, SessionReply, UpstreamClient};
use error::ServiceError;
use lookup::{Fetched, Key, Lookups};
use request::ResultRequest;
use tracing::Instrument as _;

/// The micro service's name in `$SRV` discovery.
pub const SERVICE_NAME: &str = "vx-bridge";
/// Endpoint name of `{prefix}.status.get`.
pub const STATUS_ENDPOINT: &str = "status-get";
/// Endpoint name of `{prefix}.result.get`.
pub const RESULT_ENDPOINT: &str = "result-get";
/// Endpoint name of `{prefix}.watch`.
pub const WATCH_ENDPOINT: &str = "watch";
/// Endpoint name of `{prefix}.erase`.
pub const ERASE_ENDPOINT: &str = "erase";

/// A successful `status.get` reply (`schemas/status-reply.schema.json`).
#[derive(Debug, Serialize)]
pub struct StatusReply {
    /// The session, lower-case hyphenated.
    pub request_id: String,
    /// INIT, IN PROGRESS, COMPLETED or PENDING.
    pub current_status: CurrentStatus,
    /// When the upstream was asked ([`format_timestamp`]).
    pub checked_at: String,
    /// `upstream`, `cache` or `events`.
    pub source: &'static str,
    /// PASS or FAIL, when answered from the session view (`source: "events"`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub result_status: Option<String>,
}

/// A successful `watch` reply (`schemas/watch-reply.schema.json`).
#[derive(Debug, Serialize)]
#[serde(untagged)]
enum WatchReply {
    /// Watched: `{request_id, watching: true, next_check_at}`.
    Watching {
        request_id: String,
        watching: bool,
        next_check_at: String,
    },
    /// Terminal in the view: the `status.get` reply from it plus `watching: false`.
    Terminal {
        #[serde(flatten)]
        state: StatusReply,
        watching: bool,
    },
}

/// What a request asks for: which of the endpoints it came in on. (The endpoint itself is
/// async-nats' [`service::endpoint::Endpoint`].)
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Operation {
    /// `{prefix}.status.get`.
    StatusGet,
    /// `{prefix}.result.get`.
    ResultGet,
    /// `{prefix}.watch`.
    Watch,
    /// `{prefix}.erase`.
    Erase,
}

impl Operation {
    /// The `endpoint` label of metrics.
    fn metric(self) -> crate::telemetry::StatusEndpoint {
        use crate::telemetry::StatusEndpoint;
        match self {
            Operation::StatusGet => StatusEndpoint::Status,
            Operation::ResultGet => StatusEndpoint::Result,
            Operation::Watch => StatusEndpoint::Watch,
            Operation::Erase => StatusEndpoint::Erase,
        }
    }

    /// The `endpoint` label of logs.
    fn label(self) -> &'static str {
        self.metric().label()
    }
}

/// What every request handler shares: the connection, the lookups, the schemas, the view.
struct ServiceState {
    client: async_nats::Client,
    lookups: Lookups,
    schemas: Schemas,
    /// Where the stats-only copy of an error reply goes (see [`respond`]).
    discard_subject: String,
    /// The session view (`sessions.enabled`): terminal sessions are answered from it.
    view: Option<crate::sessions::ViewReader>,
    /// The reconciler's registration (`reconcile.enabled`): the watch endpoint.
    registrar: Option<crate::reconcile::queue::Registrar>,
    /// How events carry personal data, and the data keys (result.get opens, erase shreds).
    sealer: Sealer,
    /// The erase endpoint's worker.
    eraser: Option<Eraser>,
}

/// A running status service.
pub struct StatusHandle {
    service: service::Service,
    loops: Vec<JoinHandle<()>>,
    stop: CancellationToken,
    state: Arc<ServiceState>,
}

impl std::fmt::Debug for StatusHandle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StatusHandle")
            .field("lookups", &self.state.lookups)
            .finish()
    }
}

impl StatusHandle {
    /// Lookups waiting for the upstream or for a concurrent lookup of the same key.
    pub fn lookups_in_flight(&self) -> usize {
        self.state.lookups.in_flight()
    }

    /// The service's instance id in `$SRV` discovery.
    pub async fn service_id(&self) -> String {
        self.service.info().await.id
    }

    /// Stops taking requests, lets in-flight ones finish (bounded by `upstream.timeout` + 1 s),
    /// then removes the service from discovery.
    pub async fn stop(self) {
        self.stop.cancel();
        for l in self.loops {
            if let Err(e) = l.await {
                tracing::warn!(error = %e, "status endpoint task failed");
            }
        }
        // When this returns, the server has processed the unsubscriptions: no request is
        // routed to this instance any more.
        barrier(&self.state.client).await;
        if let Err(e) = self.service.stop().await {
            tracing::warn!(error = %e, "stopping the status service failed");
        }
        tracing::info!("status service stopped");
    }
}

/// Starts the service with an upstream client built from `config` (the system clock) and the
/// embedded result schema; `app` builds the client itself, with `webhook.schema_file`'s, and
/// calls [`start_with_upstream`].
/// The endpoints answer until [`StatusHandle::stop`]; `app::run` calls it after the HTTP
/// server has finished, before draining NATS.
pub async fn start(
    config: &Config,
    client: async_nats::Client,
    _shutdown: CancellationToken,
) -> anyhow::Result<StatusHandle> {
    let clock: Arc<dyn Clock> = Arc::new(SystemClock);
    let upstream = UpstreamClient::from_config(&config.upstream, clock)?;
    let keks = crate::pii::kek::configured(config)?;
    let keys = Arc::new(KeyStore::new(client.clone(), config, keks));
    let sealer = Sealer::new(config.events.pii, Some(keys));
    start_with_upstream(config, client, Arc::new(upstream), None, sealer).await
}

/// Starts the service with a given upstream client (tests pass one with a manual clock).
/// `terminal`: the terminal states shared with the projector in this process (`None`: the
/// service keeps its own, fed by the bucket's watch only).
pub async fn start_with_upstream(
    config: &Config,
    client: async_nats::Client,
    upstream: Arc<UpstreamClient>,
    terminal: Option<crate::sessions::TerminalStates>,
    sealer: Sealer,
) -> anyhow::Result<StatusHandle> {
    let subjects = Subjects::new(&config.nats.subject_prefix);
    let service = client
        .service_builder()
        .description("vx-bridge: status and result of VX verification sessions")
        .queue_group(&config.status.queue_group)
        .start(SERVICE_NAME, env!("CARGO_PKG_VERSION"))
        .await
        .map_err(|e| anyhow::anyhow!("starting the NATS status service: {e}"))?;
    let status_ep = service
        .endpoint_builder()
        .name(STATUS_ENDPOINT)
        .add(subjects.status_get())
        .await
        .map_err(|e| anyhow::anyhow!("adding {}: {e}", subjects.status_get()))?;
    let result_ep = service
        .endpoint_builder()
        .name(RESULT_ENDPOINT)
        .add(subjects.result_get())
        .await
        .map_err(|e| anyhow::anyhow!("adding {}: {e}", subjects.result_get()))?;
    let watch_ep = if config.reconcile_enabled() {
        let ep = service
            .endpoint_builder()
            .name(WATCH_ENDPOINT)
            .add(subjects.watch())
            .await
            .map_err(|e| anyhow::anyhow!("adding {}: {e}", subjects.watch()))?;
        Some(ep)
    } else {
        None
    };
    let erase_ep = match sealer.keys() {
        Some(_) => Some(
            service
                .endpoint_builder()
                .name(ERASE_ENDPOINT)
                .add(subjects.erase())
                .await
                .map_err(|e| anyhow::anyhow!("adding {}: {e}", subjects.erase()))?,
        ),
        None => None,
    };
    barrier(&client).await;
    let view = config.sessions.enabled.then(|| {
        crate::telemetry::SESSION_LOOKUP_WRITES.show_all();
        let terminal = terminal.unwrap_or_else(|| terminal_states(config));
        crate::sessions::ViewReader::new(
            client.clone(),
            &config.sessions.bucket,
            &config.nats.stream.name,
            terminal,
        )
        .watching()
    });
    let registrar = watch_ep
        .is_some()
        .then(|| crate::reconcile::queue::Registrar::new(client.clone(), config));
    let eraser = sealer
        .keys()
        .map(|k| Eraser::new(client.clone(), config, k.clone()));
    let state = Arc::new(ServiceState {
        view,
        registrar,
        sealer,
        eraser,
        discard_subject: client.new_inbox(),
        client,
        lookups: Lookups::new(&config.status, upstream),
        schemas: Schemas::get(),
    });
    let stop = CancellationToken::new();
    let grace = config.upstream.timeout + Duration::from_secs(1);
    let mut loops = vec![
        tokio::spawn(serve(
            status_ep,
            Operation::StatusGet,
            state.clone(),
            stop.clone(),
            grace,
        )),
        tokio::spawn(serve(
            result_ep,
            Operation::ResultGet,
            state.clone(),
            stop.clone(),
            grace,
        )),
    ];
    if let Some(ep) = watch_ep {
        loops.push(tokio::spawn(serve(
            ep,
            Operation::Watch,
            state.clone(),
            stop.clone(),
            grace,
        )));
    }
    if let Some(ep) = erase_ep {
        loops.push(tokio::spawn(serve(
            ep,
            Operation::Erase,
            state.clone(),
            stop.clone(),
            grace,
        )));
    }
    tracing::info!(
        status = %subjects.status_get(),
        result = %subjects.result_get(),
        watch = state.registrar.is_some(),
        erase = state.eraser.is_some(),
        pii = state.sealer.mode().as_str(),
        queue_group = %config.status.queue_group,
        email_lookup = state.lookups.upstream().email_lookup_enabled(),
        "status service started"
    );
    Ok(StatusHandle {
        service,
        loops,
        stop,
        state,
    })
}

/// The view's terminal states the status service keeps: as many and as long as terminal VX
/// answers (`status.cache_max_entries`, `status.terminal_cache_ttl`).
pub fn terminal_states(config: &Config) -> crate::sessions::TerminalStates {
    crate::sessions::TerminalStates::new(
        config.status.terminal_cache_ttl,
        config.status.cache_max_entries,
    )
}

/// Waits (up to 5 s) until the server has processed this connection's earlier subscriptions:
/// a message to our own inbox comes back only after them. So when [`start`] returns on a
/// connected client, the endpoints receive requests. Not connected yet: logs and goes on.
async fn barrier(client: &async_nats::Client) {
    let inbox = client.new_inbox();
    let round_trip = async {
        let mut sub = client.subscribe(inbox.clone()).await.ok()?;
        client.publish(inbox, Bytes::new()).await.ok()?;
        let got = sub.next().await;
        let _ = sub.unsubscribe().await;
        got
    };
    if tokio::time::timeout(Duration::from_secs(5), round_trip)
        .await
        .ok()
        .flatten()
        .is_none()
    {
        tracing::warn!(
            "NATS did not confirm the status subscriptions yet; they apply once connected"
        );
    }
}

/// Takes requests from one endpoint until `stop`, one task each; then finishes in-flight ones.
async fn serve(
    mut endpoint: service::endpoint::Endpoint,
    op: Operation,
    state: Arc<ServiceState>,
    stop: CancellationToken,
    grace: Duration,
) {
    let mut tasks = JoinSet::new();
    loop {
        tokio::select! {
            _ = stop.cancelled() => break,
            next = endpoint.next() => match next {
                Some(req) => {
                    tasks.spawn(handle(req, op, state.clone()));
                }
                None => break,
            },
            Some(_) = tasks.join_next(), if !tasks.is_empty() => {}
        }
    }
    if let Err(e) = endpoint.stop().await {
        tracing::warn!(endpoint = op.label(), error = %e, "unsubscribing failed");
    }
    let drained =
        tokio::time::timeout(grace, async { while tasks.join_next().await.is_some() {} }).await;
    if drained.is_err() {
        tracing::warn!(
            endpoint = op.label(),
            "in-flight status requests did not finish in time"
        );
        tasks.abort_all();
    }
}

async fn handle(req: service::Request, op: Operation, state: Arc<ServiceState>) {
    let span = tracing::info_span!(
        "status_request",
        endpoint = op.label(),
        request_id = tracing::field::Empty,
        code = tracing::field::Empty,
        trace_id = tracing::field::Empty,
    );
    let header = |name: &str| {
        req.message
            .headers
            .as_ref()
            .and_then(|h| h.get(name))
            .map(|v| v.as_str().to_owned())
    };
    let (traceparent, tracestate) = (header("traceparent"), header("tracestate"));
    let trace =
        crate::telemetry::continue_trace(&span, traceparent.as_deref(), tracestate.as_deref());
    if let Some(trace_id) = trace.trace_id() {
        span.record("trace_id", trace_id);
    }
    handle_in_span(req, op, state, trace).instrument(span).await;
}

async fn handle_in_span(
    req: service::Request,
    op: Operation,
    state: Arc<ServiceState>,
    trace: TraceContext,
) {
    let started = Instant::now();
    let (result, request_id, source) = match op {
        Operation::StatusGet => status_get(&state, &req.message.payload, &trace).await,
        Operation::ResultGet => result_get(&state, &req.message.payload, &trace).await,
        Operation::Watch => watch(&state, &req.message.payload).await,
        Operation::Erase => erase(&state, &req.message.payload).await,
    };
    let code = match &result {
        Ok(_) => 200,
        Err(e) => e.code,
    };
    let elapsed_ms = started.elapsed().as_millis() as u64;
    let request_id = request_id.as_deref().unwrap_or("-");
    let source = source.unwrap_or("-");
    let span = tracing::Span::current();
    span.record("request_id", request_id);
    span.record("code", code);
    match &result {
        Err(e) if e.code >= 500 => {
            tracing::warn!(endpoint = op.label(), request_id, code, elapsed_ms, error = %e.message, "status request failed")
        }
        Err(e) => {
            tracing::info!(endpoint = op.label(), request_id, code, elapsed_ms, error = %e.message, "status request refused")
        }
        Ok(_) => {
            tracing::debug!(
                endpoint = op.label(),
                request_id,
                code,
                source,
                elapsed_ms,
                "status request answered"
            )
        }
    }
    crate::telemetry::STATUS_REQUESTS
        .get((op.metric(), crate::telemetry::StatusCode::of(code)))
        .increment(1);
    respond(req, result, &state).await;
}

/// The reply, the request_id (for the log) and where the answer came from (`source`).
type Handled = (
    Result<Bytes, ServiceError>,
    Option<String>,
    Option<&'static str>,
);

/// `source` of a reply answered from the session view.
const FROM_EVENTS: &str = "events";

async fn status_get(state: &ServiceState, payload: &[u8], trace: &TraceContext) -> Handled {
    let req = match request::parse_status(payload, &state.schemas) {
        Ok(r) => r,
        Err(e) => return (Err(e), None, None),
    };
    let id = req.request_id.hyphenated().to_string();
    // A terminal session is answered from the view, with no VX call; anything else (not in the
    // view, not terminal, the view unreadable) asks VX, and VX's answer goes into the view.
    // While the bucket's watch runs, a terminal state reaches memory within its lag, so a VX
    // answer cached since then is answered without reading the view; otherwise the view is read.
    let key = Key::Id(req.request_id);
    let basis = match &state.view {
        Some(view) => {
            if let Some(s) = view.terminal_cached(&id).await {
                return from_view(id, s);
            }
            let watched = view.watched_since();
            let cached = match watched {
                Some(since) => state.lookups.cached_since(&key, since).await,
                None => None,
            };
            if let Some(fetched) = cached {
                return from_vx(&fetched, lookup::Source::Cache, id);
            }
            match view.read(&id).await {
                ViewRead::Found(s) if s.terminal => return from_view(id, s),
                read => read,
            }
        }
        None => ViewRead::Unavailable,
    };
    let (fetched, source) = match state.lookups.get(key, trace).await {
        Ok(v) => v,
        Err(e) => return (Err(ServiceError::from(e.as_ref())), Some(id), None),
    };
    if let (Some(view), lookup::Source::Upstream, Some(current_status)) =
        (&state.view, source, fetched.reply.current_status())
    {
        // Only an answer this request fetched is written (a cached one was, when fetched).
        // Written before the reply, so a requester that then reads the view sees it; bounded
        // by the view's own timeout, and never turned into an error.
        let checked_at = format_timestamp(fetched.checked_at);
        view.record_lookup(basis, current_status.as_str(), checked_at, &id)
            .await;
    }
    from_vx(&fetched, source, id)
}

/// The `status.get` reply of a session terminal in the view.
fn from_view(id: String, s: crate::sessions::rule::SessionState) -> Handled {
    let reply = StatusReply {
        request_id: id.clone(),
        current_status: CurrentStatus::Completed,
        checked_at: s.updated_at,
        source: FROM_EVENTS,
        result_status: Some(s.status),
    };
    let body = serde_json::to_vec(&reply)
        .map(Bytes::from)
        .map_err(|_| ServiceError::bad_gateway("cannot encode the reply"));
    (body, Some(id), Some(FROM_EVENTS))
}

/// The `status.get` reply of VX's answer `fetched` (from `source`).
fn from_vx(fetched: &Fetched, source: lookup::Source, id: String) -> Handled {
    let Some(current_status) = fetched.reply.current_status() else {
        return (
            Err(ServiceError::bad_gateway(
                "the VX result has an unrecognized status; see result.get",
            )),
            Some(id),
            Some(source.as_str()),
        );
    };
    let checked_at = format_timestamp(fetched.checked_at);
    let reply = StatusReply {
        request_id: id.clone(),
        current_status,
        checked_at,
        source: source.as_str(),
        result_status: None,
    };
    let body = serde_json::to_vec(&reply)
        .map(Bytes::from)
        .map_err(|_| ServiceError::bad_gateway("cannot encode the reply"));
    (body, Some(id), Some(source.as_str()))
}

/// `{prefix}.watch`: the view's terminal state, or a registration with the reconciler.
async fn watch(state: &ServiceState, payload: &[u8]) -> Handled {
    let req = match request::parse_status(payload, &state.schemas) {
        Ok(r) => r,
        Err(e) => return (Err(e), None, None),
    };
    let id = req.request_id.hyphenated().to_string();
    let encode = |reply: &WatchReply| {
        serde_json::to_vec(reply)
            .map(Bytes::from)
            .map_err(|_| ServiceError::bad_gateway("cannot encode the reply"))
    };
    if let Some(view) = &state.view {
        if let ViewRead::Found(s) = view.read(&id).await {
            if s.terminal {
                let reply = WatchReply::Terminal {
                    state: StatusReply {
                        request_id: id.clone(),
                        current_status: CurrentStatus::Completed,
                        checked_at: s.updated_at,
                        source: FROM_EVENTS,
                        result_status: Some(s.status),
                    },
                    watching: false,
                };
                return (encode(&reply), Some(id), Some(FROM_EVENTS));
            }
        }
    }
    let Some(registrar) = &state.registrar else {
        return (
            Err(ServiceError::unavailable("the reconciler is not running")),
            Some(id),
            None,
        );
    };
    match registrar.register(&id).await {
        Ok(r) => {
            let reply = WatchReply::Watching {
                request_id: id.clone(),
                watching: true,
                next_check_at: format_timestamp(r.next_check_at),
            };
            let source = if r.new { "registered" } else { "watched" };
            (encode(&reply), Some(id), Some(source))
        }
        Err(e) => {
            tracing::warn!(request_id = %id, error = %crate::telemetry::error_chain(&e), "watch: registering failed");
            (
                Err(ServiceError::unavailable(
                    "the reconciler's work queue cannot be written now; retry",
                )),
                Some(id),
                None,
            )
        }
    }
}

async fn result_get(state: &ServiceState, payload: &[u8], trace: &TraceContext) -> Handled {
    let req = match request::parse_result(payload, &state.schemas) {
        Ok(r) => r,
        Err(e) => return (Err(e), None, None),
    };
    let (key, id) = match req {
        ResultRequest::Id(id) => (Key::Id(id), Some(id.hyphenated().to_string())),
        ResultRequest::Email(email) => {
            if !state.lookups.upstream().email_lookup_enabled() {
                return (
                    Err(ServiceError::bad_request(
                        "lookup by email is not configured on this bridge (upstream.email_lookup_path); use request_id",
                    )),
                    None,
                    None,
                );
            }
            (Key::Email(email), None)
        }
    };
    // A terminal session: the result of the event the bridge stored, with no VX call. An
    // encrypted one is opened with the key read from the bucket, which also tells an erased
    // (410) or expired (410) session; anything else is checked for an erasure first, so an
    // erased session is answered 410 and VX is not asked for it again.
    if let Some(request_id) = &id {
        let stored = match &state.view {
            Some(view) => view.result(request_id).await,
            None => None,
        };
        if let Some(CarriedPii::Encrypted(jwe)) = &stored {
            let opened = match state.sealer.keys() {
                Some(keys) => crate::pii::open(keys, request_id, jwe).await,
                None => Err(OpenError::Keys(crate::pii::KeyError::NoKek)),
            };
            return match opened {
                Ok(body) => (Ok(Bytes::from(body)), id, Some(FROM_EVENTS)),
                Err(e) => (Err(open_refusal(&e)), id, None),
            };
        }
        if let Some(refusal) = erased(state, request_id).await {
            return (Err(refusal), id, None);
        }
        // Not carried (`omitted`), or not in the view: VX is asked below.
        if let Some(CarriedPii::Clear(body)) = stored {
            return (Ok(body), id, Some(FROM_EVENTS));
        }
    }
    let (fetched, source) = match state.lookups.get(key, trace).await {
        Ok(v) => v,
        Err(e) => return (Err(ServiceError::from(e.as_ref())), id, None),
    };
    let body = match &fetched.reply {
        SessionReply::Result(r) => {
            // A lookup by email learns the session only now.
            if id.is_none() {
                if let Some(rid) = crate::event::session_of(&r.raw) {
                    if let Some(refusal) = erased(state, &rid).await {
                        return (Err(refusal), None, None);
                    }
                }
            }
            Ok(r.raw.clone())
        }
        SessionReply::Status(s) => Err(ServiceError::not_found(format!(
            "the VX API has no result body for this session yet (current_status: {})",
            s.as_str()
        ))),
    };
    (body, id, Some(source.as_str()))
}

/// 410 "erased" when the session's data key is a tombstone; 503 when the keys bucket cannot
/// tell (a retry can); `None` otherwise (no key store: nothing is ever erased here).
async fn erased(state: &ServiceState, request_id: &str) -> Option<ServiceError> {
    let keys = state.sealer.keys()?;
    match keys.is_erased(request_id).await {
        Ok(true) => Some(ServiceError::gone(
            "erased: this session's personal data was erased",
        )),
        Ok(false) => None,
        Err(e) => Some(ServiceError::unavailable(format!(
            "the keys bucket cannot be read ({}); retry later",
            crate::telemetry::error_chain(&e)
        ))),
    }
}

/// The reply for a stored result that does not open.
fn open_refusal(e: &OpenError) -> ServiceError {
    match e {
        OpenError::Erased => ServiceError::gone("erased: this session's personal data was erased"),
        OpenError::Expired => ServiceError::gone(
            "expired: this session's personal data is past its retention (retention.pii)",
        ),
        OpenError::Keys(k) if k.is_retryable() => ServiceError::unavailable(format!(
            "the keys bucket cannot be read ({}); retry later",
            crate::telemetry::error_chain(k)
        )),
        other => ServiceError::bad_gateway(format!(
            "the stored result cannot be decrypted: {}",
            crate::telemetry::error_chain(other)
        )),
    }
}

/// `{prefix}.erase`: erases one session's personal data ([`Eraser::erase`]).
async fn erase(state: &ServiceState, payload: &[u8]) -> Handled {
    let req = match request::parse_erase(payload, &state.schemas) {
        Ok(r) => r,
        Err(e) => return (Err(e), None, None),
    };
    let id = req.request_id.hyphenated().to_string();
    let Some(eraser) = &state.eraser else {
        return (
            Err(ServiceError::unavailable("erasure is not available here")),
            Some(id),
            None,
        );
    };
    match eraser.erase(&id, req.reason.as_deref()).await {
        Ok(done) => {
            tracing::info!(
                request_id = %id,
                already_erased = done.already_erased,
                view_key_removed = done.view_key_removed,
                watch_removed = done.watch_removed,
                "session erased"
            );
            match serde_json::to_vec(&done) {
                Ok(body) => (Ok(Bytes::from(body)), Some(id), None),
                Err(_) => (
                    Err(ServiceError::bad_gateway("cannot encode the reply")),
                    Some(id),
                    None,
                ),
            }
        }
        Err(e) => (
            Err(ServiceError::unavailable(format!(
                "{}; nothing was lost, send the request again",
                crate::telemetry::error_chain(&e)
            ))),
            Some(id),
            None,
        ),
    }
}

/// Sends the reply. An error reply carries the `Nats-Service-Error` headers *and* a JSON body;
/// async-nats' `respond(Err(..))` sends an empty body, and only it counts the error in the
/// endpoint's `$SRV.STATS`. So the error is published to the requester here, and then
/// `respond(Err(..))` is pointed at an inbox nobody listens on, to count it.
async fn respond(
    mut req: service::Request,
    result: Result<Bytes, ServiceError>,
    state: &ServiceState,
) {
    let outcome = match result {
        Ok(body) => req.respond(Ok(body)).await.map_err(async_nats::Error::from),
        Err(e) => {
            let Some(reply) = req.message.reply.clone() else {
                return;
            };
            let mut headers = async_nats::HeaderMap::new();
            headers.insert(service::NATS_SERVICE_ERROR, e.header_message().as_str());
            headers.insert(
                service::NATS_SERVICE_ERROR_CODE,
                e.code.to_string().as_str(),
            );
            let sent = state
                .client
                .publish_with_headers(reply, headers, e.body())
                .await
                .map_err(async_nats::Error::from);
            req.message.reply = Some(state.discard_subject.clone().into());
            let counted = req
                .respond(Err(service::error::Error {
                    status: e.header_message(),
                    code: e.code as usize,
                }))
                .await
                .map_err(async_nats::Error::from);
            sent.and(counted)
        }
    };
    if let Err(e) = outcome {
        tracing::warn!(error = %crate::telemetry::error_chain(&*e), "sending a status reply failed");
    }
}
