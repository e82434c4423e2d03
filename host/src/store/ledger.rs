//! The usage ledger: one row per upstream request any plugin made (each
//! attempt of a call, retries and cancelled ones included, since each may
//! have cost), with who asked (client, session, job), the model, tokens,
//! time and outcome; and the summaries `poe-code usage` and `status` show.

use rusqlite::{Connection, params};
use serde::{Deserialize, Serialize};

use super::{Store, now_ms};

/// Milliseconds in a day; the ledger's days are UTC days.
pub const DAY_MS: u64 = 86_400_000;

pub(super) const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS ledger (
    id                 INTEGER PRIMARY KEY AUTOINCREMENT,
    at_ms              INTEGER NOT NULL,
    duration_ms        INTEGER NOT NULL,
    plugin             TEXT NOT NULL,
    model              TEXT NOT NULL,
    client             TEXT,
    client_version     TEXT,
    session_id         INTEGER,
    job_id             TEXT,
    prompt_tokens      INTEGER NOT NULL DEFAULT 0,
    completion_tokens  INTEGER NOT NULL DEFAULT 0,
    outcome            TEXT NOT NULL,
    retried            INTEGER NOT NULL DEFAULT 0,
    points             INTEGER,
    query_id           TEXT
);
CREATE INDEX IF NOT EXISTS ledger_by_time ON ledger(at_ms);
CREATE INDEX IF NOT EXISTS ledger_by_job ON ledger(job_id);
CREATE UNIQUE INDEX IF NOT EXISTS ledger_by_query ON ledger(query_id) WHERE query_id IS NOT NULL;
";

/// One upstream request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LedgerRow {
    /// When it started (ms since the epoch).
    pub at_ms: u64,
    pub duration_ms: u64,
    pub plugin: String,
    pub model: String,
    /// The MCP client's `clientInfo` (or the HTTP token's name).
    pub client: Option<String>,
    pub client_version: Option<String>,
    pub session_id: Option<u64>,
    pub job_id: Option<String>,
    pub prompt_tokens: u64,
    pub completion_tokens: u64,
    /// `ok`, `cancelled`, `timeout`, or `error:<kind>` (`error:rate_limited`).
    pub outcome: String,
    /// The call tried again after this request.
    pub retried: bool,
}

/// How `poe-code usage` groups requests.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GroupBy {
    Day,
    Model,
    Client,
    Session,
}

impl GroupBy {
    /// The SQL expression of the group key. Days are UTC dates.
    fn key(self) -> &'static str {
        match self {
            GroupBy::Day => "date(at_ms / 1000, 'unixepoch')",
            GroupBy::Model => "model",
            GroupBy::Client => "COALESCE(client, '(unknown)')",
            GroupBy::Session => "COALESCE(CAST(session_id AS TEXT), '(none)')",
        }
    }
}

/// Totals of a set of requests.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Totals {
    pub requests: u64,
    pub errors: u64,
    pub cancelled: u64,
    pub retried: u64,
    pub prompt_tokens: u64,
    pub completion_tokens: u64,
    pub duration_ms: u64,
    /// Poe points of the requests matched with Poe's history.
    pub points: i64,
    /// How many requests have points.
    pub priced: u64,
}

/// One group of a summary.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Group {
    pub key: String,
    #[serde(flatten)]
    pub totals: Totals,
}

const TOTALS: &str = "COUNT(*),
    COALESCE(SUM(outcome LIKE 'error:%'), 0),
    COALESCE(SUM(outcome IN ('cancelled', 'timeout')), 0),
    COALESCE(SUM(retried), 0),
    COALESCE(SUM(prompt_tokens), 0),
    COALESCE(SUM(completion_tokens), 0),
    COALESCE(SUM(duration_ms), 0),
    COALESCE(SUM(points), 0),
    COUNT(points)";

