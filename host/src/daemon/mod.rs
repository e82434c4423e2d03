//! `poe-coded`: the shared daemon. One per user and state dir, guarded by an
//! exclusive lock; listens on `$POE_CODE_HOME/run/poe-coded.sock` and serves
//! an MCP session per shim connection plus control requests.
//!
//! Handover: a daemon that stops removes its socket first and releases the
//! lock within [`SHUTDOWN_GRACE`] (plus a store flush); a daemon started
//! meanwhile finds the lock held and nobody serving, and waits for it.

pub mod budget;
pub mod control;
pub mod framing;
pub mod session;
pub mod state;

use std::fs::{File, TryLockError};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use tokio::net::{UnixListener, UnixStream};

use crate::config::file::ConfigFile;
use crate::config::{Paths, Settings};
use crate::ipc::lines::{Frame, FrameReader, write_json};
use crate::ipc::{ConnectionKind, Hello, HelloAck, IPC_VERSION};
use crate::jobs::Jobs;
use crate::limits::Limits;
use crate::plugins::Registry;
use state::DaemonState;

/// How long a stopping daemon gives its sessions and jobs to wind down (and
/// record how they ended) before it hands the state dir to a new daemon.
pub const SHUTDOWN_GRACE: Duration = Duration::from_millis(500);
/// Bound on the final store flush (normally milliseconds).
const FLUSH_GRACE: Duration = Duration::from_secs(2);
/// How long a new daemon waits for a stopping one to release the lock.
const LOCK_WAIT: Duration = Duration::from_secs(10);

/// How the daemon was started.
#[derive(Debug, Clone)]
pub struct Options {
    /// Exit after this long with no session and no running call.
    pub idle_timeout: Option<Duration>,
    /// The HTTP listener asked for on the command line.
    pub http: HttpFlags,
}

/// `poe-coded run --http ADDR [--allow-remote]`.
#[derive(Debug, Clone, Default)]
pub struct HttpFlags {
    pub listen: Option<String>,
    pub allow_remote: bool,
}

/// Why the daemon did not run.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error("another poe-coded already serves {0}")]
    AlreadyRunning(String),
    /// A stopping daemon kept the lock for longer than a new one waits.
    #[error("{0} is still held by a stopping poe-coded after {LOCK_WAIT:?}")]
    LockHeld(String),
    #[error(transparent)]
    Other(#[from] anyhow::Error),
}

