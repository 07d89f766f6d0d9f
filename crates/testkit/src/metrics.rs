//! Reading the bridge's Prometheus exposition in tests: one series' value, a scrape, and a wait
//! until a series has a value. The one place tests read metrics.

use std::time::Duration;

use crate::wait::eventually_ok;

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

/// Scrapes `base`/metrics; `None` when it does not answer (the process may not listen yet, or
/// no longer).
pub async fn try_scrape(base: &str) -> Option<String> {
    reqwest::get(format!("{base}/metrics"))
        .await
        .ok()?
        .text()
        .await
        .ok()
}

/// The value of `name{labels}` in a scrape of `base` now; `None` when the series is absent or
/// the scrape is unanswered.
pub async fn scraped_value(base: &str, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
    metric_value(&try_scrape(base).await?, name, labels)
}

/// Scrapes until `name{labels}` equals `want`, up to `within`; panics with the last scrape.
/// An unanswered scrape counts as "not yet".
pub async fn wait_for_metric(
    base: &str,
    name: &str,
    labels: &[(&str, &str)],
    want: f64,
    within: Duration,
) {
    eventually_ok(
        &format!("{name}{labels:?} to be {want}"),
        within,
        async || {
            let text = try_scrape(base).await.unwrap_or_default();
            match metric_value(&text, name, labels) {
                Some(v) if v == want => Ok(()),
                now => Err(format!("{now:?}\n{text}")),
            }
        },
    )
    .await
}
