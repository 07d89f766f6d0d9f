//! `vx-bridge demo` and `vx-bridge mock-vx`: the whole flow on one machine, and the stand-in VX
//! API, for newcomers and local runs. Only in builds with the `demo` feature (on by default;
//! the container image is built without it).

use std::process::ExitCode;

use tokio_util::sync::CancellationToken;

use super::exit::{self, Exit};
use super::nats::runtime;
use super::serve::on_signal;
use crate::config::Config;

/// `vx-bridge demo`: needs only `[nats]` and `[log]` from the configuration.
pub fn demo(file: Option<&std::path::Path>) -> Result<ExitCode, Exit> {
    let mut config = Config::parse(file, std::env::vars()).map_err(exit::bad_config)?;
    if std::env::var_os("VXB_LOG__LEVEL").is_none() {
        config.log.level = "error".into();
        config.log.format = crate::config::LogFormat::Text;
    }
    let _telemetry = crate::telemetry::init_logging(&config.log);
    let runtime = runtime(tokio::runtime::Builder::new_multi_thread())?;
    let nats_server = std::env::var_os("NATS_SERVER")
        .map(std::path::PathBuf::from)
        .or_else(|| crate::demo::find_on_path(std::env::var_os("PATH").as_deref(), "nats-server"));
    Ok(
        match runtime.block_on(crate::demo::run_demo(config, nats_server)) {
            Ok(code) => ExitCode::from(code as u8),
            Err(e) => {
                eprintln!("demo failed: {e:#}");
                ExitCode::FAILURE
            }
        },
    )
}

/// `vx-bridge mock-vx`: serves [`crate::mock_vx::MockVx`] until SIGINT/SIGTERM.
pub fn mock_vx(
    listen: std::net::SocketAddr,
    token: &str,
    complete_with: Option<super::MockResult>,
) -> Result<ExitCode, Exit> {
    let runtime = runtime(tokio::runtime::Builder::new_current_thread())?;
    Ok(runtime.block_on(async move {
        let shutdown = CancellationToken::new();
        let vx = crate::mock_vx::MockVx::new(token);
        vx.complete_with(complete_with.map(super::MockResult::status));
        let addr = match vx.start(listen, shutdown.clone()).await {
            Ok(a) => a,
            Err(e) => {
                eprintln!("mock-vx: cannot listen on {listen}: {e}");
                return ExitCode::FAILURE;
            }
        };
        println!("mock VX API listening on http://{addr} (not for production)");
        println!(
            "  for the bridge: VXB_UPSTREAM__BASE_URL=http://{addr} VXB_UPSTREAM__TOKEN={token}"
        );
        let last = match complete_with {
            Some(r) => format!(" (the last as a result body, status {})", r.status()),
            None => String::new(),
        };
        println!(
            "  unknown ids answer {}{last}, one per lookup; {} is 404",
            crate::mock_vx::CYCLE.join(" -> "),
            crate::mock_vx::UNKNOWN_ID
        );
        on_signal(shutdown.clone()).await;
        ExitCode::SUCCESS
    }))
}
