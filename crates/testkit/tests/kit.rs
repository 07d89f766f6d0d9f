//! The kit's own checks: a cluster forms and holds a replicated stream; a killed server comes
//! back on its port and store; the mock VX API counts and plays its script.

use std::time::Duration;

use async_nats::jetstream;
use vx_testkit::{eventually, NatsCluster, NatsServer, Step, VxApi};

#[tokio::test]
async fn a_cluster_of_three_holds_a_stream_with_three_replicas() {
    let cluster = NatsCluster::start(3);
    assert_eq!(cluster.nodes.len(), 3);
    let addrs: Vec<async_nats::ServerAddr> = cluster
        .urls()
        .split(',')
        .map(|u| u.parse().unwrap())
        .collect();
    let js = jetstream::new(async_nats::connect(addrs).await.unwrap());
    let config = jetstream::stream::Config {
        name: "KIT".into(),
        subjects: vec!["kit.>".into()],
        num_replicas: 3,
        ..Default::default()
    };
    // Until the meta leader is elected, creating a stream fails: retry.
    eventually("a replicated stream", Duration::from_secs(30), async || {
        js.create_stream(config.clone()).await.is_ok()
    })
    .await;
    let ack = js
        .publish("kit.a", "x".into())
        .await
        .unwrap()
        .await
        .unwrap();
    assert_eq!(ack.sequence, 1);
    let info = js
        .get_stream("KIT")
        .await
        .unwrap()
        .info()
        .await
        .unwrap()
        .clone();
    let cluster_info = info.cluster.expect("cluster info");
    assert_eq!(cluster_info.replicas.len(), 2, "{cluster_info:?}");
}

#[tokio::test]
async fn a_killed_server_restarts_on_its_port_with_its_store() {
    let mut nats = NatsServer::start();
    let js = jetstream::new(async_nats::connect(nats.url()).await.unwrap());
    js.create_stream(jetstream::stream::Config {
        name: "KEEP".into(),
        subjects: vec!["keep".into()],
        ..Default::default()
    })
    .await
    .unwrap();
    js.publish("keep", "x".into()).await.unwrap().await.unwrap();
    nats.restart();
    let js = jetstream::new(async_nats::connect(nats.url()).await.unwrap());
    let mut stream = js.get_stream("KEEP").await.unwrap();
    assert_eq!(stream.info().await.unwrap().state.messages, 1);
}

#[tokio::test]
async fn the_mock_vx_plays_its_script_then_the_default_and_counts_calls() {
    let vx = VxApi::serve(VxApi::seeded("kit-token")).await;
    vx.script([Step::Code(503), Step::Result("FAIL")]);
    vx.set_default(Step::Status("PENDING"));
    let http = reqwest::Client::new();
    let get = async |id: &str| {
        let r = http
            .get(format!("{}/api/session/result/{id}", vx.url()))
            .bearer_auth("kit-token")
            .send()
            .await
            .unwrap();
        (r.status().as_u16(), r.text().await.unwrap())
    };
    let id = vx_testkit::new_request_id();
    assert_eq!(get(&id).await.0, 503);
    let (code, body) = get(&id).await;
    assert_eq!(code, 200);
    let v: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(
        (v["status"].as_str(), v["request_id"].as_str()),
        (Some("FAIL"), Some(id.as_str()))
    );
    assert_eq!(get(&id).await.1, r#"{"current_status":"PENDING"}"#);
    assert_eq!(vx.session_calls(), 3);
    assert_eq!(vx.bearers(), ["kit-token"; 3]);
    assert_eq!(vx.token_calls(), 0);
}
