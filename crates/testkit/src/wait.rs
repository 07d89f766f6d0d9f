//! Waiting on a condition, never for a fixed time: a busy, shared machine is slow, a fast one
//! should not wait. Every wait is bounded and panics naming what it waited for.
//!
//! - [`eventually`]: until a check is true.
//! - [`eventually_some`]: until a check gives a value (`Some`), which it returns.
//! - [`eventually_ok`]: until a check gives a value (`Ok`), which it returns; on timeout the
//!   panic also shows the last `Err` (what was seen instead).
//! - [`eventually_blocking`]: [`eventually`] for code that is not async.

use std::fmt::Display;
use std::time::{Duration, Instant};

/// How often a check runs.
const EVERY: Duration = Duration::from_millis(20);

/// Polls `check` every 20 ms until it returns `Ok`, for at most `within`; returns its value.
/// Panics naming `what` and the last `Err`.
pub async fn eventually_ok<T, E: Display>(
    what: &str,
    within: Duration,
    mut check: impl AsyncFnMut() -> Result<T, E>,
) -> T {
    let deadline = Instant::now() + within;
    loop {
        match check().await {
            Ok(value) => return value,
            Err(last) => assert!(
                Instant::now() < deadline,
                "timed out after {within:?} waiting for: {what}\nlast seen: {last}"
            ),
        }
        tokio::time::sleep(EVERY).await;
    }
}

/// Polls `check` every 20 ms until it returns `Some`, for at most `within`; returns its value.
/// Panics naming `what`.
pub async fn eventually_some<T>(
    what: &str,
    within: Duration,
    mut check: impl AsyncFnMut() -> Option<T>,
) -> T {
    let deadline = Instant::now() + within;
    loop {
        if let Some(value) = check().await {
            return value;
        }
        assert!(
            Instant::now() < deadline,
            "timed out after {within:?} waiting for: {what}"
        );
        tokio::time::sleep(EVERY).await;
    }
}

/// Polls `check` every 20 ms until it is true, for at most `within`; panics naming `what`.
pub async fn eventually(what: &str, within: Duration, mut check: impl AsyncFnMut() -> bool) {
    eventually_some(what, within, async || check().await.then_some(())).await
}

/// [`eventually`] for code that is not async: checks every 20 ms, blocking the thread between.
pub fn eventually_blocking(what: &str, within: Duration, mut check: impl FnMut() -> bool) {
    let deadline = Instant::now() + within;
    while !check() {
        assert!(
            Instant::now() < deadline,
            "timed out after {within:?} waiting for: {what}"
        );
        std::thread::sleep(EVERY);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn returns_the_first_value_the_check_gives() {
        let mut n = 0;
        let got = eventually_some("n reaches 3", Duration::from_secs(5), async || {
            n += 1;
            (n >= 3).then_some(n)
        })
        .await;
        assert_eq!(got, 3);
        let got = eventually_ok("n reaches 5", Duration::from_secs(5), async || {
            n += 1;
            if n >= 5 {
                Ok(n)
            } else {
                Err(format!("n is {n}"))
            }
        })
        .await;
        assert_eq!(got, 5);
        eventually("n reaches 6", Duration::from_secs(5), async || {
            n += 1;
            n >= 6
        })
        .await;
        eventually_blocking("n reaches 7", Duration::from_secs(5), || {
            n += 1;
            n >= 7
        });
    }

    #[tokio::test]
    #[should_panic(expected = "timed out after 50ms waiting for: never\nlast seen: n is")]
    async fn a_timeout_names_what_was_awaited_and_the_last_answer() {
        let mut n = 0;
        eventually_ok::<(), _>("never", Duration::from_millis(50), async || {
            n += 1;
            Err(format!("n is {n}"))
        })
        .await;
    }

    #[tokio::test]
    #[should_panic(expected = "timed out after 50ms waiting for: never")]
    async fn a_timeout_names_what_was_awaited() {
        eventually("never", Duration::from_millis(50), async || false).await;
    }

    #[test]
    #[should_panic(expected = "timed out after 50ms waiting for: never")]
    fn a_blocking_timeout_names_what_was_awaited() {
        eventually_blocking("never", Duration::from_millis(50), || false);
    }
}
