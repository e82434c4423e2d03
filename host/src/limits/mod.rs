//! Shared upstream rate limits: one limiter per (plugin, API key), used by
//! every session of the daemon, so many agents together stay under the
//! upstream's limit instead of each discovering it with 429s.
//!
//! A limiter mirrors the upstream's window: a log of the requests that went
//! out in the last window (a minute), so no call waits while fewer than the
//! limit went out, and no window ever sees more than the limit. What the
//! upstream reports (`x-ratelimit-remaining-requests` and its reset) is the
//! truth for the key until that reset: other machines may spend the same
//! budget. A 429 pauses everyone using the key. Waiters are served in
//! arrival order (a FIFO mutex in front of the log), so one busy session
//! cannot starve the others.

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::config::credentials::fingerprint;
use crate::config::file::LimitsSection;

pub mod team;
use team::{Team, Turn};

/// Environment override: `plugin=requests_per_minute[,plugin=…]`.
pub const RATE_LIMITS_ENV: &str = "POE_CODE_RATE_LIMITS";
/// Limit used when a plugin declares none.
pub const FALLBACK_REQUESTS_PER_MINUTE: u32 = 500;
/// Environment override of the window limits count in (seconds; default
/// 60, Poe's), for upstreams that count another window and for tests.
pub const RATE_WINDOW_ENV: &str = "POE_CODE_RATE_WINDOW_SECS";
/// The window of a requests-per-minute limit.
pub const MINUTE: Duration = Duration::from_secs(60);

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
    /// The window the limit counts in.
    window: Duration,
    /// When each request of the current window went out, oldest first.
    sent: Mutex<Window>,
    fifo: tokio::sync::Mutex<()>,
    paused_until: Mutex<Option<Instant>>,
    waiting: AtomicU64,
    last_remaining: Mutex<Option<u64>>,
    /// The team-wide store, and this limiter's name in it.
    team: Option<(Arc<Team>, String)>,
}

/// The requests of the current window, and the upstream's word on them.
#[derive(Default)]
struct Window {
    sent: VecDeque<Instant>,
    upstream: Option<Reported>,
}

/// What the upstream last said of the key's budget.
struct Reported {
    remaining: u64,
    reset_at: Instant,
    /// Requests sent since it said so.
    spent: u64,
}

/// How long a request stays in the window: a little over the window, as
/// the upstream counts arrivals, which trail our sends by a jitter.
fn span(window: Duration) -> Duration {
    window + (window / 50).max(Duration::from_millis(250))
}

impl Window {
    /// Takes a turn at `now` if the window has one; otherwise when to ask
    /// again.
    fn take(&mut self, now: Instant, limit: usize, window: Duration) -> Result<(), Instant> {
        let span = self.trim(now, window);
        let mut next = self.upstream_next(now);
        if self.sent.len() >= limit {
            let full = self.sent.front().map(|t| *t + span);
            next = next.max(full);
        }
        if let Some(next) = next {
            return Err(next.max(now + Duration::from_millis(1)));
        }
        self.record(now);
        Ok(())
    }

    /// Drops the requests that left the window by `now`; returns how long a
    /// request stays in it.
    fn trim(&mut self, now: Instant, window: Duration) -> Duration {
        let span = span(window);
        while self
            .sent
            .front()
            .is_some_and(|t| now.duration_since(*t) >= span)
        {
            self.sent.pop_front();
        }
        span
    }

    /// When the upstream's word allows the next request, if it does not now.
    fn upstream_next(&mut self, now: Instant) -> Option<Instant> {
        if self.upstream.as_ref().is_some_and(|r| r.reset_at <= now) {
            self.upstream = None;
        }
        self.upstream
            .as_ref()
            .filter(|r| r.spent >= r.remaining)
            .map(|r| r.reset_at)
    }

    /// Notes a request sent at `now`.
    fn record(&mut self, now: Instant) {
        self.sent.push_back(now);
        if let Some(reported) = &mut self.upstream {
            reported.spent += 1;
        }
    }
}

impl Limiter {
    fn new(plugin: &str, key: &str, limit: Limit, window: Duration) -> Self {
        Self {
            plugin: plugin.to_string(),
            key: key.to_string(),
            limit,
            window,
            sent: Mutex::new(Window::default()),
            fifo: tokio::sync::Mutex::new(()),
            paused_until: Mutex::new(None),
            waiting: AtomicU64::new(0),
            last_remaining: Mutex::new(None),
            team: None,
        }
    }

    fn paused(&self) -> Option<Instant> {
        let paused = *self.paused_until.lock().unwrap_or_else(|e| e.into_inner());
        paused.filter(|until| *until > Instant::now())
    }

