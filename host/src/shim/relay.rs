//! The relay loop of the shim: client → daemon here, daemon → client in
//! [`super::downstream`].
//!
//! Lines go through unchanged; the shim only peeks at ids and methods so it
//! can (1) remember the session's `initialize` and replay it to a new daemon
//! after a restart, and (2) answer requests that were in flight when the
//! daemon died with a JSON-RPC error instead of leaving the client hanging.

use std::time::Duration;

use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt};
use tokio::net::unix::OwnedWriteHalf;
use tokio::task::JoinHandle;

use super::connect::{Connection, connect_or_start};
use super::downstream::{InFlight, Stdout, peek, relay_daemon, spawn_stdout};
use crate::config::Paths;
use crate::daemon::framing::{error_line, too_long};
use crate::ipc::lines::{Frame, FrameReader};
use crate::ipc::{ConnectionKind, Hello, MAX_MESSAGE_BYTES};

/// Id prefix of replayed `initialize` requests; their answers are swallowed.
const REPLAY_ID_PREFIX: &str = "poe-code-shim-replay-";
/// Answers from the daemon may be large (whole generated documents).
const MAX_DAEMON_LINE: usize = 1 << 30;
/// JSON-RPC "Internal error", used for requests lost with a daemon.
const INTERNAL_ERROR: i64 = -32603;
/// How long lines already read may take to reach stdout once stdin closed.
const DRAIN_ON_EXIT: Duration = Duration::from_secs(1);

type Input = Box<dyn AsyncRead + Unpin + Send>;
type Output = Box<dyn AsyncWrite + Unpin + Send>;

/// Our stdin and stdout as async streams. MCP clients connect pipes, which
/// we drive directly from the reactor; tokio's generic stdio goes through a
/// blocking thread per read and write, which costs latency on every message.
fn stdio() -> (Input, Output) {
    use std::os::fd::AsFd;
    use tokio::net::unix::pipe;
    let input: Input = std::io::stdin()
        .as_fd()
        .try_clone_to_owned()
        .ok()
        .and_then(|fd| pipe::Receiver::from_owned_fd(fd).ok())
        .map(|r| Box::new(r) as Input)
        .unwrap_or_else(|| Box::new(tokio::io::stdin()));
    let output: Output = std::io::stdout()
        .as_fd()
        .try_clone_to_owned()
        .ok()
        .and_then(|fd| pipe::Sender::from_owned_fd(fd).ok())
        .map(|w| Box::new(w) as Output)
        .unwrap_or_else(|| Box::new(tokio::io::stdout()));
    (input, output)
}

/// The client's stdout went away; nothing more can be delivered.
#[derive(Debug, thiserror::Error)]
#[error("stdout closed")]
struct StdoutClosed;

/// The live daemon connection.
struct Upstream {
    writer: OwnedWriteHalf,
    /// Relays the daemon's lines to stdout; ends with the connection.
    downstream: JoinHandle<()>,
}

/// The shim's state.
pub struct Relay {
    paths: Paths,
    api_key: String,
    upstream: Option<Upstream>,
    stdin: FrameReader<Input>,
    stdout: Stdout,
    stdout_task: JoinHandle<()>,
    /// The client's `initialize` line, replayed after a reconnect.
    initialize: Option<Vec<u8>>,
    /// Whether the client sent `notifications/initialized`.
    initialized: bool,
    in_flight: InFlight,
    replays: u64,
}

impl Relay {
    /// Connects (starting the daemon if needed).
    pub async fn start(paths: Paths, api_key: String) -> anyhow::Result<Self> {
        let hello = Hello::new(ConnectionKind::Mcp, Some(api_key.clone()));
        let conn = connect_or_start(&paths, &hello).await?;
        let (input, output) = stdio();
        let (stdout, stdout_task) = spawn_stdout(output);
        let mut relay = Self {
            paths,
            api_key,
            upstream: None,
            stdin: FrameReader::new(input, MAX_MESSAGE_BYTES),
            stdout,
            stdout_task,
            initialize: None,
            initialized: false,
            in_flight: InFlight::default(),
            replays: 0,
        };
        relay.attach(conn);
        Ok(relay)
    }

    /// Relays until the client closes stdin; returns the exit code.
    pub async fn run(mut self) -> i32 {
        loop {
            let daemon_gone = async {
                match self.upstream.as_mut() {
                    Some(upstream) => {
                        let _ = (&mut upstream.downstream).await;
                    }
                    None => std::future::pending().await,
                }
            };
            // Every branch is cancel-safe: the partial stdin line lives in
            // `self.stdin`, and the others only wait.
            tokio::select! {
                frame = self.stdin.next() => match frame {
                    Ok(Frame::Line(line)) => match self.on_client_line(line).await {
                        Ok(()) => {}
                        Err(e) if e.is::<StdoutClosed>() => return 0,
                        Err(e) => {
                            eprintln!("poe-code: {e:#}");
                            return 1;
                        }
                    },
                    Ok(Frame::TooLong { len }) => {
                        if self.write_client(too_long(len, MAX_MESSAGE_BYTES)).await.is_err() {
                            return 0;
                        }
                    }
                    // Client closed stdin: closing our socket makes the daemon
                    // cancel this session's calls.
                    Ok(Frame::Eof) | Err(_) => break,
                },
                () = daemon_gone => {
                    if self.daemon_lost().await.is_err() {
                        return 0;
                    }
                }
                () = self.stdout.closed() => return 0,
            }
        }
        self.finish().await;
        0
    }

