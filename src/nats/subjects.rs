//! NATS subject naming: [`Subjects`] is every subject vx-bridge uses, under the configured
//! prefix (fixed suffixes only: no value from a payload ever becomes a token), and
//! [`subject_matches`] is how NATS matches a subject filter.
//!
//! Pure: this module must not do I/O, and must not decide an event's kind (that is
//! [`crate::event::EventKind::classify`]).

use crate::event::{Destinations, EventKind};

/// Every subject vx-bridge uses, under one prefix.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Subjects {
    prefix: String,
    /// The event subjects in [`EventKind::ALL`] order, formatted once rather than per webhook.
    events: [String; 4],
}

impl Subjects {
    /// `prefix` must already be validated (`config::validate`).
    pub fn new(prefix: &str) -> Self {
        Self {
            prefix: prefix.to_owned(),
            events: EventKind::ALL.map(|k| format!("{prefix}.{}", k.suffix())),
        }
    }

    /// The prefix.
    pub fn prefix(&self) -> &str {
        &self.prefix
    }

    /// Subject of an event kind.
    pub fn event(&self, kind: EventKind) -> String {
        self.events[kind as usize].clone()
    }

    /// Where authenticated bodies that failed parsing or the schema are kept.
    pub fn rejected(&self) -> String {
        format!("{}.rejected", self.prefix)
    }

    /// Request-reply: status of a session.
    pub fn status_get(&self) -> String {
        format!("{}.status.get", self.prefix)
    }

    /// Request-reply: result of a session.
    pub fn result_get(&self) -> String {
        format!("{}.result.get", self.prefix)
    }

    /// Request-reply: register a session with the reconciler.
    pub fn watch(&self) -> String {
        format!("{}.watch", self.prefix)
    }

    /// Where the reconciler tells that it gave a watched session up (an event stream subject).
    pub fn expired(&self) -> String {
        format!("{}.expired", self.prefix)
    }

    /// Where an erasure is told (an event stream subject): consumers delete their copies.
    pub fn erased(&self) -> String {
        format!("{}.erased", self.prefix)
    }

    /// Request-reply: erase one session's personal data.
    pub fn erase(&self) -> String {
        format!("{}.erase", self.prefix)
    }

    /// The work-queue subject of one watched session: `{prefix}.reconcile.<request_id>`, the
    /// id lower-cased. `request_id` must be a validated UUID (no `.`, `*` or `>`).
    pub fn reconcile(&self, request_id: &str) -> String {
        format!(
            "{}.reconcile.{}",
            self.prefix,
            request_id.to_ascii_lowercase()
        )
    }

    /// The work-queue stream's subjects, `{prefix}.reconcile.*` (the event stream's are
    /// explicit and never overlap them).
    pub fn reconcile_all(&self) -> String {
        format!("{}.reconcile.*", self.prefix)
    }

    /// The subjects the stream must capture, listed explicitly.
    pub fn stream_subjects(&self) -> Vec<String> {
        let mut s: Vec<String> = EventKind::ALL.iter().map(|k| self.event(*k)).collect();
        s.push(self.rejected());
        s.push(self.expired());
        s.push(self.erased());
        s
    }

    /// The request-reply subjects, which the stream must never capture.
    pub fn request_subjects(&self) -> Vec<String> {
        vec![
            self.status_get(),
            self.result_get(),
            self.watch(),
            self.erase(),
        ]
    }
}

impl Destinations for Subjects {
    fn event(&self, kind: EventKind) -> String {
        Subjects::event(self, kind)
    }

    fn rejected(&self) -> String {
        Subjects::rejected(self)
    }
}

/// NATS subject matching: `*` matches one token, `>` one or more trailing tokens.
pub fn subject_matches(filter: &str, subject: &str) -> bool {
    let mut f = filter.split('.');
    let mut s = subject.split('.');
    loop {
        match (f.next(), s.next()) {
            (Some(">"), Some(_)) => return true,
            (Some("*"), Some(_)) => {}
            (Some(a), Some(b)) if a == b => {}
            (None, None) => return true,
            _ => return false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn precomputed_event_subjects_are_prefix_dot_suffix() {
        let s = Subjects::new("a.b");
        for kind in EventKind::ALL {
            assert_eq!(s.event(kind), format!("a.b.{}", kind.suffix()));
        }
    }

    #[test]
    fn status_classifies_to_the_documented_subjects() {
        let s = Subjects::new("verification");
        let cases = [
            ("PASS", "verification.completed.pass"),
            ("FAIL", "verification.completed.fail"),
            ("PENDING", "verification.pending"),
            ("", "verification.pending"),
            ("REVIEW", "verification.unrecognized"),
            ("pass", "verification.unrecognized"),
        ];
        for (status, subject) in cases {
            assert_eq!(s.event(EventKind::classify(status)), subject, "{status}");
        }
    }

    #[test]
    fn stream_subjects_are_explicit_and_exclude_request_subjects() {
        let s = Subjects::new("acme.kyc");
        assert_eq!(
            s.stream_subjects(),
            [
                "acme.kyc.completed.pass",
                "acme.kyc.completed.fail",
                "acme.kyc.pending",
                "acme.kyc.unrecognized",
                "acme.kyc.rejected",
                "acme.kyc.expired",
                "acme.kyc.erased"
            ]
        );
        for r in s.request_subjects() {
            assert!(!s.stream_subjects().contains(&r));
        }
        // The work queue's subjects never meet the event stream's.
        let work = s.reconcile("4ED2EC66-9471-415D-99CE-7BD1742FC2B8");
        assert_eq!(
            work,
            "acme.kyc.reconcile.4ed2ec66-9471-415d-99ce-7bd1742fc2b8"
        );
        assert!(subject_matches(&s.reconcile_all(), &work));
        for e in s.stream_subjects().iter().chain(&s.request_subjects()) {
            assert!(!subject_matches(&s.reconcile_all(), e), "{e}");
            assert!(!subject_matches(e, &work), "{e}");
        }
    }

    #[test]
    fn wildcards_match_like_nats() {
        assert!(subject_matches("a.b", "a.b"));
        assert!(subject_matches("a.*", "a.b"));
        assert!(!subject_matches("a.*", "a.b.c"));
        assert!(subject_matches("a.>", "a.b.c"));
        assert!(!subject_matches("a.>", "a"));
        assert!(subject_matches(">", "a"));
        assert!(!subject_matches("a.b", "a.b.c"));
        assert!(!subject_matches("a.b.c", "a.b"));
    }
}
