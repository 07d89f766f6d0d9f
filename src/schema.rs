//! The JSON Schemas in `schemas/`, embedded at build time and compiled once; and today's result
//! schema, which a user may replace with their own (`webhook.schema_file`, read by
//! `app::prepare` and compiled here by [`Schemas::with_result_schema`]).
//!
//! The running binary validates with exactly the files consumers read. Error messages are
//! *masked*: they name the rule that failed and where, never the value (which may be PII).
//! No I/O, and no NATS or HTTP code (`scripts/code/check-layers.py`, rule 1).

use std::sync::{Arc, OnceLock};

use jsonschema::Validator;
use serde::Serialize;
use serde_json::Value;

/// `schemas/vx-result.schema.json`: the body VX sends.
pub const VX_RESULT: &str = include_str!("../schemas/vx-result.schema.json");
/// `schemas/verification-event.schema.json`: the body we publish.
pub const VERIFICATION_EVENT: &str = include_str!("../schemas/verification-event.schema.json");
/// `schemas/status-request.schema.json`: a request on `{prefix}.status.get`.
pub const STATUS_REQUEST: &str = include_str!("../schemas/status-request.schema.json");
/// `schemas/result-request.schema.json`: a request on `{prefix}.result.get`.
pub const RESULT_REQUEST: &str = include_str!("../schemas/result-request.schema.json");

/// `schemas/session-state.schema.json`: a value in the session view (`sessions.bucket`).
pub const SESSION_STATE: &str = include_str!("../schemas/session-state.schema.json");

/// `schemas/session-expired.schema.json`: a message on `{prefix}.expired`.
pub const SESSION_EXPIRED: &str = include_str!("../schemas/session-expired.schema.json");
/// `schemas/erase-request.schema.json`: a request on `{prefix}.erase`.
pub const ERASE_REQUEST: &str = include_str!("../schemas/erase-request.schema.json");
/// `schemas/erase-reply.schema.json`: a successful reply on `{prefix}.erase`.
pub const ERASE_REPLY: &str = include_str!("../schemas/erase-reply.schema.json");
/// `schemas/session-erased.schema.json`: a message on `{prefix}.erased`.
pub const SESSION_ERASED: &str = include_str!("../schemas/session-erased.schema.json");
/// `schemas/watch-reply.schema.json`: a successful reply on `{prefix}.watch`.
pub const WATCH_REPLY: &str = include_str!("../schemas/watch-reply.schema.json");

/// What the bridge itself needs of a VX body whatever the result schema says: an object with a
/// UUID `request_id` (the event's key) and a `status` that is a short string or null (its
/// kind). Checked before a user's own result schema ([`Schemas::with_result_schema`]); the
/// embedded one already requires it.
const RESULT_CORE: &str = r#"{
  "type": "object",
  "required": ["request_id"],
  "properties": {
    "request_id": {
      "type": "string",
      "pattern": "^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$"
    },
    "status": { "type": ["string", "null"], "maxLength": 64 }
  }
}"#;

/// At most this many violations are reported for one body.
pub const MAX_VIOLATIONS: usize = 32;

/// One schema violation, as reported to the sender in the 422 problem.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Violation {
    /// JSON Pointer into the body, e.g. `/journey/stops/0/status`.
    pub instance_path: String,
    /// What rule failed, without the offending value.
    pub message: String,
}

/// Compiled validators, shared by every request.
#[derive(Clone)]
pub struct Schemas {
    result: Arc<Validator>,
    /// Set with a user's result schema: [`RESULT_CORE`], checked first.
    result_core: Option<Arc<Validator>>,
    event: Arc<Validator>,
    status_request: Arc<Validator>,
    result_request: Arc<Validator>,
    session_state: Arc<Validator>,
    session_expired: Arc<Validator>,
    watch_reply: Arc<Validator>,
    erase_request: Arc<Validator>,
    erase_reply: Arc<Validator>,
    session_erased: Arc<Validator>,
}

impl std::fmt::Debug for Schemas {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Schemas")
    }
}

