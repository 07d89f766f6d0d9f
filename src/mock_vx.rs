//! A stand-in for the VX API, the one mock of this repository: the demo, local runs
//! (`vx-bridge mock-vx`), the load generator's `mock-vx` mode and the tests (through
//! `vx-testkit`) all serve this one. It lets a newcomer see `vx-bridge status` succeed without VX
//! credentials, and lets a test script what VX answers and count what the bridge asked.
//!
//! Routes:
//! - `POST /oauth/token`: issues `tok-1`, `tok-2`, … (`expires_in` 3600 unless told otherwise);
//!   with [`MockVx::with_oauth`] only for that client id and secret (audience `dcams.app`,
//!   grant `client_credentials`), else for any body.
//! - `GET /api/session/result/{id}`: bearer token required (the one given to [`MockVx::new`] or
//!   one it issued, unless revoked), else 401. Then, in this order:
//!   - a request_id whose last group is `fa17`, 5 hex digits and an HTTP error status NNN gets
//!     NNN (504 only after 60 s: a VX that hangs), e.g. `00000000-0000-4000-8000-fa1700001404`
//!     → 404, so scripts can provoke each answer with as many sessions as they need;
//!   - the next scripted [`Step`] ([`MockVx::script`]);
//!   - a status it was told, by [`MockVx::tell`] (the demo) or by `PUT /mock/sessions/{id}` with
//!     `{"current_status": "PENDING"}` (any of `INIT`, `IN PROGRESS`, `COMPLETED`, `PENDING`; no
//!     token needed);
//!   - the default step, when one is set ([`MockVx::set_default`]);
//!   - otherwise the next step of a cycle per id: `INIT` on the first lookup, `IN PROGRESS` on
//!     the second, `COMPLETED` from the third on (the bridge caches replies, `status.cache_ttl`,
//!     so a quick repeat may be answered from its cache), or from the third on the result body
//!     with a status when told so ([`MockVx::complete_with`], as the reconciler's tests do); 404
//!     `{"error": "not_found"}` for the nil UUID `00000000-0000-0000-0000-000000000000`.
//!     [`MockVx::cycle_calls`] counts one id's lookups that reached the cycle.
//! - `GET /api/session/by-email/{email}`: bearer required; the result body ([`Step::Result`]).
//! - `GET /mock/stats`: `{"token_calls": n, "result_calls": n}`.
//!
//! It holds only that state in memory (recorded headers: the first [`RECORDED`] of each kind),
//! touches no NATS and no file, reads no environment, and is not for production.

use std::collections::{HashMap, HashSet, VecDeque};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post, put};
use axum::{Json, Router};
use serde_json::{json, Value};
use tokio::net::TcpListener;
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;

use crate::upstream::reply::CurrentStatus;

/// The statuses an unknown id goes through, one per lookup; the last one stays.
pub const CYCLE: [&str; 3] = ["INIT", "IN PROGRESS", "COMPLETED"];

/// The id the mock does not know (404).
pub const UNKNOWN_ID: &str = "00000000-0000-0000-0000-000000000000";

/// How many bearer tokens, `traceparent`s and e-mail paths it records at most (each).
pub const RECORDED: usize = 10_000;

