//! The session view against real nats-server processes: the monotonic rule end to end, two
//! projecting bridges, a NATS restart mid-projection, a missing bucket, and the values of
//! `vx_bridge_sessions_lookup_writes_total`.

use std::collections::HashMap;
use std::process::Stdio;
use std::time::Duration;

use async_nats::jetstream::{self, kv};
use futures::StreamExt as _;
use rand::seq::SliceRandom as _;
use serde_json::Value;
use vx_bridge::config::Config;
use vx_bridge::schema::Schemas;
use vx_bridge::sessions::rule::{EventFields, SessionState, Source};
use vx_bridge::sessions::CONSUMER;

use vx_testkit::{
    body_with, eventually, eventually_ok, eventually_some, new_request_id, readyz, Sender,
};
use vx_testkit::{metric_value, scrape, wait_for_metric, BinaryBridge};
use vx_testkit::{test_config, Bridge, NatsServer, Step, VxApi};

async fn js(nats: &NatsServer) -> jetstream::Context {
    jetstream::new(async_nats::connect(nats.url()).await.unwrap())
}

/// Waits (up to `limit`) until the projector's consumer has nothing pending or unacked and has
/// delivered everything in the stream.
async fn wait_projected(js: &jetstream::Context, cfg: &Config, limit: Duration) {
    eventually("the stream projected", limit, async || {
        let done = async {
            let mut stream = js.get_stream(&cfg.nats.stream.name).await.ok()?;
            let last = stream.info().await.ok()?.state.last_sequence;
            let info = stream.consumer_info(CONSUMER).await.ok()?;
            Some(
                info.num_pending == 0
                    && info.num_ack_pending == 0
                    && info.delivered.stream_sequence >= last,
            )
        }
        .await;
        done == Some(true)
    })
    .await;
}

/// The value and revision of `request_id`'s key.
async fn entry(store: &kv::Store, request_id: &str) -> Option<(SessionState, u64)> {
    let e = store
        .entry(request_id.to_ascii_lowercase())
        .await
        .unwrap()?;
    let v: Value = serde_json::from_slice(&e.value).unwrap();
    assert_eq!(Schemas::get().check_session_state(&v), Ok(()), "{v}");
    Some((serde_json::from_value(v).unwrap(), e.revision))
}

/// Every event in the stream, as the state it sets, by stream sequence.
async fn states_in_stream(js: &jetstream::Context, cfg: &Config) -> Vec<SessionState> {
    let mut stream = js.get_stream(&cfg.nats.stream.name).await.unwrap();
    let last = stream.info().await.unwrap().state.last_sequence;
    let rejected = format!("{}.rejected", cfg.nats.subject_prefix);
    let mut out = Vec::new();
    for seq in 1..=last {
        let m = stream.direct_get(seq).await.unwrap();
        if m.subject.as_str() == rejected {
            continue;
        }
        let fields: EventFields = serde_json::from_slice(&m.payload).unwrap();
        out.push(SessionState::from_event(fields, seq, Source::Webhook));
    }
    out
}

/// What the view must hold, derived from the stream alone: per session, its last terminal
/// event if it has one, else its last event.
fn expected_from_stream(states: Vec<SessionState>) -> HashMap<String, SessionState> {
    let mut want: HashMap<String, SessionState> = HashMap::new();
    for s in states {
        match want.get(&s.request_id) {
            Some(c) if c.rank() >= s.rank() => {}
            _ => {
                want.insert(s.request_id.clone(), s);
            }
        }
    }
    want
}

/// The shared projection consumer's info.
async fn consumer_info(js: &jetstream::Context, cfg: &Config) -> jetstream::consumer::Info {
    js.get_stream(&cfg.nats.stream.name)
        .await
        .unwrap()
        .consumer_info(CONSUMER)
        .await
        .unwrap()
}

/// The test config for `nats` with `sessions.create = false`.
fn without_create(nats: &NatsServer) -> Config {
    let mut cfg = test_config(&nats.url());
    cfg.sessions.create = false;
    cfg
}

async fn bucket_keys(store: &kv::Store) -> Vec<String> {
    store
        .keys()
        .await
        .unwrap()
        .map(|k| k.unwrap())
        .collect()
        .await
}

