//! Team-wide limits (`[limits] backend = "redis://…"`): each key's window and
//! its 429 pause live in Redis, so any number of daemons on any number of
//! machines stay under one upstream limit together.
//!
//! One server-side script takes a turn atomically (trim the key's sorted set
//! of send times to the window, count, add), timed by Redis's own clock so
//! machines whose clocks disagree still share one window. Redis keys hold a
//! hash of the API key ([`super::key_id`]), never the key.
//!
//! Redis never fails a call: when it cannot answer within [`ANSWER_WITHIN`],
//! the limiter decides alone (its own log of this daemon's sends, kept in
//! every mode) and asks Redis again only after [`RETRY_AFTER`], one warning
//! goes to the log and to `status`, and the connection comes back by itself
//! (redis's `ConnectionManager`).

use std::sync::Mutex;
use std::time::Duration;

use redis::aio::{ConnectionManager, ConnectionManagerConfig};

/// How long a call waits for Redis before deciding locally.
pub const ANSWER_WITHIN: Duration = Duration::from_millis(500);
/// After Redis failed, how long calls decide locally before one asks it
/// again (so an unreachable host costs one call a wait, not every call).
pub const RETRY_AFTER: Duration = Duration::from_secs(2);

/// Takes a turn. KEYS: the window (a sorted set), the pause. ARGV: the
/// limit, the window in µs, a unique member. Returns 0 (go) or the
/// milliseconds to wait.
const TAKE: &str = r"
local pause = redis.call('PTTL', KEYS[2])
if pause > 0 then return pause end
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local window = tonumber(ARGV[2])
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now - window)
if redis.call('ZCARD', KEYS[1]) < tonumber(ARGV[1]) then
  redis.call('ZADD', KEYS[1], now, ARGV[3])
  redis.call('PEXPIRE', KEYS[1], math.ceil(window / 1000) + 1000)
  return 0
end
local oldest = redis.call('ZRANGE', KEYS[1], 0, 0, 'WITHSCORES')
return math.max(1, math.ceil((tonumber(oldest[2]) + window - now) / 1000))
";

/// Counts a send that did not ask first (a running call's extra request).
/// KEYS: the window. ARGV: the window in µs, a unique member.
const RECORD: &str = r"
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
redis.call('ZADD', KEYS[1], now, ARGV[2])
redis.call('PEXPIRE', KEYS[1], math.ceil(tonumber(ARGV[1]) / 1000) + 1000)
return 0
";

/// Pauses a key (a later end wins). KEYS: the pause. ARGV: milliseconds.
const PAUSE: &str = r"
if redis.call('PTTL', KEYS[1]) < tonumber(ARGV[1]) then
  redis.call('SET', KEYS[1], '1', 'PX', ARGV[1])
end
return 0
";

/// What Redis said about a turn.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Turn {
    Go,
    Wait(Duration),
}

/// The shared store of the limits.
pub struct Team {
    /// The URL without its password, for logs and `status`.
    shown: String,
    connection: ConnectionManager,
    take: redis::Script,
    record: redis::Script,
    pause: redis::Script,
    /// Why Redis is not being used right now, if it is not, and when to
    /// ask it again.
    trouble: Mutex<Option<(String, std::time::Instant)>>,
    /// The daemon's runtime, for work started on a plugin's thread.
    runtime: tokio::runtime::Handle,
}

/// What `status` shows of the backend.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct TeamStatus {
    /// `redis://host:port/db`, without credentials.
    pub url: String,
    /// Whether the last request to Redis succeeded.
    pub ok: bool,
    /// Why the limits are local for now.
    pub error: Option<String>,
}

impl Team {
    /// A store at `url`; connects on first use, from the current tokio
    /// runtime.
    pub fn new(url: &str) -> Result<Self, String> {
        let runtime = tokio::runtime::Handle::try_current()
            .map_err(|_| "limits.backend: no async runtime to connect from".to_string())?;
        let client = redis::Client::open(url).map_err(|e| format!("limits.backend: {e}"))?;
        let info = client.get_connection_info();
        let shown = format!("redis://{}/{}", info.addr(), info.redis_settings().db());
        // Longer than our own cap, which thus always ends the wait first.
        let config = ConnectionManagerConfig::new()
            .set_connection_timeout(Some(ANSWER_WITHIN * 2))
            .set_response_timeout(Some(ANSWER_WITHIN * 2))
            .set_number_of_retries(1)
            .set_max_delay(Duration::from_secs(2));
        let connection = ConnectionManager::new_lazy_with_config(client, config)
            .map_err(|e| format!("limits.backend: {e}"))?;
        Ok(Self {
            shown,
            connection,
            take: redis::Script::new(TAKE),
            record: redis::Script::new(RECORD),
            pause: redis::Script::new(PAUSE),
            trouble: Mutex::new(None),
            runtime,
        })
    }

