//! Jobs: every tool call runs as a job, shared by all sessions of the daemon.
//!
//! A job lives in memory while it runs (its cancel token, streamed output,
//! listeners) and in the store for good (`store::JobRow`), so a caller can
//! leave and another session can check, fetch or cancel it later, and a
//! restarted daemon still knows what happened.
//!
//! Store writes go through one writer thread so no call waits on SQLite;
//! recently finished jobs stay in memory, so reads right after a finish see
//! it even before the writer has.

mod job;

use std::collections::{HashMap, VecDeque};
use std::hash::{Hash, Hasher};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use rmcp::model::CallToolResult;

use crate::store::{JobRow, LedgerRow, Store, now_ms};
pub use job::{Job, JobEvent, Snapshot, Status, Waiter};

/// How long finished jobs are kept.
pub const RETENTION: Duration = Duration::from_secs(3 * 24 * 3600);
/// How long a finished, never-delivered result answers a retried call.
pub const REDELIVERY_WINDOW: Duration = Duration::from_secs(15 * 60);
/// How many finished jobs stay in memory (all of them, when there is no store).
const RECENT_KEEP: usize = 500;

/// Work for the store's writer thread.
enum Write {
    Put(Box<JobRow>),
    Delivered(String),
    /// One upstream request for the usage ledger.
    Ledger(Box<LedgerRow>),
    /// Answers once everything sent before it is written.
    Flush(std::sync::mpsc::Sender<()>),
}

/// How long the writer gathers writes before committing them together. A
/// call's job is written twice (start, end); batching keeps the writer from
/// waking and competing for a core on every call, at the price of a crash
/// losing at most this much of the newest state.
const WRITE_BATCH_WINDOW: Duration = Duration::from_millis(20);

/// Applies writes in batches, one transaction each.
fn writer_loop(store: Arc<Store>, rx: std::sync::mpsc::Receiver<Write>) {
    while let Ok(first) = rx.recv() {
        if !matches!(first, Write::Flush(_)) {
            std::thread::sleep(WRITE_BATCH_WINDOW);
        }
        let mut batch = vec![first];
        while let Ok(more) = rx.try_recv() {
            batch.push(more);
        }
        let mut flushes = Vec::new();
        let mut rows: Vec<JobRow> = Vec::new();
        let mut delivered = Vec::new();
        let mut ledger = Vec::new();
        for write in batch {
            match write {
                Write::Put(row) => {
                    // Only the newest state of a job matters.
                    rows.retain(|r| r.id != row.id);
                    rows.push(*row);
                }
                Write::Delivered(id) => delivered.push(id),
                Write::Ledger(row) => ledger.push(*row),
                Write::Flush(ack) => flushes.push(ack),
            }
        }
        if let Err(e) = store.write_batch(&rows, &delivered, &ledger) {
            tracing::warn!(error = %e, rows = rows.len(), "cannot persist jobs");
        }
        for ack in flushes {
            let _ = ack.send(());
        }
    }
}

/// What a new call should do about an identical earlier one.
pub enum Existing {
    /// The same call is running: wait for it instead of paying twice.
    Running(Waiter),
    /// The same call finished but its answer never reached a client.
    Undelivered(Box<Snapshot>),
}

/// Counts for `status`.
#[derive(Debug, Clone, Default)]
pub struct Counts {
    pub running: u64,
    pub completed: u64,
    pub failed: u64,
    pub cancelled: u64,
}

/// All jobs of the daemon.
pub struct Jobs {
    live: Mutex<HashMap<String, Arc<Job>>>,
    /// Recently finished jobs, newest first.
    finished: Mutex<VecDeque<Snapshot>>,
    store: Option<Arc<Store>>,
    writer: Option<Mutex<std::sync::mpsc::Sender<Write>>>,
    store_error: Option<String>,
}

/// Stable fingerprint of a call: tool, arguments and who pays.
pub fn request_hash(tool: &str, arguments: &serde_json::Value, api_key: Option<&str>) -> String {
    let mut hasher = std::collections::hash_map::DefaultHasher::new();
    tool.hash(&mut hasher);
    arguments.to_string().hash(&mut hasher);
    api_key.hash(&mut hasher);
    format!("{:016x}", hasher.finish())
}