#[tokio::test]
async fn pending_pending_pass_ends_in_pass_and_late_events_and_redeliveries_change_nothing() {
    let nats = NatsServer::start();
    let cfg = test_config(&nats.url());
    let bridge = Bridge::start(cfg.clone()).await;
    let sender = Sender::new(&bridge);
    let id = new_request_id().to_ascii_uppercase();
    for (n, status) in ["PENDING", "PENDING", "PASS"].iter().enumerate() {
        let r = sender
            .send(&format!("msg_{n}"), &body_with(status, &id))
            .await;
        assert_eq!(r.status(), 202);
    }
    let js = js(&nats).await;
    wait_projected(&js, &cfg, Duration::from_secs(20)).await;
    let store = js.get_key_value(&cfg.sessions.bucket).await.unwrap();
    let (state, revision) = entry(&store, &id).await.expect("the key is written");
    assert_eq!(state.request_id, id.to_ascii_lowercase());
    assert_eq!(state.status, "PASS");
    assert!(state.terminal);
    assert_eq!(state.current_status.as_deref(), Some("COMPLETED"));
    assert_eq!(state.event_type, Some("completed.pass".into()));
    assert_eq!(state.source, Source::Webhook);
    // At the PASS event's sequence, as the stream says.
    let in_stream = states_in_stream(&js, &cfg).await;
    let pass = in_stream.iter().find(|s| s.status == "PASS").unwrap();
    assert_eq!(state, *pass);

    // A late PENDING, stored after the PASS, changes nothing.
    let r = sender.send("msg_late", &body_with("PENDING", &id)).await;
    assert_eq!(r.status(), 202);
    wait_projected(&js, &cfg, Duration::from_secs(20)).await;
    assert_eq!(entry(&store, &id).await, Some((state.clone(), revision)));

    // Every event delivered again (a new consumer from the start): still nothing changes, not
    // even the revision.
    bridge.stop().await.unwrap();
    let stream = js.get_stream(&cfg.nats.stream.name).await.unwrap();
    stream.delete_consumer(CONSUMER).await.unwrap();
    let bridge = Bridge::start(cfg.clone()).await;
    wait_projected(&js, &cfg, Duration::from_secs(20)).await;
    let info = consumer_info(&js, &cfg).await;
    assert_eq!(
        info.delivered.stream_sequence, 4,
        "all four were delivered again"
    );
    assert_eq!(entry(&store, &id).await, Some((state.clone(), revision)));
    // And applied once more by hand, each event is stale or unchanged.
    for s in &in_stream {
        let outcome = vx_bridge::sessions::apply(&store, s).await.unwrap();
        assert_ne!(
            outcome,
            vx_bridge::telemetry::SessionUpdate::Applied,
            "{s:?}"
        );
    }
    assert_eq!(entry(&store, &id).await, Some((state, revision)));
    bridge.stop().await.unwrap();
}

#[tokio::test]
async fn two_bridges_projecting_shuffled_events_of_1000_sessions_end_in_the_states_the_stream_implies(
) {
    let nats = NatsServer::start();
    let cfg = test_config(&nats.url());
    let a = Bridge::start(cfg.clone()).await;
    let b = Bridge::start(cfg.clone()).await;
    let senders = [Sender::new(&a), Sender::new(&b)];
    let mut events = Vec::new();
    for n in 0..1000 {
        let id = new_request_id();
        let last = if n % 3 == 0 { "FAIL" } else { "PASS" };
        for (k, status) in ["PENDING", "PENDING", last].into_iter().enumerate() {
            events.push((format!("msg_{n}_{k}"), body_with(status, &id)));
        }
    }
    events.shuffle(&mut rand::rng());
    let sent = futures::stream::iter(events.iter().enumerate())
        .map(|(i, (msg, body))| {
            let sender = &senders[i % 2];
            async move { sender.send(msg, body).await.status().as_u16() }
        })
        .buffer_unordered(32)
        .collect::<Vec<u16>>()
        .await;
    assert!(sent.iter().all(|c| *c == 202), "all stored");
    let js = js(&nats).await;
    wait_projected(&js, &cfg, Duration::from_secs(120)).await;

    let want = expected_from_stream(states_in_stream(&js, &cfg).await);
    assert_eq!(want.len(), 1000);
    let store = js.get_key_value(&cfg.sessions.bucket).await.unwrap();
    let mut keys = bucket_keys(&store).await;
    keys.sort();
    let mut want_keys: Vec<String> = want.keys().cloned().collect();
    want_keys.sort();
    assert_eq!(keys, want_keys);
    for (id, w) in &want {
        let (got, _) = entry(&store, id).await.unwrap();
        assert_eq!(&got, w);
        assert!(got.terminal, "every session ended PASS or FAIL: {got:?}");
    }
    // The one shared consumer has delivered the whole stream.
    let info = consumer_info(&js, &cfg).await;
    assert_eq!(info.delivered.stream_sequence, 3000);
    a.stop().await.unwrap();
    b.stop().await.unwrap();
}