fn parse(name: &str, text: &str) -> Value {
    // The schemas are part of the binary and tested; a broken one is a build defect.
    serde_json::from_str(text).unwrap_or_else(|e| panic!("embedded schema {name} is not JSON: {e}"))
}

fn id_of(schema: &Value) -> String {
    schema["$id"].as_str().unwrap_or_default().to_owned()
}

impl Schemas {
    /// The compiled schemas (compiled on first use, then shared).
    pub fn get() -> Schemas {
        static CELL: OnceLock<Schemas> = OnceLock::new();
        CELL.get_or_init(Self::compile).clone()
    }

    fn compile() -> Schemas {
        let result_schema = parse("vx-result", VX_RESULT);
        let event_schema = parse("verification-event", VERIFICATION_EVENT);
        let result = jsonschema::draft202012::new(&result_schema)
            .unwrap_or_else(|e| panic!("embedded schema vx-result does not compile: {e}"));
        let registry = jsonschema::Registry::new()
            .add(id_of(&result_schema), result_schema.clone())
            .and_then(|r| r.prepare())
            .unwrap_or_else(|e| panic!("schema registry: {e}"));
        let event = jsonschema::options()
            .with_draft(jsonschema::Draft::Draft202012)
            .with_registry(&registry)
            .build(&event_schema)
            .unwrap_or_else(|e| panic!("embedded schema verification-event does not compile: {e}"));
        let simple = |name: &str, text: &str| {
            jsonschema::draft202012::new(&parse(name, text))
                .unwrap_or_else(|e| panic!("embedded schema {name} does not compile: {e}"))
        };
        Schemas {
            result: Arc::new(result),
            result_core: None,
            event: Arc::new(event),
            status_request: Arc::new(simple("status-request", STATUS_REQUEST)),
            result_request: Arc::new(simple("result-request", RESULT_REQUEST)),
            session_state: Arc::new(simple("session-state", SESSION_STATE)),
            session_expired: Arc::new(simple("session-expired", SESSION_EXPIRED)),
            watch_reply: Arc::new(simple("watch-reply", WATCH_REPLY)),
            erase_request: Arc::new(simple("erase-request", ERASE_REQUEST)),
            erase_reply: Arc::new(simple("erase-reply", ERASE_REPLY)),
            session_erased: Arc::new(simple("session-erased", SESSION_ERASED)),
        }
    }

    /// These schemas with `schema` (a user's own, e.g. from `webhook.schema_file`) as today's
    /// result schema instead of `schemas/vx-result.schema.json`: for webhook bodies, VX API
    /// result bodies and `vx-bridge replay`. Its draft is read from its `$schema` (2020-12
    /// when absent); a `$ref` must be inside it (nothing is fetched). Bodies must also pass the core the bridge needs (a UUID `request_id`, a
    /// string or null `status`). `Err`: why it does not compile, without its values.
    pub fn with_result_schema(&self, schema: &Value) -> Result<Schemas, String> {
        let result = jsonschema::validator_for(schema).map_err(|e| {
            let at = e.instance_path().to_string();
            let at = if at.is_empty() { "/".to_owned() } else { at };
            format!("is not a JSON Schema that compiles: {e} (at {at} in the schema)")
        })?;
        let core = jsonschema::draft202012::new(&parse("result core", RESULT_CORE))
            .unwrap_or_else(|e| panic!("embedded result core does not compile: {e}"));
        Ok(Schemas {
            result: Arc::new(result),
            result_core: Some(Arc::new(core)),
            ..self.clone()
        })
    }

    /// Validates a VX body against today's result schema; `Err` lists the violations (at most
    /// [`MAX_VIOLATIONS`]).
    pub fn check_result(&self, body: &Value) -> Result<(), Vec<Violation>> {
        if let Some(core) = &self.result_core {
            check(core, body)?;
        }
        check(&self.result, body)
    }

