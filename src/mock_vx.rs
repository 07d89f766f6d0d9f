//! A stand-in for the VX API's session lookup, for the demo and for local runs
//! (`vx-bridge mock-vx`): lets a newcomer see `vx-bridge status` succeed without VX credentials.
//!
//! It answers `GET /api/session/result/{id}` (bearer token required, else 401) with
//! `{"current_status": …}`:
//! - a status it was told, by [`MockVx::tell`] (the demo) or by
//!   `PUT /mock/sessions/{id}` with `{"current_status": "PENDING"}` (any of `INIT`,
//!   `IN PROGRESS`, `COMPLETED`, `PENDING`; no token needed);
//! - otherwise the next step of a cycle per id: `INIT` on the first lookup, `IN PROGRESS` on the
//!   second, `COMPLETED` from the third on (the bridge caches replies, `status.cache_ttl`, so a
//!   quick repeat may be answered from its cache);
//! - 404 `{"error": "not_found"}` for the nil UUID `00000000-0000-0000-0000-000000000000`.
//!
//! It holds nothing but those statuses in memory, serves no OAuth token endpoint (use a static
//! `upstream.token`), touches no NATS, and is not for production.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, put};
use axum::{Json, Router};
use serde_json::{json, Value};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use crate::upstream::reply::CurrentStatus;

/// The statuses an unknown id goes through, one per lookup; the last one stays.
pub const CYCLE: [&str; 3] = ["INIT", "IN PROGRESS", "COMPLETED"];

/// The id the mock does not know (404).
pub const UNKNOWN_ID: &str = "00000000-0000-0000-0000-000000000000";

/// The mock's state: the accepted token, told statuses and lookups per id.
#[derive(Clone)]
pub struct MockVx {
    inner: Arc<Inner>,
}

struct Inner {
    token: String,
    told: Mutex<HashMap<String, CurrentStatus>>,
    lookups: Mutex<HashMap<String, usize>>,
}

impl MockVx {
    /// A mock that accepts `Authorization: Bearer {token}`.
    pub fn new(token: impl Into<String>) -> Self {
        Self {
            inner: Arc::new(Inner {
                token: token.into(),
                told: Mutex::new(HashMap::new()),
                lookups: Mutex::new(HashMap::new()),
            }),
        }
    }

    /// From now on, answer `status` for `id`.
    pub fn tell(&self, id: &str, status: CurrentStatus) {
        if let Ok(mut told) = self.inner.told.lock() {
            told.insert(id.to_owned(), status);
        }
    }

    /// The HTTP routes.
    pub fn router(&self) -> Router {
        Router::new()
            .route("/api/session/result/{id}", get(lookup))
            .route("/mock/sessions/{id}", put(tell))
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

    fn answer(&self, id: &str) -> Option<&'static str> {
        if id == UNKNOWN_ID {
            return None;
        }
        if let Some(s) = self.inner.told.lock().ok().and_then(|t| t.get(id).copied()) {
            return Some(s.as_str());
        }
        let n = self.inner.lookups.lock().map_or(0, |mut l| {
            let n = l.entry(id.to_owned()).or_insert(0);
            *n += 1;
            *n - 1
        });
        Some(CYCLE[n.min(CYCLE.len() - 1)])
    }
}

async fn lookup(State(vx): State<MockVx>, headers: HeaderMap, Path(id): Path<String>) -> Response {
    let authorized = headers
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v == format!("Bearer {}", vx.inner.token));
    if !authorized {
        return (
            StatusCode::UNAUTHORIZED,
            Json(json!({"error": "access_denied", "error_description": "Unauthorized"})),
        )
            .into_response();
    }
    match vx.answer(&id) {
        Some(s) => (StatusCode::OK, Json(json!({"current_status": s}))).into_response(),
        None => (StatusCode::NOT_FOUND, Json(json!({"error": "not_found"}))).into_response(),
    }
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
