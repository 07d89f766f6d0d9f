//! `vx-bridge replay` (the real binary) against a real nats-server: bodies rejected under a
//! strict `webhook.schema_file` come back as events once the schema is looser; `--dry-run`
//! publishes nothing; a second replay stores nothing, also after the duplicate window; bodies
//! that still fail stay and are reported; the selection flags; bad arguments and a bad schema
//! file are exit 64; a replayed PENDING is watched by the reconciler. In the default mode
//! (`events.pii = "encrypted"`): the rejected copies are JWEs, which replay opens with the KEK
//! and the keys bucket it is given, and the events it publishes carry `result_encrypted`.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::Duration;

use async_nats::jetstream;
use serde_json::{json, Value};
use vx_bridge::config::Config;
use vx_testkit::{
    body_with, clean_env, event_result, eventually, new_request_id, rejected_body, test_config,
    test_kek_file, vx_bridge_bin, Bridge, NatsServer, Sender, VxApi,
};

/// A result schema stricter than VX's payloads: it wants a field VX does not send.
const STRICT: &str = r#"{"type": "object", "required": ["request_id", "status", "schema_v2"]}"#;
/// A looser one than the embedded schema: any object (the bridge's core still applies).
const LOOSE: &str =
    r#"{"$schema": "https://json-schema.org/draft/2020-12/schema", "type": "object"}"#;

fn schema_file(dir: &Path, name: &str, text: &str) -> PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, text).unwrap();
    path
}

/// Runs `vx-bridge replay ARGS` against `cfg`'s NATS, stream and prefix, with `schema` as
/// `webhook.schema_file` (none: the embedded one), `cfg.replay.bucket`, and `cfg`'s PII mode,
/// keys bucket and KEK file (to open the encrypted rejected copies and seal the events).
fn replay(cfg: &Config, schema: Option<&Path>, args: &[&str]) -> Output {
    let mut cmd = Command::new(vx_bridge_bin());
    clean_env(&mut cmd)
        .arg("replay")
        .args(args)
        .env("VXB_NATS__URL", &cfg.nats.url)
        .env("VXB_NATS__SUBJECT_PREFIX", &cfg.nats.subject_prefix)
        .env("VXB_NATS__STREAM__NAME", &cfg.nats.stream.name)
        .env("VXB_REPLAY__BUCKET", &cfg.replay.bucket)
        .env("VXB_EVENTS__PII", cfg.events.pii.as_str())
        .env("VXB_KEYS__BUCKET", &cfg.keys.bucket);
    if let Some(kek) = &cfg.keys.kek_file {
        cmd.env("VXB_KEYS__KEK_FILE", kek);
    }
    if let Some(path) = schema {
        cmd.env("VXB_WEBHOOK__SCHEMA_FILE", path);
    }
    cmd.output().expect("run vx-bridge replay")
}

/// The `--json` lines of a run: its message objects and its summary.
fn json_lines(out: &Output) -> (Vec<Value>, Value) {
    let text = String::from_utf8_lossy(&out.stdout);
    let mut all: Vec<Value> = text
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}")))
        .collect();
    let summary = all.pop().expect("a summary line");
    assert_eq!(summary["type"], "summary", "{text}");
    assert!(all.iter().all(|m| m["type"] == "message"), "{text}");
    (all, summary)
}

fn code(out: &Output) -> i32 {
    out.status.code().expect("an exit code")
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

async fn stream(cfg: &Config) -> jetstream::stream::Stream {
    let client = async_nats::connect(&cfg.nats.url).await.unwrap();
    jetstream::new(client)
        .get_stream(&cfg.nats.stream.name)
        .await
        .unwrap()
}

async fn count(cfg: &Config) -> u64 {
    stream(cfg).await.info().await.unwrap().state.messages
}

fn header<'a>(m: &'a jetstream::message::StreamMessage, name: &str) -> Option<&'a str> {
    m.headers.get(name).map(|v| v.as_str())
}

/// What the test sent: two valid VX bodies (PASS, FAIL) and one that is not JSON, each
/// answered as rejected under [`STRICT`].
struct Sent {
    pass_id: String,
    fail_id: String,
    pass_body: Vec<u8>,
}

