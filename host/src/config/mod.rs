//! Where things live and what the user configured: the state dir, its
//! sub-paths, plugin directories and environment overrides.

pub mod credentials;
pub mod file;
pub mod plugin_settings;
pub mod tokens;

use std::path::{Path, PathBuf};
use std::time::Duration;

use poe_plugin_api::OutputKind;

/// Environment variable naming the state directory.
pub const HOME_ENV: &str = "POE_CODE_HOME";
/// Environment variable overriding the plugin directories (`:`-separated).
pub const PLUGIN_DIR_ENV: &str = "POE_CODE_PLUGIN_DIR";
/// Environment variable setting the daemon's idle timeout, in seconds.
pub const IDLE_TIMEOUT_ENV: &str = "POE_CODED_IDLE_TIMEOUT";
/// Default idle timeout of a daemon started in the background.
pub const DEFAULT_IDLE_TIMEOUT: Duration = Duration::from_secs(600);

/// Environment override of the deadlines: `kind=seconds[,kind=seconds]`.
pub const DEADLINES_ENV: &str = "POE_CODE_DEADLINES";

/// How long a call may run, by what it produces, before the daemon stops
/// it: a stalled stream or a video stuck `in_progress` must not run (and
/// hold identical calls) forever.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Deadlines {
    pub text: Duration,
    pub image: Duration,
    pub video: Duration,
    pub audio: Duration,
}

impl Default for Deadlines {
    fn default() -> Self {
        let minutes = |m: u64| Duration::from_secs(m * 60);
        Self {
            text: minutes(10),
            image: minutes(10),
            video: minutes(30),
            audio: minutes(10),
        }
    }
}

impl Deadlines {
    /// Each output kind as config.toml and the environment spell it.
    pub const KINDS: [(&'static str, OutputKind); 4] = [
        ("text", OutputKind::Text),
        ("image", OutputKind::Image),
        ("video", OutputKind::Video),
        ("audio", OutputKind::Audio),
    ];

    /// The output kind config.toml calls `name`.
    pub fn kind(name: &str) -> Option<OutputKind> {
        Self::KINDS
            .iter()
            .find(|(spelled, _)| *spelled == name)
            .map(|(_, kind)| *kind)
    }

    /// How config.toml spells `output`.
    pub fn name(output: OutputKind) -> &'static str {
        Self::KINDS
            .iter()
            .find(|(_, kind)| *kind == output)
            .map_or("text", |(name, _)| name)
    }

    /// Every spelling, for messages.
    pub fn names() -> String {
        Self::KINDS.map(|(name, _)| name).join(", ")
    }

    /// Defaults, then `[deadlines]` of config.toml, then `POE_CODE_DEADLINES`.
    pub fn load(file: &std::collections::HashMap<String, u64>) -> Self {
        let mut deadlines = Self::default();
        for (kind, secs) in file {
            deadlines.set(kind, Duration::from_secs(*secs));
        }
        if let Ok(spec) = std::env::var(DEADLINES_ENV) {
            for (kind, secs) in spec.split(',').filter_map(|part| part.split_once('=')) {
                match secs.trim().parse::<f64>() {
                    Ok(secs) if secs.is_finite() && secs > 0.0 => {
                        deadlines.set(kind.trim(), Duration::from_secs_f64(secs))
                    }
                    _ => tracing::warn!(kind, secs, "{DEADLINES_ENV}: ignored a bad deadline"),
                }
            }
        }
        deadlines
    }

    fn set(&mut self, name: &str, value: Duration) {
        match Self::kind(name) {
            Some(kind) => *self.slot(kind) = value,
            None => tracing::warn!(kind = name, "unknown deadline kind ignored"),
        }
    }

    fn slot(&mut self, output: OutputKind) -> &mut Duration {
        match output {
            OutputKind::Text => &mut self.text,
            OutputKind::Image => &mut self.image,
            OutputKind::Video => &mut self.video,
            OutputKind::Audio => &mut self.audio,
        }
    }

    /// The deadline of a call producing `output`.
    pub fn of(&self, output: OutputKind) -> Duration {
        let mut copy = *self;
        *copy.slot(output)
    }
}

