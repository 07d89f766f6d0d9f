//! Every answer of the webhook endpoint other than 202, as one type: a [`Refusal`] knows its
//! problem (the RFC 9457 body), its outcome (the `vx_bridge_webhooks_total` label) and its log
//! line, and [`Refusal::answer`] is the one place that logs and answers it. A new refusal is
//! one arm here.
//!
//! It must not publish or read anything: deciding what to keep is the handler's job
//! ([`super::process`]); this module only says how a decided refusal is told.

use std::time::Duration;

use axum::response::{IntoResponse, Response};

use crate::auth::AuthError;
use crate::event::RejectReason;
use crate::nats::PublishError;
use crate::problem::{Problem, ProblemKind};
use crate::schema::Violation;
use crate::telemetry::WebhookOutcome;

/// Why a webhook was not stored as an event (or was stored as a rejected copy only).
#[derive(Debug)]
pub enum Refusal {
    /// 429: `http.max_in_flight` webhooks are being handled.
    InFlightLimit,
    /// 429: `http.max_unauthenticated_bytes` of unauthenticated bodies are being read.
    UnauthenticatedBytes,
    /// 413: the body (declared or read) is over the body limit.
    BodyTooLarge {
        /// The limit that applied ([`super::Ingress::body_limit`]).
        limit: usize,
        /// `http.max_body_bytes`.
        max_body_bytes: usize,
        /// The connected server's `max_payload`.
        max_payload: usize,
    },
    /// 415: not a JSON content type.
    NotJson,
    /// 408: the body did not arrive within `http.body_timeout`.
    BodyTimeout(Duration),
    /// 400: the connection failed mid-body.
    UnreadableBody,
    /// 401: authentication failed.
    Unauthorized {
        /// Why.
        error: AuthError,
        /// The configured scheme's name.
        scheme: &'static str,
    },
    /// 400/422/413: authenticated, not an event, and kept on `{prefix}.rejected` at `seq`.
    Rejected {
        /// Why it is not an event.
        reason: RejectReason,
        /// Where it failed (JSON pointers; at most a few, for the log).
        instance_paths: Vec<String>,
        /// Stream sequence of the kept copy.
        seq: u64,
        /// The answer the sender gets.
        problem: Problem,
    },
    /// 413: authenticated, not an event, and too large even to keep (the server's
    /// `max_payload` is below the rejected headers' bound).
    TooLargeToKeep {
        /// Bytes with headers.
        size: usize,
        /// The server's `max_payload`.
        max: usize,
    },
    /// 503: not stored (nor kept), after riding through what could be ridden through.
    NotStored {
        /// Why.
        error: PublishError,
        /// The body's request_id, when it was read.
        request_id: Option<String>,
        /// Whether it was the rejected copy that could not be kept.
        rejected_copy: bool,
    },
}

impl Refusal {
    /// How it is counted.
    pub fn outcome(&self) -> WebhookOutcome {
        match self {
            Refusal::InFlightLimit | Refusal::UnauthenticatedBytes => WebhookOutcome::Throttled,
            Refusal::BodyTooLarge { .. }
            | Refusal::NotJson
            | Refusal::BodyTimeout(_)
            | Refusal::UnreadableBody => WebhookOutcome::Invalid,
            Refusal::Unauthorized { .. } => WebhookOutcome::Unauthorized,
            Refusal::Rejected { .. } | Refusal::TooLargeToKeep { .. } => WebhookOutcome::Rejected,
            Refusal::NotStored { .. } => WebhookOutcome::Unavailable,
        }
    }

    /// The answer's body; `retry_after_secs` goes on the retryable ones (429, 503).
    fn problem(self, retry_after_secs: u32) -> Problem {
        match self {
            Refusal::InFlightLimit => Problem::new(
                ProblemKind::TooManyRequests,
                "the bridge is at its in-flight limit; retry later",
            )
            .with_retry_after(retry_after_secs),
            Refusal::UnauthenticatedBytes => Problem::new(
                ProblemKind::TooManyRequests,
                "the bridge holds as many unauthenticated request bodies as it may (http.max_unauthenticated_bytes); retry later",
            )
            .with_retry_after(retry_after_secs),
            Refusal::BodyTooLarge {
                limit,
                max_body_bytes,
                max_payload,
            } => {
                let detail = if limit < max_body_bytes {
                    format!(
                        "the body exceeds {limit} bytes (http.max_body_bytes is {max_body_bytes}, lowered to fit the NATS server's max_payload of {max_payload} bytes with the headers of a kept copy)"
                    )
                } else {
                    format!("the body exceeds {limit} bytes (http.max_body_bytes)")
                };
                Problem::new(ProblemKind::BodyTooLarge, detail)
            }
            Refusal::NotJson => Problem::new(
                ProblemKind::UnsupportedMediaType,
                "send the body as application/json",
            ),
            Refusal::BodyTimeout(within) => Problem::new(
                ProblemKind::BodyTimeout,
                format!("the body was not received within {within:?}"),
            ),
            Refusal::UnreadableBody => Problem::new(
                ProblemKind::UnreadableBody,
                "the request body could not be read",
            ),
            Refusal::Unauthorized { error, .. } => {
                Problem::new(ProblemKind::Unauthorized, error.to_string())
            }
            Refusal::Rejected { problem, .. } => problem,
            Refusal::TooLargeToKeep { size, max } => Problem::new(
                ProblemKind::BodyTooLarge,
                format!("the body cannot be stored or kept: {size} bytes with headers, over the NATS server's max_payload of {max} bytes"),
            ),
            Refusal::NotStored { error, .. } => Problem::new(
                ProblemKind::NotStored,
                format!("the event could not be stored ({}); retry later", error.code()),
            )
            .with_retry_after(retry_after_secs),
        }
    }

