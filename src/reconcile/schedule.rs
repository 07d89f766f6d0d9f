//! Pure: the work message of one watched session ([`Work`], the JSON body of its
//! `{prefix}.reconcile.<request_id>` message) and the schedule that decides when it is checked
//! next and when it is given up ([`Schedule`]). No I/O, no clock: every function takes `now`.

use std::time::Duration;

use serde::{Deserialize, Serialize};
use time::OffsetDateTime;

use crate::config::ReconcileConfig;

/// One watched session's place in its schedule: the body of its work-queue message.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Work {
    /// The session, lower-case hyphenated.
    pub request_id: String,
    /// Checks made so far (the index of the next delay).
    pub step: u32,
    /// When it was first registered (kept through every step).
    #[serde(with = "stamp")]
    pub registered_at: OffsetDateTime,
    /// When the next check is due.
    #[serde(with = "stamp")]
    pub due_at: OffsetDateTime,
    /// VX's `current_status` at the last check, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_state: Option<String>,
}

impl Work {
    /// The message body.
    pub fn to_json(&self) -> Vec<u8> {
        // A struct of strings and integers always serializes.
        serde_json::to_vec(self).unwrap_or_default()
    }

    /// Reads a message body.
    pub fn from_json(payload: &[u8]) -> Result<Work, serde_json::Error> {
        serde_json::from_slice(payload)
    }
}

/// What to do with a work message delivered at `now`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Due {
    /// Not due: put it back for this long.
    Wait(Duration),
    /// Due: check the session.
    Check,
    /// Past `give_up_after` since registration: publish `{prefix}.expired` and stop.
    GiveUp,
}

/// `reconcile.schedule` and `reconcile.give_up_after`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Schedule {
    delays: Vec<Duration>,
    give_up_after: Duration,
}

impl Schedule {
    /// `delays` must be non-empty (config validation).
    pub fn new(delays: Vec<Duration>, give_up_after: Duration) -> Self {
        Self {
            delays,
            give_up_after,
        }
    }

    /// From a validated `[reconcile]`.
    pub fn from_config(cfg: &ReconcileConfig) -> Self {
        Self::new(cfg.schedule.clone(), cfg.give_up_after)
    }

    /// The delay before check number `step` (0-based); the last one repeats.
    pub fn delay(&self, step: u32) -> Duration {
        let last = self.delays.len().saturating_sub(1);
        self.delays
            .get((step as usize).min(last))
            .copied()
            .unwrap_or(Duration::from_secs(60))
    }

    /// The longest delay: every watched message is delivered at least once per this time.
    pub fn round(&self) -> Duration {
        self.delays.iter().copied().max().unwrap_or_default()
    }

    /// When a session registered at `registered_at` is given up.
    pub fn give_up_at(&self, registered_at: OffsetDateTime) -> OffsetDateTime {
        registered_at.saturating_add(to_time(self.give_up_after))
    }

    /// The work message of a session registered at `now`.
    pub fn first(&self, request_id: &str, now: OffsetDateTime) -> Work {
        self.first_since(request_id, now, now)
    }

    /// The work message of a session watched since `since` (the stored time of the event that
    /// registers it), written at `now`: its give-up counts from `since`, so an old event replayed
    /// or projected late does not start a fresh 72 h.
    pub fn first_since(
        &self,
        request_id: &str,
        since: OffsetDateTime,
        now: OffsetDateTime,
    ) -> Work {
        let since = since.min(now);
        Work {
            request_id: request_id.to_ascii_lowercase(),
            step: 0,
            registered_at: since,
            due_at: self.due(since, now, 0),
            last_state: None,
        }
    }

    /// The work message after a check of `work` at `now` that saw `last_state`.
    pub fn next(&self, work: &Work, now: OffsetDateTime, last_state: Option<&str>) -> Work {
        let step = work.step.saturating_add(1);
        Work {
            request_id: work.request_id.clone(),
            step,
            registered_at: work.registered_at,
            due_at: self.due(work.registered_at, now, step),
            last_state: last_state.map(str::to_owned).or(work.last_state.clone()),
        }
    }

    /// `now` + the step's delay, but never after the give-up time (so the give-up is on time).
    fn due(&self, registered_at: OffsetDateTime, now: OffsetDateTime, step: u32) -> OffsetDateTime {
        now.saturating_add(to_time(self.delay(step)))
            .min(self.give_up_at(registered_at))
    }

