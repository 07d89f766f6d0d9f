//! The plain baselines: `echo` (a NATS responder with a fixed status-like reply) and `serve202`
//! (axum answering 202 to every POST after reading its body), and the timed HTTP server both
//! HTTP modes run on.

use std::time::Duration;

use bytes::Bytes;

#[derive(clap::Args)]
pub(crate) struct EchoArgs {
    /// NATS URL.
    #[arg(long, default_value = "nats://127.0.0.1:4222")]
    nats: String,
    /// Subject to answer.
    #[arg(long, default_value = "vxload.echo")]
    subject: String,
    /// Stop after this long.
    #[arg(long, default_value = "120s", value_parser = humantime::parse_duration)]
    duration: Duration,
}

#[derive(clap::Args)]
pub(crate) struct Serve202Args {
    /// Address to listen on (loopback).
    #[arg(long, default_value = "127.0.0.1:8090")]
    listen: std::net::SocketAddr,
    /// Stop after this long.
    #[arg(long, default_value = "120s", value_parser = humantime::parse_duration)]
    duration: Duration,
}

/// A reply of the size and shape of a status answer.
const ECHO_REPLY: &str = r#"{"request_id":"4ed2ec66-9471-415d-99ce-7bd1742fc2b8","current_status":"COMPLETED","checked_at":"2026-01-01T00:00:00.000Z","source":"cache"}"#;

pub(crate) async fn echo(a: EchoArgs) -> anyhow::Result<()> {
    use futures::StreamExt as _;
    let client = async_nats::connect(&a.nats).await?;
    let mut sub = client
        .queue_subscribe(a.subject.clone(), "vxload-echo".into())
        .await?;
    client.flush().await?;
    println!("echo: answering {}", a.subject);
    let reply = Bytes::from_static(ECHO_REPLY.as_bytes());
    let stop = tokio::time::sleep(a.duration);
    tokio::pin!(stop);
    let mut answered = 0u64;
    loop {
        tokio::select! {
            _ = &mut stop => break,
            _ = tokio::signal::ctrl_c() => break,
            m = sub.next() => match m {
                Some(m) => {
                    if let Some(to) = m.reply {
                        client.publish(to, reply.clone()).await?;
                        answered += 1;
                    }
                }
                None => break,
            }
        }
    }
    println!("echo: answered {answered}");
    Ok(())
}

pub(crate) async fn serve_until(
    listen: std::net::SocketAddr,
    router: axum::Router,
    duration: Duration,
) -> anyhow::Result<()> {
    let listener = tokio::net::TcpListener::bind(listen).await?;
    println!("listening on {}", listener.local_addr()?);
    axum::serve(listener, router)
        .with_graceful_shutdown(async move {
            tokio::select! {
                _ = tokio::time::sleep(duration) => {}
                _ = tokio::signal::ctrl_c() => {}
            }
        })
        .await?;
    Ok(())
}

pub(crate) async fn serve202(a: Serve202Args) -> anyhow::Result<()> {
    use axum::routing::post;
    async fn accept(body: Bytes) -> impl axum::response::IntoResponse {
        std::hint::black_box(&body);
        (
            http::StatusCode::ACCEPTED,
            [(http::header::CONTENT_TYPE, "application/json")],
            r#"{"event_id":"0b6f8c1e-0000-8000-8000-000000000000","subject":"verification.completed.pass","stream":"VERIFICATIONS","seq":1,"duplicate":false}"#,
        )
    }
    let router = axum::Router::new().route("/{*path}", post(accept));
    serve_until(a.listen, router, a.duration).await
}
