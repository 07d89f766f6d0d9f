//! The status service end to end: a real `nats-server`, the service, and a scripted VX API
//! (the workspace's mock VX API on 127.0.0.1:0, scripted and counting calls).

use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use serde_json::{json, Value};
use tokio_util::sync::CancellationToken;
use vx_bridge::clock::ManualClock;
use vx_bridge::config::Config;
use vx_bridge::nats::Subjects;
use vx_bridge::schema::Schemas;
use vx_bridge::secret::Secret;
use vx_bridge::status::client::{request, Reply};
use vx_bridge::status::StatusHandle;
use vx_bridge::telemetry::TraceContext;
use vx_bridge::upstream::{CurrentStatus, SessionReply, UpstreamClient, UpstreamError};

use vx_testkit::{eventually, test_config, Bridge, NatsServer, Step, VxApi};

const CLIENT_ID: &str = "bridge-client";
const CLIENT_SECRET: &str = "s3cret-client";
const STATIC_TOKEN: &str = "static-token-123";

// ---------------------------------------------------------------------------------------------
// The scripted VX API: the workspace's one mock (`vx_bridge::mock_vx`, through `vx-testkit`)
// ---------------------------------------------------------------------------------------------

/// Starts the scripted VX API: OAuth for [`CLIENT_ID`], [`STATIC_TOKEN`] also accepted, the seed
/// result, every session `IN PROGRESS` unless scripted; returns it and its base URL.
async fn vx_api() -> (VxApi, String) {
    let mock = VxApi::seeded(STATIC_TOKEN).with_oauth(CLIENT_ID, CLIENT_SECRET);
    mock.set_default(Step::Status("IN PROGRESS"));
    let vx = VxApi::serve(mock).await;
    let url = vx.url().to_owned();
    (vx, url)
}

// ---------------------------------------------------------------------------------------------
// Set-up helpers
// ---------------------------------------------------------------------------------------------

/// Status on, ingress off, OAuth against the scripted API, short deadlines.
fn status_config(nats_url: &str, vx_url: &str) -> Config {
    let mut c = test_config(nats_url);
    c.webhook.enabled = false;
    c.status.enabled = true;
    c.upstream.base_url = vx_url.to_owned();
    c.upstream.oauth.token_url = format!("{vx_url}/oauth/token");
    c.upstream.oauth.client_id = CLIENT_ID.into();
    c.upstream.oauth.client_secret = Some(Secret::new(CLIENT_SECRET));
    c.upstream.timeout = Duration::from_secs(3);
    c.upstream.connect_timeout = Duration::from_secs(1);
    c.upstream.max_retries = 2;
    c
}

fn static_token(c: &mut Config, token: &str) {
    c.upstream.oauth.client_id = String::new();
    c.upstream.oauth.client_secret = None;
    c.upstream.token = Some(Secret::new(token));
}

struct Env {
    _nats: NatsServer,
    vx: VxApi,
    config: Config,
    client: async_nats::Client,
    handle: StatusHandle,
}

impl Env {
    fn subjects(&self) -> Subjects {
        Subjects::new(&self.config.nats.subject_prefix)
    }

    async fn status(&self, request_id: &str) -> Reply {
        let body = json!({ "request_id": request_id }).to_string();
        self.raw(&self.subjects().status_get(), body).await
    }

    async fn result(&self, body: Value) -> Reply {
        self.raw(&self.subjects().result_get(), body.to_string())
            .await
    }

    async fn raw(&self, subject: &str, body: impl Into<Bytes>) -> Reply {
        request(&self.client, subject, body.into(), Duration::from_secs(10))
            .await
            .expect("a reply")
    }
}

/// A NATS server, the scripted API and a started service; `tweak` adjusts the config.
async fn env_with(tweak: impl FnOnce(&mut Config)) -> Env {
    let nats = NatsServer::start();
    let (vx, vx_url) = vx_api().await;
    let mut config = status_config(&nats.url(), &vx_url);
    tweak(&mut config);
    config.validate().expect("valid config");
    let client = async_nats::connect(nats.url()).await.unwrap();
    let svc_client = async_nats::connect(nats.url()).await.unwrap();
    let handle = vx_bridge::status::start(&config, svc_client, CancellationToken::new())
        .await
        .expect("status service starts");
    Env {
        _nats: nats,
        vx,
        config,
        client,
        handle,
    }
}

