//! A minimal MCP client over a child process's stdio that shows every line:
//! tests need raw access (malformed input, notifications, ids), which a full
//! SDK client hides. Like every real client it answers the server's `ping`
//! at once (the server uses one as a barrier before a streamed result).

use std::collections::VecDeque;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use serde_json::{Value, json};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::process::{Child, ChildStdin, Command};
use tokio::sync::{mpsc, oneshot};

/// How long any single expected message may take.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(30);

/// Work for the task that owns the shim's stdin.
enum ToStdin {
    /// A line (with its newline); the sender learns when it was written.
    Line(Vec<u8>, Option<oneshot::Sender<()>>),
    /// Close stdin (end the session the MCP way).
    Close,
}

/// Writes lines to stdin in order until closed.
async fn stdin_writer(mut stdin: ChildStdin, mut work: mpsc::UnboundedReceiver<ToStdin>) {
    while let Some(item) = work.recv().await {
        match item {
            ToStdin::Line(line, ack) => {
                let written = stdin.write_all(&line).await.and(stdin.flush().await);
                // A pong (no ack) racing a closing shim is of no consequence.
                if let Some(ack) = ack {
                    written.expect("write to the shim's stdin");
                    let _ = ack.send(());
                }
            }
            ToStdin::Close => return,
        }
    }
}

/// A client connected to a shim's stdin/stdout.
pub struct McpClient {
    child: Child,
    stdin: Option<mpsc::UnboundedSender<ToStdin>>,
    /// Server `ping` requests answered so far.
    pings: Arc<AtomicU64>,
    incoming: mpsc::UnboundedReceiver<Value>,
    /// Messages received but not yet consumed by a `wait_for`.
    buffered: VecDeque<Value>,
    /// Lines on stdout that were not JSON (must stay empty: stdout is protocol only).
    pub non_json: mpsc::UnboundedReceiver<String>,
    next_id: u64,
}