    /// Ends the session, giving lines already read a moment to reach stdout.
    async fn finish(self) {
        if let Some(upstream) = self.upstream {
            upstream.downstream.abort();
        }
        drop(self.stdout);
        let _ = tokio::time::timeout(DRAIN_ON_EXIT, self.stdout_task).await;
    }

    async fn write_client(&self, line: Vec<u8>) -> Result<(), StdoutClosed> {
        self.stdout.send(line).await.map_err(|_| StdoutClosed)
    }

    async fn on_client_line(&mut self, mut line: Vec<u8>) -> anyhow::Result<()> {
        let (request_id, method) = match peek(&line) {
            Some(msg) => (
                msg.id
                    .filter(|_| msg.method.is_some())
                    .map(|id| id.get().to_string()),
                msg.method.map(|m| m.into_owned()),
            ),
            None => (None, None),
        };
        line.push(b'\n');
        // Record before sending: the answer can reach the downstream task
        // before the send returns.
        if let Some(id) = &request_id {
            self.in_flight.insert(id);
        }
        if self.upstream.is_none() {
            self.reconnect().await?;
        }
        if self.send_to_daemon(&line).await.is_err() {
            // The daemon died under us and never got this line: take its id
            // back, so it is resent rather than reported lost, fail the
            // others, reconnect and resend.
            if let Some(id) = &request_id {
                self.in_flight.remove(id);
            }
            self.daemon_lost().await?;
            self.reconnect().await?;
            if let Some(id) = &request_id {
                self.in_flight.insert(id);
            }
            self.send_to_daemon(&line).await?;
        }
        // Only now that the daemon has it, so a reconnect never replays an
        // `initialize` that is then resent as well.
        match (request_id.is_some(), method.as_deref()) {
            (true, Some("initialize")) => {
                line.pop();
                self.initialize = Some(line);
            }
            (false, Some("notifications/initialized")) => self.initialized = true,
            _ => {}
        }
        Ok(())
    }

    /// Writes `line` (newline included) to the daemon.
    async fn send_to_daemon(&mut self, line: &[u8]) -> std::io::Result<()> {
        let upstream = self
            .upstream
            .as_mut()
            .ok_or_else(|| std::io::Error::from(std::io::ErrorKind::NotConnected))?;
        upstream.writer.write_all(line).await?;
        upstream.writer.flush().await
    }

    /// Relays `conn`'s lines to stdout from now on.
    fn attach(&mut self, conn: Connection) {
        let Connection {
            mut reader, writer, ..
        } = conn;
        reader.set_max(MAX_DAEMON_LINE);
        let downstream = tokio::spawn(relay_daemon(
            reader,
            self.in_flight.clone(),
            self.stdout.clone(),
        ));
        self.upstream = Some(Upstream { writer, downstream });
    }

    /// The daemon connection ended: fail the requests it took with it.
    async fn daemon_lost(&mut self) -> Result<(), StdoutClosed> {
        if let Some(Upstream { writer, downstream }) = self.upstream.take() {
            drop(writer);
            // Answers the daemon sent before it went away are delivered (and
            // their ids cleared) before anything is reported lost. (A handle
            // that already finished was awaited by `run`; polling it again
            // would panic.)
            if !downstream.is_finished() {
                let _ = downstream.await;
            }
        }
        for id in self.in_flight.drain() {
            let id: serde_json::Value =
                serde_json::from_str(&id).unwrap_or(serde_json::Value::Null);
            let line = error_line(
                id,
                INTERNAL_ERROR,
                "the poe-coded daemon stopped while this request was running; retry it",
            );
            self.write_client(line).await?;
        }
        Ok(())
    }

    /// Connects to a (possibly new) daemon and replays the session's handshake.
    async fn reconnect(&mut self) -> anyhow::Result<()> {
        let hello = Hello::new(ConnectionKind::Mcp, Some(self.api_key.clone()));
        let mut conn = connect_or_start(&self.paths, &hello).await?;
        conn.reader.set_max(MAX_DAEMON_LINE);
        if let Some(init) = &self.initialize {
            self.replays += 1;
            let replay_id = format!("{REPLAY_ID_PREFIX}{}", self.replays);
            let mut request: serde_json::Value = serde_json::from_slice(init)?;
            request["id"] = serde_json::Value::String(replay_id.clone());
            let mut line = serde_json::to_vec(&request)?;
            line.push(b'\n');
            conn.writer.write_all(&line).await?;
            // Wait for the replayed handshake's answer before anything else.
            loop {
                match conn.reader.next().await? {
                    Frame::Line(line) => {
                        let is_reply = peek(&line)
                            .and_then(|m| m.id)
                            .is_some_and(|id| id.get().contains(&replay_id));
                        if is_reply {
                            break;
                        }
                        self.write_client(line).await?;
                    }
                    _ => {
                        anyhow::bail!("daemon closed the connection during the replayed initialize")
                    }
                }
            }
            if self.initialized {
                conn.writer
                    .write_all(b"{\"jsonrpc\":\"2.0\",\"method\":\"notifications/initialized\"}\n")
                    .await?;
            }
        }
        self.attach(conn);
        Ok(())
    }
}
