//! The webhook path end to end: every HTTP answer, every subject, headers, dedup, rejected
//! bodies, NATS outages and the stream contract, against a real nats-server.

use std::time::Duration;

use async_nats::jetstream;
use reqwest::StatusCode;
use serde_json::{json, Value};
use vx_bridge::schema::Schemas;

use vx_testkit::{
    body_with, eventually, eventually_some, message_count, new_request_id, now, scrape,
    stream_lookups, stream_of, test_config, Bridge, NatsServer, Sender, WRONG_SECRET,
};

async fn problem(res: reqwest::Response, status: StatusCode) -> Value {
    assert_eq!(res.status(), status);
    assert_eq!(
        res.headers()["content-type"].to_str().unwrap(),
        "application/problem+json"
    );
    let p: Value = res.json().await.unwrap();
    assert_eq!(p["status"], status.as_u16());
    assert!(p["type"]
        .as_str()
        .unwrap()
        .starts_with("urn:vx-bridge:problem:"));
    assert!(p["title"].is_string() && p["detail"].is_string());
    p
}

#[tokio::test]
async fn each_status_is_published_on_its_subject_with_headers_and_a_valid_envelope() {
    let nats = NatsServer::start();
    let bridge = Bridge::start(test_config(&nats.url())).await;
    let sender = Sender::new(&bridge);
    let stream = stream_of(&bridge, &nats.url()).await;
    let prefix = bridge.config.nats.subject_prefix.clone();
    let cases = [
        ("PASS", "completed.pass"),
        ("FAIL", "completed.fail"),
        ("PENDING", "pending"),
        ("", "pending"),
        ("ON HOLD", "unrecognized"),
    ];
    for (i, (status, suffix)) in cases.iter().enumerate() {
        let rid = new_request_id();
        let mut body: Value = serde_json::from_slice(&body_with(status, &rid)).unwrap();
        body["a_field_from_the_future"] = json!({"kept": [1, 2.5, null]});
        let raw = serde_json::to_vec(&body).unwrap();
        let res = sender.send(&format!("msg_{i}"), &raw).await;
        assert_eq!(res.status(), StatusCode::ACCEPTED, "{status}");
        let accepted: Value = res.json().await.unwrap();
        let subject = format!("{prefix}.{suffix}");
        assert_eq!(accepted["subject"], subject.as_str());
        assert_eq!(accepted["stream"], bridge.config.nats.stream.name.as_str());
        assert_eq!(accepted["duplicate"], false);
        let seq = accepted["seq"].as_u64().unwrap();
        let msg = stream.get_raw_message(seq).await.unwrap();
        assert_eq!(msg.subject.as_str(), subject);
        let event: Value = serde_json::from_slice(&msg.payload).unwrap();
        assert_eq!(Schemas::get().check_event(&event), Ok(()), "{event}");
        assert_eq!(event["schema_version"], 2, "encrypted by default");
        assert!(event.get("result").is_none(), "no body in clear");
        let client = async_nats::connect(nats.url()).await.unwrap();
        let opened = vx_testkit::event_result(&bridge.config, &client, &msg.payload).await;
        assert_eq!(opened, body, "result_encrypted carries the body unchanged");
        assert_eq!(event["type"], *suffix);
        assert_eq!(event["status"], *status);
        assert_eq!(event["event_id"], accepted["event_id"]);
        let h = |k: &str| msg.headers.get(k).map(|v| v.as_str().to_owned());
        assert_eq!(
            h("Nats-Msg-Id"),
            Some(vx_bridge::event::delivery_msg_id(&format!("msg_{i}"), &raw))
        );
        assert_eq!(h("ce-specversion").as_deref(), Some("1.0"));
        assert_eq!(h("ce-id"), accepted["event_id"].as_str().map(str::to_owned));
        assert_eq!(h("ce-type"), Some(format!("vx.verification.{suffix}")));
        assert_eq!(h("ce-subject").as_deref(), Some(rid.as_str()));
        assert_eq!(h("ce-datacontenttype").as_deref(), Some("application/json"));
        assert_eq!(
            h("ce-time"),
            event["received_at"].as_str().map(str::to_owned)
        );
        assert!(h("ce-source").is_some());
        // The view's fields, as the envelope has them.
        let view: Value = serde_json::from_str(&h("vx-view").expect("vx-view")).unwrap();
        assert_eq!(view["status"], event["status"]);
        assert_eq!(view["reference"], event["reference"]);
        assert_eq!(view["stops"], event["progress"]["stops"]);
        assert_eq!(view.as_object().unwrap().len(), 3, "{view}");
    }
    bridge.stop().await.unwrap();
}