async fn env() -> Env {
    env_with(|_| {}).await
}

fn new_id() -> String {
    uuid::Uuid::new_v4().to_string()
}

fn compile(text: &str) -> jsonschema::Validator {
    jsonschema::draft202012::new(&serde_json::from_str::<Value>(text).unwrap()).unwrap()
}

/// Asserts a success reply, validates it against `status-reply.schema.json`, returns it.
fn ok_status(reply: Reply) -> Value {
    let Reply::Ok(body) = reply else {
        panic!("expected a status, got {reply:?}")
    };
    let v: Value = serde_json::from_slice(&body).unwrap();
    let schema = compile(include_str!("../../schemas/status-reply.schema.json"));
    assert!(schema.is_valid(&v), "not a valid status reply: {v}");
    v
}

/// Asserts an error reply with `code`, its body valid against `service-error.schema.json` and
/// carrying the same code and message as the headers; returns the message.
fn error_reply(reply: Reply, code: u16) -> String {
    let Reply::Error {
        code: got,
        message,
        body,
    } = reply
    else {
        panic!("expected error {code}, got {reply:?}")
    };
    assert_eq!(got, code, "{message}");
    let v: Value = serde_json::from_slice(&body).unwrap();
    let schema = compile(include_str!("../../schemas/service-error.schema.json"));
    assert!(schema.is_valid(&v), "not a valid error body: {v}");
    assert_eq!(v["error"]["code"], code);
    assert_eq!(v["error"]["message"], message.as_str());
    message
}

// ---------------------------------------------------------------------------------------------
// Tokens
// ---------------------------------------------------------------------------------------------

#[tokio::test]
async fn oauth_token_is_fetched_once_and_reused_across_lookups() {
    let e = env().await;
    for _ in 0..3 {
        let v = ok_status(e.status(&new_id()).await);
        assert_eq!(v["current_status"], "IN PROGRESS");
        assert_eq!(v["source"], "upstream");
    }
    assert_eq!(e.vx.session_calls(), 3);
    assert_eq!(e.vx.token_calls(), 1);
    assert!(e.vx.bearers().iter().all(|b| b == "tok-1"));
}

/// The upstream client alone, with a clock moved by hand.
async fn client_with_clock(vx_url: &str, clock: &ManualClock) -> UpstreamClient {
    let c = status_config("nats://127.0.0.1:1", vx_url);
    UpstreamClient::from_config(&c.upstream, Arc::new(clock.clone())).unwrap()
}

/// One successful lookup of session `id`, without a trace context.
async fn session(up: &UpstreamClient, id: uuid::Uuid) -> SessionReply {
    up.session(id, &TraceContext::default()).await.unwrap()
}

#[tokio::test]
async fn token_is_refreshed_shortly_before_it_expires() {
    let (vx, url) = vx_api().await;
    let clock = ManualClock::new();
    let up = client_with_clock(&url, &clock).await;
    let id = uuid::Uuid::new_v4();
    session(&up, id).await;
    assert_eq!(vx.token_calls(), 1);
    // 3600 s lifetime: still used 3539 s later …
    clock.advance(Duration::from_secs(3539));
    session(&up, id).await;
    assert_eq!(vx.token_calls(), 1);
    // … replaced from 60 s before expiry on.
    clock.advance(Duration::from_secs(1));
    session(&up, id).await;
    assert_eq!(vx.token_calls(), 2);
    assert_eq!(vx.bearers(), ["tok-1", "tok-1", "tok-2"]);
}