/// A config with its own marker bucket, on `nats`.
fn config(nats: &NatsServer) -> Config {
    let mut cfg = test_config(&nats.url());
    cfg.replay.bucket = format!("R_{}", &cfg.nats.stream.name[2..]);
    cfg
}

/// Starts a bridge with [`STRICT`], sends the three bodies (422, 422, 400), stops it.
async fn reject_three(cfg: &Config, strict: &Path) -> Sent {
    let mut strict_cfg = cfg.clone();
    strict_cfg.webhook.schema_file = Some(strict.to_owned());
    let bridge = Bridge::start(strict_cfg).await;
    let sender = Sender::new(&bridge);
    let (pass_id, fail_id) = (new_request_id(), new_request_id());
    let pass_body = body_with("PASS", &pass_id);
    assert_eq!(sender.send("msg_pass", &pass_body).await.status(), 422);
    let fail_body = body_with("FAIL", &fail_id);
    assert_eq!(sender.send("msg_fail", &fail_body).await.status(), 422);
    let dup = format!(r#"{{"request_id":"{pass_id}","status":"PASS","status":"FAIL"}}"#);
    assert_eq!(sender.send("msg_dup", dup.as_bytes()).await.status(), 400);
    bridge.stop().await.unwrap();
    assert_eq!(count(cfg).await, 3, "three rejected copies");
    Sent {
        pass_id,
        fail_id,
        pass_body,
    }
}

#[tokio::test]
async fn rejected_bodies_come_back_as_the_webhooks_events_after_a_looser_schema() {
    let nats = NatsServer::start();
    let dir = tempfile::tempdir().unwrap();
    let strict = schema_file(dir.path(), "strict.json", STRICT);
    let loose = schema_file(dir.path(), "loose.json", LOOSE);
    let cfg = config(&nats);
    let sent = reject_three(&cfg, &strict).await;
    // Restarted with the looser schema (and the projector on).
    let mut loose_cfg = cfg.clone();
    loose_cfg.webhook.schema_file = Some(loose.clone());
    let bridge = Bridge::start(loose_cfg).await;

    let out = replay(&cfg, Some(&loose), &["--json"]);
    // The body that is not JSON still fails: exit 1, reported, left in place.
    assert_eq!(code(&out), 1, "{}", stderr(&out));
    let (rows, summary) = json_lines(&out);
    assert_eq!(rows.len(), 3);
    assert_eq!(
        (
            summary["published"].as_u64(),
            summary["still_failing"].as_u64()
        ),
        (Some(2), Some(1)),
        "{summary}"
    );
    let actions: Vec<(&str, &str)> = rows
        .iter()
        .map(|r| (r["reason"].as_str().unwrap(), r["action"].as_str().unwrap()))
        .collect();
    assert_eq!(
        actions,
        [
            ("schema_violation", "published"),
            ("schema_violation", "published"),
            ("invalid_json", "still_fails")
        ]
    );
    assert_eq!(rows[2]["passes_now"], false);
    assert_eq!(rows[2]["reason_now"], "invalid_json");

    let client = async_nats::connect(nats.url()).await.unwrap();
    let mut s = stream(&cfg).await;
    assert_eq!(
        s.info().await.unwrap().state.messages,
        5,
        "3 rejected + 2 events"
    );
    let prefix = &cfg.nats.subject_prefix;
    for (row, (subject, request_id, delivery)) in rows.iter().zip([
        (
            format!("{prefix}.completed.pass"),
            &sent.pass_id,
            "msg_pass",
        ),
        (
            format!("{prefix}.completed.fail"),
            &sent.fail_id,
            "msg_fail",
        ),
    ]) {
        let rejected_seq = row["seq"].as_u64().unwrap();
        let rejected = s.direct_get(rejected_seq).await.unwrap();
        assert_eq!(rejected.subject.as_str(), format!("{prefix}.rejected"));
        let event = s
            .direct_get(row["event_seq"].as_u64().unwrap())
            .await
            .unwrap();
        assert_eq!(event.subject.as_str(), subject);
        assert_eq!(header(&event, "vx-source"), Some("replay"));
        assert_eq!(
            header(&event, "vx-replay-of"),
            Some(rejected_seq.to_string().as_str())
        );
        // The webhook's own Nats-Msg-Id: its delivery id bound to the body.
        let webhook_msg_id = header(&rejected, "Nats-Msg-Id")
            .unwrap()
            .strip_prefix("rejected:")
            .unwrap();
        assert!(webhook_msg_id.starts_with(&format!("{delivery}:sha256:")));
        assert_eq!(header(&event, "Nats-Msg-Id"), Some(webhook_msg_id));
        assert_eq!(header(&event, "ce-time"), header(&rejected, "ce-time"));
        assert_eq!(header(&event, "ce-subject"), Some(request_id.as_str()));
        let body: Value = serde_json::from_slice(&event.payload).unwrap();
        assert_eq!(body["request_id"], request_id.as_str());
        assert_eq!(body["received_at"], header(&rejected, "ce-time").unwrap());
        // The default mode: both copies encrypted; the event's result is the rejected body.
        assert_eq!(header(&rejected, "vx-pii"), Some("encrypted"));
        assert_eq!(body["schema_version"], 2, "{body}");
        assert!(body.get("result").is_none(), "{body}");
        let kept = rejected_body(&cfg, &client, Some(&rejected.headers), &rejected.payload).await;
        assert_eq!(
            event_result(&cfg, &client, &event.payload).await,
            serde_json::from_slice::<Value>(&kept).unwrap()
        );
    }
    let first = s.direct_get(4).await.unwrap().payload;
    assert_eq!(
        event_result(&cfg, &client, &first).await,
        serde_json::from_slice::<Value>(&sent.pass_body).unwrap()
    );

    // The session view shows where the state came from.
    let kv = jetstream::new(async_nats::connect(nats.url()).await.unwrap())
        .get_key_value(&cfg.sessions.bucket)
        .await
        .unwrap();
    for id in [&sent.pass_id, &sent.fail_id] {
        eventually(
            "the view has the replayed state",
            Duration::from_secs(10),
            async || {
                let Ok(Some(v)) = kv.get(id.to_ascii_lowercase()).await else {
                    return false;
                };
                let v: Value = serde_json::from_slice(&v).unwrap();
                v["source"] == "replay" && v["terminal"] == true
            },
        )
        .await;
    }
    bridge.stop().await.unwrap();
}

#[tokio::test]
async fn a_replayed_pending_event_registers_its_session_which_then_completes_by_polling() {
    let nats = NatsServer::start();
    let dir = tempfile::tempdir().unwrap();
    let strict = schema_file(dir.path(), "strict.json", STRICT);
    let loose = schema_file(dir.path(), "loose.json", LOOSE);
    let cfg = config(&nats);
    let mut strict_cfg = cfg.clone();
    strict_cfg.webhook.schema_file = Some(strict);
    let bridge = Bridge::start(strict_cfg).await;
    let id = new_request_id();
    let sent = Sender::new(&bridge)
        .send("msg_p", &body_with("PENDING", &id))
        .await;
    assert_eq!(sent.status(), 422);
    bridge.stop().await.unwrap();
    // Restarted with the looser schema, the status service and the reconciler (its sessions
    // go INIT → IN PROGRESS → PASS).
    let vx = VxApi::serve(VxApi::seeded("tok")).await;
    vx.complete_with(Some("PASS"));
    let mut live = cfg.clone();
    live.webhook.schema_file = Some(loose.clone());
    live.status.enabled = true;
    live.upstream.base_url = vx.url().to_owned();
    live.upstream.token = Some(vx_bridge::secret::Secret::new("tok"));
    live.reconcile.schedule = vec![Duration::from_millis(200)];
    let bridge = Bridge::start(live).await;

    let out = replay(&cfg, Some(&loose), &["--json"]);
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    let events = async || {
        let mut s = stream(&cfg).await;
        let last = s.info().await.unwrap().state.last_sequence;
        let mut out = Vec::new();
        for seq in 2..=last {
            let m = s.direct_get(seq).await.unwrap();
            let body: Value = serde_json::from_slice(&m.payload).unwrap();
            out.push((
                body["type"].as_str().unwrap_or("").to_owned(),
                header(&m, "vx-source").map(str::to_owned),
            ));
        }
        out
    };
    let want = [
        ("pending".to_owned(), Some("replay".to_owned())),
        ("completed.pass".to_owned(), Some("poll".to_owned())),
    ];
    eventually(
        "the replayed PENDING is watched and completed by polling",
        Duration::from_secs(20),
        async || events().await == want,
    )
    .await;
    // INIT, IN PROGRESS, then the PASS body: the session was registered once.
    assert_eq!(vx.cycle_calls(&id), 3);
    bridge.stop().await.unwrap();
}

#[tokio::test]
async fn a_dry_run_prints_the_plan_and_publishes_nothing() {
    let nats = NatsServer::start();
    let dir = tempfile::tempdir().unwrap();
    let strict = schema_file(dir.path(), "strict.json", STRICT);
    let cfg = config(&nats);
    reject_three(&cfg, &strict).await;

    let out = replay(&cfg, None, &["--dry-run", "--reason", "schema"]);
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    let text = String::from_utf8_lossy(&out.stdout);
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.len(), 4, "header, two messages, summary:\n{text}");
    assert!(lines[0].contains("PASSES NOW"), "{text}");
    for (line, seq, kind) in [
        (lines[1], "1", "completed.pass"),
        (lines[2], "2", "completed.fail"),
    ] {
        assert!(line.trim_start().starts_with(seq), "{line}");
        assert!(
            line.contains("schema_violation") && line.contains("yes"),
            "{line}"
        );
        assert!(
            line.contains(&format!(
                "would publish to {}.{kind}",
                cfg.nats.subject_prefix
            )),
            "{line}"
        );
    }
    assert_eq!(
        lines[3],
        "dry run, nothing published: 2 selected: 2 would be published, 0 already replayed, 0 still failing, 0 skipped"
    );
    assert_eq!(count(&cfg).await, 3, "nothing published");
    // Nor any marker bucket created.
    let js = jetstream::new(async_nats::connect(nats.url()).await.unwrap());
    assert!(js
        .get_stream(format!("KV_{}", cfg.replay.bucket))
        .await
        .is_err());

    // Under today's (still strict) schema, they still fail: exit 1, nothing published.
    let out = replay(&cfg, Some(&strict), &["--json"]);
    assert_eq!(code(&out), 1, "{}", stderr(&out));
    let (rows, summary) = json_lines(&out);
    assert_eq!(summary["still_failing"], 3, "{summary}");
    assert!(rows.iter().all(|r| r["action"] == "still_fails"));
    assert_eq!(rows[0]["errors"][0]["instance_path"], "");
    assert_eq!(count(&cfg).await, 3, "nothing published");
}

