//! The reconciler: `{prefix}.watch`, watched sessions polled against
//! the mock VX API (whose answers change per lookup), poll events, expiry, two replicas, a NATS
//! restart, VX unavailable; against a real nats-server, with short schedules.

use std::collections::HashSet;
use std::process::Stdio;
use std::time::Duration;

use async_nats::jetstream;
use serde_json::{json, Value};
use vx_bridge::config::Config;
use vx_bridge::secret::Secret;
use vx_testkit::{
    body_with, eventually, metric_value, new_request_id, scrape, test_config, wait_for_metric,
    BinaryBridge, Bridge, NatsServer, Sender, Step, VxApi,
};

/// A bridge config with the status service (bearer `tok` at `vx`), the view, and the
/// reconciler on `schedule`.
fn config(nats: &NatsServer, vx: &VxApi, schedule: &[&str]) -> Config {
    let mut cfg = test_config(&nats.url());
    cfg.status.enabled = true;
    cfg.upstream.base_url = vx.url().to_owned();
    cfg.upstream.token = Some(Secret::new("tok"));
    cfg.reconcile.schedule = schedule
        .iter()
        .map(|d| humantime::parse_duration(d).unwrap())
        .collect();
    cfg.reconcile.unavailable_delay = Duration::from_millis(300);
    cfg
}

/// A mock VX API whose sessions go INIT → IN PROGRESS → the PASS result body.
async fn completing_vx() -> VxApi {
    let vx = VxApi::serve(VxApi::seeded("tok")).await;
    vx.complete_with(Some("PASS"));
    vx
}

/// Sends one request to `{prefix}.{what}`; the reply's error code (if any) and its body.
async fn request(
    nc: &async_nats::Client,
    cfg: &Config,
    what: &str,
    body: &str,
) -> (Option<String>, Value) {
    let reply = nc
        .request(
            format!("{}.{what}", cfg.nats.subject_prefix),
            body.to_owned().into(),
        )
        .await
        .unwrap();
    let code = reply
        .headers
        .as_ref()
        .and_then(|h| h.get("Nats-Service-Error-Code"))
        .map(|v| v.as_str().to_owned());
    (code, serde_json::from_slice(&reply.payload).unwrap())
}

/// `{prefix}.watch` for `id`, which must succeed; its reply, checked against the schema.
async fn watch(nc: &async_nats::Client, cfg: &Config, id: &str) -> Value {
    let (code, v) = request(nc, cfg, "watch", &json!({ "request_id": id }).to_string()).await;
    assert_eq!(code, None, "{v}");
    let schemas = vx_bridge::schema::Schemas::get();
    assert!(schemas.check_watch_reply(&v).is_ok(), "{v}");
    v
}

/// One stored message: subject, headers (name, value) and body.
struct Stored {
    subject: String,
    headers: Vec<(String, String)>,
    body: Value,
}

impl Stored {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

/// Every message in stream `name`, in order.
async fn stored(js: &jetstream::Context, name: &str) -> Vec<Stored> {
    let mut stream = js.get_stream(name).await.unwrap();
    let state = stream.info().await.unwrap().state.clone();
    let mut out = Vec::new();
    for seq in state.first_sequence..=state.last_sequence {
        let Ok(m) = stream.get_raw_message(seq).await else {
            continue;
        };
        let headers = m
            .headers
            .iter()
            .flat_map(|(k, vs)| {
                vs.iter()
                    .map(move |v| (k.to_string(), v.as_str().to_owned()))
            })
            .collect();
        out.push(Stored {
            subject: m.subject.to_string(),
            headers,
            body: serde_json::from_slice(&m.payload).unwrap_or(Value::Null),
        });
    }
    out
}

/// The events of `id` in the event stream.
async fn events_of(js: &jetstream::Context, cfg: &Config, id: &str) -> Vec<Stored> {
    stored(js, &cfg.nats.stream.name)
        .await
        .into_iter()
        .filter(|m| m.body["request_id"] == id)
        .collect()
}

/// The session view's value for `id`.
async fn view(js: &jetstream::Context, cfg: &Config, id: &str) -> Option<Value> {
    let store = js.get_key_value(&cfg.sessions.bucket).await.ok()?;
    let v = store.get(id).await.ok()??;
    serde_json::from_slice(&v).ok()
}

async fn terminal(js: &jetstream::Context, cfg: &Config, id: &str) -> bool {
    view(js, cfg, id)
        .await
        .is_some_and(|v| v["terminal"] == true)
}

/// Messages in the work queue now (the watched sessions).
async fn watched(js: &jetstream::Context, cfg: &Config) -> u64 {
    let mut s = js.get_stream(&cfg.reconcile.stream).await.unwrap();
    s.info().await.unwrap().state.messages
}

/// The work message of `id`, if it is watched.
async fn work_of(js: &jetstream::Context, cfg: &Config, id: &str) -> Option<Value> {
    let s = js.get_stream(&cfg.reconcile.stream).await.ok()?;
    let subject = format!("{}.reconcile.{id}", cfg.nats.subject_prefix);
    let m = s.get_last_raw_message_by_subject(&subject).await.ok()?;
    serde_json::from_slice(&m.payload).ok()
}

/// How most tests here begin: a nats-server, the mock VX API, a bridge on [`config`] with its
/// reconcile `schedule` (then changed by `tweak`) and a client of the server. Dropped in field
/// order: the client first, the nats-server last.
struct Rig {
    nc: async_nats::Client,
    js: jetstream::Context,
    bridge: Bridge,
    cfg: Config,
    vx: VxApi,
    _nats: NatsServer,
}

impl Rig {
    async fn start(vx: VxApi, schedule: &[&str], tweak: impl FnOnce(&mut Config)) -> Rig {
        let nats = NatsServer::start();
        let mut cfg = config(&nats, &vx, schedule);
        tweak(&mut cfg);
        let bridge = Bridge::start(cfg.clone()).await;
        let (nc, js) = nats.connect().await;
        Rig {
            nc,
            js,
            bridge,
            cfg,
            vx,
            _nats: nats,
        }
    }