/// Runs the daemon until it is stopped or idles out.
pub async fn run(paths: Paths, options: Options) -> Result<(), StartError> {
    let run_dir = paths
        .ensure_run_dir()
        .with_context(|| format!("cannot create {}", paths.run_dir().display()))?;
    // Plugins load while we wait for a stopping daemon's lock: they need no
    // lock (each process maps copies of its own), and a handover is then
    // only as slow as the old daemon's grace.
    let loading = tokio::task::spawn_blocking({
        let paths = paths.clone();
        move || Arc::new(Registry::load(&paths))
    });
    // Held until the state dir is handed over: one daemon per state dir.
    let lock = take_lock(&paths).await?;
    let socket = paths.socket();
    // We hold the lock, so any socket file left is from a daemon that died.
    let _ = std::fs::remove_file(&socket);
    let listener = UnixListener::bind(&socket)
        .with_context(|| format!("cannot listen on {}", socket.display()))?;
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&socket, std::fs::Permissions::from_mode(0o600))
            .context("cannot restrict the socket's mode")?;
    }
    tracing::info!(
        pid = std::process::id(),
        version = crate::VERSION,
        socket = %socket.display(),
        run_dir = %run_dir.display(),
        "poe-coded listening"
    );

    let registry = loading.await.context("plugin loading failed")?;
    let jobs = tokio::task::spawn_blocking({
        let db = paths.state_db();
        move || Jobs::open(&db)
    })
    .await
    .context("opening the job store failed")?;
    let (config_file, config_error) = match ConfigFile::load(&paths.config_file()) {
        Ok(file) => (file, None),
        Err(e) => {
            tracing::error!(error = %e, "config.toml ignored");
            (ConfigFile::default(), Some(e))
        }
    };
    let catalog = Arc::new(crate::models::Catalog::new(
        crate::models::catalog::base_url(&config_file),
        paths.models_cache(),
    ));
    let models = crate::models::Models::load(&config_file, catalog);
    // A listener asked for on the command line must start; one from
    // config.toml that cannot is reported (log, status) and the socket
    // still serves.
    let mut http_error = None;
    let http = match crate::http::Options::resolve(
        &config_file.http,
        options.http.listen.as_deref(),
        options.http.allow_remote,
    ) {
        Ok(None) => None,
        Ok(Some(http)) => match crate::http::bind(&http).await {
            Ok(listener) => Some((listener, http)),
            Err(e) if options.http.listen.is_some() => return Err(e.into()),
            Err(e) => {
                tracing::error!(error = %format!("{e:#}"), "no HTTP listener");
                http_error = Some(format!("{e:#}"));
                None
            }
        },
        Err(e) if options.http.listen.is_some() => return Err(e.into()),
        Err(e) => {
            tracing::error!(error = %format!("{e:#}"), "no HTTP listener");
            http_error = Some(format!("{e:#}"));
            None
        }
    };
    let daemon = Arc::new(DaemonState::new(state::Parts {
        paths: paths.clone(),
        settings: Settings::load(&config_file),
        models,
        registry,
        jobs,
        limits: Limits::new(config_file.limits),
        idle_timeout: options.idle_timeout,
        config_error,
        http_error,
    }));

    // Hot reload; the watcher stops when dropped at the end of `run`.
    let _watcher = match crate::plugins::watcher::spawn(daemon.registry.clone()) {
        Ok(watcher) => Some(watcher),
        Err(e) => {
            tracing::warn!(error = %e, "cannot watch plugin dirs; hot reload is off (poe-coded reload still works)");
            None
        }
    };
    tokio::spawn(watch_idle(daemon.clone()));
    tokio::spawn(prune_jobs(daemon.clone()));
    tokio::spawn(budget::sync_loop(daemon.clone()));
    tokio::spawn(watch_signals(daemon.clone()));
    if let Some((listener, http)) = http {
        let daemon = daemon.clone();
        let paths = paths.clone();
        tokio::spawn(async move {
            if let Err(e) = crate::http::serve(listener, http, &paths, daemon).await {
                tracing::error!(error = %format!("{e:#}"), "the HTTP listener stopped");
            }
        });
    }

    let mut connections = tokio::task::JoinSet::new();
    loop {
        tokio::select! {
            _ = daemon.shutdown.cancelled() => break,
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => {
                    connections.spawn(handle_connection(stream, daemon.clone()));
                }
                Err(e) => {
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
            },
            Some(_) = connections.join_next(), if !connections.is_empty() => {}
        }
    }
    tracing::info!("shutting down");
    // Stop accepting first, so a shim that connects now starts a new daemon.
    drop(listener);
    let _ = std::fs::remove_file(&socket);
    // Sessions' calls were cancelled with `shutdown`; background jobs are
    // cancelled here. Those that stop within the grace end as cancelled
    // (with their text so far); a plugin that ignores cancellation longer
    // leaves its job to be marked interrupted by the next daemon, which is
    // waiting for our lock.
    let sessions = async { while connections.join_next().await.is_some() {} };
    let _ = tokio::time::timeout(
        SHUTDOWN_GRACE,
        futures::future::join(sessions, daemon.jobs.cancel_all(SHUTDOWN_GRACE)),
    )
    .await;
    let flushed = daemon.clone();
    let flush = tokio::task::spawn_blocking(move || flushed.jobs.flush());
    if tokio::time::timeout(FLUSH_GRACE, flush).await.is_err() {
        tracing::warn!(grace = ?FLUSH_GRACE, "store flush still running at handover");
    }
    drop(lock);
    tracing::info!("state dir released");
    Ok(())
}

/// Takes the daemon lock, waiting while a stopping daemon still holds it.
/// Lifts the soft limit on open files to the hard one: every session and
/// every call in flight holds a socket, and the usual soft limit (1,024)
/// would refuse connections long before memory or threads run short.
pub fn raise_open_file_limit() {
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit/setrlimit only read and write the struct we pass.
    unsafe {
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) != 0 || limit.rlim_cur >= limit.rlim_max
        {
            return;
        }
        let wanted = libc::rlimit {
            rlim_cur: limit.rlim_max,
            rlim_max: limit.rlim_max,
        };
        if libc::setrlimit(libc::RLIMIT_NOFILE, &wanted) != 0 {
            tracing::warn!(
                soft = limit.rlim_cur,
                hard = limit.rlim_max,
                "cannot raise the open-file limit"
            );
        }
    }
}