/// Tunables of the daemon, read from the environment at start.
#[derive(Debug, Clone)]
pub struct Settings {
    /// A synchronous call still running after this answers with its job id.
    pub soft_deadline: Duration,
    /// Results larger than this many tokens come back as head + pointer.
    pub max_output_tokens: usize,
    /// How long a call may wait for its turn at the shared rate limiter.
    pub rate_limit_wait: Duration,
    /// How often a long call with a progress token reports that it is alive.
    pub progress_heartbeat: Duration,
    /// How long calls may run, by output kind.
    pub deadlines: Deadlines,
    /// Conversations, files and export of the `chat` tool.
    pub chat: crate::chat::ChatSettings,
    /// AI titles and summaries: the model that writes them, when on.
    pub summarization: Option<String>,
    /// The most models one `consensus` may name.
    pub consensus_max_models: usize,
    /// Days a request stays in the usage ledger.
    pub ledger_keep_days: u64,
    /// Daily budgets of Poe points (`[budget]`).
    pub budget: file::BudgetSection,
    /// How often a busy daemon matches Poe's points history to the ledger.
    pub points_sync: Duration,
}

/// Days the usage ledger keeps a request unless `[usage] keep_days` says.
pub const LEDGER_KEEP_DAYS: u64 = 90;

impl Settings {
    /// Settings from `POE_CODE_SOFT_DEADLINE` (seconds, default 50),
    /// `MAX_MCP_OUTPUT_TOKENS` (default 25000, as Claude Code caps it) and
    /// `POE_CODE_RATE_LIMIT_WAIT` (seconds, default 120) and
    /// `POE_CODE_PROGRESS_HEARTBEAT` (seconds, default 5).
    pub fn from_env() -> Self {
        let secs = |name: &str, default: f64| {
            std::env::var(name)
                .ok()
                .and_then(|v| v.trim().parse::<f64>().ok())
                .filter(|v| v.is_finite() && *v > 0.0)
                .map(Duration::from_secs_f64)
                .unwrap_or(Duration::from_secs_f64(default))
        };
        Self {
            soft_deadline: secs("POE_CODE_SOFT_DEADLINE", 50.0),
            max_output_tokens: std::env::var("MAX_MCP_OUTPUT_TOKENS")
                .ok()
                .and_then(|v| v.trim().parse().ok())
                .filter(|v| *v > 0)
                .unwrap_or(25_000),
            rate_limit_wait: secs("POE_CODE_RATE_LIMIT_WAIT", 120.0),
            progress_heartbeat: secs(
                "POE_CODE_PROGRESS_HEARTBEAT",
                crate::mcp::defaults::PROGRESS_HEARTBEAT.as_secs_f64(),
            ),
            deadlines: Deadlines::default(),
            chat: crate::chat::ChatSettings::default(),
            summarization: None,
            consensus_max_models: crate::consensus::MAX_MODELS,
            ledger_keep_days: LEDGER_KEEP_DAYS,
            budget: file::BudgetSection::default(),
            points_sync: secs("POE_CODE_POINTS_SYNC_SECS", 180.0),
        }
    }

    /// [`Settings::from_env`], plus what config.toml sets (environment wins).
    pub fn load(file: &file::ConfigFile) -> Self {
        Self {
            deadlines: Deadlines::load(&file.deadlines),
            chat: crate::chat::ChatSettings::load(&file.chat),
            summarization: summarization(file, |k| std::env::var(k).ok()),
            consensus_max_models: file
                .consensus
                .max_models
                .filter(|n| *n > 0)
                .unwrap_or(crate::consensus::MAX_MODELS),
            ledger_keep_days: file
                .usage
                .keep_days
                .filter(|d| *d > 0)
                .unwrap_or(LEDGER_KEEP_DAYS),
            budget: file.budget.clone(),
            ..Self::from_env()
        }
    }
}

/// The summarization model when summaries are on:
/// `ENABLE_RESPONSE_SUMMARIZATION` (true/1/yes/on) over config.toml's
/// `summarization`; `SUMMARIZATION_MODEL` over `summarization_model` over
/// [`crate::summaries::DEFAULT_MODEL`].
pub fn summarization(
    file: &file::ConfigFile,
    env: impl Fn(&str) -> Option<String>,
) -> Option<String> {
    let on = match env("ENABLE_RESPONSE_SUMMARIZATION").map(|v| v.trim().to_ascii_lowercase()) {
        Some(v) if !v.is_empty() => matches!(v.as_str(), "true" | "1" | "yes" | "on"),
        _ => file.summarization.unwrap_or(false),
    };
    on.then(|| {
        env("SUMMARIZATION_MODEL")
            .or_else(|| file.summarization_model.clone())
            .map(|m| m.trim().to_string())
            .filter(|m| !m.is_empty())
            .unwrap_or_else(|| crate::summaries::DEFAULT_MODEL.to_string())
    })
}

/// All paths of one state directory.
#[derive(Debug, Clone)]
pub struct Paths {
    /// The state dir itself (`$POE_CODE_HOME`, default `~/.poe-code`).
    pub home: PathBuf,
}

