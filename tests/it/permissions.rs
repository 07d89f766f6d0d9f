//! The chart's example NATS permissions (`helm/vx-bridge/files/nats-permissions.conf`, README
//! "NATS permissions") on a real nats-server, loaded as shipped (only the passwords are defined
//! in front of it): an ordinary consumer reads the events, the session view, `status.get` and
//! `watch`, and is refused the data keys (`VX_KEYS`: KV get, direct and message get, consumers,
//! core subscription), `result.get`, `erase`, other users' inboxes and the bridge's durable
//! consumer; a PII reader also reads the data keys and `result.get`, and is refused `erase` and
//! writes to the keys; the bridge user sets up its streams and buckets, writes keys and serves
//! every endpoint, and the real bridge runs under it without a single permissions violation.
//! "Refused" is the server's own `Permissions Violation` answer, not a timeout.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_nats::jetstream::{self, consumer::pull};
use async_nats::service::ServiceExt as _;
use bytes::Bytes;
use futures::StreamExt as _;
use reqwest::StatusCode;
use vx_bridge::config::{Config, StorageKind};
use vx_bridge::nats::stream::kv_bucket_stream;
use vx_bridge::nats::{ensure_stream, Subjects};
use vx_bridge::secret::Secret;

use vx_testkit::*;

const BRIDGE: (&str, &str) = ("vx-bridge", "bridge-test-password");
const CONSUMER: (&str, &str) = ("vx-consumer", "consumer-test-password");
const PII_READER: (&str, &str) = ("vx-pii-reader", "pii-reader-test-password");
/// The inbox prefixes the file gives ordinary consumers and PII readers.
const CONSUMER_INBOX: &str = "_INBOX.vx-consumer";
const PII_INBOX: &str = "_INBOX.vx-pii-reader";
/// The names the file is written for (the bridge's defaults).
const PREFIX: &str = "verification";
const EVENTS: &str = "VERIFICATIONS";
const KEYS: &str = "VX_KEYS";
const VIEW: &str = "VX_SESSIONS";

/// A nats-server running the permissions file, with test passwords defined in front of it.
fn server() -> (NatsServer, tempfile::TempDir) {
    let file = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/helm/vx-bridge/files/nats-permissions.conf"
    );
    let text = std::fs::read_to_string(file).expect("the chart's nats-permissions.conf");
    let dir = tempfile::tempdir().unwrap();
    let conf = dir.path().join("nats.conf");
    std::fs::write(
        &conf,
        format!(
            "VXB_BRIDGE_PASSWORD = \"{}\"\nVXB_CONSUMER_PASSWORD = \"{}\"\nVXB_PII_READER_PASSWORD = \"{}\"\n{text}",
            BRIDGE.1, CONSUMER.1, PII_READER.1
        ),
    )
    .unwrap();
    let nats = NatsServer::start_with(&["-c", conf.to_str().unwrap()]);
    (nats, dir)
}

/// A connection as one user, recording the server's errors (permissions violations).
struct User {
    client: async_nats::Client,
    js: jetstream::Context,
    errors: Arc<Mutex<Vec<String>>>,
}

impl User {
    async fn connect(url: &str, (user, password): (&str, &str), inbox: Option<&str>) -> User {
        let errors = Arc::new(Mutex::new(Vec::new()));
        let seen = errors.clone();
        let mut opts =
            async_nats::ConnectOptions::with_user_and_password(user.into(), password.into())
                .request_timeout(Some(Duration::from_secs(5)))
                .event_callback(move |event| {
                    let seen = seen.clone();
                    async move {
                        if let async_nats::Event::ServerError(e) = event {
                            seen.lock().unwrap().push(e.to_string());
                        }
                    }
                });
        if let Some(prefix) = inbox {
            opts = opts.custom_inbox_prefix(prefix);
        }
        let client = opts
            .connect(url)
            .await
            .unwrap_or_else(|e| panic!("{user} connects: {e}"));
        let js = jetstream::new(client.clone());
        User { client, js, errors }
    }

