//! `send`: one signed webhook with a given body (Standard Webhooks, the bridge's own signer),
//! for the answers the load modes do not provoke (a wrong content type, a schema failure) and for
//! scripts that need the answer; prints the HTTP status code (or the error kind when no answer
//! came), or with `--json` `{"code": …, "answer": <the JSON answer, or null>}`.

use bytes::Bytes;
use vx_bridge::auth::hmac::sign_headers;

use crate::client::{post, Target};
use crate::webhook::signing_config;

#[derive(clap::Args)]
pub(crate) struct SendArgs {
    /// Webhook URL (http only).
    #[arg(long, default_value = "http://127.0.0.1:8080/webhooks/vx")]
    url: String,
    /// Standard Webhooks secret the bridge accepts.
    #[arg(long, default_value = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw")]
    secret: String,
    /// The body, sent as it is.
    #[arg(long)]
    body: String,
    /// The `content-type` header.
    #[arg(long, default_value = "application/json")]
    content_type: String,
    /// Delivery id (`webhook-id`); a fresh one when absent.
    #[arg(long)]
    id: Option<String>,
    /// Print `{"code": …, "answer": …}` instead of the code alone.
    #[arg(long)]
    json: bool,
}

pub(crate) async fn run(a: SendArgs) -> anyhow::Result<()> {
    let target = Target::parse(&a.url)?;
    let hmac = signing_config(&a.secret);
    let id =
        a.id.unwrap_or_else(|| format!("msg_send_{}", uuid::Uuid::new_v4().simple()));
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64);
    let mut headers = sign_headers(&hmac, &a.secret, a.body.as_bytes(), now, &id);
    headers.push(("content-type".to_owned(), a.content_type));
    let mut slot = None;
    let (code, answer) = post(&mut slot, &target, &headers, Bytes::from(a.body), a.json).await;
    if a.json {
        println!("{}", serde_json::json!({"code": code, "answer": answer}));
    } else {
        println!("{code}");
    }
    Ok(())
}
