//! The CLI's child process: spawned as the leader of its own process group,
//! so that cancelling a call can stop everything the CLI started (its shell
//! commands, their children) with one signal to the group, and nothing is
//! left behind as an orphan.
//!
//! Stopping is graceful first: SIGTERM to the group, a short wait for the
//! group to empty, then SIGKILL to whatever is left. The wait is shorter
//! than the host's grace for a cancelled call, so the plugin has always
//! cleaned up by the time the host stops waiting for it. If the call's
//! future is dropped instead (the provider shut down mid-call), the guard's
//! `Drop` sends SIGKILL to the group at once.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::io::{AsyncRead, BufReader};

use crate::lines::{Line, Lines};
use tokio::process::Child;

/// How long the group gets to exit after SIGTERM before SIGKILL.
const TERM_GRACE: Duration = Duration::from_millis(1000);
/// How long to wait for the group to vanish after SIGKILL.
const KILL_WAIT: Duration = Duration::from_millis(500);
/// How often the group is checked while it exits.
const EXIT_POLL: Duration = Duration::from_millis(20);
/// How many stderr lines are kept for error messages.
pub const STDERR_LINES: usize = 20;
/// How much of one stderr line is kept.
pub const STDERR_LINE_BYTES: usize = 2000;

/// Signals `sig` to every process in group `pgid`; false when the group is
/// empty (or the signal could not be sent).
fn signal_group(pgid: i32, sig: libc::c_int) -> bool {
    if pgid <= 1 {
        // Never signal "every process" (-1) or our own group (0).
        return false;
    }
    // SAFETY: kill(2) with a negative pid signals a process group; it has
    // no memory effects on this process.
    unsafe { libc::kill(-pgid, sig) == 0 }
}

/// The process group of a running CLI, killed when stopped or dropped.
pub struct Group {
    pgid: i32,
    /// False once the CLI exited by itself and was reaped; its group is then
    /// none of our business (and its id may be reused).
    armed: bool,
}

impl Group {
    /// The group led by the child with `pid` (spawned with `process_group(0)`).
    pub fn new(pid: u32) -> Group {
        Group {
            pgid: i32::try_from(pid).unwrap_or(0),
            armed: true,
        }
    }

    /// The CLI exited and was reaped: leave its group alone from now on.
    pub fn disarm(&mut self) {
        self.armed = false;
    }

    /// SIGTERM to the group, then SIGKILL to whatever is left after
    /// [`TERM_GRACE`]; reaps the leader.
    pub async fn terminate(&mut self, child: &mut Child) {
        if !self.armed {
            return;
        }
        signal_group(self.pgid, libc::SIGTERM);
        let deadline = tokio::time::Instant::now() + TERM_GRACE;
        let lingering = loop {
            // Reap the leader as soon as it exits: an unreaped zombie would
            // keep the group "alive" for the check below.
            let _ = child.try_wait();
            if !signal_group(self.pgid, 0) {
                break false;
            }
            if tokio::time::Instant::now() >= deadline {
                break true;
            }
            tokio::time::sleep(EXIT_POLL).await;
        };
        // Only a group that still exists is signalled: an empty one's id
        // could in principle already belong to someone else.
        if lingering {
            signal_group(self.pgid, libc::SIGKILL);
        }
        let _ = tokio::time::timeout(TERM_GRACE, child.wait()).await;
        // SIGKILL is delivered asynchronously: wait (briefly) until the
        // group is really gone, so the call returns with nothing left.
        let deadline = tokio::time::Instant::now() + KILL_WAIT;
        while lingering && signal_group(self.pgid, 0) && tokio::time::Instant::now() < deadline {
            tokio::time::sleep(EXIT_POLL).await;
        }
        self.armed = false;
    }
}

impl Drop for Group {
    fn drop(&mut self) {
        if self.armed {
            signal_group(self.pgid, libc::SIGKILL);
        }
    }
}

/// The last lines the CLI wrote to stderr (at most [`STDERR_LINES`], each
/// at most [`STDERR_LINE_BYTES`]), for error messages.
#[derive(Clone, Default)]
pub struct StderrTail(Arc<Mutex<VecDeque<String>>>);

impl StderrTail {
    /// Collects `stderr` in the background until it closes.
    pub fn collect(stderr: impl AsyncRead + Unpin + Send + 'static) -> StderrTail {
        let tail = StderrTail::default();
        let lines = tail.0.clone();
        tokio::spawn(async move {
            let mut reader = Lines::new(BufReader::new(stderr), STDERR_LINE_BYTES);
            while let Ok(Some(line)) = reader.next().await {
                let line = match line {
                    Line::Text(bytes) => String::from_utf8_lossy(&bytes).trim().to_string(),
                    Line::TooLong(n) => format!("(a line of {n} bytes)"),
                };
                if line.is_empty() {
                    continue;
                }
                let mut lines = lines.lock().unwrap_or_else(|e| e.into_inner());
                if lines.len() == STDERR_LINES {
                    lines.pop_front();
                }
                lines.push_back(line);
            }
        });
        tail
    }

    /// The lines kept so far, oldest first.
    pub fn lines(&self) -> Vec<String> {
        self.0
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .iter()
            .cloned()
            .collect()
    }
}
