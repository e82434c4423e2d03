//! `$POE_CODE_HOME/config.toml`: the user's settings for the daemon.
//!
//! ```toml
//! [limits]            # requests per minute per API key, by plugin id
//! poe-openai = 300
//! backend = "redis://127.0.0.1:6379/0"   # optional: share the limits team-wide
//!
//! [deadlines]         # seconds a call may run, by output kind
//! text = 600
//! video = 1800
//!
//! [plugins.codex-cli] # a plugin's settings (its manifest's config keys), by plugin id
//! CODEX_SANDBOX_MODE = "workspace-write"
//!
//! [aliases]           # short names for models, on top of the built-in ones
//! fast = "GPT-5-mini"
//!
//! [models]            # defaults (POE_TEXT_MODEL etc. override) and the `auto` rule
//! text = "Claude-Sonnet-4.5"
//! auto = ["Claude-Sonnet-4.5", "GPT-5", "Gemini-2.5-Pro"]
//!
//! summarization = true            # AI titles and summaries of chat/consensus jobs
//! summarization_model = "haiku"   # the model that writes them
//!
//! [consensus]         # the `consensus` tool
//! max_models = 8
//!
//! [chat]              # conversations, files and export of the `chat` tool
//! retention_days = 3
//! roots = ["~/notes"]
//! max_file_bytes = 1048576
//! max_image_bytes = 10485760
//! export_dir = "~/poe-exports"
//!
//! [http]              # the HTTP listener (off without `listen`)
//! listen = "127.0.0.1:8765"
//! ```
//!
//! Environment variables override the file; the file overrides plugin
//! manifests. A file that does not parse is reported (log and `status`) and
//! ignored, never rewritten.

use std::collections::{BTreeMap, HashMap};
use std::path::Path;

use poe_plugin_api::text::one_line;
use serde::Deserialize;

/// `[limits]`: requests per minute by plugin id, and `backend`, the Redis
/// URL that shares the limits among daemons (see [`crate::limits::redis`]).
#[derive(Default, Clone, Deserialize)]
#[serde(try_from = "HashMap<String, toml::Value>")]
pub struct LimitsSection {
    pub per_plugin: HashMap<String, u32>,
    /// May hold a password: never shown.
    pub backend: Option<String>,
}

impl std::fmt::Debug for LimitsSection {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LimitsSection")
            .field("per_plugin", &self.per_plugin)
            .field("backend", &self.backend.as_ref().map(|_| "(set)"))
            .finish()
    }
}

impl TryFrom<HashMap<String, toml::Value>> for LimitsSection {
    type Error = String;

    fn try_from(table: HashMap<String, toml::Value>) -> Result<Self, String> {
        let mut section = LimitsSection::default();
        for (key, value) in table {
            if key == "backend" {
                match value {
                    toml::Value::String(url) if url.starts_with("redis://") => {
                        section.backend = Some(url)
                    }
                    _ => {
                        return Err("limits.backend must be a redis:// URL".to_string());
                    }
                }
            } else {
                let rpm = value
                    .as_integer()
                    .and_then(|n| u32::try_from(n).ok())
                    .ok_or_else(|| {
                        format!("limits.{key} must be a number of requests per minute")
                    })?;
                section.per_plugin.insert(key, rpm);
            }
        }
        Ok(section)
    }
}

/// The parsed file.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ConfigFile {
    /// Rate limit overrides and where the limits are kept.
    #[serde(default)]
    pub limits: LimitsSection,
    /// Deadlines by output kind (`text`, `image`, `video`, `audio`), in seconds.
    #[serde(default)]
    pub deadlines: HashMap<String, u64>,
    /// Plugin settings: plugin id -> config key -> value (see
    /// [`super::plugin_settings`]).
    #[serde(default)]
    pub plugins: BTreeMap<String, BTreeMap<String, SettingValue>>,
    /// Model aliases: short name -> model name (see [`crate::models`]).
    #[serde(default)]
    pub aliases: BTreeMap<String, String>,
    /// Default models and the `auto` preference list.
    #[serde(default)]
    pub models: ModelsSection,
    /// The `chat` tool's conversations, files and export.
    #[serde(default)]
    pub chat: ChatSection,
    /// The `consensus` tool.
    #[serde(default)]
    pub consensus: ConsensusSection,
    /// AI titles and summaries of `chat` and `consensus` jobs
    /// (`ENABLE_RESPONSE_SUMMARIZATION` wins).
    pub summarization: Option<bool>,
    /// The model that writes them (`SUMMARIZATION_MODEL` wins).
    pub summarization_model: Option<String>,
    /// The HTTP listener (MCP Streamable HTTP and the OpenAI-compatible API).
    #[serde(default)]
    pub http: HttpSection,
    /// The usage ledger.
    #[serde(default)]
    pub usage: UsageSection,
    /// Daily budgets of Poe points.
    #[serde(default)]
    pub budget: BudgetSection,
}

