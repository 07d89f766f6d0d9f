//! The fixtures: the seed webhook body (a VX result that passed) and the ids and secrets the
//! tests use. Pure data; no I/O. Every `whsec_` secret of the tests is here.

use serde_json::{json, Value};

/// The seed webhook body, `tests/fixtures/seed-pass.json` (status `PASS`).
pub const SEED: &str = include_str!("../../../tests/fixtures/seed-pass.json");

/// The `request_id` of [`SEED`].
pub const SEED_ID: &str = "4ed2ec66-9471-415d-99ce-7bd1742fc2b8";

/// The HMAC secret (Standard Webhooks) the test bridges accept.
pub const SECRET: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";

/// A well-formed Standard Webhooks secret the test bridges do not accept (`wrong`): what a
/// sender with the wrong secret signs with.
pub const WRONG_SECRET: &str = "whsec_d3Jvbmc=";

/// [`SEED`] with this `status` and `request_id`, pretty-printed.
pub fn body_with(status: &str, request_id: &str) -> Vec<u8> {
    let mut v: Value = serde_json::from_str(SEED).expect("the seed fixture is JSON");
    v["status"] = json!(status);
    v["request_id"] = json!(request_id);
    serde_json::to_vec_pretty(&v).expect("a JSON value serializes")
}

/// A fresh random request_id (UUID v4).
pub fn new_request_id() -> String {
    uuid::Uuid::new_v4().to_string()
}

/// Current unix time in seconds.
pub fn now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0)
}
