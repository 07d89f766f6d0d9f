//! The VX API client used by the status service: `GET /api/session/result/:request_id` (and an
//! optional, configured lookup by email), with a bearer token, deadlines, retries, a bound on
//! concurrent calls and a circuit breaker.
//!
//! One lookup has one deadline (`upstream.timeout`, kept under the requesters' 10 s): waiting
//! for a call slot, fetching a token, every attempt and every backoff fit inside it. Retried:
//! connection errors, 429 (waiting `Retry-After` seconds when given and when it fits) and 5xx,
//! at most `upstream.max_retries` times, with jittered exponential backoff. A 401 drops the
//! OAuth token and is retried once with a new one. Only a validated UUID or a percent-encoded
//! email ever becomes part of a URL. Nothing here logs a token, an email or a body. It never
//! reaches the ingress or the publisher (`scripts/code/check-layers.py`, rule 2).

pub mod breaker;
pub mod reply;
pub mod token;

use std::sync::Arc;
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use percent_encoding::{utf8_percent_encode, NON_ALPHANUMERIC};
use tokio::sync::Semaphore;
use tokio::time::Instant;
use uuid::Uuid;

use crate::clock::Clock;
use crate::config::{ConfigError, UpstreamConfig};
use crate::schema::Schemas;
use crate::secret::{read_secret_file, Secret};
use crate::telemetry::{LookupOutcome, TraceContext, UpstreamCall};
use breaker::CircuitBreaker;
pub use reply::{CurrentStatus, ResultBody, SessionReply};
use token::{OAuthTokens, TokenError, TokenSource};

/// The path of the session lookup; `{request_id}` is replaced by a hyphenated UUID.
pub const SESSION_PATH: &str = "/api/session/result/";
/// Largest upstream body read (a NATS message is at most 1 MiB by default anyway).
pub const MAX_BODY_BYTES: usize = 1024 * 1024;
/// First backoff step; doubled per retry, capped at [`MAX_BACKOFF`], jittered down by up to half.
pub const BASE_BACKOFF: Duration = Duration::from_millis(100);
/// Largest backoff step.
pub const MAX_BACKOFF: Duration = Duration::from_secs(2);

/// Why a lookup failed. [`UpstreamError::code`] maps it to the service's error code.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum UpstreamError {
    /// 404: the VX API does not know the session.
    #[error("unknown session")]
    NotFound,
    /// The token was refused (by the token endpoint, or twice by the API).
    #[error("upstream authentication failed")]
    Auth(#[source] AuthFailure),
    /// An HTTP status we do not retry or that stayed after the retries.
    #[error("upstream answered HTTP {0}")]
    Status(u16),
    /// Connection errors, after the retries.
    #[error("cannot reach the upstream: {0}")]
    Unreachable(String),
    /// A 2xx body we cannot use.
    #[error("bad upstream reply: {0}")]
    BadReply(String),
    /// 429 after the retries, or a `Retry-After` beyond the deadline; with the last 429's
    /// `Retry-After` (seconds), if it had one.
    #[error("upstream rate limited")]
    RateLimited(Option<Duration>),
    /// The circuit is open: the upstream failed repeatedly; no call made.
    #[error("upstream circuit open after repeated failures; not called")]
    CircuitOpen,
    /// No call slot free before the deadline (`upstream.max_concurrency`).
    #[error("too many upstream calls in flight")]
    Busy,
    /// The deadline (`upstream.timeout`) passed.
    #[error("upstream did not answer within {0:?}")]
    Timeout(Duration),
}

/// Why authenticating to the VX API failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AuthFailure {
    /// The API answered 401 to a fresh token too (or to the static token).
    #[error("the VX API refused the bearer token (HTTP 401)")]
    Unauthorized,
    /// The API answered 403.
    #[error("the VX API refused access (HTTP 403)")]
    Forbidden,
    /// No token could be had.
    #[error(transparent)]
    Token(#[from] TokenError),
}