impl Jobs {
    /// Opens the store at `path`; a broken store is reported, not replaced.
    pub fn open(path: &std::path::Path) -> Self {
        let (store, store_error) = match Store::open(path) {
            Ok(store) => {
                match store.fail_interrupted() {
                    Ok(n) if n > 0 => tracing::warn!(
                        jobs = n,
                        "jobs interrupted by a daemon restart marked failed"
                    ),
                    Ok(_) => {}
                    Err(e) => tracing::warn!(error = %e, "cannot mark interrupted jobs"),
                }
                if let Err(e) = store.prune(RETENTION) {
                    tracing::warn!(error = %e, "cannot prune old jobs");
                }
                (Some(Arc::new(store)), None)
            }
            Err(e) => {
                tracing::error!(error = %e, "job store unavailable; jobs will not survive a restart");
                (None, Some(e.to_string()))
            }
        };
        // Recent history in memory: dedupe and lookups never touch SQLite on
        // a call's path.
        let recent: VecDeque<Snapshot> = store
            .as_ref()
            .and_then(|s| s.recent_jobs(RECENT_KEEP).ok())
            .unwrap_or_default()
            .into_iter()
            .map(Snapshot::from_row)
            .collect();
        let writer = store.as_ref().map(|store| {
            let (tx, rx) = std::sync::mpsc::channel();
            let store = store.clone();
            std::thread::Builder::new()
                .name("poe-store-writer".into())
                .spawn(move || writer_loop(store, rx))
                .expect("spawn the store writer");
            Mutex::new(tx)
        });
        Self {
            live: Mutex::new(HashMap::new()),
            finished: Mutex::new(recent),
            store,
            writer,
            store_error,
        }
    }

    fn send(&self, write: Write) {
        if let Some(writer) = &self.writer {
            let _ = writer.lock().unwrap_or_else(|e| e.into_inner()).send(write);
        }
    }

    /// Records one upstream request in the usage ledger (written with the
    /// next batch; nothing when there is no store).
    pub fn record_request(&self, row: LedgerRow) {
        self.send(Write::Ledger(Box::new(row)));
    }

    /// Waits until every write sent so far is in the store.
    pub fn flush(&self) {
        let (ack, done) = std::sync::mpsc::channel();
        self.send(Write::Flush(ack));
        if self.writer.is_some() {
            let _ = done.recv_timeout(Duration::from_secs(5));
        }
    }

    /// Why the store is unavailable, if it is.
    pub fn store_error(&self) -> Option<&str> {
        self.store_error.as_deref()
    }

    /// The store, if open (conversations share it).
    pub fn store(&self) -> Option<Arc<Store>> {
        self.store.clone()
    }

    /// Where the store lives, if open.
    pub fn store_path(&self) -> Option<String> {
        self.store.as_ref().map(|s| s.path().display().to_string())
    }

    fn live(&self) -> std::sync::MutexGuard<'_, HashMap<String, Arc<Job>>> {
        self.live.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn persist(&self, job: &Job) {
        if self.writer.is_some() {
            self.send(Write::Put(Box::new(job.row())));
        }
    }

    /// An identical call that is running (attached to as a new waiter) or
    /// whose answer was never delivered. A job already being cancelled is
    /// not joined: its answer will be CANCELLED.
    pub fn existing(&self, request_hash: &str) -> Option<Existing> {
        let running = self
            .live()
            .values()
            .filter(|j| j.request_hash == request_hash && !j.is_finished())
            .find_map(|j| j.attach());
        if let Some(waiter) = running {
            return Some(Existing::Running(waiter));
        }
        let since = now_ms().saturating_sub(REDELIVERY_WINDOW.as_millis() as u64);
        self.finished
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .iter()
            .find(|s| {
                s.request_hash == request_hash
                    && !s.delivered
                    && s.status == Status::Completed
                    && s.finished_ms.is_some_and(|f| f >= since)
            })
            .map(|s| Existing::Undelivered(Box::new(s.clone())))
    }

    /// Registers a new running job that must end within `deadline`.
    pub fn create(
        &self,
        tool: &str,
        model: &str,
        arguments: &serde_json::Value,
        request_hash: String,
        session_id: u64,
        deadline: Duration,
    ) -> Arc<Job> {
        let job = Arc::new(Job::new(
            format!("job_{}", uuid::Uuid::new_v4().simple()),
            tool,
            model,
            request_hash,
            arguments.to_string(),
            session_id,
            deadline,
        ));
        self.live().insert(job.id.clone(), job.clone());
        self.persist(&job);
        job
    }

    /// Saves a running job's output so far (survives a daemon crash).
    pub fn checkpoint(&self, job: &Job) {
        self.persist(job);
    }

