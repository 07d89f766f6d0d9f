//! The real binary: `check-config` exit codes and output, and SIGTERM under load.

use std::process::{Command, Stdio};
use std::time::Duration;

use async_nats::jetstream;
use futures::TryStreamExt as _;
use reqwest::StatusCode;
use serde_json::Value;
use vx_testkit::{
    body_with, clean_env, eventually, free_port, hmac_cli, metric_value, new_request_id, output_ok,
    test_config, vx_bridge_bin, wait_for_metric, BinaryBridge, NatsServer, Sender, Step, VxApi,
    SECRET,
};

#[test]
fn check_config_prints_the_effective_config_with_secrets_redacted() {
    let out = output_ok(
        hmac_cli()
            .args(["check-config"])
            .env("VXB_NATS__STREAM__REPLICAS", "3")
            .env("VXB_KEYS__KEK_FILE", vx_testkit::test_kek_file()),
    );
    let stdout = String::from_utf8(out.stdout).unwrap();
    assert!(stdout.contains("replicas = 3"), "{stdout}");
    assert!(stdout.contains("[redacted]"));
    // Not even its key (the base64 after `whsec_`).
    let key = SECRET.strip_prefix("whsec_").unwrap();
    assert!(!stdout.contains(key), "secret printed: {stdout}");
    // What it prints is itself a valid config file (secrets aside).
    let parsed: toml::Value = toml::from_str(&stdout).unwrap();
    assert_eq!(parsed["nats"]["stream"]["replicas"].as_integer(), Some(3));
}

#[test]
fn a_bad_config_exits_64_with_one_line_naming_the_key() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("vx.toml");
    std::fs::write(&file, "[webhook.auth]\nmode = \"hmac\"\n[webhook.auth.hmac]\nsecrets = [\"k\"]\n[nats.stream]\nreplicas = 9\n").unwrap();
    type Case = (Vec<String>, Vec<(&'static str, &'static str)>, &'static str);
    let cases: Vec<Case> = vec![
        (
            vec![
                "--config".into(),
                file.display().to_string(),
                "check-config".into(),
            ],
            vec![],
            "nats.stream.replicas",
        ),
        (vec!["check-config".into()], vec![], "webhook.auth.mode"),
        (vec!["serve".into()], vec![], "webhook.auth.mode"),
        (
            vec!["check-config".into()],
            vec![("VXB_WEBHOOK__AUTH__MODE", "sometimes")],
            "webhook.auth.mode",
        ),
        (
            vec!["check-config".into()],
            vec![("VXB_CONFIG", "/nonexistent.toml")],
            "--config",
        ),
    ];
    for (args, env, key) in cases {
        let mut cmd = Command::new(vx_bridge_bin());
        clean_env(&mut cmd).args(&args);
        for (k, v) in env {
            cmd.env(k, v);
        }
        let out = cmd.output().unwrap();
        let stderr = String::from_utf8(out.stderr).unwrap();
        assert_eq!(out.status.code(), Some(64), "{args:?}: {stderr}");
        assert_eq!(stderr.lines().count(), 1, "one line: {stderr}");
        assert!(stderr.contains(&format!("`{key}`")), "{args:?}: {stderr}");
    }
}

/// A response's status and body, or the transport error.
type Outcome = Result<(StatusCode, Value), String>;

