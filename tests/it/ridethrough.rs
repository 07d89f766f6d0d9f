//! Riding through NATS outages (`nats.outage_wait`): webhooks sent while NATS is down wait and
//! are answered 202 once it is back; beyond the wait, 503 and nothing lost; shutdown answers a
//! waiting webhook 503 at once. The bridge runs as a process, so its metrics are its own.

use std::process::Stdio;
use std::time::{Duration, Instant};

use async_nats::jetstream;
use reqwest::StatusCode;
use serde_json::Value;
use vx_bridge::config::Config;

use vx_testkit::{
    body_with, eventually, new_request_id, readyz, scraped_value, test_config, wait_for_metric,
    BinaryBridge, NatsServer, Sender,
};

/// Posts a signed webhook; `Err` when no HTTP answer came.
async fn send(
    bridge: &BinaryBridge,
    cfg: &Config,
    id: &str,
    body: &[u8],
) -> Result<reqwest::Response, reqwest::Error> {
    Sender::to(format!("{}{}", bridge.base(), cfg.http.webhook_path), cfg)
        .try_send(id, body)
        .await
}

/// The value of `name{labels}` in the bridge's scrape now.
async fn metric(bridge: &BinaryBridge, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
    scraped_value(&bridge.base(), name, labels).await
}

/// Waits up to 20 s until the unlabelled series `name` has `value`.
async fn wait_metric(bridge: &BinaryBridge, name: &str, value: f64) {
    wait_for_metric(&bridge.base(), name, &[], value, Duration::from_secs(20)).await;
}

/// Waits up to 10 s until the bridge reports NATS disconnected.
async fn wait_disconnected(bridge: &BinaryBridge) {
    eventually(
        "/readyz to report NATS disconnected after the kill",
        Duration::from_secs(10),
        async || {
            readyz(&bridge.base())
                .await
                .is_some_and(|(_, v)| v["nats_connected"] == false)
        },
    )
    .await;
}

const IN_FLIGHT: &str = "vx_bridge_webhooks_in_flight";
const WAITS: &str = "vx_bridge_publish_outage_waits_total";

/// Checks that the message at `seq` is delivery `id` (its `Nats-Msg-Id` is the delivery id bound
/// to the body) and the event the 202 named.
async fn assert_stored_at(
    js: &jetstream::Context,
    stream: &str,
    seq: u64,
    id: &str,
    accepted: &Value,
) {
    let msg = js
        .get_stream(stream)
        .await
        .unwrap()
        .get_raw_message(seq)
        .await
        .unwrap();
    let header = |k: &str| {
        msg.headers
            .get(k)
            .map(|h| h.as_str().to_owned())
            .unwrap_or_default()
    };
    assert!(
        header("Nats-Msg-Id").starts_with(&format!("{id}:")),
        "{id} at {seq}: {}",
        header("Nats-Msg-Id")
    );
    assert_eq!(
        header("ce-id"),
        accepted["event_id"].as_str().unwrap(),
        "{id}"
    );
}

#[tokio::test]
async fn webhooks_sent_while_nats_restarts_within_outage_wait_all_get_202_and_are_stored() {
    let mut nats = NatsServer::start();
    let cfg = test_config(&nats.url());
    const WAITING: usize = 8;
    // A generous wait: the outage here lasts as long as this test takes to restart NATS.
    let bridge = BinaryBridge::spawn(
        &cfg,
        &[
            ("VXB_NATS__OUTAGE_WAIT", "30s".into()),
            ("VXB_HTTP__MAX_IN_FLIGHT", WAITING.to_string()),
        ],
        Stdio::null(),
    );
    bridge.wait_ready().await;
    let first = send(
        &bridge,
        &cfg,
        "msg_before",
        &body_with("PASS", &new_request_id()),
    )
    .await
    .unwrap();
    assert_eq!(first.status(), StatusCode::ACCEPTED);

    nats.kill();
    wait_disconnected(&bridge).await;
    let bridge = std::sync::Arc::new(bridge);
    let mut waiting = Vec::new();
    for i in 0..WAITING {
        let (bridge, cfg) = (bridge.clone(), cfg.clone());
        waiting.push(tokio::spawn(async move {
            let id = format!("msg_wait_{i}");
            let res = send(&bridge, &cfg, &id, &body_with("PASS", &new_request_id()))
                .await
                .expect("an answer");
            (id, res.status(), res.json::<Value>().await.unwrap())
        }));
    }
    // Every one of them is inside the bridge, waiting, while NATS is down.
    wait_metric(&bridge, IN_FLIGHT, WAITING as f64).await;
    // Waiting webhooks keep their in-flight slot: one more is refused with 429, as before.
    let over = send(
        &bridge,
        &cfg,
        "msg_over",
        &body_with("PASS", &new_request_id()),
    )
    .await
    .unwrap();
    assert_eq!(over.status(), StatusCode::TOO_MANY_REQUESTS);
    assert!(over.headers().contains_key("retry-after"));

    nats.restart();
    let js = jetstream::new(async_nats::connect(nats.url()).await.unwrap());
    for task in waiting {
        let (id, status, body) = task.await.unwrap();
        assert_eq!(status, StatusCode::ACCEPTED, "{id}: {body}");
        let seq = body["seq"].as_u64().expect("seq in the 202");
        assert_stored_at(&js, &cfg.nats.stream.name, seq, &id, &body).await;
    }
    let mut stream = js.get_stream(&cfg.nats.stream.name).await.unwrap();
    assert_eq!(
        stream.info().await.unwrap().state.messages,
        1 + WAITING as u64
    );
    assert_eq!(
        metric(&bridge, WAITS, &[("result", "stored")]).await,
        Some(WAITING as f64)
    );
    assert_eq!(
        metric(&bridge, WAITS, &[("result", "gave_up")]).await,
        Some(0.0)
    );
    assert_eq!(
        metric(
            &bridge,
            "vx_bridge_webhooks_total",
            &[("outcome", "unavailable")]
        )
        .await,
        None,
        "no 503 at all"
    );
}

