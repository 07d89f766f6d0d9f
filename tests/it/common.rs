//! Shared test helpers: real `nats-server` processes on free ports, and a running bridge.

use std::net::{SocketAddr, TcpListener as StdListener, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use vx_bridge::config::{AuthMode, Config, HmacScheme, StorageKind};
use vx_bridge::secret::Secret;

/// A free TCP port on 127.0.0.1 (the OS picks it; a race with another process is unlikely).
pub fn free_port() -> u16 {
    StdListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("free port")
}

/// The server binary every test starts: `NATS_SERVER` (a path, as `scripts/nats-servers.sh`
/// prints it), else `nats-server` on PATH.
pub fn nats_server_bin() -> String {
    std::env::var("NATS_SERVER")
        .ok()
        .filter(|s| !s.is_empty())
        .unwrap_or_else(|| "nats-server".into())
}

/// A `nats-server` with JetStream in a temp dir, killed on drop.
pub struct NatsServer {
    child: Option<Child>,
    port: u16,
    dir: tempfile::TempDir,
    extra: Vec<String>,
}

impl NatsServer {
    /// Starts a server on a free port and waits until it accepts connections.
    pub fn start() -> NatsServer {
        Self::start_with(&[])
    }

    /// Starts a server with extra command-line arguments (e.g. `--auth TOKEN`).
    pub fn start_with(extra: &[&str]) -> NatsServer {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut s = NatsServer {
            child: None,
            port: free_port(),
            dir,
            extra: extra.iter().map(|a| a.to_string()).collect(),
        };
        s.spawn();
        s
    }

    fn spawn(&mut self) {
        let store: PathBuf = self.dir.path().join("js");
        let log = std::fs::File::create(self.dir.path().join("nats.log")).expect("log file");
        let child = Command::new(nats_server_bin())
            .args([
                "-a",
                "127.0.0.1",
                "-p",
                &self.port.to_string(),
                "-js",
                "-sd",
            ])
            .arg(&store)
            .args(&self.extra)
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .unwrap_or_else(|e| {
                panic!(
                    "cannot start {} ({e}): install nats-server (apt-get install nats-server, or scripts/nats-servers.sh and NATS_SERVER=<path>)",
                    nats_server_bin()
                )
            });
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(10);
        while TcpStream::connect(("127.0.0.1", self.port)).is_err() {
            assert!(
                Instant::now() < deadline,
                "nats-server did not start on port {}",
                self.port
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// `nats://127.0.0.1:<port>`
    pub fn url(&self) -> String {
        format!("nats://127.0.0.1:{}", self.port)
    }

    /// SIGKILLs the server (its store stays).
    pub fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// Starts the server again on the same port and store.
    pub fn restart(&mut self) {
        self.kill();
        self.spawn();
    }
}

impl Drop for NatsServer {
    fn drop(&mut self) {
        self.kill();
    }
}

/// The HMAC secret the test bridges accept.
pub const SECRET: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";

/// A config for tests: Standard Webhooks with [`SECRET`], a unique stream and prefix, memory
/// storage off (file store, as in production), short timeouts.
pub fn test_config(nats_url: &str) -> Config {
    let unique = uuid::Uuid::new_v4().simple().to_string();
    let mut c = Config::default();
    c.http.listen = "127.0.0.1:0".parse().expect("addr");
    c.nats.url = nats_url.to_owned();
    c.nats.subject_prefix = format!("t{}.verification", &unique[..12]);
    c.nats.stream.name = format!("T_{}", &unique[..12]);
    c.sessions.bucket = format!("S_{}", &unique[..12]);
    c.nats.stream.storage = StorageKind::File;
    c.nats.publish_timeout = Duration::from_secs(2);
    c.http.shutdown_timeout = Duration::from_secs(5);
    c.webhook.auth.mode = Some(AuthMode::Hmac);
    c.webhook.auth.hmac.scheme = HmacScheme::StandardWebhooks;
    c.webhook.auth.hmac.secrets = vec![Secret::new(SECRET)];
    c
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

    /// Waits up to 10 s for `/readyz` to answer 200.
    pub async fn wait_ready(&self) {
        let client = reqwest::Client::new();
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            if let Ok(r) = client.get(self.url("/readyz")).send().await {
                if r.status() == 200 {
                    return;
                }
            }
            assert!(Instant::now() < deadline, "bridge not ready within 10 s");
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
    }

    /// Cancels and waits for `run` to return.
    pub async fn stop(self) -> anyhow::Result<()> {
        self.shutdown.cancel();
        self.task.await.expect("run task")
    }
}

/// Current unix time in seconds.
pub fn now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0)
}

/// The `vx-bridge` binary under test.
pub const BIN: &str = env!("CARGO_BIN_EXE_vx-bridge");

/// Removes inherited `VXB_*` variables, so only what a test sets configures the binary.
pub fn clean_env(cmd: &mut std::process::Command) -> &mut std::process::Command {
    for (k, _) in std::env::vars() {
        if k.starts_with("VXB_") {
            cmd.env_remove(k);
        }
    }
    cmd
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
        let mut cmd = Command::new(BIN);
        clean_env(&mut cmd)
            .arg("serve")
            .env("VXB_HTTP__LISTEN", format!("127.0.0.1:{port}"))
            .env("VXB_NATS__URL", &cfg.nats.url)
            .env("VXB_NATS__SUBJECT_PREFIX", &cfg.nats.subject_prefix)
            .env("VXB_NATS__STREAM__NAME", &cfg.nats.stream.name)
            .env("VXB_SESSIONS__BUCKET", &cfg.sessions.bucket)
            .env("VXB_WEBHOOK__AUTH__MODE", "hmac")
            .env(
                "VXB_WEBHOOK__AUTH__HMAC__SECRETS",
                format!("[\"{SECRET}\"]"),
            )
            .env("VXB_LOG__LEVEL", "warn");
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
        let deadline = Instant::now() + Duration::from_secs(15);
        loop {
            if let Ok(r) = reqwest::get(format!("{}/readyz", self.base())).await {
                if r.status() == 200 {
                    return;
                }
            }
            assert!(Instant::now() < deadline, "binary not ready within 15 s");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Sends SIGTERM and waits (up to 20 s) for the exit status.
    pub async fn sigterm(&mut self) -> std::process::ExitStatus {
        let ok = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status()
            .expect("kill")
            .success();
        assert!(ok, "SIGTERM not delivered");
        let started = Instant::now();
        loop {
            if let Some(s) = self.child.try_wait().expect("wait") {
                return s;
            }
            assert!(
                started.elapsed() < Duration::from_secs(20),
                "did not exit after SIGTERM"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

impl Drop for BinaryBridge {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The value of one series in a Prometheus text exposition: `name` with exactly the given
/// labels (in any order). `None` when the series is absent.
pub fn metric_value(text: &str, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
    text.lines()
        .filter(|l| !l.starts_with('#'))
        .find_map(|line| {
            let (series, value) = line.rsplit_once(' ')?;
            let (n, rest) = match series.split_once('{') {
                Some((n, rest)) => (n, rest.strip_suffix('}')?),
                None => (series, ""),
            };
            if n != name {
                return None;
            }
            let mut got: Vec<(&str, &str)> = rest
                .split(',')
                .filter(|p| !p.is_empty())
                .filter_map(|p| {
                    let (k, v) = p.split_once('=')?;
                    Some((k, v.trim_matches('"')))
                })
                .collect();
            let mut want = labels.to_vec();
            got.sort_unstable();
            want.sort_unstable();
            (got == want).then(|| value.parse().ok()).flatten()
        })
}

/// Scrapes `base`/metrics.
pub async fn scrape(base: &str) -> String {
    reqwest::get(format!("{base}/metrics"))
        .await
        .expect("scrape")
        .text()
        .await
        .expect("metrics text")
}

/// Scrapes until `name{labels}` equals `want`, up to `within`; panics with the last scrape.
pub async fn wait_for_metric(
    base: &str,
    name: &str,
    labels: &[(&str, &str)],
    want: f64,
    within: Duration,
) {
    let deadline = Instant::now() + within;
    loop {
        // The process may not listen yet: an unanswered scrape counts as "not yet".
        let text = match reqwest::get(format!("{base}/metrics")).await {
            Ok(r) => r.text().await.unwrap_or_default(),
            Err(_) => String::new(),
        };
        if metric_value(&text, name, labels) == Some(want) {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "{name}{labels:?} did not become {want} within {within:?}: now {:?}\n{text}",
            metric_value(&text, name, labels)
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}
