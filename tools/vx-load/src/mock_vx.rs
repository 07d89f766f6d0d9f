//! `mock-vx`: the service's mock VX API (`vx_bridge::mock_vx`, the repository's one mock) with a
//! fixed latency: OAuth tokens for any client, the seed result for every session, call counts at
//! `/mock/stats`; request_ids ending in `-fa17XXXXXNNN` get HTTP error NNN.

use std::time::Duration;

use vx_bridge::mock_vx::{MockVx, Step};

use crate::baseline::serve_until;
use crate::SEED;

#[derive(clap::Args)]
pub(crate) struct MockVxArgs {
    /// Address to listen on (loopback).
    #[arg(long, default_value = "127.0.0.1:8091")]
    listen: std::net::SocketAddr,
    /// Latency added to every answer.
    #[arg(long, default_value = "20ms", value_parser = humantime::parse_duration)]
    latency: Duration,
    /// A static bearer token it accepts (`upstream.token`), besides the tokens it issues.
    #[arg(long, default_value = "mock-token")]
    token: String,
    /// Stop after this long.
    #[arg(long, default_value = "120s", value_parser = humantime::parse_duration)]
    duration: Duration,
}

pub(crate) async fn run(a: MockVxArgs) -> anyhow::Result<()> {
    let seed: serde_json::Value = serde_json::from_str(SEED)?;
    let vx = MockVx::new(a.token)
        .with_result_body(seed)
        .with_latency(a.latency);
    vx.set_default(Step::Result("PASS"));
    serve_until(a.listen, vx.router(), a.duration).await
}
