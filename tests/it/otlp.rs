//! With the `otlp` feature: spans are exported over OTLP/HTTP, and the message's `traceparent`
//! is the exported webhook span, a child of the webhook's own `traceparent`.
//! Run with `cargo test --features otlp --test it otlp`.

use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::routing::post;
use serde_json::Value;

use vx_testkit::{
    body_with, eventually, new_request_id, now, stream_of_name, test_config, BinaryBridge,
};
use vx_testkit::{NatsServer, Sender};

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
    let mut bridge = BinaryBridge::spawn(
        &cfg,
        &[(
            "VXB_LOG__OTLP_ENDPOINT",
            format!("http://{collector}/v1/traces"),
        )],
        Stdio::null(),
    );
    bridge.wait_ready().await;
    let base = bridge.base();
    let tp = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
    let body = body_with("PASS", &new_request_id());
    let res = Sender::to(format!("{base}{}", cfg.http.webhook_path), &cfg)
        .request("msg_otlp", &body, now())
        .header("traceparent", tp)
        .send()
        .await
        .unwrap();
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
    bridge.sigterm().await;
    // Protobuf carries trace and span ids as raw bytes: the exported webhook span has the
    // webhook's trace id, the carried span id, and the webhook's span as parent.
    let trace_id = hex::decode(&tp[3..35]).unwrap();
    let parent_id = hex::decode(&tp[36..52]).unwrap();
    let span_id = hex::decode(&carried[36..52]).unwrap();
    let contains = |hay: &[u8], needle: &[u8]| hay.windows(needle.len()).any(|w| w == needle);
    eventually(
        "an OTLP export of the webhook span",
        Duration::from_secs(10),
        async || {
            exports
                .lock()
                .unwrap()
                .iter()
                .any(|b| contains(b, &trace_id) && contains(b, &span_id) && contains(b, &parent_id))
        },
    )
    .await;
}
