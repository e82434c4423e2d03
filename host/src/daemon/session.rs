//! One MCP session over one socket connection: a framed reader, a single
//! writer (so lines never interleave), and an rmcp server in between.

use std::sync::Arc;

use rmcp::model::{ClientJsonRpcMessage, ServerJsonRpcMessage};
use rmcp::service::{RoleServer, serve_server_with_ct};
use rmcp::transport::Transport;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use super::framing::{self, Inbound};
use super::state::DaemonState;
use crate::ipc::lines::{Frame, FrameReader, write_owned_line};
use crate::ipc::{Hello, MAX_MESSAGE_BYTES};
use crate::mcp::PoeServer;

/// Lines waiting to be written to the client.
type Outbox = mpsc::Sender<Vec<u8>>;

/// rmcp's view of the connection: decoded messages in, messages out.
struct SessionTransport {
    /// Boxed: a queue allocates its slots up front, and a bare message is
    /// several hundred bytes, which thousands of idle sessions would pay.
    inbound: mpsc::Receiver<Box<ClientJsonRpcMessage>>,
    outbox: Outbox,
}

/// The client went away before a message could be written.
#[derive(Debug, thiserror::Error)]
#[error("session closed")]
struct Closed;

impl Transport<RoleServer> for SessionTransport {
    type Error = Closed;

    fn send(
        &mut self,
        item: ServerJsonRpcMessage,
    ) -> impl Future<Output = Result<(), Self::Error>> + Send + 'static {
        let outbox = self.outbox.clone();
        async move {
            let bytes = serde_json::to_vec(&item).map_err(|_| Closed)?;
            outbox.send(bytes).await.map_err(|_| Closed)
        }
    }

    // Cancel-safe: `recv` is, and nothing else awaits.
    async fn receive(&mut self) -> Option<ClientJsonRpcMessage> {
        self.inbound.recv().await.map(|message| *message)
    }

    async fn close(&mut self) -> Result<(), Self::Error> {
        self.inbound.close();
        Ok(())
    }
}

/// Serves one MCP session until the client disconnects or the daemon stops.
pub async fn serve<R, W>(
    mut reader: FrameReader<R>,
    writer: W,
    hello: Hello,
    daemon: Arc<DaemonState>,
) where
    R: AsyncRead + Unpin + Send + 'static,
    W: AsyncWrite + Unpin + Send + 'static,
{
    let session = daemon.open_session(&hello);
    let session_id = session.id;
    tracing::info!(session = session_id, shim_pid = hello.pid, "session opened");

    reader.set_max(MAX_MESSAGE_BYTES);
    let (outbox, mut outgoing) = mpsc::channel::<Vec<u8>>(256);
    let writer_task = tokio::spawn(async move {
        let mut writer = writer;
        while let Some(mut line) = outgoing.recv().await {
            line.push(b'\n');
            if write_owned_line(&mut writer, line).await.is_err() {
                break;
            }
        }
    });

    // Calls of this session stop when the client hangs up or the daemon stops.
    let calls = daemon.shutdown.child_token();
    let (inbound_tx, inbound) = mpsc::channel(64);
    let reader_task = tokio::spawn(read_loop(
        reader,
        inbound_tx,
        outbox.clone(),
        calls.clone(),
        session_id,
    ));

    let transport = SessionTransport {
        inbound,
        outbox: outbox.clone(),
    };
    let server = PoeServer::new(daemon.clone(), session.clone(), calls.clone());
    let serve_ct = daemon.shutdown.child_token();
    // Boxed: the handshake's future is several KiB and is done once the
    // session is up; inline, every idle session's task would keep its size.
    match Box::pin(serve_server_with_ct(server, transport, serve_ct)).await {
        Ok(running) => {
            let reason = running.waiting().await;
            tracing::info!(session = session_id, ?reason, "session ended");
        }
        Err(e) => {
            tracing::info!(session = session_id, error = %e, "session ended before it started")
        }
    }
    calls.cancel();
    reader_task.abort();
    drop(outbox);
    let _ = writer_task.await;
    daemon.close_session(session_id);
}

async fn read_loop<R: AsyncRead + Unpin>(
    mut reader: FrameReader<R>,
    inbound: mpsc::Sender<Box<ClientJsonRpcMessage>>,
    outbox: Outbox,
    calls: CancellationToken,
    session_id: u64,
) {
    loop {
        let frame = match reader.next().await {
            Ok(frame) => frame,
            Err(e) => {
                tracing::debug!(session = session_id, error = %e, "session read failed");
                break;
            }
        };
        let line = match frame {
            Frame::Eof => break,
            Frame::TooLong { len } => {
                tracing::warn!(session = session_id, len, "over-long message discarded");
                if outbox
                    .send(framing::too_long(len, MAX_MESSAGE_BYTES))
                    .await
                    .is_err()
                {
                    break;
                }
                continue;
            }
            Frame::Line(line) => line,
        };
        match framing::classify(&line) {
            Inbound::Message(message) => {
                if inbound.send(message).await.is_err() {
                    break;
                }
            }
            Inbound::Reject(reply) => {
                tracing::debug!(
                    session = session_id,
                    "malformed message answered with an error"
                );
                if outbox.send(reply).await.is_err() {
                    break;
                }
            }
            Inbound::Ignore(why) => tracing::debug!(session = session_id, why, "message ignored"),
        }
    }
    // End of input: the client is gone, so nobody will read answers to calls
    // still running. Stop them now rather than after rmcp's drain timeout.
    calls.cancel();
}
