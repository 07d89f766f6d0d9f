//! `vx-load`: a load generator for vx-bridge, used by `scripts/bench/bench.sh` and the fault suites.
//!
//! Modes, each bounded in time and aimed only where its `--url`/`--nats`/`--listen` point:
//! - `webhook`: signed, seed-like webhooks with distinct request_ids over N HTTP/1.1 connections
//!   (a bare hyper client: one connection per worker, no pool) for T seconds, or a fixed count,
//!   optionally at a fixed total rate; reports req/s, latency percentiles and answers by code.
//!   `--record` writes one CSV line per answer so a suite can check that every 202 is stored.
//! - `resend` sends every recorded delivery that was never answered 202 again, with the same
//!   delivery id and body, as a sender retries after an outage (records its answers too).
//! - `verify` reads such records back against the stream (every 202 stored, under its event id,
//!   once; every other answer retryable; time to recover after marked events), on the leader's
//!   copy and on every replica's (`copies`), and `leader` prints a stream's cluster leader, for
//!   the reliability suites in `scripts/reliability/`. With `--sessions-bucket`/`--keys-bucket`/
//!   `--reconcile-stream` it also checks the state derived from the stream (`state`): the session
//!   view converged to what the stream implies, every open session watched, every encrypted
//!   event's data key present and opening it.
//! - `status`: drives `{prefix}.status.get` (or any subject) over NATS request-reply; `--burst`
//!   sends N identical lookups at once.
//! - `jspub`: the raw JetStream baseline: the same event messages the bridge would publish, each
//!   with a unique `Nats-Msg-Id`, with a fixed number of PubAcks in flight.
//! - `echo`: the raw request-reply baseline: a NATS responder that answers every request with
//!   a fixed status-like reply.
//! - `serve202`: the plain HTTP baseline: axum answering 202 to every POST after reading its body.
//! - `naive`: the naive-handler baseline (n): HMAC check, `serde_json::Value` parse, `jsonschema`
//!   `is_valid`, publish of the body with an awaited PubAck, 202; nothing else.
//! - `mock-vx`: a stand-in for the VX API (OAuth token endpoint and session results) with a fixed
//!   latency, counting upstream calls; request_ids ending in `-fa17XXXXXNNN` get HTTP error NNN.
//! - `send`: one signed webhook with a given body and content type; prints the HTTP code.
//! - `startup`: starts a command, polls a readiness URL, and reports the time from spawn to 200.
//! - `free-port`: prints a free loopback port, for scripts.

mod baseline;
mod client;
mod copies;
mod jspub;
mod mock_vx;
mod naive;
mod resend;
mod send;
mod startup;
mod state;
mod stats;
mod status;
mod verify;
mod webhook;

use clap::{Parser, Subcommand};

use crate::baseline::{EchoArgs, Serve202Args};
use crate::jspub::JsPubArgs;
use crate::mock_vx::MockVxArgs;
use crate::naive::NaiveArgs;
use crate::resend::ResendArgs;
use crate::send::SendArgs;
use crate::startup::StartupArgs;
use crate::status::StatusArgs;
use crate::verify::{LeaderArgs, VerifyArgs};
use crate::webhook::WebhookArgs;

/// The load generator shares the cores with what it measures: keep its allocations cheap too.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

const SEED: &str = include_str!("../../../tests/fixtures/seed-pass.json");
const SEED_ID: &str = "4ed2ec66-9471-415d-99ce-7bd1742fc2b8";

#[derive(Parser)]
#[command(
    name = "vx-load",
    about = "Load generator and baselines for vx-bridge (loopback targets only)"
)]
struct Cli {
    #[command(subcommand)]
    mode: Mode,
}

#[derive(Subcommand)]
enum Mode {
    /// POST signed webhooks.
    Webhook(WebhookArgs),
    /// POST one signed webhook with a given body; print the HTTP status code.
    Send(SendArgs),
    /// Send every recorded delivery never answered 202 again (same id and body).
    Resend(ResendArgs),
    /// Send status requests over NATS.
    Status(StatusArgs),
    /// Publish to JetStream directly (baseline).
    Jspub(JsPubArgs),
    /// Answer NATS requests with a fixed reply (baseline).
    Echo(EchoArgs),
    /// Answer every POST with 202 after reading the body (baseline).
    Serve202(Serve202Args),
    /// The naive webhook handler: HMAC, Value parse, schema is_valid, awaited PubAck, 202
    /// (baseline).
    Naive(NaiveArgs),
    /// A mock VX API with a fixed latency (a request_id ending in `-fa17XXXXXNNN` gets HTTP
    /// error NNN).
    MockVx(MockVxArgs),
    /// Measure the time from spawning a command to its readiness URL answering 200.
    Startup(StartupArgs),
    /// Print a free TCP port on 127.0.0.1 (for scripts).
    FreePort,
    /// Check `--record` files against the stream: every 202 stored, once, with its event id.
    Verify(VerifyArgs),
    /// Print the name of the server leading a stream (empty when none).
    Leader(LeaderArgs),
}

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    match cli.mode {
        Mode::Startup(a) => return startup::run(a),
        Mode::FreePort => {
            let port = std::net::TcpListener::bind("127.0.0.1:0")?
                .local_addr()?
                .port();
            println!("{port}");
            return Ok(());
        }
        _ => {}
    }
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    rt.block_on(async move {
        match cli.mode {
            Mode::Webhook(a) => webhook::run(a).await,
            Mode::Send(a) => send::run(a).await,
            Mode::Resend(a) => resend::run(a).await,
            Mode::Status(a) => status::run(a).await,
            Mode::Jspub(a) => jspub::run(a).await,
            Mode::Echo(a) => baseline::echo(a).await,
            Mode::Serve202(a) => baseline::serve202(a).await,
            Mode::Naive(a) => naive::run(a).await,
            Mode::MockVx(a) => mock_vx::run(a).await,
            Mode::Verify(a) => verify::verify(a).await,
            Mode::Leader(a) => verify::leader(a).await,
            Mode::Startup(_) | Mode::FreePort => Ok(()),
        }
    })
}
