//! Data protection (design.md, "Data protection"), against real nats-server processes:
//! no personal data in clear in any stored byte (raw messages of every stream and bucket, and
//! the server's store files), the JWE opened by an independent JOSE library (Python `jwcrypto`)
//! byte for byte, erasure through the endpoint and the CLI, retention by key expiry, KEK
//! rotation and `keys rewrap`, two replicas racing on new sessions, a NATS restart during key
//! creation, and a bridge without a KEK refusing to start.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use async_nats::jetstream;
use async_nats::jetstream::message::StreamMessage;
use bytes::Bytes;
use futures::{StreamExt as _, TryStreamExt as _};
use serde_json::{json, Value};
use vx_bridge::config::{Config, PiiMode};
use vx_bridge::event::EventKind;
use vx_bridge::nats::Subjects;
use vx_bridge::pii::KeyStore;
use vx_bridge::schema::Schemas;
use vx_bridge::status::client::{request, Reply};

use crate::pii::{pii_body, PII};
use vx_testkit::{
    body_with, clean_env, eventually, hmac_cli, new_request_id, output_ok, test_config, test_keks,
    vx_bridge_bin, BinaryBridge, Bridge, NatsServer, Sender, Step, VxApi,
};

const TOKEN: &str = "static-token-protection";

/// A bridge with every role on: ingress, status (mock VX), view, reconciler.
async fn full_config(nats: &NatsServer, vx: &VxApi) -> Config {
    let mut c = test_config(&nats.url());
    c.status.enabled = true;
    c.upstream.base_url = vx.url().to_owned();
    c.upstream.token = Some(vx_bridge::secret::Secret::new(TOKEN));
    c.upstream.oauth.client_id = String::new();
    c.upstream.timeout = Duration::from_secs(3);
    c.reconcile.schedule = vec![Duration::from_millis(300)];
    c
}

async fn pii_vx() -> VxApi {
    let vx =
        VxApi::serve(vx_bridge::mock_vx::MockVx::new(TOKEN).with_result_body(pii_body("PASS")))
            .await;
    vx.set_default(Step::Result("PASS"));
    vx
}

fn keystore(client: &async_nats::Client, config: &Config) -> KeyStore {
    KeyStore::new(client.clone(), config, Some(test_keks(config)))
}

async fn req(client: &async_nats::Client, subject: &str, body: Value) -> Reply {
    request(
        client,
        subject,
        Bytes::from(body.to_string()),
        Duration::from_secs(10),
    )
    .await
    .expect("a reply")
}

fn ok_json(reply: Reply) -> Value {
    match reply {
        Reply::Ok(b) => serde_json::from_slice(&b).expect("JSON reply"),
        Reply::Error { code, message, .. } => panic!("error reply {code}: {message}"),
    }
}

fn error_code(reply: Reply) -> (u16, String) {
    match reply {
        Reply::Error { code, message, .. } => (code, message),
        Reply::Ok(b) => panic!("expected an error, got {}", String::from_utf8_lossy(&b)),
    }
}

/// The last message on `subject` in `stream` (there must be one).
async fn last_on(stream: &jetstream::stream::Stream, subject: &str) -> StreamMessage {
    stream
        .get_last_raw_message_by_subject(subject)
        .await
        .unwrap_or_else(|e| panic!("no message on {subject}: {e}"))
}

/// The `request_id` of the body that stored event `m` carries, opened with its session's key
/// from `keys`.
async fn opened_request_id(keys: &KeyStore, m: &StreamMessage) -> String {
    let seq = m.sequence;
    let body = vx_bridge::pii::open_event(Some(keys), &m.payload)
        .await
        .unwrap_or_else(|e| panic!("seq {seq} does not open with its key: {e}"))
        .expect("carries the body");
    let v: Value = serde_json::from_slice(&body).unwrap();
    v["request_id"].as_str().unwrap().to_owned()
}

/// Every stored message of every stream on the server (event stream, buckets, work queue), raw:
/// subject, headers as sent, payload.
async fn every_stored_message(client: &async_nats::Client) -> Vec<(String, String, Bytes)> {
    let js = jetstream::new(client.clone());
    let names: Vec<String> = js.stream_names().try_collect().await.expect("stream names");
    let mut out = Vec::new();
    for name in names {
        let mut stream = js.get_stream(&name).await.expect("stream");
        let info = stream.info().await.expect("info").clone();
        for seq in info.state.first_sequence..=info.state.last_sequence {
            if let Ok(m) = stream.get_raw_message(seq).await {
                let headers = m
                    .headers
                    .iter()
                    .map(|(k, vs)| {
                        format!(
                            "{k}: {}",
                            vs.iter().map(|v| v.as_str()).collect::<Vec<_>>().join(",")
                        )
                    })
                    .collect::<Vec<_>>()
                    .join("\n");
                out.push((m.subject.to_string(), headers, m.payload));
            }
        }
    }
    out
}