#[tokio::test]
async fn a_nats_restart_during_projection_loses_nothing() {
    let mut nats = NatsServer::start();
    let mut cfg = test_config(&nats.url());
    // First store the events with the view off, so there is a backlog to project.
    cfg.sessions.enabled = false;
    let ingest = Bridge::start(cfg.clone()).await;
    let sender = Sender::new(&ingest);
    let bodies: Vec<(String, Vec<u8>)> = (0..1500)
        .map(|n| {
            let status = ["PENDING", "PASS", "FAIL"][n % 3];
            (format!("msg_{n}"), body_with(status, &new_request_id()))
        })
        .collect();
    let codes = futures::stream::iter(bodies.iter())
        .map(|(m, b)| async { sender.send(m, b).await.status().as_u16() })
        .buffer_unordered(32)
        .collect::<Vec<u16>>()
        .await;
    assert!(codes.iter().all(|c| *c == 202));
    ingest.stop().await.unwrap();

    cfg.sessions.enabled = true;
    let bridge = Bridge::start(cfg.clone()).await;
    // Kill NATS as soon as the projector has written something.
    let js1 = js(&nats).await;
    let written = eventually_some(
        "the projector's first write",
        Duration::from_secs(20),
        async || {
            let mut s = js1
                .get_stream(format!("KV_{}", cfg.sessions.bucket))
                .await
                .ok()?;
            let n = s.info().await.map(|i| i.state.messages).unwrap_or(0);
            (n > 0).then_some(n)
        },
    )
    .await;
    nats.kill();
    eprintln!("NATS killed with {written} of 1500 keys written");
    nats.restart();
    bridge.wait_ready().await;
    let js2 = js(&nats).await;
    wait_projected(&js2, &cfg, Duration::from_secs(60)).await;
    let want = expected_from_stream(states_in_stream(&js2, &cfg).await);
    assert_eq!(want.len(), 1500);
    let store = js2.get_key_value(&cfg.sessions.bucket).await.unwrap();
    assert_eq!(bucket_keys(&store).await.len(), 1500);
    for (id, w) in &want {
        assert_eq!(&entry(&store, id).await.unwrap().0, w);
    }
    bridge.stop().await.unwrap();
}

#[tokio::test]
async fn a_missing_bucket_with_create_false_keeps_the_bridge_unready_until_it_exists() {
    let nats = NatsServer::start();
    let cfg = without_create(&nats);
    let bridge = Bridge::start_unready(cfg.clone()).await;
    // Unready, and it says which part is missing (the stream itself is created).
    let body = eventually_ok(
        "/readyz to report NATS connected and the stream ready",
        Duration::from_secs(10),
        async || {
            let (status, body) = readyz(&bridge.base()).await.expect("/readyz answers");
            assert_eq!(status, 503);
            assert!(body.is_object(), "/readyz answers JSON");
            if body["stream_ready"] == true && body["nats_connected"] == true {
                Ok(body)
            } else {
                Err(body)
            }
        },
    )
    .await;
    assert_eq!(body["sessions_ready"], false);
    // An operator creates the bucket: the bridge becomes ready by itself.
    let js = js(&nats).await;
    js.create_stream(vx_bridge::sessions::desired_bucket(
        &cfg.sessions,
        &cfg.nats.stream,
    ))
    .await
    .unwrap();
    bridge.wait_ready().await;
    // And it projects into it.
    let sender = Sender::new(&bridge);
    let id = new_request_id();
    assert_eq!(
        sender.send("msg_1", &body_with("FAIL", &id)).await.status(),
        202
    );
    wait_projected(&js, &cfg, Duration::from_secs(20)).await;
    let store = js.get_key_value(&cfg.sessions.bucket).await.unwrap();
    assert_eq!(entry(&store, &id).await.unwrap().0.status, "FAIL");
    bridge.stop().await.unwrap();
}

#[tokio::test]
async fn ensure_bucket_with_create_false_names_the_missing_bucket() {
    let nats = NatsServer::start();
    let cfg = without_create(&nats);
    let err = vx_bridge::sessions::ensure_bucket(&js(&nats).await, &cfg.sessions, &cfg.nats.stream)
        .await
        .unwrap_err();
    assert_eq!(
        err.to_string(),
        format!(
            "session bucket {} does not exist (sessions.create = false)",
            cfg.sessions.bucket
        )
    );
}

/// The mock VX API (bearer `tok`), counting its session lookups and answering every one
/// `IN PROGRESS`.
async fn counting_vx_api() -> VxApi {
    let vx = VxApi::serve(VxApi::seeded("tok")).await;
    vx.set_default(Step::Status("IN PROGRESS"));
    vx
}

