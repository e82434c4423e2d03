//! The daemon's durable state in SQLite (`$POE_CODE_HOME/state.db`, WAL):
//! jobs with their streamed output and results, and the conversations and
//! messages the chat tools build on, and the usage ledger (`ledger`).
//!
//! A store that is corrupt or cannot be written is reported, never replaced:
//! the daemon then serves calls without persistence and `status` says why.
//!
//! The store holds prompts and answers, so it and its WAL companions
//! (`-wal`, `-shm`) are readable by the owner only (0600).

use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use rusqlite::{Connection, OptionalExtension, params};

mod conversations;
mod ledger;

pub use conversations::{ConversationRow, MessageRow};
pub use ledger::{DAY_MS, Group, GroupBy, LedgerRow, Totals};

/// Schema version stored in `PRAGMA user_version`.
const SCHEMA_VERSION: i64 = 3;

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS jobs (
    id            TEXT PRIMARY KEY,
    tool          TEXT NOT NULL,
    model         TEXT NOT NULL,
    status        TEXT NOT NULL,
    request_hash  TEXT NOT NULL,
    arguments     TEXT NOT NULL,
    output        TEXT NOT NULL DEFAULT '',
    result        TEXT,
    error         TEXT,
    events        INTEGER NOT NULL DEFAULT 0,
    delivered     INTEGER NOT NULL DEFAULT 0,
    session_id    INTEGER,
    created_ms    INTEGER NOT NULL,
    updated_ms    INTEGER NOT NULL,
    finished_ms   INTEGER
);
CREATE INDEX IF NOT EXISTS jobs_by_created ON jobs(created_ms);
CREATE INDEX IF NOT EXISTS jobs_by_hash ON jobs(request_hash);
CREATE TABLE IF NOT EXISTS conversations (
    id          TEXT PRIMARY KEY,
    model       TEXT,
    created_ms  INTEGER NOT NULL,
    updated_ms  INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS messages (
    id               INTEGER PRIMARY KEY AUTOINCREMENT,
    conversation_id  TEXT NOT NULL REFERENCES conversations(id) ON DELETE CASCADE,
    role             TEXT NOT NULL,
    content          TEXT NOT NULL,
    model            TEXT,
    created_ms       INTEGER NOT NULL
);
CREATE INDEX IF NOT EXISTS messages_by_conversation ON messages(conversation_id, id);
";

/// Why the store could not be opened.
#[derive(Debug, thiserror::Error)]
#[error("state store {path} unusable: {reason}")]
pub struct StoreError {
    pub path: PathBuf,
    pub reason: String,
}

/// One job row.
#[derive(Debug, Clone, PartialEq)]
pub struct JobRow {
    pub id: String,
    pub tool: String,
    pub model: String,
    pub status: String,
    pub request_hash: String,
    /// The tool arguments as JSON.
    pub arguments: String,
    /// Text streamed so far.
    pub output: String,
    /// The final `CallToolResult` as JSON, once there is one.
    pub result: Option<String>,
    /// Why it failed, when it did.
    pub error: Option<String>,
    pub events: u64,
    /// Whether a client received the result.
    pub delivered: bool,
    pub session_id: Option<u64>,
    pub created_ms: u64,
    pub updated_ms: u64,
    pub finished_ms: Option<u64>,
}

/// Milliseconds since the Unix epoch.
pub fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

/// The SQLite store.
pub struct Store {
    conn: Mutex<Connection>,
    path: PathBuf,
}

/// Creates `path` empty with mode 0600 unless it exists (an empty file is
/// a new database to SQLite).
fn create_private(path: &Path) -> std::io::Result<()> {
    use std::os::unix::fs::OpenOptionsExt;
    match std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
    {
        Ok(_) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => Ok(()),
        Err(e) => Err(e),
    }
}

/// `state.db` + `suffix`: SQLite's name for a companion file.
fn companion(path: &Path, suffix: &str) -> PathBuf {
    let mut name = path.as_os_str().to_owned();
    name.push(suffix);
    PathBuf::from(name)
}

/// Sets mode 0600 on `file` if it exists and is wider.
fn restrict(file: &Path) {
    use std::os::unix::fs::PermissionsExt;
    if let Ok(meta) = std::fs::metadata(file)
        && meta.permissions().mode() & 0o077 != 0
        && let Err(e) = std::fs::set_permissions(file, std::fs::Permissions::from_mode(0o600))
    {
        tracing::warn!(file = %file.display(), error = %e, "cannot make the store private");
    }
}

fn fail(path: &Path, reason: impl std::fmt::Display) -> StoreError {
    StoreError {
        path: path.to_path_buf(),
        reason: reason.to_string(),
    }
}

impl Store {
    /// Opens (creating if needed) and checks the store at `path`.
    pub fn open(path: &Path) -> Result<Self, StoreError> {
        // SQLite gives `-wal` and `-shm` the mode of the database file, so
        // the file must be private before SQLite first opens it.
        create_private(path).map_err(|e| fail(path, format!("cannot create: {e}")))?;
        let conn = Connection::open(path).map_err(|e| fail(path, e))?;
        conn.busy_timeout(Duration::from_secs(5))
            .map_err(|e| fail(path, e))?;
        // A corrupt file fails here ("file is not a database") or in quick_check.
        let check: String = conn
            .query_row("PRAGMA quick_check", [], |row| row.get(0))
            .map_err(|e| {
                fail(
                    path,
                    format!("{e} (the file is kept as is; move it away to start afresh)"),
                )
            })?;
        if check != "ok" {
            return Err(fail(
                path,
                format!(
                    "integrity check failed: {check} (the file is kept as is; move it away to start afresh)"
                ),
            ));
        }
        let version: i64 = conn
            .query_row("PRAGMA user_version", [], |row| row.get(0))
            .map_err(|e| fail(path, e))?;
        if version > SCHEMA_VERSION {
            return Err(fail(
                path,
                format!(
                    "written by a newer poe-code (schema {version}, this one knows {SCHEMA_VERSION})"
                ),
            ));
        }
        conn.pragma_update(None, "journal_mode", "WAL")
            .map_err(|e| fail(path, e))?;
        conn.pragma_update(None, "synchronous", "NORMAL")
            .map_err(|e| fail(path, e))?;
        conn.pragma_update(None, "foreign_keys", "ON")
            .map_err(|e| fail(path, e))?;
        conn.execute_batch(SCHEMA)
            .map_err(|e| fail(path, format!("cannot write: {e}")))?;
        conn.execute_batch(ledger::SCHEMA)
            .map_err(|e| fail(path, format!("cannot write: {e}")))?;
        if version < 2 {
            conn.execute_batch(conversations::MIGRATE_TO_2)
                .map_err(|e| fail(path, format!("cannot upgrade to schema 2: {e}")))?;
        }
        conn.pragma_update(None, "user_version", SCHEMA_VERSION)
            .map_err(|e| fail(path, format!("cannot write: {e}")))?;
        // Files left by an older version may be wider; WAL mode has created
        // `-wal` and `-shm` by now.
        for file in [
            path.to_path_buf(),
            companion(path, "-wal"),
            companion(path, "-shm"),
        ] {
            restrict(&file);
        }
        Ok(Self {
            conn: Mutex::new(conn),
            path: path.to_path_buf(),
        })
    }

    /// A private store in memory, for when `state.db` cannot be used:
    /// conversations still work, until the daemon stops.
    pub fn in_memory() -> Result<Self, StoreError> {
        let path = PathBuf::from(":memory:");
        let conn = Connection::open_in_memory().map_err(|e| fail(&path, e))?;
        conn.pragma_update(None, "foreign_keys", "ON")
            .map_err(|e| fail(&path, e))?;
        conn.execute_batch(SCHEMA).map_err(|e| fail(&path, e))?;
        conn.execute_batch(ledger::SCHEMA)
            .map_err(|e| fail(&path, e))?;
        conn.execute_batch(conversations::MIGRATE_TO_2)
            .map_err(|e| fail(&path, e))?;
        Ok(Self {
            conn: Mutex::new(conn),
            path,
        })
    }

    /// Where the store lives.
    pub fn path(&self) -> &Path {
        &self.path
    }

    fn with<T>(&self, f: impl FnOnce(&Connection) -> rusqlite::Result<T>) -> rusqlite::Result<T> {
        let conn = self.conn.lock().unwrap_or_else(|e| e.into_inner());
        f(&conn)
    }

    /// Marks jobs that were running when the previous daemon died as failed.
    pub fn fail_interrupted(&self) -> rusqlite::Result<usize> {
        let now = now_ms() as i64;
        self.with(|c| {
            c.execute(
                "UPDATE jobs SET status = 'failed', error = 'daemon restarted', updated_ms = ?1, finished_ms = ?1
                 WHERE status = 'processing'",
                params![now],
            )
        })
    }

    /// Deletes finished jobs older than `age`.
    pub fn prune(&self, age: Duration) -> rusqlite::Result<usize> {
        let cutoff = now_ms().saturating_sub(age.as_millis() as u64) as i64;
        self.with(|c| {
            c.execute(
                "DELETE FROM jobs WHERE status != 'processing' AND COALESCE(finished_ms, updated_ms) < ?1",
                params![cutoff],
            )
        })
    }

    /// Writes job rows, delivery marks and ledger rows in one transaction.
    pub fn write_batch(
        &self,
        rows: &[JobRow],
        delivered: &[String],
        ledger: &[LedgerRow],
    ) -> rusqlite::Result<()> {
        let mut conn = self.conn.lock().unwrap_or_else(|e| e.into_inner());
        let tx = conn.transaction()?;
        for job in rows {
            put(&tx, job)?;
        }
        for id in delivered {
            tx.execute("UPDATE jobs SET delivered = 1 WHERE id = ?1", params![id])?;
        }
        for row in ledger {
            ledger::insert(&tx, row)?;
        }
        tx.commit()
    }

    /// One job by id.
    pub fn job(&self, id: &str) -> rusqlite::Result<Option<JobRow>> {
        self.with(|c| {
            c.query_row(
                &format!("{SELECT_JOB} WHERE id = ?1"),
                params![id],
                row_to_job,
            )
            .optional()
        })
    }

    /// The most recent jobs, newest first.
    pub fn recent_jobs(&self, limit: usize) -> rusqlite::Result<Vec<JobRow>> {
        self.with(|c| {
            let mut stmt = c.prepare(&format!(
                "{SELECT_JOB} ORDER BY created_ms DESC, rowid DESC LIMIT ?1"
            ))?;
            let rows = stmt.query_map(params![limit as i64], row_to_job)?;
            rows.collect()
        })
    }

    /// Counts of jobs by status.
    pub fn job_counts(&self) -> rusqlite::Result<Vec<(String, u64)>> {
        self.with(|c| {
            let mut stmt =
                c.prepare("SELECT status, COUNT(*) FROM jobs GROUP BY status ORDER BY status")?;
            let rows = stmt.query_map([], |r| {
                Ok((r.get::<_, String>(0)?, r.get::<_, i64>(1)? as u64))
            })?;
            rows.collect()
        })
    }
}

fn put(c: &Connection, job: &JobRow) -> rusqlite::Result<()> {
    c.execute(
        "INSERT OR REPLACE INTO jobs (id, tool, model, status, request_hash, arguments, output, result, error,
            events, delivered, session_id, created_ms, updated_ms, finished_ms)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15)",
        params![
            job.id,
            job.tool,
            job.model,
            job.status,
            job.request_hash,
            job.arguments,
            job.output,
            job.result,
            job.error,
            job.events as i64,
            job.delivered,
            job.session_id.map(|s| s as i64),
            job.created_ms as i64,
            job.updated_ms as i64,
            job.finished_ms.map(|s| s as i64),
        ],
    )
    .map(|_| ())
}

