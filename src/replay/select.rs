//! Which rejected messages `vx-bridge replay` looks at: `--seq A..B`, `--since T`, `--until T`
//! (RFC 3339, or an age such as `2h` before now) and `--reason json|schema`, parsed and checked
//! here, with the one-line error an operator gets (exit 64). Pure: no I/O, no NATS.

use std::time::{Duration, SystemTime};

use time::format_description::well_known::Rfc3339;
use time::OffsetDateTime;

use crate::event::RejectReason;

/// The selection, as parsed: every bound is inclusive.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Selection {
    /// First stream sequence (`--seq A..`, `--seq A..B`, `--seq N`).
    pub first_seq: Option<u64>,
    /// Last stream sequence (`--seq ..B`, `--seq A..B`, `--seq N`).
    pub last_seq: Option<u64>,
    /// Stored at or after this time (`--since`).
    pub since: Option<OffsetDateTime>,
    /// Stored at or before this time (`--until`).
    pub until: Option<OffsetDateTime>,
    /// Only this reason (`--reason json` or `schema`); none: every reason.
    pub reason: Option<RejectReason>,
}

impl Selection {
    /// Parses the command line's values; `now` is the reference of ages such as `2h`.
    pub fn parse(
        seq: Option<&str>,
        since: Option<&str>,
        until: Option<&str>,
        reason: Option<&str>,
        now: SystemTime,
    ) -> Result<Selection, String> {
        let (first_seq, last_seq) = match seq {
            Some(s) => parse_seq(s)?,
            None => (None, None),
        };
        let since = since.map(|t| parse_time("--since", t, now)).transpose()?;
        let until = until.map(|t| parse_time("--until", t, now)).transpose()?;
        if let (Some(s), Some(u)) = (since, until) {
            if s > u {
                return Err("--since is later than --until: nothing would be selected".into());
            }
        }
        let reason = reason.map(parse_reason).transpose()?;
        Ok(Selection {
            first_seq,
            last_seq,
            since,
            until,
            reason,
        })
    }

    /// Whether a message stored at `seq`, at `time`, for `reason` is selected.
    pub fn selects(&self, seq: u64, time: OffsetDateTime, reason: Option<RejectReason>) -> bool {
        self.first_seq.is_none_or(|f| seq >= f)
            && self.last_seq.is_none_or(|l| seq <= l)
            && self.since.is_none_or(|s| time >= s)
            && self.until.is_none_or(|u| time <= u)
            && self.reason.is_none_or(|r| reason == Some(r))
    }
}

/// `A..B`, `A..`, `..B` or `N`; sequences start at 1.
fn parse_seq(text: &str) -> Result<(Option<u64>, Option<u64>), String> {
    let bad = || {
        format!("--seq {text:?}: expected A..B, A.., ..B or N (stream sequences, from 1, A <= B)")
    };
    let number = |s: &str| -> Result<Option<u64>, String> {
        if s.is_empty() {
            return Ok(None);
        }
        match s.parse::<u64>() {
            Ok(n) if n >= 1 => Ok(Some(n)),
            _ => Err(bad()),
        }
    };
    let (first, last) = match text.split_once("..") {
        Some((a, b)) => (number(a)?, number(b)?),
        None => {
            let n = number(text)?.ok_or_else(bad)?;
            (Some(n), Some(n))
        }
    };
    match (first, last) {
        (None, None) => Err(bad()),
        (Some(a), Some(b)) if a > b => Err(bad()),
        bounds => Ok(bounds),
    }
}

/// RFC 3339 (`2026-12-01T10:00:00Z`), or an age before `now` (`90m`, `2h`, `1day`).
fn parse_time(flag: &str, text: &str, now: SystemTime) -> Result<OffsetDateTime, String> {
    if let Ok(t) = OffsetDateTime::parse(text, &Rfc3339) {
        return Ok(t);
    }
    let age: Duration = humantime::parse_duration(text).map_err(|_| {
        format!("{flag} {text:?}: expected an RFC 3339 time (2026-12-01T10:00:00Z) or an age (30m, 2h, 7days)")
    })?;
    now.checked_sub(age)
        .map(OffsetDateTime::from)
        .ok_or_else(|| format!("{flag} {text:?}: too far in the past"))
}