#[tokio::test]
async fn status_and_result_of_a_terminal_session_come_from_the_view_without_a_vx_call_and_fall_back_to_vx(
) {
    let nats = NatsServer::start();
    let vx = counting_vx_api().await;
    let mut cfg = test_config(&nats.url());
    cfg.status.enabled = true;
    cfg.upstream.base_url = vx.url().to_owned();
    cfg.upstream.token = Some(vx_bridge::secret::Secret::new("tok"));
    let bridge = Bridge::start(cfg.clone()).await;
    let sender = Sender::new(&bridge);
    let (done, running) = (new_request_id(), new_request_id());
    for (msg, status, id) in [
        ("msg_1", "PENDING", &done),
        ("msg_2", "PASS", &done),
        ("msg_3", "PENDING", &running),
    ] {
        assert_eq!(sender.send(msg, &body_with(status, id)).await.status(), 202);
    }
    let js = js(&nats).await;
    wait_projected(&js, &cfg, Duration::from_secs(20)).await;

    let nc = async_nats::connect(nats.url()).await.unwrap();
    let subject = format!("{}.status.get", cfg.nats.subject_prefix);
    let schema: Value =
        serde_json::from_str(include_str!("../../schemas/status-reply.schema.json")).unwrap();
    let schema = jsonschema::draft202012::new(&schema).unwrap();
    let ask = |id: String| {
        let (nc, subject) = (nc.clone(), subject.clone());
        async move {
            let body = serde_json::json!({"request_id": id}).to_string();
            let reply = nc.request(subject, body.into()).await.unwrap();
            assert!(reply
                .headers
                .is_none_or(|h| h.get("Nats-Service-Error-Code").is_none()));
            serde_json::from_slice::<Value>(&reply.payload).unwrap()
        }
    };

    // Terminal in the view: answered from it, VX never asked.
    let v = ask(done.clone()).await;
    assert!(schema.is_valid(&v), "{v}");
    assert_eq!(v["source"], "events");
    assert_eq!(v["current_status"], "COMPLETED");
    assert_eq!(v["result_status"], "PASS");
    let store = js.get_key_value(&cfg.sessions.bucket).await.unwrap();
    assert_eq!(
        v["checked_at"],
        entry(&store, &done).await.unwrap().0.updated_at
    );
    assert_eq!(vx.session_calls(), 0);
    // And its result is the PASS event's `result`, byte for byte as VX sent it.
    let reply = nc
        .request(
            format!("{}.result.get", cfg.nats.subject_prefix),
            serde_json::json!({"request_id": done}).to_string().into(),
        )
        .await
        .unwrap();
    assert!(reply
        .headers
        .is_none_or(|h| h.get("Nats-Service-Error-Code").is_none()));
    assert_eq!(reply.payload.as_ref(), body_with("PASS", &done).as_slice());
    assert_eq!(vx.session_calls(), 0);

    // Not terminal: VX is asked.
    let v = ask(running.clone()).await;
    assert!(schema.is_valid(&v), "{v}");
    assert_eq!(v["source"], "upstream");
    assert_eq!(v["current_status"], "IN PROGRESS");
    assert!(v.get("result_status").is_none(), "{v}");
    assert_eq!(vx.session_calls(), 1);
    // VX's answer went into the view (`source: lookup`), on top of the PENDING event: same
    // event and sequence, VX's finer current_status, checked_at as updated_at.
    let pending = states_in_stream(&js, &cfg)
        .await
        .into_iter()
        .find(|s| s.request_id == running)
        .unwrap();
    let (looked_up, _) = entry(&store, &running).await.unwrap();
    assert_eq!(looked_up.source, Source::Lookup);
    assert_eq!(looked_up.current_status.as_deref(), Some("IN PROGRESS"));
    assert_eq!(looked_up.stream_seq, pending.stream_seq);
    assert_eq!(looked_up.event_id, pending.event_id);
    assert_eq!(looked_up.status, "PENDING");
    assert!(!looked_up.terminal);
    assert_eq!(v["checked_at"], looked_up.updated_at);
    // A session no event has reached: a lookup state without an event pointer.
    let unseen = new_request_id();
    let v = ask(unseen.clone()).await;
    assert_eq!(v["current_status"], "IN PROGRESS");
    assert_eq!(vx.session_calls(), 2);
    let (s, _) = entry(&store, &unseen).await.unwrap();
    assert_eq!(
        (s.source, s.stream_seq, s.event_id),
        (Source::Lookup, None, None)
    );
    // The session's PASS then arrives: the event outranks the lookup, and the view is terminal.
    assert_eq!(
        sender
            .send("msg_4", &body_with("PASS", &running))
            .await
            .status(),
        202
    );
    wait_projected(&js, &cfg, Duration::from_secs(20)).await;
    let (s, _) = entry(&store, &running).await.unwrap();
    assert_eq!((s.source, s.terminal), (Source::Webhook, true));
    let v = ask(running.clone()).await;
    assert_eq!(
        (&v["source"], &v["result_status"]),
        (&Value::from("events"), &Value::from("PASS"))
    );
    assert_eq!(vx.session_calls(), 2);

    // The view gone: VX answers, never an error.
    bridge.stop().await.unwrap();
    js.delete_stream(format!("KV_{}", cfg.sessions.bucket))
        .await
        .unwrap();
    let mut reader_cfg = cfg.clone();
    reader_cfg.webhook.enabled = false;
    // Status only, view on, bucket missing (create = false, so it stays missing).
    reader_cfg.sessions.create = false;
    let bridge = Bridge::start(reader_cfg).await;
    let v = ask(done.clone()).await;
    assert!(schema.is_valid(&v), "{v}");
    assert_eq!(v["source"], "upstream");
    assert_eq!(vx.session_calls(), 3);
    bridge.stop().await.unwrap();
}

