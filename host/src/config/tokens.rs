//! Bearer tokens for the daemon's HTTP listener (`poe-code token …`).
//!
//! `$POE_CODE_HOME/tokens.json` (mode 0600) keeps each token's SHA-256, never
//! the token: it is shown once, at creation. A token may carry its own Poe
//! API key, so a daemon shared by a team limits and bills each person on
//! their own key. The daemon re-reads the file when it changes, so a revoked
//! token is refused on its next request.

use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::SystemTime;

use anyhow::Context;
use base64::Engine;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use super::Paths;

/// Every token starts with this, so secret scanners and people can tell
/// what it is.
pub const PREFIX: &str = "poe-code_";

/// One token as stored.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Token {
    /// Short public id, also inside the token (`poe-code_<id>_<secret>`).
    pub id: String,
    /// What the user called it ("ci", "alice's laptop").
    pub name: String,
    /// Hex SHA-256 of the whole token.
    pub sha256: String,
    /// Seconds since the Unix epoch.
    pub created: u64,
    /// The Poe API key calls under this token use, instead of the daemon's.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub poe_api_key: Option<String>,
}

#[derive(Debug, Default, Serialize, Deserialize)]
struct File {
    #[serde(default)]
    tokens: Vec<Token>,
}

impl Paths {
    /// Where the HTTP listener's tokens are kept.
    pub fn tokens(&self) -> PathBuf {
        self.home.join("tokens.json")
    }
}

fn read(path: &Path) -> anyhow::Result<File> {
    match std::fs::read(path) {
        Ok(bytes) => serde_json::from_slice(&bytes)
            .with_context(|| format!("{} is not a token file", path.display())),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(File::default()),
        Err(e) => Err(e).with_context(|| format!("cannot read {}", path.display())),
    }
}

fn write(paths: &Paths, file: &File) -> anyhow::Result<()> {
    use std::io::Write;
    use std::os::unix::fs::PermissionsExt;
    super::ensure_private_dir(&paths.home)?;
    let mut tmp = tempfile::NamedTempFile::new_in(&paths.home)?;
    tmp.as_file()
        .set_permissions(std::fs::Permissions::from_mode(0o600))?;
    tmp.write_all(&serde_json::to_vec_pretty(file)?)?;
    tmp.as_file().sync_all()?;
    tmp.persist(paths.tokens())
        .with_context(|| format!("cannot write {}", paths.tokens().display()))?;
    Ok(())
}

fn digest(token: &str) -> String {
    Sha256::digest(token.as_bytes())
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// Creates a token named `name` and returns it with its secret, the only
/// time the secret exists outside the caller.
pub fn create(
    paths: &Paths,
    name: &str,
    poe_api_key: Option<String>,
) -> anyhow::Result<(Token, String)> {
    let name = name.trim();
    if name.is_empty() {
        anyhow::bail!("a token needs a name (who or what uses it)");
    }
    let mut file = read(&paths.tokens())?;
    if file.tokens.iter().any(|t| t.name == name) {
        anyhow::bail!("a token named '{name}' exists; revoke it first or pick another name");
    }
    // Two v4 UUIDs: 244 bits from the OS's random source.
    let mut secret = Vec::with_capacity(32);
    secret.extend_from_slice(uuid::Uuid::new_v4().as_bytes());
    secret.extend_from_slice(uuid::Uuid::new_v4().as_bytes());
    let id = uuid::Uuid::new_v4().simple().to_string()[..8].to_string();
    let secret = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(secret);
    let value = format!("{PREFIX}{id}_{secret}");
    let token = Token {
        id,
        name: name.to_string(),
        sha256: digest(&value),
        created: SystemTime::now()
            .duration_since(SystemTime::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs()),
        poe_api_key,
    };
    file.tokens.push(token.clone());
    write(paths, &file)?;
    Ok((token, value))
}

/// All tokens, oldest first.
pub fn list(paths: &Paths) -> anyhow::Result<Vec<Token>> {
    Ok(read(&paths.tokens())?.tokens)
}

/// Removes the token with this id or name; false when there is none.
pub fn revoke(paths: &Paths, id_or_name: &str) -> anyhow::Result<bool> {
    let mut file = read(&paths.tokens())?;
    let before = file.tokens.len();
    file.tokens
        .retain(|t| t.id != id_or_name && t.name != id_or_name);
    if file.tokens.len() == before {
        return Ok(false);
    }
    write(paths, &file)?;
    Ok(true)
}

/// What identifies one version of the token file: mtime, length, inode.
type Stamp = (SystemTime, u64, u64);

/// The daemon's view of the token file, re-read whenever it changes.
pub struct TokenCheck {
    path: PathBuf,
    cached: Mutex<(Option<Stamp>, Vec<Token>)>,
}

impl TokenCheck {
    pub fn new(paths: &Paths) -> Self {
        Self {
            path: paths.tokens(),
            cached: Mutex::new((None, Vec::new())),
        }
    }

    /// The stored token `presented` is, if any. A file that cannot be read
    /// accepts nothing (and says why in the log).
    pub fn verify(&self, presented: &str) -> Option<Token> {
        use std::os::unix::fs::MetadataExt;
        // A rewrite is a rename onto the path: a new inode.
        let stamp = std::fs::metadata(&self.path).ok().map(|m| {
            (
                m.modified().unwrap_or(SystemTime::UNIX_EPOCH),
                m.len(),
                m.ino(),
            )
        });
        let mut cached = self.cached.lock().unwrap_or_else(|e| e.into_inner());
        if cached.0 != stamp || stamp.is_none() {
            cached.1 = match read(&self.path) {
                Ok(file) => file.tokens,
                Err(e) => {
                    tracing::error!(error = %format!("{e:#}"), "token file unreadable; refusing every token");
                    Vec::new()
                }
            };
            cached.0 = stamp;
        }
        let id = presented.strip_prefix(PREFIX)?.split('_').next()?;
        let want = digest(presented);
        cached
            .1
            .iter()
            .find(|t| t.id == id && constant_time_eq(t.sha256.as_bytes(), want.as_bytes()))
            .cloned()
    }
}

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_token_is_stored_hashed_verified_and_revoked() {
        let dir = tempfile::tempdir().unwrap();
        let paths = Paths::at(dir.path().to_path_buf());
        let (token, secret) = create(&paths, "ci", Some("sk-own".into())).unwrap();
        assert!(secret.starts_with(PREFIX));
        let stored = std::fs::read_to_string(paths.tokens()).unwrap();
        assert!(!stored.contains(&secret), "the secret is never stored");
        assert!(stored.contains(&token.sha256));
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(paths.tokens())
                .unwrap()
                .permissions()
                .mode();
            assert_eq!(mode & 0o777, 0o600);
        }
        assert!(create(&paths, "ci", None).is_err(), "names are unique");

        let check = TokenCheck::new(&paths);
        let found = check.verify(&secret).expect("valid token");
        assert_eq!(found.name, "ci");
        assert_eq!(found.poe_api_key.as_deref(), Some("sk-own"));
        let mut wrong = secret.clone();
        wrong.pop();
        wrong.push('x');
        assert!(check.verify(&wrong).is_none());
        assert!(check.verify("Bearer nonsense").is_none());

        assert!(revoke(&paths, "ci").unwrap());
        assert!(
            check.verify(&secret).is_none(),
            "revocation takes effect at once"
        );
        assert!(!revoke(&paths, "ci").unwrap());
    }
}
