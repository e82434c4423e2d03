//! The usage ledger's summaries: 100,000 requests in a real `state.db`
//! (30 days, 12 models, 6 clients, 200 sessions), summarised by each
//! grouping `poe-code usage` offers (the goal: under 100 ms each).

use std::time::{Duration, Instant};

use poe_code::store::{GroupBy, LedgerRow, Store};

const ROWS: u64 = 100_000;
const DAY_MS: u64 = 86_400_000;

fn best_of(runs: usize, mut f: impl FnMut()) -> Duration {
    (0..runs)
        .map(|_| {
            let started = Instant::now();
            f();
            started.elapsed()
        })
        .min()
        .unwrap_or_default()
}

pub fn summaries() {
    let dir = tempfile::tempdir().expect("temp dir");
    let store = Store::open(&dir.path().join("state.db")).expect("store");
    let now = poe_code::store::now_ms();
    let start = now - 30 * DAY_MS;
    let rows: Vec<LedgerRow> = (0..ROWS)
        .map(|i| LedgerRow {
            at_ms: start + i * (30 * DAY_MS / ROWS),
            duration_ms: 300 + i % 900,
            plugin: "poe-openai".into(),
            model: format!("model-{}", i % 12),
            client: Some(format!("client-{}", i % 6)),
            client_version: Some("1.0".into()),
            session_id: Some(i % 200),
            job_id: Some(format!("job_{i}")),
            prompt_tokens: 100 + i % 1000,
            completion_tokens: 50 + i % 500,
            outcome: if i % 50 == 0 {
                "error:upstream".into()
            } else {
                "ok".into()
            },
            retried: i % 100 == 0,
        })
        .collect();
    let started = Instant::now();
    for chunk in rows.chunks(10_000) {
        store.write_batch(&[], &[], chunk).expect("write");
    }
    let written = started.elapsed();
    println!();
    println!("Usage ledger ({ROWS} requests over 30 days; best of 5)");
    println!(
        "  writing them: {:.0} ms ({:.1} µs a row, in batches of 10,000)",
        written.as_secs_f64() * 1000.0,
        written.as_secs_f64() * 1e6 / ROWS as f64
    );
    for (name, by) in [
        ("day", GroupBy::Day),
        ("model", GroupBy::Model),
        ("client", GroupBy::Client),
        ("session", GroupBy::Session),
    ] {
        let took = best_of(5, || {
            let (groups, totals) = store.usage(start, now, by).expect("usage");
            assert_eq!(totals.requests, ROWS);
            assert!(!groups.is_empty());
        });
        println!(
            "  summary by {name:<7}: {:>6.1} ms ({:.2} µs a row)",
            took.as_secs_f64() * 1000.0,
            took.as_secs_f64() * 1e6 / ROWS as f64
        );
    }
}
