//! Latency histograms and answer counts shared by the load modes, and the summary they print.
//! Holds no I/O but the final `println!` and the process's own CPU time.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use hdrhistogram::Histogram;

/// Latencies and outcomes shared by the workers.
pub(crate) struct Stats {
    hist: Mutex<Histogram<u64>>,
    codes: Mutex<BTreeMap<String, u64>>,
    done: AtomicU64,
    /// Every answer, warm-up included (to divide CPU time by).
    all: AtomicU64,
    /// Requests started before this instant are not recorded.
    measure_from: Instant,
}

impl Stats {
    pub(crate) fn new(measure_from: Instant) -> Arc<Stats> {
        Arc::new(Stats {
            hist: Mutex::new(
                Histogram::new_with_bounds(1, 60_000_000, 3).expect("histogram bounds"),
            ),
            codes: Mutex::new(BTreeMap::new()),
            done: AtomicU64::new(0),
            all: AtomicU64::new(0),
            measure_from,
        })
    }

    /// Records an answer to a request started at `t0`.
    pub(crate) fn record(&self, code: &str, t0: Instant) {
        self.all.fetch_add(1, Ordering::Relaxed);
        if t0 < self.measure_from {
            return;
        }
        let took = t0.elapsed();
        if let Ok(mut h) = self.hist.lock() {
            let _ = h.record((took.as_micros() as u64).max(1));
        }
        if let Ok(mut c) = self.codes.lock() {
            match c.get_mut(code) {
                Some(n) => *n += 1,
                None => {
                    c.insert(code.to_owned(), 1);
                }
            }
        }
        self.done.fetch_add(1, Ordering::Relaxed);
    }

    pub(crate) fn report(&self, mode: &str, json: bool) {
        let elapsed = self.measure_from.elapsed();
        let h = self
            .hist
            .lock()
            .map(|h| h.clone())
            .unwrap_or_else(|_| Histogram::new(3).expect("histogram"));
        let codes = self.codes.lock().map(|c| c.clone()).unwrap_or_default();
        let n = self.done.load(Ordering::Relaxed);
        let rate = n as f64 / elapsed.as_secs_f64();
        let ms = |q: f64| h.value_at_quantile(q) as f64 / 1000.0;
        if json {
            let v = serde_json::json!({
                "mode": mode, "requests": n, "seconds": elapsed.as_secs_f64(), "rps": rate,
                "p50_ms": ms(0.5), "p90_ms": ms(0.9), "p99_ms": ms(0.99), "max_ms": h.max() as f64 / 1000.0,
                "codes": codes, "all_requests": self.all.load(Ordering::Relaxed), "cpu_s": own_cpu_seconds(),
            });
            println!("{v}");
        } else {
            println!(
                "{mode}: {n} requests in {:.2}s = {rate:.0} req/s",
                elapsed.as_secs_f64()
            );
            println!(
                "latency ms: p50 {:.2}  p90 {:.2}  p99 {:.2}  max {:.2}",
                ms(0.5),
                ms(0.9),
                ms(0.99),
                h.max() as f64 / 1000.0
            );
            println!("answers: {codes:?}");
        }
    }
}

/// CPU time (user + system) this process has used so far, from `/proc/self/stat`; 0 elsewhere.
fn own_cpu_seconds() -> f64 {
    let Ok(stat) = std::fs::read_to_string("/proc/self/stat") else {
        return 0.0;
    };
    // Fields after the command name (which is in parentheses and may contain spaces).
    let rest = stat.rsplit_once(')').map_or("", |(_, r)| r);
    let fields: Vec<&str> = rest.split_whitespace().collect();
    // utime and stime are fields 14 and 15 of the line: indexes 11 and 12 after the name. Linux
    // counts them in USER_HZ, which is 100.
    let ticks = |i: usize| {
        fields
            .get(i)
            .and_then(|v| v.parse::<f64>().ok())
            .unwrap_or(0.0)
    };
    (ticks(11) + ticks(12)) / 100.0
}

pub(crate) fn unix_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}
