//! The one timestamp format of vx-bridge: RFC 3339 in UTC with milliseconds and `Z`, e.g.
//! `2026-11-27T10:00:00.123Z`.
//!
//! Every time the bridge writes out uses it: an event's `received_at` (and `ce-time`), a status
//! reply's `checked_at` (and so a view state's `updated_at`), and the `timestamp` of every log
//! line ([`LogTimer`]). The schemas' `date-time` patterns accept it. Pure formatting: nothing
//! here reads configuration, does I/O or knows about HTTP or NATS.

use std::time::SystemTime;

use time::{OffsetDateTime, UtcOffset};

/// Formats `t` in the bridge's timestamp format (converted to UTC first).
pub fn format_timestamp(t: impl Into<OffsetDateTime>) -> String {
    let utc = t.into().to_offset(UtcOffset::UTC);
    let fmt = time::macros::format_description!(
        "[year]-[month]-[day]T[hour]:[minute]:[second].[subsecond digits:3]Z"
    );
    // Only a year outside 0000..=9999 cannot be written: not a time the bridge meets.
    utc.format(&fmt)
        .unwrap_or_else(|_| "1970-01-01T00:00:00.000Z".into())
}

/// The `timestamp` of log lines, in the same format (`tracing_subscriber`'s own is
/// microseconds).
#[derive(Debug, Clone, Copy, Default)]
pub struct LogTimer;

impl tracing_subscriber::fmt::time::FormatTime for LogTimer {
    fn format_time(&self, w: &mut tracing_subscriber::fmt::format::Writer<'_>) -> std::fmt::Result {
        w.write_str(&format_timestamp(SystemTime::now()))
    }
}

#[cfg(test)]
mod tests {
    use std::time::{Duration, UNIX_EPOCH};

    use super::*;

    #[test]
    fn timestamps_are_rfc3339_utc_millis() {
        let t = UNIX_EPOCH + Duration::from_millis(1_764_237_600_123);
        assert_eq!(format_timestamp(t), "2025-11-27T10:00:00.123Z");
        // Finer digits are cut, not rounded; whole seconds still carry `.000`.
        let t = UNIX_EPOCH + Duration::from_nanos(1_764_237_600_999_999_999);
        assert_eq!(format_timestamp(t), "2025-11-27T10:00:00.999Z");
        assert_eq!(
            format_timestamp(UNIX_EPOCH + Duration::from_secs(1)),
            "1970-01-01T00:00:01.000Z"
        );
    }

    #[test]
    fn other_offsets_are_written_in_utc() {
        let t = OffsetDateTime::from_unix_timestamp(1_764_237_600)
            .unwrap()
            .to_offset(UtcOffset::from_hms(2, 0, 0).unwrap());
        assert_eq!(format_timestamp(t), "2025-11-27T10:00:00.000Z");
    }

    #[test]
    fn the_schemas_patterns_accept_it() {
        let pattern = |schema: &str, field: &str| {
            let v: serde_json::Value = serde_json::from_str(schema).unwrap();
            v["properties"][field]["pattern"]
                .as_str()
                .unwrap()
                .to_owned()
        };
        let stamp = format_timestamp(SystemTime::now());
        for (schema, field) in [
            (crate::schema::VERIFICATION_EVENT, "received_at"),
            (crate::schema::SESSION_STATE, "updated_at"),
        ] {
            let validator = jsonschema::draft202012::new(&serde_json::json!({
                "type": "string",
                "pattern": pattern(schema, field),
            }))
            .unwrap();
            assert!(
                validator.is_valid(&serde_json::json!(stamp)),
                "{field}: {stamp}"
            );
        }
    }
}
