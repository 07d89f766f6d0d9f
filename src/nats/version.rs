//! What the NATS server's version (from its `INFO`) means for the bridge: whether it is
//! supported, whether it has a known data-loss bug, and which server features it offers.
//!
//! Pure functions on the version string the server reports; the wiring (reading it after each
//! connect, logging, the `vx_bridge_nats_server_info` gauge) is in [`crate::app`]. This module
//! must not do I/O, log, or touch metrics.
//!
//! The matrix behind these thresholds is in the README ("NATS server versions") and
//! `docs/RELIABILITY.md`; `scripts/nats/nats-servers.sh` installs it.

use std::fmt;

/// The oldest server version the bridge is tested against and supports (Debian 12's package).
pub const OLDEST_SUPPORTED: (u64, u64, u64) = (2, 9, 10);

/// Why a version is or is not fit to run with; the `support` label of the gauge.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Support {
    /// Supported.
    Ok,
    /// 2.10.20 to 2.10.22: a process crash could lose whole streams (fixed in 2.10.23).
    DataLoss,
    /// Older than [`OLDEST_SUPPORTED`], or a version string we cannot read.
    Unsupported,
}

impl Support {
    /// The label value: `ok`, `data_loss`, `unsupported`.
    pub fn label(self) -> &'static str {
        match self {
            Support::Ok => "ok",
            Support::DataLoss => "data_loss",
            Support::Unsupported => "unsupported",
        }
    }
}

/// Server features the bridge may use, by version. Nothing uses them yet: they are what the
/// session view (per-message TTL) and the reconciler (scheduled messages) will check before
/// turning a feature on, with a fallback on older servers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Capabilities {
    /// Compare-and-set on replicated KV buckets is correct (2.9.22 fixed two racing updates both
    /// succeeding).
    pub replicated_kv_cas: bool,
    /// Per-message TTL (`Nats-TTL`, stream `allow_msg_ttl`) and subject delete markers (2.11).
    pub message_ttl: bool,
    /// Scheduled messages (`Nats-Schedule`, stream `allow_msg_schedules`) (2.12).
    pub message_schedules: bool,
    /// Atomic batch publish (stream `allow_atomic`) (2.12).
    pub atomic_batch: bool,
}

/// A server version as reported in `INFO`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServerVersion {
    /// `None` when the string is not a semantic version.
    parsed: Option<semver::Version>,
}

impl ServerVersion {
    /// Reads `INFO`'s `version` (e.g. `2.10.21`, `2.12.0-RC.1`, with or without a leading `v`).
    pub fn parse(reported: &str) -> Self {
        let s = reported.trim();
        let s = s.strip_prefix('v').unwrap_or(s);
        Self {
            parsed: semver::Version::parse(s).ok(),
        }
    }

    /// `(major, minor, patch)`; a pre-release counts as its release (`2.11.0-RC.1` has 2.11's
    /// features), since release candidates carry them.
    fn triple(&self) -> Option<(u64, u64, u64)> {
        self.parsed.as_ref().map(|v| (v.major, v.minor, v.patch))
    }

    /// The `version` label: `major.minor.patch[-pre]`, or `unknown`. Built from the parsed parts
    /// (only `[0-9A-Za-z.-]`, bounded), never the raw string.
    pub fn label(&self) -> String {
        match &self.parsed {
            Some(v) if v.pre.is_empty() => format!("{}.{}.{}", v.major, v.minor, v.patch),
            Some(v) if v.pre.len() <= 32 => {
                format!("{}.{}.{}-{}", v.major, v.minor, v.patch, v.pre)
            }
            Some(v) => format!("{}.{}.{}-pre", v.major, v.minor, v.patch),
            None => "unknown".into(),
        }
    }

    /// Whether the bridge supports this version.
    pub fn support(&self) -> Support {
        match self.triple() {
            None => Support::Unsupported,
            Some(t) if t < OLDEST_SUPPORTED => Support::Unsupported,
            Some((2, 10, p)) if (20..=22).contains(&p) => Support::DataLoss,
            Some(_) => Support::Ok,
        }
    }

    /// What this version offers.
    pub fn capabilities(&self) -> Capabilities {
        let Some(t) = self.triple() else {
            return Capabilities::default();
        };
        Capabilities {
            replicated_kv_cas: t >= (2, 9, 22),
            message_ttl: t >= (2, 11, 0),
            message_schedules: t >= (2, 12, 0),
            atomic_batch: t >= (2, 12, 0),
        }
    }