    /// Waits up to `within` for the view of `id` to be terminal (`what`: the wait, if it fails).
    async fn until_terminal(&self, what: &str, id: &str, within: Duration) {
        eventually(what, within, async || {
            terminal(&self.js, &self.cfg, id).await
        })
        .await;
    }

    /// `id` was asked of VX once per step (INIT, IN PROGRESS, the result), VX was asked
    /// `session_calls` times in all, and `id` has one event.
    async fn assert_completed_once(&self, id: &str, session_calls: usize) {
        assert_eq!(self.vx.cycle_calls(id), 3, "{id}");
        assert_eq!(self.vx.session_calls(), session_calls);
        assert_eq!(events_of(&self.js, &self.cfg, id).await.len(), 1, "{id}");
    }

    /// Sends `body` to the bridge as delivery `id`; the answer's HTTP status code.
    async fn send_status(&self, id: &str, body: impl AsRef<[u8]>) -> u16 {
        Sender::new(&self.bridge).send_status(id, body).await
    }

    /// Stops the bridge, which must return without an error.
    async fn stop(self) {
        self.bridge.stop().await.unwrap();
    }
}

#[tokio::test]
async fn a_watched_session_completes_by_polling_alone_once_and_its_checks_stop() {
    let rig = Rig::start(completing_vx().await, &["200ms"], |_| {}).await;
    let Rig { cfg, nc, js, .. } = &rig;
    let id = new_request_id();

    let v = watch(nc, cfg, &id).await;
    assert_eq!(v["watching"], true, "{v}");
    assert_eq!(v["request_id"], id);
    rig.until_terminal(
        "the poll makes the view terminal",
        &id,
        Duration::from_secs(20),
    )
    .await;
    // INIT, IN PROGRESS, then the PASS body: each step asked once.
    assert_eq!(rig.vx.cycle_calls(&id), 3);
    let events = events_of(js, cfg, &id).await;
    assert_eq!(events.len(), 1, "exactly one event");
    let e = &events[0];
    assert_eq!(
        e.subject,
        format!("{}.completed.pass", cfg.nats.subject_prefix)
    );
    assert_eq!(e.header("vx-source"), Some("poll"));
    assert_eq!(
        e.header("Nats-Msg-Id"),
        Some(format!("poll:{id}:PASS").as_str())
    );
    assert_eq!(e.header("ce-type"), Some("vx.verification.completed.pass"));
    assert!(vx_bridge::schema::Schemas::get()
        .check_event(&e.body)
        .is_ok());
    // The result is VX's body, as the mock served it.
    let served: Value = serde_json::from_slice(&body_with("PASS", &id)).unwrap();
    assert_eq!(
        e.body["schema_version"], 2,
        "sealed as a webhook's event is"
    );
    let raw = serde_json::to_vec(&e.body).unwrap();
    assert_eq!(vx_testkit::event_result(cfg, nc, &raw).await, served);
    let state = view(js, cfg, &id).await.unwrap();
    assert_eq!(
        (state["status"].as_str(), state["source"].as_str()),
        (Some("PASS"), Some("poll"))
    );
    // The watch ended: no work message is left, so no check can come.
    eventually("the watch ends", Duration::from_secs(10), async || {
        work_of(js, cfg, &id).await.is_none()
    })
    .await;
    let calls = rig.vx.session_calls();
    // Kept a fixed time on purpose: "no check any more" is an absence, with no event to await.
    // Five periods of the 200 ms schedule: a check still running would have asked VX by now.
    tokio::time::sleep(Duration::from_millis(1000)).await;
    assert_eq!(rig.vx.session_calls(), calls, "checks stopped");

    // A terminal session is not watched again: the view's answer, watching false.
    let v = watch(nc, cfg, &id).await;
    assert_eq!(v["watching"], false, "{v}");
    assert_eq!(v["result_status"], "PASS");
    assert_eq!(v["source"], "events");
    assert!(work_of(js, cfg, &id).await.is_none());

    // The webhook arriving after the poll's PASS is stored (202); the view stays terminal.
    assert_eq!(
        rig.send_status("msg_late", body_with("PASS", &id)).await,
        202
    );
    eventually(
        "the webhook is stored",
        Duration::from_secs(10),
        async || events_of(js, cfg, &id).await.len() == 2,
    )
    .await;
    eventually(
        "the view takes the webhook's PASS",
        Duration::from_secs(10),
        async || {
            view(js, cfg, &id)
                .await
                .is_some_and(|v| v["source"] == "webhook")
        },
    )
    .await;
    assert!(terminal(js, cfg, &id).await);
    assert_eq!(rig.vx.session_calls(), calls);
    rig.stop().await;
}

#[tokio::test]
async fn a_pending_webhook_registers_its_session_which_then_completes_by_polling() {
    let rig = Rig::start(completing_vx().await, &["200ms"], |_| {}).await;
    let Rig { cfg, js, .. } = &rig;
    let id = new_request_id();
    assert_eq!(
        rig.send_status("msg_p", body_with("PENDING", &id)).await,
        202
    );
    rig.until_terminal("the poll completes it", &id, Duration::from_secs(20))
        .await;
    let events = events_of(js, cfg, &id).await;
    let kinds: Vec<(&str, Option<&str>)> = events
        .iter()
        .map(|e| (e.body["type"].as_str().unwrap_or(""), e.header("vx-source")))
        .collect();
    assert_eq!(kinds, [("pending", None), ("completed.pass", Some("poll"))]);
    assert_eq!(rig.vx.cycle_calls(&id), 3);
    rig.stop().await;
}

#[tokio::test]
async fn registering_twice_is_one_watch_and_bad_input_is_answered_as_status_get() {
    // A schedule long enough that nothing is checked during the test.
    let rig = Rig::start(VxApi::serve(VxApi::seeded("tok")).await, &["1h"], |_| {}).await;
    let Rig { cfg, nc, js, .. } = &rig;
    let id = new_request_id();
    let first = watch(nc, cfg, &id).await;
    let second = watch(nc, cfg, &id.to_uppercase()).await;
    assert_eq!(first["watching"], true);
    assert_eq!(second["request_id"], id, "lower-cased");
    assert_eq!(
        first["next_check_at"], second["next_check_at"],
        "the schedule is kept"
    );
    assert_eq!(watched(js, cfg).await, 1);
    assert_eq!(work_of(js, cfg, &id).await.unwrap()["step"], 0);
    for bad in [
        "",
        "not json",
        "{}",
        r#"{"request_id": 42}"#,
        r#"{"request_id": "../x"}"#,
        r#"{"request_id": "a", "request_id": "b"}"#,
    ] {
        let (code, body) = request(nc, cfg, "watch", bad).await;
        let (status_code, status_body) = request(nc, cfg, "status.get", bad).await;
        assert_eq!(code.as_deref(), Some("400"), "{bad}: {body}");
        assert_eq!((code, body), (status_code, status_body), "{bad}");
    }
    assert_eq!(watched(js, cfg).await, 1);
    assert_eq!(rig.vx.session_calls(), 0);
    // The endpoint is in $SRV discovery, in the status service's queue group.
    let info = nc
        .request(
            format!("$SRV.INFO.{}", vx_bridge::status::SERVICE_NAME),
            "".into(),
        )
        .await
        .unwrap();
    let info: Value = serde_json::from_slice(&info.payload).unwrap();
    let ep = info["endpoints"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["name"] == vx_bridge::status::WATCH_ENDPOINT)
        .unwrap_or_else(|| panic!("no watch endpoint in {info}"))
        .clone();
    assert_eq!(ep["subject"], format!("{}.watch", cfg.nats.subject_prefix));
    assert_eq!(ep["queue_group"], cfg.status.queue_group.as_str());
    rig.stop().await;
}

#[tokio::test]
async fn without_the_reconciler_there_is_no_watch_endpoint_and_nothing_is_registered() {
    let rig = Rig::start(completing_vx().await, &["200ms"], |cfg| {
        cfg.reconcile.enabled = Some(false);
    })
    .await;
    let Rig { cfg, nc, js, .. } = &rig;
    let id = new_request_id();
    let asked = nc
        .request(
            format!("{}.watch", cfg.nats.subject_prefix),
            json!({ "request_id": id }).to_string().into(),
        )
        .await;
    let err = asked.expect_err("no responders");
    assert_eq!(
        err.kind(),
        async_nats::client::RequestErrorKind::NoResponders,
        "{err}"
    );
    // A pending webhook is projected, not registered: the work-queue stream is never made.
    assert_eq!(
        rig.send_status("msg_p", body_with("PENDING", &id)).await,
        202
    );
    eventually("the view has it", Duration::from_secs(10), async || {
        view(js, cfg, &id).await.is_some()
    })
    .await;
    assert!(js.get_stream(&cfg.reconcile.stream).await.is_err());
    assert_eq!(rig.vx.session_calls(), 0);
    rig.stop().await;
}

#[tokio::test]
async fn two_replicas_share_200_watched_sessions_checking_each_step_once() {
    // Replica a is the rig's bridge, b a second one on the same config.
    let rig = Rig::start(completing_vx().await, &["200ms"], |cfg| {
        cfg.reconcile.concurrency = 8;
    })
    .await;
    let Rig { cfg, nc, js, .. } = &rig;
    let b = Bridge::start(cfg.clone()).await;
    let ids: Vec<String> = (0..200).map(|_| new_request_id()).collect();
    for id in &ids {
        watch(nc, cfg, id).await;
    }
    eventually("all 200 complete", Duration::from_secs(60), async || {
        stored(js, &cfg.nats.stream.name)
            .await
            .iter()
            .filter(|m| m.header("vx-source") == Some("poll"))
            .count()
            == 200
    })
    .await;
    let events = stored(js, &cfg.nats.stream.name).await;
    let completed: HashSet<&str> = events
        .iter()
        .filter(|m| m.subject.ends_with(".completed.pass"))
        .filter_map(|m| m.body["request_id"].as_str())
        .collect();
    assert_eq!(events.len(), 200, "each completes once");
    assert_eq!(completed.len(), 200);
    for id in &ids {
        assert_eq!(rig.vx.cycle_calls(id), 3, "{id}: each step checked once");
    }
    assert_eq!(rig.vx.session_calls(), 600);
    eventually("every watch ends", Duration::from_secs(10), async || {
        watched(js, cfg).await == 0
    })
    .await;
    rig.stop().await;
    b.stop().await.unwrap();
}

#[tokio::test]
async fn watched_sessions_all_complete_across_a_nats_restart() {
    let mut nats = NatsServer::start();
    let vx = completing_vx().await;
    let cfg = config(&nats, &vx, &["1s"]);
    let bridge = Bridge::start(cfg.clone()).await;
    let ids: Vec<String> = (0..20).map(|_| new_request_id()).collect();
    {
        let (nc, _) = nats.connect().await;
        for id in &ids {
            watch(&nc, &cfg, id).await;
        }
        eventually("some first checks", Duration::from_secs(10), async || {
            vx.session_calls() >= 5
        })
        .await;
    }
    nats.restart();
    let (_nc, js) = nats.connect().await;
    eventually(
        "all complete after the restart",
        Duration::from_secs(90),
        async || {
            let mut n = 0;
            for id in &ids {
                n += usize::from(terminal(&js, &cfg, id).await);
            }
            n == ids.len()
        },
    )
    .await;
    for id in &ids {
        let events = events_of(&js, &cfg, id).await;
        assert_eq!(events.len(), 1, "{id}");
        assert_eq!(events[0].header("vx-source"), Some("poll"));
    }
    bridge.stop().await.unwrap();
}

#[tokio::test]
async fn vx_unavailable_reschedules_checks_without_burning_steps_or_looping() {
    let rig = Rig::start(completing_vx().await, &["200ms"], |cfg| {
        // One call per check, and no circuit: every check reaches the mock.
        cfg.upstream.max_retries = 0;
        cfg.upstream.circuit_failure_threshold = 1000;
    })
    .await;
    let Rig { cfg, nc, js, .. } = &rig;
    let id = new_request_id();
    rig.vx.script(std::iter::repeat_n(Step::Code(503), 6));
    watch(nc, cfg, &id).await;
    eventually("some 503s", Duration::from_secs(20), async || {
        rig.vx.session_calls() >= 3
    })
    .await;
    assert_eq!(
        work_of(js, cfg, &id).await.unwrap()["step"],
        0,
        "no step burned"
    );
    rig.until_terminal("it completes once VX is back", &id, Duration::from_secs(30))
        .await;
    // Six 503s, then INIT, IN PROGRESS, PASS: nothing lost, nothing asked twice.
    rig.assert_completed_once(&id, 9).await;
    rig.stop().await;
}

#[tokio::test]
async fn a_429_with_retry_after_holds_the_next_check_that_long_without_burning_a_step() {
    let rig = Rig::start(completing_vx().await, &["200ms"], |cfg| {
        // The client answers the 429 at once (no retry of its own): the reconciler must wait.
        cfg.upstream.max_retries = 0;
    })
    .await;
    let Rig { cfg, nc, js, .. } = &rig;
    let id = new_request_id();
    rig.vx.script([Step::RetryAfter(3)]);
    watch(nc, cfg, &id).await;
    eventually("the 429", Duration::from_secs(20), async || {
        rig.vx.session_calls() == 1
    })
    .await;
    let first = std::time::Instant::now();
    // The work message's step while the check waits (read between two equal call counts).
    let mut steps = HashSet::new();
    eventually("the next check", Duration::from_secs(20), async || {
        if rig.vx.session_calls() >= 2 {
            return true;
        }
        let step = work_of(js, cfg, &id).await.map(|w| w["step"].clone());
        if rig.vx.session_calls() == 1 {
            steps.insert(step.map(|s| s.to_string()));
        }
        false
    })
    .await;
    // Observed within 20 ms of each call: the gap is at least the 3 s asked (less the polling),
    // where `reconcile.unavailable_delay` (300 ms) would have asked again well before.
    let gap = first.elapsed();
    assert!(
        gap >= Duration::from_millis(2900),
        "asked again after {gap:?}"
    );
    assert_eq!(
        steps,
        HashSet::from([Some("0".to_owned())]),
        "no step burned"
    );
    rig.until_terminal("it completes", &id, Duration::from_secs(20))
        .await;
    // The 429, then INIT, IN PROGRESS, PASS.
    rig.assert_completed_once(&id, 4).await;
    rig.stop().await;
}

#[tokio::test]
async fn polled_bodies_of_a_running_journey_or_an_unknown_status_publish_what_a_webhook_would() {
    let rig = Rig::start(completing_vx().await, &["200ms"], |_| {}).await;
    let Rig { cfg, nc, js, .. } = &rig;
    let id = new_request_id();
    rig.vx.script([
        Step::Result("REVIEW"),
        Step::Result("REVIEW"),
        Step::Result("PENDING"),
        Step::Result("PENDING"),
        Step::Result("PASS"),
    ]);
    watch(nc, cfg, &id).await;
    rig.until_terminal("it completes", &id, Duration::from_secs(20))
        .await;
    // Each body checked once, the watch going on after the unknown status and the PENDING.
    assert_eq!(rig.vx.session_calls(), 5);
    let events = events_of(js, cfg, &id).await;
    let seen: Vec<(&str, Option<&str>, Option<&str>)> = events
        .iter()
        .map(|e| {
            (
                e.body["type"].as_str().unwrap_or(""),
                e.header("vx-source"),
                e.header("Nats-Msg-Id"),
            )
        })
        .collect();
    let msg_id = |s: &str| format!("poll:{id}:{s}");
    assert_eq!(
        seen,
        [
            (
                "unrecognized",
                Some("poll"),
                Some(msg_id("REVIEW").as_str())
            ),
            ("pending", Some("poll"), Some(msg_id("PENDING").as_str())),
            (
                "completed.pass",
                Some("poll"),
                Some(msg_id("PASS").as_str())
            ),
        ],
        "the repeated REVIEW stored once (its Nats-Msg-Id), the repeated PENDING published once"
    );
    assert_eq!(
        events[0].subject,
        format!("{}.unrecognized", cfg.nats.subject_prefix)
    );
    for e in &events {
        assert!(
            vx_bridge::schema::Schemas::get()
                .check_event(&e.body)
                .is_ok(),
            "{}",
            e.body
        );
    }
    rig.stop().await;
}

#[tokio::test]
async fn a_session_that_never_completes_expires_once_and_is_no_longer_checked() {
    let rig = Rig::start(
        VxApi::serve(VxApi::seeded("tok")).await,
        &["200ms"],
        |cfg| {
            cfg.reconcile.give_up_after = Duration::from_secs(2);
        },
    )
    .await;
    let Rig { cfg, nc, js, .. } = &rig;
    let id = new_request_id();
    rig.vx
        .tell(&id, vx_bridge::upstream::CurrentStatus::InProgress);
    let reply = watch(nc, cfg, &id).await;
    let expired_subject = format!("{}.expired", cfg.nats.subject_prefix);
    eventually("the expiry", Duration::from_secs(20), async || {
        stored(js, &cfg.nats.stream.name)
            .await
            .iter()
            .any(|m| m.subject == expired_subject)
    })
    .await;
    let all = stored(js, &cfg.nats.stream.name).await;
    let expired: Vec<&Stored> = all
        .iter()
        .filter(|m| m.subject == expired_subject)
        .collect();
    assert_eq!(expired.len(), 1);
    let e = expired[0];
    assert!(
        vx_bridge::schema::Schemas::get()
            .check_session_expired(&e.body)
            .is_ok(),
        "{}",
        e.body
    );
    assert_eq!(
        e.header("Nats-Msg-Id"),
        Some(format!("expired:{id}").as_str())
    );
    assert_eq!(e.body["request_id"], id);
    assert_eq!(e.body["last_state"], "IN PROGRESS");
    let checks = e.body["checks"].as_u64().unwrap();
    assert!(checks >= 2, "{}", e.body);
    assert_eq!(
        checks as usize,
        rig.vx.session_calls(),
        "one VX call per check"
    );
    assert!(e.body["registered_at"].as_str() < reply["next_check_at"].as_str());
    eventually("the watch ends", Duration::from_secs(10), async || {
        work_of(js, cfg, &id).await.is_none()
    })
    .await;
    let calls = rig.vx.session_calls();
    // Kept a fixed time on purpose: "no longer checked" is an absence, with no event to await.
    // Five periods of the 200 ms schedule: a check still running would have asked VX by now.
    tokio::time::sleep(Duration::from_millis(1000)).await;
    assert_eq!(rig.vx.session_calls(), calls, "no longer checked");
    // The projector skipped the expiry: the view holds VX's last answer, not terminal.
    let state = view(js, cfg, &id).await.unwrap();
    assert_eq!(
        (
            state["current_status"].as_str(),
            state["terminal"].as_bool()
        ),
        (Some("IN PROGRESS"), Some(false))
    );
    rig.stop().await;
}

/// The bridge binary with the status service (bearer `tok` at `vx`) and schedule `["300ms"]`,
/// ready; its config.
async fn binary_bridge(nats: &NatsServer, vx: &VxApi) -> (Config, BinaryBridge) {
    let cfg = test_config(&nats.url());
    let env = [
        ("VXB_STATUS__ENABLED", "true".to_owned()),
        ("VXB_UPSTREAM__BASE_URL", vx.url().to_owned()),
        ("VXB_UPSTREAM__TOKEN", "tok".to_owned()),
        ("VXB_RECONCILE__SCHEDULE", r#"["300ms"]"#.to_owned()),
    ];
    let bridge = BinaryBridge::spawn(&cfg, &env, Stdio::null());
    bridge.wait_ready().await;
    (cfg, bridge)
}

/// Waits for `pass` poll events published, then for `watched` sessions.
async fn published_then_watched(base: &str, pass: f64, watched: f64) {
    wait_for_metric(
        base,
        "vx_bridge_reconcile_events_published_total",
        &[("kind", "pass")],
        pass,
        Duration::from_secs(20),
    )
    .await;
    wait_for_metric(
        base,
        "vx_bridge_reconcile_watched",
        &[],
        watched,
        Duration::from_secs(10),
    )
    .await;
}

#[tokio::test]
async fn reconcile_metrics_count_checks_by_outcome_and_the_watched_sessions() {
    let nats = NatsServer::start();
    let vx = completing_vx().await;
    let (cfg, bridge) = binary_bridge(&nats, &vx).await;
    let (nc, _js) = nats.connect().await;
    let ids: Vec<String> = (0..3).map(|_| new_request_id()).collect();
    // VX does not know this one (404): checked on every step, never completed.
    let unknown = "00000000-0000-4000-8000-fa1700001404";
    eventually("the watch endpoint", Duration::from_secs(10), async || {
        let (code, _) = request(
            &nc,
            &cfg,
            "watch",
            &json!({ "request_id": unknown }).to_string(),
        )
        .await;
        code.is_none()
    })
    .await;
    for id in &ids {
        watch(&nc, &cfg, id).await;
    }
    let base = bridge.base();
    let checks = "vx_bridge_reconcile_checks_total";
    published_then_watched(&base, 3.0, 1.0).await;
    let text = scrape(&base).await;
    let v = |outcome: &str| metric_value(&text, checks, &[("outcome", outcome)]);
    assert_eq!(
        v("pending"),
        Some(6.0),
        "INIT and IN PROGRESS of each\n{text}"
    );
    assert_eq!(v("completed"), Some(3.0));
    assert_eq!(v("unavailable"), Some(0.0));
    assert_eq!(v("expired"), Some(0.0));
    assert!(v("unknown").is_some_and(|n| n >= 1.0), "{text}");
    assert_eq!(
        metric_value(
            &text,
            "vx_bridge_reconcile_events_published_total",
            &[("kind", "expired")]
        ),
        Some(0.0)
    );
    let age = metric_value(&text, "vx_bridge_reconcile_oldest_watch_age_seconds", &[]).unwrap();
    assert!(age > 0.0, "{text}");
    assert!(
        text.contains("# TYPE vx_bridge_reconcile_oldest_watch_age_seconds gauge"),
        "{text}"
    );
}

/// Check throughput of one replica (the figure docs/SCALING.md uses), not a pass/fail test:
/// `N` sessions (`VXB_BENCH_SESSIONS`, default 3000) watched at once on schedule `["100ms"]`,
/// each going INIT → IN PROGRESS → PASS at the mock (3 checks, 3 VX calls); prints checks/s
/// (all checks over the wall time from the first registration to the last poll event) and VX
/// calls per completed session. Run in release, under the heavy lock:
/// `flock /tmp/vx-heavy.lock cargo test --release --test it reconcile_throughput -- --ignored --nocapture`
#[tokio::test]
#[ignore = "a measurement: run it by name (see its doc)"]
async fn reconcile_throughput() {
    let n: usize = std::env::var("VXB_BENCH_SESSIONS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(3000);
    let concurrency = std::env::var("VXB_BENCH_CONCURRENCY").unwrap_or_else(|_| "16".into());
    let nats = NatsServer::start();
    let vx = completing_vx().await;
    let cfg = test_config(&nats.url());
    let env = [
        ("VXB_STATUS__ENABLED", "true".to_owned()),
        ("VXB_UPSTREAM__BASE_URL", vx.url().to_owned()),
        ("VXB_UPSTREAM__TOKEN", "tok".to_owned()),
        ("VXB_UPSTREAM__MAX_CONCURRENCY", "64".to_owned()),
        ("VXB_RECONCILE__SCHEDULE", r#"["100ms"]"#.to_owned()),
        ("VXB_RECONCILE__CONCURRENCY", concurrency.clone()),
    ];
    let bridge = BinaryBridge::spawn(&cfg, &env, Stdio::null());
    bridge.wait_ready().await;
    let (nc, js) = nats.connect().await;
    eventually("the watch endpoint", Duration::from_secs(10), async || {
        let (code, _) = request(
            &nc,
            &cfg,
            "watch",
            &json!({ "request_id": new_request_id() }).to_string(),
        )
        .await;
        code.is_none()
    })
    .await;
    let started = std::time::Instant::now();
    let ids: Vec<String> = (0..n).map(|_| new_request_id()).collect();
    let registrations = ids.chunks(200).map(|chunk| {
        let (nc, cfg) = (nc.clone(), cfg.clone());
        let chunk = chunk.to_vec();
        async move {
            for id in chunk {
                watch(&nc, &cfg, &id).await;
            }
        }
    });
    futures::future::join_all(registrations).await;
    let registered = started.elapsed();
    let base = bridge.base();
    let pass = "vx_bridge_reconcile_events_published_total";
    // n + 1: the session that probed the endpoint completes too.
    wait_for_metric(
        &base,
        pass,
        &[("kind", "pass")],
        (n + 1) as f64,
        Duration::from_secs(600),
    )
    .await;
    let elapsed = started.elapsed();
    let text = scrape(&base).await;
    let checks: f64 = [
        "pending",
        "completed",
        "completed_without_result",
        "unavailable",
        "failed",
        "superseded",
    ]
    .iter()
    .filter_map(|o| metric_value(&text, "vx_bridge_reconcile_checks_total", &[("outcome", o)]))
    .sum();
    let calls = vx.session_calls();
    let stored = js
        .get_stream(&cfg.nats.stream.name)
        .await
        .unwrap()
        .get_info()
        .await
        .unwrap()
        .state
        .messages;
    println!(
        "reconcile_throughput: sessions={} concurrency={concurrency} registered_in={:.2}s completed_in={:.2}s checks={checks} checks_per_s={:.0} vx_calls={calls} calls_per_completed={:.2} poll_events={stored}",
        n + 1,
        registered.as_secs_f64(),
        elapsed.as_secs_f64(),
        checks / elapsed.as_secs_f64(),
        calls as f64 / (n + 1) as f64,
    );
    assert_eq!(stored as usize, n + 1);
}

#[tokio::test]
async fn a_session_completed_by_its_webhook_before_the_give_up_is_not_expired() {
    // The only check is due at the give-up time (its delay is longer): the session's PASS
    // webhook arrives first, so that delivery must end the watch, not publish an expiry.
    let rig = Rig::start(VxApi::serve(VxApi::seeded("tok")).await, &["10m"], |cfg| {
        cfg.reconcile.give_up_after = Duration::from_secs(3);
    })
    .await;
    let Rig { cfg, nc, js, .. } = &rig;
    let id = new_request_id();
    rig.vx
        .tell(&id, vx_bridge::upstream::CurrentStatus::InProgress);
    watch(nc, cfg, &id).await;
    assert_eq!(rig.send_status("msg_w", body_with("PASS", &id)).await, 202);
    rig.until_terminal("the view is terminal", &id, Duration::from_secs(10))
        .await;
    eventually("the watch ends", Duration::from_secs(20), async || {
        work_of(js, cfg, &id).await.is_none()
    })
    .await;
    let expired_subject = format!("{}.expired", cfg.nats.subject_prefix);
    let expired = stored(js, &cfg.nats.stream.name)
        .await
        .into_iter()
        .filter(|m| m.subject == expired_subject)
        .count();
    assert_eq!(expired, 0, "a completed session is not expired");
    assert_eq!(rig.vx.session_calls(), 0, "the view answered");
    rig.stop().await;
}

#[tokio::test]
async fn the_oldest_watch_age_is_zero_once_no_session_is_watched() {
    let nats = NatsServer::start();
    let vx = VxApi::serve(VxApi::seeded("tok")).await;
    vx.set_default(Step::Status("IN PROGRESS"));
    let (cfg, bridge) = binary_bridge(&nats, &vx).await;
    let (nc, _js) = nats.connect().await;
    let id = new_request_id();
    eventually("the watch endpoint", Duration::from_secs(10), async || {
        let (code, _) = request(&nc, &cfg, "watch", &json!({ "request_id": id }).to_string()).await;
        code.is_none()
    })
    .await;
    let base = bridge.base();
    let age = "vx_bridge_reconcile_oldest_watch_age_seconds";
    eventually("a watch with an age", Duration::from_secs(20), async || {
        metric_value(&scrape(&base).await, age, &[]).is_some_and(|a| a > 0.0)
    })
    .await;
    vx.set_default(Step::Result("PASS"));
    published_then_watched(&base, 1.0, 0.0).await;
    // Nothing is watched any more: no oldest watch (the round, 30.3 s here, must not keep the
    // finished one's growing age).
    wait_for_metric(&base, age, &[], 0.0, Duration::from_secs(10)).await;
}

#[tokio::test]
async fn a_pending_event_older_than_the_give_up_registers_nothing() {
    // A projector that meets an old PENDING event (a new consumer on an old stream) must not
    // watch its session from now on: the watch counts from the event's stored time, and one
    // already past `give_up_after` is not registered (it would only be polled, then expired).
    let nats = NatsServer::start();
    let vx = VxApi::serve(VxApi::seeded("tok")).await;
    let mut cfg = config(&nats, &vx, &["200ms"]);
    cfg.reconcile.give_up_after = Duration::from_secs(2);
    let mut earlier = cfg.clone();
    earlier.sessions.enabled = false;
    earlier.reconcile.enabled = Some(false);
    let old = new_request_id();
    let first = Bridge::start(earlier).await;
    assert_eq!(
        Sender::new(&first)
            .send_status("msg_old", body_with("PENDING", &old))
            .await,
        202
    );
    first.stop().await.unwrap();
    let (_nc, js) = nats.connect().await;
    // The stored event ages past give_up_after (only time passing makes it so): wait until its
    // stored time plus give_up_after is past, the rule the projector applies to it.
    let mut events = js.get_stream(&cfg.nats.stream.name).await.unwrap();
    let last = events.info().await.unwrap().state.last_sequence;
    let stored_at = events.get_raw_message(last).await.unwrap().time;
    eventually(
        "the old event to be older than give_up_after",
        Duration::from_secs(10),
        async || stored_at + cfg.reconcile.give_up_after <= time::OffsetDateTime::now_utc(),
    )
    .await;
    let bridge = Bridge::start(cfg.clone()).await;
    let fresh = new_request_id();
    assert_eq!(
        Sender::new(&bridge)
            .send_status("msg_fresh", body_with("PENDING", &fresh))
            .await,
        202
    );
    let expired_subject = format!("{}.expired", cfg.nats.subject_prefix);
    let expired_of = async |id: &str| {
        stored(&js, &cfg.nats.stream.name)
            .await
            .into_iter()
            .filter(|m| m.subject == expired_subject && m.body["request_id"] == id)
            .count()
    };
    // The fresh session is watched and given up 2 s after its event; by then the old one, had it
    // been registered when projected (before the fresh one), would have been given up too.
    eventually(
        "the fresh session expires",
        Duration::from_secs(20),
        async || expired_of(&fresh).await == 1,
    )
    .await;
    assert!(
        view(&js, &cfg, &old).await.is_some(),
        "the old event was projected"
    );
    assert_eq!(expired_of(&old).await, 0, "the old session was not watched");
    assert!(work_of(&js, &cfg, &old).await.is_none());
    assert_eq!(vx.cycle_calls(&old), 0, "the old session was never polled");
    assert!(vx.cycle_calls(&fresh) > 0);
    bridge.stop().await.unwrap();
}
