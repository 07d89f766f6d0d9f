//! Riding through short NATS outages: one webhook's publish, retried while NATS is away, so that
//! the sender sees a slower 202 rather than a 503.
//!
//! [`OutageWait::publish`] makes the first attempt at once. When it fails in a way waiting can
//! cure ([`PublishError::is_retryable`]: not connected, no PubAck in time, no responders, JetStream
//! 503), it waits 50–500 ms (growing, with jitter: no hot loop, and waiting webhooks do not retry
//! in step) and tries again with the same message, hence the same `Nats-Msg-Id`: a retry that
//! races a late PubAck of an earlier attempt is deduplicated by the stream. It stops at the first
//! PubAck, at the first error waiting cannot cure, when `nats.outage_wait` has passed, or when
//! shutdown begins.
//!
//! The bound: no attempt starts later than `outage_wait` after the first one, and each attempt
//! is a key lookup (a new session's data key: bounded by `nats.publish_timeout` in the
//! ingress's `seal`; none in mode `clear`) then a publish (bounded by `nats.publish_timeout` in
//! [`crate::nats::Publisher::publish`]), so the answer comes at most
//! `outage_wait + 2 × publish_timeout` after the first attempt began.
//!
//! This module must not touch the message (the retries are byte for byte the first attempt),
//! hold anything beyond it (the caller's in-flight permit bounds how many wait), or decide what
//! is retryable (that is [`PublishError::is_retryable`]'s allow-list).

use std::future::Future;
use std::time::Duration;

use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::nats::{PublishError, Stored};
use crate::telemetry::{OutageWaitResult, OUTAGE_WAITS, OUTAGE_WAIT_DURATION};

/// Shortest pause between two attempts.
pub const MIN_PAUSE: Duration = Duration::from_millis(50);
/// Longest pause between two attempts.
pub const MAX_PAUSE: Duration = Duration::from_millis(500);

/// The ride-through policy: how long one publish may wait for NATS to come back.
#[derive(Debug)]
pub struct OutageWait {
    wait: Duration,
}

impl OutageWait {
    /// A policy that waits up to `wait` (`nats.outage_wait`); zero fails fast.
    pub fn new(wait: Duration) -> Self {
        // Every result's series at 0, so a scrape shows them before the first outage.
        OUTAGE_WAITS.show_all();
        OUTAGE_WAIT_DURATION.show_all();
        Self { wait }
    }

    /// `nats.outage_wait`.
    pub fn wait(&self) -> Duration {
        self.wait
    }

    /// Publishes `msg` with `attempt` (one publish, PubAck awaited), and retries it as the module
    /// doc says. `attempt` gets a copy of `msg` each time (none when the wait is zero).
    /// `shutdown` ends a wait, or a retry in flight, at once with [`PublishError::ShuttingDown`];
    /// the first attempt is never cut short (as before, in-flight requests finish).
    pub async fn publish<M, F, Fut>(
        &self,
        msg: M,
        shutdown: &CancellationToken,
        mut attempt: F,
    ) -> Result<Stored, PublishError>
    where
        M: Clone,
        F: FnMut(M) -> Fut,
        Fut: Future<Output = Result<Stored, PublishError>>,
    {
        if self.wait.is_zero() {
            return attempt(msg).await;
        }
        let started = Instant::now();
        let deadline = started + self.wait;
        let err = match attempt(msg.clone()).await {
            Ok(stored) => return Ok(stored),
            Err(e) if !e.is_retryable() => return Err(e),
            Err(e) => e,
        };
        tracing::debug!(
            reason = err.code(),
            "publish failed; riding through the outage"
        );
        let (result, answer) = self.retry(msg, err, deadline, shutdown, &mut attempt).await;
        let took = started.elapsed();
        OUTAGE_WAITS.get(result).increment(1);
        OUTAGE_WAIT_DURATION.get(result).record(took.as_secs_f64());
        match &answer {
            Ok(stored) => tracing::info!(
                waited_ms = took.as_millis() as u64,
                seq = stored.seq,
                "stored after riding through a NATS outage"
            ),
            Err(e) => tracing::warn!(
                waited_ms = took.as_millis() as u64,
                result = result.label(),
                reason = e.code(),
                "gave up riding through a NATS outage"
            ),
        }
        answer
    }

