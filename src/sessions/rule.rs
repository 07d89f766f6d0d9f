//! The monotonic rule of the session view, and the value it writes: pure, no I/O.
//!
//! The order is total, so the view converges whatever order the events are processed in: a
//! terminal state (PASS or FAIL seen) outranks every non-terminal one; among states of the same
//! kind, the higher stream sequence wins; the same sequence again (a redelivery) changes nothing.
//!
//! A status lookup's VX answer ([`SessionState::from_lookup`], [`decide_lookup`]) is not an event:
//! it refines the `current_status` of the state it was asked against and keeps that state's
//! rank, so any later event outranks it and a terminal state is never touched by it.

use serde::{Deserialize, Serialize};

/// `schema_version` of a session state.
pub const STATE_VERSION: u8 = 1;

/// Where a state came from (`source`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Source {
    /// A VX webhook.
    Webhook,
    /// The reconciler's poll of VX (header `vx-source: poll`).
    Poll,
    /// A status lookup's VX answer.
    Lookup,
    /// A replayed rejected body (header `vx-source: replay`).
    Replay,
}

impl Source {
    /// From the event's `vx-source` header; none (or an unknown value) means a webhook.
    pub fn from_header(value: Option<&str>) -> Source {
        match value {
            Some("poll") => Source::Poll,
            Some("replay") => Source::Replay,
            _ => Source::Webhook,
        }
    }
}

/// One value of the session view (`schemas/session-state.schema.json`). No personal field of
/// the result is copied here.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SessionState {
    /// [`STATE_VERSION`].
    pub schema_version: u8,
    /// Lower-case request_id (also the key).
    pub request_id: String,
    /// VX's top-level `status` as received.
    pub status: String,
    /// COMPLETED once terminal; `None` when the source does not say.
    pub current_status: Option<String>,
    /// PASS or FAIL seen.
    pub terminal: bool,
    /// `event_id` of the event that set this state; `None` for a lookup of a session no event
    /// has reached yet.
    pub event_id: Option<String>,
    /// `type` of that event.
    pub event_type: Option<String>,
    /// Its stream sequence.
    pub stream_seq: Option<u64>,
    /// Where it came from.
    pub source: Source,
    /// The event's `received_at`, or when VX was asked (`source: lookup`).
    pub updated_at: String,
    /// VX `reference`.
    pub reference: Option<String>,
    /// Journey stops in its body.
    pub stops: u64,
}

/// The fields of a published event the view reads (`result` is skipped unparsed), from its body
/// or its headers (`super::fields`).
#[derive(Debug, PartialEq, Eq, Deserialize)]
pub struct EventFields {
    pub(super) event_id: String,
    #[serde(rename = "type")]
    pub(super) event_type: String,
    pub(super) request_id: String,
    pub(super) status: String,
    pub(super) reference: Option<String>,
    pub(super) received_at: String,
    pub(super) progress: Progress,
}

/// The envelope's `progress`.
#[derive(Debug, PartialEq, Eq, Deserialize)]
pub(super) struct Progress {
    pub(super) stops: u64,
}

impl SessionState {
    /// The state an event stored at `stream_seq` sets.
    pub fn from_event(event: EventFields, stream_seq: u64, source: Source) -> SessionState {
        let terminal = matches!(event.status.as_str(), "PASS" | "FAIL");
        let mut request_id = event.request_id;
        request_id.make_ascii_lowercase();
        SessionState {
            schema_version: STATE_VERSION,
            request_id,
            current_status: terminal.then(|| "COMPLETED".to_owned()),
            status: event.status,
            terminal,
            event_id: Some(event.event_id),
            event_type: Some(event.event_type),
            stream_seq: Some(stream_seq),
            source,
            updated_at: event.received_at,
            reference: event.reference,
            stops: event.progress.stops,
        }
    }

    /// The state a status lookup's VX answer sets: `current_status` (INIT, IN PROGRESS, PENDING,
    /// COMPLETED) as VX said at `checked_at`, on top of `basis`, the state the view held when
    /// the lookup read it (`None`: no key). Everything else, and so the rank, is the basis's:
    /// VX's status alone is not an event (COMPLETED becomes terminal only with the event).
    pub fn from_lookup(
        request_id: &str,
        basis: Option<&SessionState>,
        current_status: &str,
        checked_at: String,
    ) -> SessionState {
        SessionState {
            schema_version: STATE_VERSION,
            request_id: request_id.to_ascii_lowercase(),
            status: basis.map(|b| b.status.clone()).unwrap_or_default(),
            current_status: Some(current_status.to_owned()),
            terminal: false,
            event_id: basis.and_then(|b| b.event_id.clone()),
            event_type: basis.and_then(|b| b.event_type.clone()),
            stream_seq: basis.and_then(|b| b.stream_seq),
            source: Source::Lookup,
            updated_at: checked_at,
            reference: basis.and_then(|b| b.reference.clone()),
            stops: basis.map_or(0, |b| b.stops),
        }
    }