    /// Waits until the server said `Permissions Violation for <what> to "<subject>"`
    /// (`what`: `Publish` or `Subscription`).
    async fn refused(&self, what: &str, subject: &str) {
        let needle = format!("permissions violation for {what} to \"{subject}\"").to_lowercase();
        let errors = self.errors.clone();
        eventually(
            &format!("the server refuses {what} to {subject}"),
            Duration::from_secs(10),
            async || {
                errors
                    .lock()
                    .unwrap()
                    .iter()
                    .any(|e| e.to_lowercase().contains(&needle))
            },
        )
        .await;
    }

    /// A request that must be refused: no answer, and the server's violation for `subject`.
    async fn request_refused(&self, subject: &str, body: &'static str) {
        let answer = tokio::time::timeout(
            Duration::from_millis(1500),
            self.client.request(subject.to_owned(), Bytes::from(body)),
        )
        .await;
        assert!(
            !matches!(answer, Ok(Ok(_))),
            "{subject} answered: {answer:?}"
        );
        self.refused("publish", subject).await;
    }

    /// A request that must be answered (by a responder, not with an error status).
    async fn request_answered(&self, subject: &str, body: Bytes) -> Bytes {
        let msg = self
            .client
            .request(subject.to_owned(), body)
            .await
            .unwrap_or_else(|e| panic!("request on {subject}: {e}"));
        assert!(msg.status.is_none(), "{subject}: {:?}", msg.status);
        msg.payload
    }

    fn violations(&self) -> Vec<String> {
        self.errors.lock().unwrap().clone()
    }
}

fn subject(suffix: &str) -> String {
    format!("{PREFIX}.{suffix}")
}

/// What the bridge user sets up, as the bridge does: the event stream (the bridge's own
/// `ensure_stream`), the session view and data-key buckets, one data key, one view entry, one
/// event; and a NATS micro service answering status.get, result.get, watch and erase, each
/// with its endpoint's name.
struct Setup {
    nats: NatsServer,
    _conf: tempfile::TempDir,
    bridge: User,
    _service: async_nats::service::Service,
    request_id: String,
    wrapped_key: Bytes,
}

async fn setup() -> Setup {
    let (nats, conf) = server();
    let bridge = User::connect(&nats.url(), BRIDGE, None).await;
    let mut config = Config::default();
    config.nats.subject_prefix = PREFIX.into();
    config.nats.stream.name = EVENTS.into();
    config.nats.stream.replicas = 1;
    ensure_stream(&bridge.js, &config.nats.stream, &Subjects::new(PREFIX))
        .await
        .expect("the bridge user creates the event stream");
    for (bucket, history, max_age) in [
        (VIEW, 5, Duration::ZERO),
        (KEYS, 1, Duration::from_secs(30 * 86_400)),
    ] {
        let cfg = kv_bucket_stream(bucket, "test", history, max_age, StorageKind::File, 1);
        bridge
            .js
            .create_stream(cfg)
            .await
            .unwrap_or_else(|e| panic!("the bridge user creates bucket {bucket}: {e}"));
    }
    let request_id = new_request_id().to_lowercase();
    let wrapped_key =
        Bytes::from_static(b"eyJhbGciOiJkaXIiLCJlbmMiOiJBMjU2R0NNIiwia2lkIjoiazEifQ..test");
    let keys = bridge.js.get_key_value(KEYS).await.unwrap();
    keys.create(&request_id, wrapped_key.clone())
        .await
        .expect("the bridge user writes a data key");
    let view = bridge.js.get_key_value(VIEW).await.unwrap();
    view.put(&request_id, Bytes::from_static(b"{\"status\":\"PASS\"}"))
        .await
        .expect("the bridge user writes the session view");
    bridge
        .js
        .publish(
            subject("completed.pass"),
            Bytes::from(format!("{{\"request_id\":\"{request_id}\"}}")),
        )
        .await
        .unwrap()
        .await
        .expect("the bridge user stores an event");

    let service = bridge
        .client
        .service_builder()
        .queue_group("vx-bridge")
        .start("vx-bridge", "0.0.0")
        .await
        .expect("the bridge user starts a micro service");
    for (name, suffix) in [
        ("status-get", "status.get"),
        ("result-get", "result.get"),
        ("watch", "watch"),
        ("erase", "erase"),
    ] {
        let mut endpoint = service
            .endpoint_builder()
            .name(name)
            .add(subject(suffix))
            .await
            .unwrap_or_else(|e| panic!("the bridge user serves {suffix}: {e}"));
        tokio::spawn(async move {
            while let Some(req) = endpoint.next().await {
                let _ = req.respond(Ok(Bytes::from(name))).await;
            }
        });
    }
    // The server has the endpoints' subscriptions before anyone requests (the bridge user may
    // not request them itself).
    bridge.client.flush().await.unwrap();
    assert!(bridge.violations().is_empty(), "{:?}", bridge.violations());
    Setup {
        nats,
        _conf: conf,
        bridge,
        _service: service,
        request_id,
        wrapped_key,
    }
}

