//! `$POE_CODE_HOME/config.toml`: the user's settings for the daemon.
//!
//! ```toml
//! [limits]            # requests per minute per API key, by plugin id
//! poe-openai = 300
//!
//! [deadlines]         # seconds a call may run, by output kind
//! text = 600
//! video = 1800
//! ```
//!
//! Environment variables override the file; the file overrides plugin
//! manifests. A file that does not parse is reported (log and `status`) and
//! ignored, never rewritten.

use std::collections::HashMap;
use std::path::Path;

use poe_plugin_api::text::one_line;
use serde::Deserialize;

/// The parsed file.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ConfigFile {
    /// Rate limit overrides: plugin id -> requests per minute.
    #[serde(default)]
    pub limits: HashMap<String, u32>,
    /// Deadlines by output kind (`text`, `image`, `video`, `audio`), in seconds.
    #[serde(default)]
    pub deadlines: HashMap<String, u64>,
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
        if let Some((plugin, _)) = file.limits.iter().find(|(_, rpm)| **rpm == 0) {
            return Err(format!(
                "{}: limits.{plugin} must be at least 1 request per minute",
                path.display()
            ));
        }
        if let Some((kind, _)) = file.deadlines.iter().find(|(kind, secs)| {
            **secs == 0
                || super::Deadlines::KINDS
                    .binary_search(&kind.as_str())
                    .is_err()
        }) {
            return Err(format!(
                "{}: deadlines.{kind} must be one of {} and at least 1 second",
                path.display(),
                super::Deadlines::KINDS.join(", ")
            ));
        }
        Ok(file)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_limits_and_reports_mistakes_with_the_path() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("config.toml");
        assert!(ConfigFile::load(&path).unwrap().limits.is_empty());
        std::fs::write(&path, "[limits]\npoe-openai = 300\n").unwrap();
        assert_eq!(ConfigFile::load(&path).unwrap().limits["poe-openai"], 300);
        std::fs::write(&path, "[limits]\npoe-openai = \"fast\"\n").unwrap();
        let err = ConfigFile::load(&path).unwrap_err();
        assert!(err.contains("config.toml"), "{err}");
        std::fs::write(&path, "[limtis]\n").unwrap();
        assert!(ConfigFile::load(&path).is_err());
        std::fs::write(&path, "[deadlines]\nvideo = 3600\n").unwrap();
        assert_eq!(ConfigFile::load(&path).unwrap().deadlines["video"], 3600);
        std::fs::write(&path, "[deadlines]\nvidoe = 3600\n").unwrap();
        let err = ConfigFile::load(&path).unwrap_err();
        assert!(err.contains("deadlines.vidoe"), "{err}");
    }
}
