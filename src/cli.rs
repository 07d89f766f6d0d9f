//! Command-line interface: `serve` and `check-config`.

use std::path::PathBuf;

use clap::{Parser, Subcommand};

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
}