fn files_under(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).into_iter().flatten().flatten() {
            let p = e.path();
            if p.is_dir() {
                stack.push(p);
            } else {
                out.push(p);
            }
        }
    }
    out
}

fn contains(hay: &[u8], needle: &str) -> bool {
    hay.windows(needle.len()).any(|w| w == needle.as_bytes())
}

/// The seed body's own values long enough never to appear by chance in base64 (the short ones,
/// e.g. "Doe", could), plus the distinctive PII of [`pii_body`].
fn pii_values() -> Vec<&'static str> {
    let mut v = vec![
        "123 Main St",
        "jane.doe@example.com",
        "20000101",
        "123 Main St, New York, NY 10001",
        "DRIVERS LICENSE",
    ];
    v.extend(PII);
    v
}

#[tokio::test]
async fn no_personal_data_in_clear_in_any_stored_byte() {
    let nats = NatsServer::start();
    let vx = pii_vx().await;
    let config = full_config(&nats, &vx).await;
    let bridge = Bridge::start(config.clone()).await;
    let send = Sender::new(&bridge);
    let (client, js) = nats.connect().await;
    let subjects = Subjects::new(&config.nats.subject_prefix);
    // The seed itself, PASS.
    let seed_id = new_request_id();
    let seed = vx_testkit::SEED.replace(vx_testkit::SEED_ID, &seed_id);
    assert_eq!(send.send_status("msg_seed", &seed).await, 202);
    // Every path that writes a body: pending then pass webhooks, a schema failure holding PII
    // (kept under the session's key), a non-JSON body holding PII (under the day's key), a
    // polled completion (a watched session VX completes), and a replay.
    let a = pii_body("PENDING");
    let a_id = a["request_id"].as_str().unwrap().to_owned();
    assert_eq!(send.send_status("msg_a1", a.to_string()).await, 202);
    let mut bad = pii_body("PASS");
    bad["journey"] = json!("not an object");
    assert_eq!(send.send_status("msg_bad", bad.to_string()).await, 422);
    let not_json = b"{\"fn\":\"Zebulon\",\"ln\":\"Quackenbush\",\"dob\":\"19561224\"";
    assert_eq!(send.send_status("msg_nj", not_json).await, 400);
    // The pending session is watched (reconcile.watch_pending); VX completes it: a poll event.
    let pass_subject = subjects.event(EventKind::CompletedPass);
    eventually(
        "the polled PASS of the pending session",
        Duration::from_secs(20),
        async || {
            let Ok(stream) = js.get_stream(&config.nats.stream.name).await else {
                return false;
            };
            match stream.get_last_raw_message_by_subject(&pass_subject).await {
                Ok(m) => {
                    m.headers.get("vx-source").map(|v| v.as_str()) == Some("poll")
                        && m.headers.get("ce-subject").map(|v| v.as_str()) == Some(a_id.as_str())
                }
                Err(_) => false,
            }
        },
    )
    .await;
    // Lookups write VX's answer into the view.
    let _ = req(
        &client,
        &subjects.status_get(),
        json!({"request_id": new_request_id()}),
    )
    .await;
    // result.get answers the decrypted body (the seed's session is terminal in the view).
    eventually(
        "the seed's session terminal in the view",
        Duration::from_secs(10),
        async || {
            let s = ok_json(
                req(
                    &client,
                    &subjects.status_get(),
                    json!({"request_id": seed_id}),
                )
                .await,
            );
            s["source"] == "events"
        },
    )
    .await;
    let got = match req(
        &client,
        &subjects.result_get(),
        json!({"request_id": seed_id}),
    )
    .await
    {
        Reply::Ok(b) => b,
        Reply::Error { code, message, .. } => panic!("result.get {code}: {message}"),
    };
    assert!(
        got[..] == *seed.as_bytes(),
        "result.get gives the received body byte for byte"
    );

    let messages = every_stored_message(&client).await;
    assert!(
        messages
            .iter()
            .any(|(_, h, _)| h.contains("vx-source: poll")),
        "a polled event is among them"
    );
    assert!(messages.len() >= 8, "{} messages", messages.len());
    let mut kinds = std::collections::BTreeSet::new();
    for (subject, headers, payload) in &messages {
        kinds.insert(
            subject
                .split('.')
                .next_back()
                .unwrap_or_default()
                .to_owned(),
        );
        for value in pii_values() {
            assert!(
                !contains(payload, value),
                "{value:?} in clear in the body on {subject}"
            );
            assert!(
                !headers.contains(value),
                "{value:?} in clear in a header on {subject}"
            );
        }
    }
    // The raw store, byte for byte (file storage): no copy in clear either.
    for file in files_under(&nats.store_dir()) {
        let bytes = std::fs::read(&file).unwrap_or_default();
        for value in pii_values() {
            assert!(
                !contains(&bytes, value),
                "{value:?} in clear in {}",
                file.display()
            );
        }
    }
    // The events are version 2 with result_encrypted, schema-valid; the rejected copies are JWEs.
    let stream = js.get_stream(&config.nats.stream.name).await.unwrap();
    let pass = last_on(&stream, &pass_subject).await;
    let event: Value = serde_json::from_slice(&pass.payload).unwrap();
    assert_eq!(event["schema_version"], 2);
    assert!(event.get("result").is_none());
    assert!(
        event["result_encrypted"]
            .as_str()
            .unwrap()
            .split('.')
            .count()
            == 5
    );
    Schemas::get()
        .check_event(&event)
        .expect("a valid v2 event");
    let rejected = last_on(&stream, &subjects.rejected()).await;
    assert_eq!(
        rejected.headers.get("vx-pii").map(|v| v.as_str()),
        Some("encrypted")
    );
    let kid = vx_bridge::pii::jwe::kid(std::str::from_utf8(&rejected.payload).unwrap()).unwrap();
    assert!(
        kid.starts_with("_day."),
        "a non-JSON body is under the day's key: {kid}"
    );
    bridge.stop().await.unwrap();
}

