//! State shared by everything in one daemon: plugins, sessions, counters and
//! the shutdown signal.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio_util::sync::CancellationToken;

use crate::chat::Conversations;
use crate::config::credentials::fingerprint;
use crate::config::{Paths, Settings};
use crate::ipc::Hello;
use crate::ipc::status::{JobCounts, SessionStatus, Status, TokenUsage};
use crate::jobs::Jobs;
use crate::limits::Limits;
use crate::models::Models;
use crate::plugins::Registry;

/// The daemon's shared state.
pub struct DaemonState {
    pub paths: Paths,
    pub settings: Settings,
    /// Aliases, default models, `auto` and Poe's model catalog.
    pub models: Models,
    /// Conversations of the `chat` tool and the turns running in them.
    pub conversations: Conversations,
    /// The model calls of each running `consensus`.
    pub consensus: crate::consensus::Runs,
    /// AI titles and summaries of `chat` and `consensus` jobs, when on.
    pub summaries: crate::summaries::Summaries,
    pub registry: Arc<Registry>,
    pub jobs: Jobs,
    pub limits: Limits,
    /// Daily budgets of Poe points and the day's points.
    pub budget: super::budget::Budget,
    /// Cancelled when the daemon shuts down; sessions use child tokens.
    pub shutdown: CancellationToken,
    pub idle_timeout: Option<Duration>,
    /// Why config.toml was ignored, if it was.
    pub config_error: Option<String>,
    /// Why the HTTP listener `[http]` asks for is not listening, if it is not.
    pub http_error: Option<String>,
    started: Instant,
    sessions: Mutex<BTreeMap<u64, Arc<SessionInfo>>>,
    next_session: AtomicU64,
    calls_in_flight: AtomicU64,
    calls_total: AtomicU64,
    last_activity: Mutex<Instant>,
    /// Per token use of the HTTP listener, by token name.
    token_usage: Mutex<BTreeMap<String, (TokenUsage, Instant)>>,
    /// The HTTP listener's report, once it listens.
    pub http: std::sync::OnceLock<crate::http::Listening>,
}

/// How a session reaches the daemon.
#[derive(Debug, Clone)]
pub enum Peer {
    /// A shim on the Unix socket.
    Shim { pid: u32 },
    /// The HTTP listener, authenticated by this token (none when the
    /// listener requires no token).
    Http { token: Option<TokenRef> },
}

/// The token an HTTP caller presented: its id and name, never the secret.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TokenRef {
    pub id: String,
    pub name: String,
}

/// Who is on the other end of one MCP session.
pub struct SessionInfo {
    pub id: u64,
    pub peer: Peer,
    pub cwd: Option<String>,
    /// The API key this session's calls use (from the shim's hello).
    pub api_key: Option<String>,
    pub connected: Instant,
    pub client: Mutex<ClientIdentity>,
    pub calls: AtomicU64,
}

/// What the client said about itself.
#[derive(Debug, Clone, Default)]
pub struct ClientIdentity {
    pub name: Option<String>,
    pub version: Option<String>,
    pub protocol_version: Option<String>,
}

impl SessionInfo {
    /// Records the client's identity (from `initialize` or request metadata).
    pub fn set_client(&self, name: &str, version: &str, protocol_version: Option<String>) {
        let mut client = self.client.lock().unwrap_or_else(|e| e.into_inner());
        client.name = Some(name.to_string());
        client.version = Some(version.to_string());
        if protocol_version.is_some() {
            client.protocol_version = protocol_version;
        }
    }
}

/// Counts a running job until dropped.
pub struct JobGuard<'a>(&'a DaemonState);

impl Drop for JobGuard<'_> {
    fn drop(&mut self) {
        self.0.calls_in_flight.fetch_sub(1, Ordering::SeqCst);
        self.0.touch();
    }
}

/// What [`DaemonState::new`] is built from.
pub struct Parts {
    pub paths: Paths,
    pub settings: Settings,
    pub models: Models,
    pub registry: Arc<Registry>,
    pub jobs: Jobs,
    pub limits: Limits,
    /// Exit after this long without sessions or calls.
    pub idle_timeout: Option<Duration>,
    /// Why config.toml was ignored, for `status`.
    pub config_error: Option<String>,
    /// Why the HTTP listener is not listening, for `status`.
    pub http_error: Option<String>,
}

