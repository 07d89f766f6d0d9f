//! What `GET /api/session/result/:request_id` answers, recognised by its shape.
//!
//! The vendor's pages disagree: one documents `{"current_status": …}`, another the full result
//! body (the webhook shape). Both are accepted:
//!
//! | upstream reply | `current_status` we report |
//! |---|---|
//! | `{"current_status": "INIT" \| "IN PROGRESS" \| "COMPLETED" \| "PENDING"}` | the same |
//! | result body, `status` = `PASS` or `FAIL` | `COMPLETED` |
//! | result body, `status` = `PENDING` | `PENDING` |
//! | result body, `status` empty or null (no component finished yet) | `INIT` |
//! | result body, any other `status` | none: status lookups answer 502 |
//!
//! A result body must pass `vx-result.schema.json` and, for a lookup by id, carry the id asked
//! for. Anything else is a bad upstream reply (502). Nothing here logs a body (PII).

use bytes::Bytes;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::schema::Schemas;

/// A session's status as the VX API names it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum CurrentStatus {
    /// The user landed but finished no verification app.
    #[serde(rename = "INIT")]
    Init,
    /// At least one app finished; the journey is not done.
    #[serde(rename = "IN PROGRESS")]
    InProgress,
    /// The journey is done.
    #[serde(rename = "COMPLETED")]
    Completed,
    /// The ID document is under manual review.
    #[serde(rename = "PENDING")]
    Pending,
}

impl CurrentStatus {
    /// Parses the VX spelling (exact).
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "INIT" => Some(Self::Init),
            "IN PROGRESS" => Some(Self::InProgress),
            "COMPLETED" => Some(Self::Completed),
            "PENDING" => Some(Self::Pending),
            _ => None,
        }
    }

    /// The VX spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Init => "INIT",
            Self::InProgress => "IN PROGRESS",
            Self::Completed => "COMPLETED",
            Self::Pending => "PENDING",
        }
    }

    /// Maps a result body's top-level `status` (see the module's table).
    pub fn from_result_status(status: Option<&str>) -> Option<Self> {
        match status {
            Some("PASS") | Some("FAIL") => Some(Self::Completed),
            Some("PENDING") => Some(Self::Pending),
            None | Some("") => Some(Self::Init),
            Some(_) => None,
        }
    }
}

/// A full result body, kept as received.
#[derive(Debug, Clone, PartialEq)]
pub struct ResultBody {
    /// The bytes as the VX API sent them (unknown fields included).
    pub raw: Bytes,
    /// Its top-level `status` (None when null).
    pub status: Option<String>,
}

/// One upstream answer, by shape.
#[derive(Debug, Clone, PartialEq)]
pub enum SessionReply {
    /// `{"current_status": …}`.
    Status(CurrentStatus),
    /// The full result body.
    Result(ResultBody),
}

impl SessionReply {
    /// The status to report, if the reply allows one (see the module's table).
    pub fn current_status(&self) -> Option<CurrentStatus> {
        match self {
            SessionReply::Status(s) => Some(*s),
            SessionReply::Result(r) => CurrentStatus::from_result_status(r.status.as_deref()),
        }
    }

    /// Whether the session can no longer change (cached longer): its status is COMPLETED, or
    /// its result PASS or FAIL (which map to COMPLETED).
    pub fn is_terminal(&self) -> bool {
        self.current_status() == Some(CurrentStatus::Completed)
    }