/// A venv with Python `jwcrypto` (pinned), made once under target/.
fn jose_python() -> PathBuf {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let venv = root.join("target/jose-venv");
    let py = venv.join("bin/python");
    let marker = venv.join(".jwcrypto-1.5.6");
    if !marker.exists() {
        let ok = Command::new("python3")
            .args(["-m", "venv"])
            .arg(&venv)
            .status()
            .expect("python3 -m venv")
            .success();
        assert!(ok, "python3 -m venv failed (apt-get install python3-venv)");
        let ok = Command::new(&py)
            .args(["-m", "pip", "install", "-q", "jwcrypto==1.5.6"])
            .status()
            .expect("pip")
            .success();
        assert!(ok, "pip install jwcrypto failed");
        std::fs::write(&marker, "").unwrap();
    }
    py
}

const JOSE_SCRIPT: &str = r#"
import base64, json, sys
from jwcrypto import jwe, jwk
keks = {}
for line in open(sys.argv[1]):
    line = line.strip()
    if line and not line.startswith('#'):
        kid, b64 = line.split(':', 1)
        keks[kid] = jwk.JWK(kty='oct', k=base64.urlsafe_b64encode(base64.b64decode(b64)).rstrip(b'=').decode())
wrapped, event = sys.stdin.read().split('\n')[:2]
w = jwe.JWE()
w.deserialize(wrapped)
w.decrypt(keks[w.jose_header['kid']])
dk = jwk.JWK(kty='oct', k=base64.urlsafe_b64encode(w.payload).rstrip(b'=').decode())
e = jwe.JWE()
e.deserialize(json.loads(event)['result_encrypted'])
assert e.jose_header['alg'] == 'dir' and e.jose_header['enc'] == 'A256GCM', e.jose_header
e.decrypt(dk)
sys.stdout.write(json.dumps({'kid': e.jose_header['kid'], 'body': base64.b64encode(e.payload).decode()}))
"#;