/// Reads the first stored event through a durable pull consumer of the user's own: its
/// subject and payload.
async fn read_event(user: &User, durable: &str) -> (String, Bytes) {
    let stream = user.js.get_stream(EVENTS).await.expect("event stream info");
    let consumer = stream
        .create_consumer(pull::Config {
            durable_name: Some(durable.into()),
            ..Default::default()
        })
        .await
        .expect("a consumer on the event stream");
    let mut batch = consumer
        .fetch()
        .max_messages(1)
        .expires(Duration::from_secs(5))
        .messages()
        .await
        .expect("fetch");
    let msg = batch
        .next()
        .await
        .expect("one event")
        .expect("an event, not an error");
    msg.ack().await.expect("ack");
    (msg.subject.to_string(), msg.payload.clone())
}

#[tokio::test]
async fn an_ordinary_consumer_reads_events_status_and_view_but_never_keys_result_or_erase() {
    let s = setup().await;
    let c = User::connect(&s.nats.url(), CONSUMER, Some(CONSUMER_INBOX)).await;
    let id = &s.request_id;

    // Allowed: the events through a consumer, status.get, watch, the session view.
    assert_eq!(read_event(&c, "audit").await.0, subject("completed.pass"));
    let body = Bytes::from(format!("{{\"request_id\":\"{id}\"}}"));
    assert_eq!(
        c.request_answered(&subject("status.get"), body.clone())
            .await,
        "status-get"
    );
    assert_eq!(c.request_answered(&subject("watch"), body).await, "watch");
    let view = c.js.get_key_value(VIEW).await.expect("the view's info");
    assert!(view.get(id).await.expect("a view get").is_some());
    assert!(c.violations().is_empty(), "{:?}", c.violations());

    // Refused: result.get and erase.
    c.request_refused(&subject("result.get"), "{}").await;
    c.request_refused(&subject("erase"), "{}").await;

    // Refused: the data keys, whichever way: the KV API (stream info first), a direct get, a
    // message get, a consumer, a core subscription to the puts.
    let kv = tokio::time::timeout(Duration::from_secs(2), c.js.get_key_value(KEYS)).await;
    assert!(!matches!(kv, Ok(Ok(_))), "opened {KEYS}");
    c.refused("publish", &format!("$JS.API.STREAM.INFO.KV_{KEYS}"))
        .await;
    let direct = format!("$JS.API.DIRECT.GET.KV_{KEYS}.$KV.{KEYS}.{id}");
    let msg_get = format!("$JS.API.STREAM.MSG.GET.KV_{KEYS}");
    let consumer = format!("$JS.API.CONSUMER.CREATE.KV_{KEYS}");
    tokio::join!(
        c.request_refused(&direct, ""),
        c.request_refused(&msg_get, "{\"last_by_subj\":\"$KV.VX_KEYS.>\"}"),
        c.request_refused(&consumer, "{}"),
    );
    let mut sniff = c.client.subscribe(format!("$KV.{KEYS}.>")).await.unwrap();
    c.refused("subscription", &format!("$KV.{KEYS}.>")).await;
    // A put made now does not reach it.
    let keys = s.bridge.js.get_key_value(KEYS).await.unwrap();
    keys.put(new_request_id().to_lowercase(), Bytes::from_static(b"k"))
        .await
        .unwrap();
    let got = tokio::time::timeout(Duration::from_millis(500), sniff.next()).await;
    assert!(!matches!(got, Ok(Some(_))), "saw a data key: {got:?}");

    // Refused: another user's inbox (where result.get's PII answers go), and the bridge's
    // durable consumer (taking its events would starve the session view).
    let _inbox = c.client.subscribe(format!("{PII_INBOX}.>")).await.unwrap();
    c.refused("subscription", &format!("{PII_INBOX}.>")).await;
    let stream = c.js.get_stream(EVENTS).await.unwrap();
    let stolen = tokio::time::timeout(
        Duration::from_secs(2),
        stream.get_or_create_consumer::<pull::Config>(
            "vx-bridge-sessions",
            pull::Config {
                durable_name: Some("vx-bridge-sessions".into()),
                ..Default::default()
            },
        ),
    )
    .await;
    assert!(!matches!(stolen, Ok(Ok(_))), "took the bridge's consumer");
    c.refused(
        "publish",
        &format!("$JS.API.CONSUMER.INFO.{EVENTS}.vx-bridge-sessions"),
    )
    .await;
}

