//! Liveness, readiness and the stream keeper.
//!
//! `/healthz` answers while the process runs. `/readyz` answers 200 only while NATS is connected
//! and the stream (and, with ingress and `sessions.enabled`, the session bucket and its consumer) is known
//! to be in place. [`StreamState`] holds that knowledge; the keeper task
//! in `app` (re)creates or re-checks the stream at start, whenever a publish finds it missing,
//! and periodically.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use async_nats::connection::State;
use axum::extract::State as AxState;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde_json::json;
use tokio::sync::Notify;

/// Whether the stream is in place, and a way to ask for it to be checked again.
#[derive(Debug, Default)]
pub struct StreamState {
    ready: AtomicBool,
    recheck: Notify,
}

impl StreamState {
    /// The stream was found or created.
    pub fn set_ready(&self, ready: bool) {
        crate::telemetry::set_stream_ready(ready);
        self.ready.store(ready, Ordering::Release);
    }

    /// Whether the stream is in place.
    pub fn is_ready(&self) -> bool {
        self.ready.load(Ordering::Acquire)
    }

    /// A publish found no stream: mark not ready and wake the keeper.
    pub fn lost(&self) {
        self.set_ready(false);
        self.recheck.notify_one();
    }

    /// Waits until someone calls [`StreamState::lost`].
    pub async fn wait_recheck(&self) {
        self.recheck.notified().await;
    }
}

/// What the readiness check looks at.
#[derive(Clone)]
pub struct Readiness {
    /// The NATS client (connection state).
    pub client: async_nats::Client,
    /// The stream; `None` when this process runs no ingress.
    pub stream: Option<Arc<StreamState>>,
    /// The session view; `None` when `sessions.enabled = false` or this process runs no ingress.
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