#[tokio::test]
async fn a_second_replay_stores_nothing_even_after_the_duplicate_window() {
    let nats = NatsServer::start();
    let dir = tempfile::tempdir().unwrap();
    let strict = schema_file(dir.path(), "strict.json", STRICT);
    let mut cfg = config(&nats);
    let window = Duration::from_secs(1);
    cfg.nats.stream.duplicate_window = window;
    reject_three(&cfg, &strict).await;

    let out = replay(&cfg, None, &["--json", "--reason", "schema"]);
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    assert_eq!(json_lines(&out).1["published"], 2);
    assert_eq!(count(&cfg).await, 5);
    // Waiting out the window is waiting for time itself: there is no condition to await.
    tokio::time::sleep(window + Duration::from_millis(500)).await;
    let out = replay(&cfg, None, &["--json", "--reason", "schema"]);
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    let (rows, summary) = json_lines(&out);
    assert_eq!(summary["already_replayed"], 2, "{summary}");
    assert_eq!(summary["published"], 0);
    assert!(rows.iter().all(|r| r["action"] == "already_replayed"));
    assert_eq!(rows[0]["event_seq"], 4);
    assert_eq!(count(&cfg).await, 5, "nothing new stored");
    // A dry run sees the markers too.
    let (rows, _) = json_lines(&replay(&cfg, None, &["--json", "--dry-run"]));
    assert_eq!(rows[1]["action"], "already_replayed");
}

