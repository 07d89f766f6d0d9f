//! Signature header parsers of every scheme (and Basic): arbitrary headers and body, never a
//! panic, never accepted.
#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| vx_bridge::fuzzing::signature_headers(data));