#[tokio::test]
async fn an_independent_jose_library_decrypts_an_event_to_the_received_body_byte_for_byte() {
    let py = jose_python();
    let nats = NatsServer::start();
    let config = test_config(&nats.url());
    let bridge = Bridge::start(config.clone()).await;
    let id = new_request_id();
    // Odd spacing and an unknown field: the plaintext must be these bytes, not a re-serialization.
    let body = format!(
        "  {{ \"request_id\" : \"{}\", \"status\":\"PASS\",\"zzz\" : [1, 2.50] }}\n",
        id.to_uppercase()
    );
    assert_eq!(
        Sender::new(&bridge).send_status("msg_jose", &body).await,
        202
    );
    let (client, js) = nats.connect().await;
    let stream = js.get_stream(&config.nats.stream.name).await.unwrap();
    let subjects = Subjects::new(&config.nats.subject_prefix);
    let event = last_on(&stream, &subjects.event(EventKind::CompletedPass)).await;
    let kv = js.get_key_value(&config.keys.bucket).await.unwrap();
    let wrapped = kv
        .get(id.to_lowercase())
        .await
        .unwrap()
        .expect("the data key");
    let mut child = Command::new(&py)
        .arg("-c")
        .arg(JOSE_SCRIPT)
        .arg(config.keys.kek_file.as_ref().unwrap())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    {
        use std::io::Write as _;
        let mut stdin = child.stdin.take().unwrap();
        stdin.write_all(&wrapped).unwrap();
        stdin.write_all(b"\n").unwrap();
        stdin.write_all(&event.payload).unwrap();
    }
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success(), "jwcrypto failed");
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    use base64::Engine as _;
    let plain = base64::engine::general_purpose::STANDARD
        .decode(v["body"].as_str().unwrap())
        .unwrap();
    assert_eq!(
        plain,
        body.as_bytes(),
        "jwcrypto opens the received bytes exactly"
    );
    assert_eq!(v["kid"], id.to_lowercase());
    // And our own reader agrees.
    let keys = keystore(&client, &config);
    let ours = vx_bridge::pii::open_event(Some(&keys), &event.payload)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(ours, body.as_bytes());
    bridge.stop().await.unwrap();
}

async fn kv_history(
    js: &jetstream::Context,
    bucket: &str,
    key: &str,
) -> Vec<(jetstream::kv::Operation, Bytes)> {
    let kv = js.get_key_value(bucket).await.unwrap();
    let mut h = kv.history(key).await.unwrap();
    let mut out = Vec::new();
    while let Ok(Some(Ok(e))) = tokio::time::timeout(Duration::from_secs(2), h.next()).await {
        out.push((e.operation, e.value));
    }
    out
}

