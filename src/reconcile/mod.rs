//! The reconciler: polls the VX API for watched, non-terminal sessions on `reconcile.schedule`
//! and publishes the event a webhook would have produced when VX shows the journey complete
//! (`vx-source: poll`), until the session is terminal or `reconcile.give_up_after` passes
//! (`{prefix}.expired`).
//!
//! - [`schedule`]: pure; the work message and when it is due.
//! - [`queue`]: the work-queue stream and its durable consumer; [`queue::Registrar`] (the watch
//!   endpoint's and the projector's registration).
//! - [`check`]: one check of one session.
//!
//! Every watched session is one message on `{prefix}.reconcile.<request_id>` in a work-queue
//! stream holding one message per subject; every replica pulls from one shared durable consumer,
//! so each message is with one replica at a time (no leader election), and a check that runs
//! twice (a redelivery) is harmless: the view or VX's answer decides the same, an event is stored
//! once by its `Nats-Msg-Id`, and the step advances only through a publish conditional on the
//! message's own sequence. To advance, the next work message is published on the same subject
//! (replacing this one), then this one is acked; the watch ends with an ack and no successor.
//!
//! **What a poll publishes is what a webhook with the same body would.** A result body with
//! PASS or FAIL ends the watch; one with any other status it publishes as a webhook would
//! (`vx-source: poll`, `Nats-Msg-Id` `poll:{request_id}:{status}`) and the watch goes on, on
//! the schedule: an unknown status becomes `{prefix}.unrecognized` (repeats stored once within
//! the duplicate window), and PENDING or "" (a running journey) becomes `{prefix}.pending`, only
//! when VX's state (PENDING, INIT) differs from the last check's, so a journey that stays in
//! review is not re-announced each check once the window has passed. A `{"current_status"}`
//! answer carries no body, so it publishes nothing (it only updates the view).
//!
//! **Why NAK with a delay schedules the checks.** A message delivered before its `due_at` is
//! NAKed with the time left, and a check that found VX unavailable is NAKed with VX's
//! `Retry-After` (a 429's, bounded to 1 s ..= 1 h: [`check::MIN_RETRY_AFTER`],
//! [`check::MAX_RETRY_AFTER`]) or else `reconcile.unavailable_delay`, its step kept. NAK-with-delay works on every
//! supported server (2.9.10 on), so there is one code path. Scheduled messages (ADR-51,
//! `Nats-Schedule` headers, NATS 2.12+) would let the server hold a future message itself:
//! nothing would be delivered before it is due, so no message would sit ack-pending while it
//! waits and a consumer would need no unbounded `max_ack_pending`; but they need 2.12 on every
//! server and a second code path, and they change nothing a user sees, so they are not used.
//!
//! Touches: the work-queue stream, the session view (reads; VX answers as `source: lookup`),
//! the VX API (through [`UpstreamClient`]) and the event stream (publishes only). Must not touch
//! the ingress, nor be imported by anything below it (`scripts/code/check-layers.py`, rule 5).

pub mod check;
pub mod queue;
pub mod schedule;

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use async_nats::jetstream::{self, AckKind};
use futures::stream::FuturesUnordered;
use futures::StreamExt as _;
use time::OffsetDateTime;
use tokio_util::sync::CancellationToken;

use crate::config::Config;
use crate::nats::JetStreamFailure;
use crate::nats::{Publisher, Subjects};
use crate::sessions::{ViewRead, ViewReader};
use crate::telemetry::{ReconcileCheck, RECONCILE_CHECKS, RECONCILE_PUBLISHED};
use crate::upstream::UpstreamClient;
use check::{Checker, Verdict};
use queue::{publish_work, QueueError, Registrar};
use schedule::{Due, Schedule, Work};

/// The longest one check may take (VX's `upstream.timeout` under 10 s, the view's reads and
/// writes, the event's publish): with the next step's publish, under [`queue::ACK_WAIT`]
/// counted from the check's in-progress ack, so no second replica gets the message while a
/// check still runs.
pub const CHECK_DEADLINE: Duration = Duration::from_secs(25);

