//! A running bridge for tests: the config they start from ([`test_config`]), the bridge's `run()`
//! in this process ([`Bridge`]), and `vx-bridge serve` as a process configured through its
//! environment only, as a container is ([`BinaryBridge`]). Reads no `VXB_*` variable of the
//! test's own environment into the bridges it starts.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use vx_bridge::config::{AuthMode, Config, HmacScheme, StorageKind};
use vx_bridge::secret::Secret;

use crate::fixtures::SECRET;
use crate::nats::free_port;
use crate::wait::{eventually_ok, eventually_some};

/// The `vx-bridge` binary of this build: next to the running test executable's `deps/` folder
/// (`target/<profile>/vx-bridge`), where cargo puts it before it runs integration tests.
pub fn vx_bridge_bin() -> PathBuf {
    let exe = std::env::current_exe().expect("the test executable's path");
    let dir = exe.parent().expect("the executable's folder");
    let dir = if dir.ends_with("deps") {
        dir.parent().expect("the profile folder")
    } else {
        dir
    };
    dir.join(format!("vx-bridge{}", std::env::consts::EXE_SUFFIX))
}

/// A config for tests: Standard Webhooks with [`SECRET`], a unique stream, bucket, work queue and prefix, memory
/// storage off (file store, as in production), short timeouts.
pub fn test_config(nats_url: &str) -> Config {
    let unique = uuid::Uuid::new_v4().simple().to_string();
    let mut c = Config::default();
    c.http.listen = "127.0.0.1:0".parse().expect("addr");
    c.nats.url = nats_url.to_owned();
    c.nats.subject_prefix = format!("t{}.verification", &unique[..12]);
    c.nats.stream.name = format!("T_{}", &unique[..12]);
    c.sessions.bucket = format!("S_{}", &unique[..12]);
    c.keys.bucket = format!("K_{}", &unique[..12]);
    // The default mode, `encrypted`, with this process's test KEK.
    c.keys.kek_file = Some(test_kek_file());
    c.reconcile.stream = format!("R_{}", &unique[..12]);
    c.nats.stream.storage = StorageKind::File;
    c.nats.publish_timeout = Duration::from_secs(2);
    c.http.shutdown_timeout = Duration::from_secs(5);
    c.webhook.auth.mode = Some(AuthMode::Hmac);
    c.webhook.auth.hmac.scheme = HmacScheme::StandardWebhooks;
    c.webhook.auth.hmac.secrets = vec![Secret::new(SECRET)];
    c
}

/// A KEK file for this test process (`k1:<32 random bytes>`), made once in the temp folder.
pub fn test_kek_file() -> PathBuf {
    static FILE: std::sync::OnceLock<PathBuf> = std::sync::OnceLock::new();
    FILE.get_or_init(|| {
        let path = std::env::temp_dir().join(format!("vx-testkit-kek-{}", std::process::id()));
        let line = vx_bridge::pii::kek::generate_line("k1").expect("random KEK");
        std::fs::write(&path, line).expect("write the test KEK file");
        path
    })
    .clone()
}

/// The KEKs of a test config (`keys.kek_file`).
pub fn test_keks(config: &Config) -> vx_bridge::pii::KekRing {
    vx_bridge::pii::KekRing::read(config.keys.kek_file.as_deref().expect("keys.kek_file"))
        .expect("the test KEK file")
}

/// One `GET {base}/readyz`: its status and JSON body (`Null` when the body is not JSON);
/// `None` when unanswered (e.g. the process does not listen yet).
pub async fn readyz(base: &str) -> Option<(u16, serde_json::Value)> {
    let r = reqwest::get(format!("{base}/readyz")).await.ok()?;
    let status = r.status().as_u16();
    let body = r.json().await.unwrap_or(serde_json::Value::Null);
    Some((status, body))
}