#[tokio::test]
async fn erasure_by_endpoint_and_cli_shreds_the_key_removes_view_and_watch_and_is_told() {
    let nats = NatsServer::start();
    let vx = pii_vx().await;
    // VX keeps the watched session running, so its watch is there to remove.
    vx.set_default(Step::Status("IN PROGRESS"));
    let mut config = full_config(&nats, &vx).await;
    config.reconcile.schedule = vec![Duration::from_secs(3600)];
    let bridge = Bridge::start(config.clone()).await;
    let send = Sender::new(&bridge);
    let (client, js) = nats.connect().await;
    let subjects = Subjects::new(&config.nats.subject_prefix);
    let schemas = Schemas::get();

    // A: terminal (PASS). B: pending (watched).
    let a = pii_body("PASS");
    let a_id = a["request_id"].as_str().unwrap().to_owned();
    let b = pii_body("PENDING");
    let b_id = b["request_id"].as_str().unwrap().to_owned();
    assert_eq!(send.send_status("msg_ea", a.to_string()).await, 202);
    assert_eq!(send.send_status("msg_eb", b.to_string()).await, 202);
    let view = js.get_key_value(&config.sessions.bucket).await.unwrap();
    eventually(
        "both sessions in the view",
        Duration::from_secs(10),
        async || {
            view.get(&a_id).await.ok().flatten().is_some()
                && view.get(&b_id).await.ok().flatten().is_some()
        },
    )
    .await;
    let wq = config.reconcile.stream.clone();
    eventually("B watched", Duration::from_secs(10), async || {
        let Ok(s) = js.get_stream(&wq).await else {
            return false;
        };
        s.get_last_raw_message_by_subject(&subjects.reconcile(&b_id))
            .await
            .is_ok()
    })
    .await;
    assert!(matches!(
        req(&client, &subjects.result_get(), json!({"request_id": a_id})).await,
        Reply::Ok(_)
    ));
    // A rejected body of A's (kept under A's key), for replay to meet after the erasure.
    let mut bad_a = a.clone();
    bad_a["journey"] = json!("not an object");
    assert_eq!(send.send_status("msg_ea_bad", bad_a.to_string()).await, 422);

    // Bad input is answered as status.get answers it.
    for bad in [
        json!({}),
        json!({"request_id": "nope"}),
        json!({"request_id": a_id, "x": 1}),
    ] {
        let (code, _) = error_code(req(&client, &subjects.erase(), bad).await);
        assert_eq!(code, 400);
    }

    // Erase A through the endpoint.
    let reply = ok_json(
        req(
            &client,
            &subjects.erase(),
            json!({"request_id": a_id.to_uppercase(), "reason": "user request #12"}),
        )
        .await,
    );
    schemas
        .check_erase_reply(&reply)
        .expect("a valid erase reply");
    assert_eq!(reply["request_id"], a_id);
    assert_eq!(reply["already_erased"], false);
    assert_eq!(reply["view_key_removed"], true);
    // The key's whole history is one tombstone.
    let history = kv_history(&js, &config.keys.bucket, &a_id).await;
    assert_eq!(history.len(), 1, "no earlier revision is left: {history:?}");
    assert_eq!(history[0].0, jetstream::kv::Operation::Put);
    assert_eq!(&history[0].1[..], b"erased");
    // The view key is gone.
    assert!(view.get(&a_id).await.unwrap().is_none());
    // The erased event, on the event stream.
    let stream = js.get_stream(&config.nats.stream.name).await.unwrap();
    let erased = last_on(&stream, &subjects.erased()).await;
    let ev: Value = serde_json::from_slice(&erased.payload).unwrap();
    schemas
        .check_session_erased(&ev)
        .expect("a valid erased event");
    assert_eq!(ev["request_id"], a_id);
    assert_eq!(ev["reason"], "user request #12");
    // result.get: 410 erased, without asking VX.
    let asked = vx.session_calls();
    let (code, message) =
        error_code(req(&client, &subjects.result_get(), json!({"request_id": a_id})).await);
    assert_eq!(code, 410);
    assert!(message.starts_with("erased"), "{message}");
    assert_eq!(vx.session_calls(), asked, "VX was not asked");
    // The stored event no longer opens.
    let keys = keystore(&client, &config);
    let old = last_on(&stream, &subjects.event(EventKind::CompletedPass)).await;
    assert!(matches!(
        vx_bridge::pii::open_event(Some(&keys), &old.payload).await,
        Err(vx_bridge::pii::OpenError::Erased)
    ));
    // A late webhook: stored, decision only, erased: true.
    let mut late = a.clone();
    late["status"] = json!("FAIL");
    assert_eq!(send.send_status("msg_ea_late", late.to_string()).await, 202);
    let late_event = last_on(&stream, &subjects.event(EventKind::CompletedFail)).await;
    let le: Value = serde_json::from_slice(&late_event.payload).unwrap();
    assert_eq!(le["request_id"], a_id);
    assert_eq!(le["erased"], true);
    assert!(le.get("result_encrypted").is_none() && le.get("result").is_none());
    schemas
        .check_event(&le)
        .expect("a valid erased-session event");
    for value in PII {
        assert!(!contains(&late_event.payload, value));
    }
    // Replay skips A's rejected body, and says why.
    let mut cmd = Command::new(vx_bridge_bin());
    let out = clean_env(&mut cmd)
        .args(["replay", "--json"])
        .env("VXB_NATS__URL", nats.url())
        .env("VXB_NATS__SUBJECT_PREFIX", &config.nats.subject_prefix)
        .env("VXB_NATS__STREAM__NAME", &config.nats.stream.name)
        .env("VXB_KEYS__BUCKET", &config.keys.bucket)
        .env("VXB_KEYS__KEK_FILE", config.keys.kek_file.as_ref().unwrap())
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    let rows: Vec<Value> = text
        .lines()
        .filter_map(|l| serde_json::from_str(l).ok())
        .collect();
    let row = rows
        .iter()
        .find(|r| r["type"] == "message")
        .unwrap_or_else(|| panic!("a replay row: {text}"));
    assert_eq!(row["action"], "skipped", "{row}");
    assert!(
        row["note"]
            .as_str()
            .unwrap_or_default()
            .starts_with("erased"),
        "{row}"
    );
    assert_eq!(
        out.status.code(),
        Some(1),
        "a skipped body is reported as left in place"
    );
    // Erasing twice is fine.
    let again = ok_json(req(&client, &subjects.erase(), json!({"request_id": a_id})).await);
    assert_eq!(again["already_erased"], true);
    assert_eq!(kv_history(&js, &config.keys.bucket, &a_id).await.len(), 1);

    // Erase B through the CLI: its watch goes too.
    let out = output_ok(
        Command::new(vx_bridge_bin())
            .args(["erase", &b_id, "--reason", "cli"])
            .env("VXB_NATS__URL", nats.url())
            .env("VXB_NATS__SUBJECT_PREFIX", &config.nats.subject_prefix)
            .env("VXB_NATS__STREAM__NAME", &config.nats.stream.name)
            .env("VXB_SESSIONS__BUCKET", &config.sessions.bucket)
            .env("VXB_RECONCILE__STREAM", &config.reconcile.stream)
            .env("VXB_KEYS__BUCKET", &config.keys.bucket)
            .env_remove("VXB_CONFIG"),
    );
    let cli: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(cli["request_id"], b_id);
    assert_eq!(cli["watch_removed"], true);
    assert_eq!(cli["view_key_removed"], true);
    let wq = js.get_stream(&config.reconcile.stream).await.unwrap();
    assert!(wq
        .get_last_raw_message_by_subject(&subjects.reconcile(&b_id))
        .await
        .is_err());
    let (code, _) =
        error_code(req(&client, &subjects.result_get(), json!({"request_id": b_id})).await);
    assert_eq!(code, 410);
    // A bad id on the command line: 64, nothing sent.
    let bad = Command::new(vx_bridge_bin())
        .args(["erase", "not-a-uuid"])
        .env("VXB_NATS__URL", nats.url())
        .output()
        .unwrap();
    assert_eq!(bad.status.code(), Some(64));
    bridge.stop().await.unwrap();
}