    /// Validates a request on `{prefix}.status.get`.
    pub fn check_status_request(&self, request: &Value) -> Result<(), Vec<Violation>> {
        check(&self.status_request, request)
    }

    /// Validates a request on `{prefix}.result.get`.
    pub fn check_result_request(&self, request: &Value) -> Result<(), Vec<Violation>> {
        check(&self.result_request, request)
    }

    /// Validates a value of the session view (used by the projector's tests and the
    /// integration tests).
    pub fn check_session_state(&self, state: &Value) -> Result<(), Vec<Violation>> {
        check(&self.session_state, state)
    }

    /// Validates a request on `{prefix}.erase`.
    pub fn check_erase_request(&self, request: &Value) -> Result<(), Vec<Violation>> {
        check(&self.erase_request, request)
    }

    /// Validates a reply of `{prefix}.erase` (used by tests).
    pub fn check_erase_reply(&self, reply: &Value) -> Result<(), Vec<Violation>> {
        check(&self.erase_reply, reply)
    }

    /// Validates a `{prefix}.erased` message (used by tests).
    pub fn check_session_erased(&self, message: &Value) -> Result<(), Vec<Violation>> {
        check(&self.session_erased, message)
    }

    /// Validates a `{prefix}.expired` message (used by tests).
    pub fn check_session_expired(&self, message: &Value) -> Result<(), Vec<Violation>> {
        check(&self.session_expired, message)
    }

    /// Validates a `{prefix}.watch` reply (used by tests).
    pub fn check_watch_reply(&self, reply: &Value) -> Result<(), Vec<Violation>> {
        check(&self.watch_reply, reply)
    }

    /// Validates a published event body (used by tests and the demo).
    pub fn check_event(&self, event: &Value) -> Result<(), Vec<Violation>> {
        check(&self.event, event)
    }
}

