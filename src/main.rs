//! The `vx-bridge` binary: parses the command line and configuration, then calls the library.

use std::process::ExitCode;
use std::time::Duration;

use clap::Parser;
use tokio_util::sync::CancellationToken;
use vx_bridge::cli::{Cli, Command, KeysCommand, ReplayArgs, SessionsCommand};
use vx_bridge::config::{Config, EXIT_CONFIG};

/// mimalloc rather than the system allocator: parsing a webhook into a `serde_json::Value`
/// allocates every key and string, and glibc's malloc/free were ~20 % of the instructions per
/// webhook (callgrind; docs/PERFORMANCE.md).
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> ExitCode {
    let cli = Cli::parse();
    let file = cli.config.as_deref();
    // Loads the configuration, or prints the one-line error and leaves with exit code 64.
    macro_rules! config {
        ($load:expr) => {
            match $load(file, std::env::vars()) {
                Ok(c) => c,
                Err(e) => return bad_config(e),
            }
        };
    }
    match cli.command {
        Command::Demo => demo(file),
        Command::MockVx {
            listen,
            token,
            complete_with,
        } => mock_vx(listen, &token, complete_with),
        Command::CheckConfig => {
            let config = config!(Config::load);
            if let Err(e) = vx_bridge::app::prepare(&config) {
                return bad_config(e);
            }
            for warning in config.deprecations() {
                eprintln!("warning: {warning}");
            }
            print!("{}", config.to_redacted_toml());
            eprintln!("config ok");
            ExitCode::SUCCESS
        }
        Command::Serve => {
            let config = config!(Config::load);
            match vx_bridge::app::prepare(&config) {
                Ok(parts) => serve(config, parts),
                Err(e) => bad_config(e),
            }
        }
        // The lookups only send requests: they need `[nats]`, not webhook or upstream secrets.
        Command::Status {
            request_id,
            timeout,
        } => by_id(
            config!(Config::load_for_requests),
            Lookup::Status,
            &request_id,
            timeout,
        ),
        Command::Watch {
            request_id,
            timeout,
        } => by_id(
            config!(Config::load_for_requests),
            Lookup::Watch,
            &request_id,
            timeout,
        ),
        Command::Sessions { command } => sessions(config!(Config::load_for_requests), command),
        Command::Replay(args) => replay(config!(Config::load_for_requests), args),
        Command::Erase {
            request_id,
            reason,
            timeout,
        } => {
            let config = config!(Config::load_for_requests);
            if let Err(code) = check_request_id(&request_id) {
                return code;
            }
            erase(config, &request_id, reason.as_deref(), timeout)
        }
        Command::Keys {
            command: KeysCommand::Rewrap { json },
        } => rewrap(config!(Config::load_for_requests), json),
        Command::Result(args) => {
            let config = config!(Config::load_for_requests);
            if let Some(Err(code)) = args.request_id.as_deref().map(check_request_id) {
                return code;
            }
            let payload = match (args.request_id, args.email) {
                (Some(id), _) => serde_json::json!({ "request_id": id }),
                (None, Some(email)) => serde_json::json!({ "email": email }),
                // clap requires exactly one of them.
                (None, None) => return ExitCode::from(EXIT_CONFIG as u8),
            };
            lookup(config, Lookup::Result, payload, args.timeout)
        }
    }
}

/// A bad configuration: its one line on stderr, exit code 64.
fn bad_config(e: vx_bridge::config::ConfigError) -> ExitCode {
    eprintln!("{e}");
    ExitCode::from(EXIT_CONFIG as u8)
}

/// Refuses, before anything is sent, a request_id the service would refuse (exit 64).
fn check_request_id(id: &str) -> Result<(), ExitCode> {
    if vx_bridge::status::request::is_request_id(id) {
        return Ok(());
    }
    // The value is not echoed: a mistyped argument may be an email or other personal data.
    eprintln!(
        "invalid request_id: not a UUID (36 characters, e.g. 4ed2ec66-9471-415d-99ce-7bd1742fc2b8); nothing was sent"
    );
    Err(ExitCode::from(EXIT_CONFIG as u8))
}

/// Connects the operator commands to NATS within `timeout`, or says why not (exit 69).
async fn connect_cli(config: &Config, timeout: Duration) -> Result<async_nats::Client, ExitCode> {
    let url = vx_bridge::status::client::redacted_urls(&config.nats.url);
    match tokio::time::timeout(timeout, vx_bridge::nats::connect(&config.nats, false)).await {
        Ok(Ok(c)) => Ok(c),
        Ok(Err(e)) => {
            eprintln!(
                "cannot connect to NATS at {url}: {} (set nats.url or VXB_NATS__URL)",
                vx_bridge::status::client::connect_error_text(&e)
            );
            Err(ExitCode::from(EXIT_UNAVAILABLE))
        }
        Err(_) => {
            eprintln!("cannot connect to NATS at {url} within {timeout:?}");
            Err(ExitCode::from(EXIT_UNAVAILABLE))
        }
    }
}