/// `[budget]`: once the day's (UTC) matched Poe points reach a budget, new
/// calls to the Poe plugins are refused with BUDGET_EXCEEDED; running calls
/// finish.
#[derive(Debug, Default, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BudgetSection {
    /// Points a day for all clients together.
    pub daily_points: Option<i64>,
    /// Points a day per client name (`clientInfo.name`, or `token:<name>`).
    #[serde(default)]
    pub clients: BTreeMap<String, i64>,
}

/// `[usage]`: the ledger of upstream requests (`poe-code usage`).
#[derive(Debug, Default, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UsageSection {
    /// Days a request stays in the ledger (default 90).
    pub keep_days: Option<u64>,
}

/// `[http]`: the daemon's HTTP listener; off unless `listen` is set.
#[derive(Debug, Default, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HttpSection {
    /// `host:port` to listen on, e.g. `127.0.0.1:8765`.
    pub listen: Option<String>,
    /// Allow a non-loopback `listen` address (put TLS in front of it).
    #[serde(default)]
    pub allow_remote: bool,
    /// Host names accepted in the `Host` header besides loopback ones.
    #[serde(default)]
    pub allowed_hosts: Vec<String>,
    /// Browser origins accepted in an `Origin` header (`scheme://host:port`);
    /// any other Origin is refused with 403.
    #[serde(default)]
    pub allowed_origins: Vec<String>,
    /// Whether every request needs a token (`poe-code token create`).
    /// Turning it off is only allowed on a loopback address.
    pub require_token: Option<bool>,
    /// Most MCP sessions open at once (default 1024).
    pub max_sessions: Option<usize>,
    /// Largest request body in bytes (default 4 MiB).
    pub max_body_bytes: Option<usize>,
    /// Seconds a client has to send a request's head, and again its body
    /// (default 30); a slower one is dropped.
    pub read_timeout_secs: Option<f64>,
}

/// `[models]`: default models by output kind, and the `auto` rule's list.
#[derive(Debug, Default, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ModelsSection {
    pub text: Option<String>,
    pub image: Option<String>,
    pub video: Option<String>,
    pub audio: Option<String>,
    /// Models `auto` tries, in order of preference.
    pub auto: Option<Vec<String>>,
}

/// `[consensus]`: limits of the `consensus` tool.
#[derive(Debug, Default, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ConsensusSection {
    /// The most models one consensus may name (default 8).
    pub max_models: Option<usize>,
}

/// `[chat]`: conversation retention, file roots and caps, export dir.
#[derive(Debug, Default, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ChatSection {
    /// Days a conversation can be continued after its last message.
    pub retention_days: Option<f64>,
    /// Directories files and images may be read from, besides the
    /// calling session's working directory (`~/` is expanded).
    #[serde(default)]
    pub roots: Vec<String>,
    /// Largest text or PDF file read, in bytes.
    pub max_file_bytes: Option<u64>,
    /// Largest image read, in bytes.
    pub max_image_bytes: Option<u64>,
    /// Where `export: true` writes conversations (`~/` is expanded).
    pub export_dir: Option<String>,
}

/// A plugin setting as written in the file. Plugins receive strings, so
/// `true` and `600` are accepted and passed on as `"true"` and `"600"`.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(untagged)]
pub enum SettingValue {
    String(String),
    Integer(i64),
    Float(f64),
    Boolean(bool),
}

impl std::fmt::Display for SettingValue {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::String(s) => f.write_str(s),
            Self::Integer(n) => write!(f, "{n}"),
            Self::Float(x) => write!(f, "{x}"),
            Self::Boolean(b) => write!(f, "{b}"),
        }
    }
}

