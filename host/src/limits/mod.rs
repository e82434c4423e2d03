//! Shared upstream rate limits: one limiter per (plugin, API key), used by
//! every session of the daemon, so many agents together stay under the
//! upstream's limit instead of each discovering it with 429s.
//!
//! A limiter is a GCRA (governor) sized so that no window of one minute ever
//! sees more than the configured requests, plus a pause that an upstream 429
//! or an exhausted `x-ratelimit-remaining` imposes on everyone using the key.
//! Waiters are served in arrival order (a FIFO mutex in front of governor),
//! so one busy session cannot starve the others.

use std::collections::HashMap;
use std::num::NonZeroU32;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use governor::clock::{Clock, DefaultClock};
use governor::{DefaultDirectRateLimiter, Quota, RateLimiter};

use crate::config::credentials::fingerprint;

/// Environment override: `plugin=requests_per_minute[,plugin=…]`.
pub const RATE_LIMITS_ENV: &str = "POE_CODE_RATE_LIMITS";
/// Limit used when a plugin declares none.
pub const FALLBACK_REQUESTS_PER_MINUTE: u32 = 500;

/// The limit for one plugin.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limit {
    pub requests_per_minute: u32,
}

/// A call may not wait longer than this for its turn.
#[derive(Debug, Clone, Copy)]
pub struct WaitBound(pub Duration);

/// The call would have to wait longer than its bound.
#[derive(Debug, Clone, Copy)]
pub struct Exceeded {
    /// When trying again would likely succeed.
    pub retry_after: Duration,
}

/// One limiter: a key of one plugin.
pub struct Limiter {
    pub plugin: String,
    /// Fingerprint of the API key (never the key itself).
    pub key: String,
    pub limit: Limit,
    gcra: DefaultDirectRateLimiter,
    fifo: tokio::sync::Mutex<()>,
    paused_until: Mutex<Option<Instant>>,
    waiting: AtomicU64,
    last_remaining: Mutex<Option<u64>>,
}

impl Limiter {
    fn new(plugin: &str, key: &str, limit: Limit) -> Self {
        let rpm = limit.requests_per_minute.max(1);
        // burst + rate·60 s <= rpm keeps every one-minute window under the limit.
        let burst = (rpm / 60).max(1);
        let sustained = (rpm - burst).max(1);
        let period = Duration::from_secs_f64(60.0 / f64::from(sustained));
        let quota = Quota::with_period(period)
            .expect("period is positive")
            .allow_burst(NonZeroU32::new(burst).expect("burst >= 1"));
        Self {
            plugin: plugin.to_string(),
            key: key.to_string(),
            limit,
            gcra: RateLimiter::direct(quota),
            fifo: tokio::sync::Mutex::new(()),
            paused_until: Mutex::new(None),
            waiting: AtomicU64::new(0),
            last_remaining: Mutex::new(None),
        }
    }

    fn paused(&self) -> Option<Instant> {
        let paused = *self.paused_until.lock().unwrap_or_else(|e| e.into_inner());
        paused.filter(|until| *until > Instant::now())
    }

    /// Stops every call on this key until `until` (later pauses win).
    pub fn pause_until(&self, until: Instant) {
        let mut paused = self.paused_until.lock().unwrap_or_else(|e| e.into_inner());
        if paused.is_none_or(|p| p < until) {
            *paused = Some(until);
        }
    }

    /// Takes what the upstream said about its budget into account.
    pub fn observe(&self, remaining: Option<u64>, reset: Option<Duration>) {
        *self
            .last_remaining
            .lock()
            .unwrap_or_else(|e| e.into_inner()) = remaining;
        if remaining == Some(0)
            && let Some(reset) = reset
        {
            self.pause_until(Instant::now() + reset);
        }
    }

    /// Waits for this call's turn, at most `bound`. Cancel-safe: a waiter
    /// dropped in the queue leaves it (and the `queued` count) at once.
    pub async fn acquire(&self, bound: WaitBound) -> Result<(), Exceeded> {
        let deadline = Instant::now() + bound.0;
        let _queued = Queued::enter(&self.waiting);
        self.acquire_inner(deadline).await
    }

