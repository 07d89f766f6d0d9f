//! Body limits against what NATS can store (issue 10, bug 1) and the memory bound under an
//! unauthenticated flood (bug 6), at the exact boundaries, on a default server and on one with a
//! smaller `max_payload`.

use std::process::Stdio;

use async_nats::jetstream;
use reqwest::StatusCode;
use serde_json::{json, Value};
use vx_bridge::auth::Verified;
use vx_bridge::event::{build_event, REJECTED_HEADERS_MAX};
use vx_bridge::nats::wire_size;
use vx_bridge::nats::Subjects;
use vx_bridge::telemetry::TraceContext;

use vx_testkit::{body_with, new_request_id, stream_of, Sender};
use vx_testkit::{test_config, BinaryBridge, Bridge, NatsServer};

/// A nats-server whose `max_payload` is `bytes`.
fn server_with_max_payload(bytes: usize) -> (NatsServer, tempfile::NamedTempFile) {
    let conf = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(conf.path(), format!("max_payload: {bytes}\n")).unwrap();
    let nats = NatsServer::start_with(&["-c", conf.path().to_str().unwrap()]);
    (nats, conf)
}

/// Every message in the stream: (subject, Nats-Msg-Id, vx-reject-reason, payload).
async fn stored(
    stream: &mut jetstream::stream::Stream,
) -> Vec<(String, String, Option<String>, Vec<u8>)> {
    let n = stream.info().await.unwrap().state.messages;
    let mut out = Vec::new();
    let first = stream.info().await.unwrap().state.first_sequence;
    for seq in first..first + n {
        let m = stream.get_raw_message(seq).await.unwrap();
        let h = |k: &str| m.headers.get(k).map(|v| v.as_str().to_owned());
        out.push((
            m.subject.to_string(),
            h("Nats-Msg-Id").unwrap_or_default(),
            h("vx-reject-reason"),
            m.payload.to_vec(),
        ));
    }
    out
}

async fn problem_type(res: reqwest::Response) -> (StatusCode, String, bool) {
    let status = res.status();
    let retry = res.headers().contains_key("retry-after");
    let p: Value = res.json().await.unwrap_or(Value::Null);
    (
        status,
        p["type"].as_str().unwrap_or_default().to_owned(),
        retry,
    )
}

/// A permanent 413 for an event that cannot fit (no Retry-After).
async fn assert_event_too_large(res: reqwest::Response) {
    let (status, kind, retry) = problem_type(res).await;
    assert_eq!(
        (status, kind.as_str(), retry),
        (
            StatusCode::PAYLOAD_TOO_LARGE,
            "urn:vx-bridge:problem:event-too-large",
            false
        )
    );
}

/// An authenticated body that is not JSON, of exactly `len` bytes.
fn not_json(len: usize) -> Vec<u8> {
    let mut b = vec![b'x'; len];
    b[0] = b'{';
    b
}

/// A valid body of exactly `len` bytes (padded), with a `reference` of `reference` bytes.
fn valid_of_len(len: usize, reference: usize) -> Vec<u8> {
    let mut v: Value = serde_json::from_slice(&body_with("PASS", &new_request_id())).unwrap();
    v["reference"] = json!("r".repeat(reference));
    v["pad"] = json!("");
    let base = serde_json::to_vec(&v).unwrap().len();
    assert!(base <= len, "{base} > {len}");
    v["pad"] = json!("p".repeat(len - base));
    let out = serde_json::to_vec(&v).unwrap();
    assert_eq!(out.len(), len);
    out
}

/// The size NATS counts for the event the bridge builds from `body` sent as delivery `id`
/// (every header has a fixed length, the trace id and timestamp included).
fn event_wire_size(bridge: &Bridge, id: &str, body: &[u8]) -> usize {
    let value: Value = serde_json::from_slice(body).unwrap();
    let msg = build_event(
        &Subjects::new(&bridge.config.nats.subject_prefix),
        &Verified::for_tests(Some(id.to_owned())),
        body,
        &value,
        "2026-01-01T00:00:00.000Z",
        &TraceContext::continue_or_start(None, None),
    );
    wire_size(&msg.headers, msg.payload.len())
}