fn totals_at(row: &rusqlite::Row<'_>, first: usize) -> rusqlite::Result<Totals> {
    let n = |i: usize| row.get::<_, i64>(first + i).map(|v| v.max(0) as u64);
    Ok(Totals {
        requests: n(0)?,
        errors: n(1)?,
        cancelled: n(2)?,
        retried: n(3)?,
        prompt_tokens: n(4)?,
        completion_tokens: n(5)?,
        duration_ms: n(6)?,
        points: row.get::<_, i64>(first + 7)?,
        priced: n(8)?,
    })
}

pub(super) fn insert(c: &Connection, row: &LedgerRow) -> rusqlite::Result<()> {
    c.execute(
        "INSERT INTO ledger (at_ms, duration_ms, plugin, model, client, client_version, session_id,
            job_id, prompt_tokens, completion_tokens, outcome, retried)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12)",
        params![
            row.at_ms as i64,
            row.duration_ms as i64,
            row.plugin,
            row.model,
            row.client,
            row.client_version,
            row.session_id.map(|s| s as i64),
            row.job_id,
            row.prompt_tokens as i64,
            row.completion_tokens as i64,
            row.outcome,
            row.retried,
        ],
    )?;
    Ok(())
}

impl Store {
    /// Requests started in `[since_ms, until_ms)`, grouped by `by`, in key
    /// order, and their overall totals.
    pub fn usage(
        &self,
        since_ms: u64,
        until_ms: u64,
        by: GroupBy,
    ) -> rusqlite::Result<(Vec<Group>, Totals)> {
        self.with(|c| {
            let mut stmt = c.prepare(&format!(
                "SELECT {key}, {TOTALS} FROM ledger WHERE at_ms >= ?1 AND at_ms < ?2
                 GROUP BY 1 ORDER BY 1",
                key = by.key()
            ))?;
            let groups = stmt
                .query_map(params![since_ms as i64, until_ms as i64], |row| {
                    Ok(Group {
                        key: row.get(0)?,
                        totals: totals_at(row, 1)?,
                    })
                })?
                .collect::<rusqlite::Result<Vec<_>>>()?;
            let totals = c.query_row(
                &format!("SELECT {TOTALS} FROM ledger WHERE at_ms >= ?1 AND at_ms < ?2"),
                params![since_ms as i64, until_ms as i64],
                |row| totals_at(row, 0),
            )?;
            Ok((groups, totals))
        })
    }

    /// Today's (UTC) requests grouped by `by`, and their totals.
    pub fn usage_today(&self, by: GroupBy) -> rusqlite::Result<(Vec<Group>, Totals)> {
        let now = now_ms();
        self.usage(now - now % DAY_MS, now + 1, by)
    }

    /// Requests of `plugins` since `since_ms` that Poe may have billed (not
    /// failed ones) and that have no points yet: (row id, start, model).
    pub fn unpriced(
        &self,
        since_ms: u64,
        plugins: &[&str],
    ) -> rusqlite::Result<Vec<(i64, u64, String)>> {
        self.with(|c| {
            let mut stmt = c.prepare(
                "SELECT id, at_ms, model, plugin FROM ledger
                 WHERE at_ms >= ?1 AND points IS NULL AND outcome NOT LIKE 'error:%'
                 ORDER BY at_ms, id",
            )?;
            let rows = stmt.query_map(params![since_ms as i64], |r| {
                Ok((
                    r.get::<_, i64>(0)?,
                    r.get::<_, i64>(1)?.max(0) as u64,
                    r.get::<_, String>(2)?,
                    r.get::<_, String>(3)?,
                ))
            })?;
            Ok(rows
                .filter_map(Result::ok)
                .filter(|(.., plugin)| plugins.contains(&plugin.as_str()))
                .map(|(id, at, model, _)| (id, at, model))
                .collect())
        })
    }

