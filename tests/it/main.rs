//! Integration tests: one binary, real `nats-server` processes on free ports, the bridge's
//! `run()` in-process (and the real binary where a process boundary matters).

#[allow(dead_code)]
mod common;
mod status;