    async fn acquire_inner(&self, deadline: Instant) -> Result<(), Exceeded> {
        let exceeded = |extra: Duration| Exceeded {
            retry_after: extra.max(Duration::from_millis(100)),
        };
        let Ok(_turn) = tokio::time::timeout_at(deadline.into(), self.fifo.lock()).await else {
            return Err(exceeded(self.limit_period()));
        };
        loop {
            if let Some(until) = self.paused() {
                if until > deadline {
                    return Err(exceeded(until - Instant::now()));
                }
                tokio::time::sleep_until(until.into()).await;
                continue;
            }
            match self.gcra.check() {
                Ok(()) => return Ok(()),
                Err(not_until) => {
                    let wait = not_until.wait_time_from(DefaultClock::default().now());
                    if Instant::now() + wait > deadline {
                        return Err(exceeded(wait));
                    }
                    tokio::time::sleep(wait).await;
                }
            }
        }
    }

    /// Takes a turn now if one is free, without queueing (for the extra
    /// requests of a running call, such as polls): `Err(wait)` while the key
    /// is paused, others are queued, or the window is spent.
    pub fn try_acquire(&self) -> Result<(), Duration> {
        if let Some(until) = self.paused() {
            return Err(until - Instant::now());
        }
        // Queued calls go first: they waited longer.
        let Ok(_turn) = self.fifo.try_lock() else {
            return Err(Duration::from_millis(100));
        };
        self.gcra
            .check()
            .map_err(|not_until| not_until.wait_time_from(DefaultClock::default().now()))
    }

    fn limit_period(&self) -> Duration {
        Duration::from_secs_f64(60.0 / f64::from(self.limit.requests_per_minute.max(1)))
    }

    /// A status row.
    pub fn status(&self) -> LimiterStatus {
        let remaining_now = *self
            .last_remaining
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        LimiterStatus {
            plugin: self.plugin.clone(),
            key: self.key.clone(),
            requests_per_minute: self.limit.requests_per_minute,
            upstream_remaining: remaining_now,
            paused_for_ms: self
                .paused()
                .map(|until| (until - Instant::now()).as_millis() as u64),
            queued: self.waiting.load(Ordering::SeqCst),
        }
    }
}

/// Counts one call in the queue until dropped, however its wait ends.
struct Queued<'a>(&'a AtomicU64);

impl<'a> Queued<'a> {
    fn enter(count: &'a AtomicU64) -> Self {
        count.fetch_add(1, Ordering::SeqCst);
        Self(count)
    }
}

impl Drop for Queued<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::SeqCst);
    }
}

/// What `status` shows of one limiter.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct LimiterStatus {
    pub plugin: String,
    /// Fingerprint of the key.
    pub key: String,
    pub requests_per_minute: u32,
    /// What the upstream last reported as remaining, if it says.
    pub upstream_remaining: Option<u64>,
    /// Milliseconds until a 429 pause ends, if paused.
    pub paused_for_ms: Option<u64>,
    /// Calls waiting for their turn.
    pub queued: u64,
}

/// Identifies an API key without holding it: a SHA-256 of the whole key, so
/// two keys that merely end alike never share a limiter (the four-character
/// fingerprint shown to people is not an identity).
pub fn key_id(api_key: &str) -> String {
    use sha2::{Digest, Sha256};
    let digest = Sha256::digest(api_key.as_bytes());
    digest[..16].iter().map(|b| format!("{b:02x}")).collect()
}

/// A limiter's identity: plugin id and [`key_id`] (none: the plugin's own key).
type LimiterKey = (String, Option<String>);

/// All limiters of the daemon, by plugin and [`key_id`].
#[derive(Default)]
pub struct Limits {
    limiters: Mutex<HashMap<LimiterKey, Arc<Limiter>>>,
    overrides: HashMap<String, u32>,
}

impl Limits {
    /// Limits with overrides from config.toml, and from the environment over those.
    pub fn new(config_overrides: HashMap<String, u32>) -> Self {
        let mut overrides = config_overrides;
        if let Ok(spec) = std::env::var(RATE_LIMITS_ENV) {
            for part in spec.split(',') {
                if let Some((plugin, rpm)) = part.split_once('=')
                    && let Ok(rpm) = rpm.trim().parse::<u32>()
                    && rpm > 0
                {
                    overrides.insert(plugin.trim().to_string(), rpm);
                }
            }
        }
        Self {
            limiters: Mutex::new(HashMap::new()),
            overrides,
        }
    }

    /// The limiter of a call to `plugin` with `api_key`, at the plugin's
    /// declared limit unless overridden.
    pub fn for_plugin(
        &self,
        plugin: &crate::plugins::LoadedPlugin,
        api_key: Option<&str>,
    ) -> Arc<Limiter> {
        let declared = plugin
            .manifest
            .default_rate_limit
            .map(|l| l.requests_per_minute);
        self.limiter(&plugin.manifest.id, declared, api_key)
    }