#[tokio::test]
async fn a_pii_reader_reads_keys_and_results_but_cannot_erase_or_write_keys() {
    let s = setup().await;
    let p = User::connect(&s.nats.url(), PII_READER, Some(PII_INBOX)).await;
    let id = &s.request_id;

    // What an ordinary consumer may, plus the data keys and result.get.
    assert_eq!(
        read_event(&p, "pii-audit").await.0,
        subject("completed.pass")
    );
    let body = Bytes::from(format!("{{\"request_id\":\"{id}\"}}"));
    assert_eq!(
        p.request_answered(&subject("status.get"), body.clone())
            .await,
        "status-get"
    );
    assert_eq!(
        p.request_answered(&subject("result.get"), body).await,
        "result-get"
    );
    let keys = p.js.get_key_value(KEYS).await.expect("the keys' info");
    let entry = keys
        .entry(id)
        .await
        .expect("a key get")
        .expect("the data key");
    assert_eq!(entry.value, s.wrapped_key);
    assert!(p.violations().is_empty(), "{:?}", p.violations());

    // Refused: erase, and any write to the data keys.
    p.request_refused(&subject("erase"), "{}").await;
    let put = tokio::time::timeout(
        Duration::from_secs(2),
        keys.put(id, Bytes::from_static(b"replaced")),
    )
    .await;
    assert!(!matches!(put, Ok(Ok(_))), "replaced a data key");
    p.refused("publish", &format!("$KV.{KEYS}.{id}")).await;
    let purge = format!("$JS.API.STREAM.PURGE.KV_{KEYS}");
    p.request_refused(&purge, "{}").await;
    let still = s.bridge.js.get_key_value(KEYS).await.unwrap();
    assert_eq!(still.get(id).await.unwrap(), Some(s.wrapped_key.clone()));
}