#[tokio::test]
async fn seq_reason_and_since_select_what_they_say() {
    let nats = NatsServer::start();
    let dir = tempfile::tempdir().unwrap();
    let strict = schema_file(dir.path(), "strict.json", STRICT);
    let cfg = config(&nats);
    reject_three(&cfg, &strict).await;
    let seqs = |args: &[&str]| -> Vec<u64> {
        let mut all = vec!["--json", "--dry-run"];
        all.extend_from_slice(args);
        let out = replay(&cfg, None, &all);
        assert!([0, 1].contains(&code(&out)), "{args:?}: {}", stderr(&out));
        json_lines(&out)
            .0
            .iter()
            .map(|r| r["seq"].as_u64().unwrap())
            .collect()
    };
    assert_eq!(seqs(&[]), [1, 2, 3]);
    assert_eq!(seqs(&["--seq", "2..3"]), [2, 3]);
    assert_eq!(seqs(&["--seq", "2"]), [2]);
    assert_eq!(seqs(&["--seq", "..1"]), [1]);
    assert_eq!(seqs(&["--seq", "4.."]), Vec::<u64>::new());
    assert_eq!(seqs(&["--reason", "json"]), [3]);
    assert_eq!(seqs(&["--reason", "schema"]), [1, 2]);
    assert_eq!(seqs(&["--since", "1h"]), [1, 2, 3]);
    assert_eq!(
        seqs(&["--since", "2999-01-01T00:00:00Z"]),
        Vec::<u64>::new()
    );
    assert_eq!(
        seqs(&["--until", "2000-01-01T00:00:00Z"]),
        Vec::<u64>::new()
    );
    assert_eq!(
        seqs(&["--since", "1h", "--seq", "2..", "--reason", "json"]),
        [3]
    );

    for bad in [
        &["--seq", "3..2"][..],
        &["--seq", "x"],
        &["--reason", "size"],
        &["--since", "last tuesday"],
    ] {
        let out = replay(&cfg, None, bad);
        assert_eq!(code(&out), 64, "{bad:?}");
        assert!(stderr(&out).contains(bad[0]), "{bad:?}: {}", stderr(&out));
        assert!(out.stdout.is_empty());
    }
    assert_eq!(count(&cfg).await, 3);
}