    async fn retry<M, F, Fut>(
        &self,
        msg: M,
        mut err: PublishError,
        deadline: Instant,
        shutdown: &CancellationToken,
        attempt: &mut F,
    ) -> (OutageWaitResult, Result<Stored, PublishError>)
    where
        M: Clone,
        F: FnMut(M) -> Fut,
        Fut: Future<Output = Result<Stored, PublishError>>,
    {
        let mut retries = 0u32;
        loop {
            let now = Instant::now();
            if now >= deadline {
                return (OutageWaitResult::GaveUp, Err(err));
            }
            let pause = pause(retries).min(deadline - now);
            retries = retries.saturating_add(1);
            let outcome = tokio::select! {
                biased;
                _ = shutdown.cancelled() => None,
                r = async {
                    tokio::time::sleep(pause).await;
                    attempt(msg.clone()).await
                } => Some(r),
            };
            match outcome {
                None => return (OutageWaitResult::Shutdown, Err(PublishError::ShuttingDown)),
                Some(Ok(stored)) => return (OutageWaitResult::Stored, Ok(stored)),
                Some(Err(e)) if !e.is_retryable() => return (OutageWaitResult::Failed, Err(e)),
                Some(Err(e)) => err = e,
            }
        }
    }
}

/// The pause before retry `n` (0-based): uniform in 50 ms ..= min(100 ms · 2ⁿ, 500 ms).
pub fn pause(n: u32) -> Duration {
    let cap = 100u64
        .saturating_mul(1 << n.min(8))
        .min(MAX_PAUSE.as_millis() as u64);
    let low = MIN_PAUSE.as_millis() as u64;
    Duration::from_millis(rand::random_range(low..=cap.max(low)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::cell::RefCell;

    fn stored(seq: u64) -> Stored {
        Stored {
            stream: "S".into(),
            seq,
            duplicate: false,
        }
    }

    /// Runs `policy` over a script of attempt results; returns the answer, the instants the
    /// attempts started at (relative to the start) and the messages they were given.
    async fn run(
        wait: Duration,
        script: Vec<Result<Stored, PublishError>>,
        shutdown: &CancellationToken,
        attempt_takes: Duration,
    ) -> (
        Result<Stored, PublishError>,
        Vec<Duration>,
        Vec<&'static str>,
    ) {
        let policy = OutageWait::new(wait);
        let start = Instant::now();
        let script = RefCell::new(script.into_iter());
        let log = RefCell::new((Vec::new(), Vec::new()));
        let answer = policy
            .publish("msg-1", shutdown, |m| {
                log.borrow_mut().0.push(start.elapsed());
                log.borrow_mut().1.push(m);
                let next = script
                    .borrow_mut()
                    .next()
                    .unwrap_or(Err(PublishError::Disconnected));
                async move {
                    tokio::time::sleep(attempt_takes).await;
                    next
                }
            })
            .await;
        let (at, msgs) = log.into_inner();
        (answer, at, msgs)
    }

    #[tokio::test(start_paused = true)]
    async fn retries_the_same_message_until_the_puback() {
        let (answer, at, msgs) = run(
            Duration::from_secs(5),
            vec![
                Err(PublishError::Disconnected),
                Err(PublishError::NoStream),
                Err(PublishError::Timeout(Duration::from_secs(1))),
                Err(PublishError::Unavailable("no leader".into())),
                Ok(stored(7)),
            ],
            &CancellationToken::new(),
            Duration::ZERO,
        )
        .await;
        assert_eq!(answer.unwrap().seq, 7);
        assert_eq!(msgs, ["msg-1"; 5]);
        // Spaced 50–500 ms apart: no hot loop.
        for w in at.windows(2) {
            let gap = w[1] - w[0];
            assert!(gap >= MIN_PAUSE && gap <= MAX_PAUSE, "{gap:?}");
        }
    }

    #[tokio::test(start_paused = true)]
    async fn an_error_waiting_cannot_cure_is_answered_at_once() {
        let (answer, at, _) = run(
            Duration::from_secs(5),
            vec![Err(PublishError::Other("wrong last sequence".into()))],
            &CancellationToken::new(),
            Duration::ZERO,
        )
        .await;
        assert!(matches!(answer, Err(PublishError::Other(_))));
        assert_eq!(at.len(), 1);
        // Also after some retries.
        let (answer, at, _) = run(
            Duration::from_secs(5),
            vec![
                Err(PublishError::Disconnected),
                Err(PublishError::Other("stream full".into())),
                Ok(stored(1)),
            ],
            &CancellationToken::new(),
            Duration::ZERO,
        )
        .await;
        assert!(matches!(answer, Err(PublishError::Other(_))));
        assert_eq!(at.len(), 2);
    }

    #[tokio::test(start_paused = true)]
    async fn gives_up_after_outage_wait_plus_at_most_one_publish_timeout() {
        let wait = Duration::from_secs(5);
        let publish_timeout = Duration::from_secs(2);
        // Every attempt hangs for its whole publish_timeout, then times out.
        let script = (0..100)
            .map(|_| Err(PublishError::Timeout(publish_timeout)))
            .collect();
        let start = Instant::now();
        let (answer, at, _) = run(wait, script, &CancellationToken::new(), publish_timeout).await;
        let took = start.elapsed();
        assert!(matches!(answer, Err(PublishError::Timeout(_))));
        assert!(at.iter().all(|t| *t <= wait), "{at:?}");
        assert!(took <= wait + publish_timeout, "{took:?}");
        assert!(at.len() >= 3, "{at:?}");
        // Fast failures (disconnected): many attempts, none after the deadline, answer at it.
        let start = Instant::now();
        let (answer, at, _) = run(wait, vec![], &CancellationToken::new(), Duration::ZERO).await;
        assert!(matches!(answer, Err(PublishError::Disconnected)));
        assert_eq!(start.elapsed(), wait);
        assert!(at.len() >= 10 && at.len() <= 101, "{}", at.len());
    }

    #[tokio::test(start_paused = true)]
    async fn zero_fails_fast_with_one_attempt() {
        let (answer, at, _) = run(
            Duration::ZERO,
            vec![Err(PublishError::Disconnected), Ok(stored(1))],
            &CancellationToken::new(),
            Duration::ZERO,
        )
        .await;
        assert!(matches!(answer, Err(PublishError::Disconnected)));
        assert_eq!(at.len(), 1);
    }

    #[tokio::test(start_paused = true)]
    async fn shutdown_ends_a_wait_at_once() {
        let shutdown = CancellationToken::new();
        let cancel = shutdown.clone();
        tokio::spawn(async move {
            tokio::time::sleep(Duration::from_millis(1200)).await;
            cancel.cancel();
        });
        let start = Instant::now();
        let (answer, _, _) = run(Duration::from_secs(30), vec![], &shutdown, Duration::ZERO).await;
        assert!(matches!(answer, Err(PublishError::ShuttingDown)));
        assert_eq!(start.elapsed(), Duration::from_millis(1200));
    }

    #[test]
    fn pauses_grow_and_stay_within_50_to_500_ms() {
        for n in 0..40 {
            let p = pause(n);
            assert!(p >= MIN_PAUSE && p <= MAX_PAUSE, "{n}: {p:?}");
            if n == 0 {
                assert!(p <= Duration::from_millis(100));
            }
        }
        // Jitter: not all the same.
        let first: Vec<Duration> = (0..20).map(|_| pause(5)).collect();
        assert!(first.iter().any(|p| *p != first[0]));
    }
}
