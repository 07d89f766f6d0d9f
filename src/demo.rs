//! `vx-bridge demo`: the whole flow on one machine, for a newcomer.
//!
//! Uses the NATS server at `nats.url`, or starts a `nats-server` (the one it is given, else
//! PATH's) in a temp directory (and says how to install one when there is none). Starts an
//! in-process mock of the VX API ([`crate::mock_vx`]) and the bridge itself, sends signed sample webhooks (PENDING
//! then PASS for one session, FAIL for another), prints each event as a subscriber of the event
//! subjects receives it (PII masked), looks a status up over NATS, then shows polling mode: a
//! session no webhook is sent for is watched (`{prefix}.watch`), the reconciler polls the mock
//! until it answers PASS, and the demo prints the poll event and the session view's state. It
//! prints a summary. Everything it creates (prefix, event stream, work-queue stream, session
//! bucket) has a unique name and is removed at the end, so it never touches a real deployment's
//! subjects, streams or sessions.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::Duration;

use anyhow::Context as _;
use axum::http::StatusCode;
use futures::StreamExt as _;
use serde_json::{json, Value};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use crate::auth::hmac::sign_headers;
use crate::config::{AuthMode, Config, HmacScheme, StorageKind};
use crate::event::poll_msg_id;
use crate::mock_vx::MockVx;
use crate::nats::Subjects;
use crate::secret::Secret;
use crate::upstream::reply::CurrentStatus;

/// The demo's HMAC secret (Standard Webhooks' published example key).
const DEMO_SECRET: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
/// The mock VX API's bearer token.
const DEMO_TOKEN: &str = "demo-token";
/// The sample body (the vendor's example, with obviously fake PII).
const SAMPLE: &str = include_str!("../tests/fixtures/seed-pass.json");
/// The reconciler's schedule in the demo: one short delay, repeated.
const POLL_EVERY: Duration = Duration::from_millis(300);

/// Runs the demo; returns the process exit code. `nats_server` is the server binary to start
/// when none answers: the binary passes `NATS_SERVER`, else `nats-server` found on PATH
/// ([`find_on_path`]); `None` means there is none, and the demo says how to install one.
pub async fn run_demo(base: Config, nats_server: Option<PathBuf>) -> anyhow::Result<i32> {
    println!(
        "vx-bridge demo: VX webhooks and polling -> NATS JetStream events, and a status lookup over NATS\n"
    );
    let Some((nats_url, _nats)) = demo_nats(&base.nats.url, nats_server).await? else {
        return Ok(1);
    };

    // What VX answers once a polled session completes: the sample (fake PII, masked below).
    let vx = MockVx::new(DEMO_TOKEN).with_result_body(serde_json::from_str(SAMPLE)?);
    let mock_shutdown = CancellationToken::new();
    let _stop_mock = mock_shutdown.clone().drop_guard();
    let vx_addr = vx.start("127.0.0.1:0".parse()?, mock_shutdown).await?;
    println!("[2/7] mock VX API listening on http://{vx_addr}");

    let unique = uuid::Uuid::new_v4().simple().to_string();
    // Personal data is encrypted on the bus (the default): an ephemeral KEK for this run only,
    // removed with its folder when the demo ends.
    let kek_dir = tempfile::tempdir().context("a folder for the demo's KEK")?;
    let kek_file = kek_dir.path().join("kek");
    let config = demo_config(&base, &nats_url, vx_addr, &unique, &kek_file)?;

    let listener = TcpListener::bind(config.http.listen).await?;
    let bridge_addr = listener.local_addr()?;
    let shutdown = CancellationToken::new();
    let bridge = tokio::spawn(crate::run(config.clone(), listener, shutdown.clone()));
    wait_ready(bridge_addr).await?;
    println!(
        "[3/7] vx-bridge listening on http://{bridge_addr}{} (stream {}, subjects {}.*)",
        config.http.webhook_path, config.nats.stream.name, config.nats.subject_prefix
    );

    let client = async_nats::connect(&nats_url).await?;
    // A PII reader's view of the events: the KEK and the keys bucket.
    let reader = crate::pii::KeyStore::new(
        client.clone(),
        &config,
        Some(crate::pii::KekRing::read(&kek_file).map_err(anyhow::Error::msg)?),
    );
    let prefix = config.nats.subject_prefix.clone();
    // The event stream's subjects only: not the requests (`status.get`, `watch`) nor the
    // reconciler's work messages (`{prefix}.reconcile.*`).
    let subjects = Subjects::new(&prefix).stream_subjects();
    let mut subscribers = Vec::with_capacity(subjects.len());
    for subject in &subjects {
        subscribers.push(client.subscribe(subject.clone()).await?);
    }
    let mut events = futures::stream::select_all(subscribers);
    client.flush().await?;
    let suffixes: Vec<&str> = subjects
        .iter()
        .filter_map(|s| s.strip_prefix(&format!("{prefix}.")))
        .collect();
    println!(
        "[4/7] subscribed to the event subjects {prefix}.{{{}}} — sending signed webhooks:\n",
        suffixes.join(",")
    );

    let alice = "4ed2ec66-9471-415d-99ce-7bd1742fc2b8";
    let demo = Demo {
        vx: &vx,
        config: &config,
        bridge: bridge_addr,
        unique: &unique,
        reader: &reader,
    };
    let stored = demo.send_webhooks(alice, &mut events).await?;

    println!("[5/7] status lookup over NATS ({prefix}.status.get):");
    let reply = client
        .request(
            format!("{prefix}.status.get"),
            json!({"request_id": alice}).to_string().into(),
        )
        .await;
    let status_ok = match reply {
        Ok(m) => {
            println!("  request  {{\"request_id\": \"{alice}\"}}");
            println!("  reply    {}", String::from_utf8_lossy(&m.payload));
            m.headers
                .as_ref()
                .and_then(|h| h.get("Nats-Service-Error"))
                .is_none()
        }
        Err(e) => {
            println!("  no reply: {e}");
            false
        }
    };

    vx.complete_with(Some("PASS"));
    let polled = match poll_step(&client, &config, &mut events, &reader).await {
        Ok(polled) => polled,
        Err(e) => {
            println!("  polling mode FAILED: {e:#}");
            false
        }
    };

    shutdown.cancel();
    let _ = bridge.await;
    let removed = remove_demo_state(&client, &config).await;
    println!(
        "\n[7/7] summary: {stored}/3 webhooks stored and delivered as events, status lookup {}, {}/1 watched session completed by polling; {removed}.",
        if status_ok { "answered" } else { "FAILED" },
        u8::from(polled),
    );
    println!("Next: README.md (configuration, subjects, event format, operations).");
    Ok(if stored == 3 && status_ok && polled {
        0
    } else {
        1
    })
}