    /// What to warn about when the event stream is replicated (`replicas` > 1), if anything:
    /// on 2.9.x (every supported 2.9, i.e. 2.9.10 on) our partition suite saw a replica diverge
    /// after a heal: the isolated ex-leader kept an entry it never committed, the majority stored
    /// an acknowledged event at that sequence, and the ex-leader never rolled back (it then
    /// dropped the refused delivery's retry as a duplicate, shifting every later sequence).
    /// A consumer the server places on that replica misses the acknowledged event.
    /// On 2.10.x (2.10.26) the event stream stayed whole, but the replicated durable consumer of
    /// the session view did not: its replicas disagreed on the ack floor, and one event stayed
    /// ack-pending, never redelivered, so the view missed it (and in another run a watch was
    /// lost). Not seen on 2.12.8 or 2.15.1. `docs/RELIABILITY.md`, "Partitions and pauses on
    /// every version", has the runs; versions not in that matrix (2.11) get no warning here.
    pub fn replicated_stream_warning(&self, replicas: usize) -> Option<String> {
        if replicas < 2 {
            return None;
        }
        let label = self.label();
        match self.triple() {
            Some((2, 9, _)) => Some(format!(
                "NATS server {label}: replicated streams can diverge after a network partition on 2.9 (seen in our partition suite: a replica kept a write it never committed in place of an acknowledged event, and consumers on that replica miss the acknowledged event); the stream has {replicas} replicas: upgrade the server to 2.12.8 or newer"
            )),
            Some((2, 10, _)) => Some(format!(
                "NATS server {label}: after a network partition on 2.10, a replicated consumer can stop redelivering an event (seen in our partition suite: the session view missed one event and one reconciler watch was lost; the event stream kept every event); the stream has {replicas} replicas: after network incidents rebuild the view (vx-bridge sessions rebuild), or upgrade the server to 2.12.8 or newer"
            )),
            _ => None,
        }
    }

    /// What to warn about at connect, if anything: the data-loss releases, versions below the
    /// oldest supported, and 2.9 (end of life upstream; enough for today's features only).
    pub fn warning(&self) -> Option<String> {
        let label = self.label();
        match (self.support(), self.triple()) {
            (Support::DataLoss, _) => Some(format!(
                "NATS server {label} can lose whole streams when its process crashes (fixed in 2.10.23): upgrade the server"
            )),
            (Support::Unsupported, None) => Some(format!(
                "cannot read the NATS server's version ({label}); vx-bridge supports {} and newer",
                Oldest
            )),
            (Support::Unsupported, Some(_)) => Some(format!(
                "NATS server {label} is older than the oldest vx-bridge supports ({}): upgrade the server",
                Oldest
            )),
            (Support::Ok, Some((2, 9, _))) => Some(format!(
                "NATS server {label}: 2.9 is out of support upstream; vx-bridge passes its tests on it, but before 2.9.22 compare-and-set on a replicated KV bucket can let two racing updates both succeed, so run the session view with sessions.replicas = 1 there, or upgrade the server"
            )),
            (Support::Ok, _) => None,
        }
    }
}

/// Displays [`OLDEST_SUPPORTED`].
struct Oldest;

