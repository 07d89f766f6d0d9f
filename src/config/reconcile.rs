//! `[reconcile]`: the reconciler (watched sessions polled against the VX API) and its
//! work-queue stream. Parses and checks values only; whether it runs is [`Config::reconcile_enabled`](super::Config::reconcile_enabled).

use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::{reject_if, validate_name, ConfigError, StreamConfig};

/// `[reconcile]` (see `crate::reconcile`).
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct ReconcileConfig {
    /// Run the reconciler and serve `{prefix}.watch`; unset: on when the status service (with
    /// its VX credentials) and the session view are on.
    pub enabled: Option<bool>,
    /// Every non-terminal webhook or replayed event registers its session (done by the projector).
    pub watch_pending: bool,
    /// Delays between checks of a watched session; the last one repeats.
    #[serde(with = "durations")]
    pub schedule: Vec<Duration>,
    /// A watched session still not terminal this long after its registration is given up
    /// (`{prefix}.expired`).
    #[serde(with = "humantime_serde")]
    pub give_up_after: Duration,
    /// The work-queue stream (one message per watched session).
    pub stream: String,
    /// Replicas of the work-queue stream; unset means `nats.stream.replicas`.
    pub replicas: Option<usize>,
    /// Checks in flight per replica.
    pub concurrency: usize,
    /// Re-check delay when VX is unavailable (5xx, timeout, 429, circuit open); the step is not
    /// advanced.
    #[serde(with = "humantime_serde")]
    pub unavailable_delay: Duration,
}

impl ReconcileConfig {
    /// Checks the section's keys (when the reconciler runs); names the first bad key.
    pub fn validate(&self, stream: &StreamConfig, bucket: &str) -> Result<(), ConfigError> {
        let r = self;
        reject_if(
            r.schedule.is_empty(),
            "reconcile.schedule",
            "must list at least one delay",
        )?;
        reject_if(
            r.schedule.iter().any(Duration::is_zero),
            "reconcile.schedule",
            "every delay must be above 0",
        )?;
        reject_if(
            r.give_up_after.is_zero(),
            "reconcile.give_up_after",
            "must be above 0",
        )?;
        validate_name("reconcile.stream", &r.stream)?;
        reject_if(
            r.stream == stream.name || r.stream == format!("KV_{bucket}"),
            "reconcile.stream",
            "must differ from the event stream and the session bucket's stream",
        )?;
        if let Some(n) = r.replicas {
            reject_if(
                !(1..=5).contains(&n),
                "reconcile.replicas",
                "must be 1 to 5",
            )?;
        }
        reject_if(
            r.concurrency == 0,
            "reconcile.concurrency",
            "must be at least 1",
        )?;
        reject_if(
            r.unavailable_delay.is_zero(),
            "reconcile.unavailable_delay",
            "must be above 0",
        )?;
        Ok(())
    }

    /// The work-queue stream's replicas: `reconcile.replicas`, else the event stream's.
    pub fn replicas_or(&self, stream: &StreamConfig) -> usize {
        self.replicas.unwrap_or(stream.replicas)
    }
}

/// A list of durations written as humantime strings (`["1m", "2m"]`).
mod durations {
    use std::time::Duration;

    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(v: &[Duration], s: S) -> Result<S::Ok, S::Error> {
        s.collect_seq(v.iter().map(|d| humantime::format_duration(*d).to_string()))
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<Duration>, D::Error> {
        let raw = Vec::<String>::deserialize(d)?;
        raw.iter()
            .map(|s| humantime::parse_duration(s).map_err(serde::de::Error::custom))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use crate::config::Config;

    fn env(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        [
            ("VXB_WEBHOOK__AUTH__MODE", "none"),
            ("VXB_STATUS__ENABLED", "true"),
            ("VXB_UPSTREAM__TOKEN", "t"),
        ]
        .iter()
        .chain(pairs)
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
    }

    #[test]
    fn the_reconciler_is_on_by_default_where_status_and_sessions_are() {
        let c = Config::load(None, env(&[])).unwrap();
        assert!(c.reconcile_enabled());
        assert_eq!(c.reconcile.schedule.len(), 8);
        assert_eq!(
            c.reconcile.schedule[7],
            std::time::Duration::from_secs(6 * 3600)
        );
        let off = Config::load(None, env(&[("VXB_RECONCILE__ENABLED", "false")])).unwrap();
        assert!(!off.reconcile_enabled());
        let no_view = Config::load(None, env(&[("VXB_SESSIONS__ENABLED", "false")])).unwrap();
        assert!(!no_view.reconcile_enabled());
        let no_status = Config::load(
            None,
            vec![("VXB_WEBHOOK__AUTH__MODE".into(), "none".into())],
        )
        .unwrap();
        assert!(!no_status.reconcile_enabled());
    }

    #[test]
    fn bad_reconcile_settings_name_their_key() {
        let cases: [(&[(&str, &str)], &str); 6] = [
            (
                &[
                    ("VXB_RECONCILE__ENABLED", "true"),
                    ("VXB_SESSIONS__ENABLED", "false"),
                ],
                "reconcile.enabled",
            ),
            (&[("VXB_RECONCILE__SCHEDULE", "[]")], "reconcile.schedule"),
            (
                &[("VXB_RECONCILE__SCHEDULE", r#"["1m", "0s"]"#)],
                "reconcile.schedule",
            ),
            (
                &[("VXB_RECONCILE__GIVE_UP_AFTER", "0s")],
                "reconcile.give_up_after",
            ),
            (
                &[("VXB_RECONCILE__CONCURRENCY", "0")],
                "reconcile.concurrency",
            ),
            (
                &[("VXB_RECONCILE__STREAM", "VX_EVENTS")],
                "reconcile.stream",
            ),
        ];
        for (vars, key) in cases {
            let mut vars = vars.to_vec();
            if key == "reconcile.stream" {
                vars.push(("VXB_NATS__STREAM__NAME", "VX_EVENTS"));
            }
            let err = Config::load(None, env(&vars)).unwrap_err();
            assert_eq!(err.key, key, "{vars:?}: {err}");
        }
        // `reconcile.enabled = true` with no status service at all is refused too.
        let err = Config::load(
            None,
            vec![
                ("VXB_WEBHOOK__AUTH__MODE".into(), "none".into()),
                ("VXB_RECONCILE__ENABLED".into(), "true".into()),
            ],
        )
        .unwrap_err();
        assert_eq!(err.key, "reconcile.enabled", "{err}");
        assert!(err.message.contains("status.enabled"), "{err}");
    }
}
