//! `vx-bridge replay`: publishes kept rejected bodies again, as events, once they are valid
//! (a dry run by default prints what it would do).

use std::process::ExitCode;
use std::time::Duration;

use super::exit::{self, Exit};
use super::keys::read_keks;
use super::nats::with_nats;
use super::ReplayArgs;
use crate::config::Config;

/// `vx-bridge replay`: checks the arguments and `webhook.schema_file` (exit 64), then replays
/// through [`crate::replay::replay`], printing as it goes.
pub fn replay(config: Config, args: ReplayArgs) -> Result<ExitCode, Exit> {
    use crate::replay::{output::Printer, select::Selection, Options};
    config.replay.validate().map_err(exit::bad_config)?;
    let schemas = crate::app::result_schemas(&config).map_err(exit::bad_config)?;
    let selection = Selection::parse(
        args.seq.as_deref(),
        args.since.as_deref(),
        args.until.as_deref(),
        args.reason.as_deref(),
        std::time::SystemTime::now(),
    )
    .map_err(|e| exit::bad_argument(format_args!("invalid argument: {e}")))?;
    let options = Options {
        selection,
        dry_run: args.dry_run,
    };
    let keks = read_keks(&config)?;
    with_nats(&config, Duration::from_secs(10), async |client| {
        let mut printer = Printer::new(std::io::stdout().lock(), args.json);
        let mut print_error = None;
        let keys = std::sync::Arc::new(crate::pii::KeyStore::new(
            client.clone(),
            &config,
            keks.clone(),
        ));
        let sealer = crate::pii::Sealer::new(config.events.pii, Some(keys));
        let result =
            crate::replay::replay(client, &config, &schemas, &sealer, &options, &mut |row| {
                if let Err(e) = printer.row(row) {
                    print_error.get_or_insert(e);
                }
            })
            .await;
        let code = match result {
            Ok(summary) => match printer.summary(&summary) {
                Ok(()) => ExitCode::from(summary.exit_code()),
                Err(e) => {
                    eprintln!("cannot write the report: {e}");
                    ExitCode::FAILURE
                }
            },
            Err(e) => {
                eprintln!("replay stopped: {}", crate::telemetry::error_chain(&e));
                ExitCode::from(exit::UNAVAILABLE)
            }
        };
        if let Some(e) = print_error {
            eprintln!("cannot write the report: {e}");
        }
        code
    })
}
