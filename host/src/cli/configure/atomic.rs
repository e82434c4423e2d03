//! Safe writes to a user's config file: a one-time backup, then an atomic
//! replace (temp file in the same directory, fsync, rename) that keeps the file's
//! mode and owner and follows a symlinked dotfile to its real location.

use std::ffi::OsString;
use std::fs::{self, File, OpenOptions, Permissions};
use std::io::{self, Write};
use std::os::unix::fs::{MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

/// Mode of a config file we create: these files can hold tokens.
pub const NEW_FILE_MODE: u32 = 0o600;

/// Why a replace did not happen.
#[derive(Debug, thiserror::Error)]
pub enum ReplaceError {
    /// The file changed after we read it (the client rewrote it meanwhile).
    #[error("the file changed while it was being edited")]
    Changed,
    #[error(transparent)]
    Io(#[from] io::Error),
}

/// The file's bytes, or `None` when it does not exist.
pub fn read(path: &Path) -> io::Result<Option<Vec<u8>>> {
    match fs::read(path) {
        Ok(bytes) => Ok(Some(bytes)),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(e),
    }
}

/// `<path>.poe-code.bak`.
pub fn backup_path(path: &Path) -> PathBuf {
    let mut name = OsString::from(path.as_os_str());
    name.push(".poe-code.bak");
    PathBuf::from(name)
}

/// Saves `original` as [`backup_path`] unless a backup already exists, so the
/// backup always holds the file as it was before poe-code first touched it.
/// Returns the backup's path when one was written now.
pub fn backup_once(path: &Path, original: &[u8]) -> io::Result<Option<PathBuf>> {
    let backup = backup_path(path);
    if fs::symlink_metadata(&backup).is_ok() {
        return Ok(None);
    }
    // As private as the original (which may hold tokens), never more open.
    let mode = fs::metadata(path).map_or(NEW_FILE_MODE, |m| m.mode() & 0o7777);
    let mut file = match OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(NEW_FILE_MODE)
        .open(&backup)
    {
        Ok(file) => file,
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => return Ok(None),
        Err(e) => return Err(e),
    };
    file.write_all(original)?;
    file.set_permissions(Permissions::from_mode(mode))?;
    file.sync_all()?;
    Ok(Some(backup))
}

/// Replaces `path` with `contents`, provided it still holds `expected` (`None`:
/// still does not exist). Readers see the old file or the new one, never a mix.
pub fn replace(path: &Path, contents: &[u8], expected: Option<&[u8]>) -> Result<(), ReplaceError> {
    // Write through a symlink (dotfile managers link ~/.claude.json and the like)
    // instead of replacing the link with a plain file.
    let target = fs::canonicalize(path).unwrap_or_else(|_| path.to_path_buf());
    let dir = match target.parent() {
        Some(dir) if !dir.as_os_str().is_empty() => dir.to_path_buf(),
        _ => PathBuf::from("."),
    };
    let existing = match fs::metadata(&target) {
        Ok(meta) => Some(meta),
        Err(e) if e.kind() == io::ErrorKind::NotFound => {
            fs::create_dir_all(&dir)?;
            None
        }
        Err(e) => return Err(e.into()),
    };
    let file_name = target
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let mut temp = TempFile {
        path: dir.join(format!(".{file_name}.poe-code-{}.tmp", std::process::id())),
        renamed: false,
    };

    let mut file = match open_new(&temp.path) {
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {
            // Left by a crashed run that had our pid.
            fs::remove_file(&temp.path)?;
            open_new(&temp.path)?
        }
        other => other?,
    };
    file.write_all(contents)?;
    let mode = existing
        .as_ref()
        .map_or(NEW_FILE_MODE, |m| m.mode() & 0o7777);
    file.set_permissions(Permissions::from_mode(mode))?;
    if let Some(meta) = &existing {
        // Matters only when run as another user (e.g. root for someone); a plain
        // user cannot give files away, and the file is theirs already.
        let _ = std::os::unix::fs::fchown(&file, Some(meta.uid()), Some(meta.gid()));
    }
    file.sync_all()?;
    drop(file);

    // Narrow the window in which a client's own write could be lost to ours.
    if read(&target)?.as_deref() != expected {
        return Err(ReplaceError::Changed);
    }
    fs::rename(&temp.path, &target)?;
    temp.renamed = true;
    // The rename is durable only once the directory is synced.
    if let Ok(dir) = File::open(&dir) {
        let _ = dir.sync_all();
    }
    Ok(())
}

fn open_new(path: &Path) -> io::Result<File> {
    OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(NEW_FILE_MODE)
        .open(path)
}

/// Deletes the temp file unless it was renamed into place.
struct TempFile {
    path: PathBuf,
    renamed: bool,
}

impl Drop for TempFile {
    fn drop(&mut self) {
        if !self.renamed {
            let _ = fs::remove_file(&self.path);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn replace_keeps_mode_and_leaves_no_temp_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("config.toml");
        fs::write(&path, b"old").unwrap();
        fs::set_permissions(&path, Permissions::from_mode(0o640)).unwrap();
        replace(&path, b"new", Some(b"old")).unwrap();
        assert_eq!(fs::read(&path).unwrap(), b"new");
        assert_eq!(fs::metadata(&path).unwrap().mode() & 0o7777, 0o640);
        let names: Vec<_> = fs::read_dir(dir.path()).unwrap().collect();
        assert_eq!(names.len(), 1);
    }

    #[test]
    fn replace_creates_missing_files_privately_with_their_directory() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(".codex/config.toml");
        replace(&path, b"x = 1\n", None).unwrap();
        assert_eq!(fs::read(&path).unwrap(), b"x = 1\n");
        assert_eq!(fs::metadata(&path).unwrap().mode() & 0o777, NEW_FILE_MODE);
    }

    #[test]
    fn replace_refuses_when_the_file_changed_meanwhile() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("a.json");
        fs::write(&path, b"theirs").unwrap();
        let err = replace(&path, b"ours", Some(b"before")).unwrap_err();
        assert!(matches!(err, ReplaceError::Changed));
        assert_eq!(fs::read(&path).unwrap(), b"theirs");
        assert_eq!(fs::read_dir(dir.path()).unwrap().count(), 1);
        let err = replace(&dir.path().join("b.json"), b"ours", Some(b"gone")).unwrap_err();
        assert!(matches!(err, ReplaceError::Changed));
    }

    #[test]
    fn replace_writes_through_symlinks() {
        let dir = tempfile::tempdir().unwrap();
        let real = dir.path().join("dotfiles/claude.json");
        fs::create_dir_all(real.parent().unwrap()).unwrap();
        fs::write(&real, b"{}").unwrap();
        let link = dir.path().join(".claude.json");
        std::os::unix::fs::symlink(&real, &link).unwrap();
        replace(&link, b"{\"a\":1}", Some(b"{}")).unwrap();
        assert!(
            fs::symlink_metadata(&link)
                .unwrap()
                .file_type()
                .is_symlink()
        );
        assert_eq!(fs::read(&real).unwrap(), b"{\"a\":1}");
    }

    #[test]
    fn backup_is_written_once_with_the_originals_mode() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(".claude.json");
        fs::write(&path, b"first").unwrap();
        fs::set_permissions(&path, Permissions::from_mode(0o600)).unwrap();
        let backup = backup_once(&path, b"first").unwrap().unwrap();
        assert_eq!(backup, dir.path().join(".claude.json.poe-code.bak"));
        assert_eq!(fs::metadata(&backup).unwrap().mode() & 0o777, 0o600);
        assert_eq!(backup_once(&path, b"second").unwrap(), None);
        assert_eq!(fs::read(&backup).unwrap(), b"first");
    }
}