#[tokio::test]
async fn bodies_near_1_mib_on_a_default_server_get_a_permanent_413_never_a_503() {
    // Regression: a valid signed body of 1,047,937..1,048,576 bytes passed the 1 MiB limit, then
    // its event exceeded the server's max_payload: 503 + Retry-After for ever, nothing stored.
    let nats = NatsServer::start();
    let mut config = test_config(&nats.url());
    config.http.max_body_bytes = 1024 * 1024;
    let bridge = Bridge::start(config).await;
    let sender = Sender::new(&bridge);
    let mut stream = stream_of(&bridge, &nats.url()).await;
    let limit = 1024 * 1024 - REJECTED_HEADERS_MAX;

    for (name, body) in [
        ("valid 1,047,937", valid_of_len(1_047_937, 10)),
        ("valid 1 MiB", valid_of_len(1_048_576, 10)),
        ("not JSON 1 MiB", not_json(1_048_576)),
        ("not JSON, limit + 1", not_json(limit + 1)),
    ] {
        let (status, kind, retry) =
            problem_type(sender.send(&format!("msg_{name}"), &body).await).await;
        assert_eq!(status, StatusCode::PAYLOAD_TOO_LARGE, "{name}");
        assert_eq!(kind, "urn:vx-bridge:problem:body-too-large", "{name}");
        assert!(!retry, "{name}: a permanent refusal has no Retry-After");
    }
    assert!(
        stored(&mut stream).await.is_empty(),
        "nothing above the limit is stored"
    );

    // At the limit: the body is read and authenticated; a non-JSON one is kept on rejected
    // byte for byte, a valid one whose event cannot fit is a permanent 413 and kept too.
    let at_limit = not_json(limit);
    let (status, _, _) = problem_type(sender.send("msg_json_at_limit", &at_limit).await).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    // A long reference is copied into the envelope: the event outgrows the body.
    let valid = valid_of_len(limit, 10_000);
    assert_event_too_large(sender.send("msg_valid_at_limit", &valid).await).await;
    let kept = stored(&mut stream).await;
    assert_eq!(kept.len(), 2);
    let prefix = &bridge.config.nats.subject_prefix;
    assert_eq!(kept[0].0, format!("{prefix}.rejected"));
    assert_eq!(kept[0].2.as_deref(), Some("invalid_json"));
    assert_eq!(kept[0].3, at_limit);
    assert_eq!(kept[1].0, format!("{prefix}.rejected"));
    assert_eq!(kept[1].2.as_deref(), Some("event_too_large"));
    assert_eq!(kept[1].3, valid);
}

#[tokio::test]
async fn on_a_server_with_a_smaller_max_payload_the_limits_follow_it_to_the_byte() {
    let max = 65_536;
    let (nats, _conf) = server_with_max_payload(max);
    let bridge = Bridge::start(test_config(&nats.url())).await;
    let sender = Sender::new(&bridge);
    let mut stream = stream_of(&bridge, &nats.url()).await;
    // http.max_body_bytes (256 KiB by default) is lowered to fit.
    let limit = max - REJECTED_HEADERS_MAX;
    assert!(bridge.config.http.max_body_bytes > limit);

    // The rejected path: a body of exactly the limit is kept, one byte more is refused.
    let (status, _, _) = problem_type(sender.send("msg_r1", &not_json(limit)).await).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    let (status, kind, _) = problem_type(sender.send("msg_r2", &not_json(limit + 1)).await).await;
    assert_eq!(
        (status, kind.as_str()),
        (
            StatusCode::PAYLOAD_TOO_LARGE,
            "urn:vx-bridge:problem:body-too-large"
        )
    );

    // The event path: an event of exactly max_payload is stored, one byte more is a permanent
    // 413 and the body is kept. A long reference (copied into the envelope) makes the event
    // outgrow the body.
    let reference = 12_000;
    let probe = valid_of_len(40_000, reference);
    let len = 40_000 + (max - event_wire_size(&bridge, "msg_e1", &probe));
    assert!(len <= limit, "{len} > {limit}");
    let exact = valid_of_len(len, reference);
    assert_eq!(event_wire_size(&bridge, "msg_e1", &exact), max);
    let res = sender.send("msg_e1", &exact).await;
    assert_eq!(
        res.status(),
        StatusCode::ACCEPTED,
        "an event of exactly max_payload fits"
    );
    let over = valid_of_len(len + 1, reference);
    assert_eq!(event_wire_size(&bridge, "msg_e2", &over), max + 1);
    assert_event_too_large(sender.send("msg_e2", &over).await).await;

    let kept = stored(&mut stream).await;
    let prefix = &bridge.config.nats.subject_prefix;
    let subjects: Vec<&str> = kept.iter().map(|k| k.0.as_str()).collect();
    assert_eq!(
        subjects,
        [
            format!("{prefix}.rejected"),
            format!("{prefix}.completed.pass"),
            format!("{prefix}.rejected")
        ]
    );
    assert_eq!(kept[2].2.as_deref(), Some("event_too_large"));
    assert_eq!(kept[2].3, over, "kept byte for byte");
}