    /// Stops every call on this key until `until` (later pauses win), on
    /// every daemon of the team too.
    pub fn pause_until(&self, until: Instant) {
        {
            let mut paused = self.paused_until.lock().unwrap_or_else(|e| e.into_inner());
            if paused.is_none_or(|p| p < until) {
                *paused = Some(until);
            }
        }
        if let Some((team, id)) = &self.team {
            let (shared, id) = (team.clone(), id.clone());
            let length = until.saturating_duration_since(Instant::now());
            team.spawn(async move { shared.pause(&id, length).await });
        }
    }

    /// Takes what the upstream said about its budget as the truth until its
    /// reset (it counts every machine using the key; we count only ours).
    pub fn observe(&self, remaining: Option<u64>, reset: Option<Duration>) {
        *self
            .last_remaining
            .lock()
            .unwrap_or_else(|e| e.into_inner()) = remaining;
        if let (Some(remaining), Some(reset)) = (remaining, reset) {
            self.sent.lock().unwrap_or_else(|e| e.into_inner()).upstream = Some(Reported {
                remaining,
                reset_at: Instant::now() + reset,
                spent: 0,
            });
        }
    }

    /// Takes a turn from the team's window in Redis (the upstream's word,
    /// which counts every machine, still comes first); `None` when there is
    /// no team or Redis cannot say.
    async fn take_team(&self) -> Option<Result<(), Instant>> {
        let (team, id) = self.team.as_ref()?;
        if let Some(next) = self.window().upstream_next(Instant::now()) {
            return Some(Err(next));
        }
        let limit = self.limit.requests_per_minute.max(1);
        match team.take(id, limit, span(self.window)).await? {
            Turn::Go => {
                // Kept locally too, so a fall back to local limits starts
                // from what this daemon sent.
                let now = Instant::now();
                let mut window = self.window();
                window.trim(now, self.window);
                window.record(now);
                Some(Ok(()))
            }
            Turn::Wait(wait) => Some(Err(Instant::now() + wait)),
        }
    }

