//! No PII and no secret in anything the bridge writes, even at TRACE: the real binary runs with
//! `log.level = "trace"` through accepted, duplicate, rejected, unauthorized and unavailable
//! webhooks, and its whole output is searched for every PII value of the fixture; so are the
//! values the session view holds for those sessions.

use std::time::Duration;

use futures::StreamExt as _;
use serde_json::{json, Value};
use vx_bridge::mock_vx::MockVx;

use vx_testkit::{
    eventually_ok, test_config, BinaryBridge, NatsServer, Sender, Step, VxApi, SECRET, SEED,
    WRONG_SECRET,
};

/// Distinctive PII values, so a hit is never a coincidence.
pub const PII: &[&str] = &[
    "Zebulon",
    "Quackenbush",
    "742 Evergreen Terrace",
    "19561224",
    "zebulon.q@example.org",
    "555-867-5309",
    "D99887766",
    "NID-5566778899",
    "078-05-1120",
];

/// The seed body with the PII values above.
pub fn pii_body(status: &str) -> Value {
    let mut v: Value = serde_json::from_str(SEED).unwrap();
    v["request_id"] = json!(uuid::Uuid::new_v4().to_string());
    v["status"] = json!(status);
    v["fn"] = json!("Zebulon");
    v["ln"] = json!("Quackenbush");
    v["addr"] = json!("742 Evergreen Terrace");
    v["dob"] = json!("19561224");
    v["email"] = json!("zebulon.q@example.org");
    v["phone"] = json!("555-867-5309");
    v["ssn"] = json!("078-05-1120");
    let d = &mut v["dcams_plus"]["document_data"];
    d["FirstName"] = json!("Zebulon");
    d["LastName"] = json!("Quackenbush");
    d["Address"] = json!("742 Evergreen Terrace");
    d["DateOfBirth"] = json!("19561224");
    d["DocumentNumber"] = json!("D99887766");
    d["NationalID"] = json!("NID-5566778899");
    v
}

/// The mock VX API answering every session with [`pii_body`] (its request_id: the asked one).
async fn pii_vx_api() -> VxApi {
    let vx = VxApi::serve(MockVx::new(UPSTREAM_TOKEN).with_result_body(pii_body("PASS"))).await;
    vx.set_default(Step::Result("PASS"));
    vx
}

const UPSTREAM_TOKEN: &str = "tok-Upstream-Secret-7731";
const NATS_TOKEN: &str = "nats-Token-Secret-4410";

