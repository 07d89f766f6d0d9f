//! `vx-bridge sessions get|rebuild`: the session view's bucket, read or rebuilt directly (no
//! service needed).

use std::process::ExitCode;
use std::time::Duration;

use super::exit::{self, Exit};
use super::nats::{check_request_id, with_nats};
use super::SessionsCommand;
use crate::config::Config;

/// `vx-bridge sessions get|rebuild`: talks to the bucket directly (no service needed).
pub fn sessions(config: Config, command: SessionsCommand) -> Result<ExitCode, Exit> {
    use crate::sessions::admin;
    if let SessionsCommand::Get { request_id } = &command {
        check_request_id(request_id)?;
    }
    with_nats(
        &config,
        Duration::from_secs(10),
        async |client| match command {
            SessionsCommand::Get { request_id } => {
                match admin::get(client, &config, &request_id).await {
                    Ok(Some(value)) => {
                        println!("{value}");
                        ExitCode::SUCCESS
                    }
                    Ok(None) => {
                        eprintln!(
                            "no state for this session in the session view ({})",
                            config.sessions.bucket
                        );
                        ExitCode::FAILURE
                    }
                    Err(e) => {
                        eprintln!("{}", crate::telemetry::error_chain(&e));
                        ExitCode::from(exit::UNAVAILABLE)
                    }
                }
            }
            SessionsCommand::Rebuild { into, json } => {
                match admin::rebuild(client, &config, into.as_deref()).await {
                    Ok(report) if json => {
                        println!("{}", serde_json::to_string(&report).unwrap_or_default());
                        ExitCode::SUCCESS
                    }
                    Ok(r) => {
                        println!(
                            "rebuilt {} from stream {} (sequences 1..={}): {} events read, {} keys written ({} writes), {} other messages skipped",
                            r.bucket, config.nats.stream.name, r.last_seq, r.events, r.keys_written, r.writes, r.skipped
                        );
                        ExitCode::SUCCESS
                    }
                    Err(e) => {
                        eprintln!("rebuild failed: {}", crate::telemetry::error_chain(&e));
                        ExitCode::from(exit::UNAVAILABLE)
                    }
                }
            }
        },
    )
}
