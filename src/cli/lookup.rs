//! `vx-bridge status|watch|result`: one request to a running status service over NATS, the
//! reply on stdout (an error reply also on stderr, exit 1; no answer, exit 69).

use std::process::ExitCode;
use std::time::Duration;

use super::exit::{self, Exit};
use super::nats::{check_request_id, with_nats};
use super::ResultArgs;
use crate::config::Config;

/// Which lookup subject.
#[derive(Debug, Clone, Copy)]
pub enum Lookup {
    /// `{prefix}.status.get`.
    Status,
    /// `{prefix}.result.get`.
    Result,
    /// `{prefix}.watch`.
    Watch,
}

/// `status` and `watch`: refuses a request_id that is not a UUID (exit 64, nothing sent), then
/// sends `{"request_id"}`.
pub fn by_id(
    config: Config,
    which: Lookup,
    request_id: &str,
    timeout: Duration,
) -> Result<ExitCode, Exit> {
    check_request_id(request_id)?;
    let payload = serde_json::json!({ "request_id": request_id });
    lookup(config, which, payload, timeout)
}

/// `result`: by request_id (checked first) or by email.
pub fn result(config: Config, args: ResultArgs) -> Result<ExitCode, Exit> {
    let payload = match (args.request_id, args.email) {
        (Some(id), _) => {
            check_request_id(&id)?;
            serde_json::json!({ "request_id": id })
        }
        (None, Some(email)) => serde_json::json!({ "email": email }),
        // clap requires exactly one of them.
        (None, None) => return Err(exit::bad_argument("give a request_id or --email")),
    };
    lookup(config, Lookup::Result, payload, args.timeout)
}

/// Sends one request to the status service and prints the reply to stdout (errors to stderr).
fn lookup(
    config: Config,
    which: Lookup,
    payload: serde_json::Value,
    timeout: Duration,
) -> Result<ExitCode, Exit> {
    use crate::status::client::{request, Reply};
    let subjects = crate::nats::Subjects::new(&config.nats.subject_prefix);
    let subject = match which {
        Lookup::Status => subjects.status_get(),
        Lookup::Result => subjects.result_get(),
        Lookup::Watch => subjects.watch(),
    };
    with_nats(&config, timeout, async |client| {
        let body = bytes::Bytes::from(payload.to_string());
        match request(client, &subject, body, timeout).await {
            Ok(Reply::Ok(body)) => {
                println!("{}", String::from_utf8_lossy(&body));
                ExitCode::SUCCESS
            }
            Ok(Reply::Error {
                code,
                message,
                body,
            }) => {
                println!("{}", String::from_utf8_lossy(&body));
                eprintln!("error {code}: {message}");
                ExitCode::FAILURE
            }
            Err(e) => exit::unavailable(crate::telemetry::error_chain(&e)),
        }
    })
}
