//! The relay loop of the shim.
//!
//! Lines go through unchanged; the shim only peeks at ids and methods so it
//! can (1) remember the session's `initialize` and replay it to a new daemon
//! after a restart, and (2) answer requests that were in flight when the
//! daemon died with a JSON-RPC error instead of leaving the client hanging.

use std::collections::HashSet;

use serde::Deserialize;
use serde_json::value::RawValue;
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt, BufReader};

use super::connect::{Connection, connect_or_start};
use crate::config::Paths;
use crate::daemon::framing::{error_line, too_long};
use crate::ipc::lines::{Frame, read_frame, write_line};
use crate::ipc::{ConnectionKind, Hello, MAX_MESSAGE_BYTES};

/// Id prefix of replayed `initialize` requests; their answers are swallowed.
const REPLAY_ID_PREFIX: &str = "poe-code-shim-replay-";
/// Answers from the daemon may be large (whole generated documents).
const MAX_DAEMON_LINE: usize = 1 << 30;
/// JSON-RPC "Internal error", used for requests lost with a daemon.
const INTERNAL_ERROR: i64 = -32603;

#[derive(Deserialize)]
struct Peek<'a> {
    #[serde(borrow, default)]
    id: Option<&'a RawValue>,
    #[serde(default)]
    method: Option<std::borrow::Cow<'a, str>>,
}

fn peek(line: &[u8]) -> Option<Peek<'_>> {
    serde_json::from_slice(line).ok()
}

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

/// The shim's state.
pub struct Relay {
    paths: Paths,
    api_key: String,
    conn: Option<Connection>,
    stdin: Option<Input>,
    stdout: Output,
    /// The client's `initialize` line, replayed after a reconnect.
    initialize: Option<Vec<u8>>,
    /// Whether the client sent `notifications/initialized`.
    initialized: bool,
    /// Ids (raw JSON) of client requests not yet answered.
    in_flight: HashSet<String>,
    replays: u64,
}

impl Relay {
    /// Connects (starting the daemon if needed).
    pub async fn start(paths: Paths, api_key: String) -> anyhow::Result<Self> {
        let hello = Hello::new(ConnectionKind::Mcp, Some(api_key.clone()));
        let conn = connect_or_start(&paths, &hello).await?;
        let (stdin, stdout) = stdio();
        Ok(Self {
            paths,
            api_key,
            conn: Some(conn),
            stdin: Some(stdin),
            stdout,
            initialize: None,
            initialized: false,
            in_flight: HashSet::new(),
            replays: 0,
        })
    }

    /// Relays until the client closes stdin; returns the exit code.
    pub async fn run(mut self) -> i32 {
        let input = self.stdin.take().expect("run is called once");
        let mut stdin = BufReader::with_capacity(64 * 1024, input);
        loop {
            let from_daemon = async {
                match self.conn.as_mut() {
                    Some(conn) => read_frame(&mut conn.reader, MAX_DAEMON_LINE).await,
                    None => std::future::pending().await,
                }
            };
            tokio::select! {
                frame = read_frame(&mut stdin, MAX_MESSAGE_BYTES) => match frame {
                    Ok(Frame::Line(line)) => {
                        if let Err(e) = self.on_client_line(line).await {
                            eprintln!("poe-code: {e:#}");
                            return 1;
                        }
                    }
                    Ok(Frame::TooLong { len }) => {
                        if self.write_client(&too_long(len, MAX_MESSAGE_BYTES)).await.is_err() {
                            return 0;
                        }
                    }
                    // Client closed stdin: closing our socket makes the daemon
                    // cancel this session's calls.
                    Ok(Frame::Eof) | Err(_) => return 0,
                },
                frame = from_daemon => match frame {
                    Ok(Frame::Line(line)) => {
                        if self.on_daemon_line(&line).await.is_err() {
                            return 0;
                        }
                    }
                    Ok(Frame::TooLong { .. }) | Ok(Frame::Eof) | Err(_) => {
                        if self.daemon_lost().await.is_err() {
                            return 0;
                        }
                    }
                },
            }
        }
    }

