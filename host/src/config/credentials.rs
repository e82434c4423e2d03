//! The Poe API key: `POE_API_KEY` or `$POE_CODE_HOME/credentials.json` (0600).
//! A key is never printed in full; [`fingerprint`] is what logs and commands show.

use std::io::Write;
use std::path::Path;

use serde::{Deserialize, Serialize};

use super::Paths;

/// Environment variable that overrides the stored key.
pub const API_KEY_ENV: &str = "POE_API_KEY";

#[derive(Serialize, Deserialize)]
struct CredentialsFile {
    api_key: String,
}

/// Where a key came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Source {
    Env,
    File,
}

/// The API key in effect, if any.
pub fn load(paths: &Paths) -> anyhow::Result<Option<(String, Source)>> {
    if let Ok(key) = std::env::var(API_KEY_ENV) {
        let key = key.trim().to_string();
        if !key.is_empty() {
            return Ok(Some((key, Source::Env)));
        }
    }
    let path = paths.credentials();
    let text = match std::fs::read_to_string(&path) {
        Ok(text) => text,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => anyhow::bail!("cannot read {}: {e}", path.display()),
    };
    let file: CredentialsFile = serde_json::from_str(&text)
        .map_err(|e| anyhow::anyhow!("{} is not valid credentials JSON: {e}", path.display()))?;
    let key = file.api_key.trim().to_string();
    Ok((!key.is_empty()).then_some((key, Source::File)))
}

/// Stores `key` in credentials.json with mode 0600 (atomically).
pub fn save(paths: &Paths, key: &str) -> anyhow::Result<()> {
    super::ensure_private_dir(&paths.home)?;
    let json = serde_json::to_string_pretty(&CredentialsFile {
        api_key: key.to_string(),
    })?;
    write_private(&paths.credentials(), json.as_bytes())
}

/// Removes credentials.json; `Ok(false)` when there was none.
pub fn delete(paths: &Paths) -> anyhow::Result<bool> {
    match std::fs::remove_file(paths.credentials()) {
        Ok(()) => Ok(true),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(false),
        Err(e) => Err(e.into()),
    }
}

fn write_private(path: &Path, bytes: &[u8]) -> anyhow::Result<()> {
    use std::os::unix::fs::OpenOptionsExt;
    let tmp = path.with_extension(format!("tmp{}", std::process::id()));
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(&tmp)?;
    file.write_all(bytes)?;
    file.sync_all()?;
    std::fs::rename(&tmp, path)?;
    Ok(())
}

/// A short, non-reversible label for a key: its last four characters.
pub fn fingerprint(key: &str) -> String {
    let chars: Vec<char> = key.chars().collect();
    if chars.len() < 12 {
        return "…".to_string();
    }
    let tail: String = chars[chars.len() - 4..].iter().collect();
    format!("…{tail}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fingerprint_never_shows_more_than_four_chars() {
        assert_eq!(fingerprint("sk-poe-abcdefghijkl1234"), "…1234");
        assert_eq!(fingerprint("short"), "…");
    }

    #[test]
    fn save_load_delete_round_trip_with_private_mode() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let paths = Paths::at(dir.path().join("home"));
        save(&paths, "secret-key-123456").unwrap();
        let mode = std::fs::metadata(paths.credentials())
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
        // POE_API_KEY may be set in the environment running the tests; read the file directly.
        let text = std::fs::read_to_string(paths.credentials()).unwrap();
        assert!(text.contains("secret-key-123456"));
        assert!(delete(&paths).unwrap());
        assert!(!delete(&paths).unwrap());
    }
}