#[tokio::test]
async fn traceparent_is_continued_into_the_message() {
    let nats = NatsServer::start();
    let bridge = Bridge::start(test_config(&nats.url())).await;
    let sender = Sender::new(&bridge);
    let tp = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
    let res = sender
        .send_with(
            "msg_tp",
            &body_with("PASS", &new_request_id()),
            now(),
            &[("traceparent", tp), ("tracestate", "vx=1")],
        )
        .await;
    assert_eq!(res.status(), StatusCode::ACCEPTED);
    let seq = res.json::<Value>().await.unwrap()["seq"].as_u64().unwrap();
    let msg = stream_of(&bridge, &nats.url())
        .await
        .get_raw_message(seq)
        .await
        .unwrap();
    let carried = msg
        .headers
        .get("traceparent")
        .map(|v| v.as_str().to_owned())
        .unwrap();
    assert_eq!(
        &carried[..36],
        &tp[..36],
        "the webhook's trace is continued: {carried}"
    );
    assert_ne!(carried, tp, "with our own span id");
    assert_eq!(
        msg.headers.get("tracestate").map(|v| v.as_str()),
        Some("vx=1")
    );
}

#[tokio::test]
async fn one_delivery_sent_three_times_is_stored_once() {
    let nats = NatsServer::start();
    let bridge = Bridge::start(test_config(&nats.url())).await;
    let sender = Sender::new(&bridge);
    let mut stream = stream_of(&bridge, &nats.url()).await;
    let body = body_with("PASS", &new_request_id());
    let mut answers = Vec::new();
    for _ in 0..3 {
        let res = sender.send("msg_retried", &body).await;
        assert_eq!(res.status(), StatusCode::ACCEPTED);
        answers.push(res.json::<Value>().await.unwrap());
    }
    assert_eq!(answers[0]["duplicate"], false);
    for a in &answers[1..] {
        assert_eq!(a["duplicate"], true);
        assert_eq!(a["event_id"], answers[0]["event_id"]);
        assert_eq!(a["seq"], answers[0]["seq"]);
    }
    // Concurrently, as a sender's parallel retries would.
    let body2 = body_with("FAIL", &new_request_id());
    let futs = (0..3).map(|_| sender.send("msg_concurrent", &body2));
    let results = futures::future::join_all(futs).await;
    let mut dup = 0;
    for r in results {
        assert_eq!(r.status(), StatusCode::ACCEPTED);
        if r.json::<Value>().await.unwrap()["duplicate"] == true {
            dup += 1;
        }
    }
    assert_eq!(dup, 2);
    assert_eq!(message_count(&mut stream).await, 2);
}

/// The stored message at `seq`: its subject and the `result` it carries.
/// The subject of the message at `seq` and the body it carries (decrypted with the test KEK).
async fn stored_at(bridge: &Bridge, nats_url: &str, seq: u64) -> (String, Value) {
    let stream = stream_of(bridge, nats_url).await;
    let msg = stream.get_raw_message(seq).await.expect("stored message");
    let client = async_nats::connect(nats_url).await.expect("connect");
    let result = vx_testkit::event_result(&bridge.config, &client, &msg.payload).await;
    (msg.subject.to_string(), result)
}

#[tokio::test]
async fn a_reused_delivery_id_with_another_body_is_stored_and_the_202_names_it() {
    // Regression: PENDING then FAIL under one webhook-id: the FAIL got 202 duplicate with the
    // PENDING event's sequence, and was lost.
    let nats = NatsServer::start();
    let bridge = Bridge::start(test_config(&nats.url())).await;
    let sender = Sender::new(&bridge);
    let id = new_request_id();
    let pending = body_with("PENDING", &id);
    let fail = body_with("FAIL", &id);
    let first: Value = sender
        .send("msg_reused", &pending)
        .await
        .json()
        .await
        .unwrap();
    let res = sender.send("msg_reused", &fail).await;
    assert_eq!(res.status(), StatusCode::ACCEPTED);
    let second: Value = res.json().await.unwrap();
    assert_eq!(second["duplicate"], false, "{second}");
    assert_ne!(second["seq"], first["seq"]);
    let prefix = &bridge.config.nats.subject_prefix;
    for (answer, body) in [(&first, &pending), (&second, &fail)] {
        let (subject, result) =
            stored_at(&bridge, &nats.url(), answer["seq"].as_u64().unwrap()).await;
        assert_eq!(
            answer["subject"],
            subject.as_str(),
            "the 202 names the stored subject"
        );
        assert_eq!(
            result,
            serde_json::from_slice::<Value>(body).unwrap(),
            "and that message holds this body"
        );
    }
    assert_eq!(second["subject"], format!("{prefix}.completed.fail"));
    // A retry of the FAIL is still recognised.
    let retry: Value = sender.send("msg_reused", &fail).await.json().await.unwrap();
    assert_eq!(retry["duplicate"], true);
    assert_eq!(retry["seq"], second["seq"]);
}

