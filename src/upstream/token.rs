//! Bearer tokens for the VX API: a static token, or OAuth2 client credentials with a cached
//! token that is refreshed shortly before it expires, and dropped after a 401.
//!
//! Concurrent callers share one token fetch (the cache lock is held while fetching). Tokens and
//! the client secret are [`Secret`]s; nothing here logs them, nor the token endpoint's body.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

use crate::clock::Clock;
use crate::config::OAuthConfig;
use crate::secret::Secret;

/// Lifetime assumed when the token endpoint does not say (`expires_in` missing).
pub const DEFAULT_LIFETIME: Duration = Duration::from_secs(300);
/// A token is refreshed this long before it expires (or after 4/5 of a shorter lifetime).
pub const REFRESH_MARGIN: Duration = Duration::from_secs(60);

/// Where bearer tokens come from.
#[derive(Debug)]
pub enum TokenSource {
    /// One token for ever (a proxy's token, tests).
    Static(Secret),
    /// OAuth2 client credentials.
    OAuth(OAuthTokens),
}

/// A token handed to one request. `generation` tells [`TokenSource::invalidate`] which
/// cached token a 401 concerned, so a late 401 never drops a newer token.
#[derive(Debug, Clone)]
pub struct Token {
    /// The bearer token.
    pub value: Secret,
    generation: u64,
}

/// Why no token could be had.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TokenError {
    /// The token endpoint refused the client credentials (401/403): not retried.
    #[error("the OAuth token endpoint refused the client credentials (HTTP {0})")]
    Rejected(u16),
    /// Connection error or 5xx: may be retried.
    #[error("the OAuth token endpoint is unavailable: {0}")]
    Unavailable(String),
    /// The deadline passed while fetching.
    #[error("the OAuth token endpoint did not answer in time")]
    Timeout,
    /// The endpoint answered 2xx with something that is not a token.
    #[error("the OAuth token endpoint's reply is not a token")]
    BadReply,
}

/// OAuth2 client-credentials settings and the cached token.
#[derive(Debug)]
pub struct OAuthTokens {
    http: reqwest::Client,
    token_url: String,
    client_id: String,
    client_secret: Secret,
    audience: String,
    clock: Arc<dyn Clock>,
    cached: tokio::sync::Mutex<Option<Cached>>,
    generation: AtomicU64,
}

#[derive(Debug)]
struct Cached {
    token: Secret,
    refresh_at: Instant,
    generation: u64,
}

#[derive(Serialize)]
struct TokenRequest<'a> {
    client_id: &'a str,
    client_secret: &'a str,
    audience: &'a str,
    grant_type: &'static str,
}

#[derive(Deserialize)]
struct TokenReply {
    access_token: String,
    #[serde(default)]
    expires_in: Option<u64>,
}

/// When to refresh a token that lives `lifetime`, counted from when it was fetched.
pub fn refresh_after(lifetime: Duration) -> Duration {
    let margin = REFRESH_MARGIN.min(lifetime / 5);
    lifetime.saturating_sub(margin)
}

impl OAuthTokens {
    /// Settings for fetching tokens with `http`: `upstream.oauth`, with its client secret
    /// already resolved (inline or from `client_secret_file`).
    pub fn new(
        http: reqwest::Client,
        cfg: &OAuthConfig,
        client_secret: Secret,
        clock: Arc<dyn Clock>,
    ) -> Self {
        Self {
            http,
            token_url: cfg.token_url.clone(),
            client_id: cfg.client_id.clone(),
            client_secret,
            audience: cfg.audience.clone(),
            clock,
            cached: tokio::sync::Mutex::new(None),
            generation: AtomicU64::new(0),
        }
    }

    async fn get(&self, deadline: tokio::time::Instant) -> Result<Token, TokenError> {
        let mut cached = tokio::time::timeout_at(deadline, self.cached.lock())
            .await
            .map_err(|_| TokenError::Timeout)?;
        if let Some(c) = cached.as_ref() {
            if self.clock.now() < c.refresh_at {
                return Ok(Token {
                    value: c.token.clone(),
                    generation: c.generation,
                });
            }
        }
        let fetched_at = self.clock.now();
        let (token, lifetime) = self.fetch(deadline).await?;
        let generation = self.generation.fetch_add(1, Ordering::Relaxed) + 1;
        tracing::info!(
            lifetime_secs = lifetime.as_secs(),
            "fetched an OAuth token for the VX API"
        );
        crate::telemetry::UPSTREAM_TOKEN_FETCHES.one().increment(1);
        *cached = Some(Cached {
            token: token.clone(),
            refresh_at: fetched_at + refresh_after(lifetime),
            generation,
        });
        Ok(Token {
            value: token,
            generation,
        })
    }