#[tokio::test]
async fn a_401_drops_the_token_and_retries_once_with_a_new_one() {
    let (vx, url) = vx_api().await;
    let clock = ManualClock::new();
    let up = client_with_clock(&url, &clock).await;
    let id = uuid::Uuid::new_v4();
    session(&up, id).await;
    vx.revoke("tok-1");
    let reply = session(&up, id).await;
    assert_eq!(reply, SessionReply::Status(CurrentStatus::InProgress));
    assert_eq!(vx.token_calls(), 2);
    assert_eq!(vx.bearers(), ["tok-1", "tok-1", "tok-2"]);

    // An API that refuses every token: one refresh, then an auth error (502), no loop.
    vx.refuse_all(true);
    let before = vx.session_calls();
    let err = up.session(id, &TraceContext::default()).await.unwrap_err();
    assert!(matches!(err, UpstreamError::Auth(_)), "{err:?}");
    assert_eq!(err.code(), 502);
    assert_eq!(vx.session_calls() - before, 2);
    assert_eq!(vx.token_calls(), 3);
}

#[tokio::test]
async fn refused_client_credentials_are_an_auth_error_without_calling_the_api() {
    let e = env_with(|c| c.upstream.oauth.client_secret = Some(Secret::new("wrong"))).await;
    let msg = error_reply(e.status(&new_id()).await, 502);
    assert!(msg.contains("refused the client credentials"), "{msg}");
    assert!(!msg.contains("wrong"));
    assert_eq!(e.vx.session_calls(), 0);
}

#[tokio::test]
async fn static_token_is_sent_as_bearer_and_a_refused_one_is_502() {
    let e = env_with(|c| static_token(c, STATIC_TOKEN)).await;
    ok_status(e.status(&new_id()).await);
    assert_eq!(e.vx.token_calls(), 0);
    assert_eq!(e.vx.bearers(), [STATIC_TOKEN]);

    let e = env_with(|c| static_token(c, "not-the-token")).await;
    let msg = error_reply(e.status(&new_id()).await, 502);
    assert!(msg.contains("401"), "{msg}");
    assert_eq!(
        e.vx.session_calls(),
        1,
        "a static token is not retried after a 401"
    );
}

// ---------------------------------------------------------------------------------------------
// Reply shapes and error mapping
// ---------------------------------------------------------------------------------------------

#[tokio::test]
async fn both_upstream_reply_shapes_answer_status_and_result() {
    let e = env().await;
    // Shape 1: {"current_status": …}
    let id = new_id();
    e.vx.script([Step::Status("PENDING")]);
    let v = ok_status(e.status(&id).await);
    assert_eq!(v["request_id"], id.as_str());
    assert_eq!(v["current_status"], "PENDING");
    // result.get reads the same (cached) upstream answer: no result body in it.
    let msg = error_reply(e.result(json!({ "request_id": id })).await, 404);
    assert!(
        msg.contains("no result body") && msg.contains("PENDING"),
        "{msg}"
    );
    assert_eq!(e.vx.session_calls(), 1);

    // Shape 2: the full result body.
    let id = new_id();
    e.vx.script([Step::Result("PASS")]);
    let Reply::Ok(body) = e.result(json!({ "request_id": id })).await else {
        panic!("no result")
    };
    let v: Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(Schemas::get().check_result(&v), Ok(()));
    assert_eq!(v["request_id"], id.as_str());
    assert_eq!(
        v["dcams_plus"]["action"], "PASS",
        "the body is passed on whole"
    );
    let s = ok_status(e.status(&id).await);
    assert_eq!(s["current_status"], "COMPLETED");
    assert_eq!(s["source"], "cache");
    assert_eq!(e.vx.session_calls(), 2);

    // A result body with PENDING maps to PENDING, FAIL to COMPLETED.
    for (status, want) in [("PENDING", "PENDING"), ("FAIL", "COMPLETED")] {
        e.vx.script([Step::Result(status)]);
        let s = ok_status(e.status(&new_id()).await);
        assert_eq!(s["current_status"], want);
    }
}

#[tokio::test]
async fn unknown_session_is_404() {
    let e = env().await;
    e.vx.script([Step::Code(404), Step::Code(404)]);
    error_reply(e.status(&new_id()).await, 404);
    error_reply(e.result(json!({ "request_id": new_id() })).await, 404);
    assert_eq!(e.vx.session_calls(), 2, "404 is not retried");
}