    /// Records the end of a job and wakes everyone waiting on it.
    pub fn finish(
        &self,
        job: &Arc<Job>,
        status: Status,
        result: CallToolResult,
        error: Option<String>,
    ) {
        job.record_end(status, result, error);
        self.persist(job);
        {
            // Into the recent list before leaving the live map, so a lookup
            // in between still finds it.
            let mut finished = self.finished.lock().unwrap_or_else(|e| e.into_inner());
            finished.push_front(job.snapshot());
            finished.truncate(RECENT_KEEP);
        }
        self.live().remove(&job.id);
        job.signal_done();
    }

    /// Notes that a client received the job's result.
    pub fn mark_delivered(&self, id: &str) {
        if let Some(job) = self.live().get(id) {
            job.set_delivered();
        }
        self.send(Write::Delivered(id.to_string()));
        let mut finished = self.finished.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(s) = finished.iter_mut().find(|s| s.id == id) {
            s.delivered = true;
        }
    }

    /// Deletes usage ledger rows older than `days` days.
    pub fn prune_ledger(&self, days: u64) {
        if let Some(store) = &self.store {
            match store.prune_ledger(days) {
                Ok(0) => {}
                Ok(n) => tracing::info!(requests = n, days, "pruned old usage ledger rows"),
                Err(e) => tracing::warn!(error = %e, "cannot prune the usage ledger"),
            }
        }
    }

    /// Deletes finished jobs past their retention from the store.
    pub fn prune(&self) {
        if let Some(store) = &self.store {
            match store.prune(RETENTION) {
                Ok(0) => {}
                Ok(n) => tracing::info!(jobs = n, "pruned finished jobs older than 3 days"),
                Err(e) => tracing::warn!(error = %e, "cannot prune old jobs"),
            }
        }
    }

    /// Cancels every running job and waits (bounded) for them to record it.
    pub async fn cancel_all(&self, grace: Duration) {
        let running: Vec<Arc<Job>> = self.live().values().cloned().collect();
        for job in &running {
            job.request_cancel();
        }
        let _ = tokio::time::timeout(grace, async {
            for job in &running {
                job.finished().await;
            }
        })
        .await;
    }

    /// A running job, if `id` is one.
    pub fn running(&self, id: &str) -> Option<Arc<Job>> {
        self.live().get(id).cloned()
    }

    /// Any job by id.
    pub fn get(&self, id: &str) -> Option<Snapshot> {
        if let Some(job) = self.running(id) {
            return Some(job.snapshot());
        }
        let recent = self
            .finished
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .iter()
            .find(|s| s.id == id)
            .cloned();
        if recent.is_some() {
            return recent;
        }
        let store = self.store.as_ref()?;
        store.job(id).ok().flatten().map(Snapshot::from_row)
    }

    /// The most recent jobs, newest first.
    pub fn recent(&self, limit: usize) -> Vec<Snapshot> {
        // Memory first: it holds the newest state of each job.
        let mut all: Vec<Snapshot> = self.live().values().map(|j| j.snapshot()).collect();
        all.extend(
            self.finished
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .iter()
                .cloned(),
        );
        if let Some(store) = &self.store {
            all.extend(
                store
                    .recent_jobs(limit)
                    .unwrap_or_default()
                    .into_iter()
                    .map(Snapshot::from_row),
            );
        }
        let mut seen = std::collections::HashSet::new();
        all.retain(|s| seen.insert(s.id.clone()));
        all.sort_by_key(|s| std::cmp::Reverse(s.created_ms));
        all.truncate(limit);
        all
    }

    /// Job counts for `status`.
    pub fn counts(&self) -> Counts {
        let mut counts = Counts {
            running: self.live().len() as u64,
            ..Counts::default()
        };
        let rows = match &self.store {
            Some(store) => {
                self.flush();
                store.job_counts().unwrap_or_default()
            }
            None => {
                let mut map: HashMap<String, u64> = HashMap::new();
                for s in self
                    .finished
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .iter()
                {
                    *map.entry(s.status.as_str().to_string()).or_default() += 1;
                }
                map.into_iter().collect()
            }
        };
        for (status, n) in rows {
            match Status::parse(&status) {
                Status::Completed | Status::CompletedWithErrors => counts.completed += n,
                Status::Cancelled => counts.cancelled += n,
                Status::Failed => counts.failed += n,
                Status::Processing => {}
            }
        }
        counts
    }
}