/// How long a check that failed on NATS waits before its message comes again.
const FAILED_DELAY: Duration = Duration::from_secs(2);

/// How often the watched count is sampled.
const SAMPLE_EVERY: Duration = Duration::from_secs(2);

/// The projector's hook: registers every non-terminal webhook or replayed event's session,
/// watched since the event was stored. An event older than `reconcile.give_up_after` (a new
/// projector consumer reading an old stream, an old body replayed) registers nothing: its session
/// would only be given up at once.
impl crate::sessions::PendingHook for Registrar {
    fn pending<'a>(
        &'a self,
        request_id: &'a str,
        stored_at: OffsetDateTime,
    ) -> futures::future::BoxFuture<'a, Result<(), async_nats::Error>> {
        Box::pin(async move {
            if self.give_up_at(stored_at) <= OffsetDateTime::now_utc() {
                return Ok(());
            }
            self.register_since(request_id, stored_at)
                .await
                .map(|_| ())
                .map_err(Into::into)
        })
    }
}

/// Starts the reconciler: keeps the work queue in place and runs checks until `shutdown`.
pub fn start(
    client: async_nats::Client,
    config: &Config,
    upstream: Arc<UpstreamClient>,
    sealer: crate::pii::Sealer,
    shutdown: CancellationToken,
) -> tokio::task::JoinHandle<()> {
    // Every series at 0, so a scrape shows them before the first check.
    crate::telemetry::RECONCILE_WATCHED.one().set(0.0);
    crate::telemetry::RECONCILE_OLDEST_WATCH_AGE.one().set(0.0);
    RECONCILE_CHECKS.show_all();
    RECONCILE_PUBLISHED.show_all();
    let config = config.clone();
    tokio::spawn(async move {
        let ctx = Context::new(client, &config, upstream, sealer);
        let mut wait = Duration::from_millis(50);
        loop {
            match run_once(&ctx, &config, &shutdown).await {
                Ok(()) if shutdown.is_cancelled() => return,
                Ok(()) => wait = Duration::from_millis(50),
                Err(e) => {
                    if wait >= Duration::from_secs(1) {
                        tracing::error!(stream = %config.reconcile.stream, error = %crate::telemetry::error_chain(&e), "reconciler not running; retrying");
                    } else {
                        tracing::debug!(stream = %config.reconcile.stream, error = %crate::telemetry::error_chain(&e), "reconciler not running yet; retrying");
                    }
                }
            }
            tokio::select! {
                _ = shutdown.cancelled() => return,
                _ = tokio::time::sleep(wait) => {}
            }
            wait = (wait * 2).min(Duration::from_secs(2));
        }
    })
}

/// What every check shares.
struct Context {
    js: jetstream::Context,
    upstream: Arc<UpstreamClient>,
    view: ViewReader,
    publisher: Publisher,
    subjects: Subjects,
    schedule: Schedule,
    unavailable_delay: Duration,
    oldest: OldestWatch,
    sealer: crate::pii::Sealer,
}

impl Context {
    fn new(
        client: async_nats::Client,
        config: &Config,
        upstream: Arc<UpstreamClient>,
        sealer: crate::pii::Sealer,
    ) -> Self {
        let schedule = Schedule::from_config(&config.reconcile);
        Self {
            js: jetstream::ContextBuilder::new()
                .timeout(config.nats.publish_timeout)
                .build(client.clone()),
            upstream,
            view: ViewReader::new(
                client.clone(),
                &config.sessions.bucket,
                &config.nats.stream.name,
                crate::sessions::TerminalStates::new(
                    config.status.terminal_cache_ttl,
                    config.status.cache_max_entries,
                ),
            ),
            publisher: Publisher::new(
                client,
                config.nats.publish_timeout,
                &config.nats.stream.name,
            ),
            subjects: Subjects::new(&config.nats.subject_prefix),
            oldest: OldestWatch::new(schedule.round() + queue::ACK_WAIT),
            schedule,
            unavailable_delay: config.reconcile.unavailable_delay,
            sealer,
        }
    }