#[tokio::test]
async fn rate_limit_is_retried_after_retry_after_and_a_long_one_is_503() {
    let e = env().await;
    e.vx.script([Step::RetryAfter(1), Step::Status("COMPLETED")]);
    let v = ok_status(e.status(&new_id()).await);
    assert_eq!(v["current_status"], "COMPLETED");
    assert_eq!(e.vx.session_calls(), 2);

    // Retry-After beyond the deadline: answered 503 at once, no second call.
    e.vx.script([Step::RetryAfter(60)]);
    error_reply(e.status(&new_id()).await, 503);
    assert_eq!(e.vx.session_calls(), 3);
}

#[tokio::test]
async fn server_errors_are_retried_then_succeed_or_end_in_502() {
    let e = env().await;
    e.vx.script([Step::Code(500), Step::Code(503), Step::Status("INIT")]);
    let v = ok_status(e.status(&new_id()).await);
    assert_eq!(v["current_status"], "INIT");
    assert_eq!(e.vx.session_calls(), 3);

    e.vx.script([Step::Code(500), Step::Code(500), Step::Code(500)]);
    let msg = error_reply(e.status(&new_id()).await, 502);
    assert!(msg.contains("500"), "{msg}");
    assert_eq!(e.vx.session_calls(), 6, "1 + max_retries (2) attempts");
}

#[tokio::test]
async fn hanging_upstream_is_504_before_the_requesters_timeout() {
    let e = env_with(|c| c.upstream.timeout = Duration::from_secs(1)).await;
    e.vx.script([Step::Hang]);
    // The requester waits up to 10 s; the service answers 504 at its own 1 s deadline.
    let msg = error_reply(e.status(&new_id()).await, 504);
    assert!(msg.contains("did not answer"), "{msg}");
}

#[tokio::test]
async fn garbage_body_is_502_and_not_retried() {
    let e = env().await;
    e.vx.script([Step::Garbage]);
    let msg = error_reply(e.status(&new_id()).await, 502);
    assert!(msg.contains("not JSON"), "{msg}");
    assert!(!msg.contains("surprise"), "the body is not echoed: {msg}");
    assert_eq!(e.vx.session_calls(), 1);
}

#[tokio::test]
async fn circuit_opens_after_repeated_failures_and_recovers() {
    let e = env_with(|c| {
        c.upstream.max_retries = 0;
        c.upstream.circuit_failure_threshold = 2;
        c.upstream.circuit_open_for = Duration::from_millis(300);
    })
    .await;
    e.vx.set_default(Step::Code(500));
    error_reply(e.status(&new_id()).await, 502);
    error_reply(e.status(&new_id()).await, 502);
    let msg = error_reply(e.status(&new_id()).await, 503);
    assert!(msg.contains("circuit open"), "{msg}");
    assert_eq!(e.vx.session_calls(), 2, "an open circuit makes no call");

    e.vx.set_default(Step::Status("COMPLETED"));
    let mut last = None;
    eventually(
        "the circuit to close again",
        Duration::from_secs(10),
        async || {
            let r = e.status(&new_id()).await;
            let ok = matches!(r, Reply::Ok(_));
            last = Some(r);
            ok
        },
    )
    .await;
    ok_status(last.unwrap());
    ok_status(e.status(&new_id()).await);
}

// ---------------------------------------------------------------------------------------------
// Coalescing and cache
// ---------------------------------------------------------------------------------------------

#[tokio::test]
async fn hundred_concurrent_lookups_of_one_id_make_one_upstream_call() {
    let e = Arc::new(env().await);
    e.vx.set_default(Step::Held(Box::new(Step::Status("COMPLETED"))));
    let id = new_id();
    let mut tasks = Vec::new();
    for _ in 0..100 {
        let e = e.clone();
        let id = id.clone();
        tasks.push(tokio::spawn(async move { e.status(&id).await }));
    }
    // All 100 are inside the service, waiting on one upstream call, before it answers.
    // (The one call may still be fetching its token when the 100th lookup arrives.)
    eventually(
        "100 lookups in flight and the upstream called",
        Duration::from_secs(10),
        async || e.handle.lookups_in_flight() == 100 && e.vx.session_calls() >= 1,
    )
    .await;
    assert_eq!(e.vx.session_calls(), 1);
    e.vx.release(100);
    let mut sources = Vec::new();
    for t in tasks {
        let v = ok_status(t.await.unwrap());
        assert_eq!(v["current_status"], "COMPLETED");
        sources.push(v["source"].as_str().unwrap().to_owned());
    }
    assert_eq!(e.vx.session_calls(), 1);
    assert_eq!(sources.iter().filter(|s| *s == "upstream").count(), 1);
    assert_eq!(e.handle.lookups_in_flight(), 0);
}

