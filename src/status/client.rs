//! The requester side of the status service, used by `vx-bridge status` / `vx-bridge result`
//! and by tests: sends a request, waits for one reply, and tells a success from an error reply
//! by its `Nats-Service-Error-Code` header.

use std::time::Duration;

use async_nats::service::{NATS_SERVICE_ERROR, NATS_SERVICE_ERROR_CODE};
use async_nats::RequestErrorKind;
use bytes::Bytes;

/// Requesters' default timeout, which `upstream.timeout` stays under.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(10);

/// A reply from the service.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reply {
    /// Success: the body.
    Ok(Bytes),
    /// An error reply.
    Error {
        /// `Nats-Service-Error-Code`.
        code: u16,
        /// `Nats-Service-Error`.
        message: String,
        /// The JSON error body.
        body: Bytes,
    },
}

/// No reply at all.
#[derive(Debug, thiserror::Error)]
pub enum RequestError {
    /// Nobody serves the subject.
    #[error("no responder on {0}: is a vx-bridge with status.enabled = true running?")]
    NoResponders(String),
    /// No reply in time.
    #[error("no reply on {0} within {1:?}")]
    TimedOut(String, Duration),
    /// Anything else (connection, payload size).
    #[error("request on {0} failed: {1}")]
    Other(String, String),
}

/// Sends `payload` to `subject` and waits up to `timeout` for the reply.
pub async fn request(
    client: &async_nats::Client,
    subject: &str,
    payload: Bytes,
    timeout: Duration,
) -> Result<Reply, RequestError> {
    let req = async_nats::Request::new()
        .payload(payload)
        .timeout(Some(timeout));
    let msg = client
        .send_request(subject.to_owned(), req)
        .await
        .map_err(|e| match e.kind() {
            RequestErrorKind::NoResponders => RequestError::NoResponders(subject.into()),
            RequestErrorKind::TimedOut => RequestError::TimedOut(subject.into(), timeout),
            _ => RequestError::Other(subject.into(), e.to_string()),
        })?;
    let header = |name: &str| {
        msg.headers
            .as_ref()
            .and_then(|h| h.get(name))
            .map(|v| v.as_str().to_owned())
    };
    match header(NATS_SERVICE_ERROR_CODE) {
        Some(code) => Ok(Reply::Error {
            code: code.trim().parse().unwrap_or(0),
            message: header(NATS_SERVICE_ERROR).unwrap_or_default(),
            body: msg.payload,
        }),
        None => Ok(Reply::Ok(msg.payload)),
    }
}
