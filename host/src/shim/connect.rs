//! Reaching the daemon: connect to its socket, or start one and wait for it.
//!
//! Starting is race-free: shims serialise on `run/spawn.lock`, re-check the
//! socket under the lock, and the daemon itself holds `run/poe-coded.lock`
//! until it hands the state dir over, so however many shims start at once,
//! one daemon runs. A daemon started while the previous one is still
//! stopping waits for its lock (see [`crate::daemon`]), so a shim that
//! starts right after `poe-coded stop` or an idle exit is served at once.

use std::io::Write;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, anyhow, bail};
use tokio::net::UnixStream;
use tokio::net::unix::{OwnedReadHalf, OwnedWriteHalf};

use crate::config::Paths;
use crate::ipc::lines::{Frame, FrameReader, write_json};
use crate::ipc::{Hello, HelloAck};

/// How long a freshly started daemon has to accept connections.
const START_TIMEOUT: Duration = Duration::from_secs(10);
/// Daemons started in one attempt to connect, at most.
const MAX_STARTS: u32 = 3;

/// An open, greeted connection to the daemon.
pub struct Connection {
    /// Capped at 64 KiB (the hello ack) until the caller raises it.
    pub reader: FrameReader<OwnedReadHalf>,
    pub writer: OwnedWriteHalf,
    pub ack: HelloAck,
}