/// What the session endpoint does for one call.
#[derive(Debug, Clone)]
pub enum Step {
    /// `{"current_status": …}`.
    Status(&'static str),
    /// The result body ([`MockVx::with_result_body`]) for the asked id, with this top-level
    /// `status`.
    Result(&'static str),
    /// This status code, empty body.
    Code(u16),
    /// 429 with `Retry-After: n`.
    RetryAfter(u64),
    /// Never answers.
    Hang,
    /// Answers `{"current_status": "IN PROGRESS"}` after this many milliseconds.
    Slow(u64),
    /// 200 with a body that is not JSON.
    Garbage,
    /// Waits for a permit ([`MockVx::release`]), then does the inner step.
    Held(Box<Step>),
}

/// The mock's state; clones share it.
#[derive(Clone)]
pub struct MockVx {
    inner: Arc<Inner>,
}

struct Inner {
    token: String,
    oauth: Mutex<Option<(String, String)>>,
    result_body: Mutex<Value>,
    latency_us: AtomicU64,
    told: Mutex<HashMap<String, CurrentStatus>>,
    lookups: Mutex<HashMap<String, usize>>,
    script: Mutex<VecDeque<Step>>,
    default: Mutex<Option<Step>>,
    complete_with: Mutex<Option<&'static str>>,
    expires_in: AtomicU64,
    revoked: Mutex<HashSet<String>>,
    refuse_all: AtomicBool,
    token_calls: AtomicUsize,
    session_calls: AtomicUsize,
    email_calls: AtomicUsize,
    bearers: Mutex<Vec<String>>,
    traceparents: Mutex<Vec<Option<String>>>,
    email_paths: Mutex<Vec<String>>,
    gate: Semaphore,
}

/// A poisoned lock still holds usable counts: a panicking test thread must not hide them.
fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

fn push_bounded<T>(v: &Mutex<Vec<T>>, item: T) {
    let mut v = lock(v);
    if v.len() < RECORDED {
        v.push(item);
    }
}

impl MockVx {
    /// A mock that accepts `Authorization: Bearer {token}` and the tokens it issues.
    pub fn new(token: impl Into<String>) -> Self {
        Self {
            inner: Arc::new(Inner {
                token: token.into(),
                oauth: Mutex::new(None),
                result_body: Mutex::new(json!({})),
                latency_us: AtomicU64::new(0),
                told: Mutex::new(HashMap::new()),
                lookups: Mutex::new(HashMap::new()),
                script: Mutex::new(VecDeque::new()),
                default: Mutex::new(None),
                complete_with: Mutex::new(None),
                expires_in: AtomicU64::new(3600),
                revoked: Mutex::new(HashSet::new()),
                refuse_all: AtomicBool::new(false),
                token_calls: AtomicUsize::new(0),
                session_calls: AtomicUsize::new(0),
                email_calls: AtomicUsize::new(0),
                bearers: Mutex::new(Vec::new()),
                traceparents: Mutex::new(Vec::new()),
                email_paths: Mutex::new(Vec::new()),
                gate: Semaphore::new(0),
            }),
        }
    }

    /// The token endpoint issues tokens only for this client.
    pub fn with_oauth(self, client_id: &str, client_secret: &str) -> Self {
        *lock(&self.inner.oauth) = Some((client_id.to_owned(), client_secret.to_owned()));
        self
    }

    /// The body of [`Step::Result`] and of the e-mail lookup (its `request_id` and `status` are
    /// replaced).
    pub fn with_result_body(self, body: Value) -> Self {
        *lock(&self.inner.result_body) = body;
        self
    }

    /// Every answer of the token and session endpoints waits this long first.
    pub fn with_latency(self, latency: Duration) -> Self {
        let us = u64::try_from(latency.as_micros()).unwrap_or(u64::MAX);
        self.inner.latency_us.store(us, Ordering::SeqCst);
        self
    }

    fn latency(&self) -> Duration {
        Duration::from_micros(self.inner.latency_us.load(Ordering::SeqCst))
    }

    /// From now on, answer `status` for `id`.
    pub fn tell(&self, id: &str, status: CurrentStatus) {
        lock(&self.inner.told).insert(id.to_owned(), status);
    }

    /// The next session calls play these steps, one each, before anything else.
    pub fn script(&self, steps: impl IntoIterator<Item = Step>) {
        lock(&self.inner.script).extend(steps);
    }

    /// What a session call plays when nothing is scripted or told (instead of the cycle).
    pub fn set_default(&self, step: Step) {
        *lock(&self.inner.default) = Some(step);
    }

    /// The cycle's last step answers the result body with this top-level `status` (e.g. `PASS`)
    /// instead of `{"current_status": "COMPLETED"}`; `None`: back to the latter.
    pub fn complete_with(&self, status: Option<&'static str>) {
        *lock(&self.inner.complete_with) = status;
    }

    /// Lookups of `id` that reached the cycle (not those a script, a told status or a default
    /// answered).
    pub fn cycle_calls(&self, id: &str) -> usize {
        lock(&self.inner.lookups).get(id).copied().unwrap_or(0)
    }

    /// The `expires_in` of the tokens issued from now on.
    pub fn set_expires_in(&self, seconds: u64) {
        self.inner.expires_in.store(seconds, Ordering::SeqCst);
    }

    /// Refuses `token` with 401 from now on.
    pub fn revoke(&self, token: &str) {
        lock(&self.inner.revoked).insert(token.to_owned());
    }

    /// Refuses every token with 401 (or accepts them again).
    pub fn refuse_all(&self, refuse: bool) {
        self.inner.refuse_all.store(refuse, Ordering::SeqCst);
    }

    /// Lets `n` held calls ([`Step::Held`]) go on.
    pub fn release(&self, n: usize) {
        self.inner.gate.add_permits(n);
    }

    /// Tokens issued.
    pub fn token_calls(&self) -> usize {
        self.inner.token_calls.load(Ordering::SeqCst)
    }

    /// Calls of the session endpoint.
    pub fn session_calls(&self) -> usize {
        self.inner.session_calls.load(Ordering::SeqCst)
    }

    /// Calls of the e-mail endpoint.
    pub fn email_calls(&self) -> usize {
        self.inner.email_calls.load(Ordering::SeqCst)
    }

    /// Bearer tokens seen by the session and e-mail endpoints, in order (`""`: none).
    pub fn bearers(&self) -> Vec<String> {
        lock(&self.inner.bearers).clone()
    }

    /// `traceparent` headers seen by the session endpoint, in order.
    pub fn traceparents(&self) -> Vec<Option<String>> {
        lock(&self.inner.traceparents).clone()
    }

    /// Raw paths seen by the e-mail endpoint, in order.
    pub fn email_paths(&self) -> Vec<String> {
        lock(&self.inner.email_paths).clone()
    }

    /// The HTTP routes.
    pub fn router(&self) -> Router {
        Router::new()
            .route("/oauth/token", post(token))
            .route("/api/session/result/{id}", get(lookup))
            .route("/api/session/by-email/{email}", get(by_email))
            .route("/mock/sessions/{id}", put(tell))
            .route("/mock/stats", get(stats))
            .with_state(self.clone())
    }

    /// Binds `addr` and serves in the background until `shutdown`; returns the bound address.
    pub async fn start(
        &self,
        addr: SocketAddr,
        shutdown: CancellationToken,
    ) -> std::io::Result<SocketAddr> {
        let listener = TcpListener::bind(addr).await?;
        let local = listener.local_addr()?;
        let app = self.router();
        tokio::spawn(async move {
            let _ = axum::serve(listener, app)
                .with_graceful_shutdown(shutdown.cancelled_owned())
                .await;
        });
        Ok(local)
    }

    /// Records the bearer token of `headers` and says whether it is accepted.
    fn authorized(&self, headers: &HeaderMap) -> bool {
        let bearer = headers
            .get("authorization")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "))
            .unwrap_or("")
            .to_owned();
        push_bounded(&self.inner.bearers, bearer.clone());
        if self.inner.refuse_all.load(Ordering::SeqCst)
            || lock(&self.inner.revoked).contains(&bearer)
        {
            return false;
        }
        bearer == self.inner.token
            || bearer
                .strip_prefix("tok-")
                .and_then(|n| n.parse::<usize>().ok())
                .is_some_and(|n| n >= 1 && n <= self.token_calls())
    }

    /// The step for a lookup of `id` that no fault id decides.
    fn next_step(&self, id: &str) -> Option<Step> {
        if let Some(s) = lock(&self.inner.script).pop_front() {
            return Some(s);
        }
        if let Some(s) = lock(&self.inner.told).get(id).copied() {
            return Some(Step::Status(s.as_str()));
        }
        if let Some(s) = lock(&self.inner.default).clone() {
            return Some(s);
        }
        if id == UNKNOWN_ID {
            return None;
        }
        let n = {
            let mut lookups = lock(&self.inner.lookups);
            let n = lookups.entry(id.to_owned()).or_insert(0);
            *n += 1;
            *n - 1
        };
        let last = n >= CYCLE.len() - 1;
        match *lock(&self.inner.complete_with) {
            Some(status) if last => Some(Step::Result(status)),
            _ => Some(Step::Status(CYCLE[n.min(CYCLE.len() - 1)])),
        }
    }

    fn result_body(&self, status: &str, id: Option<&str>) -> Value {
        let mut v = lock(&self.inner.result_body).clone();
        if let Some(id) = id {
            v["request_id"] = json!(id);
        }
        v["status"] = json!(status);
        v
    }

    async fn play(&self, step: Step, id: Option<&str>) -> Response {
        let mut step = step;
        if let Step::Held(inner) = step {
            if let Ok(permit) = self.inner.gate.acquire().await {
                permit.forget();
            }
            step = *inner;
        }
        match step {
            Step::Status(s) => Json(json!({ "current_status": s })).into_response(),
            Step::Result(status) => Json(self.result_body(status, id)).into_response(),
            Step::Code(c) => StatusCode::from_u16(c)
                .unwrap_or(StatusCode::INTERNAL_SERVER_ERROR)
                .into_response(),
            Step::RetryAfter(n) => (
                StatusCode::TOO_MANY_REQUESTS,
                [("retry-after", n.to_string())],
            )
                .into_response(),
            Step::Hang => std::future::pending().await,
            Step::Slow(ms) => {
                tokio::time::sleep(Duration::from_millis(ms)).await;
                Json(json!({ "current_status": "IN PROGRESS" })).into_response()
            }
            Step::Garbage => (StatusCode::OK, "<html>surprise</html>").into_response(),
            // Unwrapped above; a nested hold plays as the inner step's code path would.
            Step::Held(_) => StatusCode::INTERNAL_SERVER_ERROR.into_response(),
        }
    }
}

/// The fault a request_id asks for (see the module doc): `…-fa17XXXXXNNN` → NNN, only for
/// error statuses.
pub fn fault_of(request_id: &str) -> Option<StatusCode> {
    let last = request_id.rsplit('-').next()?;
    if last.len() != 12 || !last.starts_with("fa17") {
        return None;
    }
    let code = StatusCode::from_bytes(last.get(9..)?.as_bytes()).ok()?;
    (code.is_client_error() || code.is_server_error()).then_some(code)
}

fn unauthorized() -> Response {
    (
        StatusCode::UNAUTHORIZED,
        Json(json!({"error": "access_denied", "error_description": "Unauthorized"})),
    )
        .into_response()
}

async fn token(State(vx): State<MockVx>, body: axum::body::Bytes) -> Response {
    tokio::time::sleep(vx.latency()).await;
    let client = lock(&vx.inner.oauth).clone();
    if let Some((id, secret)) = client {
        let body: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
        let ok = body["client_id"] == id.as_str()
            && body["client_secret"] == secret.as_str()
            && body["audience"] == "dcams.app"
            && body["grant_type"] == "client_credentials";
        if !ok {
            return unauthorized();
        }
    }
    let n = vx.inner.token_calls.fetch_add(1, Ordering::SeqCst) + 1;
    Json(json!({
        "access_token": format!("tok-{n}"),
        "expires_in": vx.inner.expires_in.load(Ordering::SeqCst),
        "token_type": "Bearer"
    }))
    .into_response()
}

async fn lookup(State(vx): State<MockVx>, headers: HeaderMap, Path(id): Path<String>) -> Response {
    vx.inner.session_calls.fetch_add(1, Ordering::SeqCst);
    let tp = headers
        .get("traceparent")
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    push_bounded(&vx.inner.traceparents, tp);
    tokio::time::sleep(vx.latency()).await;
    if !vx.authorized(&headers) {
        return unauthorized();
    }
    if let Some(code) = fault_of(&id) {
        if code == StatusCode::GATEWAY_TIMEOUT {
            // A VX that does not answer: the bridge's own deadline must.
            tokio::time::sleep(Duration::from_secs(60)).await;
        }
        return code.into_response();
    }
    match vx.next_step(&id) {
        Some(step) => vx.play(step, Some(&id)).await,
        None => (StatusCode::NOT_FOUND, Json(json!({"error": "not_found"}))).into_response(),
    }
}

async fn by_email(State(vx): State<MockVx>, uri: Uri, headers: HeaderMap) -> Response {
    vx.inner.email_calls.fetch_add(1, Ordering::SeqCst);
    push_bounded(&vx.inner.email_paths, uri.path().to_owned());
    if !vx.authorized(&headers) {
        return StatusCode::UNAUTHORIZED.into_response();
    }
    vx.play(Step::Result("PASS"), None).await
}

async fn tell(
    State(vx): State<MockVx>,
    Path(id): Path<String>,
    body: axum::body::Bytes,
) -> Response {
    let status = serde_json::from_slice::<Value>(&body)
        .ok()
        .and_then(|v| v["current_status"].as_str().and_then(CurrentStatus::parse));
    match status {
        Some(s) => {
            vx.tell(&id, s);
            StatusCode::NO_CONTENT.into_response()
        }
        None => (
            StatusCode::BAD_REQUEST,
            Json(json!({"error": "expected {\"current_status\": \"INIT\" | \"IN PROGRESS\" | \"COMPLETED\" | \"PENDING\"}"})),
        )
            .into_response(),
    }
}

async fn stats(State(vx): State<MockVx>) -> Json<Value> {
    Json(json!({
        "token_calls": vx.token_calls(),
        "result_calls": vx.session_calls(),
    }))
}

#[cfg(test)]
mod tests {
    use super::fault_of;

    #[test]
    fn the_mock_vx_plays_the_error_a_request_id_asks_for_and_only_errors() {
        let id = |tail: &str| format!("00000000-0000-4000-8000-fa17{tail}");
        assert_eq!(fault_of(&id("00001404")).map(|c| c.as_u16()), Some(404));
        assert_eq!(fault_of(&id("abcde503")).map(|c| c.as_u16()), Some(503));
        assert_eq!(fault_of(&id("00001200")), None);
        assert_eq!(fault_of(&id("00001302")), None);
        assert_eq!(fault_of(&id("0001404")), None);
        assert_eq!(fault_of("4ed2ec66-9471-415d-99ce-7bd1742fc2b8"), None);
    }
}
