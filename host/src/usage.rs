//! Poe's points for the usage ledger: the balance and the points history
//! from Poe's usage API (`GET /usage/current_balance`,
//! `GET /usage/points_history`), and the match of history entries to the
//! ledger's requests.
//!
//! Poe's chat answers carry tokens but no points, so a request's points come
//! from the history entry of the same bot nearest in time: per bot, entries
//! and requests are paired in time order, each within [`TOLERANCE`] of the
//! other (the clocks of Poe and this machine differ, and Poe stamps an entry
//! some time into the request). Failed requests are not billed and never
//! take an entry; an entry is matched once; requests without one stay
//! unpriced and are counted as such.
//!
//! A history page that is not the documented shape, or is larger than
//! [`MAX_PAGE_BYTES`], is refused with the reason and nothing from that sync
//! is stored.

use std::collections::{BTreeMap, HashSet};
use std::time::Duration;

use serde_json::Value;

use crate::limits::{Limiter, WaitBound};
use crate::store::Store;

/// The plugins whose requests Poe bills to the key.
pub const POE_PLUGINS: &[&str] = &["poe-openai", "poe-legacy"];
/// How far apart in time a request and its history entry may be.
pub const TOLERANCE: Duration = Duration::from_secs(5 * 60);
/// Largest history page accepted.
pub const MAX_PAGE_BYTES: usize = 1 << 20;
/// Entries asked for per page (Poe's maximum).
const PAGE: usize = 100;
/// Pages read at most in one sync (10,000 entries).
const MAX_PAGES: usize = 100;
/// How long one request to the usage API may take.
const TIMEOUT: Duration = Duration::from_secs(20);

/// The usage API's root for a chat base URL: `https://api.poe.com/v1` →
/// `https://api.poe.com` (the usage endpoints have no `/v1`).
pub fn usage_root(poe_base_url: &str) -> String {
    let base = poe_base_url.trim_end_matches('/');
    base.strip_suffix("/v1").unwrap_or(base).to_string()
}

/// The usage API's root for the Poe base URL poe-openai uses
/// (`POE_BASE_URL`, then config.toml's, then Poe's).
pub fn usage_root_of(paths: &crate::config::Paths) -> String {
    let config = crate::config::file::ConfigFile::load(&paths.config_file()).unwrap_or_default();
    usage_root(&crate::models::catalog::base_url(&config))
}

/// One entry of the points history.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    /// Milliseconds since the epoch (Poe's clock; `creation_time` is µs).
    pub at_ms: u64,
    pub bot: String,
    pub query_id: String,
    pub usage_type: String,
    pub points: i64,
}

/// What a sync did.
#[derive(Debug, Default, Clone, serde::Serialize, serde::Deserialize)]
pub struct Synced {
    /// `current_point_balance` and any other balance fields Poe sent.
    pub balance: Option<Value>,
    /// Why the balance is unknown.
    pub balance_error: Option<String>,
    /// Requests that got their points now.
    pub matched: usize,
    /// Why no points were matched (usage API down, 401, a corrupt page).
    pub error: Option<String>,
}

fn client() -> Result<reqwest::Client, String> {
    reqwest::Client::builder()
        .timeout(TIMEOUT)
        .build()
        .map_err(|e| format!("cannot build an HTTP client: {e}"))
}

/// GETs `url` and reads a JSON body of at most [`MAX_PAGE_BYTES`], after
/// waiting its turn at `limiter` (the key's shared limiter, in the daemon).
async fn get_json(
    client: &reqwest::Client,
    url: &str,
    query: &[(&str, String)],
    key: &str,
    limiter: Option<&Limiter>,
) -> Result<Value, String> {
    if let Some(limiter) = limiter
        && limiter.acquire(WaitBound(TIMEOUT)).await.is_err()
    {
        return Err("the key's shared rate limit is busy with calls; points are read later".into());
    }
    let url = reqwest::Url::parse_with_params(url, query)
        .map_err(|e| format!("bad usage API address {url}: {e}"))?;
    let response = client
        .get(url)
        .bearer_auth(key)
        .send()
        .await
        .map_err(|e| format!("Poe's usage API did not answer: {e}"))?;
    let status = response.status();
    if status == reqwest::StatusCode::UNAUTHORIZED || status == reqwest::StatusCode::FORBIDDEN {
        return Err(format!(
            "Poe's usage API refused the API key (HTTP {}); check it with `poe-code login`",
            status.as_u16()
        ));
    }
    if !status.is_success() {
        return Err(format!("Poe's usage API answered HTTP {}", status.as_u16()));
    }
    if response
        .content_length()
        .is_some_and(|n| n > MAX_PAGE_BYTES as u64)
    {
        return Err(format!(
            "Poe's usage API sent a page over {MAX_PAGE_BYTES} bytes; refused"
        ));
    }
    let bytes = response
        .bytes()
        .await
        .map_err(|e| format!("reading Poe's usage API failed: {e}"))?;
    if bytes.len() > MAX_PAGE_BYTES {
        return Err(format!(
            "Poe's usage API sent a page over {MAX_PAGE_BYTES} bytes; refused"
        ));
    }
    serde_json::from_slice(&bytes)
        .map_err(|e| format!("Poe's usage API sent something that is not JSON ({e}); refused"))
}

