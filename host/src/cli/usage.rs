//! `poe-code usage`: what the calls of every agent cost, from the daemon's
//! usage ledger (`state.db`), grouped by day, model, client or session.
//!
//! Tokens and request counts come from the ledger the daemon writes for
//! every upstream request (retried and cancelled ones included). Before the
//! report, Poe's balance and points history are read and matched to the
//! requests of the Poe plugins ([`crate::usage`]); when that fails, the
//! report says why and shows what the ledger has.

use anyhow::{Context, bail};
use chrono::{DateTime, NaiveDate, TimeZone, Utc};
use serde_json::{Value, json};

use crate::config::Paths;
use crate::store::{DAY_MS, GroupBy, Store, Totals, now_ms};

/// The start of the period `since` names: a duration back from now
/// (`7d`, `36h`, `2w`) or a UTC date (`2026-11-01`).
pub fn since_ms(since: &str, now_ms: u64) -> anyhow::Result<u64> {
    let since = since.trim();
    if let Ok(date) = NaiveDate::parse_from_str(since, "%Y-%m-%d") {
        let start = date.and_hms_opt(0, 0, 0).context("a valid date")?;
        return Ok(Utc.from_utc_datetime(&start).timestamp_millis().max(0) as u64);
    }
    let (number, unit) = since.split_at(
        since
            .find(|c: char| !c.is_ascii_digit())
            .unwrap_or(since.len()),
    );
    let n: u64 = number
        .parse()
        .with_context(|| format!("--since {since:?}: expected e.g. 7d, 24h, 2w or 2026-11-01"))?;
    let unit_ms = match unit {
        "h" => 3_600_000,
        "d" => DAY_MS,
        "w" => 7 * DAY_MS,
        _ => bail!("--since {since:?}: expected e.g. 7d, 24h, 2w or 2026-11-01"),
    };
    Ok(now_ms.saturating_sub(n.saturating_mul(unit_ms)))
}

/// Parses `--by`.
pub fn group_by(by: &str) -> anyhow::Result<GroupBy> {
    Ok(match by {
        "day" => GroupBy::Day,
        "model" => GroupBy::Model,
        "client" => GroupBy::Client,
        "session" => GroupBy::Session,
        other => bail!("--by {other:?}: expected day, model, client or session"),
    })
}

fn iso(ms: u64) -> String {
    DateTime::<Utc>::from_timestamp_millis(ms as i64)
        .map(|t| t.to_rfc3339_opts(chrono::SecondsFormat::Secs, true))
        .unwrap_or_default()
}

/// The report as JSON (what `--json` prints, and what the table shows).
pub fn report(
    store: &Store,
    since: u64,
    until: u64,
    by: &str,
    synced: &crate::usage::Synced,
) -> anyhow::Result<Value> {
    let (groups, totals) = store
        .usage(since, until, group_by(by)?)
        .context("cannot read the usage ledger")?;
    let balance = match (&synced.balance, &synced.balance_error) {
        (Some(balance), _) => {
            let mut balance = balance.clone();
            balance["available"] = json!(true);
            balance
        }
        (None, error) => json!({
            "available": false,
            "reason": error.as_deref().unwrap_or("no Poe API key (poe-code login)"),
        }),
    };
    let mut points = json!({
        "available": synced.error.is_none(),
        "matched_now": synced.matched,
        "note": "a request's points are the Poe history entry of the same bot nearest in time; requests without one are unpriced",
    });
    if let Some(error) = &synced.error {
        points["reason"] = json!(error);
    }
    Ok(json!({
        "since": iso(since),
        "until": iso(until),
        "by": by,
        "balance": balance,
        "groups": groups,
        "totals": totals,
        "points": points,
    }))
}

