//! With the `otlp` feature: spans are exported over OTLP/HTTP, and the message's `traceparent`
//! is the exported webhook span, a child of the webhook's own `traceparent`.
//! Run with `cargo test --features otlp --test it otlp`.

use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::routing::post;
use serde_json::Value;
use vx_bridge::auth::hmac::sign_headers;

use crate::common::{free_port, now, test_config, NatsServer, SECRET};
use crate::ingress::{body_with, new_request_id, stream_of_name};

#[tokio::test]
async fn spans_are_exported_and_the_webhook_trace_is_continued() {
    // A stand-in OTLP collector that keeps the (protobuf) export bodies.
    let exports: Arc<Mutex<Vec<Vec<u8>>>> = Arc::new(Mutex::new(Vec::new()));
    let kept = exports.clone();
    let app = axum::Router::new().route(
        "/v1/traces",
        post(move |body: axum::body::Bytes| {
            let kept = kept.clone();
            async move {
                kept.lock().unwrap().push(body.to_vec());
                ""
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let collector = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await });

    let nats = NatsServer::start();
    let cfg = test_config(&nats.url());
    let port = free_port();
    let mut child = Command::new(env!("CARGO_BIN_EXE_vx-bridge"))
        .arg("serve")
        .env("VXB_HTTP__LISTEN", format!("127.0.0.1:{port}"))
        .env("VXB_NATS__URL", nats.url())
        .env("VXB_NATS__SUBJECT_PREFIX", &cfg.nats.subject_prefix)
        .env("VXB_NATS__STREAM__NAME", &cfg.nats.stream.name)
        .env("VXB_WEBHOOK__AUTH__MODE", "hmac")
        .env(
            "VXB_WEBHOOK__AUTH__HMAC__SECRETS",
            format!("[\"{SECRET}\"]"),
        )
        .env(
            "VXB_LOG__OTLP_ENDPOINT",
            format!("http://{collector}/v1/traces"),
        )
        .env("VXB_LOG__LEVEL", "warn")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let http = reqwest::Client::new();
    let base = format!("http://127.0.0.1:{port}");
    let deadline = Instant::now() + Duration::from_secs(15);
    while http
        .get(format!("{base}/readyz"))
        .send()
        .await
        .map(|r| r.status() != 200)
        .unwrap_or(true)
    {
        assert!(Instant::now() < deadline, "not ready");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let tp = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
    let body = body_with("PASS", &new_request_id());
    let mut req = http
        .post(format!("{base}{}", cfg.http.webhook_path))
        .header("content-type", "application/json")
        .header("traceparent", tp)
        .body(body.clone());
    for (k, v) in sign_headers(&cfg.webhook.auth.hmac, SECRET, &body, now(), "msg_otlp") {
        req = req.header(k, v);
    }
    let res = req.send().await.unwrap();
    assert_eq!(res.status(), 202);
    let seq = res.json::<Value>().await.unwrap()["seq"].as_u64().unwrap();
    let stream = stream_of_name(&cfg.nats.stream.name, &nats.url()).await;
    let msg = stream.get_raw_message(seq).await.unwrap();
    let carried = msg.headers.get("traceparent").unwrap().as_str().to_owned();
    assert_eq!(&carried[..36], &tp[..36], "same trace: {carried}");
    assert_ne!(
        &carried[36..52],
        &tp[36..52],
        "the bridge's own span: {carried}"
    );

    // SIGTERM flushes the exporter.
    Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    let _ = child.wait();
    // Protobuf carries trace and span ids as raw bytes: the exported webhook span has the
    // webhook's trace id, the carried span id, and the webhook's span as parent.
    let trace_id = hex::decode(&tp[3..35]).unwrap();
    let parent_id = hex::decode(&tp[36..52]).unwrap();
    let span_id = hex::decode(&carried[36..52]).unwrap();
    let contains = |hay: &[u8], needle: &[u8]| hay.windows(needle.len()).any(|w| w == needle);
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let found =
            exports.lock().unwrap().iter().any(|b| {
                contains(b, &trace_id) && contains(b, &span_id) && contains(b, &parent_id)
            });
        if found {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "no OTLP export of the webhook span received"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}