/// Reads one history page: `(entries, has_more)`.
pub fn parse_page(page: &Value) -> Result<(Vec<Entry>, bool), String> {
    let corrupt = |why: &str| format!("a corrupt points history page was refused: {why}");
    let data = page
        .get("data")
        .and_then(Value::as_array)
        .ok_or_else(|| corrupt("no `data` list"))?;
    if data.len() > PAGE {
        return Err(corrupt(&format!(
            "{} entries, more than the {PAGE} asked for",
            data.len()
        )));
    }
    let has_more = page
        .get("has_more")
        .and_then(Value::as_bool)
        .unwrap_or(false);
    let mut entries = Vec::with_capacity(data.len());
    for (i, item) in data.iter().enumerate() {
        let text = |key: &str| {
            item.get(key)
                .and_then(Value::as_str)
                .map(str::to_string)
                .ok_or_else(|| corrupt(&format!("entry {i} has no `{key}`")))
        };
        let micros = item
            .get("creation_time")
            .and_then(Value::as_u64)
            .ok_or_else(|| corrupt(&format!("entry {i} has no `creation_time`")))?;
        let points = item
            .get("cost_points")
            .and_then(|p| p.as_i64().or_else(|| p.as_f64().map(|f| f.round() as i64)))
            .ok_or_else(|| corrupt(&format!("entry {i} has no `cost_points`")))?;
        entries.push(Entry {
            at_ms: micros / 1000,
            bot: text("bot_name")?,
            query_id: text("query_id")?,
            usage_type: text("usage_type")?,
            points,
        });
    }
    Ok((entries, has_more))
}

/// The history back to `since_ms` (newest first, as Poe sends it).
async fn history(
    client: &reqwest::Client,
    root: &str,
    key: &str,
    since_ms: u64,
    limiter: Option<&Limiter>,
) -> Result<Vec<Entry>, String> {
    let mut all = Vec::new();
    let mut cursor: Option<String> = None;
    for _ in 0..MAX_PAGES {
        let mut query = vec![("limit", PAGE.to_string())];
        if let Some(cursor) = &cursor {
            query.push(("starting_after", cursor.clone()));
        }
        let url = format!("{root}/usage/points_history");
        let (entries, has_more) = parse_page(&get_json(client, &url, &query, key, limiter).await?)?;
        let done = !has_more || entries.is_empty() || entries.iter().any(|e| e.at_ms < since_ms);
        cursor = entries.last().map(|e| e.query_id.clone());
        all.extend(entries);
        if done {
            break;
        }
    }
    Ok(all)
}

/// A bot's unpriced requests and its history entries.
type PerBot<'a> = (Vec<&'a (i64, u64, String)>, Vec<&'a Entry>);

/// Pairs history entries with unpriced requests `(row id, start, model)`:
/// per bot (any case), both in time order, each pair within `tolerance`;
/// entries in `taken` or not of type `API` are skipped. Returns (row id,
/// query id, points).
pub fn match_entries(
    requests: &[(i64, u64, String)],
    entries: &[Entry],
    taken: &HashSet<String>,
    tolerance: Duration,
) -> Vec<(i64, String, i64)> {
    let tolerance = tolerance.as_millis() as u64;
    let mut by_bot: BTreeMap<String, PerBot<'_>> = BTreeMap::new();
    for request in requests {
        by_bot
            .entry(request.2.to_ascii_lowercase())
            .or_default()
            .0
            .push(request);
    }
    for entry in entries {
        if entry.usage_type.eq_ignore_ascii_case("api") && !taken.contains(&entry.query_id) {
            by_bot
                .entry(entry.bot.to_ascii_lowercase())
                .or_default()
                .1
                .push(entry);
        }
    }
    let mut matched = Vec::new();
    for (requests, mut entries) in by_bot.into_values() {
        entries.sort_by_key(|e| e.at_ms);
        let (mut r, mut e) = (0, 0);
        while r < requests.len() && e < entries.len() {
            let (id, at, _) = requests[r];
            let entry = entries[e];
            if entry.at_ms + tolerance < *at {
                e += 1; // an entry from before any request left: not ours
            } else if *at + tolerance < entry.at_ms {
                r += 1; // a request Poe has no entry for (yet)
            } else {
                matched.push((*id, entry.query_id.clone(), entry.points));
                r += 1;
                e += 1;
            }
        }
    }
    matched
}

/// How far back a busy daemon's periodic match looks: Poe's entries appear
/// within minutes, so older unpriced requests are left to `poe-code usage`
/// (which looks back over its whole period) instead of being looked for
/// again every few minutes.
pub const PERIODIC_HORIZON: Duration = Duration::from_secs(2 * 3600);
/// Poe keeps 30 days of history.
pub const HISTORY_DAYS: u64 = 30;