#[tokio::test]
async fn terminal_replies_are_cached_longer_than_others() {
    let e = env_with(|c| {
        c.status.cache_ttl = Duration::ZERO;
        c.status.terminal_cache_ttl = Duration::from_secs(3600);
    })
    .await;
    let running = new_id();
    e.vx.set_default(Step::Status("IN PROGRESS"));
    assert_eq!(ok_status(e.status(&running).await)["source"], "upstream");
    assert_eq!(ok_status(e.status(&running).await)["source"], "upstream");
    assert_eq!(e.vx.session_calls(), 2);

    let done = new_id();
    e.vx.set_default(Step::Status("COMPLETED"));
    let first = ok_status(e.status(&done).await);
    let second = ok_status(e.status(&done).await);
    assert_eq!(first["source"], "upstream");
    assert_eq!(second["source"], "cache");
    assert_eq!(second["checked_at"], first["checked_at"]);
    assert_eq!(e.vx.session_calls(), 3);
}

// ---------------------------------------------------------------------------------------------
// Bad requests
// ---------------------------------------------------------------------------------------------

#[tokio::test]
async fn path_like_or_malformed_request_ids_are_400_with_no_upstream_call() {
    let e = env().await;
    for bad in [
        "../x",
        "a%2Fb",
        " ",
        "",
        "4ed2ec66-9471-415d-99ce-7bd1742fc2b8/../../x",
    ] {
        let msg = error_reply(e.status(bad).await, 400);
        assert!(!msg.contains("../") && !msg.contains("%2F"), "{msg}");
        error_reply(e.result(json!({ "request_id": bad })).await, 400);
    }
    for body in [
        "",
        "not json",
        "[1]",
        r#"{"request_id": 1}"#,
        r#"{"id": "x"}"#,
    ] {
        error_reply(e.raw(&e.subjects().status_get(), body).await, 400);
        error_reply(e.raw(&e.subjects().result_get(), body).await, 400);
    }
    error_reply(e.result(json!({ "email": "not-an-email" })).await, 400);
    assert_eq!(e.vx.session_calls(), 0);
    assert_eq!(e.vx.token_calls(), 0);
}

#[tokio::test]
async fn a_request_with_a_key_twice_is_400_as_a_webhook_would_be() {
    // As for webhooks (crate::json::parse_strict): parsers disagree on which value counts, so
    // neither is used.
    let e = env().await;
    let (id, other) = (new_id(), new_id());
    for body in [
        format!(r#"{{"request_id":"{id}","request_id":"{id}"}}"#),
        format!(r#"{{"request_id":"{id}","request_id":"{other}"}}"#),
    ] {
        let msg = error_reply(e.raw(&e.subjects().status_get(), body.clone()).await, 400);
        assert!(msg.contains("duplicate keys"), "{msg}");
        assert!(!msg.contains(&id), "the value is not echoed: {msg}");
        error_reply(e.raw(&e.subjects().result_get(), body).await, 400);
    }
    assert_eq!(e.vx.session_calls(), 0, "nothing reached the VX API");
    // The same id once is answered.
    ok_status(e.status(&id).await);
}

#[tokio::test]
async fn email_lookup_is_400_unless_configured_and_then_uses_the_configured_path() {
    let e = env().await;
    let msg = error_reply(
        e.result(json!({ "email": "jane+vx@example.com" })).await,
        400,
    );
    assert!(msg.contains("not configured"), "{msg}");
    assert!(!msg.contains("jane"), "{msg}");

    let e = env_with(|c| {
        c.upstream.email_lookup_path = Some("/api/session/by-email/{email}".into());
    })
    .await;
    let Reply::Ok(body) = e.result(json!({ "email": "jane+vx@example.com" })).await else {
        panic!("no result")
    };
    let v: Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(Schemas::get().check_result(&v), Ok(()));
    assert_eq!(
        e.vx.email_paths(),
        ["/api/session/by-email/jane%2Bvx%40example%2Ecom"]
    );
}

// ---------------------------------------------------------------------------------------------
// NATS micro service
// ---------------------------------------------------------------------------------------------

async fn srv(client: &async_nats::Client, verb: &str) -> Value {
    let msg = client
        .request(
            format!("$SRV.{verb}.{}", vx_bridge::status::SERVICE_NAME),
            "".into(),
        )
        .await
        .unwrap();
    serde_json::from_slice(&msg.payload).unwrap()
}

fn endpoint<'a>(doc: &'a Value, name: &str) -> &'a Value {
    doc["endpoints"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["name"] == name)
        .unwrap_or_else(|| panic!("no endpoint {name} in {doc}"))
}