const SELECT_JOB: &str =
    "SELECT id, tool, model, status, request_hash, arguments, output, result, error,
    events, delivered, session_id, created_ms, updated_ms, finished_ms FROM jobs";

fn row_to_job(row: &rusqlite::Row<'_>) -> rusqlite::Result<JobRow> {
    Ok(JobRow {
        id: row.get(0)?,
        tool: row.get(1)?,
        model: row.get(2)?,
        status: row.get(3)?,
        request_hash: row.get(4)?,
        arguments: row.get(5)?,
        output: row.get(6)?,
        result: row.get(7)?,
        error: row.get(8)?,
        events: row.get::<_, i64>(9)? as u64,
        delivered: row.get(10)?,
        session_id: row.get::<_, Option<i64>>(11)?.map(|v| v as u64),
        created_ms: row.get::<_, i64>(12)? as u64,
        updated_ms: row.get::<_, i64>(13)? as u64,
        finished_ms: row.get::<_, Option<i64>>(14)?.map(|v| v as u64),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn job(id: &str, status: &str) -> JobRow {
        JobRow {
            id: id.into(),
            tool: "get_bot_response".into(),
            model: "echo".into(),
            status: status.into(),
            request_hash: "h1".into(),
            arguments: "{}".into(),
            output: "partial".into(),
            result: None,
            error: None,
            events: 3,
            delivered: false,
            session_id: Some(1),
            created_ms: now_ms(),
            updated_ms: now_ms(),
            finished_ms: None,
        }
    }

    #[test]
    fn running_jobs_fail_with_a_reason_after_restart() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("state.db");
        {
            let store = Store::open(&path).unwrap();
            store
                .write_batch(&[job("a", "processing")], &[], &[])
                .unwrap();
            let mut done = job("b", "completed");
            done.finished_ms = Some(now_ms());
            done.result = Some("{\"content\":[]}".into());
            store.write_batch(&[done], &[], &[]).unwrap();
        }
        let store = Store::open(&path).unwrap();
        assert_eq!(store.fail_interrupted().unwrap(), 1);
        let a = store.job("a").unwrap().unwrap();
        assert_eq!(a.status, "failed");
        assert_eq!(a.error.as_deref(), Some("daemon restarted"));
        assert_eq!(a.output, "partial", "streamed output is kept");
        assert_eq!(store.job("b").unwrap().unwrap().status, "completed");
        store.write_batch(&[], &["b".to_string()], &[]).unwrap();
        assert!(store.job("b").unwrap().unwrap().delivered);
    }

    #[test]
    fn prune_removes_only_old_finished_jobs() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&dir.path().join("state.db")).unwrap();
        let mut old = job("old", "completed");
        old.finished_ms = Some(now_ms() - 4 * 24 * 3600 * 1000);
        store.write_batch(&[old], &[], &[]).unwrap();
        store
            .write_batch(&[job("running", "processing")], &[], &[])
            .unwrap();
        assert_eq!(store.prune(Duration::from_secs(3 * 24 * 3600)).unwrap(), 1);
        assert_eq!(store.recent_jobs(10).unwrap().len(), 1);
    }

    fn mode(path: &Path) -> u32 {
        use std::os::unix::fs::PermissionsExt;
        std::fs::metadata(path).unwrap().permissions().mode() & 0o777
    }

    #[test]
    fn the_store_and_its_wal_files_are_private() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("state.db");
        let store = Store::open(&path).unwrap();
        store
            .write_batch(&[job("a", "processing")], &[], &[])
            .unwrap();
        for file in [
            path.clone(),
            companion(&path, "-wal"),
            companion(&path, "-shm"),
        ] {
            assert!(
                file.exists(),
                "{} exists while the store is open",
                file.display()
            );
            assert_eq!(mode(&file), 0o600, "{}", file.display());
        }
    }

    #[test]
    fn wide_files_from_an_older_version_are_tightened() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("state.db");
        // An older daemon's store: WAL files present and world-readable.
        let old = Connection::open(&path).unwrap();
        old.pragma_update(None, "journal_mode", "WAL").unwrap();
        old.execute_batch("CREATE TABLE t(x); INSERT INTO t VALUES (1);")
            .unwrap();
        let files = [
            path.clone(),
            companion(&path, "-wal"),
            companion(&path, "-shm"),
        ];
        for file in &files {
            std::fs::set_permissions(file, std::fs::Permissions::from_mode(0o644)).unwrap();
        }
        let _store = Store::open(&path).unwrap();
        for file in &files {
            assert_eq!(mode(file), 0o600, "{}", file.display());
        }
        drop(old);
    }

    #[test]
    fn corrupt_file_is_refused_and_kept() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("state.db");
        let garbage = vec![0x42u8; 8192];
        std::fs::write(&path, &garbage).unwrap();
        let err = Store::open(&path)
            .err()
            .expect("corrupt store must be refused");
        assert!(err.to_string().contains("state.db"), "{err}");
        assert_eq!(
            std::fs::read(&path).unwrap(),
            garbage,
            "file must not be replaced"
        );
    }
}