#[tokio::test]
async fn an_outage_longer_than_outage_wait_answers_503_after_it_and_the_retry_is_stored_once() {
    let mut nats = NatsServer::start();
    let cfg = test_config(&nats.url());
    let wait = Duration::from_secs(1);
    let bridge = BinaryBridge::spawn(
        &cfg,
        &[("VXB_NATS__OUTAGE_WAIT", "1s".into())],
        Stdio::null(),
    );
    bridge.wait_ready().await;
    nats.kill();
    wait_disconnected(&bridge).await;
    let body = body_with("PASS", &new_request_id());
    let started = Instant::now();
    let res = send(&bridge, &cfg, "msg_long", &body).await.unwrap();
    let took = started.elapsed();
    assert_eq!(res.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(res.headers()["retry-after"], "5");
    // It waited out the outage_wait before giving up.
    assert!(took >= wait, "answered after {took:?}");
    assert_eq!(
        metric(&bridge, WAITS, &[("result", "gave_up")]).await,
        Some(1.0)
    );

    nats.restart();
    bridge.wait_ready().await;
    // The sender retries the same delivery: stored, once.
    let retry = send(&bridge, &cfg, "msg_long", &body).await.unwrap();
    assert_eq!(retry.status(), StatusCode::ACCEPTED);
    let v: Value = retry.json().await.unwrap();
    let js = jetstream::new(async_nats::connect(nats.url()).await.unwrap());
    let seq = v["seq"].as_u64().unwrap();
    assert_stored_at(&js, &cfg.nats.stream.name, seq, "msg_long", &v).await;
    let mut stream = js.get_stream(&cfg.nats.stream.name).await.unwrap();
    assert_eq!(stream.info().await.unwrap().state.messages, 1);
}

#[tokio::test]
async fn shutdown_answers_webhooks_waiting_out_an_outage_503_at_once() {
    let mut nats = NatsServer::start();
    let cfg = test_config(&nats.url());
    // Neither the wait nor the shutdown timeout ends within the 20 s `sigterm` allows: only
    // the shutdown token answering the waiting webhooks lets the process exit in time.
    let mut bridge = BinaryBridge::spawn(
        &cfg,
        &[
            ("VXB_NATS__OUTAGE_WAIT", "120s".into()),
            ("VXB_HTTP__SHUTDOWN_TIMEOUT", "60s".into()),
        ],
        Stdio::null(),
    );
    bridge.wait_ready().await;
    nats.kill();
    wait_disconnected(&bridge).await;
    let url = format!("{}{}", bridge.base(), cfg.http.webhook_path);
    let mut waiting = Vec::new();
    for i in 0..3 {
        let sender = Sender::to(url.clone(), &cfg);
        waiting.push(tokio::spawn(async move {
            let body = body_with("PASS", &new_request_id());
            let res = sender
                .try_send(&format!("msg_sd_{i}"), &body)
                .await
                .expect("an answer before the process exits");
            let retry_after = res.headers().get("retry-after").cloned();
            (
                res.status(),
                retry_after,
                res.text().await.unwrap_or_default(),
            )
        }));
    }
    wait_metric(&bridge, IN_FLIGHT, 3.0).await;
    let status = bridge.sigterm().await;
    assert!(status.success(), "exit status {status:?}");
    for task in waiting {
        let (code, retry_after, body) = task.await.unwrap();
        assert_eq!(code, StatusCode::SERVICE_UNAVAILABLE, "{body}");
        assert!(retry_after.is_some(), "503 without Retry-After");
        assert!(body.contains("shutting_down"), "{body}");
    }
}

#[tokio::test]
async fn a_deleted_stream_is_recreated_while_the_webhook_waits_and_it_gets_202() {
    use vx_testkit::Bridge;
    use vx_testkit::Sender;
    let nats = NatsServer::start();
    // The default outage_wait (5 s); the keeper recreates the stream within about a second.
    let bridge = Bridge::start(test_config(&nats.url())).await;
    let js = jetstream::new(async_nats::connect(nats.url()).await.unwrap());
    js.delete_stream(&bridge.config.nats.stream.name)
        .await
        .unwrap();
    let res = Sender::new(&bridge)
        .send("msg_recreated", &body_with("PASS", &new_request_id()))
        .await;
    assert_eq!(res.status(), StatusCode::ACCEPTED);
    let v: Value = res.json().await.unwrap();
    let seq = v["seq"].as_u64().unwrap();
    assert_stored_at(
        &js,
        &bridge.config.nats.stream.name,
        seq,
        "msg_recreated",
        &v,
    )
    .await;
}