    async fn write_client(&mut self, line: &[u8]) -> std::io::Result<()> {
        write_line(&mut self.stdout, line).await
    }

    async fn on_client_line(&mut self, line: Vec<u8>) -> anyhow::Result<()> {
        self.send_to_daemon(&line).await?;
        // Track only after the daemon has the line, so a retry after a lost
        // connection never reports the resent request as lost too.
        if let Some(msg) = peek(&line) {
            match (msg.id, msg.method.as_deref()) {
                (Some(id), Some(method)) => {
                    self.in_flight.insert(id.get().to_string());
                    if method == "initialize" {
                        self.initialize = Some(line.clone());
                    }
                }
                (None, Some("notifications/initialized")) => self.initialized = true,
                _ => {}
            }
        }
        Ok(())
    }

    async fn send_to_daemon(&mut self, line: &[u8]) -> anyhow::Result<()> {
        if self.conn.is_none() {
            self.reconnect().await?;
        }
        if let Some(conn) = self.conn.as_mut()
            && write_line(&mut conn.writer, line).await.is_ok()
        {
            return Ok(());
        }
        // The daemon died under us: answer what was lost, reconnect, resend.
        self.daemon_lost().await?;
        self.reconnect().await?;
        if let Some(conn) = self.conn.as_mut() {
            write_line(&mut conn.writer, line).await?;
        }
        Ok(())
    }

    async fn on_daemon_line(&mut self, line: &[u8]) -> std::io::Result<()> {
        if let Some(msg) = peek(line)
            && msg.method.is_none()
            && let Some(id) = msg.id
        {
            if id.get().contains(REPLAY_ID_PREFIX) {
                return Ok(());
            }
            self.in_flight.remove(id.get());
        }
        self.write_client(line).await
    }

    /// The daemon connection ended: fail the requests it took with it.
    async fn daemon_lost(&mut self) -> std::io::Result<()> {
        self.conn = None;
        let lost: Vec<String> = self.in_flight.drain().collect();
        for id in lost {
            let id: serde_json::Value =
                serde_json::from_str(&id).unwrap_or(serde_json::Value::Null);
            let line = error_line(
                id,
                INTERNAL_ERROR,
                "the poe-coded daemon stopped while this request was running; retry it",
            );
            self.write_client(&line).await?;
        }
        Ok(())
    }

    /// Connects to a (possibly new) daemon and replays the session's handshake.
    async fn reconnect(&mut self) -> anyhow::Result<()> {
        let hello = Hello::new(ConnectionKind::Mcp, Some(self.api_key.clone()));
        let mut conn = connect_or_start(&self.paths, &hello).await?;
        if let Some(init) = &self.initialize {
            self.replays += 1;
            let replay_id = format!("{REPLAY_ID_PREFIX}{}", self.replays);
            let mut request: serde_json::Value = serde_json::from_slice(init)?;
            request["id"] = serde_json::Value::String(replay_id.clone());
            write_line(&mut conn.writer, &serde_json::to_vec(&request)?).await?;
            // Wait for the replayed handshake's answer before anything else.
            loop {
                match read_frame(&mut conn.reader, MAX_DAEMON_LINE).await? {
                    Frame::Line(line) => {
                        let is_reply = peek(&line)
                            .and_then(|m| m.id)
                            .is_some_and(|id| id.get().contains(&replay_id));
                        if is_reply {
                            break;
                        }
                        self.write_client(&line).await?;
                    }
                    _ => {
                        anyhow::bail!("daemon closed the connection during the replayed initialize")
                    }
                }
            }
            if self.initialized {
                write_line(
                    &mut conn.writer,
                    br#"{"jsonrpc":"2.0","method":"notifications/initialized"}"#,
                )
                .await?;
            }
        }
        self.conn = Some(conn);
        self.stdout.flush().await?;
        Ok(())
    }
}