fn check(validator: &Validator, value: &Value) -> Result<(), Vec<Violation>> {
    if validator.is_valid(value) {
        return Ok(());
    }
    let violations: Vec<Violation> = validator
        .iter_errors(value)
        .take(MAX_VIOLATIONS)
        .map(|e| Violation {
            instance_path: e.instance_path().to_string(),
            message: e.masked().to_string(),
        })
        .collect();
    Err(violations)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    const SEED: &str = include_str!("../tests/fixtures/seed-pass.json");

    fn seed() -> Value {
        serde_json::from_str(SEED).unwrap()
    }

    #[test]
    fn the_vendor_example_is_valid() {
        assert_eq!(Schemas::get().check_result(&seed()), Ok(()));
    }

    #[test]
    fn every_documented_quirk_is_accepted() {
        let s = Schemas::get();
        let mut v = seed();
        v["additionalData"] = json!([]);
        v["journey"]["stops"][0]["status"] = json!("");
        v["journey"]["stops"][1]["status"] = Value::Null;
        v["journey"]["stops"][1]["timestamp"] = json!("2024-08-19 20:56:25.223174");
        v["documents"] = Value::Null;
        v["ssn"] = json!("<REDACTED>");
        v["brand_new_field"] = json!({"nested": [1, 2, {"x": null}]});
        v["dcams_plus"]["output"] =
            json!({"vpin": {"uuid": "x"}, "age_estimate": 31, "spoof_score": 0.1});
        v["dcams_plus"]["service"] = json!("PhoneMatch5.0.Smart2FA.SMS");
        v["dcams_plus"]["unknown"] = json!(true);
        v["status"] = json!("");
        assert_eq!(s.check_result(&v), Ok(()));
        v["status"] = json!("PENDING");
        v["dcams_plus"] = Value::Null;
        v["journey"] = json!({"stops": []});
        assert_eq!(s.check_result(&v), Ok(()));
        let minimal =
            json!({"request_id": "4ed2ec66-9471-415d-99ce-7bd1742fc2b8", "status": "PENDING"});
        assert_eq!(s.check_result(&minimal), Ok(()));
    }

    #[test]
    fn missing_fields_bad_ids_and_wrong_types_are_rejected_with_paths() {
        let s = Schemas::get();
        let cases: Vec<(Value, &str)> = vec![
            (json!({"status": "PASS"}), ""),
            (
                json!({"request_id": "4ed2ec66-9471-415d-99ce-7bd1742fc2b8"}),
                "",
            ),
            (
                json!({"request_id": "../../etc/passwd", "status": "PASS"}),
                "/request_id",
            ),
            (
                json!({"request_id": "4ed2ec66947141599ce7bd1742fc2b8", "status": "PASS"}),
                "/request_id",
            ),
            (json!({"request_id": 42, "status": "PASS"}), "/request_id"),
            (
                json!({"request_id": "4ed2ec66-9471-415d-99ce-7bd1742fc2b8", "status": 1}),
                "/status",
            ),
            (
                json!({"request_id": "4ed2ec66-9471-415d-99ce-7bd1742fc2b8", "status": "PASS", "journey": {"stops": "x"}}),
                "/journey/stops",
            ),
            (
                json!({"request_id": "4ed2ec66-9471-415d-99ce-7bd1742fc2b8", "status": "PASS", "storage": {"success": "yes"}}),
                "/storage/success",
            ),
            (json!([1, 2]), ""),
        ];
        for (body, path) in cases {
            let errs = s.check_result(&body).unwrap_err();
            assert!(
                errs.iter().any(|e| e.instance_path == path),
                "{body}: {errs:?}"
            );
        }
    }

    #[test]
    fn messages_never_contain_the_offending_value() {
        let body = json!({"request_id": "4ed2ec66-9471-415d-99ce-7bd1742fc2b8", "status": "PASS", "dob": 19700101, "email": ["jane@example.com"]});
        let errs = Schemas::get().check_result(&body).unwrap_err();
        assert_eq!(errs.len(), 2);
        for e in errs {
            assert!(
                !e.message.contains("19700101") && !e.message.contains("jane@"),
                "{e:?}"
            );
        }
    }

    #[test]
    fn a_users_result_schema_replaces_the_embedded_one_but_not_the_core() {
        let strict = json!({"type": "object", "required": ["brand_new"]});
        let s = Schemas::get().with_result_schema(&strict).unwrap();
        let errs = s.check_result(&seed()).unwrap_err();
        assert_eq!(errs.len(), 1, "{errs:?}");
        let mut v = seed();
        v["brand_new"] = json!(1);
        assert_eq!(s.check_result(&v), Ok(()));
        // The embedded schema would refuse a numeric `dob`; this one does not.
        v["dob"] = json!(19700101);
        assert_eq!(s.check_result(&v), Ok(()));
        // Whatever the user's schema says, the bridge needs a UUID request_id.
        let anything = Schemas::get().with_result_schema(&json!(true)).unwrap();
        let errs = anything
            .check_result(&json!({"request_id": "x", "status": "PASS"}))
            .unwrap_err();
        assert_eq!(errs[0].instance_path, "/request_id");
        assert!(anything.check_result(&json!({"status": "PASS"})).is_err());
        assert_eq!(
            anything.check_result(&json!({"request_id": SEED_ID})),
            Ok(())
        );
        let e = Schemas::get()
            .with_result_schema(&json!({"type": 12}))
            .unwrap_err();
        assert!(e.starts_with("is not a JSON Schema that compiles"), "{e}");
        // The embedded schemas are untouched.
        assert_eq!(Schemas::get().check_result(&seed()), Ok(()));
    }

    const SEED_ID: &str = "4ed2ec66-9471-415d-99ce-7bd1742fc2b8";

    #[test]
    fn violations_are_capped() {
        let mut body =
            json!({"request_id": "4ed2ec66-9471-415d-99ce-7bd1742fc2b8", "status": "PASS"});
        body["journey"] =
            json!({"stops": (0..100).map(|_| json!({"type": 1})).collect::<Vec<_>>()});
        assert_eq!(
            Schemas::get().check_result(&body).unwrap_err().len(),
            MAX_VIOLATIONS
        );
    }
}
