//! Body → event: strict JSON, schema, envelope, dedup id, rejected message.
#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| vx_bridge::fuzzing::body_to_event(data));