impl fmt::Display for Oldest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let (a, b, c) = OLDEST_SUPPORTED;
        write!(f, "{a}.{b}.{c}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn v(s: &str) -> ServerVersion {
        ServerVersion::parse(s)
    }

    #[test]
    fn versions_are_read_as_servers_report_them() {
        assert_eq!(v("2.15.1").label(), "2.15.1");
        assert_eq!(v("v2.9.10").label(), "2.9.10");
        assert_eq!(v(" 2.12.0-RC.1 ").label(), "2.12.0-RC.1");
        assert_eq!(v("2.11.0+build.7").label(), "2.11.0");
        for bad in [
            "",
            "2.10",
            "two",
            "2.10.x",
            "2.10.21\"} 1\nevil{x=\"",
            "99999999999999999999.0.0",
        ] {
            assert_eq!(v(bad).label(), "unknown", "{bad:?}");
            assert_eq!(v(bad).support(), Support::Unsupported, "{bad:?}");
            assert_eq!(v(bad).capabilities(), Capabilities::default(), "{bad:?}");
        }
        // A label never carries more than a bounded pre-release.
        let long = format!("2.12.0-{}", "a".repeat(100));
        assert_eq!(v(&long).label(), "2.12.0-pre");
    }

    #[test]
    fn the_data_loss_releases_are_exactly_2_10_20_to_2_10_22() {
        for s in ["2.10.20", "2.10.21", "2.10.22"] {
            assert_eq!(v(s).support(), Support::DataLoss, "{s}");
            assert!(v(s).warning().is_some_and(|w| w.contains("lose")), "{s}");
        }
        for s in ["2.10.19", "2.10.23", "2.10.26", "2.11.20", "2.9.21"] {
            assert_eq!(v(s).support(), Support::Ok, "{s}");
        }
        assert_eq!(Support::DataLoss.label(), "data_loss");
    }

    #[test]
    fn below_the_oldest_supported_is_unsupported() {
        for s in ["2.9.9", "2.8.4", "1.4.0", "0.0.1"] {
            assert_eq!(v(s).support(), Support::Unsupported, "{s}");
            assert!(v(s).warning().is_some_and(|w| w.contains("older")), "{s}");
        }
        for s in ["2.9.10", "2.9.25", "2.10.0", "2.15.1", "3.0.0"] {
            assert_eq!(v(s).support(), Support::Ok, "{s}");
        }
        assert_eq!(Support::Unsupported.label(), "unsupported");
        assert_eq!(Support::Ok.label(), "ok");
    }

    #[test]
    fn only_2_9_among_supported_versions_gets_a_warning() {
        assert!(v("2.9.10").warning().is_some_and(|w| w.contains("2.9.22")));
        for s in ["2.10.0", "2.10.26", "2.11.11", "2.12.8", "2.15.1"] {
            assert_eq!(v(s).warning(), None, "{s}");
        }
    }

    #[test]
    fn replicated_streams_are_warned_about_on_2_9_and_2_10_only() {
        for s in ["2.9.10", "2.9.25"] {
            let w = v(s).replicated_stream_warning(3);
            assert!(
                w.as_deref()
                    .is_some_and(|w| w.contains("diverge") && w.contains("3 replicas")),
                "{s}: {w:?}"
            );
            assert!(v(s).replicated_stream_warning(2).is_some(), "{s}");
            // One replica has nothing to diverge from.
            assert_eq!(v(s).replicated_stream_warning(1), None, "{s}");
        }
        for s in ["2.10.0", "2.10.26"] {
            let w = v(s).replicated_stream_warning(3);
            assert!(
                w.as_deref()
                    .is_some_and(|w| w.contains("redeliver") && w.contains("rebuild")),
                "{s}: {w:?}"
            );
            assert_eq!(v(s).replicated_stream_warning(1), None, "{s}");
        }
        // Where the partition matrix saw nothing (2.12.8, 2.15.1), or did not run (2.11; older
        // than supported and unreadable versions are warned about elsewhere): nothing.
        for s in ["2.11.11", "2.12.8", "2.15.1", "3.0.0", "2.8.4", "bad"] {
            assert_eq!(v(s).replicated_stream_warning(3), None, "{s}");
        }
    }

    #[test]
    fn capabilities_switch_on_at_their_release() {
        let caps = |s| v(s).capabilities();
        assert!(!caps("2.9.21").replicated_kv_cas);
        assert!(caps("2.9.22").replicated_kv_cas);
        assert!(caps("2.10.0").replicated_kv_cas);

        assert!(!caps("2.10.26").message_ttl);
        assert!(caps("2.11.0").message_ttl);
        assert!(caps("2.11.0-RC.1").message_ttl);

        for s in ["2.11.11", "2.11.99"] {
            assert!(!caps(s).message_schedules, "{s}");
            assert!(!caps(s).atomic_batch, "{s}");
        }
        for s in ["2.12.0", "2.12.8", "2.15.1"] {
            let c = caps(s);
            assert!(
                c.message_schedules && c.atomic_batch && c.message_ttl,
                "{s}"
            );
        }
        assert_eq!(
            caps("2.9.10"),
            Capabilities {
                replicated_kv_cas: false,
                message_ttl: false,
                message_schedules: false,
                atomic_batch: false,
            }
        );
    }
}
