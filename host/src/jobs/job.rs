//! One job: its state, the events it streams to listeners, and the callers
//! waiting for it. The job owns its cancel policy: it stops when explicitly
//! cancelled (`cancel_job`, `tasks/cancel`, shutdown, its deadline) or when
//! the last caller waiting for it leaves, unless it runs in the background.

use std::sync::{Arc, Mutex};
use std::time::Instant;

use rmcp::model::CallToolResult;
use tokio::sync::{broadcast, watch};
use tokio_util::sync::CancellationToken;

use crate::store::{JobRow, now_ms};

/// Where a job is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Status {
    Processing,
    Completed,
    Failed,
    Cancelled,
    /// Finished, but some parts (e.g. consensus members) failed.
    CompletedWithErrors,
}

impl Status {
    /// The wire spelling (as in the Converse API's check_status).
    pub fn as_str(self) -> &'static str {
        match self {
            Status::Processing => "processing",
            Status::Completed => "completed",
            Status::Failed => "failed",
            Status::Cancelled => "cancelled",
            Status::CompletedWithErrors => "completed_with_errors",
        }
    }

    /// Whether the job has ended.
    pub fn is_finished(self) -> bool {
        self != Status::Processing
    }

    pub(super) fn parse(s: &str) -> Self {
        match s {
            "processing" => Status::Processing,
            "completed" => Status::Completed,
            "cancelled" => Status::Cancelled,
            "completed_with_errors" => Status::CompletedWithErrors,
            _ => Status::Failed,
        }
    }
}

/// Something a running job reports to whoever is listening.
#[derive(Debug, Clone)]
pub enum JobEvent {
    /// More answer text.
    Text(String),
    /// A status line ("queued", "waiting for rate limit").
    Progress(String),
}

/// A job's state at one moment.
#[derive(Debug, Clone)]
pub struct Snapshot {
    pub id: String,
    pub request_hash: String,
    pub tool: String,
    pub model: String,
    pub status: Status,
    pub output: String,
    pub events: u64,
    pub result: Option<CallToolResult>,
    pub error: Option<String>,
    pub created_ms: u64,
    pub finished_ms: Option<u64>,
    pub delivered: bool,
}

impl Snapshot {
    /// Seconds from creation to finish (or to now).
    pub fn elapsed_secs(&self) -> f64 {
        let end = self.finished_ms.unwrap_or_else(now_ms);
        end.saturating_sub(self.created_ms) as f64 / 1000.0
    }

    pub(super) fn from_row(row: JobRow) -> Self {
        Self {
            id: row.id,
            request_hash: row.request_hash,
            tool: row.tool,
            model: row.model,
            status: Status::parse(&row.status),
            output: row.output,
            events: row.events,
            result: row.result.and_then(|r| serde_json::from_str(&r).ok()),
            error: row.error,
            created_ms: row.created_ms,
            finished_ms: row.finished_ms,
            delivered: row.delivered,
        }
    }
}

struct State {
    status: Status,
    output: String,
    events: u64,
    result: Option<CallToolResult>,
    error: Option<String>,
    finished_ms: Option<u64>,
    delivered: bool,
}

/// A job in memory.
pub struct Job {
    pub id: String,
    pub tool: String,
    pub model: String,
    pub request_hash: String,
    pub arguments: String,
    pub session_id: u64,
    pub created_ms: u64,
    pub started: Instant,
    /// The job is stopped (as timed out) if it still runs at this instant.
    pub deadline: Instant,
    /// Cancelling stops the plugin call; streamed output is kept. Only the
    /// job decides when (see [`Job::request_cancel`] and [`Waiter`]).
    cancel: CancellationToken,
    waiting: Mutex<Waiting>,
    state: Mutex<State>,
    events: broadcast::Sender<JobEvent>,
    done: watch::Sender<bool>,
}

/// Who waits for a job, and whether their leaving may stop it.
#[derive(Default)]
struct Waiting {
    /// Callers waiting for the result right now.
    count: usize,
    /// The job runs on with nobody waiting: its id was handed out (`async`,
    /// a soft-deadline answer), so only `cancel_job` or its deadline stop it.
    background: bool,
}

impl Job {
    /// A new running job; the caller registers it and starts its executor.
    #[allow(clippy::too_many_arguments)]
    pub(super) fn new(
        id: String,
        tool: &str,
        model: &str,
        request_hash: String,
        arguments: String,
        session_id: u64,
        deadline: std::time::Duration,
    ) -> Self {
        // Listeners that fall behind skip progress lines; the text is in the
        // job. The slots are allocated up front, for every job in flight.
        let (events, _) = broadcast::channel(32);
        let (done, _) = watch::channel(false);
        let started = Instant::now();
        Self {
            id,
            tool: tool.to_string(),
            model: model.to_string(),
            request_hash,
            arguments,
            session_id,
            created_ms: now_ms(),
            started,
            deadline: started + deadline,
            cancel: CancellationToken::new(),
            waiting: Mutex::new(Waiting::default()),
            state: Mutex::new(State {
                status: Status::Processing,
                output: String::new(),
                events: 0,
                result: None,
                error: None,
                finished_ms: None,
                delivered: false,
            }),
            events,
            done,
        }
    }