/// Polls `{base}/readyz` until it answers 200, up to `within`; panics with the last answer.
/// The one readiness wait: [`Bridge::wait_ready`] and [`BinaryBridge::wait_ready`] are this.
pub async fn wait_ready(base: &str, within: Duration) {
    eventually_ok(
        &format!("{base}/readyz to answer 200"),
        within,
        async || match readyz(base).await {
            Some((200, _)) => Ok(()),
            Some((status, body)) => Err(format!("{status} {body}")),
            None => Err("no answer".to_owned()),
        },
    )
    .await
}

/// A bridge running in this process.
pub struct Bridge {
    /// Its HTTP address.
    pub addr: SocketAddr,
    /// The config it runs with.
    pub config: Config,
    /// Cancel to shut it down.
    pub shutdown: CancellationToken,
    /// The `run` task.
    pub task: JoinHandle<anyhow::Result<()>>,
}

impl Bridge {
    /// Validates `config`, starts `run` on a free port, and waits until `/readyz` is 200.
    pub async fn start(config: Config) -> Bridge {
        let b = Self::start_unready(config).await;
        b.wait_ready().await;
        b
    }

    /// Starts without waiting for readiness.
    pub async fn start_unready(config: Config) -> Bridge {
        config.validate().expect("valid test config");
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let addr = listener.local_addr().expect("addr");
        let shutdown = CancellationToken::new();
        let task = tokio::spawn(vx_bridge::run(config.clone(), listener, shutdown.clone()));
        Bridge {
            addr,
            config,
            shutdown,
            task,
        }
    }

    /// `http://<addr><path>`
    pub fn url(&self, path: &str) -> String {
        format!("http://{}{}", self.addr, path)
    }

    /// The webhook URL.
    pub fn webhook_url(&self) -> String {
        self.url(&self.config.http.webhook_path)
    }