/// Which lookup subject.
enum Lookup {
    Status,
    Result,
    Watch,
}

/// `status` and `watch`: refuses a request_id that is not a UUID (exit 64, nothing sent), then
/// sends `{"request_id"}` through [`lookup`].
fn by_id(config: Config, which: Lookup, request_id: &str, timeout: Duration) -> ExitCode {
    if let Err(code) = check_request_id(request_id) {
        return code;
    }
    lookup(
        config,
        which,
        serde_json::json!({ "request_id": request_id }),
        timeout,
    )
}

/// Sends one request to the status service and prints the reply to stdout (errors to stderr).
fn lookup(
    config: Config,
    which: Lookup,
    payload: serde_json::Value,
    timeout: Duration,
) -> ExitCode {
    use vx_bridge::status::client::{request, Reply};
    let runtime = match runtime(tokio::runtime::Builder::new_current_thread()) {
        Ok(r) => r,
        Err(code) => return code,
    };
    let subjects = vx_bridge::nats::Subjects::new(&config.nats.subject_prefix);
    let subject = match which {
        Lookup::Status => subjects.status_get(),
        Lookup::Result => subjects.result_get(),
        Lookup::Watch => subjects.watch(),
    };
    runtime.block_on(async move {
        let client = match connect_cli(&config, timeout).await {
            Ok(c) => c,
            Err(code) => return code,
        };
        let body = bytes::Bytes::from(payload.to_string());
        let code = match request(&client, &subject, body, timeout).await {
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
            Err(e) => {
                eprintln!("{e}");
                ExitCode::from(EXIT_UNAVAILABLE)
            }
        };
        let _ = tokio::time::timeout(Duration::from_secs(2), client.drain()).await;
        code
    })
}

/// `vx-bridge sessions get|rebuild`: talks to the bucket directly (no service needed).
fn sessions(config: Config, command: SessionsCommand) -> ExitCode {
    use vx_bridge::sessions::admin;
    if let SessionsCommand::Get { request_id } = &command {
        if let Err(code) = check_request_id(request_id) {
            return code;
        }
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
                        eprintln!("{e}");
                        ExitCode::from(EXIT_UNAVAILABLE)
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
                        eprintln!("rebuild failed: {e}");
                        ExitCode::from(EXIT_UNAVAILABLE)
                    }
                }
            }
        },
    )
}

/// Runs `work` with a NATS client (connected within `timeout`, else exit 69) on a
/// current-thread runtime, then drains the client.
fn with_nats(
    config: &Config,
    timeout: Duration,
    work: impl AsyncFnOnce(&async_nats::Client) -> ExitCode,
) -> ExitCode {
    let runtime = match runtime(tokio::runtime::Builder::new_current_thread()) {
        Ok(r) => r,
        Err(code) => return code,
    };
    runtime.block_on(async move {
        let client = match connect_cli(config, timeout).await {
            Ok(c) => c,
            Err(code) => return code,
        };
        let code = work(&client).await;
        let _ = tokio::time::timeout(Duration::from_secs(2), client.drain()).await;
        code
    })
}

/// The KEKs of `keys.kek_file`, if set; a bad file is a bad configuration (exit 64).
fn read_keks(config: &Config) -> Result<Option<vx_bridge::pii::KekRing>, ExitCode> {
    config
        .keys
        .validate()
        .and_then(|()| vx_bridge::pii::kek::configured(config))
        .map_err(bad_config)
}

/// `vx-bridge erase`: erases one session through [`vx_bridge::pii::erase::Eraser`] and prints
/// what it did.
fn erase(config: Config, request_id: &str, reason: Option<&str>, timeout: Duration) -> ExitCode {
    if let Err(e) = config.keys.validate() {
        return bad_config(e);
    }
    with_nats(&config, timeout, async |client| {
        let keys =
            std::sync::Arc::new(vx_bridge::pii::KeyStore::new(client.clone(), &config, None));
        let eraser = vx_bridge::pii::erase::Eraser::new(client.clone(), &config, keys);
        match eraser.erase(request_id, reason).await {
            Ok(done) => {
                println!("{}", serde_json::to_string(&done).unwrap_or_default());
                ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!(
                    "erase stopped: {}; run it again (every step is idempotent)",
                    vx_bridge::telemetry::error_chain(&e)
                );
                ExitCode::from(EXIT_UNAVAILABLE)
            }
        }
    })
}

/// `vx-bridge keys rewrap`: re-wraps every data key under the current KEK.
fn rewrap(config: Config, json: bool) -> ExitCode {
    let keks = match read_keks(&config) {
        Ok(Some(k)) => k,
        Ok(None) => {
            return bad_config(vx_bridge::config::ConfigError::new(
                "keys.kek_file",
                "is needed to re-wrap the data keys (the new KEK first, the old ones after it)",
            ))
        }
        Err(code) => return code,
    };
    with_nats(&config, Duration::from_secs(10), async |client| {
        let current = keks.current_id().to_owned();
        let keys = vx_bridge::pii::KeyStore::new(client.clone(), &config, Some(keks.clone()));
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
                    vx_bridge::telemetry::error_chain(&e)
                );
                ExitCode::from(EXIT_UNAVAILABLE)
            }
        }
    })
}

