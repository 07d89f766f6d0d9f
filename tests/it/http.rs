//! The HTTP layer outside the webhook handler: idle connections of both protocols are closed
//! and the router's own refusals are problems.

use std::time::Duration;

use http_body_util::Empty;
use hyper_util::rt::{TokioExecutor, TokioIo};
use reqwest::StatusCode;
use serde_json::Value;
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};

use vx_testkit::{test_config, Bridge, NatsServer};

#[tokio::test]
async fn idle_http2_connections_are_closed_after_the_header_timeout() {
    // Regression: a client that completed the h2 preface, answered SETTINGS and PINGs and sent
    // no request kept its connection: 300 of 300 still open after 180 s.
    let nats = NatsServer::start();
    let mut config = test_config(&nats.url());
    config.http.header_timeout = Duration::from_secs(1);
    let bridge = Bridge::start(config).await;
    let mut connections = Vec::new();
    let mut senders = Vec::new();
    for i in 0..20 {
        let tcp = tokio::net::TcpStream::connect(bridge.addr).await.unwrap();
        let (mut send, conn) = hyper::client::conn::http2::handshake::<_, _, Empty<bytes::Bytes>>(
            TokioExecutor::new(),
            TokioIo::new(tcp),
        )
        .await
        .expect("h2c prior-knowledge handshake");
        let conn = tokio::spawn(conn);
        if i == 0 {
            // h2c works: one request, then idle.
            let req = http::Request::get(bridge.url("/healthz"))
                .body(Empty::new())
                .unwrap();
            let res = send.send_request(req).await.unwrap();
            assert_eq!(res.status(), 200);
        }
        senders.push(send);
        connections.push(conn);
    }
    for (i, conn) in connections.into_iter().enumerate() {
        let ended = tokio::time::timeout(Duration::from_secs(10), conn).await;
        assert!(
            ended.is_ok(),
            "idle h2 connection {i} still open after 10 s"
        );
    }
}

#[tokio::test]
async fn idle_http1_keep_alive_connections_are_closed_too() {
    let nats = NatsServer::start();
    let mut config = test_config(&nats.url());
    config.http.header_timeout = Duration::from_secs(1);
    let bridge = Bridge::start(config).await;
    let mut tcp = tokio::net::TcpStream::connect(bridge.addr).await.unwrap();
    tcp.write_all(b"GET /healthz HTTP/1.1\r\nhost: x\r\n\r\n")
        .await
        .unwrap();
    let mut buf = vec![0u8; 4096];
    let read = tokio::time::timeout(Duration::from_secs(10), async {
        let mut all = Vec::new();
        loop {
            match tcp.read(&mut buf).await {
                Ok(0) | Err(_) => return all,
                Ok(n) => all.extend_from_slice(&buf[..n]),
            }
        }
    })
    .await
    .expect("keep-alive connection closed after the header timeout");
    assert!(
        read.starts_with(b"HTTP/1.1 200"),
        "{}",
        String::from_utf8_lossy(&read)
    );
}

async fn assert_problem(
    res: reqwest::Response,
    status: StatusCode,
    slug: &str,
) -> reqwest::header::HeaderMap {
    assert_eq!(res.status(), status);
    let headers = res.headers().clone();
    assert_eq!(headers["content-type"], "application/problem+json");
    let p: Value = res.json().await.unwrap();
    assert_eq!(p["type"], format!("urn:vx-bridge:problem:{slug}"));
    assert_eq!(p["status"], status.as_u16());
    assert!(p["title"].is_string() && p["detail"].is_string());
    headers
}

#[tokio::test]
async fn unknown_paths_and_methods_answer_problem_json_and_405_keeps_allow() {
    // Regression: 404 and 405 had an empty body and no content type.
    let nats = NatsServer::start();
    let bridge = Bridge::start(test_config(&nats.url())).await;
    let http = reqwest::Client::new();
    let res = http.get(bridge.url("/nope")).send().await.unwrap();
    assert_problem(res, StatusCode::NOT_FOUND, "not-found").await;
    let res = http
        .post(bridge.url("/nope"))
        .body("{}")
        .send()
        .await
        .unwrap();
    assert_problem(res, StatusCode::NOT_FOUND, "not-found").await;
    let res = http.get(bridge.webhook_url()).send().await.unwrap();
    let h = assert_problem(res, StatusCode::METHOD_NOT_ALLOWED, "method-not-allowed").await;
    assert_eq!(h["allow"], "POST");
    let res = http.delete(bridge.url("/healthz")).send().await.unwrap();
    let h = assert_problem(res, StatusCode::METHOD_NOT_ALLOWED, "method-not-allowed").await;
    assert!(h["allow"].to_str().unwrap().contains("GET"));
    // What still answers as before.
    let res = http.get(bridge.url("/healthz")).send().await.unwrap();
    assert_eq!(res.status(), 200);
    assert_eq!(res.text().await.unwrap(), "ok");
}

#[tokio::test]
async fn oversized_heads_are_refused_by_the_http_layer_with_431_and_no_body() {
    // Documented in openapi.yaml: framing errors are answered by hyper before any handler
    // runs, so they cannot carry a problem body.
    let nats = NatsServer::start();
    let bridge = Bridge::start(test_config(&nats.url())).await;
    let mut tcp = tokio::net::TcpStream::connect(bridge.addr).await.unwrap();
    let head = format!(
        "GET /healthz HTTP/1.1\r\nhost: x\r\nx-big: {}\r\n\r\n",
        "a".repeat(vx_bridge::server::READ_BUFFER_BYTES + 1)
    );
    let _ = tcp.write_all(head.as_bytes()).await;
    let mut out = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(10), tcp.read_to_end(&mut out)).await;
    let text = String::from_utf8_lossy(&out);
    assert!(text.starts_with("HTTP/1.1 431"), "{text}");
}
