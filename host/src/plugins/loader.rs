//! Finds plugin libraries in the plugin directories and loads each through the
//! ABI from a private copy.
//!
//! Loading a library runs its code, so a directory another user can write to
//! is refused. Each load maps a fresh copy at a unique path because a path
//! that was loaded once keeps answering with its first mapping; the copy is
//! deleted right after `dlopen` (the mapping outlives the file). The copy is
//! hashed as it is written, so the registry knows exactly which bytes serve
//! and hot reload can skip a file that did not really change.

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::SystemTime;

use poe_plugin_api::host::Library;

use super::registry::LoadedPlugin;
use crate::config::file::SettingValue;
use crate::config::plugin_settings;
use crate::ipc::status::PluginLoadError;

/// File extension of dynamic libraries on this platform.
pub const LIB_EXTENSION: &str = std::env::consts::DLL_EXTENSION;

/// The `[plugins.<id>]` tables of config.toml, by plugin id.
pub type SettingsTables = BTreeMap<String, BTreeMap<String, SettingValue>>;

/// Whether `path` names a plugin library: the platform's library extension
/// and not hidden. Installers write under a hidden or other temporary name
/// and rename, so those names are never loaded half-written.
pub fn is_plugin_file(path: &Path) -> bool {
    let hidden = path
        .file_name()
        .is_some_and(|n| n.to_string_lossy().starts_with('.'));
    !hidden && path.extension().is_some_and(|ext| ext == LIB_EXTENSION)
}

/// Lists the plugin library files of `dir`, sorted; refuses unsafe dirs.
pub fn plugin_files(dir: &Path) -> Result<Vec<PathBuf>, String> {
    let meta = match std::fs::metadata(dir) {
        Ok(meta) => meta,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(format!("cannot read plugin dir: {e}")),
    };
    check_dir_is_private(&meta)?;
    let entries = std::fs::read_dir(dir).map_err(|e| format!("cannot list plugin dir: {e}"))?;
    let mut files: Vec<PathBuf> = entries
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| is_plugin_file(p) && p.is_file())
        .collect();
    files.sort();
    Ok(files)
}

fn check_dir_is_private(meta: &std::fs::Metadata) -> Result<(), String> {
    use std::os::unix::fs::MetadataExt;
    // SAFETY: geteuid has no preconditions and cannot fail.
    let me = unsafe { libc::geteuid() };
    if meta.uid() != me && meta.uid() != 0 {
        return Err(format!(
            "refused: plugin dir is owned by uid {}, not by you (uid {me}) or root",
            meta.uid()
        ));
    }
    if meta.mode() & 0o022 != 0 {
        return Err(format!(
            "refused: plugin dir is writable by other users (mode {:o}); run chmod go-w on it",
            meta.mode() & 0o777
        ));
    }
    Ok(())
}

/// Loads and opens the plugin in `file`, with its settings from the
/// environment over `tables`.
pub fn load_plugin(
    file: &Path,
    copies_dir: &Path,
    tables: &SettingsTables,
) -> Result<LoadedPlugin, PluginLoadError> {
    let fail = |reason: String| PluginLoadError {
        path: file.display().to_string(),
        reason,
    };
    crate::config::ensure_private_dir(copies_dir)
        .map_err(|e| fail(format!("cannot create {}: {e}", copies_dir.display())))?;
    let (copy, hash) = private_copy(file, copies_dir)
        .map_err(|e| fail(format!("cannot copy {} for loading: {e}", file.display())))?;
    let library = Library::load_from_copy(file, &copy).map_err(|e| fail(e.to_string()))?;
    let manifest = library.manifest().clone();
    let settings = plugin_settings::resolve(
        &manifest.config_keys,
        tables.get(&manifest.id),
        plugin_settings::process_env,
    );
    let provider = library
        .open(&settings.config)
        .map_err(|e| fail(format!("open failed: {e}")))?;
    Ok(LoadedPlugin {
        manifest,
        api_version: library.api_version().to_string(),
        source: file.to_path_buf(),
        provider,
        loaded_at: SystemTime::now(),
        hash,
        settings: settings.report,
        ignored_settings: settings.ignored,
    })
}

/// Hash of a file's content, comparable with [`LoadedPlugin::hash`].
pub fn content_hash(file: &Path) -> std::io::Result<u64> {
    hash_file(file, None)
}

/// Copies `file` to a new hidden, unique path in `copies_dir` and returns
/// it with the content's hash.
fn private_copy(file: &Path, copies_dir: &Path) -> std::io::Result<(PathBuf, u64)> {
    use std::os::unix::fs::OpenOptionsExt;
    static COPIES: AtomicU64 = AtomicU64::new(0);
    let stem = file
        .file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_else(|| "plugin".into());
    let copy = copies_dir.join(format!(
        ".{stem}-{}-{}.{LIB_EXTENSION}",
        std::process::id(),
        COPIES.fetch_add(1, Ordering::Relaxed)
    ));
    let mut out = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o700)
        .open(&copy)?;
    match hash_file(file, Some(&mut out)) {
        Ok(hash) => Ok((copy, hash)),
        Err(e) => {
            drop(out);
            let _ = std::fs::remove_file(&copy);
            Err(e)
        }
    }
}

/// Hashes `file` (and writes it to `copy` on the way). XXH3: a plugin is
/// tens of megabytes and is hashed on every load and every change event, so
/// speed matters; this tells versions apart and is no security boundary
/// (whoever can write a plugin dir can run code anyway).
fn hash_file(file: &Path, mut copy: Option<&mut std::fs::File>) -> std::io::Result<u64> {
    let mut source = std::fs::File::open(file)?;
    let mut hasher = xxhash_rust::xxh3::Xxh3Default::new();
    let mut buf = vec![0u8; 1 << 20];
    let mut len = 0u64;
    loop {
        let n = source.read(&mut buf)?;
        if n == 0 {
            break;
        }
        hasher.update(&buf[..n]);
        len += n as u64;
        if let Some(out) = copy.as_mut() {
            out.write_all(&buf[..n])?;
        }
    }
    hasher.update(&len.to_le_bytes());
    Ok(hasher.digest())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn temporary_and_hidden_names_are_not_plugins() {
        let so = |name: &str| PathBuf::from("/p").join(format!("{name}.{LIB_EXTENSION}"));
        assert!(is_plugin_file(&so("libpoe_openai")));
        assert!(!is_plugin_file(&so(".libpoe_openai")));
        assert!(!is_plugin_file(Path::new("/p/libpoe_openai.partial")));
        assert!(!is_plugin_file(Path::new(
            "/p/.libpoe_openai.so.installing-42"
        )));
    }

    #[test]
    fn the_copy_holds_the_same_bytes_and_hash_as_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("lib.so");
        // Larger than one read buffer, so chunking is exercised.
        let bytes: Vec<u8> = (0..3_000_000u32).map(|i| (i % 251) as u8).collect();
        std::fs::write(&file, &bytes).unwrap();
        let copies = dir.path().join("copies");
        std::fs::create_dir(&copies).unwrap();
        let (copy, hash) = private_copy(&file, &copies).unwrap();
        assert_eq!(std::fs::read(&copy).unwrap(), bytes);
        assert_eq!(content_hash(&file).unwrap(), hash);
        assert!(!is_plugin_file(&copy), "private copies are hidden");
        std::fs::write(&file, &bytes[1..]).unwrap();
        assert_ne!(content_hash(&file).unwrap(), hash);
    }
}