async fn take_lock(paths: &Paths) -> Result<File, StartError> {
    let path = paths.daemon_lock();
    let lock = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&path)
        .with_context(|| format!("cannot open {}", path.display()))?;
    let deadline = Instant::now() + LOCK_WAIT;
    loop {
        match lock.try_lock() {
            Ok(()) => return Ok(lock),
            Err(TryLockError::WouldBlock) => {}
            Err(TryLockError::Error(e)) => {
                return Err(anyhow::anyhow!("cannot lock {}: {e}", path.display()).into());
            }
        }
        // The holder either serves (we are not needed) or is stopping: it
        // removed its socket before releasing the lock.
        if std::os::unix::net::UnixStream::connect(paths.socket()).is_ok() {
            return Err(StartError::AlreadyRunning(
                paths.socket().display().to_string(),
            ));
        }
        if Instant::now() >= deadline {
            return Err(StartError::LockHeld(path.display().to_string()));
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

async fn watch_idle(daemon: Arc<DaemonState>) {
    let Some(timeout) = daemon.idle_timeout else {
        return;
    };
    let tick = timeout.clamp(Duration::from_millis(100), Duration::from_secs(1));
    loop {
        tokio::time::sleep(tick).await;
        if daemon.is_idle_expired() {
            tracing::info!(?timeout, "idle timeout reached");
            daemon.shutdown.cancel();
            return;
        }
    }
}

/// Keeps the store at 3 days of finished jobs while the daemon runs for long.
/// Drops old jobs and expired conversations, at start and then hourly.
async fn prune_jobs(daemon: Arc<DaemonState>) {
    let mut hourly = tokio::time::interval(Duration::from_secs(3600));
    loop {
        hourly.tick().await;
        let daemon = daemon.clone();
        let _ = tokio::task::spawn_blocking(move || {
            daemon.jobs.prune();
            daemon.jobs.prune_ledger(daemon.settings.ledger_keep_days);
            match daemon.conversations.prune() {
                Ok(0) => {}
                Ok(n) => tracing::info!(conversations = n, "expired conversations deleted"),
                Err(e) => tracing::warn!(error = %e, "cannot prune conversations"),
            }
        })
        .await;
    }
}

async fn watch_signals(daemon: Arc<DaemonState>) {
    use tokio::signal::unix::{SignalKind, signal};
    let (Ok(mut term), Ok(mut int)) = (
        signal(SignalKind::terminate()),
        signal(SignalKind::interrupt()),
    ) else {
        return;
    };
    tokio::select! {
        _ = term.recv() => tracing::info!("SIGTERM"),
        _ = int.recv() => tracing::info!("SIGINT"),
    }
    daemon.shutdown.cancel();
}

fn peer_is_same_user(stream: &UnixStream) -> bool {
    // SAFETY: geteuid has no preconditions and cannot fail.
    let me = unsafe { libc::geteuid() };
    match stream.peer_cred() {
        Ok(cred) if cred.uid() == me => true,
        Ok(cred) => {
            tracing::warn!(
                peer_uid = cred.uid(),
                "refused a connection from another user"
            );
            false
        }
        Err(e) => {
            tracing::warn!(error = %e, "cannot read peer credentials; refusing");
            false
        }
    }
}

async fn handle_connection(stream: UnixStream, daemon: Arc<DaemonState>) {
    if !peer_is_same_user(&stream) {
        return;
    }
    let (read, mut write) = stream.into_split();
    // Hellos and control requests are small; a session raises the cap.
    let mut reader = FrameReader::new(read, 64 * 1024);
    let hello = match tokio::time::timeout(Duration::from_secs(10), reader.next()).await {
        Ok(Ok(Frame::Line(line))) => serde_json::from_slice::<Hello>(&line),
        _ => return,
    };
    let mut ack = HelloAck {
        ok: true,
        daemon_version: crate::VERSION.to_string(),
        daemon_pid: std::process::id(),
        error: None,
    };
    let hello = match hello {
        Ok(hello) if hello.ipc == IPC_VERSION => hello,
        Ok(hello) => {
            ack.ok = false;
            ack.error = Some(format!(
                "client speaks ipc {}, daemon speaks {IPC_VERSION}; run 'poe-coded stop' after upgrading",
                hello.ipc
            ));
            let _ = write_json(&mut write, &ack).await;
            return;
        }
        Err(e) => {
            ack.ok = false;
            ack.error = Some(format!("bad hello: {e}"));
            let _ = write_json(&mut write, &ack).await;
            return;
        }
    };
    if write_json(&mut write, &ack).await.is_err() {
        return;
    }
    match hello.kind {
        ConnectionKind::Mcp => session::serve(reader, write, hello, daemon).await,
        ConnectionKind::Control => control::serve(reader, write, daemon).await,
    }
}