    /// Its log line: one per refusal, with the outcome label, never the body.
    fn log(&self) {
        let outcome = self.outcome().label();
        match self {
            Refusal::InFlightLimit => {
                tracing::warn!(outcome, "webhook refused: in-flight limit reached")
            }
            Refusal::UnauthenticatedBytes => tracing::warn!(
                outcome,
                reason = "unauthenticated_bytes",
                "webhook refused: too many unauthenticated body bytes in flight"
            ),
            Refusal::BodyTooLarge { limit, .. } => tracing::info!(
                outcome,
                reason = "too_large",
                limit,
                "webhook refused: body too large"
            ),
            Refusal::NotJson => tracing::info!(
                outcome,
                reason = "unsupported_media_type",
                "webhook refused: content type is not JSON"
            ),
            Refusal::BodyTimeout(_) => tracing::info!(
                outcome,
                reason = "body_timeout",
                "webhook refused: body not received in time"
            ),
            Refusal::UnreadableBody => tracing::info!(
                outcome,
                reason = "unreadable_body",
                "webhook refused: the body could not be read"
            ),
            Refusal::Unauthorized { error, scheme } => tracing::warn!(
                outcome,
                reason = error.code(),
                error = %error,
                scheme,
                "webhook refused: authentication failed"
            ),
            Refusal::Rejected {
                reason,
                instance_paths,
                seq,
                ..
            } => tracing::warn!(
                outcome,
                reason = reason.code(),
                instance_paths = ?instance_paths,
                seq,
                "webhook rejected and kept for audit"
            ),
            Refusal::TooLargeToKeep { size, max } => tracing::error!(
                outcome,
                reason = "too_large",
                size,
                max,
                "webhook refused and too large to keep on rejected"
            ),
            Refusal::NotStored {
                error,
                request_id,
                rejected_copy,
            } => {
                let message = if *rejected_copy {
                    "rejected webhook could not be kept"
                } else {
                    "webhook not stored"
                };
                tracing::error!(
                    outcome,
                    request_id = request_id.as_deref(),
                    reason = error.code(),
                    error = %crate::telemetry::error_chain(error),
                    "{message}"
                )
            }
        }
    }

    /// Logs it once and answers it.
    pub fn answer(self, retry_after_secs: u32) -> (WebhookOutcome, Response) {
        self.log();
        let outcome = self.outcome();
        (outcome, self.problem(retry_after_secs).into_response())
    }
}

/// Why an authenticated body is not stored as an event, and the answer the sender gets once
/// it is kept on `{prefix}.rejected`.
#[derive(Debug)]
pub struct Rejection {
    /// Why.
    pub reason: RejectReason,
    /// Written into the kept copy's headers (`vx-reject-errors`).
    pub errors: Vec<Violation>,
    /// The answer, once kept.
    pub problem: Problem,
}

impl Rejection {
    /// 400: not JSON.
    pub fn invalid_json(e: &dyn std::fmt::Display) -> Self {
        Self {
            reason: RejectReason::InvalidJson,
            errors: vec![Violation {
                instance_path: String::new(),
                message: e.to_string(),
            }],
            problem: Problem::new(
                ProblemKind::InvalidJson,
                format!("the body is not valid JSON: {e}"),
            ),
        }
    }

    /// 422: JSON that fails the schema.
    pub fn schema(errors: Vec<Violation>) -> Self {
        let problem = Problem::new(
            ProblemKind::SchemaViolation,
            format!(
                "{} schema violation(s); the body was kept for audit",
                errors.len()
            ),
        )
        .with_errors(errors.clone());
        Self {
            reason: RejectReason::SchemaViolation,
            errors,
            problem,
        }
    }

    /// 413: a valid body whose event is over the server's `max_payload`.
    pub fn event_too_large(size: usize, max: usize, rejected_subject: &str) -> Self {
        Self {
            reason: RejectReason::EventTooLarge,
            errors: vec![Violation {
                instance_path: String::new(),
                message: format!("the event is {size} bytes; the NATS server takes at most {max}"),
            }],
            problem: Problem::new(
                ProblemKind::EventTooLarge,
                format!(
                    "the event built from this body is {size} bytes with its headers, over the NATS server's max_payload of {max} bytes; it cannot be stored as an event, so do not retry. The body was kept on {rejected_subject} for audit"
                ),
            ),
        }
    }

    /// The refusal once kept at `seq`.
    pub fn kept(self, seq: u64) -> Refusal {
        let instance_paths = self
            .errors
            .iter()
            .map(|e| e.instance_path.clone())
            .take(8)
            .collect();
        Refusal::Rejected {
            reason: self.reason,
            instance_paths,
            seq,
            problem: self.problem,
        }
    }
}