#[tokio::test]
async fn srv_discovery_lists_the_endpoints_and_counts_requests_and_errors() {
    let e = env().await;
    let ping = srv(&e.client, "PING").await;
    assert_eq!(ping["name"], "vx-bridge");
    assert_eq!(ping["version"], env!("CARGO_PKG_VERSION"));

    let info = srv(&e.client, "INFO").await;
    let s = endpoint(&info, "status-get");
    assert_eq!(s["subject"], e.subjects().status_get().as_str());
    assert_eq!(s["queue_group"], "vx-bridge");
    let r = endpoint(&info, "result-get");
    assert_eq!(r["subject"], e.subjects().result_get().as_str());

    for _ in 0..3 {
        ok_status(e.status(&new_id()).await);
    }
    error_reply(e.status("../x").await, 400);
    e.vx.script([Step::Code(404)]);
    error_reply(e.status(&new_id()).await, 404);
    error_reply(e.result(json!({ "email": "a@example.com" })).await, 400);

    eventually(
        "stats to count every reply",
        Duration::from_secs(10),
        async || {
            let stats = srv(&e.client, "STATS").await;
            let s = endpoint(&stats, "status-get");
            let r = endpoint(&stats, "result-get");
            s["num_requests"] == 5
                && s["num_errors"] == 2
                && r["num_requests"] == 1
                && r["num_errors"] == 1
        },
    )
    .await;
    let stats = srv(&e.client, "STATS").await;
    assert!(
        endpoint(&stats, "status-get")["last_error"]
            .as_str()
            .unwrap()
            .starts_with("404:"),
        "{stats}"
    );
}

#[tokio::test]
async fn two_instances_share_requests_through_the_queue_group() {
    let e = env().await;
    let second_client = async_nats::connect(e._nats.url()).await.unwrap();
    let second = vx_bridge::status::start(&e.config, second_client, CancellationToken::new())
        .await
        .unwrap();
    let ids = [e.handle.service_id().await, second.service_id().await];
    const N: usize = 40;
    for _ in 0..N {
        ok_status(e.status(&new_id()).await);
    }
    let count = async |id: &str| -> u64 {
        let msg = e
            .client
            .request(format!("$SRV.STATS.vx-bridge.{id}"), "".into())
            .await
            .unwrap();
        let v: Value = serde_json::from_slice(&msg.payload).unwrap();
        endpoint(&v, "status-get")["num_requests"].as_u64().unwrap()
    };
    eventually(
        "both instances' stats to add up",
        Duration::from_secs(10),
        async || count(&ids[0]).await + count(&ids[1]).await == N as u64,
    )
    .await;
    let (a, b) = (count(&ids[0]).await, count(&ids[1]).await);
    assert!(a > 0 && b > 0, "one instance took every request: {a} / {b}");
    assert_eq!(e.vx.session_calls(), N);
    second.stop().await;
    // The remaining instance still answers.
    ok_status(e.status(&new_id()).await);
}

