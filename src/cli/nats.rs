//! What the operator commands share: a runtime, a NATS connection within a timeout (or exit
//! 69), and the request_id check done before anything is sent (exit 64). It must not read
//! the environment: the configuration was loaded by `cli::run`.

use std::process::ExitCode;
use std::time::Duration;

use super::exit::{self, Exit};
use crate::config::Config;

/// Builds a Tokio runtime, or says why not.
pub fn runtime(mut builder: tokio::runtime::Builder) -> Result<tokio::runtime::Runtime, Exit> {
    builder.enable_all().build().map_err(|e| {
        eprintln!("cannot start the async runtime: {e}");
        ExitCode::FAILURE
    })
}

/// Refuses, before anything is sent, a request_id the service would refuse (exit 64).
pub fn check_request_id(id: &str) -> Result<(), Exit> {
    if crate::status::request::is_request_id(id) {
        return Ok(());
    }
    // The value is not echoed: a mistyped argument may be an email or other personal data.
    Err(exit::bad_argument(
        "invalid request_id: not a UUID (36 characters, e.g. 4ed2ec66-9471-415d-99ce-7bd1742fc2b8); nothing was sent",
    ))
}

/// Connects to NATS within `timeout`, or says why not (exit 69).
async fn connect(config: &Config, timeout: Duration) -> Result<async_nats::Client, Exit> {
    let url = crate::status::client::redacted_urls(&config.nats.url);
    match tokio::time::timeout(timeout, crate::nats::connect(&config.nats, false)).await {
        Ok(Ok(c)) => Ok(c),
        Ok(Err(e)) => Err(exit::unavailable(format_args!(
            "cannot connect to NATS at {url}: {} (set nats.url or VXB_NATS__URL)",
            crate::status::client::connect_error_text(&e)
        ))),
        Err(_) => Err(exit::unavailable(format_args!(
            "cannot connect to NATS at {url} within {timeout:?}"
        ))),
    }
}

/// Runs `work` with a NATS client (connected within `timeout`, else exit 69) on a
/// current-thread runtime, then drains the client.
pub fn with_nats(
    config: &Config,
    timeout: Duration,
    work: impl AsyncFnOnce(&async_nats::Client) -> ExitCode,
) -> Result<ExitCode, Exit> {
    let runtime = runtime(tokio::runtime::Builder::new_current_thread())?;
    runtime.block_on(async move {
        let client = connect(config, timeout).await?;
        let code = work(&client).await;
        let _ = tokio::time::timeout(Duration::from_secs(2), client.drain()).await;
        Ok(code)
    })
}
