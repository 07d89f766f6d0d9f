//! Liveness and readiness probes.
//!
//! `/healthz` answers while the process runs. `/readyz` answers 200 only while NATS is connected
//! and the stream (and, with ingress and `sessions.enabled`, the session bucket and its consumer) is known
//! to be in place. It only reads that knowledge: [`StreamState`] and its keeper, which (re)creates
//! or re-checks the stream at start, whenever a publish finds it missing, and periodically, are in
//! [`crate::nats::stream`]; the session view's is [`crate::sessions::ViewState`]. This module must
//! not change either.

use std::sync::Arc;

use async_nats::connection::State;
use axum::extract::State as AxState;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde_json::json;

use crate::nats::stream::StreamState;

/// What the readiness check looks at.
#[derive(Clone)]
pub struct Readiness {
    /// The NATS client (connection state).
    pub client: async_nats::Client,
    /// The stream; `None` when this process runs no ingress.
    pub stream: Option<Arc<StreamState>>,
    /// The session view; `None` when `sessions.enabled = false`, or in a status-only process.
    pub sessions: Option<Arc<crate::sessions::ViewState>>,
}

/// `GET /healthz`
pub async fn healthz() -> &'static str {
    "ok"
}

/// `GET /readyz`
pub async fn readyz(AxState(r): AxState<Readiness>) -> Response {
    let connected = r.client.connection_state() == State::Connected;
    let stream = r.stream.as_ref().is_none_or(|s| s.is_ready());
    let sessions = r.sessions.as_ref().is_none_or(|s| s.is_ready());
    let body =
        json!({"nats_connected": connected, "stream_ready": stream, "sessions_ready": sessions});
    if connected && stream && sessions {
        (StatusCode::OK, Json(body)).into_response()
    } else {
        (StatusCode::SERVICE_UNAVAILABLE, Json(body)).into_response()
    }
}
