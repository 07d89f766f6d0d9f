//! `mock-vx`: a stand-in for the VX API (OAuth token endpoint and session results) with a fixed
//! latency, counting upstream calls; request_ids ending in `-fa17XXXXXNNN` get HTTP error NNN.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use crate::baseline::serve_until;
use crate::{SEED, SEED_ID};

#[derive(clap::Args)]
pub(crate) struct MockVxArgs {
    /// Address to listen on (loopback).
    #[arg(long, default_value = "127.0.0.1:8091")]
    listen: std::net::SocketAddr,
    /// Latency added to every answer.
    #[arg(long, default_value = "20ms", value_parser = humantime::parse_duration)]
    latency: Duration,
    /// Stop after this long.
    #[arg(long, default_value = "120s", value_parser = humantime::parse_duration)]
    duration: Duration,
}

/// Counts of what the mock VX API served.
#[derive(Default)]
struct MockCounts {
    token: AtomicU64,
    result: AtomicU64,
}

pub(crate) async fn run(a: MockVxArgs) -> anyhow::Result<()> {
    use axum::extract::{Path, State};
    use axum::routing::{get, post};
    let counts = Arc::new(MockCounts::default());
    let latency = a.latency;
    let token = {
        let counts = counts.clone();
        move || async move {
            counts.token.fetch_add(1, Ordering::Relaxed);
            tokio::time::sleep(latency).await;
            axum::Json(serde_json::json!({
                "access_token": "mock-token", "token_type": "Bearer", "expires_in": 3600
            }))
        }
    };
    let result = move |State(counts): State<Arc<MockCounts>>, Path(id): Path<String>| async move {
        counts.result.fetch_add(1, Ordering::Relaxed);
        tokio::time::sleep(latency).await;
        if let Some(code) = mock_fault(&id) {
            if code == http::StatusCode::GATEWAY_TIMEOUT {
                // A VX that does not answer: the bridge's own deadline must.
                tokio::time::sleep(Duration::from_secs(60)).await;
            }
            return (
                code,
                [(http::header::CONTENT_TYPE, "application/json")],
                Vec::new(),
            );
        }
        let body = SEED.replace(SEED_ID, &id);
        (
            http::StatusCode::OK,
            [(http::header::CONTENT_TYPE, "application/json")],
            body.into_bytes(),
        )
    };
    let stats = |State(counts): State<Arc<MockCounts>>| async move {
        axum::Json(serde_json::json!({
            "token_calls": counts.token.load(Ordering::Relaxed),
            "result_calls": counts.result.load(Ordering::Relaxed),
        }))
    };
    let router = axum::Router::new()
        .route("/oauth/token", post(token))
        .route("/api/session/result/{id}", get(result))
        .route("/mock/stats", get(stats))
        .with_state(counts);
    serve_until(a.listen, router, a.duration).await
}

/// The fault the mock VX API plays for a session: a request_id whose last group is `fa17`, any
/// 5 hex digits, then an HTTP error status NNN is answered NNN (504 only after 60 s: a VX that
/// hangs), e.g. `00000000-0000-4000-8000-fa1700001404` → 404. Lets scripts provoke each answer
/// of the status service, with as many distinct sessions as they need.
fn mock_fault(request_id: &str) -> Option<http::StatusCode> {
    let last = request_id.rsplit('-').next()?;
    if last.len() != 12 || !last.starts_with("fa17") {
        return None;
    }
    let code = http::StatusCode::from_bytes(last.get(9..)?.as_bytes()).ok()?;
    (code.is_client_error() || code.is_server_error()).then_some(code)
}

#[cfg(test)]
mod tests {
    use super::mock_fault;

    #[test]
    fn the_mock_vx_plays_the_error_a_request_id_asks_for_and_only_errors() {
        let id = |tail: &str| format!("00000000-0000-4000-8000-fa17{tail}");
        assert_eq!(mock_fault(&id("00001404")).map(|c| c.as_u16()), Some(404));
        assert_eq!(mock_fault(&id("abcde503")).map(|c| c.as_u16()), Some(503));
        assert_eq!(mock_fault(&id("00001200")), None);
        assert_eq!(mock_fault(&id("00001302")), None);
        assert_eq!(mock_fault(&id("0001404")), None);
        assert_eq!(mock_fault("4ed2ec66-9471-415d-99ce-7bd1742fc2b8"), None);
    }
}