    fn checker(&self) -> Checker<'_> {
        Checker {
            upstream: &self.upstream,
            view: &self.view,
            publisher: &self.publisher,
            subjects: &self.subjects,
            unavailable_delay: self.unavailable_delay,
            sealer: &self.sealer,
        }
    }
}

/// Sets up, then consumes until the message stream fails or `shutdown`.
async fn run_once(
    ctx: &Context,
    config: &Config,
    shutdown: &CancellationToken,
) -> Result<(), QueueError> {
    let (stream, consumer) = queue::ensure(&ctx.js, config).await?;
    let concurrency = config.reconcile.concurrency;
    let mut messages = consumer
        .stream()
        .max_messages_per_batch(concurrency)
        .heartbeat(Duration::from_secs(5))
        .messages()
        .await
        .map_err(JetStreamFailure::during("reading the consumer's messages"))?;
    tracing::info!(stream = %config.reconcile.stream, consumer = queue::CONSUMER, concurrency, "reconciler running");
    let mut sample = tokio::time::interval(SAMPLE_EVERY);
    let mut in_flight = FuturesUnordered::new();
    let result = loop {
        tokio::select! {
            _ = shutdown.cancelled() => break Ok(()),
            Some(()) = in_flight.next(), if !in_flight.is_empty() => {}
            _ = sample.tick() => {
                if let Ok(info) = stream.get_info().await {
                    crate::telemetry::RECONCILE_WATCHED.one().set(info.state.messages as f64);
                    if info.state.messages == 0 {
                        // Nothing is watched: the registrations seen belong to ended watches.
                        ctx.oldest.clear();
                    }
                }
                crate::telemetry::RECONCILE_OLDEST_WATCH_AGE.one().set((ctx.oldest.age(OffsetDateTime::now_utc())).as_secs_f64());
            }
            next = messages.next(), if in_flight.len() < concurrency => match next {
                Some(Ok(msg)) => in_flight.push(handle(ctx, msg)),
                Some(Err(e)) => break Err(JetStreamFailure::during("reading the consumer's messages")(e).into()),
                None => break Err(QueueError::Ended),
            },
        }
    };
    // Let the checks in hand finish (each acked, or left for redelivery), bounded.
    let _ = tokio::time::timeout(CHECK_DEADLINE, async {
        while in_flight.next().await.is_some() {}
    })
    .await;
    result
}

