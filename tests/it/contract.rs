//! The contract documents match the code: the webhook's status codes and problem types in
//! `schemas/openapi.yaml` are exactly those the ingress can answer, and the subjects in
//! `schemas/asyncapi.yaml` are exactly those the bridge uses.

use std::collections::BTreeSet;

use serde_json::Value;
use vx_bridge::problem::ProblemKind;

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
        .map(|k| k.status().as_u16())
        .collect();
    used.insert(202);
    assert_eq!(documented, used);

    let types: BTreeSet<String> = doc["components"]["schemas"]["Problem"]["properties"]["type"]
        ["enum"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap().to_owned())
        .collect();
    let used: BTreeSet<String> = ProblemKind::ALL.iter().map(|k| k.type_uri()).collect();
    assert_eq!(types, used);
    // Retryable answers document Retry-After (408 excepted: a new attempt needs no wait).
    for k in ProblemKind::ALL {
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
