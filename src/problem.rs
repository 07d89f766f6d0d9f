//! HTTP error answers as `application/problem+json` (RFC 9457), one stable `type` per failure.
//!
//! A problem says what the sender needs (what was wrong, whether to retry) and nothing more:
//! internal details go to the log, never into the answer.

use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use serde::Serialize;

use crate::schema::Violation;

/// Content type of every error body.
pub const PROBLEM_JSON: &str = "application/problem+json";

/// Every kind of problem the webhook endpoint answers with. The ingress can only build problems
/// from these, so this list is the complete set of error answers (tests compare it with
/// `schemas/openapi.yaml`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ProblemKind {
    /// 400: authenticated body is not JSON.
    InvalidJson,
    /// 400: the body could not be read (connection error mid-body).
    UnreadableBody,
    /// 401: authentication failed.
    Unauthorized,
    /// 408: body not received in time.
    BodyTimeout,
    /// 413: body too large.
    BodyTooLarge,
    /// 415: not a JSON content type.
    UnsupportedMediaType,
    /// 422: JSON that fails the schema.
    SchemaViolation,
    /// 429: over the in-flight limit.
    TooManyRequests,
    /// 503: not stored.
    NotStored,
    /// 413: the event built from a valid body exceeds the NATS server's `max_payload`; the body
    /// is kept on `rejected`.
    EventTooLarge,
    /// 404: no such path (the HTTP router, outside the webhook handler).
    NotFound,
    /// 405: the path exists, the method does not (with `Allow`).
    MethodNotAllowed,
}

impl ProblemKind {
    /// Every kind.
    pub const ALL: [ProblemKind; 12] = [
        ProblemKind::InvalidJson,
        ProblemKind::UnreadableBody,
        ProblemKind::Unauthorized,
        ProblemKind::BodyTimeout,
        ProblemKind::BodyTooLarge,
        ProblemKind::UnsupportedMediaType,
        ProblemKind::SchemaViolation,
        ProblemKind::TooManyRequests,
        ProblemKind::NotStored,
        ProblemKind::EventTooLarge,
        ProblemKind::NotFound,
        ProblemKind::MethodNotAllowed,
    ];

    /// Whether the router answers it (any path), rather than the webhook handler.
    pub fn is_routing(self) -> bool {
        matches!(self, ProblemKind::NotFound | ProblemKind::MethodNotAllowed)
    }

    /// HTTP status.
    pub fn status(self) -> StatusCode {
        match self {
            ProblemKind::InvalidJson | ProblemKind::UnreadableBody => StatusCode::BAD_REQUEST,
            ProblemKind::Unauthorized => StatusCode::UNAUTHORIZED,
            ProblemKind::BodyTimeout => StatusCode::REQUEST_TIMEOUT,
            ProblemKind::BodyTooLarge | ProblemKind::EventTooLarge => StatusCode::PAYLOAD_TOO_LARGE,
            ProblemKind::NotFound => StatusCode::NOT_FOUND,
            ProblemKind::MethodNotAllowed => StatusCode::METHOD_NOT_ALLOWED,
            ProblemKind::UnsupportedMediaType => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            ProblemKind::SchemaViolation => StatusCode::UNPROCESSABLE_ENTITY,
            ProblemKind::TooManyRequests => StatusCode::TOO_MANY_REQUESTS,
            ProblemKind::NotStored => StatusCode::SERVICE_UNAVAILABLE,
        }
    }