    fn waiting(&self) -> std::sync::MutexGuard<'_, Waiting> {
        self.waiting.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Adds a caller waiting for the result, listening to events from now
    /// on. `None` once the job is being cancelled: start a new one instead.
    pub fn attach(self: &Arc<Self>) -> Option<Waiter> {
        let mut waiting = self.waiting();
        if self.cancel.is_cancelled() {
            return None;
        }
        waiting.count += 1;
        Some(Waiter {
            events: self.events.subscribe(),
            job: self.clone(),
        })
    }

    /// Lets the job run on when its waiters leave (its id was handed out).
    pub fn run_in_background(&self) {
        self.waiting().background = true;
    }

    /// Stops the job for everyone: `cancel_job`, `tasks/cancel`, shutdown.
    pub fn request_cancel(&self) {
        self.cancel.cancel();
    }

    /// Whether the job was asked to stop.
    pub fn cancel_requested(&self) -> bool {
        self.cancel.is_cancelled()
    }

    /// Resolves once the job was asked to stop.
    pub async fn cancelled(&self) {
        self.cancel.cancelled().await
    }

    /// A waiter left: the job stops if it was the last one and nobody else
    /// holds its id.
    fn release(&self) {
        let mut waiting = self.waiting();
        waiting.count = waiting.count.saturating_sub(1);
        if waiting.count == 0 && !waiting.background && !self.is_finished() {
            tracing::info!(job = %self.id, "the last caller waiting for the job left; cancelling it");
            self.cancel.cancel();
        }
    }

    /// How many callers wait for the job now.
    pub fn waiters(&self) -> usize {
        self.waiting().count
    }

    fn state(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Records streamed text.
    pub fn push_text(&self, text: &str) {
        {
            let mut state = self.state();
            state.output.push_str(text);
            state.events += 1;
        }
        let _ = self.events.send(JobEvent::Text(text.to_string()));
    }

    /// Records a progress line.
    pub fn push_progress(&self, message: String) {
        self.state().events += 1;
        let _ = self.events.send(JobEvent::Progress(message));
    }

    /// Resolves when the job has finished.
    pub async fn finished(&self) {
        let mut done = self.done.subscribe();
        let _ = done.wait_for(|d| *d).await;
    }

    /// Whether the job has finished.
    pub fn is_finished(&self) -> bool {
        *self.done.borrow()
    }

    /// The current state.
    pub fn snapshot(&self) -> Snapshot {
        let state = self.state();
        Snapshot {
            id: self.id.clone(),
            request_hash: self.request_hash.clone(),
            tool: self.tool.clone(),
            model: self.model.clone(),
            status: state.status,
            output: state.output.clone(),
            events: state.events,
            result: state.result.clone(),
            error: state.error.clone(),
            created_ms: self.created_ms,
            finished_ms: state.finished_ms,
            delivered: state.delivered,
        }
    }

    /// Records how the job ended (before [`Job::signal_done`]).
    pub(super) fn record_end(&self, status: Status, result: CallToolResult, error: Option<String>) {
        let mut state = self.state();
        state.status = status;
        state.result = Some(result);
        state.error = error;
        state.finished_ms = Some(now_ms());
    }

    /// Wakes everyone waiting for the end.
    pub(super) fn signal_done(&self) {
        self.done.send_replace(true);
    }

    /// Notes that a client received the result.
    pub(super) fn set_delivered(&self) {
        self.state().delivered = true;
    }

    pub(super) fn row(&self) -> JobRow {
        let state = self.state();
        JobRow {
            id: self.id.clone(),
            tool: self.tool.clone(),
            model: self.model.clone(),
            status: state.status.as_str().to_string(),
            request_hash: self.request_hash.clone(),
            arguments: self.arguments.clone(),
            output: state.output.clone(),
            result: state
                .result
                .as_ref()
                .and_then(|r| serde_json::to_string(r).ok()),
            error: state.error.clone(),
            events: state.events,
            delivered: state.delivered,
            session_id: Some(self.session_id),
            created_ms: self.created_ms,
            updated_ms: now_ms(),
            finished_ms: state.finished_ms,
        }
    }
}

/// One caller waiting for a job's result, with its own event stream (one
/// session's progress never slows another's).
///
/// Dropping a waiter means its caller left (the client cancelled, the
/// session ended): the job stops when its last waiter leaves, unless it
/// runs in the background. [`Waiter::detach`] leaves without stopping it.
pub struct Waiter {
    job: Arc<Job>,
    events: broadcast::Receiver<JobEvent>,
}

impl Waiter {
    /// The job waited for.
    pub fn job(&self) -> &Arc<Job> {
        &self.job
    }

    /// The job's events since this waiter attached.
    pub fn events(&mut self) -> &mut broadcast::Receiver<JobEvent> {
        &mut self.events
    }

    /// Stops waiting and lets the job run on in the background, because the
    /// caller was handed its id: leaving (the drop) no longer stops it.
    pub fn detach(self) {
        self.job.run_in_background();
    }
}

impl Drop for Waiter {
    fn drop(&mut self) {
        self.job.release();
    }
}
