//! The status service's error replies: a code (400, 404, 410, 502, 503, 504) and a message, sent
//! both as `Nats-Service-Error-Code` / `Nats-Service-Error` headers and as a JSON body
//! (`schemas/service-error.schema.json`). Messages never carry PII, tokens or request values.

use bytes::Bytes;
use serde::Serialize;

use crate::upstream::UpstreamError;

/// One error reply.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{code}: {message}")]
pub struct ServiceError {
    /// 400, 404, 410, 502, 503 or 504.
    pub code: u16,
    /// For people; safe to log.
    pub message: String,
}

#[derive(Serialize)]
struct Body<'a> {
    error: Inner<'a>,
}

#[derive(Serialize)]
struct Inner<'a> {
    code: u16,
    message: &'a str,
}

impl ServiceError {
    /// 400: the request is malformed; retrying it will not help.
    pub fn bad_request(message: impl Into<String>) -> Self {
        Self {
            code: 400,
            message: message.into(),
        }
    }

    /// 404 with a message.
    pub fn not_found(message: impl Into<String>) -> Self {
        Self {
            code: 404,
            message: message.into(),
        }
    }

    /// 410: the session's personal data is gone for good (erased, or past `retention.pii`).
    pub fn gone(message: impl Into<String>) -> Self {
        Self {
            code: 410,
            message: message.into(),
        }
    }

    /// 502 with a message.
    pub fn bad_gateway(message: impl Into<String>) -> Self {
        Self {
            code: 502,
            message: message.into(),
        }
    }

    /// 503 with a message: a retry can succeed.
    pub fn unavailable(message: impl Into<String>) -> Self {
        Self {
            code: 503,
            message: message.into(),
        }
    }

    /// The JSON body: `{"error": {"code": …, "message": …}}`.
    pub fn body(&self) -> Bytes {
        let body = Body {
            error: Inner {
                code: self.code,
                message: &self.message,
            },
        };
        // Serializing a struct of a number and a string cannot fail.
        Bytes::from(serde_json::to_vec(&body).unwrap_or_default())
    }

    /// The message as a header value: one line, printable ASCII.
    pub fn header_message(&self) -> String {
        self.message
            .chars()
            .map(|c| {
                if c.is_ascii() && !c.is_ascii_control() {
                    c
                } else {
                    '?'
                }
            })
            .collect()
    }
}

impl From<&UpstreamError> for ServiceError {
    fn from(e: &UpstreamError) -> Self {
        Self {
            code: e.code(),
            message: crate::telemetry::error_chain(e),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn body_and_header_carry_the_code_and_a_safe_message() {
        let e = ServiceError::bad_request("bad\r\nthing é");
        let v: serde_json::Value = serde_json::from_slice(&e.body()).unwrap();
        assert_eq!(
            v,
            serde_json::json!({"error": {"code": 400, "message": "bad\r\nthing é"}})
        );
        assert_eq!(e.header_message(), "bad??thing ?");
        let up = ServiceError::from(&UpstreamError::CircuitOpen);
        assert_eq!(up.code, 503);
    }

    #[test]
    fn an_upstream_error_reply_carries_its_cause() {
        use crate::upstream::token::TokenError;
        let e = UpstreamError::Auth(TokenError::Unavailable("HTTP 500".into()).into());
        assert!(std::error::Error::source(&e).is_some());
        let reply = ServiceError::from(&e);
        assert_eq!(reply.code, 502);
        assert_eq!(
            reply.message,
            "upstream authentication failed: the OAuth token endpoint is unavailable: HTTP 500"
        );
    }
}