    /// Where this state stands in the order of the rule.
    pub fn rank(&self) -> Rank {
        Rank {
            terminal: self.terminal,
            stream_seq: self.stream_seq.unwrap_or(0),
        }
    }
}

/// What the rule compares: terminal first, then the stream sequence.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct Rank {
    /// PASS or FAIL seen (outranks any sequence).
    pub terminal: bool,
    /// Stream sequence of the event.
    pub stream_seq: u64,
}

/// What to do with an incoming state.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decision {
    /// Write it: the key is new, or the incoming state outranks the stored one.
    Apply,
    /// Skip: the stored state outranks it (older, or non-terminal against terminal).
    Stale,
    /// Skip: the stored state is this very event (a redelivery or a replay).
    Unchanged,
}

/// The monotonic rule.
pub fn decide(current: Option<Rank>, incoming: Rank) -> Decision {
    match current {
        None => Decision::Apply,
        Some(c) => match incoming.cmp(&c) {
            std::cmp::Ordering::Greater => Decision::Apply,
            std::cmp::Ordering::Equal => Decision::Unchanged,
            std::cmp::Ordering::Less => Decision::Stale,
        },
    }
}

/// The rule for a lookup's state (`incoming`, from [`SessionState::from_lookup`] on `basis`,
/// the state read before VX was asked) against `current`, the key's state now: it is written
/// only while the key still holds the basis's event and is not terminal, and only when it says
/// something new. An event stored in between wins over the lookup that raced with it.
pub fn decide_lookup(
    current: Option<&SessionState>,
    basis: Option<&SessionState>,
    incoming: &SessionState,
) -> Decision {
    match current {
        Some(c) if c.terminal => Decision::Stale,
        Some(c) if Some(c.rank()) != basis.map(SessionState::rank) => Decision::Stale,
        None if basis.is_some() => Decision::Stale,
        Some(c) if c.current_status == incoming.current_status => Decision::Unchanged,
        _ => Decision::Apply,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn r(terminal: bool, stream_seq: u64) -> Rank {
        Rank {
            terminal,
            stream_seq,
        }
    }

    #[test]
    fn a_new_key_is_written() {
        assert_eq!(decide(None, r(false, 1)), Decision::Apply);
        assert_eq!(decide(None, r(true, 9)), Decision::Apply);
    }

    #[test]
    fn the_higher_sequence_wins_among_states_of_one_kind() {
        assert_eq!(decide(Some(r(false, 1)), r(false, 2)), Decision::Apply);
        assert_eq!(decide(Some(r(false, 2)), r(false, 1)), Decision::Stale);
        assert_eq!(decide(Some(r(true, 3)), r(true, 4)), Decision::Apply);
        assert_eq!(decide(Some(r(true, 4)), r(true, 3)), Decision::Stale);
    }

    #[test]
    fn a_terminal_state_is_never_replaced_by_a_non_terminal_one() {
        // A late PENDING, stored after the PASS, changes nothing.
        assert_eq!(decide(Some(r(true, 3)), r(false, 4)), Decision::Stale);
        assert_eq!(decide(Some(r(true, 3)), r(false, 1)), Decision::Stale);
        // And a PASS processed after a later PENDING still wins.
        assert_eq!(decide(Some(r(false, 4)), r(true, 3)), Decision::Apply);
    }

    #[test]
    fn the_same_event_again_changes_nothing() {
        assert_eq!(decide(Some(r(false, 5)), r(false, 5)), Decision::Unchanged);
        assert_eq!(decide(Some(r(true, 5)), r(true, 5)), Decision::Unchanged);
    }

    #[test]
    fn every_processing_order_ends_in_the_same_state() {
        // PENDING(1), PENDING(2), PASS(3), late PENDING(4) and (5), in all 120 orders, each twice.
        let events = [
            r(false, 1),
            r(false, 2),
            r(true, 3),
            r(false, 4),
            r(false, 5),
        ];
        fn permutations(rest: Vec<usize>) -> Vec<Vec<usize>> {
            if rest.is_empty() {
                return vec![vec![]];
            }
            let mut all = Vec::new();
            for (i, first) in rest.iter().enumerate() {
                let mut others = rest.clone();
                others.remove(i);
                for mut p in permutations(others) {
                    p.insert(0, *first);
                    all.push(p);
                }
            }
            all
        }
        let orders = permutations((0..events.len()).collect());
        assert_eq!(orders.len(), 120);
        for order in orders {
            let mut cur: Option<Rank> = None;
            for i in order.iter().chain(order.iter()) {
                if decide(cur, events[*i]) == Decision::Apply {
                    cur = Some(events[*i]);
                }
            }
            assert_eq!(cur, Some(r(true, 3)), "{order:?}");
        }
    }

    fn state(terminal: bool, seq: Option<u64>, current: Option<&str>) -> SessionState {
        SessionState {
            schema_version: STATE_VERSION,
            request_id: "4ed2ec66-9471-415d-99ce-7bd1742fc2b8".into(),
            status: if terminal { "PASS" } else { "PENDING" }.into(),
            current_status: current.map(str::to_owned),
            terminal,
            event_id: seq.map(|_| "0190a0b4-1c2d-8e3f-9a4b-5c6d7e8f9a0b".into()),
            event_type: seq.map(|_| {
                if terminal {
                    "completed.pass"
                } else {
                    "pending"
                }
                .into()
            }),
            stream_seq: seq,
            source: Source::Webhook,
            updated_at: "2026-01-01T00:00:00Z".into(),
            reference: None,
            stops: 1,
        }
    }

    #[test]
    fn a_lookup_refines_a_non_terminal_state_and_keeps_its_rank() {
        let pending = state(false, Some(4), None);
        let l = SessionState::from_lookup(
            &pending.request_id,
            Some(&pending),
            "IN PROGRESS",
            "2026-01-01T00:01:00Z".into(),
        );
        assert_eq!(l.rank(), pending.rank());
        assert_eq!(l.source, Source::Lookup);
        assert_eq!(l.stream_seq, Some(4));
        assert_eq!(
            decide_lookup(Some(&pending), Some(&pending), &l),
            Decision::Apply
        );
        // The same answer again says nothing new.
        assert_eq!(decide_lookup(Some(&l), Some(&l), &l), Decision::Unchanged);
        // Any later event outranks it; a redelivery of its basis changes nothing.
        assert_eq!(decide(Some(l.rank()), r(false, 5)), Decision::Apply);
        assert_eq!(decide(Some(l.rank()), r(false, 4)), Decision::Unchanged);
        assert_eq!(decide(Some(l.rank()), r(true, 2)), Decision::Apply);
    }

    #[test]
    fn a_lookup_never_touches_a_terminal_state_nor_one_an_event_changed_meanwhile() {
        let pass = state(true, Some(3), Some("COMPLETED"));
        let l = SessionState::from_lookup(&pass.request_id, Some(&pass), "IN PROGRESS", "x".into());
        assert!(!l.terminal);
        assert_eq!(decide_lookup(Some(&pass), Some(&pass), &l), Decision::Stale);
        // Read at seq 4, an event at seq 5 landed before the write.
        let basis = state(false, Some(4), None);
        let now = state(false, Some(5), None);
        let l = SessionState::from_lookup(&basis.request_id, Some(&basis), "PENDING", "x".into());
        assert_eq!(decide_lookup(Some(&now), Some(&basis), &l), Decision::Stale);
        // Read as missing, an event landed before the write.
        let l = SessionState::from_lookup(&basis.request_id, None, "INIT", "x".into());
        assert_eq!(decide_lookup(Some(&now), None, &l), Decision::Stale);
        assert_eq!(decide_lookup(None, None, &l), Decision::Apply);
        assert_eq!(decide_lookup(None, Some(&basis), &l), Decision::Stale);
    }

    #[test]
    fn a_lookup_of_a_session_without_events_validates_with_no_event_pointer() {
        let l = SessionState::from_lookup(
            "4ED2EC66-9471-415D-99CE-7BD1742FC2B8",
            None,
            "IN PROGRESS",
            "2026-01-01T00:01:00.123Z".into(),
        );
        assert_eq!(l.rank(), r(false, 0));
        assert_eq!(l.event_id, None);
        let v = serde_json::to_value(&l).unwrap();
        assert_eq!(
            crate::schema::Schemas::get().check_session_state(&v),
            Ok(())
        );
    }

    #[test]
    fn a_state_from_an_event_validates_and_carries_no_result_field() {
        let event: EventFields = serde_json::from_value(serde_json::json!({
            "schema_version": 1,
            "event_id": "0190a0b4-1c2d-8e3f-9a4b-5c6d7e8f9a0b",
            "type": "completed.pass",
            "request_id": "4ED2EC66-9471-415D-99CE-7BD1742FC2B8",
            "status": "PASS",
            "reference": "ref-1",
            "received_at": "2026-01-01T00:00:00.000Z",
            "progress": {"stops": 3},
            "result": {"request_id": "4ED2EC66-9471-415D-99CE-7BD1742FC2B8", "status": "PASS", "email": "jane@example.com"}
        }))
        .unwrap();
        let s = SessionState::from_event(event, 7, Source::from_header(Some("poll")));
        assert_eq!(s.request_id, "4ed2ec66-9471-415d-99ce-7bd1742fc2b8");
        assert_eq!(s.current_status.as_deref(), Some("COMPLETED"));
        assert_eq!(s.rank(), r(true, 7));
        assert_eq!(s.source, Source::Poll);
        let v = serde_json::to_value(&s).unwrap();
        assert_eq!(
            crate::schema::Schemas::get().check_session_state(&v),
            Ok(())
        );
        assert!(!v.to_string().contains("jane@"), "{v}");
    }
}