#[tokio::test]
async fn sigterm_under_load_loses_no_accepted_event() {
    let nats = NatsServer::start();
    let template = test_config(&nats.url());
    let stream_name = template.nats.stream.name.clone();
    let mut bridge = BinaryBridge::spawn(
        &template,
        &[("VXB_HTTP__SHUTDOWN_TIMEOUT", "10s".into())],
        Stdio::null(),
    );
    bridge.wait_ready().await;
    let port = bridge.port;

    let url = format!("http://127.0.0.1:{port}{}", template.http.webhook_path);
    let mut workers = Vec::new();
    let stored = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    for w in 0..8 {
        let (sender, stored) = (Sender::to(url.clone(), &template), stored.clone());
        workers.push(tokio::spawn(async move {
            let mut results: Vec<(String, Outcome)> = Vec::new();
            for i in 0..2000 {
                let id = format!("msg_{w}_{i}");
                let body = body_with("PASS", &new_request_id());
                match sender.try_send(&id, &body).await {
                    Ok(res) => {
                        let status = res.status();
                        if status == StatusCode::ACCEPTED {
                            stored.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                        }
                        let v = res.json::<Value>().await.unwrap_or(Value::Null);
                        results.push((id, Ok((status, v))));
                    }
                    Err(e) => {
                        results.push((id, Err(e.to_string())));
                        break; // the server is gone
                    }
                }
            }
            results
        }));
    }
    // SIGTERM once the load is under way (a condition, not a fixed sleep: a busy machine is slow).
    eventually(
        "load under way (100 stored)",
        Duration::from_secs(30),
        async || stored.load(std::sync::atomic::Ordering::Relaxed) >= 100,
    )
    .await;
    let status = bridge.sigterm().await;
    assert!(status.success(), "exit status {status:?}");

    let mut accepted = Vec::new();
    let mut refused = 0;
    for w in workers {
        for (id, r) in w.await.unwrap() {
            match r {
                Ok((s, v)) if s == StatusCode::ACCEPTED => accepted.push((id, v)),
                Ok((s, _)) => {
                    assert_eq!(
                        s,
                        StatusCode::SERVICE_UNAVAILABLE,
                        "{id}: only 202 or a retryable refusal"
                    );
                    refused += 1;
                }
                Err(_) => refused += 1,
            }
        }
    }
    assert!(
        accepted.len() > 50,
        "load ran before SIGTERM: {}",
        accepted.len()
    );
    let js = jetstream::new(async_nats::connect(nats.url()).await.unwrap());
    let stream = js.get_stream(&stream_name).await.unwrap();
    for (id, v) in &accepted {
        let msg = stream
            .get_raw_message(v["seq"].as_u64().unwrap())
            .await
            .unwrap();
        assert_eq!(
            msg.headers
                .get("Nats-Msg-Id")
                .and_then(|h| h.as_str().split_once(":sha256:"))
                .map(|(delivery, _)| delivery),
            Some(id.as_str()),
            "202 but not stored: {id}"
        );
    }
    eprintln!(
        "sigterm: {} accepted and stored, {} refused",
        accepted.len(),
        refused
    );
}

/// The mock VX API with its OAuth token endpoint (any client), every session `COMPLETED`.
async fn vx_api_with_oauth() -> VxApi {
    let vx = VxApi::serve(VxApi::seeded("static-token")).await;
    vx.set_default(Step::Status("COMPLETED"));
    vx
}

/// Waits up to `secs` for the unlabelled gauge `name` to read `want`.
async fn wait_for_gauge(base: &str, name: &str, want: f64, secs: u64) {
    wait_for_metric(base, name, &[], want, Duration::from_secs(secs)).await;
}

