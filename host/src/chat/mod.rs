//! The `chat` tool: conversations that persist in the store, continued from
//! any session, with file and image context and function calling.

pub mod args;
pub mod conversation;
pub mod export;
pub mod files;
pub mod turn;

use std::path::PathBuf;
use std::time::Duration;

pub use conversation::Conversations;

use crate::config::file::ChatSection;

/// How long a conversation can be continued after its last message.
pub const DEFAULT_RETENTION: Duration = Duration::from_secs(3 * 24 * 3600);

/// The `chat` tool's settings (config.toml `[chat]`).
#[derive(Debug, Clone)]
pub struct ChatSettings {
    pub retention: Duration,
    /// Allowed roots besides the session's working directory.
    pub roots: Vec<PathBuf>,
    pub max_file_bytes: u64,
    pub max_image_bytes: u64,
    /// `None`: `$POE_CODE_HOME/exports`.
    pub export_dir: Option<PathBuf>,
}

impl Default for ChatSettings {
    fn default() -> Self {
        Self {
            retention: DEFAULT_RETENTION,
            roots: Vec::new(),
            max_file_bytes: files::DEFAULT_MAX_FILE_BYTES,
            max_image_bytes: files::DEFAULT_MAX_IMAGE_BYTES,
            export_dir: None,
        }
    }
}

/// `~/x` as `$HOME/x`; anything else as written.
pub fn expand_home(path: &str) -> PathBuf {
    match (path.strip_prefix("~/"), std::env::var_os("HOME")) {
        (Some(rest), Some(home)) => PathBuf::from(home).join(rest),
        _ => PathBuf::from(path),
    }
}

impl ChatSettings {
    /// Defaults overlaid with `[chat]`.
    pub fn load(section: &ChatSection) -> Self {
        let default = Self::default();
        Self {
            retention: section
                .retention_days
                .map(|d| Duration::from_secs_f64(d * 86_400.0))
                .unwrap_or(default.retention),
            roots: section.roots.iter().map(|r| expand_home(r)).collect(),
            max_file_bytes: section.max_file_bytes.unwrap_or(default.max_file_bytes),
            max_image_bytes: section.max_image_bytes.unwrap_or(default.max_image_bytes),
            export_dir: section.export_dir.as_deref().map(expand_home),
        }
    }
}