/// Step 1: the NATS server at `url` when one answers with JetStream, else one started from
/// `bin` (kept running by the guard); `None`, with how to install one, when there is neither.
async fn demo_nats(
    url: &str,
    bin: Option<PathBuf>,
) -> anyhow::Result<Option<(String, Option<NatsGuard>)>> {
    if let Some(found) = find_nats(url).await {
        println!("[1/7] NATS: using the server at {found}");
        return Ok(Some((found, None)));
    }
    match start_nats(bin).await? {
        Some((started, guard)) => {
            println!(
                "[1/7] NATS: none answered at {url}; started nats-server at {started} (temporary)"
            );
            Ok(Some((started, Some(guard))))
        }
        None => {
            eprintln!(
                "No NATS server answers at {url} and no `nats-server` is on PATH.\n\
                 Install one, then run the demo again:\n\
                 \x20 Debian/Ubuntu:  sudo apt-get install nats-server\n\
                 \x20 macOS:          brew install nats-server\n\
                 \x20 or point the demo at a server: VXB_NATS__URL=nats://host:4222 vx-bridge demo"
            );
            Ok(None)
        }
    }
}

/// Steps 2 and 3's configuration: everything under names unique to this run (`unique`), in
/// memory, HMAC-signed webhooks, the status service against the mock VX API at `vx_addr`,
/// polling mode on a short schedule, and personal data encrypted under the KEK it writes to
/// `kek_file`.
fn demo_config(
    base: &Config,
    nats_url: &str,
    vx_addr: SocketAddr,
    unique: &str,
    kek_file: &std::path::Path,
) -> anyhow::Result<Config> {
    let mut config = Config {
        log: base.log.clone(),
        ..Config::default()
    };
    config.http.listen = "127.0.0.1:0".parse()?;
    config.nats.url = nats_url.to_owned();
    config.nats.subject_prefix = format!("demo{}.verification", &unique[..8]);
    config.nats.stream.name = format!("VX_DEMO_{}", &unique[..8]);
    config.nats.stream.storage = StorageKind::Memory;
    // The view (and the work queue, whose storage follows the stream's) in memory too.
    config.sessions.bucket = format!("VX_DEMO_SESSIONS_{}", &unique[..8]);
    config.webhook.auth.mode = Some(AuthMode::Hmac);
    config.webhook.auth.hmac.scheme = HmacScheme::StandardWebhooks;
    config.webhook.auth.hmac.secrets = vec![Secret::new(DEMO_SECRET)];
    config.status.enabled = true;
    config.upstream.base_url = format!("http://{vx_addr}");
    config.upstream.token = Some(Secret::new(DEMO_TOKEN));
    // Polling mode for the one session step 6 watches: a short schedule, and the webhook
    // sessions are not registered (their webhooks complete them; step 6 shows the reconciler
    // alone).
    config.reconcile.enabled = Some(true);
    config.reconcile.watch_pending = false;
    config.reconcile.schedule = vec![POLL_EVERY];
    config.reconcile.stream = format!("VX_DEMO_RECONCILE_{}", &unique[..8]);
    std::fs::write(kek_file, crate::pii::kek::generate_line("demo")?)
        .context("writing the demo's KEK")?;
    config.keys.kek_file = Some(kek_file.to_owned());
    config.keys.bucket = format!("VX_DEMO_KEYS_{}", &unique[..8]);
    config.validate().context("demo configuration")?;
    Ok(config)
}

