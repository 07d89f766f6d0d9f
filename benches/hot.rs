//! Criterion micro-benchmarks of the ingress hot path, on the seed body (1.8 KB), so that a
//! regression in one step shows: signature check, JSON parse, schema validation, canonical hash,
//! event build (with the NATS headers), and all of them in the order a webhook meets them.
//!
//! `cargo bench --bench hot` (add `-- --quick` for a short run). Numbers drift on a shared
//! machine: compare runs made one after the other, or count instructions with callgrind
//! (`scripts/bench/bench.sh` does).

use std::hint::black_box;

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use http::{HeaderMap, HeaderName, HeaderValue};
use serde_json::Value;
use vx_bridge::auth::{Verified, Verifier};
use vx_bridge::config::{AuthConfig, AuthMode, HmacConfig, HmacScheme};
use vx_bridge::event::{build_event, canonical_hash};
use vx_bridge::nats::publisher::into_nats;
use vx_bridge::nats::Subjects;
use vx_bridge::schema::Schemas;
use vx_bridge::secret::Secret;
use vx_bridge::telemetry::TraceContext;
use vx_testkit::{SECRET, SEED};

const NOW: i64 = 1_764_237_600;
const AT: &str = "2026-11-27T10:00:00.123Z";

fn hmac_config() -> HmacConfig {
    HmacConfig {
        scheme: HmacScheme::StandardWebhooks,
        secrets: vec![Secret::new(SECRET)],
        ..HmacConfig::default()
    }
}

fn verifier() -> Verifier {
    let auth = AuthConfig {
        mode: Some(AuthMode::Hmac),
        hmac: hmac_config(),
        ..AuthConfig::default()
    };
    Verifier::from_config(&auth, &auth.hmac.secrets).expect("bench verifier")
}

fn signed_headers(body: &[u8]) -> HeaderMap {
    let mut h = HeaderMap::new();
    for (k, v) in vx_testkit::signed_headers(&hmac_config(), body, NOW, "msg_2Lk3bench") {
        h.insert(
            HeaderName::from_bytes(k.as_bytes()).expect("header name"),
            HeaderValue::from_str(&v).expect("header value"),
        );
    }
    h
}

fn hot(c: &mut Criterion) {
    let raw = SEED.as_bytes();
    let value: Value = serde_json::from_slice(raw).expect("seed is JSON");
    let verifier = verifier();
    let headers = signed_headers(raw);
    let schemas = Schemas::get();
    let subjects = Subjects::new("verification");
    let trace = TraceContext::continue_or_start(None, None);
    let with_id = Verified::for_tests(Some("msg_2Lk3bench".into()));
    let without_id = Verified::for_tests(None);

    let mut g = c.benchmark_group("ingress");
    g.throughput(Throughput::Bytes(raw.len() as u64));
    g.bench_function("signature_check", |b| {
        b.iter(|| verifier.verify(black_box(&headers), black_box(raw), NOW))
    });
    g.bench_function("json_parse", |b| {
        b.iter(|| serde_json::from_slice::<Value>(black_box(raw)))
    });
    g.bench_function("schema_validation", |b| {
        b.iter(|| schemas.check_result(black_box(&value)))
    });
    g.bench_function("canonical_hash", |b| {
        b.iter(|| canonical_hash(black_box(&value)))
    });
    g.bench_function("trace_context", |b| {
        b.iter(|| TraceContext::continue_or_start(None, None))
    });
    g.bench_function("event_build", |b| {
        b.iter(|| {
            let m = build_event(&subjects, &with_id, raw, black_box(&value), AT, &trace);
            into_nats(m)
        })
    });
    g.bench_function("event_build_hashed_id", |b| {
        b.iter(|| {
            let m = build_event(&subjects, &without_id, raw, black_box(&value), AT, &trace);
            into_nats(m)
        })
    });
    g.bench_function("all_steps", |b| {
        b.iter(|| {
            let v = verifier
                .verify(black_box(&headers), black_box(raw), NOW)
                .expect("signed");
            let trace = TraceContext::continue_or_start(None, None);
            let value: Value = serde_json::from_slice(raw).expect("JSON");
            schemas.check_result(&value).expect("valid");
            let m = build_event(&subjects, &v, raw, &value, AT, &trace);
            into_nats(m)
        })
    });
    g.finish();
}

criterion_group!(benches, hot);
criterion_main!(benches);