impl UpstreamError {
    /// The service error code: 404, 502, 503 or 504.
    pub fn code(&self) -> u16 {
        match self {
            UpstreamError::NotFound => 404,
            UpstreamError::Auth(_)
            | UpstreamError::Status(_)
            | UpstreamError::Unreachable(_)
            | UpstreamError::BadReply(_) => 502,
            UpstreamError::RateLimited(_) | UpstreamError::CircuitOpen | UpstreamError::Busy => 503,
            UpstreamError::Timeout(_) => 504,
        }
    }

    /// How a lookup that ended in this error is counted.
    pub fn outcome(&self) -> LookupOutcome {
        match self {
            UpstreamError::NotFound => LookupOutcome::NotFound,
            UpstreamError::Auth(_) => LookupOutcome::Auth,
            UpstreamError::Status(_) => LookupOutcome::HttpStatus,
            UpstreamError::Unreachable(_) => LookupOutcome::Unreachable,
            UpstreamError::BadReply(_) => LookupOutcome::BadReply,
            UpstreamError::RateLimited(_) => LookupOutcome::RateLimited,
            UpstreamError::CircuitOpen => LookupOutcome::CircuitOpen,
            UpstreamError::Busy => LookupOutcome::Busy,
            UpstreamError::Timeout(_) => LookupOutcome::Timeout,
        }
    }

    /// Low-cardinality label for metrics and logs (its [`UpstreamError::outcome`]'s).
    pub fn label(&self) -> &'static str {
        self.outcome().label()
    }
}

/// The VX API client. Share it behind an `Arc`.
#[derive(Debug)]
pub struct UpstreamClient {
    http: reqwest::Client,
    base_url: String,
    email_lookup_path: Option<String>,
    tokens: TokenSource,
    timeout: Duration,
    max_retries: u32,
    slots: Semaphore,
    breaker: CircuitBreaker,
    schemas: Schemas,
}

/// The outcome of one HTTP attempt.
enum Attempt {
    Done(Result<SessionReply, UpstreamError>),
    Retry {
        error: UpstreamError,
        wait: Option<Duration>,
    },
    Unauthorized(token::Token),
}

impl UpstreamClient {
    /// Builds the client from a validated `[upstream]`, reading its secret file (the static
    /// token's or the OAuth client secret's) once. Called by `app::prepare`.
    pub fn from_config(cfg: &UpstreamConfig, clock: Arc<dyn Clock>) -> Result<Self, ConfigError> {
        // No proxy from the environment (`HTTP(S)_PROXY`): only `upstream.proxy`, when set.
        let mut http = reqwest::Client::builder()
            .connect_timeout(cfg.connect_timeout)
            .redirect(reqwest::redirect::Policy::none())
            .user_agent(concat!("vx-bridge/", env!("CARGO_PKG_VERSION")))
            .no_proxy();
        if let Some(url) = &cfg.proxy {
            let proxy = reqwest::Proxy::all(url)
                .map_err(|_| ConfigError::new("upstream.proxy", "is not a valid proxy URL"))?;
            http = http.proxy(proxy);
        }
        let http = http.build().map_err(|e| {
            ConfigError::new("upstream", format!("cannot build the HTTP client: {e}"))
        })?;
        let resolve = |key: &str, inline: &Option<Secret>, file: &Option<std::path::PathBuf>| match (
            inline, file,
        ) {
            (Some(s), _) => Ok(Some(s.clone())),
            (None, Some(p)) => read_secret_file(p)
                .map(Some)
                .map_err(|e| ConfigError::new(key, e)),
            (None, None) => Ok(None),
        };
        let tokens = if let Some(t) = resolve("upstream.token_file", &cfg.token, &cfg.token_file)? {
            TokenSource::Static(t)
        } else {
            let o = &cfg.oauth;
            let Some(secret) = resolve(
                "upstream.oauth.client_secret_file",
                &o.client_secret,
                &o.client_secret_file,
            )?
            else {
                return Err(ConfigError::new(
                    "upstream.oauth.client_secret",
                    "set it, or upstream.token, to use the status service",
                ));
            };
            TokenSource::OAuth(OAuthTokens::new(http.clone(), o, secret, clock.clone()))
        };
        Ok(Self {
            http,
            base_url: cfg.base_url.trim_end_matches('/').to_owned(),
            email_lookup_path: cfg.email_lookup_path.clone(),
            tokens,
            timeout: cfg.timeout,
            max_retries: cfg.max_retries,
            slots: Semaphore::new(cfg.max_concurrency.max(1)),
            breaker: CircuitBreaker::new(
                cfg.circuit_failure_threshold,
                cfg.circuit_open_for,
                clock,
            ),
            schemas: Schemas::get(),
        })
    }

