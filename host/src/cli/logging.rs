//! Log setup for the daemon: one writer thread into
//! `$POE_CODE_HOME/logs/poe-coded.log` (and stderr in the foreground), so
//! lines never interleave and nothing ever reaches a protocol stream.

use tracing_appender::non_blocking::WorkerGuard;
use tracing_subscriber::EnvFilter;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;

use crate::config::Paths;

/// Environment variable with a tracing filter (e.g. `debug`, `poe_code=trace`).
pub const LOG_ENV: &str = "POE_CODE_LOG";

/// Starts logging; keep the guard alive for the life of the process.
pub fn init_daemon(paths: &Paths, also_stderr: bool) -> anyhow::Result<WorkerGuard> {
    crate::config::ensure_private_dir(&paths.logs())?;
    let file = tracing_appender::rolling::never(paths.logs(), "poe-coded.log");
    let (writer, guard) = tracing_appender::non_blocking(file);
    let filter = EnvFilter::try_from_env(LOG_ENV).unwrap_or_else(|_| EnvFilter::new("info"));
    let file_layer = tracing_subscriber::fmt::layer()
        .with_writer(writer)
        .with_ansi(false);
    let stderr_layer = also_stderr.then(|| {
        tracing_subscriber::fmt::layer()
            .with_writer(std::io::stderr)
            .with_target(false)
    });
    tracing_subscriber::registry()
        .with(filter)
        .with(file_layer)
        .with(stderr_layer)
        .try_init()
        .map_err(|e| anyhow::anyhow!("cannot start logging: {e}"))?;
    Ok(guard)
}
