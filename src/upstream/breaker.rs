//! A circuit breaker for the VX API: after `threshold` consecutive failed calls it fails fast
//! for `open_for`, then lets exactly one probe through; the probe's outcome closes it again or
//! keeps it open for another `open_for`.
//!
//! A "failure" is the upstream being unhealthy (connection error, timeout, 5xx); an answer that
//! shows it is up (2xx, 404, 401, 429 …) counts as a success. Hand-written (about 100 lines)
//! rather than a crate, to share the injectable [`Clock`] and report state to logs.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::clock::Clock;
use crate::telemetry::{CircuitState, UPSTREAM_CIRCUIT_STATE};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    /// Calls pass; `failures` consecutive failures so far.
    Closed { failures: u32 },
    /// Calls fail fast until `until`.
    Open { until: Instant },
    /// One probe is in flight; other calls fail fast.
    HalfOpen,
}

/// The breaker; cheap to share behind an `Arc`.
#[derive(Debug)]
pub struct CircuitBreaker {
    state: Mutex<State>,
    threshold: u32,
    open_for: Duration,
    clock: Arc<dyn Clock>,
}

/// The circuit is open: the call was not made.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CircuitOpen;

/// Permission for one call; report its outcome with [`Permit::success`] or [`Permit::failure`].
/// A probe dropped without an outcome (the caller gave up) counts as a failure.
#[derive(Debug)]
pub struct Permit<'a> {
    breaker: &'a CircuitBreaker,
    probe: bool,
    done: bool,
}

impl CircuitBreaker {
    /// A closed breaker.
    pub fn new(threshold: u32, open_for: Duration, clock: Arc<dyn Clock>) -> Self {
        Self {
            state: Mutex::new(State::Closed { failures: 0 }),
            threshold: threshold.max(1),
            open_for,
            clock,
        }
    }

    /// `vx_bridge_upstream_circuit_state`: 0 closed, 1 half-open (probing), 2 open.
    fn report(state: &State) {
        let circuit = match state {
            State::Closed { .. } => CircuitState::Closed,
            State::HalfOpen => CircuitState::HalfOpen,
            State::Open { .. } => CircuitState::Open,
        };
        UPSTREAM_CIRCUIT_STATE.one().set(circuit.value());
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Asks to make one call.
    pub fn try_acquire(&self) -> Result<Permit<'_>, CircuitOpen> {
        let mut state = self.lock();
        let probe = match *state {
            State::Closed { .. } => false,
            State::Open { until } if self.clock.now() >= until => {
                *state = State::HalfOpen;
                Self::report(&state);
                tracing::info!("upstream circuit half-open: probing");
                true
            }
            State::Open { .. } | State::HalfOpen => return Err(CircuitOpen),
        };
        Ok(Permit {
            breaker: self,
            probe,
            done: false,
        })
    }

    /// Whether calls are currently refused (open, or half-open with a probe in flight).
    pub fn is_open(&self) -> bool {
        !matches!(*self.lock(), State::Closed { .. })
    }

    fn record(&self, probe: bool, ok: bool) {
        let mut state = self.lock();
        match (*state, ok) {
            (State::Closed { .. }, true) => *state = State::Closed { failures: 0 },
            (State::HalfOpen, true) if probe => {
                tracing::info!("upstream circuit closed: probe succeeded");
                *state = State::Closed { failures: 0 };
            }
            (State::Closed { failures }, false) => {
                let failures = failures + 1;
                if failures >= self.threshold {
                    tracing::warn!(
                        failures,
                        open_for = ?self.open_for,
                        "upstream circuit opened: failing fast"
                    );
                    *state = State::Open {
                        until: self.clock.now() + self.open_for,
                    };
                } else {
                    *state = State::Closed { failures };
                }
            }
            (State::HalfOpen, false) if probe => {
                tracing::warn!(open_for = ?self.open_for, "upstream circuit re-opened: probe failed");
                *state = State::Open {
                    until: self.clock.now() + self.open_for,
                };
            }
            // A call that started before the circuit opened and ended after: its outcome is
            // stale; the probe decides.
            _ => {}
        }
        Self::report(&state);
    }
}

impl Permit<'_> {
    /// The upstream answered.
    pub fn success(mut self) {
        self.done = true;
        self.breaker.record(self.probe, true);
    }

    /// The upstream is unhealthy (connection error, timeout, 5xx).
    pub fn failure(mut self) {
        self.done = true;
        self.breaker.record(self.probe, false);
    }
}

impl Drop for Permit<'_> {
    fn drop(&mut self) {
        if !self.done && self.probe {
            self.breaker.record(true, false);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::clock::ManualClock;

    fn breaker(clock: &ManualClock) -> CircuitBreaker {
        CircuitBreaker::new(3, Duration::from_secs(30), Arc::new(clock.clone()))
    }

    #[test]
    fn opens_after_threshold_consecutive_failures_only() {
        let clock = ManualClock::new();
        let b = breaker(&clock);
        b.try_acquire().unwrap().failure();
        b.try_acquire().unwrap().failure();
        b.try_acquire().unwrap().success(); // resets the count
        b.try_acquire().unwrap().failure();
        b.try_acquire().unwrap().failure();
        assert!(!b.is_open());
        b.try_acquire().unwrap().failure();
        assert!(b.is_open());
        assert_eq!(b.try_acquire().unwrap_err(), CircuitOpen);
    }

    #[test]
    fn lets_one_probe_through_after_open_for_and_closes_on_success() {
        let clock = ManualClock::new();
        let b = breaker(&clock);
        for _ in 0..3 {
            b.try_acquire().unwrap().failure();
        }
        clock.advance(Duration::from_secs(29));
        assert!(b.try_acquire().is_err());
        clock.advance(Duration::from_secs(1));
        let probe = b.try_acquire().unwrap();
        assert!(b.try_acquire().is_err(), "only one probe at a time");
        probe.success();
        assert!(!b.is_open());
        assert!(b.try_acquire().is_ok());
    }

    #[test]
    fn a_failed_or_abandoned_probe_reopens_for_another_period() {
        let clock = ManualClock::new();
        let b = breaker(&clock);
        for _ in 0..3 {
            b.try_acquire().unwrap().failure();
        }
        clock.advance(Duration::from_secs(30));
        b.try_acquire().unwrap().failure();
        assert!(b.try_acquire().is_err());
        clock.advance(Duration::from_secs(30));
        drop(b.try_acquire().unwrap());
        assert!(b.try_acquire().is_err());
        clock.advance(Duration::from_secs(30));
        b.try_acquire().unwrap().success();
        assert!(!b.is_open());
    }

    #[test]
    fn stale_outcomes_do_not_close_an_open_circuit() {
        let clock = ManualClock::new();
        let b = breaker(&clock);
        let slow = b.try_acquire().unwrap();
        for _ in 0..3 {
            b.try_acquire().unwrap().failure();
        }
        slow.success();
        assert!(b.is_open());
    }
}