impl DaemonState {
    /// Fresh state around a loaded registry and an opened job table.
    pub fn new(parts: Parts) -> Self {
        let Parts {
            paths,
            settings,
            models,
            registry,
            jobs,
            limits,
            idle_timeout,
            config_error,
            http_error,
        } = parts;
        Self {
            paths,
            conversations: Conversations::new(jobs.store(), settings.chat.retention),
            consensus: Default::default(),
            summaries: crate::summaries::Summaries::new(settings.summarization.clone()),
            budget: super::budget::Budget::new(settings.budget.clone()),
            settings,
            models,
            registry,
            jobs,
            limits,
            shutdown: CancellationToken::new(),
            idle_timeout,
            config_error,
            http_error,
            started: Instant::now(),
            sessions: Mutex::new(BTreeMap::new()),
            next_session: AtomicU64::new(1),
            calls_in_flight: AtomicU64::new(0),
            calls_total: AtomicU64::new(0),
            last_activity: Mutex::new(Instant::now()),
            token_usage: Mutex::new(BTreeMap::new()),
            http: std::sync::OnceLock::new(),
        }
    }

    /// Registers a new shim session from its hello.
    pub fn open_session(&self, hello: &Hello) -> Arc<SessionInfo> {
        self.register(
            Peer::Shim { pid: hello.pid },
            hello.cwd.clone(),
            hello.api_key.clone(),
        )
    }

    /// Registers a session of the HTTP listener (it has no working directory:
    /// files come only from `[chat] roots`).
    pub fn open_http_session(
        &self,
        token: Option<TokenRef>,
        api_key: Option<String>,
    ) -> Arc<SessionInfo> {
        self.register(Peer::Http { token }, None, api_key)
    }

    fn register(
        &self,
        peer: Peer,
        cwd: Option<String>,
        api_key: Option<String>,
    ) -> Arc<SessionInfo> {
        let info = Arc::new(SessionInfo {
            id: self.next_session.fetch_add(1, Ordering::Relaxed),
            peer,
            cwd,
            api_key,
            connected: Instant::now(),
            client: Mutex::new(ClientIdentity::default()),
            calls: AtomicU64::new(0),
        });
        self.sessions
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(info.id, info.clone());
        self.touch();
        info
    }

    /// Forgets a session that disconnected.
    pub fn close_session(&self, id: u64) {
        self.sessions
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(&id);
        self.touch();
    }

    /// Counts a tool call of `session`.
    pub fn count_call(&self, session: &SessionInfo) {
        self.calls_total.fetch_add(1, Ordering::Relaxed);
        session.calls.fetch_add(1, Ordering::Relaxed);
        if let Peer::Http { token: Some(token) } = &session.peer {
            self.count_token(&token.name, true);
        }
        self.touch();
    }

    /// Counts a model call made outside any MCP session (the OpenAI API).
    pub fn count_http_call(&self, token: Option<&TokenRef>) {
        self.calls_total.fetch_add(1, Ordering::Relaxed);
        if let Some(token) = token {
            self.count_token(&token.name, true);
        }
        self.touch();
    }

    /// Counts an HTTP request (`call: false`) or a model call made under a
    /// token.
    pub fn count_token(&self, name: &str, call: bool) {
        let mut usage = self.token_usage.lock().unwrap_or_else(|e| e.into_inner());
        let (entry, last) = usage.entry(name.to_string()).or_insert_with(|| {
            (
                TokenUsage {
                    name: name.to_string(),
                    ..Default::default()
                },
                Instant::now(),
            )
        });
        if call {
            entry.calls += 1;
        } else {
            entry.requests += 1;
        }
        *last = Instant::now();
    }