impl Paths {
    /// Paths for `$POE_CODE_HOME`, or `~/.poe-code`.
    pub fn from_env() -> anyhow::Result<Self> {
        if let Some(home) = std::env::var_os(HOME_ENV).filter(|v| !v.is_empty()) {
            return Ok(Self::at(PathBuf::from(home)));
        }
        let user_home = std::env::var_os("HOME")
            .filter(|v| !v.is_empty())
            .ok_or_else(|| anyhow::anyhow!("neither {HOME_ENV} nor HOME is set"))?;
        Ok(Self::at(PathBuf::from(user_home).join(".poe-code")))
    }

    /// Paths rooted at `home`.
    pub fn at(home: PathBuf) -> Self {
        // Relative homes would make the socket path depend on each process's cwd.
        let home = std::path::absolute(&home).unwrap_or(home);
        Self { home }
    }

    /// `credentials.json` (mode 0600).
    pub fn credentials(&self) -> PathBuf {
        self.home.join("credentials.json")
    }

    /// `config.toml`.
    pub fn config_file(&self) -> PathBuf {
        self.home.join("config.toml")
    }

    /// `state.db`, the SQLite store of jobs and conversations.
    pub fn state_db(&self) -> PathBuf {
        self.home.join("state.db")
    }

    /// `cache/models.json`: Poe's model list as last fetched.
    pub fn models_cache(&self) -> PathBuf {
        self.home.join("cache").join("models.json")
    }

    /// `exports/`: where `chat`'s `export: true` writes unless configured.
    pub fn exports(&self) -> PathBuf {
        self.home.join("exports")
    }

    /// `logs/`.
    pub fn logs(&self) -> PathBuf {
        self.home.join("logs")
    }

    /// `run/` (mode 0700): socket, lock files, pid file.
    pub fn run_dir(&self) -> PathBuf {
        self.home.join("run")
    }

    /// The daemon's socket.
    pub fn socket(&self) -> PathBuf {
        self.run_dir().join("poe-coded.sock")
    }

    /// Held exclusively by the live daemon for its whole life.
    pub fn daemon_lock(&self) -> PathBuf {
        self.run_dir().join("poe-coded.lock")
    }

    /// Held by a shim while it starts a daemon, so concurrent shims start one.
    pub fn spawn_lock(&self) -> PathBuf {
        self.run_dir().join("spawn.lock")
    }

    /// Where plugin libraries are copied before loading.
    pub fn plugin_copies(&self) -> PathBuf {
        self.run_dir().join("plugins")
    }

    /// The user's own plugin dir.
    pub fn user_plugins(&self) -> PathBuf {
        self.home.join("plugins")
    }

    /// Plugin directories, in load order: `$POE_CODE_PLUGIN_DIR` when set,
    /// otherwise `<binary dir>/plugins` and `$POE_CODE_HOME/plugins`.
    pub fn plugin_dirs(&self) -> Vec<PathBuf> {
        if let Some(dirs) = std::env::var_os(PLUGIN_DIR_ENV).filter(|v| !v.is_empty()) {
            return std::env::split_paths(&dirs).collect();
        }
        let mut dirs = Vec::new();
        if let Some(dir) = exe_dir() {
            dirs.push(dir.join("plugins"));
        }
        dirs.push(self.user_plugins());
        dirs
    }

    /// Creates `run/` with mode 0700 (and the state dir) if missing, and
    /// tightens the mode of an existing one.
    pub fn ensure_run_dir(&self) -> std::io::Result<PathBuf> {
        let dir = self.run_dir();
        ensure_private_dir(&self.home)?;
        ensure_private_dir(&dir)?;
        Ok(dir)
    }
}

/// Creates `dir` (and parents) with mode 0700, or sets 0700 on an existing one.
pub fn ensure_private_dir(dir: &Path) -> std::io::Result<()> {
    use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)?;
    let meta = std::fs::metadata(dir)?;
    if meta.permissions().mode() & 0o777 != 0o700 {
        std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700))?;
    }
    Ok(())
}

/// The directory holding the running binary.
pub fn exe_dir() -> Option<PathBuf> {
    std::env::current_exe()
        .ok()
        .and_then(|p| p.parent().map(Path::to_path_buf))
}

/// The daemon's idle timeout from the environment, if set.
pub fn idle_timeout_from_env() -> Option<Duration> {
    std::env::var(IDLE_TIMEOUT_ENV)
        .ok()
        .and_then(|v| v.trim().parse::<f64>().ok())
        .filter(|s| *s >= 0.0)
        .map(Duration::from_secs_f64)
}