/// The `status.get` reply for `id` on `subject`, as JSON.
async fn status_get(nc: &async_nats::Client, subject: &str, id: &str) -> Value {
    let body = serde_json::json!({ "request_id": id }).to_string();
    let reply = nc.request(subject.to_owned(), body.into()).await.unwrap();
    serde_json::from_slice(&reply.payload).unwrap()
}

#[tokio::test]
async fn a_status_lookup_writes_the_view_once_then_counts_the_same_answer_unchanged() {
    let nats = NatsServer::start();
    let vx = counting_vx_api().await;
    let cfg = test_config(&nats.url());
    // Its own process: the metrics are the bridge's alone, not other tests'.
    let env = [
        ("VXB_STATUS__ENABLED", "true".to_owned()),
        ("VXB_UPSTREAM__BASE_URL", vx.url().to_owned()),
        ("VXB_UPSTREAM__TOKEN", "tok".to_owned()),
        // Every lookup asks VX (a cached answer is not written again).
        ("VXB_STATUS__CACHE_TTL", "1ms".to_owned()),
    ];
    let bridge = BinaryBridge::spawn(&cfg, &env, Stdio::null());
    bridge.wait_ready().await;
    let base = bridge.base();
    let nc = async_nats::connect(nats.url()).await.unwrap();
    let subject = format!("{}.status.get", cfg.nats.subject_prefix);
    let id = new_request_id();
    let ask = async || {
        let v = status_get(&nc, &subject, &id).await;
        assert_eq!(v["current_status"], "IN PROGRESS", "{v}");
    };
    let writes = "vx_bridge_sessions_lookup_writes_total";
    const WAIT: Duration = Duration::from_secs(10);
    // A session the view does not hold: VX's answer is written.
    ask().await;
    wait_for_metric(&base, writes, &[("outcome", "applied")], 1.0, WAIT).await;
    // The same answer again: nothing to write.
    ask().await;
    wait_for_metric(&base, writes, &[("outcome", "unchanged")], 1.0, WAIT).await;
    let text = scrape(&base).await;
    let v = |outcome: &str| metric_value(&text, writes, &[("outcome", outcome)]);
    assert_eq!(
        [v("applied"), v("unchanged"), v("stale"), v("failed")],
        [Some(1.0), Some(1.0), Some(0.0), Some(0.0)],
        "{text}"
    );
    assert_eq!(vx.session_calls(), 2);
    let store = js(&nats)
        .await
        .get_key_value(&cfg.sessions.bucket)
        .await
        .unwrap();
    let (state, revision) = entry(&store, &id).await.unwrap();
    assert_eq!(state.source, Source::Lookup);
    assert_eq!(state.current_status.as_deref(), Some("IN PROGRESS"));
    assert_eq!(revision, 1, "written once");
    drop(bridge);
}

/// A session another writer (here the test, as another replica would) makes terminal in the
/// bucket is answered PASS from the view within the watch's lag, although this bridge holds
/// VX's IN PROGRESS answer in its cache (kept an hour, so only the watch can tell it).
#[tokio::test]
async fn a_session_made_terminal_by_another_writer_is_answered_pass_though_in_progress_is_cached() {
    let nats = NatsServer::start();
    let vx = counting_vx_api().await;
    let mut cfg = test_config(&nats.url());
    cfg.status.enabled = true;
    cfg.status.cache_ttl = Duration::from_secs(3600);
    cfg.upstream.base_url = vx.url().to_owned();
    cfg.upstream.token = Some(vx_bridge::secret::Secret::new("tok"));
    let bridge = Bridge::start(cfg.clone()).await;
    let nc = async_nats::connect(nats.url()).await.unwrap();
    let subject = format!("{}.status.get", cfg.nats.subject_prefix);
    let id = new_request_id();
    let ask = async || status_get(&nc, &subject, &id).await;
    let js = js(&nats).await;
    let store = js.get_key_value(&cfg.sessions.bucket).await.unwrap();
    // The bridge's watch of the bucket is running (its consumer is there), so the answer
    // cached below is trusted without a view read: only the watch can tell of the PASS.
    let kv_stream = format!("KV_{}", cfg.sessions.bucket);
    vx_testkit::eventually(
        "the bucket's watch runs",
        Duration::from_secs(5),
        async || {
            let mut s = js.get_stream(&kv_stream).await.unwrap();
            s.info().await.unwrap().state.consumer_count >= 1
        },
    )
    .await;
    // VX's answer, written into the view, then answered from the cache.
    let v = ask().await;
    assert_eq!(
        (&v["source"], &v["current_status"]),
        (&Value::from("upstream"), &Value::from("IN PROGRESS")),
        "{v}"
    );
    let v = ask().await;
    assert_eq!(
        (&v["source"], &v["current_status"]),
        (&Value::from("cache"), &Value::from("IN PROGRESS")),
        "{v}"
    );
    assert_eq!(vx.session_calls(), 1);
    let (mut state, revision) = entry(&store, &id).await.unwrap();
    assert!(!state.terminal);

    // Another writer makes it terminal: PASS from the view, VX not asked again.
    state.status = "PASS".into();
    state.current_status = None;
    state.terminal = true;
    state.source = Source::Webhook;
    store
        .update(&id, serde_json::to_vec(&state).unwrap().into(), revision)
        .await
        .unwrap();
    let mut last = Value::Null;
    vx_testkit::eventually(
        "status.get answers PASS from the view",
        Duration::from_secs(5),
        async || {
            last = ask().await;
            last["source"] == "events"
        },
    )
    .await;
    assert_eq!(last["current_status"], "COMPLETED", "{last}");
    assert_eq!(last["result_status"], "PASS", "{last}");
    assert_eq!(last["checked_at"], Value::from(state.updated_at.clone()));
    assert_eq!(vx.session_calls(), 1);
    bridge.stop().await.unwrap();
}