    /// Marks the start of a job; it counts as running until the guard drops.
    pub fn begin_job(&self) -> JobGuard<'_> {
        self.calls_in_flight.fetch_add(1, Ordering::SeqCst);
        JobGuard(self)
    }

    fn touch(&self) {
        *self.last_activity.lock().unwrap_or_else(|e| e.into_inner()) = Instant::now();
    }

    /// True when the daemon has had nothing to do for its idle timeout.
    pub fn is_idle_expired(&self) -> bool {
        let Some(timeout) = self.idle_timeout else {
            return false;
        };
        let sessions = self
            .sessions
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .len();
        // An HTTP listener serves clients that start nothing: it keeps the
        // daemon up.
        let busy = sessions > 0
            || self.calls_in_flight.load(Ordering::SeqCst) > 0
            || self.http.get().is_some();
        let quiet_for = self
            .last_activity
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .elapsed();
        !busy && quiet_for >= timeout
    }

    /// Calls started since the daemon started.
    pub fn calls_total(&self) -> u64 {
        self.calls_total.load(Ordering::Relaxed)
    }

    /// The client of session `id` (its `clientInfo` name and version; for
    /// an HTTP session without one, its token's name), for the ledger.
    pub fn client_of(&self, id: u64) -> (Option<String>, Option<String>) {
        let sessions = self.sessions.lock().unwrap_or_else(|e| e.into_inner());
        let Some(session) = sessions.get(&id) else {
            return (None, None);
        };
        let client = session
            .client
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone();
        let name = client.name.or_else(|| match &session.peer {
            Peer::Http { token } => token.as_ref().map(|t| format!("token:{}", t.name)),
            Peer::Shim { .. } => None,
        });
        (name, client.version)
    }

    /// The report `poe-coded status` prints.
    pub fn status(&self) -> Status {
        let (plugins, plugin_errors, libraries_mapped) = self.registry.status();
        let plugins_empty = plugins.is_empty();
        let sessions = self
            .sessions
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .values()
            .map(|s| {
                let client = s.client.lock().unwrap_or_else(|e| e.into_inner()).clone();
                let (transport, shim_pid, token) = match &s.peer {
                    Peer::Shim { pid } => ("stdio", *pid, None),
                    Peer::Http { token } => ("http", 0, token.as_ref().map(|t| t.name.clone())),
                };
                SessionStatus {
                    id: s.id,
                    client_name: client.name,
                    client_version: client.version,
                    protocol_version: client.protocol_version,
                    shim_pid,
                    transport: transport.into(),
                    token,
                    cwd: s.cwd.clone(),
                    connected_secs: s.connected.elapsed().as_secs(),
                    calls: s.calls.load(Ordering::Relaxed),
                    api_key: s.api_key.as_deref().map(fingerprint),
                }
            })
            .collect();
        Status {
            pid: std::process::id(),
            version: crate::VERSION.to_string(),
            uptime_secs: self.started.elapsed().as_secs(),
            socket: self.paths.socket().display().to_string(),
            state_dir: self.paths.home.display().to_string(),
            idle_timeout_secs: self.idle_timeout.map(|d| d.as_secs()),
            plugins,
            plugin_errors,
            libraries_mapped,
            sessions,
            calls_in_flight: self.calls_in_flight.load(Ordering::SeqCst),
            calls_total: self.calls_total.load(Ordering::Relaxed),
            jobs: {
                let counts = self.jobs.counts();
                JobCounts {
                    running: counts.running,
                    completed: counts.completed,
                    failed: counts.failed,
                    cancelled: counts.cancelled,
                }
            },
            store: self.jobs.store_path(),
            store_error: self.jobs.store_error().map(str::to_string),
            limiters: self.limits.status(),
            limits_backend: self.limits.backend_status(),
            config_error: self
                .config_error
                .clone()
                .or_else(|| self.registry.config_error()),
            plugins_hint: plugins_empty.then(|| self.registry.none_loaded_hint()),
            plugin_dirs: self.registry.dir_status(),
            http_error: self.http_error.clone(),
            // The newest requests (the writer's last ~20 ms) may be missing.
            usage_today: self.jobs.store().and_then(|store| {
                store
                    .usage_today(crate::store::GroupBy::Day)
                    .ok()
                    .map(|(_, totals)| totals)
            }),
            http: self.http.get().map(|listening| {
                let tokens = self
                    .token_usage
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .values()
                    .map(|(usage, last)| TokenUsage {
                        last_used_secs_ago: Some(last.elapsed().as_secs()),
                        ..usage.clone()
                    })
                    .collect();
                listening.status(tokens)
            }),
        }
    }
}