/// `vx-bridge replay`: checks the arguments and `webhook.schema_file` (exit 64), then replays
/// through [`vx_bridge::replay::replay`], printing as it goes.
fn replay(config: Config, args: ReplayArgs) -> ExitCode {
    use vx_bridge::replay::{output::Printer, select::Selection, Options};
    if let Err(e) = config.replay.validate() {
        return bad_config(e);
    }
    let schemas = match vx_bridge::app::result_schemas(&config) {
        Ok(s) => s,
        Err(e) => return bad_config(e),
    };
    let selection = match Selection::parse(
        args.seq.as_deref(),
        args.since.as_deref(),
        args.until.as_deref(),
        args.reason.as_deref(),
        std::time::SystemTime::now(),
    ) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("invalid argument: {e}");
            return ExitCode::from(EXIT_CONFIG as u8);
        }
    };
    let options = Options {
        selection,
        dry_run: args.dry_run,
    };
    let keks = match read_keks(&config) {
        Ok(k) => k,
        Err(code) => return code,
    };
    with_nats(&config, Duration::from_secs(10), async |client| {
        let mut printer = Printer::new(std::io::stdout().lock(), args.json);
        let mut print_error = None;
        let keys = std::sync::Arc::new(vx_bridge::pii::KeyStore::new(
            client.clone(),
            &config,
            keks.clone(),
        ));
        let sealer = vx_bridge::pii::Sealer::new(config.events.pii, Some(keys));
        let result =
            vx_bridge::replay::replay(client, &config, &schemas, &sealer, &options, &mut |row| {
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
                eprintln!("replay stopped: {e}");
                ExitCode::from(EXIT_UNAVAILABLE)
            }
        };
        if let Some(e) = print_error {
            eprintln!("cannot write the report: {e}");
        }
        code
    })
}

/// Builds a Tokio runtime, or says why not.
fn runtime(mut builder: tokio::runtime::Builder) -> Result<tokio::runtime::Runtime, ExitCode> {
    builder.enable_all().build().map_err(|e| {
        eprintln!("cannot start the async runtime: {e}");
        ExitCode::FAILURE
    })
}

/// Exit code when no status service answers (`EX_UNAVAILABLE` from sysexits.h).
const EXIT_UNAVAILABLE: u8 = 69;

fn serve(config: Config, parts: vx_bridge::app::Parts) -> ExitCode {
    let _telemetry = vx_bridge::telemetry::init_logging(&config.log);
    let runtime = match runtime(tokio::runtime::Builder::new_multi_thread()) {
        Ok(r) => r,
        Err(code) => return code,
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
        match vx_bridge::app::run_prepared(config, parts, listener, shutdown).await {
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

/// `vx-bridge demo`: needs only `[nats]` and `[log]` from the configuration.
fn demo(file: Option<&std::path::Path>) -> ExitCode {
    let mut config = match Config::parse(file, std::env::vars()) {
        Ok(c) => c,
        Err(e) => return bad_config(e),
    };
    if std::env::var_os("VXB_LOG__LEVEL").is_none() {
        config.log.level = "error".into();
        config.log.format = vx_bridge::config::LogFormat::Text;
    }
    let _telemetry = vx_bridge::telemetry::init_logging(&config.log);
    let runtime = match runtime(tokio::runtime::Builder::new_multi_thread()) {
        Ok(r) => r,
        Err(code) => return code,
    };
    let nats_server = std::env::var_os("NATS_SERVER")
        .map(std::path::PathBuf::from)
        .or_else(|| {
            vx_bridge::demo::find_on_path(std::env::var_os("PATH").as_deref(), "nats-server")
        });
    match runtime.block_on(vx_bridge::demo::run_demo(config, nats_server)) {
        Ok(code) => ExitCode::from(code as u8),
        Err(e) => {
            eprintln!("demo failed: {e:#}");
            ExitCode::FAILURE
        }
    }
}

/// `vx-bridge mock-vx`: serves [`vx_bridge::mock_vx::MockVx`] until SIGINT/SIGTERM.
fn mock_vx(
    listen: std::net::SocketAddr,
    token: &str,
    complete_with: Option<vx_bridge::cli::MockResult>,
) -> ExitCode {
    let runtime = match runtime(tokio::runtime::Builder::new_current_thread()) {
        Ok(r) => r,
        Err(code) => return code,
    };
    runtime.block_on(async move {
        let shutdown = CancellationToken::new();
        let vx = vx_bridge::mock_vx::MockVx::new(token);
        vx.complete_with(complete_with.map(vx_bridge::cli::MockResult::status));
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
            vx_bridge::mock_vx::CYCLE.join(" -> "),
            vx_bridge::mock_vx::UNKNOWN_ID
        );
        on_signal(shutdown.clone()).await;
        ExitCode::SUCCESS
    })
}
