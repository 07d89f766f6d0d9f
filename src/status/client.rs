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
    #[error("request on {subject} failed")]
    Other {
        /// The subject.
        subject: String,
        /// The client's error.
        #[source]
        source: async_nats::RequestError,
    },
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
            _ => RequestError::Other {
                subject: subject.into(),
                source: e,
            },
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

/// `nats.url` as it may be printed: any `user:password@` (or `token@`) part is replaced by
/// `***@`.
pub fn redacted_urls(urls: &str) -> String {
    urls.split(',')
        .map(str::trim)
        .filter(|u| !u.is_empty())
        .map(|u| {
            let (scheme, rest) = u.split_once("://").unwrap_or(("", u));
            let rest = match rest.split_once('@') {
                Some((_, host)) => format!("***@{host}"),
                None => rest.to_owned(),
            };
            if scheme.is_empty() {
                rest
            } else {
                format!("{scheme}://{rest}")
            }
        })
        .collect::<Vec<_>>()
        .join(",")
}

/// Why a connection to NATS failed, in one line: the cause once (async-nats' I/O error repeats
/// its source in its own text), in lower case, e.g. `connection refused (os error 111)`.
pub fn connect_error_text(err: &anyhow::Error) -> String {
    use async_nats::ConnectErrorKind;
    let Some(e) = err.downcast_ref::<async_nats::ConnectError>() else {
        return err.to_string();
    };
    match e.kind() {
        ConnectErrorKind::Io => match std::error::Error::source(e) {
            Some(io) => io.to_string().to_lowercase(),
            None => "I/O error".to_owned(),
        },
        ConnectErrorKind::TimedOut => "timed out".to_owned(),
        ConnectErrorKind::Authentication | ConnectErrorKind::AuthorizationViolation => {
            "the server refused our credentials (check the nats.* credentials)".to_owned()
        }
        ConnectErrorKind::Tls => format!("TLS failed: {e}"),
        _ => e.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn printed_urls_hide_credentials() {
        assert_eq!(
            redacted_urls("nats://user:pw@a:4222, tls://tok@b:4222,nats://c:4222"),
            "nats://***@a:4222,tls://***@b:4222,nats://c:4222"
        );
        assert_eq!(redacted_urls("localhost:4222"), "localhost:4222");
    }

    #[tokio::test]
    async fn a_refused_connection_is_one_short_cause() {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .map(|a| a.port())
            .unwrap();
        let cfg = crate::config::NatsConfig {
            url: format!("nats://127.0.0.1:{port}"),
            ..Default::default()
        };
        let err = crate::nats::connect(&cfg, false).await.unwrap_err();
        let text = connect_error_text(&err);
        assert_eq!(text.matches("refused").count(), 1, "{text}");
        assert!(text.starts_with("connection refused"), "{text}");
    }
}
