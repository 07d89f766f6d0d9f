//! The test kit of the vx-bridge workspace (a dev-dependency only; never linked into the
//! service): what the integration tests (`tests/it/`), the benches and the tools share.
//!
//! - [`nats`]: real `nats-server` processes (binary from `NATS_SERVER` or PATH) on free ports
//!   with temp stores, single or clustered, killed on `Drop`; stream helpers.
//! - [`vx`]: the mock VX API, i.e. the service's own [`vx_bridge::mock_vx::MockVx`] served on
//!   `127.0.0.1:0` with the seed result, stopped on `Drop`.
//! - [`webhook`]: the one signed-webhook sender (Standard Webhooks with [`SECRET`] unless told
//!   otherwise), over `vx_bridge::auth::hmac::sign_headers`.
//! - [`bridge`]: a test config, the bridge's `run()` in-process, `vx-bridge serve` as a
//!   process configured through its environment, and the readiness wait (`/readyz`).
//! - [`metrics`]: reading a Prometheus scrape, and waiting for a series' value.
//! - [`wait`]: polling a condition (bounded, panicking with what it awaited) instead of sleeping.
//! - [`fixtures`]: the seed webhook body, the ids and the webhook secrets.
//!
//! It must not be a dependency of the service's own `[dependencies]`, and it mocks no NATS.

pub mod bridge;
pub mod fixtures;
pub mod metrics;
pub mod nats;
pub mod vx;
pub mod wait;
pub mod webhook;

pub use bridge::{
    clean_env, event_result, hmac_cli, output_ok, readyz, rejected_body, test_config,
    test_kek_file, test_keks, vx_bridge_bin, wait_ready, BinaryBridge, Bridge,
};
pub use fixtures::{body_with, new_request_id, now, SECRET, SEED, SEED_ID, WRONG_SECRET};
pub use metrics::{metric_value, scrape, scraped_value, try_scrape, wait_for_metric};
pub use nats::{
    free_port, message_count, nats_server_bin, stream_lookups, stream_of, stream_of_name,
    NatsCluster, NatsServer,
};
pub use vx::{Step, VxApi};
pub use wait::{eventually, eventually_blocking, eventually_ok, eventually_some};
pub use webhook::{signed_headers, Sender};