/// `json` (`invalid_json`) or `schema` (`schema_violation`); the full codes are accepted too.
fn parse_reason(text: &str) -> Result<RejectReason, String> {
    match text {
        "json" | "invalid_json" => Ok(RejectReason::InvalidJson),
        "schema" | "schema_violation" => Ok(RejectReason::SchemaViolation),
        _ => Err(format!(
            "--reason {text:?}: expected json or schema (bodies rejected as event_too_large are always reported, never replayed)"
        )),
    }
}

/// The reason of a `vx-reject-reason` header value.
pub fn reason_of(code: &str) -> Option<RejectReason> {
    [
        RejectReason::InvalidJson,
        RejectReason::SchemaViolation,
        RejectReason::EventTooLarge,
    ]
    .into_iter()
    .find(|r| r.code() == code)
}

#[cfg(test)]
mod tests {
    use super::*;
    use time::macros::datetime;

    fn now() -> SystemTime {
        datetime!(2026-12-02 10:00 UTC).into()
    }

    fn seq(s: &str) -> Result<Selection, String> {
        Selection::parse(Some(s), None, None, None, now())
    }

    #[test]
    fn sequence_ranges() {
        let s = seq("3..7").unwrap();
        assert_eq!((s.first_seq, s.last_seq), (Some(3), Some(7)));
        assert_eq!(seq("3..").unwrap().last_seq, None);
        assert_eq!(seq("..7").unwrap().first_seq, None);
        assert_eq!(seq("5").unwrap().first_seq, Some(5));
        assert_eq!(seq("5").unwrap().last_seq, Some(5));
        for bad in [
            "", "..", "7..3", "0..3", "a..b", "-1", "1...3", "1..2..3", " 1..2",
        ] {
            let e = seq(bad).unwrap_err();
            assert!(e.starts_with("--seq"), "{bad}: {e}");
        }
        let s = seq("3..7").unwrap();
        let t = datetime!(2026-12-01 00:00 UTC);
        assert!(!s.selects(2, t, None) && s.selects(3, t, None) && s.selects(7, t, None));
        assert!(!s.selects(8, t, None));
    }

    #[test]
    fn times_are_rfc3339_or_an_age() {
        let s =
            Selection::parse(None, Some("2h"), Some("2026-12-02T09:30:00Z"), None, now()).unwrap();
        assert_eq!(s.since, Some(datetime!(2026-12-02 08:00 UTC)));
        assert_eq!(s.until, Some(datetime!(2026-12-02 09:30 UTC)));
        assert!(s.selects(1, datetime!(2026-12-02 08:00 UTC), None));
        assert!(!s.selects(1, datetime!(2026-12-02 07:59:59 UTC), None));
        assert!(!s.selects(1, datetime!(2026-12-02 09:30:01 UTC), None));
        let e = Selection::parse(None, Some("yesterday"), None, None, now()).unwrap_err();
        assert!(e.starts_with("--since"), "{e}");
        let e = Selection::parse(None, Some("1h"), Some("2h"), None, now()).unwrap_err();
        assert!(e.contains("later than"), "{e}");
    }

    #[test]
    fn reasons() {
        let s = Selection::parse(None, None, None, Some("json"), now()).unwrap();
        assert_eq!(s.reason, Some(RejectReason::InvalidJson));
        let t = datetime!(2026-12-01 00:00 UTC);
        assert!(s.selects(1, t, Some(RejectReason::InvalidJson)));
        assert!(!s.selects(1, t, Some(RejectReason::SchemaViolation)));
        assert!(!s.selects(1, t, None));
        let s = Selection::parse(None, None, None, Some("schema"), now()).unwrap();
        assert_eq!(s.reason, Some(RejectReason::SchemaViolation));
        assert!(Selection::parse(None, None, None, Some("size"), now()).is_err());
        assert_eq!(
            reason_of("event_too_large"),
            Some(RejectReason::EventTooLarge)
        );
        assert_eq!(reason_of("other"), None);
        assert!(Selection::default().selects(1, t, None));
    }
}