#[tokio::test]
async fn past_retention_the_key_is_gone_and_result_get_says_410_expired() {
    let nats = NatsServer::start();
    let vx = pii_vx().await;
    let mut config = full_config(&nats, &vx).await;
    config.retention.pii = Duration::from_secs(2);
    let bridge = Bridge::start(config.clone()).await;
    let (client, js) = nats.connect().await;
    let subjects = Subjects::new(&config.nats.subject_prefix);
    let body = pii_body("PASS");
    let id = body["request_id"].as_str().unwrap().to_owned();
    assert_eq!(
        Sender::new(&bridge)
            .send_status("msg_ret", body.to_string())
            .await,
        202
    );
    let keys_stream = js
        .get_stream(format!("KV_{}", config.keys.bucket))
        .await
        .unwrap();
    assert_eq!(
        keys_stream.cached_info().config.max_age,
        Duration::from_secs(2)
    );
    eventually(
        "result.get answers while the key lives",
        Duration::from_secs(5),
        async || {
            matches!(
                req(&client, &subjects.result_get(), json!({"request_id": id})).await,
                Reply::Ok(_)
            )
        },
    )
    .await;
    eventually(
        "result.get says 410 expired",
        Duration::from_secs(20),
        async || match req(&client, &subjects.result_get(), json!({"request_id": id})).await {
            Reply::Error {
                code: 410, message, ..
            } => message.starts_with("expired"),
            _ => false,
        },
    )
    .await;
    let kv = js.get_key_value(&config.keys.bucket).await.unwrap();
    assert!(
        kv.get(&id).await.unwrap().is_none(),
        "the key left the bucket"
    );
    bridge.stop().await.unwrap();
}

#[tokio::test]
async fn two_replicas_racing_on_100_new_sessions_end_with_one_key_each_and_every_event_opens() {
    let nats = NatsServer::start();
    let config = test_config(&nats.url());
    let one = Bridge::start(config.clone()).await;
    let two = Bridge::start(config.clone()).await;
    let (s1, s2) = (Sender::new(&one), Sender::new(&two));
    let ids: Vec<String> = (0..100).map(|_| new_request_id()).collect();
    let sends = ids.iter().enumerate().map(|(i, id)| {
        let (s1, s2) = (&s1, &s2);
        async move {
            // The same session at both replicas at once, as two different deliveries.
            let (id1, id2) = (format!("r1_{i}"), format!("r2_{i}"));
            let (b1, b2) = (body_with("PENDING", id), body_with("PASS", id));
            let (a, b) = tokio::join!(s1.send(&id1, &b1), s2.send(&id2, &b2));
            assert_eq!((a.status().as_u16(), b.status().as_u16()), (202, 202));
        }
    });
    futures::future::join_all(sends).await;
    let (client, js) = nats.connect().await;
    for id in &ids {
        let h = kv_history(&js, &config.keys.bucket, id).await;
        assert_eq!(h.len(), 1, "one key for {id}: {} revisions", h.len());
    }
    // Every event of the stream opens with its session's one key.
    let keys = keystore(&client, &config);
    let mut stream = js.get_stream(&config.nats.stream.name).await.unwrap();
    let last = stream.info().await.unwrap().state.last_sequence;
    assert_eq!(last, 200);
    for seq in 1..=last {
        let m = stream.get_raw_message(seq).await.unwrap();
        assert!(ids.contains(&opened_request_id(&keys, &m).await));
    }
    one.stop().await.unwrap();
    two.stop().await.unwrap();
}