#[tokio::test]
async fn without_a_delivery_id_the_canonical_body_hash_deduplicates() {
    let nats = NatsServer::start();
    let mut config = test_config(&nats.url());
    config.webhook.auth.hmac.scheme = vx_bridge::config::HmacScheme::Hex;
    let bridge = Bridge::start(config).await;
    let sender = Sender::new(&bridge);
    let mut stream = stream_of(&bridge, &nats.url()).await;
    let rid = new_request_id();
    let compact =
        serde_json::to_vec(&serde_json::from_slice::<Value>(&body_with("PENDING", &rid)).unwrap())
            .unwrap();
    let pretty = body_with("PENDING", &rid);
    let first = sender
        .send("", &compact)
        .await
        .json::<Value>()
        .await
        .unwrap();
    let second = sender
        .send("", &pretty)
        .await
        .json::<Value>()
        .await
        .unwrap();
    assert_eq!(first["duplicate"], false);
    assert_eq!(
        second["duplicate"], true,
        "same JSON, other whitespace: same event"
    );
    // The next journey step (a changed body) is a new event.
    let third = sender
        .send("", &body_with("PASS", &rid))
        .await
        .json::<Value>()
        .await
        .unwrap();
    assert_eq!(third["duplicate"], false);
    assert_eq!(message_count(&mut stream).await, 2);
    // Every 202 names a message that holds this body's JSON (schemes without a delivery id).
    for (answer, body) in [
        (&first, &compact),
        (&second, &pretty),
        (&third, &body_with("PASS", &rid)),
    ] {
        let (subject, result) =
            stored_at(&bridge, &nats.url(), answer["seq"].as_u64().unwrap()).await;
        assert_eq!(answer["subject"], subject.as_str());
        assert_eq!(result, serde_json::from_slice::<Value>(body).unwrap());
    }
}

#[tokio::test]
async fn bad_signatures_are_refused_and_never_published() {
    let nats = NatsServer::start();
    let bridge = Bridge::start(test_config(&nats.url())).await;
    let sender = Sender::new(&bridge);
    let mut stream = stream_of(&bridge, &nats.url()).await;
    let body = body_with("PASS", &new_request_id());
    let http = reqwest::Client::new();

    // Tampered body: signed one thing, sent another.
    let req = sender.request("msg_x", &body, now());
    let tampered = body_with("FAIL", "4ed2ec66-9471-415d-99ce-7bd1742fc2b8");
    let p = problem(
        req.body(tampered).send().await.unwrap(),
        StatusCode::UNAUTHORIZED,
    )
    .await;
    assert_eq!(p["detail"], "signature does not match");

    // Wrong secret.
    let req = sender
        .clone()
        .with_secret(WRONG_SECRET)
        .request("msg_y", &body, now());
    problem(
        req.body(body.clone()).send().await.unwrap(),
        StatusCode::UNAUTHORIZED,
    )
    .await;

    // Expired and future timestamps.
    for at in [now() - 3600, now() + 3600] {
        let p = problem(
            sender.send_with("msg_t", &body, at, &[]).await,
            StatusCode::UNAUTHORIZED,
        )
        .await;
        assert!(p["detail"].as_str().unwrap().contains("tolerance"), "{p}");
    }
    // No signature at all.
    let res = http
        .post(bridge.webhook_url())
        .header("content-type", "application/json")
        .body(body.clone())
        .send()
        .await
        .unwrap();
    let p = problem(res, StatusCode::UNAUTHORIZED).await;
    assert!(
        p["detail"].as_str().unwrap().contains("missing header"),
        "{p}"
    );
    // Invalid JSON with no signature is refused before parsing: 401, not 400.
    let res = http
        .post(bridge.webhook_url())
        .header("content-type", "application/json")
        .body("{nope")
        .send()
        .await
        .unwrap();
    problem(res, StatusCode::UNAUTHORIZED).await;

    assert_eq!(
        message_count(&mut stream).await,
        0,
        "nothing forged reaches the stream"
    );
}