#[tokio::test]
async fn nats_away_is_exit_69() {
    let nats = NatsServer::start();
    let mut cfg = config(&nats);
    // No stream of this name.
    let out = replay(&cfg, None, &["--dry-run"]);
    assert_eq!(code(&out), 69, "{}", stderr(&out));
    assert!(
        stderr(&out).contains(&cfg.nats.stream.name),
        "{}",
        stderr(&out)
    );
    cfg.nats.url = format!("nats://127.0.0.1:{}", vx_testkit::free_port());
    let out = replay(&cfg, None, &["--dry-run"]);
    assert_eq!(code(&out), 69, "{}", stderr(&out));
}

#[test]
fn a_missing_or_invalid_schema_file_is_exit_64_naming_the_key() {
    let dir = tempfile::tempdir().unwrap();
    // The default mode needs a KEK (given: the schema file is the only error).
    let cases = [
        (dir.path().join("missing.json"), "cannot read"),
        (schema_file(dir.path(), "not-json.json", "{"), "is not JSON"),
        (
            schema_file(dir.path(), "bad.json", r#"{"type": "strnig"}"#),
            "is not a JSON Schema that compiles",
        ),
    ];
    for (path, why) in cases {
        for args in [&["check-config"][..], &["replay", "--dry-run"]] {
            let out = clean_env(&mut Command::new(vx_bridge_bin()))
                .args(args)
                .env("VXB_WEBHOOK__AUTH__MODE", "none")
                .env("VXB_KEYS__KEK_FILE", test_kek_file())
                .env("VXB_WEBHOOK__SCHEMA_FILE", &path)
                .env("VXB_NATS__URL", "nats://127.0.0.1:1")
                .output()
                .unwrap();
            let err = stderr(&out);
            assert_eq!(code(&out), 64, "{args:?} {path:?}: {err}");
            assert_eq!(err.lines().count(), 1, "{err}");
            assert!(
                err.contains("`webhook.schema_file`") && err.contains(why),
                "{args:?}: {err}"
            );
        }
    }
    // A good one is shown by check-config.
    let good = schema_file(dir.path(), "good.json", LOOSE);
    let out = clean_env(&mut Command::new(vx_bridge_bin()))
        .arg("check-config")
        .env("VXB_WEBHOOK__AUTH__MODE", "none")
        .env("VXB_KEYS__KEK_FILE", test_kek_file())
        .env("VXB_WEBHOOK__SCHEMA_FILE", &good)
        .output()
        .unwrap();
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        stdout.contains(&format!(
            "schema_file = {}",
            json!(good.display().to_string())
        )),
        "{stdout}"
    );
}
