//! Command-line interface: `serve`, `check-config`, `demo`, the operator lookups `status` and
//! `result` and `watch`, which send one request to a running status service over NATS, `sessions` and
//! `replay`, which work on the stream and buckets directly, `erase` and `keys`, and `mock-vx`, a
//! stand-in VX API for local runs.
//!
//! The arguments are here; [`run`] loads the configuration a command needs and calls it; each
//! command has its own file, and the exit codes are in `exit.rs`. This module and `main.rs` are
//! the only ones that read the environment.

use std::path::PathBuf;
use std::time::Duration;

use std::process::ExitCode;

use clap::{Args, Parser, Subcommand};

use crate::config::Config;

#[cfg(feature = "demo")]
mod demo;
mod erase;
pub mod exit;
mod keys;
mod lookup;
mod nats;
mod replay;
mod serve;
mod sessions;

/// Runs the command line's command; its exit code.
pub fn run(cli: Cli) -> ExitCode {
    match dispatch(cli) {
        Ok(code) | Err(code) => code,
    }
}

fn dispatch(cli: Cli) -> Result<ExitCode, exit::Exit> {
    let file = cli.config.as_deref();
    // The whole configuration for the service; the operator commands only send requests and
    // work on streams and buckets: they need `[nats]`, not webhook or upstream secrets.
    let service = || Config::load(file, std::env::vars()).map_err(exit::bad_config);
    let requests = || Config::load_for_requests(file, std::env::vars()).map_err(exit::bad_config);
    use lookup::Lookup;
    match cli.command {
        #[cfg(feature = "demo")]
        Command::Demo => demo::demo(file),
        #[cfg(feature = "demo")]
        Command::MockVx {
            listen,
            token,
            complete_with,
        } => demo::mock_vx(listen, &token, complete_with),
        Command::CheckConfig => serve::check_config(service()?),
        Command::Serve => serve::serve(service()?),
        Command::Status {
            request_id,
            timeout,
        } => lookup::by_id(requests()?, Lookup::Status, &request_id, timeout),
        Command::Watch {
            request_id,
            timeout,
        } => lookup::by_id(requests()?, Lookup::Watch, &request_id, timeout),
        Command::Result(args) => lookup::result(requests()?, args),
        Command::Sessions { command } => sessions::sessions(requests()?, command),
        Command::Replay(args) => replay::replay(requests()?, args),
        Command::Erase {
            request_id,
            reason,
            timeout,
        } => erase::erase(requests()?, &request_id, reason.as_deref(), timeout),
        Command::Keys {
            command: KeysCommand::Rewrap { json },
        } => keys::rewrap(requests()?, json),
    }
}

/// vx-bridge: VX verification webhooks → NATS JetStream events, and status lookups over NATS.
#[derive(Debug, Parser)]
#[command(name = "vx-bridge", version, about)]
pub struct Cli {
    /// TOML configuration file (defaults, then this file, then VXB_SECTION__KEY variables).
    #[arg(long, global = true, env = "VXB_CONFIG")]
    pub config: Option<PathBuf>,
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// Subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the service.
    Serve,
    /// Validate the configuration and print the effective values, secrets redacted.
    CheckConfig,
    /// Show the whole flow on this machine: NATS (found or started), a mock VX API, the bridge,
    /// signed sample webhooks, the events a subscriber receives, a status lookup, and a watched
    /// session completed by polling.
    #[cfg(feature = "demo")]
    Demo,
    /// Ask the status service for a session's current status and print the reply.
    /// Uses only the `[nats]` settings. Exit 0 on success, 1 on an error reply, 69 when no
    /// service answers.
    Status {
        /// The session's request_id (a UUID).
        request_id: String,
        /// How long to wait for the reply.
        #[arg(long, default_value = "10s", value_parser = humantime::parse_duration)]
        timeout: Duration,
    },
    /// Ask the status service for a session's full result and print it (exit codes as `status`).
    Result(ResultArgs),
    /// Read or rebuild the session view (the KV bucket `sessions.bucket`). Uses the `[nats]` and
    /// `[sessions]` settings.
    Sessions {
        /// What to do with the view.
        #[command(subcommand)]
        command: SessionsCommand,
    },
    /// Publish again the bodies kept on `{prefix}.rejected` that pass this configuration's
    /// checks today (`webhook.schema_file`, strict JSON), as the webhook's events with
    /// `vx-source: replay` and `vx-replay-of: <seq>`; the rejected copies stay. Prints a plan:
    /// one line per rejected message (seq, received, reason then, passes now?, action), then a
    /// summary line. A marker per replayed message (bucket `replay.bucket`) makes a second run
    /// store nothing. Bodies rejected as `event_too_large` are reported and skipped.
    ///
    /// Exit codes: 0 done, nothing selected is left failing; 1 some bodies still fail (or were
    /// skipped): reported and left in place; 64 bad arguments or configuration; 69 NATS, the
    /// stream or the bucket unavailable (what was done until then is printed).
    Replay(ReplayArgs),
    /// Erase a session's personal data: its data key becomes a tombstone (every copy of its
    /// events on the bus, in mirrors and backups, can no longer be decrypted), its session-view
    /// key and its watch are removed, and `{prefix}.erased` is published so that consumers
    /// delete their copies. Idempotent. Prints what it did as JSON. Uses the `[nats]`, `[keys]`,
    /// `[sessions]` and `[reconcile]` settings; needs no KEK. Exit 0 done, 64 a request_id that
    /// is not a UUID, 69 NATS unavailable (run it again: every step is idempotent).
    Erase {
        /// The session's request_id (a UUID; any case).
        request_id: String,
        /// Why (free text, kept in the `erased` event; at most 200 characters, no personal data).
        #[arg(long)]
        reason: Option<String>,
        /// How long to wait for NATS.
        #[arg(long, default_value = "10s", value_parser = humantime::parse_duration)]
        timeout: Duration,
    },
    /// Manage the data keys (the KV bucket `keys.bucket`).
    Keys {
        /// What to do with them.
        #[command(subcommand)]
        command: KeysCommand,
    },
    /// Ask the reconciler to watch a session (`{prefix}.watch`) and print the reply: it polls VX
    /// for the session until it is terminal and publishes its result as the webhook's event
    /// would be. Uses only the `[nats]` settings. Exit codes as `status`.
    Watch {
        /// The session's request_id (a UUID).
        request_id: String,
        /// How long to wait for the reply.
        #[arg(long, default_value = "10s", value_parser = humantime::parse_duration)]
        timeout: Duration,
    },
    #[cfg(feature = "demo")]
    /// Run a mock of the VX API's session lookup, for local runs of the status service: point
    /// `upstream.base_url` at it and set `upstream.token` to TOKEN. Unknown ids answer INIT,
    /// then IN PROGRESS, then COMPLETED; `PUT /mock/sessions/{id}` with
    /// `{"current_status": "PENDING"}` sets one; the nil UUID is 404. Runs until SIGINT/SIGTERM.
    MockVx {
        /// Address to listen on.
        #[arg(long, default_value = "127.0.0.1:8090")]
        listen: std::net::SocketAddr,
        /// The bearer token it accepts.
        #[arg(long, default_value = "mock-token")]
        token: String,
        /// End each session's cycle in a result body with this top-level status instead of
        /// `{"current_status": "COMPLETED"}`, so that a watched session completes by polling.
        #[arg(long, value_enum)]
        complete_with: Option<MockResult>,
    },
}