#[tokio::test]
async fn stopped_service_leaves_no_responder() {
    let e = env().await;
    ok_status(e.status(&new_id()).await);
    let Env {
        handle,
        client,
        config,
        _nats,
        ..
    } = e;
    handle.stop().await;
    let subject = Subjects::new(&config.nats.subject_prefix).status_get();
    let body = json!({ "request_id": new_id() }).to_string();
    let err = request(&client, &subject, body.into(), Duration::from_secs(5))
        .await
        .unwrap_err();
    assert!(
        matches!(
            err,
            vx_bridge::status::client::RequestError::NoResponders(_)
        ),
        "{err:?}"
    );
}

// ---------------------------------------------------------------------------------------------
// `serve` and the CLI
// ---------------------------------------------------------------------------------------------

#[tokio::test]
async fn serve_runs_the_status_service_and_the_cli_prints_replies() {
    let nats = NatsServer::start();
    let (vx, vx_url) = vx_api().await;
    let config = status_config(&nats.url(), &vx_url);
    let bridge = Bridge::start(config.clone()).await;
    vx.script([Step::Status("COMPLETED")]);
    let id = new_id();

    let (url, prefix) = (nats.url(), config.nats.subject_prefix.clone());
    let run = move |args: Vec<String>| {
        let (url, prefix) = (url.clone(), prefix.clone());
        tokio::task::spawn_blocking(move || {
            let out = std::process::Command::new(vx_testkit::vx_bridge_bin())
                .args(&args)
                .env_clear()
                .env("VXB_NATS__URL", url)
                .env("VXB_NATS__SUBJECT_PREFIX", prefix)
                .output()
                .unwrap();
            (
                out.status.code(),
                String::from_utf8_lossy(&out.stdout).into_owned(),
                String::from_utf8_lossy(&out.stderr).into_owned(),
            )
        })
    };
    // No webhook auth and no upstream credentials are configured for the CLI: it needs only [nats].
    let (code, stdout, stderr) = run(vec!["status".into(), id.clone()]).await.unwrap();
    assert_eq!(code, Some(0), "{stderr}");
    let v: Value = serde_json::from_str(stdout.trim()).unwrap();
    assert_eq!(v["current_status"], "COMPLETED");
    assert_eq!(v["request_id"], id.as_str());

    // A malformed request_id is refused before anything is sent (the VX mock sees one session).
    for args in [
        vec!["status".to_owned(), "../x".into()],
        vec!["status".to_owned(), format!("{id}0")],
        vec!["result".to_owned(), "--request-id".into(), "../x".into()],
    ] {
        let (code, stdout, stderr) = run(args.clone()).await.unwrap();
        assert_eq!(code, Some(64), "{args:?}: {stderr}");
        assert!(stdout.is_empty(), "{stdout}");
        assert_eq!(stderr.lines().count(), 1, "{stderr}");
        assert!(stderr.contains("not a UUID"), "{stderr}");
        assert!(
            !stderr.contains("../x"),
            "the argument is not echoed: {stderr}"
        );
    }
    // An error reply: printed, and exit 1 (this service has no email lookup path).
    let (code, stdout, stderr) = run(vec![
        "result".into(),
        "--email".into(),
        "a@example.com".into(),
        "--timeout".into(),
        "5s".into(),
    ])
    .await
    .unwrap();
    assert_eq!(code, Some(1), "{stderr}");
    assert!(stderr.contains("error 400"), "{stderr}");
    let v: Value = serde_json::from_str(stdout.trim()).unwrap();
    assert_eq!(v["error"]["code"], 400);

    let (code, _, stderr) = run(vec![
        "result".into(),
        "--request-id".into(),
        id.clone(),
        "--email".into(),
        "a@example.com".into(),
    ])
    .await
    .unwrap();
    assert_eq!(code, Some(2), "clap refuses both at once: {stderr}");
    let (code, _, stderr) = run(vec!["result".into(), "--timeout".into(), "5s".into()])
        .await
        .unwrap();
    assert_eq!(
        code,
        Some(2),
        "clap wants a request_id or an email: {stderr}"
    );

    bridge.stop().await.unwrap();
    let (code, _, stderr) = run(vec!["status".into(), id.clone()]).await.unwrap();
    assert_eq!(code, Some(69), "{stderr}");
    assert!(stderr.contains("no responder"), "{stderr}");
    assert_eq!(vx.session_calls(), 1);

    // No NATS at the URL: one line naming the URL and the cause once, exit 69.
    let dead = format!("nats://127.0.0.1:{}", vx_testkit::free_port());
    let out = tokio::task::spawn_blocking(move || {
        std::process::Command::new(vx_testkit::vx_bridge_bin())
            .args(["status", &id])
            .env_clear()
            .env("VXB_NATS__URL", &dead)
            .output()
            .unwrap()
    })
    .await
    .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(69), "{stderr}");
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
    assert!(stderr.contains("nats://127.0.0.1:"), "{stderr}");
    assert_eq!(stderr.matches("refused").count(), 1, "{stderr}");
}

