//! What `vx-bridge replay` prints on stdout: a table (one line per rejected message, then a
//! summary line), or with `--json` one JSON object per line (`"type": "message"`, then one
//! `"type": "summary"`). Writes only to the writer it is given; no NATS.

use std::io::Write;

use serde::Serialize;

use super::plan::{Action, Row};

/// The counts of a run, and its exit code.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Summary {
    /// `--dry-run`: nothing was published and no marker written.
    pub dry_run: bool,
    /// Rejected messages selected.
    pub selected: u64,
    /// Passing bodies a dry run would publish.
    pub would_publish: u64,
    /// Published and stored.
    pub published: u64,
    /// Published, but the stream already held the event (duplicate window).
    pub already_stored: u64,
    /// Skipped: replayed before (marker).
    pub already_replayed: u64,
    /// Still failing today's checks: left in place.
    pub still_failing: u64,
    /// Not replayable (`event_too_large`): left in place.
    pub skipped: u64,
}

impl Summary {
    /// Counts one row.
    pub fn count(&mut self, action: Action) {
        self.selected += 1;
        let n = match action {
            Action::WouldPublish => &mut self.would_publish,
            Action::Published => &mut self.published,
            Action::AlreadyStored => &mut self.already_stored,
            Action::AlreadyReplayed => &mut self.already_replayed,
            Action::StillFails => &mut self.still_failing,
            Action::Skipped => &mut self.skipped,
        };
        *n += 1;
    }

    /// 0 when nothing selected is left failing, 1 when some bodies still fail or were
    /// skipped (reported, left in place).
    pub fn exit_code(&self) -> u8 {
        u8::from(self.still_failing + self.skipped > 0)
    }
}

/// Prints rows as they come, then the summary.
pub struct Printer<W: Write> {
    out: W,
    json: bool,
    header_done: bool,
}

#[derive(Serialize)]
struct Tagged<'a, T: Serialize> {
    #[serde(rename = "type")]
    kind: &'a str,
    #[serde(flatten)]
    inner: &'a T,
}

impl<W: Write> Printer<W> {
    /// A printer of the table (`json` false) or of JSON lines.
    pub fn new(out: W, json: bool) -> Self {
        Self {
            out,
            json,
            header_done: false,
        }
    }

    /// One message's line.
    pub fn row(&mut self, row: &Row) -> std::io::Result<()> {
        if self.json {
            return self.json_line("message", row);
        }
        if !self.header_done {
            self.header_done = true;
            writeln!(
                self.out,
                "{:>10}  {:<24}  {:<16}  {:<10}  ACTION",
                "SEQ", "RECEIVED", "REASON THEN", "PASSES NOW"
            )?;
        }
        let passes = match row.passes_now {
            Some(true) => "yes",
            Some(false) => "no",
            None => "-",
        };
        let mut action = row.action.label().to_owned();
        match (row.action, &row.subject, row.event_seq) {
            (Action::WouldPublish, Some(s), _) => action.push_str(&format!(" to {s}")),
            (Action::Published | Action::AlreadyStored, Some(s), Some(seq)) => {
                action.push_str(&format!(" to {s} (seq {seq})"));
            }
            (Action::AlreadyReplayed, _, Some(seq)) => action.push_str(&format!(" (as seq {seq})")),
            _ => {}
        }
        if let Some(reason) = row.reason_now {
            let first = row.errors.first().map_or(String::new(), |e| {
                format!(": {} {}", display_path(&e.instance_path), e.message)
            });
            let more = row.errors.len().saturating_sub(1);
            let more = if more > 0 {
                format!(" (+{more} more)")
            } else {
                String::new()
            };
            action.push_str(&format!(" ({reason}{first}{more})"));
        }
        if let Some(note) = &row.note {
            action.push_str(&format!(" ({note})"));
        }
        writeln!(
            self.out,
            "{:>10}  {:<24}  {:<16}  {:<10}  {action}",
            row.seq, row.received_at, row.reason, passes
        )
    }

    /// The summary line.
    pub fn summary(&mut self, s: &Summary) -> std::io::Result<()> {
        if self.json {
            return self.json_line("summary", s);
        }
        let published = if s.dry_run {
            format!("{} would be published", s.would_publish)
        } else {
            format!(
                "{} published ({} already stored)",
                s.published + s.already_stored,
                s.already_stored
            )
        };
        writeln!(
            self.out,
            "{}{} selected: {published}, {} already replayed, {} still failing, {} skipped",
            if s.dry_run {
                "dry run, nothing published: "
            } else {
                ""
            },
            s.selected,
            s.already_replayed,
            s.still_failing,
            s.skipped
        )?;
        self.out.flush()
    }

    fn json_line<T: Serialize>(&mut self, kind: &str, value: &T) -> std::io::Result<()> {
        let line = serde_json::to_string(&Tagged { kind, inner: value })?;
        writeln!(self.out, "{line}")
    }
}

fn display_path(path: &str) -> &str {
    if path.is_empty() {
        "/"
    } else {
        path
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::schema::Violation;

    fn row(action: Action) -> Row {
        Row {
            seq: 12,
            received_at: "2026-12-02T10:00:00.000Z".into(),
            reason: "schema_violation".into(),
            passes_now: Some(action != Action::StillFails),
            action,
            request_id: None,
            subject: Some("vx.verification.completed.pass".into()),
            msg_id: None,
            event_seq: Some(40),
            reason_now: None,
            errors: Vec::new(),
            note: None,
        }
    }

    #[test]
    fn json_lines_are_tagged_objects_and_exit_codes_count_failures() {
        let mut out = Vec::new();
        let mut p = Printer::new(&mut out, true);
        let mut s = Summary::default();
        let mut failing = row(Action::StillFails);
        failing.reason_now = Some("schema_violation");
        failing.errors = vec![Violation {
            instance_path: "/status".into(),
            message: "value is not of type \"string\"".into(),
        }];
        for r in [row(Action::Published), failing] {
            s.count(r.action);
            p.row(&r).unwrap();
        }
        p.summary(&s).unwrap();
        let lines: Vec<serde_json::Value> = String::from_utf8(out)
            .unwrap()
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect();
        assert_eq!(lines.len(), 3);
        assert_eq!(lines[0]["type"], "message");
        assert_eq!(lines[0]["action"], "published");
        assert_eq!(lines[0]["event_seq"], 40);
        assert_eq!(lines[1]["errors"][0]["instance_path"], "/status");
        assert_eq!(lines[2]["type"], "summary");
        assert_eq!(lines[2]["still_failing"], 1);
        assert_eq!(s.exit_code(), 1);
        let mut ok = Summary::default();
        ok.count(Action::AlreadyReplayed);
        assert_eq!(ok.exit_code(), 0);
    }

    #[test]
    fn the_table_has_a_header_a_line_per_message_and_a_summary() {
        let mut out = Vec::new();
        let mut p = Printer::new(&mut out, false);
        let mut s = Summary {
            dry_run: true,
            ..Default::default()
        };
        let r = row(Action::WouldPublish);
        s.count(r.action);
        p.row(&r).unwrap();
        p.summary(&s).unwrap();
        let text = String::from_utf8(out).unwrap();
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), 3, "{text}");
        assert!(lines[0].contains("PASSES NOW"));
        assert!(lines[1].contains("would publish to vx.verification.completed.pass"));
        assert!(
            lines[2].starts_with("dry run, nothing published: 1 selected: 1 would be published")
        );
    }
}
