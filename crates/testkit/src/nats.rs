//! Real `nats-server` processes for tests: the binary named by `NATS_SERVER` (a path, as
//! `scripts/nats/nats-servers.sh` prints it) or `nats-server` on PATH, JetStream on, a free port on
//! 127.0.0.1, a temp store, SIGKILLed on `Drop`. A single server or a cluster of N. Plus the
//! stream helpers tests read back with. Never touches port 4222 or a server it did not start.

use std::net::TcpStream;
use std::path::PathBuf;
use std::process::Child;
use std::time::Duration;

use async_nats::jetstream;

use crate::wait::{eventually_blocking, eventually_ok};

/// A free TCP port on 127.0.0.1 (the OS picks it; a race with another process is unlikely).
pub fn free_port() -> u16 {
    vx_bridge::demo::free_port().expect("free port")
}

/// The server binary every test starts: `NATS_SERVER` (a path, as `scripts/nats/nats-servers.sh`
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
        Self::start_on(free_port(), extra)
    }

    fn start_on(port: u16, extra: &[&str]) -> NatsServer {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut s = NatsServer {
            child: None,
            port,
            dir,
            extra: extra.iter().map(|a| a.to_string()).collect(),
        };
        s.spawn();
        s
    }

    fn spawn(&mut self) {
        let store: PathBuf = self.dir.path().join("js");
        let log = std::fs::File::create(self.dir.path().join("nats.log")).expect("log file");
        let child = vx_bridge::demo::nats_server_command(
            nats_server_bin().as_ref(),
            self.port,
            &store,
        )
        .args(&self.extra)
        .stderr(log)
        .spawn()
            .unwrap_or_else(|e| {
                panic!(
                    "cannot start {} ({e}): install nats-server (apt-get install nats-server, or scripts/nats/nats-servers.sh and NATS_SERVER=<path>)",
                    nats_server_bin()
                )
            });
        self.child = Some(child);
        eventually_blocking(
            &format!("nats-server to listen on port {}", self.port),
            Duration::from_secs(10),
            || TcpStream::connect(("127.0.0.1", self.port)).is_ok(),
        );
    }

    /// The server's JetStream store folder (`-sd`): its raw files, for tests that search them.
    pub fn store_dir(&self) -> PathBuf {
        self.dir.path().join("js")
    }

    /// `nats://127.0.0.1:<port>`
    pub fn url(&self) -> String {
        format!("nats://127.0.0.1:{}", self.port)
    }

    /// A client of this server, and its JetStream context.
    pub async fn connect(&self) -> (async_nats::Client, jetstream::Context) {
        let client = async_nats::connect(self.url())
            .await
            .expect("connect to nats-server");
        (client.clone(), jetstream::new(client))
    }

    /// The server's log file (stderr), in its temp dir.
    pub fn log_path(&self) -> PathBuf {
        self.dir.path().join("nats.log")
    }

    /// Waits up to `within` until the server's log holds a line containing `needle` (a case-
    /// insensitive match, e.g. "authentication error"); returns that line.
    pub async fn wait_for_log(&self, needle: &str, within: Duration) -> String {
        let needle = needle.to_lowercase();
        eventually_ok(
            &format!("a line with {needle:?} in the nats-server log"),
            within,
            async || {
                let text = std::fs::read_to_string(self.log_path()).unwrap_or_default();
                match text.lines().find(|l| l.to_lowercase().contains(&needle)) {
                    Some(line) => Ok(line.to_owned()),
                    None => Err(format!("the log:\n{text}")),
                }
            },
        )
        .await
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

/// A JetStream cluster of N servers on loopback (`n1`, `n2`, …, cluster name `kit`), each with
/// its own port, route port and temp store; every one killed on drop.
pub struct NatsCluster {
    /// The nodes, in name order.
    pub nodes: Vec<NatsServer>,
}

impl NatsCluster {
    /// Starts `n` routed servers and waits until each accepts client connections (the meta
    /// leader may be elected a moment later: clients retry, as the bridge's stream keeper does).
    pub fn start(n: usize) -> NatsCluster {
        let ports: Vec<(u16, u16)> = (0..n).map(|_| (free_port(), free_port())).collect();
        let nodes = ports
            .iter()
            .enumerate()
            .map(|(i, &(port, route))| {
                let routes: Vec<String> = ports
                    .iter()
                    .filter(|&&(_, r)| r != route)
                    .map(|(_, r)| format!("nats://127.0.0.1:{r}"))
                    .collect();
                let (name, cluster, routes) = (
                    format!("n{}", i + 1),
                    format!("nats://127.0.0.1:{route}"),
                    routes.join(","),
                );
                NatsServer::start_on(
                    port,
                    &[
                        "-n",
                        &name,
                        "--cluster_name",
                        "kit",
                        "--cluster",
                        &cluster,
                        "--routes",
                        &routes,
                    ],
                )
            })
            .collect();
        NatsCluster { nodes }
    }

    /// Every node's client URL, comma-separated (as `nats.url` takes them).
    pub fn urls(&self) -> String {
        let urls: Vec<String> = self.nodes.iter().map(NatsServer::url).collect();
        urls.join(",")
    }
}

/// The bridge's stream (its `nats.stream.name`), read over a new connection to `nats_url`.
pub async fn stream_of(bridge: &crate::Bridge, nats_url: &str) -> jetstream::stream::Stream {
    stream_of_name(&bridge.config.nats.stream.name, nats_url).await
}

/// Stream `name`, read over a new connection to `nats_url`.
pub async fn stream_of_name(name: &str, nats_url: &str) -> jetstream::stream::Stream {
    let client = async_nats::connect(nats_url)
        .await
        .expect("connect to NATS");
    jetstream::new(client)
        .get_stream(name)
        .await
        .expect("the stream exists")
}

/// Watches the JetStream API lookups of stream `name` (`$JS.API.STREAM.INFO.<name>`, what a
/// `get_stream` sends), e.g. to wait until the bridge's stream keeper has looked.
pub async fn stream_lookups(nats_url: &str, name: &str) -> StreamLookups {
    let client = async_nats::connect(nats_url)
        .await
        .expect("connect to NATS");
    let sub = client
        .subscribe(format!("$JS.API.STREAM.INFO.{name}"))
        .await
        .expect("subscribe");
    client.flush().await.expect("flush");
    StreamLookups {
        _client: client,
        sub,
    }
}

/// See [`stream_lookups`].
pub struct StreamLookups {
    _client: async_nats::Client,
    sub: async_nats::Subscriber,
}

impl StreamLookups {
    /// Waits up to 15 s for `n` more lookups.
    pub async fn wait(&mut self, n: usize) {
        use futures::StreamExt as _;
        for i in 0..n {
            tokio::time::timeout(Duration::from_secs(15), self.sub.next())
                .await
                .unwrap_or_else(|_| panic!("stream lookup {} of {n} not seen within 15 s", i + 1))
                .expect("the subscription is open");
        }
    }
}

/// How many messages `stream` holds now.
pub async fn message_count(stream: &mut jetstream::stream::Stream) -> u64 {
    stream.info().await.expect("stream info").state.messages
}