    /// Runs `work` on the daemon's runtime, from any thread.
    pub fn spawn(&self, work: impl std::future::Future<Output = ()> + Send + 'static) {
        self.runtime.spawn(work);
    }

    /// Takes a turn for `id` (`plugin:key hash`) under `limit` per `window`;
    /// `None` when Redis cannot say (decide locally).
    pub async fn take(&self, id: &str, limit: u32, window: Duration) -> Option<Turn> {
        let mut invocation = self.take.prepare_invoke();
        invocation
            .key(window_key(id))
            .key(pause_key(id))
            .arg(limit)
            .arg(window.as_micros() as u64)
            .arg(uuid::Uuid::new_v4().to_string());
        match self.run(invocation).await? {
            0 => Some(Turn::Go),
            ms => Some(Turn::Wait(Duration::from_millis(ms))),
        }
    }

    /// Counts a send of `id` that took its turn locally.
    pub async fn record(&self, id: &str, window: Duration) {
        let mut invocation = self.record.prepare_invoke();
        invocation
            .key(window_key(id))
            .arg(window.as_micros() as u64)
            .arg(uuid::Uuid::new_v4().to_string());
        self.run(invocation).await;
    }

    /// Pauses `id` for everyone for `length`.
    pub async fn pause(&self, id: &str, length: Duration) {
        let mut invocation = self.pause.prepare_invoke();
        invocation
            .key(pause_key(id))
            .arg(length.as_millis().max(1) as u64);
        self.run(invocation).await;
    }

    /// Runs one script within [`ANSWER_WITHIN`], unless Redis is resting;
    /// `None` when it gave no answer.
    async fn run(&self, invocation: redis::ScriptInvocation<'_>) -> Option<u64> {
        if self.resting() {
            return None;
        }
        let mut connection = self.connection.clone();
        let answer = tokio::time::timeout(
            ANSWER_WITHIN,
            invocation.invoke_async::<u64>(&mut connection),
        )
        .await;
        self.settle(answer)
    }

    /// Whether Redis failed lately and is not to be asked yet.
    fn resting(&self) -> bool {
        let trouble = self.trouble.lock().unwrap_or_else(|e| e.into_inner());
        trouble
            .as_ref()
            .is_some_and(|(_, retry_at)| std::time::Instant::now() < *retry_at)
    }

    /// Notes whether Redis answered, logging each change once.
    fn settle(
        &self,
        answer: Result<redis::RedisResult<u64>, tokio::time::error::Elapsed>,
    ) -> Option<u64> {
        let mut trouble = self.trouble.lock().unwrap_or_else(|e| e.into_inner());
        match answer {
            Ok(Ok(value)) => {
                if trouble.take().is_some() {
                    tracing::info!(backend = %self.shown, "Redis answers again; limits are team-wide");
                }
                Some(value)
            }
            Ok(Err(e)) => {
                self.note(&mut trouble, poe_plugin_api::text::one_line(&e.to_string()));
                None
            }
            Err(_) => {
                self.note(
                    &mut trouble,
                    format!("no answer within {} ms", ANSWER_WITHIN.as_millis()),
                );
                None
            }
        }
    }

    fn note(&self, trouble: &mut Option<(String, std::time::Instant)>, why: String) {
        if trouble.is_none() {
            tracing::warn!(backend = %self.shown, error = %why, "Redis unreachable; limits are this daemon's own until it is back");
        }
        *trouble = Some((why, std::time::Instant::now() + RETRY_AFTER));
    }

    /// A status row.
    pub fn status(&self) -> TeamStatus {
        let trouble = self.trouble.lock().unwrap_or_else(|e| e.into_inner());
        TeamStatus {
            url: self.shown.clone(),
            ok: trouble.is_none(),
            error: trouble.as_ref().map(|(why, _)| why.clone()),
        }
    }
}

fn window_key(id: &str) -> String {
    format!("poe-code:limits:{id}:window")
}

fn pause_key(id: &str) -> String {
    format!("poe-code:limits:{id}:pause")
}