#[tokio::test]
async fn every_error_row_of_the_http_table_answers_problem_json() {
    let nats = NatsServer::start();
    let mut config = test_config(&nats.url());
    config.http.max_body_bytes = 64 * 1024;
    let bridge = Bridge::start(config).await;
    let sender = Sender::new(&bridge);
    let mut stream = stream_of(&bridge, &nats.url()).await;
    let http = reqwest::Client::new();
    let prefix = bridge.config.nats.subject_prefix.clone();

    // 413 by Content-Length, and by a chunked body without one.
    let big = vec![b' '; 64 * 1024 + 1];
    problem(
        sender.send("msg_big", &big).await,
        StatusCode::PAYLOAD_TOO_LARGE,
    )
    .await;
    let chunks: Vec<Result<Vec<u8>, std::io::Error>> =
        (0..70).map(|_| Ok(vec![b' '; 1024])).collect();
    let res = http
        .post(bridge.webhook_url())
        .header("content-type", "application/json")
        .body(reqwest::Body::wrap_stream(futures::stream::iter(chunks)))
        .send()
        .await
        .unwrap();
    problem(res, StatusCode::PAYLOAD_TOO_LARGE).await;

    // 415: missing and wrong content type.
    let body = body_with("PASS", &new_request_id());
    let res = http
        .post(bridge.webhook_url())
        .body(body.clone())
        .send()
        .await
        .unwrap();
    problem(res, StatusCode::UNSUPPORTED_MEDIA_TYPE).await;
    let res = http
        .post(bridge.webhook_url())
        .header("content-type", "text/plain")
        .body(body.clone())
        .send()
        .await
        .unwrap();
    problem(res, StatusCode::UNSUPPORTED_MEDIA_TYPE).await;

    // 400: authenticated, but not JSON. Kept on `rejected` with the raw bytes.
    let not_json =
        b"{\"request_id\": \"4ed2ec66-9471-415d-99ce-7bd1742fc2b8\", \"status\": PASS}".to_vec();
    let p = problem(
        sender.send("msg_not_json", &not_json).await,
        StatusCode::BAD_REQUEST,
    )
    .await;
    assert!(p["detail"].as_str().unwrap().contains("not valid JSON"));
    let kept = stream
        .get_last_raw_message_by_subject(&format!("{prefix}.rejected"))
        .await
        .unwrap();
    let client = async_nats::connect(nats.url()).await.unwrap();
    assert_eq!(
        vx_testkit::rejected_body(&bridge.config, &client, Some(&kept.headers), &kept.payload)
            .await,
        not_json,
        "the kept copy opens to the raw bytes"
    );
    assert_ne!(&kept.payload[..], &not_json[..], "and is not in clear");
    assert_eq!(
        kept.headers.get("vx-reject-reason").map(|v| v.as_str()),
        Some("invalid_json")
    );

    // 422: JSON that fails the schema, with every violation listed.
    let bad = json!({"request_id": "../../etc/passwd", "status": 7, "dob": 19700101});
    let raw = serde_json::to_vec(&bad).unwrap();
    let p = problem(
        sender.send("msg_schema", &raw).await,
        StatusCode::UNPROCESSABLE_ENTITY,
    )
    .await;
    let errors = p["errors"].as_array().unwrap();
    let paths: Vec<&str> = errors
        .iter()
        .map(|e| e["instance_path"].as_str().unwrap())
        .collect();
    for want in ["/request_id", "/status", "/dob"] {
        assert!(paths.contains(&want), "{paths:?}");
    }
    for e in errors {
        assert!(e["message"].is_string());
        assert!(
            !e["message"].as_str().unwrap().contains("19700101"),
            "no values echoed: {e}"
        );
    }
    let kept = stream
        .get_last_raw_message_by_subject(&format!("{prefix}.rejected"))
        .await
        .unwrap();
    assert_eq!(
        vx_testkit::rejected_body(&bridge.config, &client, Some(&kept.headers), &kept.payload)
            .await,
        raw
    );
    assert_eq!(
        kept.headers.get("vx-reject-reason").map(|v| v.as_str()),
        Some("schema_violation")
    );
    assert!(kept
        .headers
        .get("vx-reject-errors")
        .unwrap()
        .as_str()
        .contains("/request_id"));

    // Only the two rejected bodies were stored.
    assert_eq!(message_count(&mut stream).await, 2);
}

