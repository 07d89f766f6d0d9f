//! Status and result request parsing: canonical UUIDs (or checked emails) or a 400, never a panic.
#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| vx_bridge::fuzzing::status_request(data));