/// What the demo's steps share once the bridge runs.
struct Demo<'a> {
    vx: &'a MockVx,
    config: &'a Config,
    bridge: SocketAddr,
    unique: &'a str,
    reader: &'a crate::pii::KeyStore,
}

impl Demo<'_> {
    /// Step 4: three signed webhooks (PENDING then PASS for `alice`, FAIL for another
    /// session), each followed by its event as a subscriber receives it; how many were stored.
    async fn send_webhooks(
        &self,
        alice: &str,
        events: &mut (impl futures::Stream<Item = async_nats::Message> + Unpin),
    ) -> anyhow::Result<usize> {
        let bob = uuid::Uuid::new_v4().to_string();
        let deliveries = [
            (alice.to_owned(), "PENDING", CurrentStatus::InProgress),
            (alice.to_owned(), "PASS", CurrentStatus::Completed),
            (bob.clone(), "FAIL", CurrentStatus::Completed),
        ];
        let http = reqwest::Client::new();
        let url = format!("http://{}{}", self.bridge, self.config.http.webhook_path);
        let mut stored = 0;
        for (i, (rid, status, vx_state)) in deliveries.iter().enumerate() {
            self.vx.tell(rid, *vx_state);
            let body = sample_body(rid, status, i)?;
            let now = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)?
                .as_secs() as i64;
            let mut req = http
                .post(&url)
                .header("content-type", "application/json")
                .body(body.clone());
            for (k, v) in sign_headers(
                &self.config.webhook.auth.hmac,
                DEMO_SECRET,
                &body,
                now,
                &format!("msg_demo_{}_{i}", self.unique),
            ) {
                req = req.header(k, v);
            }
            let res = req.send().await?;
            let code = res.status();
            let answer: Value = res.json().await.unwrap_or(Value::Null);
            println!(
                "  POST webhook  status={status:<8} request_id={rid}  ->  HTTP {code} seq={}",
                answer["seq"]
            );
            if code == StatusCode::ACCEPTED {
                stored += 1;
            }
            let msg = tokio::time::timeout(Duration::from_secs(5), events.next())
                .await
                .context("no event arrived within 5 s")?
                .context("subscription closed")?;
            print_event(&msg, self.reader).await;
        }
        Ok(stored)
    }
}