#[tokio::test]
async fn trace_logs_of_every_webhook_and_status_outcome_hold_no_pii_and_no_secret() {
    let mut nats = NatsServer::start_with(&["--auth", NATS_TOKEN]);
    let vx = pii_vx_api().await;
    let vx_url = vx.url().to_owned();
    let cfg = test_config(&nats.url());
    let log_dir = tempfile::tempdir().unwrap();
    let log_path = log_dir.path().join("bridge.log");
    let log = std::fs::File::create(&log_path).unwrap();
    let env = [
        ("VXB_NATS__PUBLISH_TIMEOUT", "1s".to_owned()),
        ("VXB_LOG__LEVEL", "trace".to_owned()),
        ("VXB_STATUS__ENABLED", "true".to_owned()),
        ("VXB_UPSTREAM__BASE_URL", vx_url.clone()),
        ("VXB_UPSTREAM__TOKEN", UPSTREAM_TOKEN.to_owned()),
        ("VXB_NATS__TOKEN", NATS_TOKEN.to_owned()),
    ];
    let mut bridge = BinaryBridge::spawn(&cfg, &env, log.into());
    bridge.wait_ready().await;
    let base = bridge.base();
    let sender = Sender::to(format!("{base}{}", cfg.http.webhook_path), &cfg);
    let send = |id: &str, body: Vec<u8>, secret: &str| {
        let sender = sender.clone().with_secret(secret);
        let id = id.to_owned();
        async move { sender.try_send(&id, &body).await.unwrap().status().as_u16() }
    };
    let mut codes = Vec::new();
    let pass_body = pii_body("PASS");
    let stored_id = pass_body["request_id"].as_str().unwrap().to_owned();
    let pass = serde_json::to_vec(&pass_body).unwrap();
    codes.push(send("msg_1", pass.clone(), SECRET).await);
    codes.push(send("msg_1", pass.clone(), SECRET).await);
    let pending = serde_json::to_vec(&pii_body("PENDING")).unwrap();
    codes.push(send("msg_2", pending, SECRET).await);
    // Schema violations whose values are PII.
    let mut bad = pii_body("FAIL");
    bad["dob"] = json!(19561224);
    bad["email"] = json!(["zebulon.q@example.org"]);
    bad["request_id"] = json!("Zebulon Quackenbush");
    codes.push(send("msg_3", serde_json::to_vec(&bad).unwrap(), SECRET).await);
    // Not JSON, with PII in it.
    codes.push(
        send(
            "msg_4",
            b"{\"fn\": \"Zebulon\", \"ssn\": 078-05-1120".to_vec(),
            SECRET,
        )
        .await,
    );
    // Wrong signature.
    codes.push(send("msg_5", pass.clone(), WRONG_SECRET).await);
    // Status and result lookups whose replies hold PII, and bad requests holding PII.
    let nc = async_nats::ConnectOptions::with_token(NATS_TOKEN.into())
        .connect(nats.url())
        .await
        .unwrap();
    let prefix = &cfg.nats.subject_prefix;
    let id = uuid::Uuid::new_v4().to_string();
    let mut replies = Vec::new();
    for (subject, body) in [
        (
            format!("{prefix}.status.get"),
            json!({"request_id": id}).to_string(),
        ),
        (
            format!("{prefix}.result.get"),
            json!({"request_id": id}).to_string(),
        ),
        (
            format!("{prefix}.result.get"),
            json!({"email": "zebulon.q@example.org"}).to_string(),
        ),
        (
            format!("{prefix}.status.get"),
            json!({"request_id": "Zebulon Quackenbush"}).to_string(),
        ),
        (
            format!("{prefix}.status.get"),
            "{\"ssn\": 078-05-1120".to_owned(),
        ),
    ] {
        let reply = nc.request(subject, body.into()).await.unwrap();
        let code = reply
            .headers
            .as_ref()
            .and_then(|h| h.get("Nats-Service-Error-Code"))
            .map_or_else(|| "ok".to_owned(), |c| c.to_string());
        replies.push(code);
    }
    assert_eq!(replies, ["ok", "ok", "400", "400", "400"]);
    // The session view holds the two stored sessions and the one looked up at VX (a `lookup`
    // state), and none of their PII.
    let js = async_nats::jetstream::new(nc.clone());
    let store = js.get_key_value(&cfg.sessions.bucket).await.unwrap();
    let values = eventually_ok(
        "the session view to hold 3 sessions",
        Duration::from_secs(20),
        async || {
            let mut values = Vec::new();
            for key in store.keys().await.unwrap().collect::<Vec<_>>().await {
                let value = store.get(key.unwrap()).await.unwrap().unwrap();
                values.push(String::from_utf8(value.to_vec()).unwrap());
            }
            if values.len() == 3 {
                Ok(values)
            } else {
                Err(format!("view: {values:?}"))
            }
        },
    )
    .await;
    for v in &values {
        for value in PII {
            assert!(!v.contains(value), "PII {value:?} in the session view: {v}");
        }
        // What a value is made of: the fields of its schema, no more.
        let parsed: Value = serde_json::from_str(v).unwrap();
        assert_eq!(
            vx_bridge::schema::Schemas::get().check_session_state(&parsed),
            Ok(())
        );
    }
    // An erasure at TRACE too; then the key material this run made: the KEK and every data key
    // (unwrapped), which must never reach the logs in any encoding.
    let erase = nc
        .request(
            format!("{}.erase", cfg.nats.subject_prefix),
            json!({"request_id": stored_id, "reason": "Zebulon asked"})
                .to_string()
                .into(),
        )
        .await
        .unwrap();
    assert!(
        erase.headers.is_none(),
        "erase answered: {:?}",
        erase.payload
    );
    let keks = vx_testkit::test_keks(&cfg);
    let kek_line = std::fs::read_to_string(cfg.keys.kek_file.as_ref().unwrap()).unwrap();
    let mut key_material = vec![kek_line.trim().split_once(':').unwrap().1.to_owned()];
    let keys = js.get_key_value(&cfg.keys.bucket).await.unwrap();
    let names: Vec<String> = keys
        .keys()
        .await
        .unwrap()
        .map(|k| k.unwrap())
        .collect()
        .await;
    assert!(names.len() >= 2, "data keys were made: {names:?}");
    for name in names {
        let wrapped = keys.get(&name).await.unwrap().unwrap();
        if &wrapped[..] == b"erased" {
            continue;
        }
        let (dk, _) = keks
            .unwrap_key(std::str::from_utf8(&wrapped).unwrap())
            .unwrap();
        use base64::Engine as _;
        let b = dk.expose();
        key_material.push(base64::engine::general_purpose::STANDARD.encode(b));
        key_material.push(base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(b));
        key_material.push(hex::encode(b));
        key_material.push(format!("{:?}", &b[..8]).replace(' ', ""));
    }
    // NATS down.
    nats.kill();
    codes.push(send("msg_6", pass.clone(), SECRET).await);
    assert_eq!(codes, [202, 202, 202, 422, 400, 401, 503]);

    bridge.sigterm().await;
    let text = std::fs::read_to_string(&log_path).unwrap();
    assert!(
        text.lines().count() > 20,
        "trace logging produced output: {} lines",
        text.lines().count()
    );
    assert!(
        text.contains("webhook stored"),
        "the capture holds the bridge's own logs"
    );
    // Every line, of every crate at TRACE, is one JSON object.
    for line in text.lines() {
        let parsed: Result<serde_json::Map<String, Value>, _> = serde_json::from_str(line);
        assert!(parsed.is_ok(), "not a JSON object: {line}");
    }
    for value in PII {
        let hits: Vec<&str> = text.lines().filter(|l| l.contains(value)).take(3).collect();
        assert!(hits.is_empty(), "PII {value:?} in logs: {hits:#?}");
    }
    assert!(
        text.contains("status_request"),
        "the capture holds the status service's logs"
    );
    for secret in [
        SECRET,
        "MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw",
        "d3Jvbmc",
        UPSTREAM_TOKEN,
    ] {
        assert!(!text.contains(secret), "secret in logs");
    }
    for key in &key_material {
        assert!(!text.contains(key.as_str()), "key material in logs");
    }
    assert!(
        !text.contains("Zebulon"),
        "an erasure's reason is not logged"
    );
}
