//! `vx-bridge keys rewrap`, and reading `keys.kek_file` for the commands that open or seal
//! personal data.

use std::process::ExitCode;
use std::time::Duration;

use super::exit::{self, Exit};
use super::nats::with_nats;
use crate::config::Config;

/// The KEKs of `keys.kek_file`, if set; a bad file is a bad configuration (exit 64).
pub fn read_keks(config: &Config) -> Result<Option<crate::pii::KekRing>, Exit> {
    config
        .keys
        .validate()
        .and_then(|()| crate::pii::kek::configured(config))
        .map_err(exit::bad_config)
}

/// `vx-bridge keys rewrap`: re-wraps every data key under the current KEK.
pub fn rewrap(config: Config, json: bool) -> Result<ExitCode, Exit> {
    let keks = read_keks(&config)?.ok_or_else(|| {
        exit::bad_config(crate::config::ConfigError::new(
            "keys.kek_file",
            "is needed to re-wrap the data keys (the new KEK first, the old ones after it)",
        ))
    })?;
    with_nats(&config, Duration::from_secs(10), async |client| {
        let current = keks.current_id().to_owned();
        let keys = crate::pii::KeyStore::new(client.clone(), &config, Some(keks.clone()));
        match keys.rewrap().await {
            Ok(report) => {
                if json {
                    println!("{}", serde_json::to_string(&report).unwrap_or_default());
                } else {
                    let moved: Vec<String> = report
                        .rewrapped
                        .iter()
                        .map(|(k, n)| format!("{n} from {k}"))
                        .collect();
                    println!(
                        "keys bucket {}: {} keys; {} already under {current}; re-wrapped {}; {} tombstones; {} expired meanwhile; {} changed meanwhile (left); {} under a KEK not in keys.kek_file; {} unreadable",
                        config.keys.bucket,
                        report.seen,
                        report.current,
                        if moved.is_empty() { "none".to_owned() } else { moved.join(", ") },
                        report.tombstones,
                        report.gone,
                        report.raced,
                        report.unknown_kek.len(),
                        report.unreadable.len(),
                    );
                    for (key, kek) in &report.unknown_kek {
                        println!(
                            "  {key}: wrapped under KEK `{kek}`, which keys.kek_file does not hold"
                        );
                    }
                }
                if report.unknown_kek.is_empty()
                    && report.unreadable.is_empty()
                    && report.raced == 0
                {
                    ExitCode::SUCCESS
                } else {
                    ExitCode::FAILURE
                }
            }
            Err(e) => {
                eprintln!(
                    "rewrap stopped: {}; run it again (it is safe to repeat)",
                    crate::telemetry::error_chain(&e)
                );
                ExitCode::from(exit::UNAVAILABLE)
            }
        }
    })
}
