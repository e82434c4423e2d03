//! The two command lines: `poe-code` ([`client`]) and `poe-coded` ([`daemon`]).

pub mod client;
mod configure;
pub mod daemon;
mod logging;
mod plugins;
mod query;
pub mod usage;

use std::process::ExitCode;

/// The tokio runtime of a command: one thread, which is all a CLI, the shim
/// or the daemon needs (see `daemon::run`) and starts fastest. On failure it
/// has told the user, as `program`, and gives the exit code.
fn runtime(program: &str) -> Result<tokio::runtime::Runtime, ExitCode> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| {
            eprintln!("{program}: cannot start: {e}");
            ExitCode::FAILURE
        })
}