/// Peak and current resident memory of a process, in bytes (`VmHWM`, `VmRSS`).
fn memory(pid: u32) -> (u64, u64) {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let kb = |key: &str| -> u64 {
        status
            .lines()
            .find_map(|l| l.strip_prefix(key))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
            .unwrap_or(0)
            * 1024
    };
    (kb("VmHWM:"), kb("VmRSS:"))
}

/// The bound the README states for an unauthenticated flood: the process at rest, plus three
/// times `http.max_unauthenticated_bytes` (the bodies being read, the connections' read
/// buffers and what the allocator keeps of freed ones), plus 16 MiB. Measured on 2 cores with
/// an 8 MiB budget and 64 connections of 1 MB bodies: +20..32 MiB over rest; without the budget
/// (any size allowed), +90 MiB.
fn stated_bound(at_rest: u64, max_unauthenticated: u64) -> u64 {
    at_rest + 3 * max_unauthenticated + 16 * 1024 * 1024
}

#[tokio::test]
async fn a_flood_of_unsigned_maximum_size_bodies_stays_under_the_stated_memory_bound() {
    // Regression: bodies were read before authentication up to max_in_flight × max_body_bytes
    // (ten parallel 1 MB bodies took RSS from 29 to 120 MB).
    let nats = NatsServer::start();
    let template = test_config(&nats.url());
    let budget: u64 = 8 * 1024 * 1024;
    let body_len = 1_000_000;
    let bridge = BinaryBridge::spawn(
        &template,
        &[
            ("VXB_HTTP__MAX_BODY_BYTES", "1040000".to_owned()),
            ("VXB_HTTP__MAX_UNAUTHENTICATED_BYTES", budget.to_string()),
        ],
        Stdio::null(),
    );
    bridge.wait_ready().await;
    let pid = bridge.child.id();
    let (_, at_rest) = memory(pid);
    let url = format!("{}{}", bridge.base(), template.http.webhook_path);
    let body = bytes::Bytes::from(vec![b'{'; body_len]);
    let mut workers = Vec::new();
    for _ in 0..64 {
        let (url, body) = (url.clone(), body.clone());
        workers.push(tokio::spawn(async move {
            let http = reqwest::Client::new();
            let mut codes = Vec::new();
            for _ in 0..6 {
                let sent = http
                    .post(&url)
                    .header("content-type", "application/json")
                    .body(body.clone())
                    .send()
                    .await;
                codes.push(sent.map(|r| r.status().as_u16()).unwrap_or(0));
            }
            codes
        }));
    }
    let mut counts = std::collections::BTreeMap::<u16, usize>::new();
    for w in workers {
        for c in w.await.unwrap() {
            *counts.entry(c).or_default() += 1;
        }
    }
    let (peak, _) = memory(pid);
    eprintln!(
        "flood: answers {counts:?}; RSS at rest {} MiB, peak {} MiB, bound {} MiB",
        at_rest >> 20,
        peak >> 20,
        stated_bound(at_rest, budget) >> 20
    );
    // Unsigned: only 401 (read, then refused) or 429 (budget full; 0 = the connection closed
    // while the refused body was still being sent).
    assert!(
        counts.keys().all(|c| [0, 401, 429].contains(c)),
        "{counts:?}"
    );
    assert!(
        counts.get(&429).copied().unwrap_or(0) > 0,
        "the budget was reached: {counts:?}"
    );
    assert!(
        peak <= stated_bound(at_rest, budget),
        "peak RSS {peak} over the stated bound {}",
        stated_bound(at_rest, budget)
    );
    let health = reqwest::get(format!("{}/readyz", bridge.base()))
        .await
        .unwrap();
    assert_eq!(health.status(), 200);
}