#[tokio::test]
async fn over_the_in_flight_limit_answers_429_with_retry_after() {
    let nats = NatsServer::start();
    let mut config = test_config(&nats.url());
    config.http.max_in_flight = 1;
    let bridge = Bridge::start(config).await;
    let sender = Sender::new(&bridge);
    // Hold the only slot with a body that never finishes.
    let (tx, rx) = futures::channel::mpsc::unbounded::<Result<Vec<u8>, std::io::Error>>();
    tx.unbounded_send(Ok(b"{".to_vec())).unwrap();
    let http = reqwest::Client::new();
    let url = bridge.webhook_url();
    let slow = tokio::spawn(async move {
        http.post(url)
            .header("content-type", "application/json")
            .body(reqwest::Body::wrap_stream(rx))
            .send()
            .await
    });
    // Until the slow request holds the slot, a probe may still pass; poll until it is refused.
    let body = body_with("PASS", &new_request_id());
    let res = eventually_some(
        "a 429 while the slot is held",
        Duration::from_secs(10),
        async || {
            let res = sender.send("msg_429", &body).await;
            (res.status() == StatusCode::TOO_MANY_REQUESTS).then_some(res)
        },
    )
    .await;
    assert_eq!(res.headers()["retry-after"], "5");
    problem(res, StatusCode::TOO_MANY_REQUESTS).await;
    drop(tx);
    let _ = slow.await;
    // With the slot free again, the same delivery is stored.
    assert_eq!(
        sender.send("msg_429", &body).await.status(),
        StatusCode::ACCEPTED
    );
}

#[tokio::test]
async fn nats_down_answers_503_and_recovers_without_a_restart() {
    let mut nats = NatsServer::start();
    let mut config = test_config(&nats.url());
    // Fail fast, as without riding through (tests/it/ridethrough.rs covers the wait).
    config.nats.outage_wait = Duration::ZERO;
    let bridge = Bridge::start(config).await;
    let sender = Sender::new(&bridge);
    let body = body_with("PASS", &new_request_id());
    assert_eq!(
        sender.send("msg_before", &body).await.status(),
        StatusCode::ACCEPTED
    );

    nats.kill();
    // Every answer while NATS is down is a retryable 503, never a 2xx.
    let mut saw_503 = 0;
    for i in 0..20 {
        let res = sender
            .send(
                &format!("msg_down_{i}"),
                &body_with("PASS", &new_request_id()),
            )
            .await;
        assert_ne!(res.status().as_u16() / 100, 2, "2xx while NATS is down");
        if res.status() == StatusCode::SERVICE_UNAVAILABLE {
            assert!(res.headers().contains_key("retry-after"));
            problem(res, StatusCode::SERVICE_UNAVAILABLE).await;
            saw_503 += 1;
        }
    }
    assert_eq!(saw_503, 20);
    let ready = reqwest::get(bridge.url("/readyz")).await.unwrap();
    assert_eq!(ready.status(), StatusCode::SERVICE_UNAVAILABLE);

    nats.restart();
    // The same bridge stores again once the client has reconnected.
    let after = body_with("PASS", &new_request_id());
    eventually(
        "a 202 after NATS is back (recovery)",
        Duration::from_secs(15),
        async || {
            let res = sender.send("msg_after", &after).await;
            if res.status() == StatusCode::ACCEPTED {
                return true;
            }
            assert_eq!(res.status(), StatusCode::SERVICE_UNAVAILABLE);
            false
        },
    )
    .await;
    bridge.wait_ready().await;
    // The event stored before the outage survived it (file store).
    let mut stream = stream_of(&bridge, &nats.url()).await;
    assert_eq!(message_count(&mut stream).await, 2);
}

#[tokio::test]
async fn a_request_subject_is_not_answered_by_the_stream() {
    let nats = NatsServer::start();
    let bridge = Bridge::start(test_config(&nats.url())).await;
    let client = async_nats::connect(nats.url()).await.unwrap();
    let subject = format!("{}.status.get", bridge.config.nats.subject_prefix);
    let res = client.request(subject, "{}".into()).await;
    let err = res.expect_err("no stream may answer a request subject with a PubAck");
    assert_eq!(err.kind(), async_nats::RequestErrorKind::NoResponders);
}

