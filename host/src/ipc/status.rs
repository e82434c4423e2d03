//! The daemon's self-report, as returned to `poe-coded status`.
//!
//! `poe-coded status --json` prints exactly this structure; fields are only
//! ever added.

use serde::{Deserialize, Serialize};

/// Everything `poe-coded status` shows.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Status {
    pub pid: u32,
    pub version: String,
    /// Seconds since the daemon started.
    pub uptime_secs: u64,
    pub socket: String,
    pub state_dir: String,
    /// Idle timeout in seconds; `null` when the daemon never idles out.
    pub idle_timeout_secs: Option<u64>,
    pub plugins: Vec<PluginStatus>,
    /// Plugin files that were refused, with a one-line reason each.
    pub plugin_errors: Vec<PluginLoadError>,
    /// Library mappings loaded so far (never unloaded).
    pub libraries_mapped: usize,
    pub sessions: Vec<SessionStatus>,
    /// Tool calls running right now, across all sessions.
    pub calls_in_flight: u64,
    /// Tool calls served since start.
    pub calls_total: u64,
    /// Jobs by state (finished ones as kept in the store: 3 days).
    pub jobs: JobCounts,
    /// Path of the SQLite store, when it is open.
    pub store: Option<String>,
    /// Why the store is unusable, when it is; jobs then live in memory only.
    pub store_error: Option<String>,
    /// One row per shared rate limiter (plugin × API key fingerprint).
    pub limiters: Vec<crate::limits::LimiterStatus>,
    /// `[limits] backend` (team-wide limits in Redis), when set.
    #[serde(default)]
    pub limits_backend: Option<crate::limits::team::TeamStatus>,
    /// Why `config.toml` was ignored, if it was.
    #[serde(default)]
    pub config_error: Option<String>,
    /// The plugin directories searched, in load order.
    #[serde(default)]
    pub plugin_dirs: Vec<PluginDirStatus>,
    /// When no plugin is loaded: where the daemon looked and the command
    /// that installs the bundled plugins.
    #[serde(default)]
    pub plugins_hint: Option<String>,
    /// The HTTP listener, when one is on.
    #[serde(default)]
    pub http: Option<HttpStatus>,
    /// Why the listener `[http]` asks for is not listening (bad address,
    /// port in use, a non-loopback address without consent).
    #[serde(default)]
    pub http_error: Option<String>,
    /// Today's (UTC) upstream requests and tokens, from the usage ledger.
    #[serde(default)]
    pub usage_today: Option<crate::store::Totals>,
}

/// The daemon's HTTP listener.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct HttpStatus {
    /// The address it listens on.
    pub listen: String,
    /// `http://<listen>/mcp`
    pub mcp_url: String,
    pub require_token: bool,
    /// MCP sessions open on it now (stateless requests are not sessions).
    pub sessions: usize,
    pub max_sessions: usize,
    /// Use per token since the daemon started.
    pub tokens: Vec<TokenUsage>,
}

/// What one token was used for since the daemon started.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct TokenUsage {
    pub name: String,
    /// HTTP requests it authenticated.
    pub requests: u64,
    /// Tool calls and completions made under it.
    pub calls: u64,
    /// Seconds since its last request.
    pub last_used_secs_ago: Option<u64>,
}

/// One plugin directory.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct PluginDirStatus {
    pub path: String,
    pub exists: bool,
    /// Plugin library files in it now.
    pub files: usize,
    /// What hot reload watches for it: the dir itself, or its nearest
    /// existing parent until the dir is created; `null` when not watched.
    pub watching: Option<String>,
    /// Why the dir is refused (e.g. writable by other users), if it is.
    pub refused: Option<String>,
}

/// One setting of a plugin (a config key of its manifest).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PluginSetting {
    pub key: String,
    /// The value in effect; for a secret only its fingerprint (`…1234`).
    pub value: Option<String>,
    /// `environment` (the daemon's), `config.toml`, or `unset` (the plugin's
    /// default applies).
    pub source: String,
    pub secret: bool,
}

/// Jobs by state.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct JobCounts {
    pub running: u64,
    pub completed: u64,
    pub failed: u64,
    pub cancelled: u64,
}

/// One loaded plugin.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct PluginStatus {
    pub id: String,
    pub version: String,
    pub plugin_api_version: String,
    /// The file it was loaded from (not the private copy).
    pub path: String,
    pub models: Vec<String>,
    pub capabilities: Vec<String>,
    /// When the serving version was loaded (RFC 3339).
    pub loaded_at: String,
    /// Successful reloads since the daemon started.
    pub reload_count: u32,
    /// Why the last reload failed (the previous version keeps serving).
    pub last_error: Option<String>,
    /// Upstream attempts (retries count separately).
    pub requests: u64,
    /// Failed attempts by error kind.
    pub errors: std::collections::BTreeMap<String, u64>,
    /// Attempt latency percentiles over the most recent 1000 attempts.
    pub latency_p50_ms: Option<f64>,
    pub latency_p95_ms: Option<f64>,
    /// The settings the serving version was opened with.
    #[serde(default)]
    pub settings: Vec<PluginSetting>,
    /// Keys of `[plugins.<id>]` in config.toml this plugin does not read.
    #[serde(default)]
    pub ignored_settings: Vec<String>,
}

/// A plugin file that could not be used.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct PluginLoadError {
    pub path: String,
    pub reason: String,
}

/// One connected MCP session.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SessionStatus {
    pub id: u64,
    /// `clientInfo.name` from `initialize` (or request metadata), once known.
    pub client_name: Option<String>,
    pub client_version: Option<String>,
    pub protocol_version: Option<String>,
    /// The shim's process id (stdio sessions; 0 for HTTP ones).
    pub shim_pid: u32,
    /// `stdio` (through a shim) or `http`.
    #[serde(default)]
    pub transport: String,
    /// The name of the token an HTTP session authenticated with.
    #[serde(default)]
    pub token: Option<String>,
    pub cwd: Option<String>,
    /// Seconds since the session connected.
    pub connected_secs: u64,
    pub calls: u64,
    /// Fingerprint of the session's API key, if it sent one.
    pub api_key: Option<String>,
}