#[tokio::test]
async fn a_nats_restart_during_key_creation_loses_no_event_and_leaves_none_without_its_key() {
    let mut nats = NatsServer::start();
    let config = test_config(&nats.url());
    let mut bridge = BinaryBridge::spawn(
        &config,
        &[("VXB_NATS__OUTAGE_WAIT", "8s".into())],
        Stdio::null(),
    );
    bridge.wait_ready().await;
    let send = Sender::to(format!("{}/webhooks/vx", bridge.base()), &config);
    let accepted = std::sync::Mutex::new(Vec::new());
    let sending = async {
        for i in 0..60 {
            let id = new_request_id();
            if let Ok(r) = send
                .try_send(&format!("nr_{i}"), &body_with("PASS", &id))
                .await
            {
                if r.status() == 202 {
                    accepted.lock().unwrap().push(id);
                }
            }
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
    };
    let restarting = async {
        tokio::time::sleep(Duration::from_millis(300)).await;
        nats.kill();
        tokio::time::sleep(Duration::from_millis(700)).await;
        nats.restart();
    };
    tokio::join!(sending, restarting);
    let accepted = accepted.into_inner().unwrap();
    assert!(
        accepted.len() >= 50,
        "most were accepted: {}",
        accepted.len()
    );
    let (client, js) = nats.connect().await;
    let keys = keystore(&client, &config);
    let mut stream = js.get_stream(&config.nats.stream.name).await.unwrap();
    let last = stream.info().await.unwrap().state.last_sequence;
    let mut stored = std::collections::HashSet::new();
    for seq in 1..=last {
        let Ok(m) = stream.get_raw_message(seq).await else {
            continue;
        };
        stored.insert(opened_request_id(&keys, &m).await);
    }
    for id in &accepted {
        assert!(stored.contains(id), "202 for {id}, but not stored");
    }
    let status = bridge.sigterm().await;
    assert!(status.success());
}

#[tokio::test]
async fn kek_rotation_new_wraps_use_the_new_kek_old_ones_still_open_and_rewrap_retires_the_old() {
    let nats = NatsServer::start();
    let dir = tempfile::tempdir().unwrap();
    let old_line = vx_bridge::pii::kek::generate_line("old").unwrap();
    let new_line = vx_bridge::pii::kek::generate_line("new").unwrap();
    let file = dir.path().join("keks");
    std::fs::write(&file, &old_line).unwrap();
    let mut config = test_config(&nats.url());
    config.keys.kek_file = Some(file.clone());
    let bridge = Bridge::start(config.clone()).await;
    let a = new_request_id();
    assert_eq!(
        Sender::new(&bridge)
            .send_status("rot_a", body_with("PASS", &a))
            .await,
        202
    );
    bridge.stop().await.unwrap();
    // Rotation: the new KEK first, the old one after it.
    std::fs::write(&file, format!("{new_line}{old_line}")).unwrap();
    let bridge = Bridge::start(config.clone()).await;
    let b = new_request_id();
    assert_eq!(
        Sender::new(&bridge)
            .send_status("rot_b", body_with("PASS", &b))
            .await,
        202
    );
    let (client, js) = nats.connect().await;
    let kv = js.get_key_value(&config.keys.bucket).await.unwrap();
    let kid_of = async |id: &str| {
        let v = kv.get(id).await.unwrap().unwrap();
        vx_bridge::pii::jwe::kid(std::str::from_utf8(&v).unwrap()).unwrap()
    };
    assert_eq!(kid_of(&a).await, "old");
    assert_eq!(kid_of(&b).await, "new");
    let stream = js.get_stream(&config.nats.stream.name).await.unwrap();
    // Both events (seq 1 and 2) open with the KEKs of `kek_file`.
    let both_open_with = async |kek_file: &Path| {
        let keys = KeyStore::new(
            client.clone(),
            &config,
            Some(vx_bridge::pii::KekRing::read(kek_file).unwrap()),
        );
        for seq in [1, 2] {
            let m = stream.get_raw_message(seq).await.unwrap();
            assert!(vx_bridge::pii::open_event(Some(&keys), &m.payload)
                .await
                .unwrap()
                .is_some());
        }
    };
    // Both events open with the rotated file.
    both_open_with(&file).await;
    // Retire the old KEK: rewrap while the bridge runs, then the new KEK alone opens both.
    let rewrap = |json: bool| {
        let mut cmd = Command::new(vx_bridge_bin());
        clean_env(&mut cmd)
            .args(["keys", "rewrap"])
            .args(json.then_some("--json"))
            .env("VXB_NATS__URL", nats.url())
            .env("VXB_KEYS__BUCKET", &config.keys.bucket)
            .env("VXB_KEYS__KEK_FILE", &file);
        cmd
    };
    let out = output_ok(&mut rewrap(true));
    let report: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(report["seen"], 2);
    assert_eq!(report["current"], 1);
    assert_eq!(report["rewrapped"]["old"], 1);
    assert_eq!(kid_of(&a).await, "new");
    let again = rewrap(false).output().unwrap();
    let text = String::from_utf8_lossy(&again.stdout);
    assert!(
        text.contains("2 already under new") && text.contains("re-wrapped none"),
        "{text}"
    );
    let only_new = dir.path().join("new-only");
    std::fs::write(&only_new, &new_line).unwrap();
    both_open_with(&only_new).await;
    // No KEK material in the report or the check-config output.
    let secret = |line: &str| line.trim().split_once(':').unwrap().1.to_owned();
    for s in [secret(&old_line), secret(&new_line)] {
        assert!(!String::from_utf8_lossy(&out.stdout).contains(&s));
    }
    bridge.stop().await.unwrap();
}

#[tokio::test]
async fn without_a_kek_mode_encrypted_refuses_to_start_naming_keys_kek_file() {
    let out = hmac_cli()
        .arg("serve")
        .env("VXB_NATS__URL", "nats://127.0.0.1:1")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(64));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("`keys.kek_file`"), "{err}");
    // A KEK file that is not one: 64, the line named, the key never printed.
    let dir = tempfile::tempdir().unwrap();
    let bad = dir.path().join("kek");
    std::fs::write(&bad, "k1:c2VjcmV0LWJ1dC1zaG9ydA==\n").unwrap();
    let out = hmac_cli()
        .arg("check-config")
        .env("VXB_KEYS__KEK_FILE", &bad)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(64));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("keys.kek_file") && err.contains("line 1"),
        "{err}"
    );
    assert!(!err.contains("c2VjcmV0"), "{err}");
    // A good one: check-config prints the path, never the key.
    let good = dir.path().join("good");
    let line = vx_bridge::pii::kek::generate_line("k1").unwrap();
    std::fs::write(&good, &line).unwrap();
    let out = output_ok(
        hmac_cli()
            .arg("check-config")
            .env("VXB_KEYS__KEK_FILE", &good),
    );
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("pii = \"encrypted\""), "{text}");
    assert!(text.contains(good.to_str().unwrap()));
    let key = line.trim().split_once(':').unwrap().1;
    assert!(!text.contains(key) && !String::from_utf8_lossy(&out.stderr).contains(key));
}