#[tokio::test]
async fn a_missing_stream_is_unready_until_it_exists_when_create_is_off() {
    let nats = NatsServer::start();
    let mut config = test_config(&nats.url());
    config.nats.stream.create = false;
    let mut lookups = stream_lookups(&nats.url(), &config.nats.stream.name).await;
    let bridge = Bridge::start_unready(config).await;
    let sender = Sender::new(&bridge);
    // The keeper has looked for the stream and judged the answer (it looks again after that).
    lookups.wait(2).await;
    assert_eq!(
        reqwest::get(bridge.url("/readyz")).await.unwrap().status(),
        StatusCode::SERVICE_UNAVAILABLE
    );
    let body = body_with("PASS", &new_request_id());
    problem(
        sender.send("msg_nostream", &body).await,
        StatusCode::SERVICE_UNAVAILABLE,
    )
    .await;

    // A stream that also captures the request subjects is refused.
    let js = jetstream::new(async_nats::connect(nats.url()).await.unwrap());
    let prefix = bridge.config.nats.subject_prefix.clone();
    let mut wrong = vx_bridge::nats::desired_stream(
        &bridge.config.nats.stream,
        &vx_bridge::nats::Subjects::new(&prefix),
    );
    wrong.subjects = vec![format!("{prefix}.>")];
    js.create_stream(wrong.clone()).await.unwrap();
    // The keeper has looked at the wrong stream and judged it (it re-checks every second).
    lookups.wait(2).await;
    assert_eq!(
        reqwest::get(bridge.url("/readyz")).await.unwrap().status(),
        StatusCode::SERVICE_UNAVAILABLE
    );

    // The right one makes it ready, and the delivery is then stored.
    js.delete_stream(&wrong.name).await.unwrap();
    let right = vx_bridge::nats::desired_stream(
        &bridge.config.nats.stream,
        &vx_bridge::nats::Subjects::new(&prefix),
    );
    js.create_stream(right).await.unwrap();
    // Being unready, the keeper re-checks every second.
    bridge.wait_ready().await;
    assert_eq!(
        sender.send("msg_nostream", &body).await.status(),
        StatusCode::ACCEPTED
    );
}

#[tokio::test]
async fn a_deleted_stream_is_recreated_after_the_first_503() {
    let nats = NatsServer::start();
    let mut config = test_config(&nats.url());
    // Fail fast: with the default outage_wait the first delivery waits for the recreated
    // stream instead (tests/it/ridethrough.rs).
    config.nats.outage_wait = Duration::ZERO;
    let bridge = Bridge::start(config).await;
    let sender = Sender::new(&bridge);
    let js = jetstream::new(async_nats::connect(nats.url()).await.unwrap());
    js.delete_stream(&bridge.config.nats.stream.name)
        .await
        .unwrap();
    let body = body_with("PASS", &new_request_id());
    let first = sender.send("msg_recreate", &body).await;
    assert_eq!(first.status(), StatusCode::SERVICE_UNAVAILABLE);
    bridge.wait_ready().await;
    assert_eq!(
        sender.send("msg_recreate", &body).await.status(),
        StatusCode::ACCEPTED
    );
}

#[tokio::test]
async fn basic_auth_end_to_end() {
    let nats = NatsServer::start();
    let mut config = test_config(&nats.url());
    config.webhook.auth.mode = Some(vx_bridge::config::AuthMode::Basic);
    config.webhook.auth.basic.username = "vx".into();
    config.webhook.auth.basic.passwords = vec![vx_bridge::secret::Secret::new("p4ss")];
    let bridge = Bridge::start(config).await;
    let http = reqwest::Client::new();
    let body = body_with("PENDING", &new_request_id());
    let post = |user: &str, pass: &str| {
        http.post(bridge.webhook_url())
            .basic_auth(user, Some(pass))
            .header("content-type", "application/json")
            .body(body.clone())
            .send()
    };
    assert_eq!(
        post("vx", "p4ss").await.unwrap().status(),
        StatusCode::ACCEPTED
    );
    problem(post("vx", "wrong").await.unwrap(), StatusCode::UNAUTHORIZED).await;
}

