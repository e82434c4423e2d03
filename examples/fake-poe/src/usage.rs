//! Poe's usage API: `GET /usage/current_balance` and
//! `GET /usage/points_history?limit=&starting_after=` (newest first, pages
//! of at most `limit`, `{has_more, length, data}`), as REFERENCE.md and
//! creator.poe.com describe them. Every chat completion the fake answers is
//! one `API` entry costing [`POINTS_PER_TOKEN`] × its total tokens, stamped
//! with the fake's clock set [`CLOCK_SKEW`] ahead (Poe's clock and ours never
//! agree exactly).

use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde_json::{Value, json};
use wiremock::{Request, Respond, ResponseTemplate};

use crate::wire;

/// Points a token costs at the fake.
pub const POINTS_PER_TOKEN: i64 = 3;
/// How far the fake's clock runs ahead of ours.
pub const CLOCK_SKEW: Duration = Duration::from_secs(2);
/// The balance before any call.
pub const STARTING_BALANCE: i64 = 100_000;

/// One entry of the points history.
#[derive(Debug, Clone)]
pub struct Entry {
    /// Microseconds since the epoch (Poe's clock).
    pub creation_time: u64,
    pub bot_name: String,
    pub query_id: String,
    pub cost_points: i64,
}

/// The entries so far, oldest first.
#[derive(Debug, Clone, Default)]
pub struct History(pub(crate) Arc<Mutex<Vec<Entry>>>);

impl History {
    /// Records one answered call.
    pub(crate) fn charge(&self, bot: &str, total_tokens: i64) {
        let mut entries = self.0.lock().unwrap_or_else(|e| e.into_inner());
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap_or_default()
            + CLOCK_SKEW;
        let n = entries.len() + 1;
        entries.push(Entry {
            creation_time: now.as_micros() as u64,
            bot_name: bot.to_string(),
            query_id: format!("q-fake-{n:06}"),
            cost_points: POINTS_PER_TOKEN * total_tokens.max(1),
        });
    }

    /// Every entry so far, oldest first.
    pub fn entries(&self) -> Vec<Entry> {
        self.0.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }
}

pub(crate) struct Balance(pub(crate) History);

impl Respond for Balance {
    fn respond(&self, request: &Request) -> ResponseTemplate {
        if let Some(denied) = wire::check_auth(request) {
            return denied;
        }
        let spent: i64 = self.0.entries().iter().map(|e| e.cost_points).sum();
        wire::ok_json(json!({"current_point_balance": STARTING_BALANCE - spent}))
    }
}

pub(crate) struct PointsHistory(pub(crate) History);

impl Respond for PointsHistory {
    fn respond(&self, request: &Request) -> ResponseTemplate {
        if let Some(denied) = wire::check_auth(request) {
            return denied;
        }
        let query = |key: &str| {
            request
                .url
                .query_pairs()
                .find(|(k, _)| k == key)
                .map(|(_, v)| v.to_string())
        };
        let limit = query("limit")
            .and_then(|l| l.parse::<usize>().ok())
            .unwrap_or(20)
            .clamp(1, 100);
        let mut newest_first = self.0.entries();
        newest_first.reverse();
        let start = match query("starting_after") {
            Some(cursor) => match newest_first.iter().position(|e| e.query_id == cursor) {
                Some(i) => i + 1,
                None => {
                    return wire::error_body(
                        400,
                        "starting_after does not name a query",
                        "invalid_request_error",
                        "invalid_cursor",
                    );
                }
            },
            None => 0,
        };
        let page: Vec<Value> = newest_first
            .iter()
            .skip(start)
            .take(limit)
            .map(|e| {
                json!({
                    "creation_time": e.creation_time,
                    "bot_name": e.bot_name,
                    "query_id": e.query_id,
                    "usage_type": "API",
                    "cost_points": e.cost_points,
                })
            })
            .collect();
        let has_more = start + page.len() < newest_first.len();
        wire::ok_json(json!({"has_more": has_more, "length": page.len(), "data": page}))
    }
}