/// The result `vx-bridge mock-vx --complete-with` ends a session's cycle in.
#[cfg(feature = "demo")]
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum MockResult {
    /// `"status": "PASS"`.
    #[value(name = "PASS")]
    Pass,
    /// `"status": "FAIL"`.
    #[value(name = "FAIL")]
    Fail,
}

#[cfg(feature = "demo")]
impl MockResult {
    /// The body's `status`.
    pub fn status(self) -> &'static str {
        match self {
            MockResult::Pass => "PASS",
            MockResult::Fail => "FAIL",
        }
    }
}

/// `vx-bridge sessions …`
#[derive(Debug, Subcommand)]
pub enum SessionsCommand {
    /// Print a session's state in the view as JSON. Exit 0 when the view has it, 1 when it has
    /// none, 64 for a request_id that is not a UUID, 69 when NATS or the bucket cannot be read.
    Get {
        /// The session's request_id (a UUID; any case).
        request_id: String,
    },
    /// Re-project the whole event stream into the bucket (purged first), or into another one
    /// (`--into`), and say how many keys it wrote. Safe while bridges run: the rule is the live
    /// projector's, and lookups fall back to VX for a session not yet rebuilt. Exit 0, or 69.
    Rebuild {
        /// Write into this bucket instead of `sessions.bucket` (created if missing, purged).
        #[arg(long)]
        into: Option<String>,
        /// Print the report as one JSON object.
        #[arg(long)]
        json: bool,
    },
}

/// `vx-bridge keys …`
#[derive(Debug, Subcommand)]
pub enum KeysCommand {
    /// Re-wrap every data key under the current KEK (the first line of `keys.kek_file`), so that
    /// an old KEK can be removed from the file. Safe while bridges run: each key is rewritten
    /// with a compare-and-set on its revision, and one erased or changed meanwhile is left as it
    /// is. Prints a report (keys seen, already current, re-wrapped per old KEK, tombstones,
    /// raced, and keys under a KEK the file does not hold). Exit 0 when every key is now under
    /// the current KEK (or a tombstone), 1 when some are not, 64 bad configuration (no
    /// keys.kek_file), 69 NATS unavailable.
    Rewrap {
        /// Print the report as one JSON object.
        #[arg(long)]
        json: bool,
    },
}

/// `vx-bridge replay [--since T] [--until T] [--seq A..B] [--reason json|schema] [--dry-run] [--json]`
#[derive(Debug, Args)]
pub struct ReplayArgs {
    /// Only messages stored at or after T: RFC 3339 (2026-12-01T10:00:00Z) or an age (2h, 7days).
    #[arg(long, value_name = "T")]
    pub since: Option<String>,
    /// Only messages stored at or before T (as --since).
    #[arg(long, value_name = "T")]
    pub until: Option<String>,
    /// Only these stream sequences: A..B (inclusive), A.., ..B or N.
    #[arg(long, value_name = "A..B")]
    pub seq: Option<String>,
    /// Only bodies rejected for this reason: json (invalid_json) or schema (schema_violation).
    #[arg(long, value_name = "json|schema")]
    pub reason: Option<String>,
    /// Print the plan only: publish nothing, write no marker.
    #[arg(long)]
    pub dry_run: bool,
    /// One JSON object per line: `"type": "message"` per rejected message, then `"type": "summary"`.
    #[arg(long)]
    pub json: bool,
}

/// `vx-bridge result --request-id … | --email …`
#[derive(Debug, Args)]
pub struct ResultArgs {
    /// The session's request_id (a UUID).
    #[arg(long, required_unless_present = "email", conflicts_with = "email")]
    pub request_id: Option<String>,
    /// The user's email (only if the service has `upstream.email_lookup_path`).
    #[arg(long)]
    pub email: Option<String>,
    /// How long to wait for the reply.
    #[arg(long, default_value = "10s", value_parser = humantime::parse_duration)]
    pub timeout: Duration,
}