#[tokio::test]
async fn health_and_metrics_endpoints_answer() {
    let nats = NatsServer::start();
    let bridge = Bridge::start(test_config(&nats.url())).await;
    assert_eq!(
        reqwest::get(bridge.url("/healthz")).await.unwrap().status(),
        StatusCode::OK
    );
    let ready: Value = reqwest::get(bridge.url("/readyz"))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(
        ready,
        json!({"nats_connected": true, "stream_ready": true, "sessions_ready": true})
    );
    let sender = Sender::new(&bridge);
    sender
        .send("msg_m", &body_with("PASS", &new_request_id()))
        .await;
    let metrics = scrape(&bridge.base()).await;
    assert!(
        metrics.contains("vx_bridge_webhooks_total{outcome=\"accepted\"}"),
        "{metrics}"
    );
}

#[tokio::test]
async fn nats_token_and_user_password_authentication_work_and_a_wrong_one_stays_unready() {
    use vx_bridge::secret::Secret;
    // Token.
    let nats = NatsServer::start_with(&["--auth", "s3cr3t-token"]);
    let mut config = test_config(&nats.url());
    config.nats.token = Some(Secret::new("s3cr3t-token"));
    let bridge = Bridge::start(config).await;
    let sender = Sender::new(&bridge);
    assert_eq!(
        sender
            .send("msg_tok", &body_with("PASS", &new_request_id()))
            .await
            .status(),
        StatusCode::ACCEPTED
    );
    bridge.stop().await.unwrap();

    // Token from a file, and a wrong token: never ready, every webhook 503.
    let dir = tempfile::tempdir().unwrap();
    let token_file = dir.path().join("token");
    std::fs::write(&token_file, "wrong-token\n").unwrap();
    let mut config = test_config(&nats.url());
    config.nats.token_file = Some(token_file);
    let bridge = Bridge::start_unready(config).await;
    // The server has refused the bridge's token.
    nats.wait_for_log("authentication error", Duration::from_secs(10))
        .await;
    assert_eq!(
        reqwest::get(bridge.url("/readyz")).await.unwrap().status(),
        StatusCode::SERVICE_UNAVAILABLE
    );
    let sender = Sender::new(&bridge);
    problem(
        sender
            .send("msg_tok2", &body_with("PASS", &new_request_id()))
            .await,
        StatusCode::SERVICE_UNAVAILABLE,
    )
    .await;
    bridge.shutdown.cancel();

    // User and password (from a file).
    let nats = NatsServer::start_with(&["--user", "bridge", "--pass", "p4ssw0rd"]);
    let pw = dir.path().join("pw");
    std::fs::write(&pw, "p4ssw0rd\n").unwrap();
    let mut config = test_config(&nats.url());
    config.nats.user = Some("bridge".into());
    config.nats.password_file = Some(pw);
    let bridge = Bridge::start(config).await;
    let sender = Sender::new(&bridge);
    assert_eq!(
        sender
            .send("msg_up", &body_with("PASS", &new_request_id()))
            .await
            .status(),
        StatusCode::ACCEPTED
    );
}

/// Makes a CA, a server certificate for 127.0.0.1 and a client certificate with openssl.
fn make_certs(dir: &std::path::Path) {
    let run = |args: &str| {
        let ok = std::process::Command::new("sh")
            .arg("-c")
            .arg(format!("cd {} && {args}", dir.display()))
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .status()
            .expect("openssl (apt-get install openssl)")
            .success();
        assert!(ok, "openssl failed: {args}");
    };
    let ec = "-newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes";
    run(&format!(
        "openssl req -x509 {ec} -keyout ca.key -out ca.crt -days 1 -subj /CN=vx-test-ca"
    ));
    run(&format!(
        "openssl req {ec} -keyout server.key -out server.csr -subj /CN=localhost"
    ));
    run("printf 'subjectAltName=IP:127.0.0.1,DNS:localhost\\nextendedKeyUsage=serverAuth\\n' > server.ext && openssl x509 -req -in server.csr -CA ca.crt -CAkey ca.key -CAcreateserial -out server.crt -days 1 -extfile server.ext");
    run(&format!(
        "openssl req {ec} -keyout client.key -out client.csr -subj /CN=vx-bridge"
    ));
    run("printf 'extendedKeyUsage=clientAuth\\n' > client.ext && openssl x509 -req -in client.csr -CA ca.crt -CAkey ca.key -CAcreateserial -out client.crt -days 1 -extfile client.ext");
}