/// Reads the balance and the history back to the oldest unpriced request
/// since `since_ms` (30 days at most, as far as Poe keeps it) and stores the
/// points of the requests that match. Each request to Poe waits its turn at
/// `limiter` when given.
pub async fn sync(
    store: &Store,
    root: &str,
    key: &str,
    since_ms: u64,
    limiter: Option<&Limiter>,
) -> Synced {
    let mut synced = Synced::default();
    let client = match client() {
        Ok(client) => client,
        Err(e) => {
            synced.balance_error = Some(e.clone());
            synced.error = Some(e);
            return synced;
        }
    };
    match get_json(
        &client,
        &format!("{root}/usage/current_balance"),
        &[],
        key,
        limiter,
    )
    .await
    {
        Ok(balance) if balance.get("current_point_balance").is_some() => {
            synced.balance = Some(balance)
        }
        Ok(_) => {
            synced.balance_error = Some("Poe's balance answer has no current_point_balance".into())
        }
        Err(e) => synced.balance_error = Some(e),
    }
    let month_ago = crate::store::now_ms().saturating_sub(HISTORY_DAYS * crate::store::DAY_MS);
    let unpriced = match store.unpriced(since_ms.max(month_ago), POE_PLUGINS) {
        Ok(rows) => rows,
        Err(e) => {
            synced.error = Some(format!("cannot read the usage ledger: {e}"));
            return synced;
        }
    };
    let Some(oldest) = unpriced.iter().map(|r| r.1).min() else {
        return synced;
    };
    let since = oldest.saturating_sub(TOLERANCE.as_millis() as u64);
    let entries = match history(&client, root, key, since, limiter).await {
        Ok(entries) => entries,
        Err(e) => {
            synced.error = Some(e);
            return synced;
        }
    };
    let taken = store.priced_queries(since).unwrap_or_default();
    let matched = match_entries(&unpriced, &entries, &taken, TOLERANCE);
    match store.set_points(&matched) {
        Ok(()) => synced.matched = matched.len(),
        Err(e) => synced.error = Some(format!("cannot store points: {e}")),
    }
    synced
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn entry(at_ms: u64, bot: &str, query: &str, points: i64) -> Entry {
        Entry {
            at_ms,
            bot: bot.into(),
            query_id: query.into(),
            usage_type: "API".into(),
            points,
        }
    }

    #[test]
    fn matching_keeps_time_order_per_bot_despite_skew() {
        // Two seconds of skew, calls one second apart: nearest-first would
        // pair the first entry with the third call.
        let requests = vec![
            (1, 10_000, "GPT-5".to_string()),
            (2, 11_000, "GPT-5".to_string()),
            (3, 12_000, "gpt-5".to_string()),
            (4, 12_500, "Claude-Sonnet-4.5".to_string()),
        ];
        let entries = vec![
            entry(14_000, "GPT-5", "q3", 30),
            entry(13_000, "GPT-5", "q2", 20),
            entry(12_000, "GPT-5", "q1", 10),
            entry(14_600, "Claude-Sonnet-4.5", "q4", 40),
            entry(5_000_000, "GPT-5", "far", 99),
        ];
        let taken = HashSet::new();
        let mut matched = match_entries(&requests, &entries, &taken, Duration::from_secs(60));
        matched.sort();
        assert_eq!(
            matched,
            [
                (1, "q1".to_string(), 10),
                (2, "q2".to_string(), 20),
                (3, "q3".to_string(), 30),
                (4, "q4".to_string(), 40),
            ]
        );
        // Taken entries and chat (not API) usage are not matched again.
        let taken: HashSet<String> = ["q1".to_string()].into();
        let mut chat = entry(10_100, "GPT-5", "qc", 5);
        chat.usage_type = "Chat".into();
        let matched = match_entries(
            &requests[..1],
            &[entry(10_100, "GPT-5", "q1", 1), chat],
            &taken,
            Duration::from_secs(60),
        );
        assert!(matched.is_empty());
    }

    #[test]
    fn pages_are_checked() {
        let good = json!({"has_more": true, "length": 1, "data": [
            {"creation_time": 1_700_000_000_123_456u64, "bot_name": "GPT-5", "query_id": "q1",
             "usage_type": "API", "cost_points": 12, "cost_usd": "0.0004"}]});
        let (entries, more) = parse_page(&good).unwrap();
        assert!(more);
        assert_eq!(entries, [entry(1_700_000_000_123, "GPT-5", "q1", 12)]);
        for bad in [
            json!({"data": "nope"}),
            json!({"data": [{"bot_name": "GPT-5", "query_id": "q", "usage_type": "API", "cost_points": 1}]}),
            json!({"data": [{"creation_time": 1, "query_id": "q", "usage_type": "API", "cost_points": 1}]}),
        ] {
            let err = parse_page(&bad).unwrap_err();
            assert!(
                err.starts_with("a corrupt points history page was refused"),
                "{err}"
            );
        }
        let huge = json!({"data": vec![json!({}); 101]});
        assert!(parse_page(&huge).unwrap_err().contains("more than the 100"));
        assert_eq!(usage_root("https://api.poe.com/v1/"), "https://api.poe.com");
    }
}
