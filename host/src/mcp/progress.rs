//! MCP progress notifications for one waiting call.
//!
//! The rule, which every client's timing must survive:
//! - streamed text and status lines are coalesced and sent at most once per
//!   [`CADENCE`], never once per upstream delta (a burst is a few
//!   notifications in order: text runs merged, status lines kept);
//! - a heartbeat goes out only after a heartbeat interval with nothing sent;
//! - once the job has its result, nothing more is sent for the request (the
//!   result carries the whole text), and the result waits until
//!   [`QUIET_GAP`] has passed since the last notification *and* the client
//!   has answered a `ping` sent after it (at most [`BARRIER_CAP`]; clients on
//!   the stateless 2026-07-28 protocol take no server requests and get the
//!   gap alone).
//!
//! Why: the TypeScript MCP SDK (Claude Code, Cursor, the Inspector) handles a
//! response as soon as it parses it, dropping the request's progress
//! handler, but dispatches notifications a tick later. A notification that
//! reaches the client in the same read as the result therefore arrives for
//! an "unknown token", which Claude Code treats as a connection error.
//! Measured against the real Claude Code 2.1.197 on a loaded 2-core machine:
//! notifications at a 250 ms cadence then the result after 0 ms failed 13 of
//! 50 runs, after 20 ms 1 of 50, after 50 or 100 ms none; but a flood of
//! notifications defeats any gap (200 back to back, then 200 ms: 7 of 20),
//! hence the cadence, and a ping answered after the notifications defeats
//! every timing (0 of 80 runs), hence the barrier.

use std::time::Duration;

use rmcp::model::{PingRequest, ProgressNotificationParam, ProgressToken, ServerRequest};
use rmcp::service::{Peer, RoleServer};
use tokio::time::Instant;

use super::call::STATUS_PREFIX;
use crate::jobs::JobEvent;

/// Streamed text is sent at most this often.
pub const CADENCE: Duration = Duration::from_millis(250);
/// Quiet time between the last progress notification and the result.
pub const QUIET_GAP: Duration = Duration::from_millis(100);
/// Longest wait for the client's answer to the barrier `ping`.
pub const BARRIER_CAP: Duration = Duration::from_secs(1);
/// Status lines kept between two sends; older ones are dropped.
const MAX_PENDING_STATUS: usize = 8;

/// Something waiting to be sent.
enum Pending {
    /// Answer text (consecutive deltas merged).
    Text(String),
    /// A status line ("waited 2 s for the shared rate limit").
    Status(String),
}

/// Progress of one call, if the client asked for it (a `progressToken`).
pub struct Progress {
    token: Option<ProgressToken>,
    peer: Peer<RoleServer>,
    heartbeat: Duration,
    started: Instant,
    /// Monotonic progress value; MCP requires it to increase.
    count: u64,
    /// What arrived since the last send, in order.
    pending: Vec<Pending>,
    last_sent: Option<Instant>,
}

impl Progress {
    /// Progress for a request with `token` (none: everything is dropped).
    pub fn new(token: Option<ProgressToken>, peer: Peer<RoleServer>, heartbeat: Duration) -> Self {
        Self {
            token,
            peer,
            heartbeat,
            started: Instant::now(),
            count: 0,
            pending: Vec::new(),
            last_sent: None,
        }
    }

    /// Whether the client wants progress at all.
    pub fn wanted(&self) -> bool {
        self.token.is_some()
    }

    /// Takes one job event; nothing is sent until [`Progress::flush`].
    pub fn on_event(&mut self, event: JobEvent) {
        if !self.wanted() {
            return;
        }
        match (event, self.pending.last_mut()) {
            (JobEvent::Text(text), Some(Pending::Text(run))) => run.push_str(&text),
            (JobEvent::Text(text), _) => self.pending.push(Pending::Text(text)),
            (JobEvent::Progress(message), _) => {
                self.pending.push(Pending::Status(message));
                let statuses = self
                    .pending
                    .iter()
                    .filter(|p| matches!(p, Pending::Status(_)))
                    .count();
                if statuses > MAX_PENDING_STATUS
                    && let Some(oldest) = self
                        .pending
                        .iter()
                        .position(|p| matches!(p, Pending::Status(_)))
                {
                    self.pending.remove(oldest);
                }
            }
        }
    }

    /// When buffered progress is due, if any is buffered.
    pub fn flush_at(&self) -> Option<Instant> {
        if self.pending.is_empty() {
            return None;
        }
        Some(self.last_sent.map_or_else(Instant::now, |t| t + CADENCE))
    }

    /// When a heartbeat is due, if the client wants progress.
    pub fn heartbeat_at(&self) -> Option<Instant> {
        self.wanted()
            .then(|| self.last_sent.unwrap_or(self.started) + self.heartbeat)
    }

    /// Sends what is buffered, in the order it arrived.
    pub async fn flush(&mut self) {
        for pending in std::mem::take(&mut self.pending) {
            match pending {
                Pending::Text(text) => {
                    let increment = text.chars().count() as u64;
                    self.send(increment, text).await;
                }
                Pending::Status(status) => self.send(1, status).await,
            }
        }
    }

    /// Tells the client the call is alive.
    pub async fn heartbeat(&mut self) {
        let secs = self.started.elapsed().as_secs();
        self.send(1, format!("{STATUS_PREFIX}still working ({secs} s)"))
            .await;
    }

    /// Ends progress before the result goes out: drops what is buffered,
    /// then waits out the quiet gap and the client's answer to a ping.
    pub async fn finish(mut self) {
        self.pending.clear();
        let Some(last) = self.last_sent else {
            return;
        };
        let barrier = async {
            let ping = ServerRequest::PingRequest(PingRequest {
                method: Default::default(),
                extensions: Default::default(),
            });
            match tokio::time::timeout(BARRIER_CAP, self.peer.send_request(ping)).await {
                Ok(Ok(_)) => {}
                Ok(Err(e)) => tracing::debug!(error = %e, "no ping barrier; the quiet gap alone"),
                Err(_) => tracing::debug!("the client did not answer the barrier ping in time"),
            }
        };
        tokio::join!(barrier, tokio::time::sleep_until(last + QUIET_GAP));
    }

    async fn send(&mut self, increment: u64, message: String) {
        let Some(token) = self.token.clone() else {
            return;
        };
        self.count += increment.max(1);
        let param = ProgressNotificationParam::new(token, self.count as f64).with_message(message);
        if let Err(e) = self.peer.notify_progress(param).await {
            tracing::debug!(error = %e, "progress notification not delivered");
        }
        self.last_sent = Some(Instant::now());
    }
}
