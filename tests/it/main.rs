//! Integration tests: one binary, real `nats-server` processes on free ports, the bridge's
//! `run()` in-process (and the real binary where a process boundary matters). The shared helpers
//! (servers, the mock VX API, the signed-webhook sender, fixtures) are the `vx-testkit` crate.

mod alerts;
mod bad_input;
mod binary;
mod contract;
mod fuzz_corpus;
mod http;
mod ingress;
mod limits;
mod nats_version;
#[cfg(feature = "otlp")]
mod otlp;
mod permissions;
mod pii;
mod protection;
mod proxy;
mod readme;
mod reconcile;
mod replay;
mod ridethrough;
mod sessions;
mod status;