/// Step 6: watches a new session no webhook is sent for, prints the watch reply, the poll event
/// (which must be its `completed.pass` from `vx-source: poll`) and the view's state once
/// terminal. `true` when all of that came.
async fn poll_step(
    client: &async_nats::Client,
    config: &Config,
    events: &mut (impl futures::Stream<Item = async_nats::Message> + Unpin),
    reader: &crate::pii::KeyStore,
) -> anyhow::Result<bool> {
    let prefix = &config.nats.subject_prefix;
    let carol = uuid::Uuid::new_v4().to_string();
    println!(
        "[6/7] polling mode: no webhook for request_id={carol}; watched over NATS ({prefix}.watch):"
    );
    let reply = client
        .request(
            format!("{prefix}.watch"),
            json!({"request_id": carol}).to_string().into(),
        )
        .await
        .context("the watch request got no reply")?;
    println!("  request  {{\"request_id\": \"{carol}\"}}");
    println!("  reply    {}", String::from_utf8_lossy(&reply.payload));
    if let Some(e) = reply
        .headers
        .as_ref()
        .and_then(|h| h.get("Nats-Service-Error"))
    {
        anyhow::bail!("the watch was refused: {e}");
    }
    println!(
        "  the reconciler polls the mock every {}: INIT, IN PROGRESS, then the result (PASS):",
        humantime::format_duration(POLL_EVERY)
    );
    let msg = tokio::time::timeout(Duration::from_secs(10), events.next())
        .await
        .context("no poll event arrived within 10 s")?
        .context("subscription closed")?;
    print_event(&msg, reader).await;
    let header = |name: &str| {
        msg.headers
            .as_ref()
            .and_then(|h| h.get(name))
            .map(|v| v.as_str().to_owned())
    };
    let body: Value = serde_json::from_slice(&msg.payload).unwrap_or(Value::Null);
    let is_poll_event = msg.subject.as_str() == format!("{prefix}.completed.pass")
        && body["request_id"] == carol.as_str()
        && header("vx-source").as_deref() == Some("poll")
        && header("Nats-Msg-Id") == Some(poll_msg_id(&carol, "PASS"));
    if !is_poll_event {
        anyhow::bail!("the event above is not the poll event of {carol}");
    }
    let state = terminal_state(client, &config.sessions.bucket, &carol).await?;
    println!("  session view  {state}");
    Ok(state["source"] == "poll" && state["terminal"] == true)
}

