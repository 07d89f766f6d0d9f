//! Command-line interface: `serve`, `check-config`, `demo`, the operator lookups `status` and
//! `result`, which send one request to a running status service over NATS, and `mock-vx`, a
//! stand-in VX API for local runs.

use std::path::PathBuf;
use std::time::Duration;

use clap::{Args, Parser, Subcommand};

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
    /// signed sample webhooks, the events a subscriber receives, and a status lookup.
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
    },
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