    fn window(&self) -> std::sync::MutexGuard<'_, Window> {
        self.sent.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Takes a turn now if the window has one.
    fn take(&self) -> Result<(), Instant> {
        let limit = self.limit.requests_per_minute.max(1) as usize;
        self.sent
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .take(Instant::now(), limit, self.window)
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
            let taken = match self.take_team().await {
                Some(taken) => taken,
                None => self.take(),
            };
            match taken {
                Ok(()) => return Ok(()),
                Err(next) => {
                    if next > deadline {
                        return Err(exceeded(next - Instant::now()));
                    }
                    tokio::time::sleep_until(next.into()).await;
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
        // Decided locally (a plugin thread cannot wait for Redis), then
        // counted in the team's window.
        self.take()
            .map_err(|next| next.saturating_duration_since(Instant::now()))?;
        if let Some((team, id)) = &self.team {
            let (shared, id, span) = (team.clone(), id.clone(), span(self.window));
            team.spawn(async move { shared.record(&id, span).await });
        }
        Ok(())
    }

    fn limit_period(&self) -> Duration {
        self.window / self.limit.requests_per_minute.max(1)
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
pub struct Limits {
    limiters: Mutex<HashMap<LimiterKey, Arc<Limiter>>>,
    overrides: HashMap<String, u32>,
    window: Duration,
    /// `[limits] backend`, when set and valid.
    team: Option<Arc<Team>>,
    /// Why `backend` is not used, when it is set but invalid.
    team_error: Option<String>,
}

impl Limits {
    /// Limits from config.toml's `[limits]`, and the environment over those.
    /// With a `backend`, it must run inside tokio.
    pub fn new(section: LimitsSection) -> Self {
        let (team, team_error) = match section.backend.as_deref().map(Team::new) {
            None => (None, None),
            Some(Ok(team)) => (Some(Arc::new(team)), None),
            Some(Err(e)) => {
                tracing::warn!(error = %e, "limits are this daemon's own");
                (None, Some(e))
            }
        };
        let mut overrides = section.per_plugin;
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
        let window = std::env::var(RATE_WINDOW_ENV)
            .ok()
            .and_then(|s| s.trim().parse::<f64>().ok())
            .filter(|s| s.is_finite() && *s > 0.0)
            .map_or(MINUTE, Duration::from_secs_f64);
        Self {
            limiters: Mutex::new(HashMap::new()),
            overrides,
            window,
            team,
            team_error,
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
        let team_id = format!("{plugin}:{}", id.as_deref().unwrap_or("plugin-default"));
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
                let mut limiter = Limiter::new(
                    plugin,
                    &key,
                    Limit {
                        requests_per_minute: rpm,
                    },
                    self.window,
                );
                limiter.team = self.team.clone().map(|team| (team, team_id));
                Arc::new(limiter)
            })
            .clone()
    }

    /// Where the limits are kept, when it is not this daemon alone.
    pub fn backend_status(&self) -> Option<team::TeamStatus> {
        match (&self.team, &self.team_error) {
            (Some(team), _) => Some(team.status()),
            (None, Some(error)) => Some(team::TeamStatus {
                url: "(invalid)".into(),
                ok: false,
                error: Some(error.clone()),
            }),
            (None, None) => None,
        }
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

    fn limiter(per_window: u32, window: Duration) -> Limiter {
        Limiter::new(
            "p",
            "k",
            Limit {
                requests_per_minute: per_window,
            },
            window,
        )
    }

    #[test]
    fn keys_that_end_alike_get_their_own_limiters() {
        let limits = Limits::new(LimitsSection::default());
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
        let limiter = Arc::new(limiter(1, MINUTE));
        // The window's one request goes through; the next waits a minute.
        limiter.acquire(WaitBound(Duration::ZERO)).await.unwrap();
        let waiting = tokio::spawn({
            let limiter = limiter.clone();
            async move { limiter.acquire(WaitBound(Duration::from_secs(120))).await }
        });
        while limiter.status().queued == 0 {
            tokio::task::yield_now().await;
        }
        waiting.abort();
        let _ = waiting.await;
        assert_eq!(limiter.status().queued, 0);
    }

    #[test]
    fn the_whole_limit_goes_at_once_and_the_next_waits_for_the_window() {
        let window = Duration::from_secs(60);
        let mut log = Window::default();
        let start = Instant::now();
        for _ in 0..500 {
            log.take(start, 500, window)
                .expect("no wait within the limit");
        }
        let next = log.take(start, 500, window).unwrap_err();
        assert!(next >= start + window, "the 501st waits for the window");
        assert!(next <= start + window + window / 20);
        // When the burst leaves the window, the whole limit is free again.
        for _ in 0..500 {
            log.take(next, 500, window).expect("a new window");
        }
        assert!(log.take(next, 500, window).is_err());
        // A short window still leaves at least 250 ms for arrival jitter.
        let short = Duration::from_secs(2);
        let mut short_log = Window::default();
        short_log.take(start, 1, short).unwrap();
        let again = short_log.take(start, 1, short).unwrap_err();
        assert!(again >= start + short + Duration::from_millis(250));
    }

    #[test]
    fn no_window_ever_holds_more_than_the_limit() {
        let window = Duration::from_millis(1000);
        let mut log = Window::default();
        let start = Instant::now();
        let mut granted = Vec::new();
        // Ask every 7 ms for 5 windows.
        for step in 0..715u32 {
            let now = start + Duration::from_millis(7) * step;
            if log.take(now, 40, window).is_ok() {
                granted.push(now);
            }
        }
        for (i, t) in granted.iter().enumerate() {
            let in_window = granted[i..]
                .iter()
                .take_while(|u| u.duration_since(*t) < window)
                .count();
            assert!(
                in_window <= 40,
                "{in_window} in the window from request {i}"
            );
        }
        assert!(granted.len() >= 4 * 40, "{} granted", granted.len());
    }

    #[test]
    fn the_upstreams_word_is_the_truth_until_its_reset() {
        let window = Duration::from_secs(60);
        let mut log = Window::default();
        let now = Instant::now();
        log.take(now, 500, window).unwrap();
        // Other machines spent the key's budget: 2 left for 10 s.
        log.upstream = Some(Reported {
            remaining: 2,
            reset_at: now + Duration::from_secs(10),
            spent: 0,
        });
        log.take(now, 500, window).unwrap();
        log.take(now, 500, window).unwrap();
        let next = log.take(now, 500, window).unwrap_err();
        assert_eq!(next, now + Duration::from_secs(10));
        // After the reset our own window counts again.
        assert!(log.take(next, 500, window).is_ok());
    }

    #[tokio::test]
    async fn a_sequential_loop_under_the_limit_never_waits() {
        let limiter = limiter(500, MINUTE);
        // A bound of zero fails any call that would have to wait.
        for _ in 0..20 {
            limiter.acquire(WaitBound(Duration::ZERO)).await.unwrap();
        }
        assert!(limiter.try_acquire().is_ok());
    }

    #[tokio::test]
    async fn pause_blocks_until_it_ends_or_fails_fast_past_the_bound() {
        let limiter_a = limiter(6000, MINUTE);
        limiter_a.pause_until(Instant::now() + Duration::from_secs(10));
        let err = limiter_a
            .acquire(WaitBound(Duration::from_millis(50)))
            .await
            .unwrap_err();
        assert!(err.retry_after > Duration::from_secs(5));
        let limiter_b = limiter(6000, MINUTE);
        limiter_b.pause_until(Instant::now() + Duration::from_millis(100));
        let started = Instant::now();
        limiter_b
            .acquire(WaitBound(Duration::from_secs(5)))
            .await
            .unwrap();
        assert!(started.elapsed() >= Duration::from_millis(90));
    }
}