/// The view's state of `request_id` once terminal (the projector writes it after the event).
async fn terminal_state(
    client: &async_nats::Client,
    bucket: &str,
    request_id: &str,
) -> anyhow::Result<Value> {
    let js = async_nats::jetstream::new(client.clone());
    let store = js.get_key_value(bucket).await?;
    for _ in 0..200 {
        if let Some(raw) = store.get(request_id).await? {
            let state: Value = serde_json::from_slice(&raw)?;
            if state["terminal"] == true {
                return Ok(state);
            }
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    anyhow::bail!("the session view did not show {request_id} terminal within 5 s")
}

/// Removes what the demo created on the server (the bridge stopped first, so nothing recreates
/// it); says what was removed, or what could not be.
async fn remove_demo_state(client: &async_nats::Client, config: &Config) -> String {
    let js = async_nats::jetstream::new(client.clone());
    let streams = [&config.nats.stream.name, &config.reconcile.stream];
    let mut failed = Vec::new();
    for name in streams {
        if let Err(e) = js.delete_stream(name).await {
            failed.push(format!("stream {name} ({e})"));
        }
    }
    let bucket = &config.sessions.bucket;
    for b in [bucket, &config.keys.bucket] {
        if let Err(e) = js.delete_key_value(b).await {
            failed.push(format!("bucket {b} ({e})"));
        }
    }
    if failed.is_empty() {
        format!(
            "demo streams {} and {} and buckets {bucket} and {} removed",
            streams[0], streams[1], config.keys.bucket
        )
    } else {
        format!("NOT removed: {}", failed.join(", "))
    }
}

fn sample_body(request_id: &str, status: &str, i: usize) -> anyhow::Result<Vec<u8>> {
    let mut v: Value = serde_json::from_str(SAMPLE)?;
    v["request_id"] = json!(request_id);
    v["status"] = json!(status);
    v["reference"] = json!(format!("demo-{i}"));
    if status == "PENDING" {
        v["dcams_plus"] = Value::Null;
        if let Some(stops) = v["journey"]["stops"].as_array_mut() {
            stops.truncate(1);
        }
    }
    Ok(serde_json::to_vec(&v)?)
}

/// Prints an event as a consumer sees it: the encrypted form as stored, then what a PII
/// reader (`reader`: the KEK and the keys bucket) decrypts, with personal data masked.
async fn print_event(msg: &async_nats::Message, reader: &crate::pii::KeyStore) {
    println!("  <- event on {}", msg.subject);
    if let Some(h) = &msg.headers {
        for name in [
            "Nats-Msg-Id",
            "vx-source",
            "ce-type",
            "ce-id",
            "ce-subject",
            "ce-time",
            "traceparent",
        ] {
            if let Some(v) = h.get(name) {
                println!("       {name}: {v}");
            }
        }
    }
    let v: Value = serde_json::from_slice(&msg.payload).unwrap_or(Value::Null);
    let opened = crate::pii::open_event(Some(reader), &msg.payload).await;
    let r: Value = match &opened {
        Ok(Some(bytes)) => serde_json::from_slice(bytes).unwrap_or(Value::Null),
        _ => Value::Null,
    };
    if let Some(jwe) = v["result_encrypted"].as_str() {
        let head: String = jwe.chars().take(36).collect();
        println!(
            "       on the bus: schema_version={} result_encrypted=\"{head}…\" ({} chars, a JWE under the session's data key; no personal data in clear)",
            v["schema_version"],
            jwe.len()
        );
        match &opened {
            Ok(Some(bytes)) => println!(
                "       decrypted with the KEK and {}: the {} bytes received, byte for byte",
                reader.bucket(),
                bytes.len()
            ),
            Ok(None) => {}
            Err(e) => println!("       decryption FAILED: {e}"),
        }
    }
    let r = &r;
    println!(
        "       body: type={} status={} reference={} stops={} result.fn={} result.email={} (+{} more fields)",
        v["type"],
        v["status"],
        v["reference"],
        v["progress"]["stops"],
        mask(&r["fn"]),
        mask(&r["email"]),
        r.as_object().map_or(0, |o| o.len().saturating_sub(2)),
    );
}

/// `"John"` → `"J***"`: enough to see data flows, never the data.
fn mask(v: &Value) -> String {
    match v.as_str() {
        Some(s) => format!("\"{}***\"", s.chars().next().unwrap_or('*')),
        None => v.to_string(),
    }
}

async fn find_nats(url: &str) -> Option<String> {
    let first = url.split(',').next()?.trim().to_owned();
    let opts = async_nats::ConnectOptions::new().connection_timeout(Duration::from_secs(1));
    match tokio::time::timeout(Duration::from_secs(2), opts.connect(first.as_str())).await {
        // JetStream must be enabled too.
        Ok(Ok(c)) if c.server_info().jetstream => Some(first),
        _ => None,
    }
}

/// The first `name` that is a file in the directories of `path` (a `PATH` value, which the
/// caller reads: this module reads no environment).
pub fn find_on_path(path: Option<&std::ffi::OsStr>, name: &str) -> Option<PathBuf> {
    std::env::split_paths(path?)
        .map(|p| p.join(name))
        .find(|p| p.is_file())
}

/// A free TCP port on 127.0.0.1 (the OS picks it).
pub fn free_port() -> std::io::Result<u16> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port())
}

/// The command that starts `bin` as a local JetStream server on 127.0.0.1:`port` with its store
/// in `store`, its output discarded: what the demo starts, and what the test kit starts (with
/// its own arguments and log added).
pub fn nats_server_command(bin: &std::ffi::OsStr, port: u16, store: &std::path::Path) -> Command {
    let mut command = Command::new(bin);
    command
        .args(["-a", "127.0.0.1", "-p", &port.to_string(), "-js", "-sd"])
        .arg(store)
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    command
}

/// A `nats-server` child process and its temp dir, killed and removed on drop.
struct NatsGuard {
    child: std::process::Child,
    _dir: tempfile::TempDir,
}

impl Drop for NatsGuard {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

async fn start_nats(bin: Option<PathBuf>) -> anyhow::Result<Option<(String, NatsGuard)>> {
    let Some(bin) = bin else { return Ok(None) };
    let dir = tempfile::tempdir()?;
    let port = free_port()?;
    let child = nats_server_command(bin.as_os_str(), port, dir.path()).spawn()?;
    let url = format!("nats://127.0.0.1:{port}");
    for _ in 0..100 {
        if find_nats(&url).await.is_some() {
            return Ok(Some((url, NatsGuard { child, _dir: dir })));
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    anyhow::bail!("nats-server started but did not answer on port {port}")
}

async fn wait_ready(addr: SocketAddr) -> anyhow::Result<()> {
    let http = reqwest::Client::new();
    for _ in 0..200 {
        if let Ok(r) = http.get(format!("http://{addr}/readyz")).send().await {
            if r.status() == StatusCode::OK {
                return Ok(());
            }
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    anyhow::bail!("the bridge did not become ready within 5 s")
}
