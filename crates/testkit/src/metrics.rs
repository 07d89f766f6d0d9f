//! Reading the bridge's Prometheus exposition in tests: one series' value, a scrape, and a wait
//! until a series has a value.

use std::time::{Duration, Instant};

/// The value of one series in a Prometheus text exposition: `name` with exactly the given
/// labels (in any order). `None` when the series is absent.
pub fn metric_value(text: &str, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
    text.lines()
        .filter(|l| !l.starts_with('#'))
        .find_map(|line| {
            let (series, value) = line.rsplit_once(' ')?;
            let (n, rest) = match series.split_once('{') {
                Some((n, rest)) => (n, rest.strip_suffix('}')?),
                None => (series, ""),
            };
            if n != name {
                return None;
            }
            let mut got: Vec<(&str, &str)> = rest
                .split(',')
                .filter(|p| !p.is_empty())
                .filter_map(|p| {
                    let (k, v) = p.split_once('=')?;
                    Some((k, v.trim_matches('"')))
                })
                .collect();
            let mut want = labels.to_vec();
            got.sort_unstable();
            want.sort_unstable();
            (got == want).then(|| value.parse().ok()).flatten()
        })
}

/// Scrapes `base`/metrics.
pub async fn scrape(base: &str) -> String {
    reqwest::get(format!("{base}/metrics"))
        .await
        .expect("scrape")
        .text()
        .await
        .expect("metrics text")
}

/// Scrapes until `name{labels}` equals `want`, up to `within`; panics with the last scrape.
pub async fn wait_for_metric(
    base: &str,
    name: &str,
    labels: &[(&str, &str)],
    want: f64,
    within: Duration,
) {
    let deadline = Instant::now() + within;
    loop {
        // The process may not listen yet: an unanswered scrape counts as "not yet".
        let text = match reqwest::get(format!("{base}/metrics")).await {
            Ok(r) => r.text().await.unwrap_or_default(),
            Err(_) => String::new(),
        };
        if metric_value(&text, name, labels) == Some(want) {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "{name}{labels:?} did not become {want} within {within:?}: now {:?}\n{text}",
            metric_value(&text, name, labels)
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}