/// The real bridge (webhook ingress, status service, session view, reconciler) under the
/// bridge user, with every default name the file is written for: it gets ready, stores a
/// webhook, answers an ordinary consumer's status.get and a PII reader's result.get, and the
/// server never refuses it anything.
#[tokio::test]
async fn the_bridge_runs_under_its_user_without_a_violation() {
    const TOKEN: &str = "permissions-test-token";
    let (nats, _conf) = server();
    let vx = VxApi::serve(VxApi::seeded(TOKEN)).await;
    let defaults = Config::default();
    let mut c = test_config(&nats.url());
    c.nats.subject_prefix = defaults.nats.subject_prefix.clone();
    c.nats.stream.name = defaults.nats.stream.name.clone();
    c.nats.stream.replicas = 1;
    c.sessions.bucket = defaults.sessions.bucket.clone();
    c.reconcile.stream = defaults.reconcile.stream.clone();
    c.keys.bucket = defaults.keys.bucket.clone();
    assert_eq!(
        (c.nats.subject_prefix.as_str(), c.nats.stream.name.as_str()),
        (PREFIX, EVENTS),
        "the file is written for the default names"
    );
    assert_eq!(
        (c.sessions.bucket.as_str(), c.keys.bucket.as_str()),
        (VIEW, KEYS)
    );
    c.nats.user = Some(BRIDGE.0.into());
    c.nats.password = Some(Secret::new(BRIDGE.1));
    c.status.enabled = true;
    c.upstream.base_url = vx.url().to_owned();
    c.upstream.oauth.client_id = String::new();
    c.upstream.token = Some(Secret::new(TOKEN));
    let bridge = Bridge::start(c).await;

    let request_id = new_request_id();
    let sent = Sender::new(&bridge)
        .send("msg_permissions", &body_with("PASS", &request_id))
        .await;
    assert_eq!(
        sent.status(),
        StatusCode::ACCEPTED,
        "{}",
        std::fs::read_to_string(nats.log_path()).unwrap()
    );

    // The ordinary consumer reads the event: the decision in clear, the PII as ciphertext.
    let consumer = User::connect(&nats.url(), CONSUMER, Some(CONSUMER_INBOX)).await;
    let (event_subject, event) = read_event(&consumer, "audit").await;
    assert_eq!(event_subject, subject("completed.pass"));
    let event: serde_json::Value = serde_json::from_slice(&event).unwrap();
    assert!(event["result_encrypted"].is_string(), "{event}");
    assert!(event.get("result").is_none(), "{event}");
    assert!(!event.to_string().contains("123 Main St"), "{event}");
    let body = Bytes::from(format!("{{\"request_id\":\"{request_id}\"}}"));
    // Answered by the bridge; PASS once its projector has put the event into the view.
    eventually(
        "status.get answers PASS",
        Duration::from_secs(15),
        async || {
            let status = consumer
                .request_answered(&subject("status.get"), body.clone())
                .await;
            String::from_utf8_lossy(&status).contains("PASS")
        },
    )
    .await;
    // It may not have the PII: no result.get, no data key.
    consumer.request_refused(&subject("result.get"), "{}").await;
    let kid = request_id.to_lowercase();
    consumer
        .request_refused(
            &format!("$JS.API.DIRECT.GET.KV_{KEYS}.$KV.{KEYS}.{kid}"),
            "",
        )
        .await;
    // The PII reader may: the session's data key (as the bridge wrapped it) and the result.
    let reader = User::connect(&nats.url(), PII_READER, Some(PII_INBOX)).await;
    let keys = reader.js.get_key_value(KEYS).await.expect("the keys' info");
    let wrapped = keys
        .get(&kid)
        .await
        .expect("a key get")
        .expect("the data key");
    assert_eq!(
        wrapped.iter().filter(|b| **b == b'.').count(),
        4,
        "a compact JWE"
    );
    let result = reader.request_answered(&subject("result.get"), body).await;
    assert!(
        String::from_utf8_lossy(&result).contains("123 Main St"),
        "{result:?}"
    );
    assert!(reader.violations().is_empty(), "{:?}", reader.violations());

    // `vx-bridge erase`, run as in a bridge pod (the bridge's user): the data key becomes the
    // tombstone and the `erased` event is stored, where the ordinary consumer reads it.
    let mut erase = tokio::process::Command::new(vx_bridge_bin());
    clean_env(erase.as_std_mut());
    let out = erase
        .args(["erase", &request_id, "--reason", "permissions test"])
        .env("VXB_NATS__URL", nats.url())
        .env("VXB_NATS__USER", BRIDGE.0)
        .env("VXB_NATS__PASSWORD", BRIDGE.1)
        .env("VXB_NATS__STREAM__REPLICAS", "1")
        .env("VXB_LOG__LEVEL", "warn")
        .output()
        .await
        .expect("vx-bridge erase runs");
    assert!(
        out.status.success(),
        "vx-bridge erase: {}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    let tombstone = keys.get(&kid).await.expect("a key get");
    assert_eq!(tombstone.as_deref(), Some(&b"erased"[..]));
    let (erased_subject, _) = read_event(&consumer, "audit").await;
    assert_eq!(erased_subject, subject("erased"));

    bridge.stop().await.expect("a clean stop");
    let log = std::fs::read_to_string(nats.log_path()).unwrap();
    let refused: Vec<&str> = log
        .lines()
        .filter(|l| {
            l.to_lowercase().contains("violation") && l.contains(&format!("\"{}\"", BRIDGE.0))
        })
        .collect();
    assert!(refused.is_empty(), "the bridge was refused: {refused:#?}");
    assert!(
        log.lines()
            .any(|l| l.to_lowercase().contains("violation") && l.contains(CONSUMER.0)),
        "the server logs violations with the user name (else the check above proves nothing):\n{log}"
    );
}