fn thousands(n: u64) -> String {
    let digits = n.to_string();
    let mut out = String::new();
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

/// Width of the bar chart, labels included.
const CHART_WIDTH: u16 = 72;

/// A bar per group of `rows` (by day: a day), drawn with ratatui's bar
/// chart into a buffer: Poe points when any request has them, else tokens.
fn chart(rows: &[(String, Totals)]) -> String {
    use ratatui::buffer::Buffer;
    use ratatui::layout::{Direction, Rect};
    use ratatui::widgets::{Bar, BarChart, BarGroup, Widget};

    let by_points = rows.iter().any(|(_, t)| t.priced > 0);
    let value = |t: &Totals| {
        if by_points {
            t.points.max(0) as u64
        } else {
            t.prompt_tokens + t.completion_tokens
        }
    };
    let width = rows
        .iter()
        .map(|(_, t)| thousands(value(t)).len())
        .max()
        .unwrap_or(1);
    let bars: Vec<Bar> = rows
        .iter()
        .map(|(key, t)| {
            Bar::default()
                .label(format!("{key} {:>width$}", thousands(value(t))))
                .value(value(t))
                .text_value(String::new())
        })
        .collect();
    let area = Rect::new(0, 0, CHART_WIDTH, rows.len() as u16);
    let mut buffer = Buffer::empty(area);
    BarChart::default()
        .direction(Direction::Horizontal)
        .bar_width(1)
        .bar_gap(0)
        .data(BarGroup::default().bars(&bars))
        .render(area, &mut buffer);
    let mut out = format!(
        "\n{} by day:\n",
        if by_points { "Poe points" } else { "Tokens" }
    );
    for y in 0..area.height {
        let line: String = (0..area.width).map(|x| buffer[(x, y)].symbol()).collect();
        out.push_str(line.trim_end());
        out.push('\n');
    }
    out
}

/// The report as a table (and by day, a bar chart).
pub fn table(report: &Value) -> String {
    let by = report["by"].as_str().unwrap_or("day");
    let mut rows: Vec<(String, Totals)> = Vec::new();
    for group in report["groups"].as_array().into_iter().flatten() {
        let totals: Totals = serde_json::from_value(group.clone()).unwrap_or_default();
        rows.push((group["key"].as_str().unwrap_or("").to_string(), totals));
    }
    let totals: Totals = serde_json::from_value(report["totals"].clone()).unwrap_or_default();
    let mut out = format!(
        "Usage from {} to {}, by {by}\n\n",
        report["since"].as_str().unwrap_or(""),
        report["until"].as_str().unwrap_or("")
    );
    let width = rows
        .iter()
        .map(|(k, _)| k.chars().count())
        .chain([by.len(), 5])
        .max()
        .unwrap_or(5);
    out.push_str(&format!(
        "{by:<width$}  {:>9}  {:>7}  {:>9}  {:>12}  {:>12}  {:>10}\n",
        "requests", "errors", "cancelled", "tokens in", "tokens out", "points"
    ));
    let line = |key: &str, t: &Totals| {
        format!(
            "{key:<width$}  {:>9}  {:>7}  {:>9}  {:>12}  {:>12}  {:>10}\n",
            thousands(t.requests),
            thousands(t.errors),
            thousands(t.cancelled),
            thousands(t.prompt_tokens),
            thousands(t.completion_tokens),
            if t.priced == 0 {
                "-".to_string()
            } else {
                t.points.to_string()
            }
        )
    };
    for (key, t) in &rows {
        out.push_str(&line(key, t));
    }
    out.push_str(&line("total", &totals));
    if rows.is_empty() {
        out.push_str("\n(no requests in this period)\n");
    } else if by == "day" {
        out.push_str(&chart(&rows));
    }
    out.push_str(&format!(
        "\n{} of {} requests have Poe points (matched by bot and time).\n",
        thousands(totals.priced),
        thousands(totals.requests)
    ));
    if let Some(reason) = report["points"]["reason"].as_str() {
        out.push_str(&format!("Points could not be read now: {reason}\n"));
    }
    let balance = &report["balance"];
    let head = match balance["current_point_balance"].as_i64() {
        Some(points) => format!("Poe balance: {} points\n", thousands(points.max(0) as u64)),
        None => format!(
            "Poe balance: unavailable ({})\n",
            balance["reason"].as_str().unwrap_or("unknown")
        ),
    };
    out.insert_str(0, &head);
    out
}

/// Runs `poe-code usage`.
pub fn run(paths: &Paths, since: &str, by: &str, as_json: bool) -> anyhow::Result<()> {
    let until = now_ms();
    let since = since_ms(since, until)?;
    group_by(by)?;
    let file = paths.state_db();
    if !file.exists() {
        bail!(
            "no usage recorded yet: {} does not exist (the daemon creates it on its first start)",
            file.display()
        );
    }
    let store = Store::open(&file)?;
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("cannot start a runtime")?;
    // A running daemon matches through its shared limiter, so the key's
    // rate limit is respected; without one, this process asks Poe itself.
    let by_daemon = runtime
        .block_on(super::daemon::control(
            paths,
            crate::ipc::ControlRequest::SyncPoints { since_ms: since },
        ))
        .ok()
        .and_then(|reply| reply.points);
    let synced = match (by_daemon, crate::config::credentials::load(paths)?) {
        (Some(synced), _) => synced,
        (None, Some((key, _))) => {
            let root = crate::usage::usage_root_of(paths);
            runtime.block_on(crate::usage::sync(&store, &root, &key, since, None))
        }
        (None, None) => crate::usage::Synced {
            balance_error: Some("no Poe API key: run `poe-code login`".into()),
            error: Some("no Poe API key: run `poe-code login`".into()),
            ..Default::default()
        },
    };
    let report = report(&store, since, until, by, &synced)?;
    if as_json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        print!("{}", table(&report));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn periods_parse() {
        let now = 100 * 86_400_000;
        assert_eq!(since_ms("7d", now).unwrap(), 93 * 86_400_000);
        assert_eq!(since_ms("24h", now).unwrap(), 99 * 86_400_000);
        assert_eq!(since_ms("1970-01-03", now).unwrap(), 2 * 86_400_000);
        assert!(since_ms("seven days", now).is_err());
        assert!(since_ms("7y", now).is_err());
        assert!(group_by("week").is_err());
        assert_eq!(thousands(1234567), "1,234,567");
    }

    #[test]
    fn the_chart_draws_a_bar_a_day_in_proportion() {
        let day = |points: i64| Totals {
            requests: 1,
            points,
            priced: 1,
            ..Totals::default()
        };
        let drawn = chart(&[
            ("2026-11-30".into(), day(1000)),
            ("2026-12-01".into(), day(0)),
            ("2026-12-02".into(), day(250)),
        ]);
        let lines: Vec<&str> = drawn.lines().collect();
        assert_eq!(lines[1], "Poe points by day:");
        let bar = |line: &str| line.chars().filter(|c| *c == '█').count();
        assert!(lines[2].starts_with("2026-11-30 1,000"), "{drawn}");
        assert_eq!(bar(lines[3]), 0, "{drawn}");
        let (full, quarter) = (bar(lines[2]), bar(lines[4]));
        assert!(
            full > 40 && (quarter as f64 - full as f64 / 4.0).abs() <= 1.0,
            "{drawn}"
        );
    }
}
