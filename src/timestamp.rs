//! The one timestamp format of vx-bridge: RFC 3339 in UTC with milliseconds and `Z`, e.g.
//! `2026-11-27T10:00:00.123Z`.
//!
//! Every time the bridge writes out uses it: an event's `received_at` (and `ce-time`), a status
//! reply's `checked_at` (and so a view state's `updated_at`), and the `timestamp` of every log
//! line ([`LogTimer`]). The schemas' `date-time` patterns accept it. Pure formatting: nothing
//! here reads configuration, does I/O or knows about HTTP or NATS.

use std::time::SystemTime;

use time::{OffsetDateTime, UtcOffset};

/// Formats `t` in the bridge's timestamp format (converted to UTC first): humantime's RFC 3339
/// with milliseconds for 1970..=9999 (the same text in a tenth of the instructions; once per
/// webhook, its `received_at`), else the `time` format description.
pub fn format_timestamp(t: impl Into<OffsetDateTime>) -> String {
    let t = t.into();
    let mut out = String::with_capacity(24);
    match write_log_time(&mut out, SystemTime::from(t)) {
        Ok(()) => out,
        Err(_) => format_with_time(t),
    }
}

/// [`format_timestamp`] through the `time` format description (any year `time` can write).
fn format_with_time(t: OffsetDateTime) -> String {
    let utc = t.to_offset(UtcOffset::UTC);
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
        write_log_time(w, SystemTime::now())
    }
}

/// `t` in the bridge's format, without a `String`: humantime's RFC 3339 with milliseconds is the
/// same text (UTC, `Z`, digits cut), in a tenth of the instructions of the `time` format
/// description (once per log line). It takes 1970..=9999 only (before 1970 it would panic), so a
/// clock outside that takes the format description.
fn write_log_time(w: &mut impl std::fmt::Write, t: SystemTime) -> std::fmt::Result {
    /// 10000-01-01T00:00:00Z.
    const YEAR_10000: u64 = 253_402_300_800;
    match t.duration_since(std::time::UNIX_EPOCH) {
        Ok(d) if d.as_secs() < YEAR_10000 => write!(w, "{}", humantime::format_rfc3339_millis(t)),
        _ => w.write_str(&format_with_time(OffsetDateTime::from(t))),
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
    fn log_lines_and_events_get_the_format_descriptions_timestamps() {
        let at = |secs: i64, nanos: u32| {
            let d = Duration::new(secs.unsigned_abs(), nanos);
            if secs < 0 {
                UNIX_EPOCH - d
            } else {
                UNIX_EPOCH + d
            }
        };
        let mut times = vec![
            at(0, 0),
            at(0, 999_999),
            at(1_764_237_600, 123_456_789),
            at(1_764_237_600, 999_999_999),
            at(951_782_400, 5_000_000),       // 2000-02-29
            at(4_107_542_400, 0),             // 2100-03-01
            at(253_402_300_799, 999_999_999), // 9999-12-31T23:59:59.999
            at(-1, 500_000_000),              // before 1970: the slow path
        ];
        // Every day of four years from 2024 (leap years, month ends), at varied times of day.
        times.extend((0..4 * 366).map(|day| {
            at(
                1_704_067_200 + day * 86_400 + day * 59,
                1_000_000 * day as u32 % 1_000_000_000,
            )
        }));
        times.push(SystemTime::now());
        for t in times {
            // Against the `time` format description, the independent reference.
            let reference = format_with_time(OffsetDateTime::from(t));
            let mut logged = String::new();
            write_log_time(&mut logged, t).unwrap();
            assert_eq!(logged, reference, "{t:?}");
            assert_eq!(format_timestamp(t), reference, "{t:?}");
        }
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
