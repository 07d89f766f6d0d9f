//! Which parts this process runs, decided once from the configuration, and how each one is
//! stopped: the shutdown budget is named here and derived from the parts' own bounds.
//! It starts nothing; `app::run_prepared` starts the parts the roles name.

use std::time::Duration;

use tokio::task::JoinHandle;

use crate::config::Config;
use crate::status::StatusHandle;

/// The parts a process runs. The README's "Splitting the roles" describes the combinations.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Roles {
    /// `webhook.enabled`: the HTTP webhook ingress.
    pub ingress: bool,
    /// `status.enabled`: the status endpoints.
    pub status: bool,
    /// `sessions.enabled`: the session projector.
    pub projector: bool,
    /// [`Config::reconcile_enabled`]: the reconciler (needs the status service and the view).
    pub reconciler: bool,
}

impl Roles {
    /// The roles of `config`.
    pub fn of(config: &Config) -> Self {
        Self {
            ingress: config.webhook.enabled,
            status: config.status.enabled,
            projector: config.sessions.enabled,
            reconciler: config.reconcile_enabled(),
        }
    }

    /// The event stream is kept in place where events are published: by the ingress, or by the
    /// reconciler in polling mode.
    pub fn keeps_stream(self) -> bool {
        self.ingress || self.reconciler
    }

    /// The data keys are used where personal data is sealed (ingress, reconciler) or opened
    /// and erased (status).
    pub fn uses_keys(self) -> bool {
        self.ingress || self.status
    }

    /// The status service's terminal states are shared with the projector in this process.
    pub fn shares_terminal_states(self) -> bool {
        self.status && self.projector
    }

    /// The view is part of readiness where the ingress runs, and in a projector-only process
    /// (the view is all it does); a status-only process stays ready without it (lookups do not
    /// depend on it).
    pub fn view_in_readiness(self) -> bool {
        self.projector && (self.ingress || !self.status)
    }
}

/// Margin a waited part gets beyond its own bound.
pub const STOP_MARGIN: Duration = Duration::from_secs(1);

/// How long draining the NATS client (flushing acks and unsubscriptions) may take.
pub const NATS_DRAIN: Duration = Duration::from_secs(5);

/// The longest a shutdown takes with these roles: the HTTP server finishes in-flight requests
/// (`http.shutdown_timeout`), then the parts stop together (the slowest bounds them), then NATS
/// drains. The chart's `terminationGracePeriodSeconds` should exceed it.
pub fn shutdown_budget(config: &Config, roles: Roles) -> Duration {
    let parts = [
        roles.status.then(|| config.upstream.timeout + STOP_MARGIN),
        roles
            .reconciler
            .then_some(crate::reconcile::CHECK_DEADLINE + STOP_MARGIN),
        roles
            .projector
            .then_some(crate::sessions::DRAIN + STOP_MARGIN),
    ];
    let slowest = parts.into_iter().flatten().max().unwrap_or_default();
    config.http.shutdown_timeout + slowest + NATS_DRAIN
}

/// A part that runs until shutdown, and how it is stopped once `shutdown` is cancelled.
#[derive(Debug)]
pub enum Part {
    /// Stops by itself on `shutdown`, after the work in hand; awaited for at most `within`.
    Drains {
        /// For the log.
        name: &'static str,
        /// Its task.
        task: JoinHandle<()>,
        /// Its own bound plus [`STOP_MARGIN`].
        within: Duration,
    },
    /// Holds nothing that must finish: aborted.
    Aborted(JoinHandle<()>),
    /// The status endpoints, stopped through their handle (bounded by `upstream.timeout`).
    Status(Box<StatusHandle>),
}

impl Part {
    /// The session projector: it acks the events in hand within [`crate::sessions::DRAIN`].
    pub fn projector(task: JoinHandle<()>) -> Self {
        Part::Drains {
            name: "session projector",
            task,
            within: crate::sessions::DRAIN + STOP_MARGIN,
        }
    }

    /// The reconciler: it finishes the checks in hand within
    /// [`crate::reconcile::CHECK_DEADLINE`].
    pub fn reconciler(task: JoinHandle<()>) -> Self {
        Part::Drains {
            name: "reconciler",
            task,
            within: crate::reconcile::CHECK_DEADLINE + STOP_MARGIN,
        }
    }

    /// Stops it.
    async fn stop(self) {
        match self {
            Part::Drains { name, task, within } => {
                if tokio::time::timeout(within, task).await.is_err() {
                    tracing::warn!(part = name, ?within, "{name} did not stop in time");
                }
            }
            Part::Aborted(task) => task.abort(),
            Part::Status(status) => status.stop().await,
        }
    }
}

/// The parts started, stopped together.
#[derive(Debug, Default)]
pub struct Running(Vec<Part>);

impl Running {
    /// Adds a started part.
    pub fn push(&mut self, part: Part) {
        self.0.push(part);
    }

    /// Stops every part, concurrently (each was told by `shutdown` at the same moment).
    pub async fn stop(self) {
        futures::future::join_all(self.0.into_iter().map(Part::stop)).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn roles_follow_the_config() {
        let mut config = Config::default();
        let defaults = Roles::of(&config);
        assert!(defaults.ingress && !defaults.status && defaults.projector);
        assert!(
            !defaults.reconciler,
            "the reconciler needs the status service"
        );
        assert!(defaults.keeps_stream() && defaults.uses_keys() && defaults.view_in_readiness());
        config.status.enabled = true;
        let all = Roles::of(&config);
        assert!(all.ingress && all.status && all.projector && all.reconciler);
        config.webhook.enabled = false;
        config.status.enabled = false;
        let projector_only = Roles::of(&config);
        assert_eq!(
            projector_only,
            Roles {
                ingress: false,
                status: false,
                projector: true,
                reconciler: false
            }
        );
        assert!(!projector_only.keeps_stream() && !projector_only.uses_keys());
        assert!(projector_only.view_in_readiness());
        config.status.enabled = true;
        let status_and_view = Roles::of(&config);
        assert!(status_and_view.reconciler && status_and_view.keeps_stream());
        assert!(!status_and_view.view_in_readiness());
    }

    #[test]
    fn the_budget_is_the_http_drain_the_slowest_part_and_the_nats_drain() {
        let mut config = Config::default();
        config.status.enabled = true;
        config.http.shutdown_timeout = Duration::from_secs(10);
        let roles = Roles::of(&config);
        assert_eq!(
            shutdown_budget(&config, roles),
            Duration::from_secs(10) + crate::reconcile::CHECK_DEADLINE + STOP_MARGIN + NATS_DRAIN
        );
        let ingress_only = Roles {
            ingress: true,
            status: false,
            projector: false,
            reconciler: false,
        };
        assert_eq!(
            shutdown_budget(&config, ingress_only),
            Duration::from_secs(10) + NATS_DRAIN
        );
    }
}
