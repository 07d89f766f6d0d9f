//! vx-bridge: receives VX verification webhooks, proves they are authentic, validates them, and
//! publishes them as typed events on NATS JetStream; answers status lookups over NATS.
//!
//! # Layout
//! - [`config`]: layered configuration (over the embedded example config), one file per section,
//!   each with its validation, no I/O; [`secret`]: redacted secret values.
//! - [`auth`]: webhook authentication on raw bytes: `basic`, and [`auth::hmac`] with one file per
//!   scheme (parse, verify, sign).
//! - [`json`]: strict JSON parsing (duplicate keys refused); [`schema`]: the embedded JSON Schemas.
//! - [`timestamp`]: the one timestamp format (RFC 3339, UTC, milliseconds) of events, replies and logs.
//! - [`event`]: pure: classification, envelope, dedup id, CloudEvents attributes (as headers).
//! - [`nats`]: everything that talks to NATS: [`nats::connect`](mod@nats::connect) (the client),
//!   [`nats::subjects`] (subject naming and matching), [`nats::stream`] (set-up, checks and the
//!   stream keeper), [`nats::publisher`] (publish with awaited PubAck; the NATS form of a
//!   message), [`nats::ridethrough`] (retrying a publish through a short NATS outage,
//!   `nats.outage_wait`), [`nats::version`] (what the server's version means: support, known data
//!   loss, features).
//! - [`ingress`]: the webhook endpoint; [`problem`]: RFC 9457 errors; [`health`]: probes.
//! - [`pii`]: data protection: personal data sealed under per-session data keys (JWE), the
//!   keys bucket, KEKs, erasure.
//! - [`sessions`]: the session view (a KV bucket projected from the event stream).
//! - [`replay`]: `vx-bridge replay`, rejected bodies that pass today's checks published again
//!   as events (markers in `replay.bucket`).
//! - [`status`]: the request-reply status service (NATS micro; `watch` registers a session with
//!   the reconciler); [`upstream`]: the VX API client.
//! - [`reconcile`]: the reconciler: watched sessions polled against the VX API on a schedule
//!   kept in a JetStream work queue, the completed ones published as poll events.
//! - [`contract`]: the consumer side's types (event, status reply and error, session state).
//! - [`mock_vx`]: the one stand-in for the VX API (demo, `vx-bridge mock-vx`, `vx-load mock-vx`,
//!   tests); `fuzzing`: fuzz harnesses (cargo feature `test-util`).
//! - [`telemetry`]: logs, metrics (every metric through a typed outcome) and W3C trace context;
//!   [`app`]: [`app::prepare`] (reads the secrets once, builds the verifier and the VX API
//!   client), wiring and [`run`]; [`server`]: the HTTP accept
//!   loop with header timeouts; [`cli`]: the command line.
//!
//! The workspace's other crates: `tools/vx-load` (the load generator of the scripts, one module
//! per mode) and `crates/testkit` (`vx-testkit`, dev-only: what the tests share).

pub mod app;
pub mod auth;
pub mod cli;
pub mod clock;
pub mod config;
pub mod contract;
#[cfg(feature = "demo")]
pub mod demo;
pub mod event;
#[cfg(any(test, feature = "test-util"))]
pub mod fuzzing;
pub mod health;
pub mod ingress;
pub mod json;
#[cfg(feature = "demo")]
pub mod mock_vx;
pub mod nats;
pub mod pii;
pub mod problem;
pub mod reconcile;
pub mod replay;
pub mod schema;
pub mod secret;
pub mod server;
pub mod sessions;
pub mod status;
pub mod telemetry;
pub mod timestamp;
pub mod upstream;

pub use app::run;
