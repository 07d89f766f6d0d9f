//! Integration tests: one binary, real `nats-server` processes on free ports, the bridge's
//! `run()` in-process (and the real binary where a process boundary matters).

mod alerts;
mod bad_input;
mod binary;
#[allow(dead_code)]
mod common;
mod contract;
mod fuzz_corpus;
mod http;
mod ingress;
mod limits;
mod nats_version;
#[cfg(feature = "otlp")]
mod otlp;
mod pii;
mod proxy;
mod readme;
mod ridethrough;
mod sessions;
mod status;
