//! The exit codes of every `vx-bridge` command, in one place (sysexits.h): 0 done, 1 done with
//! a failure to report (a lookup's error reply, a replay with refused rows), 64 a bad
//! configuration or argument (nothing was sent), 69 a service that is not there (NATS, or no
//! status service answered). It decides nothing; the commands pick the code.

use std::process::ExitCode;

use crate::config::ConfigError;

/// `EX_USAGE`: a bad configuration or argument; nothing was sent.
pub const CONFIG: u8 = 64;

/// `EX_UNAVAILABLE`: NATS or the status service did not answer.
pub const UNAVAILABLE: u8 = 69;

/// Why a command stopped early: the exit code, its message printed already.
pub type Exit = ExitCode;

/// A bad configuration: its one line on stderr, exit code [`CONFIG`].
pub fn bad_config(e: ConfigError) -> Exit {
    eprintln!("{e}");
    ExitCode::from(CONFIG)
}

/// A bad argument: `message` on stderr, exit code [`CONFIG`].
pub fn bad_argument(message: impl std::fmt::Display) -> Exit {
    eprintln!("{message}");
    ExitCode::from(CONFIG)
}

/// A service that is not there: `message` on stderr, exit code [`UNAVAILABLE`].
pub fn unavailable(message: impl std::fmt::Display) -> Exit {
    eprintln!("{message}");
    ExitCode::from(UNAVAILABLE)
}