/// Why there is no connection.
#[derive(Debug, thiserror::Error)]
pub enum ConnectError {
    /// Nothing listens on the socket.
    #[error("no poe-coded daemon is running for {0}")]
    NotRunning(String),
    #[error(transparent)]
    Other(#[from] anyhow::Error),
}

/// Connects to a running daemon and greets it.
pub async fn connect(paths: &Paths, hello: &Hello) -> Result<Connection, ConnectError> {
    let socket = paths.socket();
    let stream = match UnixStream::connect(&socket).await {
        Ok(stream) => stream,
        Err(e) if nobody_listens(&e) => {
            return Err(ConnectError::NotRunning(socket.display().to_string()));
        }
        Err(e) => {
            return Err(anyhow!("cannot connect to {}: {e}", socket.display()).into());
        }
    };
    let (read, mut writer) = stream.into_split();
    let mut reader = FrameReader::new(read, 64 * 1024);
    if let Err(e) = write_json(&mut writer, hello).await {
        if nobody_listens(&e) {
            return Err(ConnectError::NotRunning(socket.display().to_string()));
        }
        return Err(anyhow!("cannot greet the daemon at {}: {e}", socket.display()).into());
    }
    let ack = match tokio::time::timeout(START_TIMEOUT, reader.next()).await {
        Ok(Ok(Frame::Line(line))) => serde_json::from_slice::<HelloAck>(&line)
            .map_err(|e| anyhow!("daemon sent an unreadable hello reply: {e}"))?,
        Ok(_) => {
            // The daemon shut down between accept and reply (idle exit).
            return Err(ConnectError::NotRunning(socket.display().to_string()));
        }
        Err(_) => {
            return Err(anyhow!("daemon did not answer hello within {START_TIMEOUT:?}").into());
        }
    };
    if !ack.ok {
        return Err(anyhow!(
            "daemon refused the connection: {}",
            ack.error.as_deref().unwrap_or("no reason given")
        )
        .into());
    }
    Ok(Connection {
        reader,
        writer,
        ack,
    })
}

/// Whether a connect or the hello failed because no daemon listens: no
/// socket, nobody bound to it, or (reset, broken pipe) a daemon that closed
/// it, killed or idle, while our connection sat in its backlog.
fn nobody_listens(e: &std::io::Error) -> bool {
    use std::io::ErrorKind::*;
    matches!(
        e.kind(),
        NotFound | ConnectionRefused | ConnectionReset | BrokenPipe
    )
}

/// Connects to the daemon, starting one if none answers.
pub async fn connect_or_start(paths: &Paths, hello: &Hello) -> anyhow::Result<Connection> {
    match connect(paths, hello).await {
        Ok(conn) => return Ok(conn),
        Err(ConnectError::NotRunning(_)) => {}
        Err(ConnectError::Other(e)) => return Err(e),
    }
    paths
        .ensure_run_dir()
        .with_context(|| format!("cannot create {}", paths.run_dir().display()))?;
    let lock = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(paths.spawn_lock())
        .context("cannot open the spawn lock")?;
    let lock = tokio::task::spawn_blocking(move || lock.lock().map(|()| lock))
        .await
        .context("spawn lock task failed")?
        .context("cannot take the spawn lock")?;
    // Another shim may have started the daemon while we waited for the lock.
    match connect(paths, hello).await {
        Ok(conn) => return Ok(conn),
        Err(ConnectError::NotRunning(_)) => {}
        Err(ConnectError::Other(e)) => return Err(e),
    }
    let mut exited = start_daemon(paths)?;
    let mut starts = 1;
    let deadline = Instant::now() + START_TIMEOUT;
    let mut delay = Duration::from_millis(2);
    loop {
        match connect(paths, hello).await {
            Ok(conn) => {
                drop(lock);
                return Ok(conn);
            }
            Err(ConnectError::Other(e)) => return Err(e),
            Err(ConnectError::NotRunning(_)) => {}
        }
        if let Ok(status) = exited.try_recv() {
            if !status.success() {
                bail!(
                    "poe-coded exited with {status} while starting; see {}",
                    stderr_log(paths).display()
                );
            }
            // It found another daemon serving, which is gone again (idle
            // exit, stop): start one more rather than wait for nothing.
            if starts < MAX_STARTS {
                exited = start_daemon(paths)?;
                starts += 1;
            }
        }
        if Instant::now() > deadline {
            bail!(
                "poe-coded did not start listening on {} within {START_TIMEOUT:?}; see {}",
                paths.socket().display(),
                stderr_log(paths).display()
            );
        }
        tokio::time::sleep(delay).await;
        delay = (delay * 2).min(Duration::from_millis(50));
    }
}

fn stderr_log(paths: &Paths) -> PathBuf {
    paths.logs().join("poe-coded.stderr.log")
}

/// Path of the `poe-coded` binary: next to this one.
pub fn daemon_binary() -> anyhow::Result<PathBuf> {
    if let Some(path) = std::env::var_os("POE_CODED_BIN") {
        return Ok(PathBuf::from(path));
    }
    let dir = crate::config::exe_dir().ok_or_else(|| anyhow!("cannot locate this executable"))?;
    let path = dir.join("poe-coded");
    if !path.exists() {
        bail!(
            "poe-coded not found next to this binary (looked for {})",
            path.display()
        );
    }
    Ok(path)
}

/// Starts a detached background daemon; the receiver gets its exit status.
pub fn start_daemon(
    paths: &Paths,
) -> anyhow::Result<std::sync::mpsc::Receiver<std::process::ExitStatus>> {
    use std::os::unix::process::CommandExt;
    let binary = daemon_binary()?;
    crate::config::ensure_private_dir(&paths.logs())?;
    let mut stderr = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(stderr_log(paths))
        .context("cannot open the daemon's stderr log")?;
    let _ = writeln!(
        stderr,
        "--- poe-coded started by pid {}",
        std::process::id()
    );
    let mut command = Command::new(&binary);
    command
        .args(["run", "--background"])
        .env(crate::config::HOME_ENV, &paths.home)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(stderr);
    // SAFETY: setsid is async-signal-safe; it detaches the daemon from the
    // agent's terminal and process group so their signals do not reach it.
    unsafe {
        command.pre_exec(|| {
            libc::setsid();
            Ok(())
        });
    }
    let mut child = command
        .spawn()
        .with_context(|| format!("cannot start {}", binary.display()))?;
    let (tx, rx) = std::sync::mpsc::channel();
    // Reap the daemon when it exits so it never lingers as a zombie.
    std::thread::spawn(move || {
        if let Ok(status) = child.wait() {
            let _ = tx.send(status);
        }
    });
    Ok(rx)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ipc::{ConnectionKind, IPC_VERSION};

    /// A daemon that dies while a client connects (killed, or an idle exit)
    /// leaves the client a refused connect, a reset, or an early EOF,
    /// depending on the instant; each means "no daemon", so a shim starts a
    /// new one and `status` says none runs, rather than failing.
    #[tokio::test]
    async fn a_daemon_closing_its_socket_mid_connect_is_not_running() {
        let dir = tempfile::tempdir().unwrap();
        let paths = Paths::at(dir.path().to_path_buf());
        paths.ensure_run_dir().unwrap();
        let hello = Hello {
            ipc: IPC_VERSION,
            kind: ConnectionKind::Control,
            version: "test".into(),
            pid: std::process::id(),
            cwd: None,
            api_key: None,
        };
        for round in 0..200 {
            let listener = tokio::net::UnixListener::bind(paths.socket()).unwrap();
            let client = tokio::spawn({
                let (paths, hello) = (paths.clone(), hello.clone());
                async move { connect(&paths, &hello).await }
            });
            // Vary where in the client's connect the listener goes away.
            for _ in 0..round % 7 {
                tokio::task::yield_now().await;
            }
            drop(listener);
            match client.await.unwrap() {
                Err(ConnectError::NotRunning(_)) => {}
                Err(ConnectError::Other(e)) => panic!("round {round}: {e:#}"),
                Ok(_) => panic!("round {round}: greeted by a closed socket"),
            }
            std::fs::remove_file(paths.socket()).unwrap();
        }
    }
}
