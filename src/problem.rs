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
    /// A problem of kind `slug` (`urn:vx-bridge:problem:<slug>`).
    pub fn new(
        status: StatusCode,
        slug: &str,
        title: &'static str,
        detail: impl Into<String>,
    ) -> Self {
        Self {
            type_uri: format!("urn:vx-bridge:problem:{slug}"),
            title,
            status: status.as_u16(),
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