    /// This client with today's result schema (`app::result_schemas`) for the result bodies
    /// it parses, instead of the embedded one.
    pub fn with_schemas(mut self, schemas: Schemas) -> Self {
        self.schemas = schemas;
        self
    }

    /// Whether lookups by email are configured (`upstream.email_lookup_path`).
    pub fn email_lookup_enabled(&self) -> bool {
        self.email_lookup_path.is_some()
    }

    /// Looks a session up by id.
    pub async fn session(
        &self,
        id: Uuid,
        trace: &TraceContext,
    ) -> Result<SessionReply, UpstreamError> {
        let id = id.hyphenated().to_string();
        let url = format!("{}{SESSION_PATH}{id}", self.base_url);
        self.lookup(&url, Some(&id), trace).await
    }

    /// Looks a session up by the user's email; `None` when no email path is configured.
    /// `email` must already be validated; it is percent-encoded into the path.
    pub async fn by_email(
        &self,
        email: &str,
        trace: &TraceContext,
    ) -> Option<Result<SessionReply, UpstreamError>> {
        let path = self.email_lookup_path.as_ref()?;
        let encoded = utf8_percent_encode(email, NON_ALPHANUMERIC).to_string();
        let url = format!("{}{}", self.base_url, path.replace("{email}", &encoded));
        Some(self.lookup(&url, None, trace).await)
    }

    async fn lookup(
        &self,
        url: &str,
        expected_id: Option<&str>,
        trace: &TraceContext,
    ) -> Result<SessionReply, UpstreamError> {
        let started = Instant::now();
        let result = self.lookup_inner(url, expected_id, started, trace).await;
        let outcome = match &result {
            Ok(_) => LookupOutcome::Ok,
            Err(e) => e.outcome(),
        };
        crate::telemetry::UPSTREAM_LOOKUPS.get(outcome).increment(1);
        crate::telemetry::UPSTREAM_LOOKUP_DURATION
            .one()
            .record(started.elapsed().as_secs_f64());
        result
    }

    async fn lookup_inner(
        &self,
        url: &str,
        expected_id: Option<&str>,
        started: Instant,
        trace: &TraceContext,
    ) -> Result<SessionReply, UpstreamError> {
        let deadline = started + self.timeout;
        let _slot = match tokio::time::timeout_at(deadline, self.slots.acquire()).await {
            Ok(Ok(permit)) => permit,
            _ => return Err(UpstreamError::Busy),
        };
        let mut retries = 0u32;
        let mut refreshed_after_401 = false;
        loop {
            match self.attempt(url, expected_id, deadline, trace).await {
                Attempt::Done(result) => return result,
                Attempt::Unauthorized(token) => {
                    if !refreshed_after_401 && self.tokens.invalidate(&token).await {
                        refreshed_after_401 = true;
                        tracing::info!("the VX API answered 401: fetching a new token");
                        continue;
                    }
                    return Err(UpstreamError::Auth(AuthFailure::Unauthorized));
                }
                Attempt::Retry { error, wait } => {
                    if retries >= self.max_retries {
                        return Err(error);
                    }
                    let wait = wait.unwrap_or_else(|| backoff(retries));
                    if Instant::now() + wait >= deadline {
                        // Waiting would pass the deadline: answer now rather than time out.
                        return Err(error);
                    }
                    retries += 1;
                    tracing::debug!(retry = retries, wait_ms = wait.as_millis() as u64, error = %crate::telemetry::error_chain(&error), "retrying the VX API");
                    tokio::time::sleep(wait).await;
                }
            }
        }
    }