#[tokio::test]
async fn nats_over_tls_and_mutual_tls() {
    let dir = tempfile::tempdir().unwrap();
    make_certs(dir.path());
    let p = |f: &str| dir.path().join(f);
    let (cert, key, ca) = (p("server.crt"), p("server.key"), p("ca.crt"));
    let tls_args = [
        "--tls",
        "--tlscert",
        cert.to_str().unwrap(),
        "--tlskey",
        key.to_str().unwrap(),
    ];

    // Server TLS, our CA trusted.
    let nats = NatsServer::start_with(&tls_args);
    let mut config = test_config(&nats.url().replace("nats://", "tls://"));
    config.nats.tls.ca_file = Some(ca.clone());
    let bridge = Bridge::start(config).await;
    let sender = Sender::new(&bridge);
    assert_eq!(
        sender
            .send("msg_tls", &body_with("PASS", &new_request_id()))
            .await
            .status(),
        StatusCode::ACCEPTED
    );
    bridge.stop().await.unwrap();

    // Mutual TLS: the server verifies our client certificate.
    let mut mtls_args = tls_args.to_vec();
    mtls_args.extend(["--tlsverify", "--tlscacert", ca.to_str().unwrap()]);
    let nats = NatsServer::start_with(&mtls_args);
    let mut config = test_config(&nats.url().replace("nats://", "tls://"));
    config.nats.tls.ca_file = Some(ca.clone());
    config.nats.tls.cert_file = Some(p("client.crt"));
    config.nats.tls.key_file = Some(p("client.key"));
    let bridge = Bridge::start(config).await;
    let sender = Sender::new(&bridge);
    assert_eq!(
        sender
            .send("msg_mtls", &body_with("PASS", &new_request_id()))
            .await
            .status(),
        StatusCode::ACCEPTED
    );
    bridge.stop().await.unwrap();

    // Without the client certificate the same server refuses us: never ready.
    let mut config = test_config(&nats.url().replace("nats://", "tls://"));
    config.nats.tls.ca_file = Some(ca);
    let bridge = Bridge::start_unready(config).await;
    // The server has refused the connection without a client certificate.
    nats.wait_for_log("tls handshake error", Duration::from_secs(10))
        .await;
    assert_eq!(
        reqwest::get(bridge.url("/readyz")).await.unwrap().status(),
        StatusCode::SERVICE_UNAVAILABLE
    );
}

#[tokio::test]
async fn nats_nkey_authentication() {
    let user = nkeys::KeyPair::new_user();
    let dir = tempfile::tempdir().unwrap();
    let conf = dir.path().join("nats.conf");
    std::fs::write(
        &conf,
        format!(
            "authorization {{ users = [ {{ nkey: \"{}\" }} ] }}\n",
            user.public_key()
        ),
    )
    .unwrap();
    let seed = dir.path().join("seed");
    std::fs::write(&seed, format!("{}\n", user.seed().unwrap())).unwrap();
    let nats = NatsServer::start_with(&["-c", conf.to_str().unwrap()]);
    let mut config = test_config(&nats.url());
    config.nats.nkey_seed_file = Some(seed);
    let bridge = Bridge::start(config).await;
    let sender = Sender::new(&bridge);
    assert_eq!(
        sender
            .send("msg_nkey", &body_with("PASS", &new_request_id()))
            .await
            .status(),
        StatusCode::ACCEPTED
    );
}

#[tokio::test]
async fn more_replicas_than_servers_is_an_error_naming_nats_stream_replicas() {
    use vx_bridge::nats::{ensure_stream, StreamError};
    let nats = NatsServer::start();
    let mut config = test_config(&nats.url());
    config.nats.stream.replicas = 3;
    let client = async_nats::connect(nats.url()).await.unwrap();
    let js = jetstream::new(client);
    let subjects = vx_bridge::nats::Subjects::new(&config.nats.subject_prefix);
    let err = ensure_stream(&js, &config.nats.stream, &subjects)
        .await
        .unwrap_err();
    assert!(
        matches!(err, StreamError::TooFewServers { replicas: 3, .. }),
        "{err:?}"
    );
    let text = err.to_string();
    assert!(text.contains("nats.stream.replicas = 3"), "{text}");
    assert!(text.contains("lower nats.stream.replicas"), "{text}");

    // One replica on the same server is fine.
    config.nats.stream.replicas = 1;
    assert_eq!(
        ensure_stream(&js, &config.nats.stream, &subjects)
            .await
            .unwrap(),
        1
    );
}
