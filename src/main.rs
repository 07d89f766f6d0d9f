//! The `vx-bridge` binary: the allocator, then the command line ([`vx_bridge::cli::run`]).

use std::process::ExitCode;

use clap::Parser;

/// mimalloc rather than the system allocator: parsing a webhook into a `serde_json::Value`
/// allocates every key and string, and glibc's malloc/free were ~20 % of the instructions per
/// webhook (callgrind; docs/PERFORMANCE.md).
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> ExitCode {
    vx_bridge::cli::run(vx_bridge::cli::Cli::parse())
}