    /// The Poe query ids already matched to a request since `since_ms`.
    pub fn priced_queries(
        &self,
        since_ms: u64,
    ) -> rusqlite::Result<std::collections::HashSet<String>> {
        self.with(|c| {
            let mut stmt = c.prepare(
                "SELECT query_id FROM ledger WHERE query_id IS NOT NULL AND at_ms >= ?1",
            )?;
            let rows = stmt.query_map(params![since_ms as i64], |r| r.get::<_, String>(0))?;
            rows.collect()
        })
    }

    /// Sets the points of matched requests: (row id, query id, points).
    pub fn set_points(&self, matched: &[(i64, String, i64)]) -> rusqlite::Result<()> {
        let mut conn = self.conn.lock().unwrap_or_else(|e| e.into_inner());
        let tx = conn.transaction()?;
        for (id, query, points) in matched {
            tx.execute(
                "UPDATE ledger SET points = ?2, query_id = ?3 WHERE id = ?1 AND points IS NULL",
                params![id, points, query],
            )?;
        }
        tx.commit()
    }

    /// The totals of job `id`'s upstream requests, if it made any.
    pub fn job_usage(&self, id: &str) -> rusqlite::Result<Option<Totals>> {
        let totals = self.with(|c| {
            c.query_row(
                &format!("SELECT {TOTALS} FROM ledger WHERE job_id = ?1"),
                params![id],
                |row| totals_at(row, 0),
            )
        })?;
        Ok((totals.requests > 0).then_some(totals))
    }

    /// Deletes ledger rows older than `days` days.
    pub fn prune_ledger(&self, days: u64) -> rusqlite::Result<usize> {
        let cutoff = now_ms().saturating_sub(days.saturating_mul(DAY_MS)) as i64;
        self.with(|c| c.execute("DELETE FROM ledger WHERE at_ms < ?1", params![cutoff]))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(at_ms: u64, model: &str, client: &str, outcome: &str, tokens: u64) -> LedgerRow {
        LedgerRow {
            at_ms,
            duration_ms: 100,
            plugin: "poe-openai".into(),
            model: model.into(),
            client: Some(client.into()),
            client_version: Some("1".into()),
            session_id: Some(7),
            job_id: Some("job_1".into()),
            prompt_tokens: tokens,
            completion_tokens: 1,
            outcome: outcome.into(),
            retried: outcome.starts_with("error"),
        }
    }

    #[test]
    fn summaries_group_and_total() {
        let store = Store::in_memory().unwrap();
        let day = 86_400_000;
        let rows = [
            row(day, "GPT-5", "claude-code", "ok", 10),
            row(day + 5, "GPT-5", "codex", "error:upstream", 3),
            row(2 * day, "Claude-Sonnet-4.5", "codex", "cancelled", 0),
            row(9 * day, "GPT-5", "codex", "ok", 99),
        ];
        store.write_batch(&[], &[], &rows).unwrap();
        let (by_model, totals) = store.usage(0, 3 * day, GroupBy::Model).unwrap();
        assert_eq!(
            by_model
                .iter()
                .map(|g| (g.key.as_str(), g.totals.requests))
                .collect::<Vec<_>>(),
            [("Claude-Sonnet-4.5", 1), ("GPT-5", 2)]
        );
        assert_eq!(
            totals,
            Totals {
                requests: 3,
                errors: 1,
                cancelled: 1,
                retried: 1,
                prompt_tokens: 13,
                completion_tokens: 3,
                duration_ms: 300,
                points: 0,
                priced: 0,
            }
        );
        let (by_day, _) = store.usage(0, 3 * day, GroupBy::Day).unwrap();
        assert_eq!(
            by_day.iter().map(|g| g.key.as_str()).collect::<Vec<_>>(),
            ["1970-01-02", "1970-01-03"]
        );
        let (by_client, _) = store.usage(0, 10 * day, GroupBy::Client).unwrap();
        assert_eq!(by_client[1].key, "codex");
        assert_eq!(by_client[1].totals.requests, 3);
    }
}
