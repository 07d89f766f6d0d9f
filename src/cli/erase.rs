//! `vx-bridge erase`: erases one session's personal data (its data key, its view key and watch)
//! and announces it on `{prefix}.erased`.

use std::process::ExitCode;
use std::time::Duration;

use super::exit::{self, Exit};
use super::nats::{check_request_id, with_nats};
use crate::config::Config;

/// `vx-bridge erase`: erases one session through [`crate::pii::erase::Eraser`] and prints
/// what it did.
pub fn erase(
    config: Config,
    request_id: &str,
    reason: Option<&str>,
    timeout: Duration,
) -> Result<ExitCode, Exit> {
    check_request_id(request_id)?;
    config.keys.validate().map_err(exit::bad_config)?;
    with_nats(&config, timeout, async |client| {
        let keys = std::sync::Arc::new(crate::pii::KeyStore::new(client.clone(), &config, None));
        let eraser = crate::pii::erase::Eraser::new(client.clone(), &config, keys);
        match eraser.erase(request_id, reason).await {
            Ok(done) => {
                println!("{}", serde_json::to_string(&done).unwrap_or_default());
                ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!(
                    "erase stopped: {}; run it again (every step is idempotent)",
                    crate::telemetry::error_chain(&e)
                );
                ExitCode::from(exit::UNAVAILABLE)
            }
        }
    })
}
