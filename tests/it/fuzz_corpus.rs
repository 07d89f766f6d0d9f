//! The fuzz targets' seed corpora (`fuzz/corpus/<target>/`), replayed through the same
//! harnesses (`vx_bridge::fuzzing`) on stable Rust, so every `cargo test` runs them. The long
//! cargo-fuzz runs are `scripts/reliability/run.sh --full fuzz`.

use std::path::Path;

fn replay(target: &str, harness: fn(&[u8])) {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("fuzz/corpus")
        .join(target);
    let mut n = 0;
    for entry in std::fs::read_dir(&dir).expect("corpus dir") {
        let path = entry.expect("entry").path();
        if path.is_file() {
            let data = std::fs::read(&path).expect("corpus file");
            harness(&data);
            n += 1;
        }
    }
    assert!(n >= 5, "{target}: only {n} seeds in {}", dir.display());
}

#[test]
fn signature_header_corpus_replays_without_panic_or_forgery() {
    replay("signature_headers", vx_bridge::fuzzing::signature_headers);
}

#[test]
fn body_to_event_corpus_replays_without_panic() {
    replay("body_to_event", vx_bridge::fuzzing::body_to_event);
}

#[test]
fn status_request_corpus_replays_without_panic() {
    replay("status_request", vx_bridge::fuzzing::status_request);
}