    /// The limiter for `plugin` used with `api_key`.
    pub fn limiter(
        &self,
        plugin: &str,
        declared: Option<u32>,
        api_key: Option<&str>,
    ) -> Arc<Limiter> {
        let id = api_key.map(key_id);
        let key = api_key
            .map(fingerprint)
            .unwrap_or_else(|| "(plugin default)".into());
        let mut limiters = self.limiters.lock().unwrap_or_else(|e| e.into_inner());
        limiters
            .entry((plugin.to_string(), id))
            .or_insert_with(|| {
                let rpm = self
                    .overrides
                    .get(plugin)
                    .copied()
                    .or(declared)
                    .unwrap_or(FALLBACK_REQUESTS_PER_MINUTE);
                Arc::new(Limiter::new(
                    plugin,
                    &key,
                    Limit {
                        requests_per_minute: rpm,
                    },
                ))
            })
            .clone()
    }

    /// Status rows, one per limiter.
    pub fn status(&self) -> Vec<LimiterStatus> {
        let limiters = self.limiters.lock().unwrap_or_else(|e| e.into_inner());
        let mut rows: Vec<LimiterStatus> = limiters.values().map(|l| l.status()).collect();
        rows.sort_by(|a, b| (&a.plugin, &a.key).cmp(&(&b.plugin, &b.key)));
        rows
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_that_end_alike_get_their_own_limiters() {
        let limits = Limits::new(HashMap::new());
        let a = limits.limiter("p", None, Some("first-key-1234"));
        let b = limits.limiter("p", None, Some("other-key-1234"));
        assert_eq!(a.key, b.key, "same fingerprint shown");
        assert!(!Arc::ptr_eq(&a, &b), "but separate limiters");
        a.pause_until(Instant::now() + Duration::from_secs(60));
        assert!(b.status().paused_for_ms.is_none());
        let again = limits.limiter("p", None, Some("first-key-1234"));
        assert!(Arc::ptr_eq(&a, &again));
    }

    #[tokio::test]
    async fn a_waiter_dropped_in_the_queue_leaves_the_count() {
        let limiter = Arc::new(Limiter::new(
            "p",
            "k",
            Limit {
                requests_per_minute: 60,
            },
        ));
        // The burst of 1 goes through; the next waits about a second.
        limiter.acquire(WaitBound(Duration::ZERO)).await.unwrap();
        let waiting = tokio::spawn({
            let limiter = limiter.clone();
            async move { limiter.acquire(WaitBound(Duration::from_secs(30))).await }
        });
        while limiter.status().queued == 0 {
            tokio::task::yield_now().await;
        }
        waiting.abort();
        let _ = waiting.await;
        assert_eq!(limiter.status().queued, 0);
    }

    #[tokio::test]
    async fn no_minute_window_exceeds_the_limit() {
        let limiter = Limiter::new(
            "p",
            "k",
            Limit {
                requests_per_minute: 600,
            },
        );
        let start = Instant::now();
        let mut granted = 0;
        while start.elapsed() < Duration::from_millis(1500) {
            if limiter
                .acquire(WaitBound(Duration::from_millis(1)))
                .await
                .is_ok()
            {
                granted += 1;
            }
        }
        // 600/min is 10/s: burst 10 then ~9.8/s, so 1.5 s allows about 25.
        assert!(granted <= 26, "granted {granted}");
        assert!(
            granted >= 10,
            "the burst must be granted at once: {granted}"
        );
    }

    #[tokio::test]
    async fn pause_blocks_until_it_ends_or_fails_fast_past_the_bound() {
        let limiter = Limiter::new(
            "p",
            "k",
            Limit {
                requests_per_minute: 6000,
            },
        );
        limiter.pause_until(Instant::now() + Duration::from_secs(10));
        let err = limiter
            .acquire(WaitBound(Duration::from_millis(50)))
            .await
            .unwrap_err();
        assert!(err.retry_after > Duration::from_secs(5));
        limiter.pause_until(Instant::now());
        let limiter = Limiter::new(
            "p",
            "k",
            Limit {
                requests_per_minute: 6000,
            },
        );
        limiter.pause_until(Instant::now() + Duration::from_millis(100));
        let started = Instant::now();
        limiter
            .acquire(WaitBound(Duration::from_secs(5)))
            .await
            .unwrap();
        assert!(started.elapsed() >= Duration::from_millis(90));
    }
}