/// One delivery of one work message.
async fn handle(ctx: &Context, msg: jetstream::Message) {
    let seq = match msg.info() {
        Ok(info) => info.stream_sequence,
        Err(e) => {
            tracing::warn!(error = %e, "reconcile: a message without JetStream metadata; dropped");
            let _ = msg.ack().await;
            return;
        }
    };
    let Ok(work) = Work::from_json(&msg.payload) else {
        tracing::warn!(
            stream_seq = seq,
            "reconcile: a work message that is not ours; dropped"
        );
        RECONCILE_CHECKS.get(ReconcileCheck::Failed).increment(1);
        let _ = msg.ack_with(AckKind::Term).await;
        return;
    };
    let now = OffsetDateTime::now_utc();
    ctx.oldest.see(work.registered_at);
    let checker = ctx.checker();
    let verdict = match ctx.schedule.decide(&work, now) {
        Due::Wait(delay) => {
            let _ = msg.ack_with(AckKind::Nak(Some(delay))).await;
            return;
        }
        // A session the view shows terminal (its webhook came after the last check) is done,
        // not given up: no `{prefix}.expired` for a session that completed.
        Due::GiveUp if terminal_in_view(&ctx.view, &work.request_id).await => {
            Verdict::Done(ReconcileCheck::TerminalInView)
        }
        Due::GiveUp => match checker.publish_expired(&work, now).await {
            Ok(()) => {
                tracing::info!(request_id = %work.request_id, checks = work.step, "reconcile: session given up (reconcile.give_up_after)");
                Verdict::Done(ReconcileCheck::Expired)
            }
            Err(e) => {
                tracing::warn!(request_id = %work.request_id, error = %crate::telemetry::error_chain(&e), "reconcile: publishing the expiry failed; tried again");
                Verdict::Retry(ReconcileCheck::Failed, FAILED_DELAY)
            }
        },
        Due::Check => {
            // The ack wait counts from here, not from the delivery: the message may have
            // waited in the pull batch behind slower checks.
            let _ = msg.ack_with(AckKind::Progress).await;
            tokio::time::timeout(CHECK_DEADLINE, checker.check(&work))
                .await
                .unwrap_or(Verdict::Retry(ReconcileCheck::Failed, FAILED_DELAY))
        }
    };
    let outcome = match verdict {
        Verdict::Done(outcome) => {
            let _ = msg.ack().await;
            outcome
        }
        Verdict::Retry(outcome, delay) => {
            let _ = msg.ack_with(AckKind::Nak(Some(delay))).await;
            outcome
        }
        Verdict::Next(outcome, state) => {
            let next = ctx.schedule.next(&work, OffsetDateTime::now_utc(), state);
            match publish_work(&ctx.js, msg.subject.as_str(), &next, seq).await {
                Ok(()) => {
                    let _ = msg.ack().await;
                    outcome
                }
                Err(QueueError::Superseded) => {
                    let _ = msg.ack().await;
                    ReconcileCheck::Superseded
                }
                Err(e) => {
                    tracing::warn!(request_id = %work.request_id, error = %crate::telemetry::error_chain(&e), "reconcile: scheduling the next check failed; this one comes again");
                    let _ = msg.ack_with(AckKind::Nak(Some(FAILED_DELAY))).await;
                    ReconcileCheck::Failed
                }
            }
        }
    };
    RECONCILE_CHECKS.get(outcome).increment(1);
}

/// Whether the view holds `request_id` as terminal (unreadable: no, so the give-up goes on).
async fn terminal_in_view(view: &ViewReader, request_id: &str) -> bool {
    matches!(view.read(request_id).await, ViewRead::Found(s) if s.terminal)
}

/// The oldest registration this replica saw delivered, over the current and the previous
/// round (a round: the longest schedule delay plus the ack wait, within which every watched
/// message is delivered at least once).
struct OldestWatch {
    round: Duration,
    seen: Mutex<Rounds>,
}

struct Rounds {
    started: Instant,
    current: Option<OffsetDateTime>,
    previous: Option<OffsetDateTime>,
}

impl OldestWatch {
    fn new(round: Duration) -> Self {
        Self {
            round,
            seen: Mutex::new(Rounds {
                started: Instant::now(),
                current: None,
                previous: None,
            }),
        }
    }

    fn rounds(&self) -> std::sync::MutexGuard<'_, Rounds> {
        let mut r = self.seen.lock().unwrap_or_else(|e| e.into_inner());
        if r.started.elapsed() >= self.round {
            r.previous = r.current.take();
            r.started = Instant::now();
        }
        r
    }

    fn see(&self, registered_at: OffsetDateTime) {
        let mut r = self.rounds();
        r.current = Some(r.current.map_or(registered_at, |c| c.min(registered_at)));
    }

    /// Forgets what was seen (no session is watched any more).
    fn clear(&self) {
        let mut r = self.rounds();
        r.current = None;
        r.previous = None;
    }

    fn age(&self, now: OffsetDateTime) -> Duration {
        let r = self.rounds();
        let oldest = match (r.current, r.previous) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        };
        oldest
            .and_then(|t| (now - t).try_into().ok())
            .unwrap_or(Duration::ZERO)
    }
}