/// The status service's reader learns of a terminal write from the bucket's watch alone (no
/// read of the key), ignores non-terminal ones, and says since when it watches.
#[tokio::test]
async fn the_view_readers_watch_learns_terminal_writes_without_reading_the_key() {
    use vx_bridge::sessions::{TerminalStates, ViewReader};
    let nats = NatsServer::start();
    let cfg = test_config(&nats.url());
    let js = js(&nats).await;
    let store = vx_bridge::sessions::ensure_bucket(&js, &cfg.sessions, &cfg.nats.stream)
        .await
        .unwrap();
    let client = async_nats::connect(nats.url()).await.unwrap();
    let terminal = TerminalStates::new(Duration::from_secs(60), 100);
    let reader = ViewReader::new(
        client,
        &cfg.sessions.bucket,
        &cfg.nats.stream.name,
        terminal,
    )
    .watching();
    vx_testkit::eventually("the watch runs", Duration::from_secs(5), async || {
        reader.watched_since().is_some()
    })
    .await;
    let (running, done) = (new_request_id(), new_request_id());
    let state = |id: &str, status: &str, terminal: bool| SessionState {
        schema_version: 1,
        request_id: id.to_owned(),
        status: status.to_owned(),
        current_status: None,
        terminal,
        event_id: None,
        event_type: None,
        stream_seq: None,
        source: Source::Webhook,
        updated_at: "2026-01-01T00:00:00Z".to_owned(),
        reference: None,
        stops: 0,
    };
    for s in [
        state(&running, "PENDING", false),
        state(&done, "FAIL", true),
    ] {
        store
            .put(&s.request_id, serde_json::to_vec(&s).unwrap().into())
            .await
            .unwrap();
    }
    vx_testkit::eventually(
        "the terminal write is known",
        Duration::from_secs(5),
        async || reader.terminal_cached(&done).await.is_some(),
    )
    .await;
    assert_eq!(reader.terminal_cached(&done).await.unwrap().status, "FAIL");
    // Written before `done`, so delivered before it: not terminal, not cached.
    assert!(reader.terminal_cached(&running).await.is_none());
}

