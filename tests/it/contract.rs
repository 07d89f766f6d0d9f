//! The contract documents match the code: the webhook's status codes and problem types in
//! `schemas/openapi.yaml` are exactly those the ingress can answer, and the subjects in
//! `schemas/asyncapi.yaml` are exactly those the bridge uses.

use std::collections::BTreeSet;

use serde_json::Value;
use vx_bridge::problem::ProblemKind;

/// The strings of a JSON array (an `enum`), as a set.
fn strings(v: &Value) -> BTreeSet<String> {
    v.as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap().to_owned())
        .collect()
}

fn yaml(path: &str) -> Value {
    let text = std::fs::read_to_string(format!("{}/{path}", env!("CARGO_MANIFEST_DIR"))).unwrap();
    serde_norway::from_str(&text).unwrap()
}

#[test]
fn openapi_lists_exactly_the_webhook_answers_the_code_can_give() {
    let doc = yaml("schemas/openapi.yaml");
    let responses = doc["paths"]["/webhooks/vx"]["post"]["responses"]
        .as_object()
        .unwrap();
    let documented: BTreeSet<u16> = responses.keys().map(|k| k.parse().unwrap()).collect();
    let mut used: BTreeSet<u16> = ProblemKind::ALL
        .iter()
        .filter(|k| !k.is_routing())
        .map(|k| k.status().as_u16())
        .collect();
    used.insert(202);
    assert_eq!(documented, used);

    let types: BTreeSet<String> =
        strings(&doc["components"]["schemas"]["Problem"]["properties"]["type"]["enum"]);
    let used: BTreeSet<String> = ProblemKind::ALL.iter().map(|k| k.type_uri()).collect();
    assert_eq!(types, used);
    // Retryable answers document Retry-After (408 excepted: a new attempt needs no wait).
    // The router's own refusals are documented once, for every path.
    let shared = doc["components"]["responses"].as_object().unwrap();
    for (k, name) in [
        (ProblemKind::NotFound, "NotFound"),
        (ProblemKind::MethodNotAllowed, "MethodNotAllowed"),
    ] {
        assert!(k.is_routing());
        assert!(
            shared[name]["content"]["application/problem+json"].is_object(),
            "{name}"
        );
    }
    assert!(shared["MethodNotAllowed"]["headers"]["Allow"].is_object());
    for k in ProblemKind::ALL.into_iter().filter(|k| !k.is_routing()) {
        let r = &responses[k.status().as_str()];
        if k.retryable() && k != ProblemKind::BodyTimeout {
            assert!(r["headers"]["Retry-After"].is_object(), "{k:?}");
        }
    }
}

#[test]
fn the_default_webhook_path_is_the_documented_one() {
    let doc = yaml("schemas/openapi.yaml");
    let path = vx_bridge::config::Config::default().http.webhook_path;
    assert!(doc["paths"][path.as_str()]["post"].is_object());
}

#[test]
fn asyncapi_lists_exactly_the_subjects_the_bridge_uses() {
    let doc = yaml("schemas/asyncapi.yaml");
    let prefix = vx_bridge::config::Config::default().nats.subject_prefix;
    assert_eq!(
        doc["components"]["parameters"]["prefix"]["default"],
        prefix.as_str()
    );
    let documented: BTreeSet<String> = doc["channels"]
        .as_object()
        .unwrap()
        .values()
        .filter_map(|c| c["address"].as_str())
        .map(|a| a.replace("{prefix}", &prefix))
        .collect();
    let bucket = vx_bridge::config::Config::default().sessions.bucket;
    assert_eq!(
        doc["components"]["parameters"]["bucket"]["default"],
        bucket.as_str()
    );
    let keys_bucket = vx_bridge::config::Config::default().keys.bucket;
    assert_eq!(
        doc["components"]["parameters"]["keysBucket"]["default"],
        keys_bucket.as_str()
    );
    let documented: BTreeSet<String> = documented
        .into_iter()
        .map(|a| {
            a.replace("{bucket}", &bucket)
                .replace("{keysBucket}", &keys_bucket)
        })
        .collect();
    let subjects = vx_bridge::nats::Subjects::new(&prefix);
    // The session view's keys: `$KV.<bucket>.<request_id>`, the subjects of its stream.
    let bucket_stream = vx_bridge::sessions::desired_bucket(
        &vx_bridge::config::SessionsConfig::default(),
        &vx_bridge::config::StreamConfig::default(),
    );
    let used: BTreeSet<String> = subjects
        .stream_subjects()
        .into_iter()
        .chain(subjects.request_subjects())
        .chain(
            bucket_stream
                .subjects
                .iter()
                .map(|s| s.replace('>', "{request_id}")),
        )
        .chain([format!("$KV.{keys_bucket}.{{request_id}}")])
        .collect();
    assert_eq!(documented, used);
}

#[test]
fn asyncapi_lists_the_ce_types_and_service_error_codes_the_code_uses() {
    use vx_bridge::event::{EventKind, CE_SOURCE, CE_TYPE_PREFIX};
    let doc = yaml("schemas/asyncapi.yaml");
    let msgs = &doc["components"]["messages"];
    let types: BTreeSet<String> =
        strings(&msgs["verificationEvent"]["headers"]["properties"]["ce-type"]["enum"]);
    let used: BTreeSet<String> = EventKind::ALL
        .iter()
        .map(|k| format!("{CE_TYPE_PREFIX}{}", k.suffix()))
        .collect();
    assert_eq!(types, used);
    assert_eq!(
        msgs["verificationEvent"]["headers"]["properties"]["ce-source"]["const"],
        CE_SOURCE
    );
    let codes: BTreeSet<String> =
        strings(&msgs["serviceError"]["headers"]["properties"]["Nats-Service-Error-Code"]["enum"]);
    let schema: Value =
        serde_json::from_str(include_str!("../../schemas/service-error.schema.json")).unwrap();
    let schema_codes: BTreeSet<String> = schema["properties"]["error"]["properties"]["code"]
        ["enum"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.to_string())
        .collect();
    assert_eq!(codes, schema_codes);
}
