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