    async fn fetch(
        &self,
        deadline: tokio::time::Instant,
    ) -> Result<(Secret, Duration), TokenError> {
        let remaining = deadline.saturating_duration_since(tokio::time::Instant::now());
        if remaining.is_zero() {
            return Err(TokenError::Timeout);
        }
        let body = TokenRequest {
            client_id: &self.client_id,
            client_secret: self.client_secret.expose(),
            audience: &self.audience,
            grant_type: "client_credentials",
        };
        let resp = self
            .http
            .post(&self.token_url)
            .json(&body)
            .timeout(remaining)
            .send()
            .await
            .map_err(|e| {
                if e.is_timeout() {
                    TokenError::Timeout
                } else {
                    TokenError::Unavailable(super::describe(&e))
                }
            })?;
        let status = resp.status();
        if status == 401 || status == 403 {
            return Err(TokenError::Rejected(status.as_u16()));
        }
        if !status.is_success() {
            return Err(TokenError::Unavailable(format!("HTTP {}", status.as_u16())));
        }
        let bytes = resp.bytes().await.map_err(|e| {
            if e.is_timeout() {
                TokenError::Timeout
            } else {
                TokenError::Unavailable(super::describe(&e))
            }
        })?;
        let reply: TokenReply = serde_json::from_slice(&bytes).map_err(|_| TokenError::BadReply)?;
        if reply.access_token.is_empty() {
            return Err(TokenError::BadReply);
        }
        let lifetime = reply
            .expires_in
            .map(Duration::from_secs)
            .unwrap_or(DEFAULT_LIFETIME);
        Ok((Secret::new(reply.access_token), lifetime))
    }

    async fn invalidate(&self, token: &Token) {
        let mut cached = self.cached.lock().await;
        if cached
            .as_ref()
            .is_some_and(|c| c.generation == token.generation)
        {
            *cached = None;
        }
    }
}

impl TokenSource {
    /// A token valid until at least shortly after now, fetched if needed before `deadline`.
    pub async fn get(&self, deadline: tokio::time::Instant) -> Result<Token, TokenError> {
        match self {
            TokenSource::Static(s) => Ok(Token {
                value: s.clone(),
                generation: 0,
            }),
            TokenSource::OAuth(o) => o.get(deadline).await,
        }
    }

    /// Drops `token` from the cache after the API answered 401 to it. Returns whether a new
    /// token can be had (false for a static token).
    pub async fn invalidate(&self, token: &Token) -> bool {
        match self {
            TokenSource::Static(_) => false,
            TokenSource::OAuth(o) => {
                o.invalidate(token).await;
                true
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refresh_happens_a_minute_early_or_at_four_fifths_of_short_lifetimes() {
        assert_eq!(
            refresh_after(Duration::from_secs(3600)),
            Duration::from_secs(3540)
        );
        assert_eq!(
            refresh_after(Duration::from_secs(100)),
            Duration::from_secs(80)
        );
        assert_eq!(refresh_after(Duration::ZERO), Duration::ZERO);
    }

    #[test]
    fn token_request_has_the_documented_fields_and_errors_never_show_the_secret() {
        let body = TokenRequest {
            client_id: "id",
            client_secret: "s3cret",
            audience: "dcams.app",
            grant_type: "client_credentials",
        };
        let v = serde_json::to_value(&body).unwrap();
        assert_eq!(
            v,
            serde_json::json!({"client_id": "id", "client_secret": "s3cret", "audience": "dcams.app", "grant_type": "client_credentials"})
        );
        for e in [
            TokenError::Rejected(401),
            TokenError::Unavailable("HTTP 500".into()),
            TokenError::Timeout,
            TokenError::BadReply,
        ] {
            assert!(!e.to_string().contains("s3cret"));
        }
    }
}
