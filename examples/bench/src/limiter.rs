//! The shared limiter's own cost, in process: how long a 20-call sequential
//! loop and a burst of a whole minute's limit wait for their turns (the
//! baseline is no wait at all), and how long the call after the limit is
//! told to wait.

use std::time::{Duration, Instant};

use poe_code::limits::{Limits, WaitBound};

pub async fn waits() {
    let limits = Limits::new(Default::default());
    let limiter = limits.limiter("bench", Some(500), Some("bench-key-0001"));
    let bound = WaitBound(Duration::from_secs(120));
    let started = Instant::now();
    for _ in 0..20 {
        limiter.acquire(bound).await.expect("a turn");
    }
    let sequential = started.elapsed();

    let limiter = limits.limiter("bench", Some(500), Some("bench-key-0002"));
    let started = Instant::now();
    let turns = (0..500).map(|_| {
        let limiter = limiter.clone();
        tokio::spawn(async move { limiter.acquire(bound).await.is_ok() })
    });
    let granted = futures::future::join_all(turns)
        .await
        .into_iter()
        .filter(|t| matches!(t, Ok(true)))
        .count();
    let burst = started.elapsed();
    let next = limiter.try_acquire().expect_err("the 501st must wait");

    println!();
    println!("shared limiter at 500 requests/minute (baseline: no limiter, no wait)");
    println!(
        "  20-call sequential loop: {:.3} ms in all for 20 turns",
        sequential.as_secs_f64() * 1e3
    );
    println!(
        "  burst of 500 at once: {granted} granted in {:.3} ms; the 501st is told to wait {:.1} s (the window)",
        burst.as_secs_f64() * 1e3,
        next.as_secs_f64()
    );
}

/// What a turn costs with the limits in Redis (`[limits] backend`) against
/// the same turn kept in this process: 1,000 sequential turns each, against
/// a `redis-server` on loopback that this bench starts (skipped, saying so,
/// when there is none).
pub async fn team() {
    println!();
    let Ok(bin) = testkit::external::Tool::Redis.find() else {
        println!("team-wide limits: SKIPPED (no redis-server: REDIS_SERVER_BIN or PATH)");
        return;
    };
    let redis = testkit::redis::RedisServer::start(&bin);
    let turns = 1000;
    let bound = WaitBound(Duration::from_secs(120));
    let local = Limits::new(Default::default());
    let team = Limits::new(poe_code::config::file::LimitsSection {
        backend: Some(redis.url()),
        ..Default::default()
    });
    let mut figures = Vec::new();
    for limits in [&local, &team] {
        let limiter = limits.limiter("bench", Some(1_000_000), Some("bench-key-0003"));
        limiter.acquire(bound).await.expect("a warm-up turn");
        let started = Instant::now();
        for _ in 0..turns {
            limiter.acquire(bound).await.expect("a turn");
        }
        figures.push(started.elapsed() / turns);
    }
    assert_eq!(
        team.backend_status().map(|s| s.ok),
        Some(true),
        "the team limiter used Redis"
    );
    println!(
        "team-wide limits in Redis (loopback) vs the same limiter in process, {turns} sequential turns"
    );
    println!(
        "  per turn: {:.3} ms with Redis, {:.4} ms local; Redis adds {:.3} ms per call",
        figures[1].as_secs_f64() * 1e3,
        figures[0].as_secs_f64() * 1e3,
        figures[1].saturating_sub(figures[0]).as_secs_f64() * 1e3
    );
    drop(redis);
}