impl McpClient {
    /// Spawns `command` with piped stdio.
    pub async fn spawn(mut command: Command) -> Self {
        command
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::inherit())
            .kill_on_drop(true);
        let mut child = command.spawn().expect("spawn shim");
        let stdout = child.stdout.take().expect("stdout");
        let (stdin_tx, stdin_rx) = mpsc::unbounded_channel();
        tokio::spawn(stdin_writer(child.stdin.take().expect("stdin"), stdin_rx));
        let (tx, incoming) = mpsc::unbounded_channel();
        let (bad_tx, non_json) = mpsc::unbounded_channel();
        let pings = Arc::new(AtomicU64::new(0));
        let pongs = stdin_tx.clone();
        let answered = pings.clone();
        tokio::spawn(async move {
            let mut lines = BufReader::new(stdout).lines();
            while let Ok(Some(line)) = lines.next_line().await {
                match serde_json::from_str::<Value>(&line) {
                    Ok(value) if value["method"] == "ping" && value.get("id").is_some() => {
                        let pong = json!({"jsonrpc": "2.0", "id": value["id"], "result": {}});
                        let mut bytes = pong.to_string().into_bytes();
                        bytes.push(b'\n');
                        let _ = pongs.send(ToStdin::Line(bytes, None));
                        answered.fetch_add(1, Ordering::SeqCst);
                    }
                    Ok(value) => {
                        let _ = tx.send(value);
                    }
                    Err(_) => {
                        let _ = bad_tx.send(line);
                    }
                }
            }
        });
        Self {
            child,
            stdin: Some(stdin_tx),
            pings,
            incoming,
            buffered: VecDeque::new(),
            non_json,
            next_id: 1,
        }
    }

    /// Writes one raw line.
    pub async fn send_line(&mut self, line: &str) {
        let stdin = self.stdin.as_ref().expect("stdin open");
        let mut bytes = Vec::with_capacity(line.len() + 1);
        bytes.extend_from_slice(line.as_bytes());
        bytes.push(b'\n');
        let (ack, written) = oneshot::channel();
        stdin
            .send(ToStdin::Line(bytes, Some(ack)))
            .expect("stdin writer alive");
        written.await.expect("line written");
    }

    /// How many server `ping` requests this client answered.
    pub fn pings_answered(&self) -> u64 {
        self.pings.load(Ordering::SeqCst)
    }

    /// Sends a JSON message.
    pub async fn send(&mut self, message: &Value) {
        self.send_line(&message.to_string()).await;
    }

    /// Sends a request and returns its id.
    pub async fn send_request(&mut self, method: &str, params: Value) -> Value {
        let id = json!(self.next_id);
        self.next_id += 1;
        let mut message = json!({"jsonrpc": "2.0", "id": id, "method": method});
        if !params.is_null() {
            message["params"] = params;
        }
        self.send(&message).await;
        id
    }

    /// Sends a request and waits for its response message.
    pub async fn request(&mut self, method: &str, params: Value) -> Value {
        let id = self.send_request(method, params).await;
        self.response(&id).await
    }

    /// Waits for the response to `id`.
    pub async fn response(&mut self, id: &Value) -> Value {
        let id = id.clone();
        self.wait_for(move |m| m.get("method").is_none() && m.get("id") == Some(&id))
            .await
    }

    /// Waits for the first message matching `pred`, keeping the others.
    pub async fn wait_for(&mut self, pred: impl Fn(&Value) -> bool) -> Value {
        self.wait_for_within(DEFAULT_TIMEOUT, pred)
            .await
            .unwrap_or_else(|| panic!("no matching message; buffered: {:?}", self.buffered))
    }

    /// Like [`Self::wait_for`], but gives up after `timeout`.
    pub async fn wait_for_within(
        &mut self,
        timeout: Duration,
        pred: impl Fn(&Value) -> bool,
    ) -> Option<Value> {
        if let Some(pos) = self.buffered.iter().position(&pred) {
            return self.buffered.remove(pos);
        }
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            match tokio::time::timeout_at(deadline, self.incoming.recv()).await {
                Ok(Some(message)) if pred(&message) => return Some(message),
                Ok(Some(message)) => self.buffered.push_back(message),
                Ok(None) | Err(_) => return None,
            }
        }
    }

    /// Removes and returns buffered notifications with `method`.
    pub fn take_notifications(&mut self, method: &str) -> Vec<Value> {
        let (taken, kept): (Vec<Value>, Vec<Value>) = self
            .buffered
            .drain(..)
            .partition(|m| m.get("method").and_then(Value::as_str) == Some(method));
        self.buffered = kept.into();
        taken
    }

    /// Removes the progress notifications received so far and returns
    /// their messages, in order.
    pub fn take_progress_messages(&mut self) -> Vec<String> {
        self.take_notifications("notifications/progress")
            .iter()
            .filter_map(|n| n["params"]["message"].as_str().map(str::to_string))
            .collect()
    }

    /// Removes and returns every message received and not yet consumed.
    pub fn take_all(&mut self) -> Vec<Value> {
        while let Ok(message) = self.incoming.try_recv() {
            self.buffered.push_back(message);
        }
        self.buffered.drain(..).collect()
    }

    /// The 2025-11-25 handshake; returns the initialize result.
    pub async fn initialize(&mut self, client_name: &str) -> Value {
        let response = self
            .request(
                "initialize",
                json!({
                    "protocolVersion": "2025-11-25",
                    "capabilities": {},
                    "clientInfo": {"name": client_name, "version": "1.0.0"}
                }),
            )
            .await;
        self.send(&json!({"jsonrpc": "2.0", "method": "notifications/initialized"}))
            .await;
        response
    }

    /// Calls a tool and returns the whole response message.
    pub async fn call_tool(&mut self, name: &str, arguments: Value) -> Value {
        self.request("tools/call", json!({"name": name, "arguments": arguments}))
            .await
    }

    /// Calls `get_bot_response` with just `bot_name` and `message`.
    pub async fn ask(&mut self, bot: &str, message: &str) -> Value {
        self.call_tool(
            "get_bot_response",
            json!({"bot_name": bot, "message": message}),
        )
        .await
    }

    /// Closes stdin (the MCP way to end a stdio session).
    pub fn close_stdin(&mut self) {
        if let Some(stdin) = self.stdin.take() {
            let _ = stdin.send(ToStdin::Close);
        }
    }

    /// Waits for the shim to exit.
    pub async fn wait_exit(&mut self, timeout: Duration) -> Option<std::process::ExitStatus> {
        tokio::time::timeout(timeout, self.child.wait())
            .await
            .ok()
            .and_then(Result::ok)
    }

    /// The shim's pid.
    pub fn pid(&self) -> Option<u32> {
        self.child.id()
    }
}

/// The text of the first text content block of a `tools/call` response.
pub fn result_text(response: &Value) -> String {
    response["result"]["content"]
        .as_array()
        .and_then(|blocks| blocks.iter().find(|b| b["type"] == "text"))
        .and_then(|b| b["text"].as_str())
        .unwrap_or_default()
        .to_string()
}

/// Whether a `tools/call` response is a tool error.
pub fn is_tool_error(response: &Value) -> bool {
    response["result"]["isError"] == json!(true)
}

/// The stable error code of a tool error response.
pub fn error_code(response: &Value) -> Option<String> {
    response["result"]["structuredContent"]["error"]["code"]
        .as_str()
        .map(str::to_string)
}
