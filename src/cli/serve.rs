//! `vx-bridge serve` and `vx-bridge check-config`: the service itself, and the check that runs
//! every step of its start that needs no network ([`crate::app::prepare`]).

use std::process::ExitCode;

use tokio_util::sync::CancellationToken;

use super::exit::{self, Exit};
use super::nats::runtime;
use crate::config::Config;

/// `check-config`: prepares (every secret file read), prints the redacted configuration.
pub fn check_config(config: Config) -> Result<ExitCode, Exit> {
    crate::app::prepare(&config).map_err(exit::bad_config)?;
    for warning in config.deprecations() {
        eprintln!("warning: {warning}");
    }
    print!("{}", config.to_redacted_toml());
    eprintln!("config ok");
    Ok(ExitCode::SUCCESS)
}

/// `serve`: prepares (a bad secret exits 64 before anything connects), then runs until SIGTERM
/// or SIGINT.
pub fn serve(config: Config) -> Result<ExitCode, Exit> {
    let parts = crate::app::prepare(&config).map_err(exit::bad_config)?;
    let _telemetry = crate::telemetry::init_logging(&config.log);
    let runtime = runtime(tokio::runtime::Builder::new_multi_thread())?;
    Ok(runtime.block_on(async move {
        let listener = match tokio::net::TcpListener::bind(config.http.listen).await {
            Ok(l) => l,
            Err(e) => {
                tracing::error!(listen = %config.http.listen, error = %e, "cannot listen");
                return ExitCode::FAILURE;
            }
        };
        let shutdown = CancellationToken::new();
        tokio::spawn(on_signal(shutdown.clone()));
        match crate::app::run_prepared(config, parts, listener, shutdown).await {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                tracing::error!(error = format!("{e:#}"), "vx-bridge failed");
                ExitCode::FAILURE
            }
        }
    }))
}

/// Cancels `token` on SIGTERM or SIGINT.
pub async fn on_signal(token: CancellationToken) {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        let mut term =
            match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                Ok(s) => s,
                Err(e) => {
                    tracing::error!(error = %e, "cannot listen for SIGTERM");
                    let _ = ctrl_c.await;
                    token.cancel();
                    return;
                }
            };
        tokio::select! {
            _ = ctrl_c => tracing::info!("SIGINT received"),
            _ = term.recv() => tracing::info!("SIGTERM received"),
        }
    }
    #[cfg(not(unix))]
    {
        let _ = ctrl_c.await;
    }
    token.cancel();
}