#[tokio::test]
async fn mode_omitted_puts_no_personal_data_on_the_bus_and_clear_keeps_todays_form() {
    let nats = NatsServer::start();
    for (mode, version) in [(PiiMode::Omitted, 2), (PiiMode::Clear, 1)] {
        let mut config = test_config(&nats.url());
        config.events.pii = mode;
        config.keys.kek_file = None;
        let bridge = Bridge::start(config.clone()).await;
        let send = Sender::new(&bridge);
        let body = pii_body("PASS");
        assert_eq!(send.send_status("m1", body.to_string()).await, 202);
        let mut bad = pii_body("PASS");
        bad["journey"] = json!(1);
        assert_eq!(send.send_status("m2", bad.to_string()).await, 422);
        let (_client, js) = nats.connect().await;
        let stream = js.get_stream(&config.nats.stream.name).await.unwrap();
        let subjects = Subjects::new(&config.nats.subject_prefix);
        let e = last_on(&stream, &subjects.event(EventKind::CompletedPass)).await;
        let v: Value = serde_json::from_slice(&e.payload).unwrap();
        assert_eq!(v["schema_version"], version, "{mode:?}");
        Schemas::get().check_event(&v).expect("valid");
        let r = last_on(&stream, &subjects.rejected()).await;
        match mode {
            PiiMode::Omitted => {
                assert!(v.get("result").is_none() && v.get("result_encrypted").is_none());
                assert!(r.payload.is_empty());
                assert_eq!(r.headers.get("vx-pii").map(|h| h.as_str()), Some("omitted"));
                for value in PII {
                    assert!(!contains(&e.payload, value) && !contains(&r.payload, value));
                }
            }
            _ => {
                assert_eq!(v["result"], body);
                assert!(r.headers.get("vx-pii").is_none());
            }
        }
        bridge.stop().await.unwrap();
    }
}
