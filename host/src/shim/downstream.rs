//! The daemon → client direction of the shim: one task owns stdout, and one
//! task per daemon connection relays its lines there.
//!
//! Running apart from the client → daemon direction means a large message
//! one way never waits for, or interrupts, a message the other way.

use std::collections::HashSet;
use std::sync::{Arc, Mutex, MutexGuard};

use serde::Deserialize;
use serde_json::value::RawValue;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

use crate::ipc::lines::{Frame, FrameReader, write_owned_line};

/// Lines waiting for stdout. Few: a line may be megabytes long.
const STDOUT_QUEUE: usize = 16;

/// The sending side of stdout; every line the client sees goes through it,
/// so lines never interleave. Lines are sent without their newline.
pub type Stdout = mpsc::Sender<Vec<u8>>;

/// Starts the task that owns stdout. It ends when stdout breaks (the client
/// stopped reading) or every [`Stdout`] is dropped.
pub fn spawn_stdout<W>(mut stdout: W) -> (Stdout, JoinHandle<()>)
where
    W: AsyncWrite + Unpin + Send + 'static,
{
    let (tx, mut rx) = mpsc::channel::<Vec<u8>>(STDOUT_QUEUE);
    let task = tokio::spawn(async move {
        while let Some(mut line) = rx.recv().await {
            line.push(b'\n');
            if write_owned_line(&mut stdout, line).await.is_err() {
                break;
            }
        }
    });
    (tx, task)
}

/// Ids (raw JSON) of client requests the daemon has not answered yet.
#[derive(Clone, Default)]
pub struct InFlight(Arc<Mutex<HashSet<String>>>);

impl InFlight {
    fn set(&self) -> MutexGuard<'_, HashSet<String>> {
        self.0.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Records a request about to be sent.
    pub fn insert(&self, id: &str) {
        self.set().insert(id.to_string());
    }

    /// Forgets a request (answered, or never delivered).
    pub fn remove(&self, id: &str) {
        self.set().remove(id);
    }

    /// Takes every request still waiting.
    pub fn drain(&self) -> Vec<String> {
        self.set().drain().collect()
    }
}

/// The fields of a JSON-RPC message the shim looks at.
#[derive(Deserialize)]
pub struct Peek<'a> {
    #[serde(borrow, default)]
    pub id: Option<&'a RawValue>,
    #[serde(default)]
    pub method: Option<std::borrow::Cow<'a, str>>,
}

/// The id and method of `line`, if it is a JSON object.
pub fn peek(line: &[u8]) -> Option<Peek<'_>> {
    serde_json::from_slice(line).ok()
}

/// Relays one daemon connection's lines to stdout until it ends, clearing
/// the ids of answered requests first so a daemon that dies right after an
/// answer never has that request reported lost.
pub async fn relay_daemon<R: AsyncRead + Unpin>(
    mut reader: FrameReader<R>,
    in_flight: InFlight,
    stdout: Stdout,
) {
    loop {
        let line = match reader.next().await {
            Ok(Frame::Line(line)) => line,
            // Closed, broken, or beyond any sane size: the connection is over.
            Ok(Frame::TooLong { .. }) | Ok(Frame::Eof) | Err(_) => return,
        };
        if let Some(msg) = peek(&line)
            && msg.method.is_none()
            && let Some(id) = msg.id
        {
            in_flight.remove(id.get());
        }
        if stdout.send(line).await.is_err() {
            return;
        }
    }
}
