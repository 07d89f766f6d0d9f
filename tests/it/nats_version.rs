//! The NATS server's version at connect: logged, warned about when it is a known
//! data-loss release, exported as `vx_bridge_nats_server_info{version, support}` with one
//! series, updated when the server changes under the bridge. A fake server (enough of the
//! protocol for async-nats to connect: `INFO`, `PONG`) reports the version we want; a real one
//! checks the gauge against what the server says.

use std::process::Stdio;
use std::time::Duration;

use tokio::io::{AsyncBufReadExt as _, AsyncWriteExt as _, BufReader};
use tokio::net::TcpListener;
use tokio::task::JoinHandle;

use vx_testkit::*;

/// A TCP listener that speaks just enough NATS: sends `INFO` with `version`, answers `PING`
/// with `PONG`, ignores everything else (JetStream requests go unanswered).
struct FakeNats {
    port: u16,
    task: JoinHandle<()>,
}

impl FakeNats {
    async fn start(port: u16, version: &str) -> FakeNats {
        let listener = TcpListener::bind(("127.0.0.1", port))
            .await
            .expect("bind fake NATS");
        let port = listener.local_addr().expect("addr").port();
        let info = serde_json::json!({
            "server_id": "NFAKE", "server_name": "fake", "version": version, "proto": 1,
            "go": "go1.22", "host": "127.0.0.1", "port": port, "headers": true,
            "max_payload": 1_048_576, "jetstream": true, "client_id": 1,
        });
        let info = format!("INFO {info}\r\n");
        let task = tokio::spawn(async move {
            let mut conns = tokio::task::JoinSet::new();
            while let Ok((sock, _)) = listener.accept().await {
                let info = info.clone();
                conns.spawn(async move {
                    let (r, mut w) = sock.into_split();
                    if w.write_all(info.as_bytes()).await.is_err() {
                        return;
                    }
                    let mut lines = BufReader::new(r).lines();
                    while let Ok(Some(line)) = lines.next_line().await {
                        if line.starts_with("PING") && w.write_all(b"PONG\r\n").await.is_err() {
                            return;
                        }
                    }
                });
            }
        });
        FakeNats { port, task }
    }

    fn url(&self) -> String {
        format!("nats://127.0.0.1:{}", self.port)
    }
}

impl FakeNats {
    /// Closes the listener and every connection (aborting the accept task drops its JoinSet,
    /// which aborts the connections), and waits until the port is free again.
    async fn stop(self) {
        self.task.abort();
        let _ = self.task.await;
    }
}

/// The `vx_bridge_nats_server_info` sample lines of a scrape.
async fn server_info_lines(base: &str) -> Vec<String> {
    let text = try_scrape(base).await.unwrap_or_default();
    text.lines()
        .filter(|l| l.starts_with("vx_bridge_nats_server_info{"))
        .map(str::to_owned)
        .collect()
}

/// Waits up to 20 s until the scrape's server-info lines are exactly `want`.
async fn wait_for_series(base: &str, want: &[String]) {
    eventually_ok(
        &format!("the server info series to be {want:?}"),
        Duration::from_secs(20),
        async || {
            let got = server_info_lines(base).await;
            if got == want {
                Ok(())
            } else {
                Err(format!("server info series {got:?}"))
            }
        },
    )
    .await;
}

/// Waits up to 20 s until `path` holds a line with every one of `needles`; returns it.
async fn wait_for_log_line(path: &std::path::Path, needles: &[&str]) -> String {
    eventually_ok(
        &format!("a log line with {needles:?}"),
        Duration::from_secs(20),
        async || {
            let text = std::fs::read_to_string(path).unwrap_or_default();
            match text.lines().find(|l| needles.iter().all(|n| l.contains(n))) {
                Some(line) => Ok(line.to_owned()),
                None => Err(format!("the log:\n{text}")),
            }
        },
    )
    .await
}

#[tokio::test]
async fn a_server_reporting_2_10_21_gets_the_data_loss_warning_and_gauge() {
    let fake = FakeNats::start(0, "2.10.21").await;
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("bridge.log");
    let template = test_config(&fake.url());
    let bridge = BinaryBridge::spawn(
        &template,
        &[],
        Stdio::from(std::fs::File::create(&log).unwrap()),
    );
    wait_for_series(
        &bridge.base(),
        &[r#"vx_bridge_nats_server_info{version="2.10.21",support="data_loss"} 1"#.into()],
    )
    .await;
    let line = wait_for_log_line(&log, &["2.10.21", "data_loss"]).await;
    let json: serde_json::Value = serde_json::from_str(&line).expect("a JSON log line");
    assert_eq!(json["level"], "WARN", "{line}");
    assert_eq!(json["version"], "2.10.21", "{line}");
    assert_eq!(json["support"], "data_loss", "{line}");
    assert!(
        json["message"]
            .as_str()
            .is_some_and(|m| m.contains("lose whole streams") && m.contains("2.10.23")),
        "{line}"
    );

    // The server is replaced under the bridge by one reporting another version: after the
    // reconnect the gauge has the new series only, and the old one is gone.
    let port = fake.port;
    fake.stop().await;
    let fake = FakeNats::start(port, "2.8.4").await;
    wait_for_series(
        &bridge.base(),
        &[r#"vx_bridge_nats_server_info{version="2.8.4",support="unsupported"} 1"#.into()],
    )
    .await;
    let line = wait_for_log_line(&log, &["2.8.4", "unsupported"]).await;
    assert!(line.contains("\"WARN\""), "{line}");
    assert!(line.contains("older than the oldest"), "{line}");
    fake.stop().await;
}

#[tokio::test]
async fn the_gauge_reports_the_real_server_version_as_supported() {
    let nats = NatsServer::start();
    let reported = async_nats::connect(nats.url())
        .await
        .unwrap()
        .server_info()
        .version;
    assert!(!reported.is_empty());
    let bridge = BinaryBridge::spawn(&test_config(&nats.url()), &[], Stdio::null());
    bridge.wait_ready().await;
    // Every server the matrix runs (scripts/nats/nats-servers.sh) is supported.
    wait_for_series(
        &bridge.base(),
        &[format!(
            r#"vx_bridge_nats_server_info{{version="{reported}",support="ok"}} 1"#
        )],
    )
    .await;
}