    /// The last part of the `type` URI.
    pub fn slug(self) -> &'static str {
        match self {
            ProblemKind::InvalidJson => "invalid-json",
            ProblemKind::UnreadableBody => "unreadable-body",
            ProblemKind::Unauthorized => "unauthorized",
            ProblemKind::BodyTimeout => "body-timeout",
            ProblemKind::BodyTooLarge => "body-too-large",
            ProblemKind::UnsupportedMediaType => "unsupported-media-type",
            ProblemKind::SchemaViolation => "schema-violation",
            ProblemKind::TooManyRequests => "too-many-requests",
            ProblemKind::NotStored => "not-stored",
            ProblemKind::EventTooLarge => "event-too-large",
            ProblemKind::NotFound => "not-found",
            ProblemKind::MethodNotAllowed => "method-not-allowed",
        }
    }

    /// The `type` URI.
    pub fn type_uri(self) -> String {
        format!("urn:vx-bridge:problem:{}", self.slug())
    }

    /// The fixed `title`.
    pub fn title(self) -> &'static str {
        match self {
            ProblemKind::InvalidJson => "Body is not JSON",
            ProblemKind::UnreadableBody => "Unreadable request body",
            ProblemKind::Unauthorized => "Authentication failed",
            ProblemKind::BodyTimeout => "Request body too slow",
            ProblemKind::BodyTooLarge => "Body too large",
            ProblemKind::UnsupportedMediaType => "Unsupported media type",
            ProblemKind::SchemaViolation => "Body does not match the VX result schema",
            ProblemKind::TooManyRequests => "Too many requests in flight",
            ProblemKind::NotStored => "Event not stored",
            ProblemKind::EventTooLarge => "Event too large for the NATS server",
            ProblemKind::NotFound => "Not found",
            ProblemKind::MethodNotAllowed => "Method not allowed",
        }
    }

    /// Whether the sender should retry (the answer then carries `Retry-After`, except 408).
    pub fn retryable(self) -> bool {
        matches!(
            self,
            ProblemKind::BodyTimeout | ProblemKind::TooManyRequests | ProblemKind::NotStored
        )
    }
}

/// One RFC 9457 problem.
#[derive(Debug, Clone, Serialize)]
pub struct Problem {
    /// Stable URI naming the kind of problem.
    #[serde(rename = "type")]
    pub type_uri: String,
    /// Short, fixed summary of the kind.
    pub title: &'static str,
    /// HTTP status, repeated in the body.
    pub status: u16,
    /// What went wrong with this request.
    pub detail: String,
    /// Schema violations (422 only).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub errors: Option<Vec<Violation>>,
    /// Seconds to wait before retrying (429, 503); also sent as `Retry-After`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub retry_after: Option<u32>,
}

impl Problem {
    /// A problem of `kind` with this request's `detail`.
    pub fn new(kind: ProblemKind, detail: impl Into<String>) -> Self {
        Self {
            type_uri: kind.type_uri(),
            title: kind.title(),
            status: kind.status().as_u16(),
            detail: detail.into(),
            errors: None,
            retry_after: None,
        }
    }

    /// Adds schema violations.
    pub fn with_errors(mut self, errors: Vec<Violation>) -> Self {
        self.errors = Some(errors);
        self
    }

    /// Adds a retry delay.
    pub fn with_retry_after(mut self, secs: u32) -> Self {
        self.retry_after = Some(secs);
        self
    }
}

impl IntoResponse for Problem {
    fn into_response(self) -> Response {
        let status = StatusCode::from_u16(self.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        let body = serde_json::to_vec(&self).unwrap_or_else(|_| b"{}".to_vec());
        let mut res = (status, body).into_response();
        res.headers_mut()
            .insert(header::CONTENT_TYPE, HeaderValue::from_static(PROBLEM_JSON));
        if let Some(secs) = self.retry_after {
            res.headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from(secs));
        }
        res
    }
}

/// Router answers without a body (404 for an unknown path, 405 for a known path with another
/// method) become problems; every other response, and the `Allow` header of a 405, pass unchanged.
/// Used as `axum::middleware::map_response(routing_problems)` on the whole router.
pub async fn routing_problems(res: Response) -> Response {
    let kind = match res.status() {
        StatusCode::NOT_FOUND => ProblemKind::NotFound,
        StatusCode::METHOD_NOT_ALLOWED => ProblemKind::MethodNotAllowed,
        _ => return res,
    };
    if res.headers().contains_key(header::CONTENT_TYPE) {
        return res;
    }
    let detail = match kind {
        ProblemKind::MethodNotAllowed => {
            "this path does not take this method; the Allow header lists those it takes"
        }
        _ => "nothing is served at this path (webhooks are POSTed to http.webhook_path)",
    };
    let (mut parts, _) = res.into_parts();
    let (problem, body) = Problem::new(kind, detail).into_response().into_parts();
    parts
        .headers
        .insert(header::CONTENT_TYPE, HeaderValue::from_static(PROBLEM_JSON));
    if let Some(len) = problem.headers.get(header::CONTENT_LENGTH) {
        parts.headers.insert(header::CONTENT_LENGTH, len.clone());
    }
    Response::from_parts(parts, body)
}
