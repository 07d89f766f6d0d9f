//! The one signed-webhook sender of the tests: signs with the bridge's own signer
//! (`vx_bridge::auth::hmac::sign_headers`, the scheme of the config it is given) and POSTs JSON.
//! Signs with [`SECRET`] unless told otherwise. Holds no state beyond the HTTP client.

use vx_bridge::auth::hmac::sign_headers;
use vx_bridge::config::{Config, HmacConfig};

use crate::fixtures::{now, SECRET};
use crate::Bridge;

/// The signature headers for `body` as delivery `id` signed at `at` (unix seconds), with
/// [`SECRET`] and `hmac`'s scheme.
pub fn signed_headers(hmac: &HmacConfig, body: &[u8], at: i64, id: &str) -> Vec<(String, String)> {
    sign_headers(hmac, SECRET, body, at, id)
}

/// Sends signed webhooks to one URL.
#[derive(Clone)]
pub struct Sender {
    http: reqwest::Client,
    url: String,
    hmac: HmacConfig,
    secret: String,
}

impl Sender {
    /// To `bridge`'s webhook URL, signed as its config says.
    pub fn new(bridge: &Bridge) -> Sender {
        Self::to(bridge.webhook_url(), &bridge.config)
    }

    /// To `url`, signed as `config`'s `webhook.auth.hmac` says (a new HTTP client).
    pub fn to(url: impl Into<String>, config: &Config) -> Sender {
        Sender {
            http: reqwest::Client::new(),
            url: url.into(),
            hmac: config.webhook.auth.hmac.clone(),
            secret: SECRET.to_owned(),
        }
    }

    /// Signs with `secret` instead of [`SECRET`].
    pub fn with_secret(mut self, secret: &str) -> Sender {
        self.secret = secret.to_owned();
        self
    }

    /// The signed POST of `body` as delivery `id`, signed at `signed_at`, not sent yet (add
    /// headers to it).
    pub fn request(&self, id: &str, body: &[u8], signed_at: i64) -> reqwest::RequestBuilder {
        let mut req = self
            .http
            .post(&self.url)
            .header("content-type", "application/json")
            .body(body.to_vec());
        for (k, v) in sign_headers(&self.hmac, &self.secret, body, signed_at, id) {
            req = req.header(k, v);
        }
        req
    }

    /// Signs `body` as delivery `id` now and POSTs it; an unanswered request is an error.
    pub async fn try_send(&self, id: &str, body: &[u8]) -> reqwest::Result<reqwest::Response> {
        self.request(id, body, now()).send().await
    }

    /// Signs `body` as delivery `id` now and POSTs it; panics when unanswered.
    pub async fn send(&self, id: &str, body: &[u8]) -> reqwest::Response {
        self.send_with(id, body, now(), &[]).await
    }

    /// [`send`](Self::send), and the answer's HTTP status code.
    pub async fn send_status(&self, id: &str, body: impl AsRef<[u8]>) -> u16 {
        self.send(id, body.as_ref()).await.status().as_u16()
    }

    /// Signs at `signed_at`, adds `extra` headers, POSTs; panics when unanswered.
    pub async fn send_with(
        &self,
        id: &str,
        body: &[u8],
        signed_at: i64,
        extra: &[(&str, &str)],
    ) -> reqwest::Response {
        let mut req = self.request(id, body, signed_at);
        for (k, v) in extra {
            req = req.header(*k, *v);
        }
        req.send().await.expect("request sent")
    }
}