/// Runs `vx-bridge <args>` against `cfg`'s NATS, prefix, stream and bucket; (exit code, stdout,
/// stderr).
async fn cli(cfg: &Config, args: &[&str]) -> (Option<i32>, String, String) {
    let mut cmd = std::process::Command::new(vx_testkit::vx_bridge_bin());
    vx_testkit::clean_env(&mut cmd)
        .args(args)
        .env("VXB_NATS__URL", &cfg.nats.url)
        .env("VXB_NATS__SUBJECT_PREFIX", &cfg.nats.subject_prefix)
        .env("VXB_NATS__STREAM__NAME", &cfg.nats.stream.name)
        .env("VXB_SESSIONS__BUCKET", &cfg.sessions.bucket);
    let out = tokio::task::spawn_blocking(move || cmd.output().unwrap())
        .await
        .unwrap();
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// Every key of `bucket` with its value.
async fn bucket_values(js: &jetstream::Context, bucket: &str) -> HashMap<String, SessionState> {
    let store = js.get_key_value(bucket).await.unwrap();
    let mut out = HashMap::new();
    for k in bucket_keys(&store).await {
        let (s, _) = entry(&store, &k).await.unwrap();
        out.insert(k, s);
    }
    out
}

#[tokio::test]
async fn sessions_rebuild_writes_what_the_live_projection_wrote_even_while_events_arrive() {
    let nats = NatsServer::start();
    let cfg = test_config(&nats.url());
    let bridge = Bridge::start(cfg.clone()).await;
    let sender = Sender::new(&bridge);
    let mut events = Vec::new();
    for n in 0..100 {
        let id = new_request_id();
        let statuses: &[&str] = match n % 4 {
            0 => &["PENDING", "PENDING", "PASS", "PENDING"],
            1 => &["PENDING", "FAIL"],
            2 => &["PENDING", "PENDING"],
            _ => &["PASS"],
        };
        for (k, status) in statuses.iter().enumerate() {
            events.push((format!("msg_{n}_{k}"), body_with(status, &id)));
        }
    }
    events.shuffle(&mut rand::rng());
    for (msg, body) in &events {
        assert_eq!(sender.send(msg, body).await.status(), 202);
    }
    // A rejected body in the stream is skipped by both.
    assert_eq!(sender.send("msg_bad", b"{not json").await.status(), 400);
    let js = js(&nats).await;
    wait_projected(&js, &cfg, Duration::from_secs(60)).await;
    let live = bucket_values(&js, &cfg.sessions.bucket).await;
    assert_eq!(live.len(), 100);

    // Into an empty bucket, by the CLI: the same keys and values, byte for byte as parsed.
    let other = format!("{}_REBUILT", cfg.sessions.bucket);
    let (code, stdout, stderr) =
        cli(&cfg, &["sessions", "rebuild", "--into", &other, "--json"]).await;
    assert_eq!(code, Some(0), "{stderr}");
    let report: Value = serde_json::from_str(stdout.trim()).unwrap();
    assert_eq!(report["bucket"], other.as_str());
    assert_eq!(report["events"], events.len());
    assert_eq!(report["keys_written"], 100);
    assert_eq!(report["skipped"], 1, "the rejected body");
    assert_eq!(bucket_values(&js, &other).await, live);

    // In place, while the bridge projects new events: the view ends where the stream says.
    let more: Vec<(String, Vec<u8>)> = (0..50)
        .map(|n| {
            (
                format!("msg_more_{n}"),
                body_with("PENDING", &new_request_id()),
            )
        })
        .collect();
    let rebuild = cli(&cfg, &["sessions", "rebuild"]);
    let send = async {
        for (msg, body) in &more {
            assert_eq!(sender.send(msg, body).await.status(), 202);
        }
    };
    let ((code, stdout, stderr), ()) = tokio::join!(rebuild, send);
    assert_eq!(code, Some(0), "{stderr}");
    assert!(stdout.contains("keys written"), "{stdout}");
    wait_projected(&js, &cfg, Duration::from_secs(60)).await;
    let want = expected_from_stream(states_in_stream(&js, &cfg).await);
    assert_eq!(want.len(), 150);
    assert_eq!(bucket_values(&js, &cfg.sessions.bucket).await, want);

    // `sessions get`: the stored value; nothing for an unknown session; a bad id refused.
    let (id, state) = want.iter().next().unwrap();
    let (code, stdout, stderr) = cli(&cfg, &["sessions", "get", &id.to_ascii_uppercase()]).await;
    assert_eq!(code, Some(0), "{stderr}");
    let got: SessionState = serde_json::from_str(stdout.trim()).unwrap();
    assert_eq!(&got, state);
    let (code, _, stderr) = cli(&cfg, &["sessions", "get", &new_request_id()]).await;
    assert_eq!(code, Some(1));
    assert!(stderr.contains("no state for this session"), "{stderr}");
    let (code, _, _) = cli(&cfg, &["sessions", "get", "jane@example.com"]).await;
    assert_eq!(code, Some(64));
    bridge.stop().await.unwrap();
}

#[tokio::test]
async fn a_projector_only_bridge_projects_what_an_ingress_without_the_view_stores() {
    let nats = NatsServer::start();
    let mut cfg = test_config(&nats.url());
    cfg.sessions.create = false;
    let mut ingress_cfg = cfg.clone();
    ingress_cfg.sessions.enabled = false;
    let ingress = Bridge::start(ingress_cfg).await;
    let sender = Sender::new(&ingress);
    let id = new_request_id();
    assert_eq!(
        sender.send("msg_1", &body_with("PASS", &id)).await.status(),
        202
    );
    // The ingress stored the event and projects nothing.
    let js = js(&nats).await;
    let stream = js.get_stream(&cfg.nats.stream.name).await.unwrap();
    assert!(stream.consumer_info(CONSUMER).await.is_err());

    // The projector: no webhook endpoint, no status service; valid, and unready while its
    // bucket is missing (the view is all it does, so its readiness is the view's).
    let mut projector_cfg = cfg.clone();
    projector_cfg.webhook.enabled = false;
    projector_cfg.status.enabled = false;
    projector_cfg.validate().unwrap();
    let projector = Bridge::start_unready(projector_cfg).await;
    eventually_ok(
        "the projector's /readyz to report NATS connected",
        Duration::from_secs(10),
        async || {
            let (_, body) = readyz(&projector.base()).await.expect("/readyz answers");
            assert!(body.is_object(), "/readyz answers JSON");
            if body["nats_connected"] == true {
                assert_eq!(body["sessions_ready"], false, "{body}");
                Ok(())
            } else {
                Err(body)
            }
        },
    )
    .await;
    let (status, _) = readyz(&projector.base()).await.expect("/readyz answers");
    assert_eq!(status, 503);
    js.create_stream(vx_bridge::sessions::desired_bucket(
        &cfg.sessions,
        &cfg.nats.stream,
    ))
    .await
    .unwrap();
    projector.wait_ready().await;
    wait_projected(&js, &cfg, Duration::from_secs(20)).await;
    let store = js.get_key_value(&cfg.sessions.bucket).await.unwrap();
    let (state, _) = entry(&store, &id).await.expect("projected");
    assert_eq!(state.status, "PASS");
    assert_eq!(state.source, Source::Webhook);
    projector.stop().await.unwrap();
    ingress.stop().await.unwrap();
}

/// An event as stored before `vx-view` existed: the bridge's own message without that header.
fn event_without_view_header(
    cfg: &Config,
    status: &str,
    request_id: &str,
) -> (String, async_nats::HeaderMap, bytes::Bytes) {
    let raw = body_with(status, request_id);
    let body: Value = serde_json::from_slice(&raw).unwrap();
    let msg = vx_bridge::event::build_event(
        &vx_bridge::nats::Subjects::new(&cfg.nats.subject_prefix),
        vx_bridge::event::Origin::Webhook { delivery_id: None },
        &raw,
        &body,
        "2026-12-07T12:00:00Z",
        &vx_bridge::telemetry::TraceContext::continue_or_start(None, None),
    );
    let mut headers = async_nats::HeaderMap::new();
    for (k, v) in &msg.headers {
        if *k != vx_bridge::event::VIEW_HEADER {
            headers.insert(*k, v.as_str());
        }
    }
    (msg.subject, headers, msg.payload)
}

#[tokio::test]
async fn events_without_the_view_header_and_a_consumer_that_delivers_bodies_are_projected_all_the_same(
) {
    let nats = NatsServer::start();
    let cfg = test_config(&nats.url());
    // The stream and the consumer as a release before the header made them: the consumer
    // delivers whole messages.
    let bridge = Bridge::start(cfg.clone()).await;
    bridge.stop().await.unwrap();
    let js = js(&nats).await;
    let stream = js.get_stream(&cfg.nats.stream.name).await.unwrap();
    stream.delete_consumer(CONSUMER).await.unwrap();
    let old = stream
        .create_consumer(jetstream::consumer::pull::Config {
            durable_name: Some(CONSUMER.into()),
            ack_policy: jetstream::consumer::AckPolicy::Explicit,
            ack_wait: Duration::from_secs(10),
            max_ack_pending: 256,
            ..Default::default()
        })
        .await
        .unwrap();
    assert!(!old.cached_info().config.headers_only);
    // Events stored without the header: a PENDING then a PASS of one session, a PENDING of another.
    let (a, b) = (new_request_id(), new_request_id());
    for (status, id) in [("PENDING", &a), ("PASS", &a), ("PENDING", &b)] {
        let (subject, headers, payload) = event_without_view_header(&cfg, status, id);
        js.publish_with_headers(subject, headers, payload)
            .await
            .unwrap()
            .await
            .unwrap();
    }

    let bridge = Bridge::start(cfg.clone()).await;
    // A webhook whose reference is too long for the header: its body decides.
    let c = new_request_id();
    let mut long: Value = serde_json::from_slice(&body_with("FAIL", &c)).unwrap();
    long["reference"] = Value::from("r".repeat(2000));
    let sender = Sender::new(&bridge);
    let long = serde_json::to_vec(&long).unwrap();
    assert_eq!(sender.send("msg_long", &long).await.status(), 202);
    // And an ordinary one, from its headers.
    let d = new_request_id();
    assert_eq!(
        sender.send("msg_d", &body_with("PASS", &d)).await.status(),
        202
    );
    wait_projected(&js, &cfg, Duration::from_secs(20)).await;

    let info = consumer_info(&js, &cfg).await;
    assert!(
        info.config.headers_only,
        "the consumer was updated to deliver headers only"
    );
    let want = expected_from_stream(states_in_stream(&js, &cfg).await);
    assert_eq!(want.len(), 4);
    let got = bucket_values(&js, &cfg.sessions.bucket).await;
    assert_eq!(got, want);
    assert_eq!(got[&a.to_ascii_lowercase()].status, "PASS");
    assert_eq!(
        got[&c.to_ascii_lowercase()]
            .reference
            .as_deref()
            .map(str::len),
        Some(2000)
    );
    bridge.stop().await.unwrap();
}