    /// What a delivery of `work` at `now` does.
    pub fn decide(&self, work: &Work, now: OffsetDateTime) -> Due {
        if now >= self.give_up_at(work.registered_at) {
            return Due::GiveUp;
        }
        if work.due_at > now {
            let wait = work.due_at - now;
            return Due::Wait(wait.try_into().unwrap_or(Duration::ZERO));
        }
        Due::Check
    }
}

fn to_time(d: Duration) -> time::Duration {
    time::Duration::try_from(d).unwrap_or(time::Duration::MAX)
}

/// The bridge's timestamp format ([`crate::timestamp::format_timestamp`]), read back as RFC 3339.
mod stamp {
    use serde::{Deserialize, Deserializer, Serializer};
    use time::format_description::well_known::Rfc3339;
    use time::OffsetDateTime;

    pub fn serialize<S: Serializer>(t: &OffsetDateTime, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&crate::timestamp::format_timestamp(*t))
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<OffsetDateTime, D::Error> {
        let raw = String::deserialize(d)?;
        OffsetDateTime::parse(&raw, &Rfc3339).map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const ID: &str = "4ED2EC66-9471-415D-99CE-7BD1742FC2B8";

    fn at(secs: i64) -> OffsetDateTime {
        OffsetDateTime::from_unix_timestamp(1_800_000_000 + secs).unwrap()
    }

    fn schedule() -> Schedule {
        Schedule::new(
            vec![
                Duration::from_secs(60),
                Duration::from_secs(120),
                Duration::from_secs(300),
            ],
            Duration::from_secs(3600),
        )
    }

    #[test]
    fn steps_follow_the_schedule_and_the_last_delay_repeats() {
        let s = schedule();
        let w = s.first(ID, at(0));
        assert_eq!(w.request_id, ID.to_ascii_lowercase());
        assert_eq!((w.step, w.due_at, w.registered_at), (0, at(60), at(0)));
        let w = s.next(&w, at(61), Some("INIT"));
        assert_eq!((w.step, w.due_at), (1, at(181)));
        assert_eq!(w.last_state.as_deref(), Some("INIT"));
        let w = s.next(&w, at(181), None);
        assert_eq!((w.step, w.due_at), (2, at(481)));
        assert_eq!(
            w.last_state.as_deref(),
            Some("INIT"),
            "kept when not seen again"
        );
        let w = s.next(&w, at(481), Some("IN PROGRESS"));
        assert_eq!((w.step, w.due_at), (3, at(781)), "the last delay repeats");
        assert_eq!(w.registered_at, at(0));
    }

    #[test]
    fn a_watch_since_an_earlier_event_gives_up_counting_from_that_event() {
        let s = Schedule::new(vec![Duration::from_secs(60)], Duration::from_secs(300));
        let w = s.first_since(ID, at(0), at(280));
        assert_eq!(w.registered_at, at(0));
        // Due at give-up (300 s), not 60 s after it was written.
        assert_eq!(w.due_at, at(300));
        assert_eq!(s.decide(&w, at(300)), Due::GiveUp);
        // A `since` in the future (clock skew) counts from now.
        assert_eq!(s.first_since(ID, at(500), at(400)).registered_at, at(400));
    }

    #[test]
    fn a_message_waits_until_due_and_gives_up_on_time() {
        let s = schedule();
        let w = s.first(ID, at(0));
        assert_eq!(s.decide(&w, at(10)), Due::Wait(Duration::from_secs(50)));
        assert_eq!(s.decide(&w, at(60)), Due::Check);
        assert_eq!(s.decide(&w, at(3600)), Due::GiveUp);
        // A step whose delay would pass the give-up time is due at the give-up time.
        let mut late = w.clone();
        late.step = 7;
        let n = s.next(&late, at(3500), None);
        assert_eq!(n.due_at, at(3600));
        assert_eq!(s.decide(&n, at(3600)), Due::GiveUp);
    }

    #[test]
    fn the_work_message_round_trips_in_the_bridges_timestamp_format() {
        let s = schedule();
        let w = s.next(&s.first(ID, at(0)), at(61), Some("IN PROGRESS"));
        let json = String::from_utf8(w.to_json()).unwrap();
        assert!(
            json.contains("\"registered_at\":\"2027-01-15T08:00:00.000Z\""),
            "{json}"
        );
        assert_eq!(Work::from_json(json.as_bytes()).unwrap(), w);
        let bare = s.first(ID, at(0));
        assert!(!String::from_utf8(bare.to_json())
            .unwrap()
            .contains("last_state"));
        assert!(Work::from_json(b"{\"request_id\":\"x\"}").is_err());
    }
}