    /// Recognises a 2xx body. `expected_id`: the request_id asked for, if the lookup was by id.
    /// The error says what is wrong without quoting the body.
    pub fn parse(
        raw: Bytes,
        expected_id: Option<&str>,
        schemas: &Schemas,
    ) -> Result<SessionReply, String> {
        let value: Value =
            serde_json::from_slice(&raw).map_err(|_| "the reply is not JSON".to_owned())?;
        let Some(obj) = value.as_object() else {
            return Err("the reply is not a JSON object".into());
        };
        if let Some(cs) = obj.get("current_status") {
            let Some(s) = cs.as_str() else {
                return Err("`current_status` is not a string".into());
            };
            return CurrentStatus::parse(s)
                .map(SessionReply::Status)
                .ok_or_else(|| "`current_status` has an unrecognized value".into());
        }
        if obj.contains_key("request_id") && obj.contains_key("status") {
            if let Err(violations) = schemas.check_result(&value) {
                let paths: Vec<String> = violations
                    .iter()
                    .take(5)
                    .map(|v| format!("{} ({})", v.instance_path, v.message))
                    .collect();
                return Err(format!(
                    "the result body fails vx-result.schema.json: {}",
                    paths.join("; ")
                ));
            }
            if let Some(id) = expected_id {
                let got = obj.get("request_id").and_then(Value::as_str).unwrap_or("");
                if !got.eq_ignore_ascii_case(id) {
                    return Err("the result body is for another request_id".into());
                }
            }
            let status = obj.get("status").and_then(Value::as_str).map(str::to_owned);
            return Ok(SessionReply::Result(ResultBody { raw, status }));
        }
        Err("the reply has neither `current_status` nor `request_id` and `status`".into())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SEED: &str = include_str!("../../tests/fixtures/seed-pass.json");
    const ID: &str = "4ed2ec66-9471-415d-99ce-7bd1742fc2b8";

    fn parse(body: &str) -> Result<SessionReply, String> {
        SessionReply::parse(Bytes::from(body.to_owned()), Some(ID), &Schemas::get())
    }

    #[test]
    fn both_documented_shapes_are_recognised() {
        for (body, want) in [
            (r#"{"current_status":"INIT"}"#, CurrentStatus::Init),
            (
                r#"{"current_status":"IN PROGRESS"}"#,
                CurrentStatus::InProgress,
            ),
            (
                r#"{"current_status":"COMPLETED"}"#,
                CurrentStatus::Completed,
            ),
            (r#"{"current_status":"PENDING"}"#, CurrentStatus::Pending),
        ] {
            let r = parse(body).unwrap();
            assert_eq!(r, SessionReply::Status(want));
            assert_eq!(r.is_terminal(), want == CurrentStatus::Completed);
        }
        let r = parse(SEED).unwrap();
        assert_eq!(r.current_status(), Some(CurrentStatus::Completed));
        assert!(r.is_terminal());
        match r {
            SessionReply::Result(b) => assert_eq!(b.raw, SEED.as_bytes()),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn result_status_maps_as_documented() {
        let with = |status: &str| {
            let mut v: Value = serde_json::from_str(SEED).unwrap();
            v["status"] = serde_json::json!(status);
            parse(&v.to_string()).unwrap()
        };
        assert_eq!(
            with("FAIL").current_status(),
            Some(CurrentStatus::Completed)
        );
        assert!(with("FAIL").is_terminal());
        assert_eq!(
            with("PENDING").current_status(),
            Some(CurrentStatus::Pending)
        );
        assert!(!with("PENDING").is_terminal());
        assert_eq!(with("").current_status(), Some(CurrentStatus::Init));
        assert_eq!(with("SOMETHING NEW").current_status(), None);
    }

    #[test]
    fn garbage_wrong_shapes_and_other_ids_are_rejected() {
        for body in [
            "<html>oops</html>",
            "[]",
            "{}",
            r#"{"current_status":"DONE"}"#,
            r#"{"current_status":3}"#,
            r#"{"request_id":"../x","status":"PASS"}"#,
            r#"{"request_id":"0e1a2b3c-0000-4000-8000-000000000000","status":"PASS"}"#,
        ] {
            assert!(parse(body).is_err(), "{body}");
        }
    }

    #[test]
    fn errors_never_quote_the_body() {
        let body = r#"{"request_id":"4ed2ec66-9471-415d-99ce-7bd1742fc2b8","status":"PASS","dob":19700101}"#;
        let e = parse(body).unwrap_err();
        assert!(!e.contains("19700101"), "{e}");
    }
}