    /// `http://<addr>`
    pub fn base(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Waits up to 10 s for `/readyz` to answer 200.
    pub async fn wait_ready(&self) {
        wait_ready(&self.base(), Duration::from_secs(10)).await;
    }

    /// Cancels and waits for `run` to return.
    pub async fn stop(self) -> anyhow::Result<()> {
        self.shutdown.cancel();
        self.task.await.expect("run task")
    }
}

/// Removes inherited `VXB_*` variables, so only what a test sets configures the binary.
pub fn clean_env(cmd: &mut std::process::Command) -> &mut std::process::Command {
    for (k, _) in std::env::vars() {
        if k.starts_with("VXB_") {
            cmd.env_remove(k);
        }
    }
    cmd
}

/// The `vx-bridge` binary with a [`clean_env`] and HMAC webhook auth with [`SECRET`] set in its
/// environment: what `serve` and `check-config` need before anything else a test sets.
pub fn hmac_cli() -> Command {
    let mut cmd = Command::new(vx_bridge_bin());
    clean_env(&mut cmd)
        .env("VXB_WEBHOOK__AUTH__MODE", "hmac")
        .env(
            "VXB_WEBHOOK__AUTH__HMAC__SECRETS",
            format!("[\"{SECRET}\"]"),
        );
    cmd
}

/// Runs `cmd` to its end and asserts that it succeeded (its stderr in the message); its output.
#[track_caller]
pub fn output_ok(cmd: &mut Command) -> std::process::Output {
    let out = cmd.output().expect("the command runs");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

/// `vx-bridge serve` as a process, configured through the environment only, as a container is.
pub struct BinaryBridge {
    /// The process.
    pub child: Child,
    /// Its HTTP port on 127.0.0.1.
    pub port: u16,
}

impl BinaryBridge {
    /// Starts it with `cfg`'s NATS URL, prefix and stream, Standard Webhooks with [`SECRET`] and
    /// log level `warn`; `env` adds or overrides variables. stderr goes to `stderr`.
    pub fn spawn(cfg: &Config, env: &[(&str, String)], stderr: Stdio) -> BinaryBridge {
        let port = free_port();
        let mut cmd = Command::new(vx_bridge_bin());
        clean_env(&mut cmd)
            .arg("serve")
            .env("VXB_HTTP__LISTEN", format!("127.0.0.1:{port}"))
            .env("VXB_NATS__URL", &cfg.nats.url)
            .env("VXB_NATS__SUBJECT_PREFIX", &cfg.nats.subject_prefix)
            .env("VXB_NATS__STREAM__NAME", &cfg.nats.stream.name)
            .env("VXB_SESSIONS__BUCKET", &cfg.sessions.bucket)
            .env("VXB_RECONCILE__STREAM", &cfg.reconcile.stream)
            .env("VXB_KEYS__BUCKET", &cfg.keys.bucket)
            .env("VXB_EVENTS__PII", cfg.events.pii.as_str())
            .env("VXB_WEBHOOK__AUTH__MODE", "hmac")
            .env(
                "VXB_WEBHOOK__AUTH__HMAC__SECRETS",
                format!("[\"{SECRET}\"]"),
            )
            .env("VXB_LOG__LEVEL", "warn");
        if let Some(kek) = &cfg.keys.kek_file {
            cmd.env("VXB_KEYS__KEK_FILE", kek);
        }
        for (k, v) in env {
            cmd.env(k, v);
        }
        let child = cmd
            .stdout(Stdio::null())
            .stderr(stderr)
            .spawn()
            .expect("spawn vx-bridge");
        BinaryBridge { child, port }
    }

    /// `http://127.0.0.1:<port>`
    pub fn base(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// Waits up to 15 s for `/readyz` to answer 200.
    pub async fn wait_ready(&self) {
        wait_ready(&self.base(), Duration::from_secs(15)).await;
    }

    /// Sends SIGTERM and waits (up to 20 s) for the exit status.
    pub async fn sigterm(&mut self) -> std::process::ExitStatus {
        let ok = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status()
            .expect("kill")
            .success();
        assert!(ok, "SIGTERM not delivered");
        eventually_some(
            "vx-bridge to exit after SIGTERM",
            Duration::from_secs(20),
            async || self.child.try_wait().expect("wait"),
        )
        .await
    }
}

impl Drop for BinaryBridge {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The personal data of an event body as a consumer with the KEK reads it: `result` (clear), or
/// `result_encrypted` opened with the test KEK and `config`'s keys bucket over `client`;
/// `Value::Null` when the event carries none (omitted, erased). Panics when it cannot be opened.
pub async fn event_result(
    config: &Config,
    client: &async_nats::Client,
    payload: &[u8],
) -> serde_json::Value {
    let keys = vx_bridge::pii::KeyStore::new(
        client.clone(),
        config,
        config.keys.kek_file.as_ref().map(|_| test_keks(config)),
    );
    match vx_bridge::pii::open_event(Some(&keys), payload).await {
        Ok(Some(bytes)) => serde_json::from_slice(&bytes).expect("the opened result is JSON"),
        Ok(None) => serde_json::Value::Null,
        Err(e) => panic!("the event's personal data does not open: {e}"),
    }
}

/// The raw bytes of a rejected copy's body as received: the payload itself (no `vx-pii`
/// header), or its JWE opened with the test KEK.
pub async fn rejected_body(
    config: &Config,
    client: &async_nats::Client,
    headers: Option<&async_nats::HeaderMap>,
    payload: &[u8],
) -> Vec<u8> {
    match headers.and_then(|h| h.get("vx-pii")).map(|v| v.as_str()) {
        None => payload.to_vec(),
        Some("encrypted") => {
            let keys =
                vx_bridge::pii::KeyStore::new(client.clone(), config, Some(test_keks(config)));
            let text = std::str::from_utf8(payload).expect("a JWE is ASCII");
            let kid = vx_bridge::pii::jwe::kid(text).expect("a JWE");
            vx_bridge::pii::open(&keys, &kid, text)
                .await
                .unwrap_or_else(|e| panic!("the rejected copy does not open: {e}"))
        }
        Some(other) => panic!("the rejected copy holds no body (vx-pii: {other})"),
    }
}