#[tokio::test]
async fn a_status_request_trace_is_continued_into_the_vx_call() {
    let env = env().await;
    let tp = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
    let mut headers = async_nats::HeaderMap::new();
    headers.insert("traceparent", tp);
    let body = json!({ "request_id": new_id() }).to_string();
    let reply = env
        .client
        .request_with_headers(env.subjects().status_get(), headers, body.into())
        .await
        .unwrap();
    assert!(reply
        .headers
        .as_ref()
        .and_then(|h| h.get("Nats-Service-Error"))
        .is_none());
    // Without one, a new trace is started for the call.
    ok_status(env.status(&new_id()).await);
    let seen = env.vx.traceparents();
    assert_eq!(seen.len(), 2);
    let first = seen[0].clone().expect("traceparent sent to the VX API");
    assert_eq!(&first[..36], &tp[..36], "same trace: {first}");
    assert_ne!(
        &first[36..52],
        &tp[36..52],
        "the bridge's own span: {first}"
    );
    let second = seen[1]
        .clone()
        .expect("a new trace for an untraced request");
    assert_eq!(second.len(), 55);
    assert_ne!(&second[3..35], &tp[3..35]);
}

/// An "API" that accepts connections and closes them without answering.
async fn resetting_api() -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((conn, _)) = listener.accept().await {
            drop(conn);
        }
    });
    format!("http://{addr}")
}

/// Reliability suite 5 (`scripts/reliability/status.sh`): every kind of upstream fault is
/// answered with its code before the upstream deadline, and well before the requester's 10 s.
#[tokio::test]
async fn every_upstream_fault_is_answered_before_the_deadline() {
    let reset_url = resetting_api().await;
    let cases: Vec<(&str, Option<Step>, u16)> = vec![
        ("slow", Some(Step::Slow(1500)), 200),
        ("500", Some(Step::Code(500)), 502),
        ("429", Some(Step::RetryAfter(30)), 503),
        ("401", None, 502),
        ("garbage", Some(Step::Garbage), 502),
        ("reset", None, 502),
        ("hang", Some(Step::Hang), 504),
    ];
    let mut figures = serde_json::Map::new();
    for (name, step, want) in cases {
        let reset = reset_url.clone();
        let env = env_with(move |c| {
            if name == "reset" {
                c.upstream.base_url = reset;
            }
        })
        .await;
        if let Some(step) = step {
            env.vx.set_default(step);
        }
        if name == "401" {
            env.vx.refuse_all(true);
        }
        let started = Instant::now();
        let reply = env.status(&new_id()).await;
        let took = started.elapsed();
        let code = match &reply {
            Reply::Ok(_) => 200,
            Reply::Error { code, .. } => *code,
        };
        assert_eq!(code, want, "{name}: {reply:?}");
        let limit = env.config.upstream.timeout + Duration::from_millis(500);
        assert!(
            took < limit,
            "{name}: answered after {took:?} (limit {limit:?})"
        );
        figures.insert(
            name.into(),
            json!({"code": code, "ms": took.as_millis() as u64}),
        );
    }
    println!("status-faults: {}", Value::Object(figures));
}
