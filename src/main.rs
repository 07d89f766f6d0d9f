//! The `vx-bridge` binary: parses the command line and configuration, then calls the library.

use std::process::ExitCode;

use clap::Parser;
use tokio_util::sync::CancellationToken;
use vx_bridge::cli::{Cli, Command};
use vx_bridge::config::{Config, EXIT_CONFIG};

fn main() -> ExitCode {
    let cli = Cli::parse();
    if matches!(cli.command, Command::Demo) {
        return demo(&cli);
    }
    let config = match Config::load(cli.config.as_deref(), std::env::vars()) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("{e}");
            return ExitCode::from(EXIT_CONFIG as u8);
        }
    };
    match cli.command {
        Command::CheckConfig => {
            print!("{}", config.to_redacted_toml());
            eprintln!("config ok");
            ExitCode::SUCCESS
        }
        Command::Serve => serve(config),
        Command::Demo => demo(&cli),
    }
}

/// `vx-bridge demo`: needs only `[nats]` and `[log]` from the configuration.
fn demo(cli: &Cli) -> ExitCode {
    let mut config = match Config::parse(cli.config.as_deref(), std::env::vars()) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("{e}");
            return ExitCode::from(EXIT_CONFIG as u8);
        }
    };
    if std::env::var_os("VXB_LOG__LEVEL").is_none() {
        config.log.level = "warn".into();
        config.log.format = vx_bridge::config::LogFormat::Text;
    }
    let _telemetry = vx_bridge::telemetry::init_logging(&config.log);
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            eprintln!("cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(vx_bridge::demo::run_demo(config)) {
        Ok(code) => ExitCode::from(code as u8),
        Err(e) => {
            eprintln!("demo failed: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn serve(config: Config) -> ExitCode {
    let _telemetry = vx_bridge::telemetry::init_logging(&config.log);
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            eprintln!("cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    runtime.block_on(async move {
        let listener = match tokio::net::TcpListener::bind(config.http.listen).await {
            Ok(l) => l,
            Err(e) => {
                tracing::error!(listen = %config.http.listen, error = %e, "cannot listen");
                return ExitCode::FAILURE;
            }
        };
        let shutdown = CancellationToken::new();
        tokio::spawn(on_signal(shutdown.clone()));
        match vx_bridge::run(config, listener, shutdown).await {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                tracing::error!(error = format!("{e:#}"), "vx-bridge failed");
                ExitCode::FAILURE
            }
        }
    })
}

/// Cancels `token` on SIGTERM or SIGINT.
async fn on_signal(token: CancellationToken) {
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
