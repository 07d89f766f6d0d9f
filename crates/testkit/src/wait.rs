//! Waiting on a condition, never for a fixed time: a busy, shared machine is slow, a fast one
//! should not wait.

use std::time::{Duration, Instant};

/// Polls `check` every 20 ms until it is true, for at most `within`; panics naming `what`.
pub async fn eventually(what: &str, within: Duration, mut check: impl AsyncFnMut() -> bool) {
    let deadline = Instant::now() + within;
    while !check().await {
        assert!(Instant::now() < deadline, "timed out waiting for: {what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}