    async fn attempt(
        &self,
        url: &str,
        expected_id: Option<&str>,
        deadline: Instant,
        trace: &TraceContext,
    ) -> Attempt {
        let timeout = UpstreamError::Timeout(self.timeout);
        let token = match self.tokens.get(deadline).await {
            Ok(t) => t,
            Err(TokenError::Timeout) => return Attempt::Done(Err(timeout)),
            Err(e @ TokenError::Unavailable(_)) => {
                return Attempt::Retry {
                    error: UpstreamError::Auth(e.into()),
                    wait: None,
                }
            }
            Err(e) => return Attempt::Done(Err(UpstreamError::Auth(e.into()))),
        };
        let permit = match self.breaker.try_acquire() {
            Ok(p) => p,
            Err(_) => return Attempt::Done(Err(UpstreamError::CircuitOpen)),
        };
        let remaining = deadline.saturating_duration_since(Instant::now());
        if remaining.is_zero() {
            return Attempt::Done(Err(timeout));
        }
        let mut request = self
            .http
            .get(url)
            .bearer_auth(token.value.expose())
            .header(reqwest::header::ACCEPT, "application/json")
            .timeout(remaining);
        if let Some(tp) = &trace.traceparent {
            request = request.header("traceparent", tp);
        }
        if let Some(ts) = &trace.tracestate {
            request = request.header("tracestate", ts);
        }
        let sent_at = Instant::now();
        let sent = request.send().await;
        let class = match &sent {
            Ok(r) if r.status().is_success() => UpstreamCall::Success,
            Ok(r) if r.status().is_client_error() => UpstreamCall::ClientError,
            Ok(r) if r.status().is_server_error() => UpstreamCall::ServerError,
            Ok(_) => UpstreamCall::Other,
            Err(e) if e.is_timeout() => UpstreamCall::Timeout,
            Err(_) => UpstreamCall::Error,
        };
        crate::telemetry::UPSTREAM_REQUEST_DURATION
            .get(class)
            .record(sent_at.elapsed().as_secs_f64());
        let resp = match sent {
            Ok(r) => r,
            Err(e) if e.is_timeout() => {
                permit.failure();
                return Attempt::Done(Err(timeout));
            }
            Err(e) => {
                permit.failure();
                return Attempt::Retry {
                    error: UpstreamError::Unreachable(describe(&e)),
                    wait: None,
                };
            }
        };
        let status = resp.status().as_u16();
        match status {
            200..=299 => match read_limited(resp).await {
                Ok(body) => {
                    permit.success();
                    Attempt::Done(
                        SessionReply::parse(body, expected_id, &self.schemas)
                            .map_err(UpstreamError::BadReply),
                    )
                }
                Err(BodyError::Timeout) => {
                    permit.failure();
                    Attempt::Done(Err(timeout))
                }
                Err(BodyError::Other(m)) => {
                    permit.failure();
                    Attempt::Done(Err(UpstreamError::BadReply(m)))
                }
            },
            404 => {
                permit.success();
                Attempt::Done(Err(UpstreamError::NotFound))
            }
            401 => {
                permit.success();
                Attempt::Unauthorized(token)
            }
            403 => {
                permit.success();
                Attempt::Done(Err(UpstreamError::Auth(AuthFailure::Forbidden)))
            }
            429 => {
                permit.success();
                let wait = retry_after(resp.headers());
                Attempt::Retry {
                    error: UpstreamError::RateLimited(wait),
                    wait,
                }
            }
            500..=599 => {
                permit.failure();
                Attempt::Retry {
                    error: UpstreamError::Status(status),
                    wait: None,
                }
            }
            _ => {
                permit.success();
                Attempt::Done(Err(UpstreamError::Status(status)))
            }
        }
    }
}

enum BodyError {
    Timeout,
    Other(String),
}

