//! The VX API client and proxies: `upstream.proxy` carries every lookup when set, and the
//! `HTTP(S)_PROXY`/`ALL_PROXY` environment variables are never used.

use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::TcpListener;
use vx_bridge::clock::SystemClock;
use vx_bridge::config::UpstreamConfig;
use vx_bridge::telemetry::TraceContext;
use vx_bridge::upstream::UpstreamClient;

/// Set in the child process of [`the_environment_proxy_variables_are_ignored`].
const CHILD: &str = "VXB_TEST_PROXY_CHILD";

fn client(base_url: String, proxy: Option<String>) -> UpstreamClient {
    let cfg = UpstreamConfig {
        base_url,
        proxy,
        token: Some(vx_bridge::secret::Secret::new("t")),
        max_retries: 0,
        ..UpstreamConfig::default()
    };
    UpstreamClient::from_config(&cfg, Arc::new(SystemClock)).expect("client")
}

/// Accepts one HTTP request, answers 404, and returns its request line.
async fn first_request_line(listener: TcpListener) -> String {
    let (mut conn, _) = listener.accept().await.expect("accept");
    let mut buf = Vec::new();
    let mut chunk = [0u8; 1024];
    while !buf.windows(4).any(|w| w == b"\r\n\r\n") {
        let n = conn.read(&mut chunk).await.expect("read");
        if n == 0 {
            break;
        }
        buf.extend_from_slice(&chunk[..n]);
    }
    let _ = conn
        .write_all(b"HTTP/1.1 404 Not Found\r\ncontent-length: 0\r\nconnection: close\r\n\r\n")
        .await;
    let text = String::from_utf8_lossy(&buf);
    text.lines().next().unwrap_or_default().to_owned()
}

/// Looks one session up with `client` and returns the request line `listener` received.
async fn lookup_seen_by(client: UpstreamClient, listener: TcpListener) -> String {
    let seen = tokio::spawn(first_request_line(listener));
    let id = uuid::Uuid::new_v4();
    let trace = TraceContext::continue_or_start(None, None);
    let _ = tokio::time::timeout(Duration::from_secs(5), client.session(id, &trace)).await;
    tokio::time::timeout(Duration::from_secs(5), seen)
        .await
        .expect("a request within 5 s")
        .expect("listener task")
}

#[tokio::test]
async fn a_configured_upstream_proxy_carries_the_lookups() {
    let proxy = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", proxy.local_addr().unwrap());
    // The VX host is never resolved: the proxy gets the request in absolute form.
    let line = lookup_seen_by(client("http://vx.invalid".into(), Some(url)), proxy).await;
    assert!(
        line.starts_with("GET http://vx.invalid/api/session/result/"),
        "{line}"
    );
}

#[test]
fn an_upstream_proxy_that_is_not_an_http_url_is_refused() {
    let cfg = UpstreamConfig {
        proxy: Some("proxy:3128".into()),
        token: Some(vx_bridge::secret::Secret::new("t")),
        ..UpstreamConfig::default()
    };
    assert!(UpstreamConfig {
        proxy: None,
        ..cfg.clone()
    }
    .validate()
    .is_ok());
    let err = cfg.validate().unwrap_err();
    assert_eq!(err.key, "upstream.proxy");
}

#[test]
fn the_environment_proxy_variables_are_ignored() {
    if std::env::var_os(CHILD).is_some() {
        let runtime = tokio::runtime::Runtime::new().unwrap();
        runtime.block_on(async {
            let vx = TcpListener::bind("127.0.0.1:0").await.unwrap();
            let base = format!("http://{}", vx.local_addr().unwrap());
            // Direct: origin form, at the VX API's own address.
            let line = lookup_seen_by(client(base, None), vx).await;
            assert!(line.starts_with("GET /api/session/result/"), "{line}");
        });
        return;
    }
    // In a child process, so that the variables reach the client without this process's
    // environment being changed. Port 9 on loopback: nothing listens, a proxied call fails.
    let out = std::process::Command::new(std::env::current_exe().unwrap())
        .args([
            "proxy::the_environment_proxy_variables_are_ignored",
            "--exact",
            "--test-threads=1",
        ])
        .env(CHILD, "1")
        .env("HTTP_PROXY", "http://127.0.0.1:9")
        .env("http_proxy", "http://127.0.0.1:9")
        .env("HTTPS_PROXY", "http://127.0.0.1:9")
        .env("ALL_PROXY", "http://127.0.0.1:9")
        .env_remove("NO_PROXY")
        .env_remove("no_proxy")
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success() && stdout.contains("1 passed"),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
}