#[tokio::test]
async fn every_metric_in_the_readme_is_exported() {
    let readme =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/README.md")).unwrap();
    let table = readme
        .split("<!-- METRICS:START -->")
        .nth(1)
        .and_then(|r| r.split("<!-- METRICS:END -->").next())
        .expect("metrics table markers in README.md");
    let names: Vec<&str> = table
        .lines()
        .filter_map(|l| l.strip_prefix("| `"))
        .filter_map(|l| l.split('`').next())
        .collect();
    assert!(names.len() >= 10, "{names:?}");

    let nats = NatsServer::start();
    let mock = vx_api_with_oauth().await;
    let vx = mock.url().to_owned();
    let template = test_config(&nats.url());
    let env = [
        ("VXB_STATUS__ENABLED", "true".to_owned()),
        ("VXB_UPSTREAM__BASE_URL", vx.clone()),
        (
            "VXB_UPSTREAM__OAUTH__TOKEN_URL",
            format!("{vx}/oauth/token"),
        ),
        ("VXB_UPSTREAM__OAUTH__CLIENT_ID", "c".to_owned()),
        ("VXB_UPSTREAM__OAUTH__CLIENT_SECRET", "s".to_owned()),
    ];
    let bridge = BinaryBridge::spawn(&template, &env, Stdio::null());
    bridge.wait_ready().await;
    let port = bridge.port;
    let body = body_with("PASS", &new_request_id());
    let sender = Sender::to(
        format!("http://127.0.0.1:{port}{}", template.http.webhook_path),
        &template,
    );
    assert_eq!(
        sender
            .try_send("msg_metrics", &body)
            .await
            .unwrap()
            .status(),
        202
    );
    let nc = async_nats::connect(nats.url()).await.unwrap();
    let subject = format!("{}.status.get", template.nats.subject_prefix);
    let ask = serde_json::json!({"request_id": new_request_id()}).to_string();
    for _ in 0..2 {
        nc.request(subject.clone(), ask.clone().into())
            .await
            .unwrap();
    }
    let metrics = vx_testkit::scrape(&bridge.base()).await;
    let missing: Vec<&&str> = names.iter().filter(|n| !metrics.contains(**n)).collect();
    assert!(
        missing.is_empty(),
        "documented but not exported: {missing:?}\n{metrics}"
    );
    // Each has its help text (promtool check metrics wants one).
    let no_help: Vec<&&str> = names
        .iter()
        .filter(|n| !metrics.contains(&format!("# HELP {n} ")))
        .collect();
    assert!(no_help.is_empty(), "no # HELP: {no_help:?}");
    // Every exported vx_bridge_ metric is documented too.
    for line in metrics.lines().filter(|l| l.starts_with("vx_bridge_")) {
        let name = line.split(['{', ' ']).next().unwrap();
        let base = ["_bucket", "_sum", "_count"]
            .iter()
            .fold(name, |n, s| n.strip_suffix(s).unwrap_or(n));
        assert!(names.contains(&base), "exported but not documented: {base}");
    }

    // Values, not only names: what this test drove, exactly.
    let v = |name: &str, labels: &[(&str, &str)]| metric_value(&metrics, name, labels);
    type Series<'a> = (&'a str, &'a [(&'a str, &'a str)], f64);
    let expected: [Series; 12] = [
        ("vx_bridge_nats_connected", &[], 1.0),
        ("vx_bridge_stream_ready", &[], 1.0),
        ("vx_bridge_webhooks_total", &[("outcome", "accepted")], 1.0),
        ("vx_bridge_webhooks_in_flight", &[], 0.0),
        ("vx_bridge_events_total", &[("type", "pass")], 1.0),
        (
            "vx_bridge_publish_duration_seconds_count",
            &[("result", "ok")],
            1.0,
        ),
        (
            "vx_bridge_status_requests_total",
            &[("endpoint", "status"), ("code", "200")],
            2.0,
        ),
        ("vx_bridge_status_cache_total", &[("result", "miss")], 1.0),
        ("vx_bridge_status_cache_total", &[("result", "hit")], 1.0),
        (
            "vx_bridge_upstream_lookups_total",
            &[("outcome", "ok")],
            1.0,
        ),
        ("vx_bridge_upstream_token_fetches_total", &[], 1.0),
        ("vx_bridge_upstream_circuit_state", &[], 0.0),
    ];
    for (name, labels, want) in expected {
        assert_eq!(v(name, labels), Some(want), "{name}{labels:?}\n{metrics}");
    }

    // The connection gauge follows the connection: 0 within seconds of NATS dying, 1 again
    // after it is back (regression: it stayed 0 for good while /readyz said connected).
    let base = format!("http://127.0.0.1:{port}");
    let mut nats = nats;
    nats.kill();
    wait_for_gauge(&base, "vx_bridge_nats_connected", 0.0, 10).await;
    nats.restart();
    wait_for_gauge(&base, "vx_bridge_nats_connected", 1.0, 15).await;
    drop(bridge);
}

#[tokio::test]
async fn the_stream_ready_gauge_is_0_until_the_stream_exists_then_1() {
    let nats = NatsServer::start();
    let template = test_config(&nats.url());
    let bridge = BinaryBridge::spawn(
        &template,
        &[("VXB_NATS__STREAM__CREATE", "false".to_owned())],
        Stdio::null(),
    );
    let base = bridge.base();
    // Connected, but the stream is missing (create = false): 1 and 0.
    wait_for_gauge(&base, "vx_bridge_nats_connected", 1.0, 15).await;
    wait_for_gauge(&base, "vx_bridge_stream_ready", 0.0, 15).await;
    let js = jetstream::new(async_nats::connect(nats.url()).await.unwrap());
    let wanted = vx_bridge::nats::desired_stream(
        &template.nats.stream,
        &vx_bridge::nats::Subjects::new(&template.nats.subject_prefix),
    );
    js.create_stream(wanted).await.unwrap();
    // The keeper re-checks every second while unready.
    wait_for_gauge(&base, "vx_bridge_stream_ready", 1.0, 10).await;
    bridge.wait_ready().await;
    let text = vx_testkit::scrape(&base).await;
    assert_eq!(
        metric_value(&text, "vx_bridge_stream_ready", &[]),
        Some(1.0)
    );
}