/// Reads at most [`MAX_BODY_BYTES`].
async fn read_limited(mut resp: reqwest::Response) -> Result<Bytes, BodyError> {
    let mut buf = BytesMut::new();
    loop {
        match resp.chunk().await {
            Ok(Some(chunk)) => {
                if buf.len() + chunk.len() > MAX_BODY_BYTES {
                    return Err(BodyError::Other(format!(
                        "the reply is larger than {MAX_BODY_BYTES} bytes"
                    )));
                }
                buf.extend_from_slice(&chunk);
            }
            Ok(None) => return Ok(buf.freeze()),
            Err(e) if e.is_timeout() => return Err(BodyError::Timeout),
            Err(e) => return Err(BodyError::Other(describe(&e))),
        }
    }
}

/// Backoff before retry number `retry + 1`: `BASE_BACKOFF · 2^retry`, capped, then a uniformly
/// random value in its upper half (so replicas do not retry in step).
pub fn backoff(retry: u32) -> Duration {
    let full = BASE_BACKOFF
        .saturating_mul(1u32 << retry.min(16))
        .min(MAX_BACKOFF);
    let half = full / 2;
    let jitter_ms = rand::random::<u64>() % (half.as_millis() as u64 + 1);
    half + Duration::from_millis(jitter_ms)
}

/// `Retry-After` in seconds (the HTTP-date form is not used by APIs we know; it falls back to
/// the backoff).
pub fn retry_after(headers: &reqwest::header::HeaderMap) -> Option<Duration> {
    let v = headers.get(reqwest::header::RETRY_AFTER)?.to_str().ok()?;
    v.trim().parse::<u64>().ok().map(Duration::from_secs)
}

/// A reqwest error without its URL (which may hold an email) and without bodies.
pub(crate) fn describe(e: &reqwest::Error) -> String {
    let kind = if e.is_connect() {
        "connection failed"
    } else if e.is_timeout() {
        "timed out"
    } else if e.is_request() {
        "request failed"
    } else if e.is_body() || e.is_decode() {
        "reading the reply failed"
    } else {
        "HTTP error"
    };
    let mut source = std::error::Error::source(e);
    let mut detail = String::new();
    while let Some(s) = source {
        detail = s.to_string();
        source = s.source();
    }
    if detail.is_empty() {
        kind.to_owned()
    } else {
        format!("{kind} ({detail})")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_is_capped_and_stays_in_the_upper_half() {
        for retry in 0..20 {
            let full = BASE_BACKOFF
                .saturating_mul(1u32 << retry.min(16))
                .min(MAX_BACKOFF);
            for _ in 0..20 {
                let b = backoff(retry);
                assert!(b >= full / 2 && b <= full, "{retry}: {b:?}");
            }
        }
        assert!(backoff(30) <= MAX_BACKOFF);
    }

    #[test]
    fn retry_after_reads_seconds_only() {
        let mut h = reqwest::header::HeaderMap::new();
        assert_eq!(retry_after(&h), None);
        h.insert(reqwest::header::RETRY_AFTER, "3".parse().unwrap());
        assert_eq!(retry_after(&h), Some(Duration::from_secs(3)));
        h.insert(
            reqwest::header::RETRY_AFTER,
            "Wed, 21 Oct 2015 07:28:00 GMT".parse().unwrap(),
        );
        assert_eq!(retry_after(&h), None);
    }

    #[test]
    fn error_codes_follow_the_contract() {
        assert_eq!(UpstreamError::NotFound.code(), 404);
        assert_eq!(UpstreamError::Auth(AuthFailure::Forbidden).code(), 502);
        assert_eq!(UpstreamError::Status(500).code(), 502);
        assert_eq!(UpstreamError::Unreachable("x".into()).code(), 502);
        assert_eq!(UpstreamError::BadReply("x".into()).code(), 502);
        assert_eq!(UpstreamError::RateLimited(None).code(), 503);
        assert_eq!(UpstreamError::CircuitOpen.code(), 503);
        assert_eq!(UpstreamError::Busy.code(), 503);
        assert_eq!(UpstreamError::Timeout(Duration::from_secs(1)).code(), 504);
    }
}
