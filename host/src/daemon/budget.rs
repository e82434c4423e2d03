//! Daily budgets of Poe points (`[budget]`), and the busy daemon's matching
//! of Poe's points history to the ledger that feeds them.
//!
//! Points are known only once matched ([`crate::usage`]), so the daemon
//! matches every [`crate::config::Settings::points_sync`] while calls are
//! made, its requests to Poe taking turns at the key's shared limiter. The
//! day's points (UTC) are recomputed from the ledger after each match; once
//! they reach a budget, new calls to the Poe plugins are refused with
//! BUDGET_EXCEEDED and running calls finish.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::Mutex;

use crate::config::file::BudgetSection;
use crate::store::{DAY_MS, GroupBy, Store, now_ms};

use super::state::DaemonState;

/// The day's matched points.
#[derive(Debug, Default)]
struct Today {
    /// Days since the epoch (UTC) these points are of.
    day: u64,
    total: i64,
    by_client: HashMap<String, i64>,
}

/// The budgets and the day's points.
pub struct Budget {
    limits: BudgetSection,
    today: Mutex<Today>,
    /// The last sync's failure, logged once until it changes.
    last_error: Mutex<Option<String>>,
}

impl Budget {
    pub fn new(limits: BudgetSection) -> Self {
        Budget {
            limits,
            today: Mutex::new(Today::default()),
            last_error: Mutex::new(None),
        }
    }

    /// Recomputes the day's points from the ledger.
    pub fn refresh(&self, store: &Store) {
        match store.usage_today(GroupBy::Client) {
            Ok((groups, totals)) => {
                *self.today.lock().unwrap_or_else(|e| e.into_inner()) = Today {
                    day: now_ms() / DAY_MS,
                    total: totals.points,
                    by_client: groups
                        .into_iter()
                        .map(|g| (g.key, g.totals.points))
                        .collect(),
                };
            }
            Err(e) => tracing::warn!(error = %e, "cannot read the day's points for the budget"),
        }
    }

    /// Why a new call from `client` may not start, if it may not.
    pub fn refusal(&self, client: Option<&str>) -> Option<String> {
        let today = self.today.lock().unwrap_or_else(|e| e.into_inner());
        if today.day != now_ms() / DAY_MS {
            return None; // a new day: nothing spent that we know of
        }
        if let Some(limit) = self.limits.daily_points
            && today.total >= limit
        {
            return Some(format!(
                "today's Poe points ({}) reached the daily budget of {limit} ([budget] daily_points); \
                 calls already running finish, new ones are refused until 00:00 UTC",
                today.total
            ));
        }
        let client = client?;
        let limit = *self.limits.clients.get(client)?;
        let spent = today.by_client.get(client).copied().unwrap_or(0);
        (spent >= limit).then(|| {
            format!(
                "today's Poe points of client {client} ({spent}) reached its daily budget of {limit} \
                 ([budget.clients]); calls already running finish, new ones are refused until 00:00 UTC"
            )
        })
    }

    fn note_error(&self, error: Option<String>) {
        let mut last = self.last_error.lock().unwrap_or_else(|e| e.into_inner());
        if error != *last {
            match &error {
                Some(e) => {
                    tracing::warn!(error = %e, "Poe's points could not be matched to the ledger")
                }
                None if last.is_some() => tracing::info!("Poe's points are matched again"),
                None => {}
            }
            *last = error;
        }
    }
}

/// Matches Poe's points to the ledger every `points_sync` while calls are
/// made (none while the daemon is idle), and refreshes the budget.
pub async fn sync_loop(daemon: Arc<DaemonState>) {
    let Some(store) = daemon.jobs.store() else {
        return;
    };
    daemon.budget.refresh(&store);
    let mut tick = tokio::time::interval(daemon.settings.points_sync);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    let mut seen = daemon.calls_total();
    loop {
        tokio::select! {
            _ = daemon.shutdown.cancelled() => return,
            _ = tick.tick() => {}
        }
        let calls = daemon.calls_total();
        if calls == seen {
            continue;
        }
        let since = now_ms().saturating_sub(crate::usage::PERIODIC_HORIZON.as_millis() as u64);
        if let Some(synced) = sync_now(&daemon, since).await
            && synced.error.is_none()
        {
            seen = calls;
        }
    }
}

/// Matches Poe's points to the ledger's requests since `since_ms` now, for
/// the daemon's key and through its shared limiter, and refreshes the
/// budget; `None` without a store, the poe-openai plugin or a key.
pub async fn sync_now(daemon: &DaemonState, since_ms: u64) -> Option<crate::usage::Synced> {
    let store = daemon.jobs.store()?;
    let plugin = daemon
        .registry
        .plugins()
        .iter()
        .find(|p| p.manifest.id == "poe-openai")
        .cloned()?;
    let (key, _) = crate::config::credentials::load(&daemon.paths)
        .ok()
        .flatten()?;
    let root = crate::usage::usage_root_of(&daemon.paths);
    // The calls that use the daemon's key take turns at this limiter.
    let limiter = daemon.limits.for_plugin(&plugin, None);
    let synced = crate::usage::sync(&store, &root, &key, since_ms, Some(&limiter)).await;
    if synced.matched > 0 {
        tracing::debug!(matched = synced.matched, "Poe points matched to the ledger");
    }
    daemon.budget.note_error(synced.error.clone());
    daemon.budget.refresh(&store);
    Some(synced)
}