#[test]
fn the_demo_runs_the_whole_flow_and_says_how_to_get_nats_when_there_is_none() {
    let nats = NatsServer::start();
    let out = clean_env(&mut Command::new(vx_bridge_bin()))
        .arg("demo")
        .env("VXB_NATS__URL", nats.url())
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(stdout.contains("3/3 webhooks stored"), "{stdout}");
    assert!(stdout.contains("current_status"), "{stdout}");
    for subject in [
        "verification.pending",
        "verification.completed.pass",
        "verification.completed.fail",
    ] {
        assert!(stdout.contains(subject), "{subject}: {stdout}");
    }
    // Polling mode: the watched session's PASS came from the reconciler, and the view says so.
    assert!(
        stdout.contains("1/1 watched session completed by polling"),
        "{stdout}"
    );
    let polled = stdout
        .lines()
        .skip_while(|l| !l.starts_with("[6/7] polling mode"))
        .collect::<Vec<_>>()
        .join("\n");
    for line in [
        "\"watching\":true",
        "<- event on ",
        "vx-source: poll",
        "Nats-Msg-Id: poll:",
        "\"source\":\"poll\"",
        "\"terminal\":true",
    ] {
        assert!(polled.contains(line), "{line}: {stdout}");
    }
    // Personal data is encrypted on the bus, and the demo shows it opened with its KEK.
    assert!(
        stdout.contains("on the bus: schema_version=2 result_encrypted=\"eyJ"),
        "{stdout}"
    );
    assert_eq!(stdout.matches("byte for byte").count(), 4, "{stdout}");
    // Work messages are not printed as events.
    assert!(!stdout.contains(".reconcile."), "{stdout}");
    // PII is masked in what the demo prints.
    assert!(
        !stdout.contains("John") && !stdout.contains("123 Main St"),
        "{stdout}"
    );
    // Its event stream, work-queue stream and session bucket are gone.
    let left: Vec<String> = tokio::runtime::Runtime::new()
        .unwrap()
        .block_on(async {
            let client = async_nats::connect(nats.url()).await.unwrap();
            jetstream::new(client).stream_names().try_collect().await
        })
        .unwrap();
    assert!(left.is_empty(), "left behind: {left:?}");

    // No NATS at the URL and no nats-server on PATH: exit 1 with install instructions.
    let out = clean_env(&mut Command::new(vx_bridge_bin()))
        .arg("demo")
        .env("VXB_NATS__URL", format!("nats://127.0.0.1:{}", free_port()))
        .env("PATH", "/nonexistent")
        .env_remove("NATS_SERVER")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("apt-get install nats-server"), "{stderr}");
}

#[tokio::test]
async fn mock_vx_cycles_unknown_ids_answers_what_it_is_told_and_needs_the_token() {
    use std::io::BufRead as _;
    let port = free_port();
    let mut child = clean_env(&mut Command::new(vx_bridge_bin()))
        .args([
            "mock-vx",
            "--listen",
            &format!("127.0.0.1:{port}"),
            "--token",
            "tk",
        ])
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut first = String::new();
    // Kept open to the end: the mock prints more lines after the first.
    let mut stdout = std::io::BufReader::new(child.stdout.take().unwrap());
    stdout.read_line(&mut first).unwrap();
    assert!(first.contains(&format!("127.0.0.1:{port}")), "{first}");
    let http = reqwest::Client::new();
    let url = |id: &str| format!("http://127.0.0.1:{port}/api/session/result/{id}");
    let get = |id: String, token: &'static str| {
        let req = http.get(url(&id)).bearer_auth(token);
        async move {
            let r = req.send().await.unwrap();
            (r.status(), r.json::<Value>().await.unwrap_or(Value::Null))
        }
    };
    let id = new_request_id();
    assert_eq!(get(id.clone(), "wrong").await.0, StatusCode::UNAUTHORIZED);
    for want in ["INIT", "IN PROGRESS", "COMPLETED", "COMPLETED"] {
        let (code, body) = get(id.clone(), "tk").await;
        assert_eq!(code, StatusCode::OK);
        assert_eq!(body["current_status"], want);
    }
    let told = http
        .put(format!("http://127.0.0.1:{port}/mock/sessions/{id}"))
        .body(r#"{"current_status":"PENDING"}"#)
        .send()
        .await
        .unwrap();
    assert_eq!(told.status(), StatusCode::NO_CONTENT);
    assert_eq!(get(id, "tk").await.1["current_status"], "PENDING");
    let nil = "00000000-0000-0000-0000-000000000000".to_owned();
    assert_eq!(get(nil, "tk").await.0, StatusCode::NOT_FOUND);
    let _ = child.kill();
    let _ = child.wait();
    drop(stdout);
}