impl ConfigFile {
    /// Reads `path`; a missing file is the default, a broken one an error
    /// naming the file and the problem.
    pub fn load(path: &Path) -> Result<Self, String> {
        let text = match std::fs::read_to_string(path) {
            Ok(text) => text,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Self::default()),
            Err(e) => return Err(format!("cannot read {}: {e}", path.display())),
        };
        let file: Self = toml::from_str(&text).map_err(|e| {
            format!(
                "{} is not valid: {}",
                path.display(),
                one_line(&e.to_string())
            )
        })?;
        if let Some((plugin, _)) = file.limits.per_plugin.iter().find(|(_, rpm)| **rpm == 0) {
            return Err(format!(
                "{}: limits.{plugin} must be at least 1 request per minute",
                path.display()
            ));
        }
        if let Some((kind, _)) = file
            .deadlines
            .iter()
            .find(|(kind, secs)| **secs == 0 || super::Deadlines::kind(kind).is_none())
        {
            return Err(format!(
                "{}: deadlines.{kind} must be one of {} and at least 1 second",
                path.display(),
                super::Deadlines::names()
            ));
        }
        if let Some(days) = file.chat.retention_days
            && !(days.is_finite() && days > 0.0)
        {
            return Err(format!(
                "{}: chat.retention_days must be more than 0",
                path.display()
            ));
        }
        Ok(file)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_readme_example_is_a_valid_file() {
        let readme = include_str!("../../../README.md");
        let marker = "```toml\n# AI titles";
        let start = readme.find(marker).expect("the config.toml example") + "```toml\n".len();
        let end = start + readme[start..].find("```").expect("its end");
        let file: ConfigFile =
            toml::from_str(&readme[start..end]).expect("the README's config.toml parses");
        assert_eq!(file.summarization, Some(true));
        assert_eq!(file.consensus.max_models, Some(8));
        assert_eq!(file.aliases["fast"], "GPT-5-mini");
        assert_eq!(file.http.listen.as_deref(), Some("127.0.0.1:8765"));
        assert_eq!(file.http.max_sessions, Some(1024));
    }

    #[test]
    fn reads_limits_and_reports_mistakes_with_the_path() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("config.toml");
        assert!(
            ConfigFile::load(&path)
                .unwrap()
                .limits
                .per_plugin
                .is_empty()
        );
        std::fs::write(
            &path,
            "[limits]\npoe-openai = 300\nbackend = \"redis://10.0.0.5:6379/0\"\n",
        )
        .unwrap();
        let limits = ConfigFile::load(&path).unwrap().limits;
        assert_eq!(limits.per_plugin["poe-openai"], 300);
        assert_eq!(limits.backend.as_deref(), Some("redis://10.0.0.5:6379/0"));
        std::fs::write(&path, "[limits]\npoe-openai = \"fast\"\n").unwrap();
        let err = ConfigFile::load(&path).unwrap_err();
        assert!(err.contains("config.toml"), "{err}");
        assert!(err.contains("limits.poe-openai must be a number"), "{err}");
        std::fs::write(&path, "[limits]\nbackend = \"http://x\"\n").unwrap();
        let err = ConfigFile::load(&path).unwrap_err();
        assert!(err.contains("must be a redis:// URL"), "{err}");
        std::fs::write(&path, "[limtis]\n").unwrap();
        assert!(ConfigFile::load(&path).is_err());
        std::fs::write(&path, "[deadlines]\nvideo = 3600\n").unwrap();
        assert_eq!(ConfigFile::load(&path).unwrap().deadlines["video"], 3600);
        std::fs::write(&path, "[deadlines]\nvidoe = 3600\n").unwrap();
        let err = ConfigFile::load(&path).unwrap_err();
        assert!(err.contains("deadlines.vidoe"), "{err}");
    }

    #[test]
    fn reads_plugin_settings_as_strings_and_refuses_lists() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("config.toml");
        std::fs::write(
            &path,
            "[plugins.codex-cli]\nCODEX_SANDBOX_MODE = \"workspace-write\"\nCODEX_SKIP_GIT_CHECK = false\n\
             [plugins.poe-openai]\nPOE_VIDEO_POLL_MS = 50\n",
        )
        .unwrap();
        let file = ConfigFile::load(&path).unwrap();
        let codex = &file.plugins["codex-cli"];
        assert_eq!(codex["CODEX_SANDBOX_MODE"].to_string(), "workspace-write");
        assert_eq!(codex["CODEX_SKIP_GIT_CHECK"].to_string(), "false");
        assert_eq!(
            file.plugins["poe-openai"]["POE_VIDEO_POLL_MS"].to_string(),
            "50"
        );
        std::fs::write(&path, "[plugins.codex-cli]\nCODEX_BIN = [\"a\"]\n").unwrap();
        let err = ConfigFile::load(&path).unwrap_err();
        assert!(err.contains("config.toml"), "{err}");
    }
}
