//! Finds plugin libraries in the plugin directories and loads each through the
//! ABI from a private copy.
//!
//! Loading a library runs its code, so a directory another user can write to
//! is refused. Each load maps a fresh copy at a unique path because a path
//! that was loaded once keeps answering with its first mapping; the copy is
//! deleted right after `dlopen` (the mapping outlives the file).

use std::path::{Path, PathBuf};
use std::time::SystemTime;

use poe_plugin_api::Config;
use poe_plugin_api::host::Library;

use super::registry::LoadedPlugin;
use crate::ipc::status::PluginLoadError;

/// File extension of dynamic libraries on this platform.
pub const LIB_EXTENSION: &str = std::env::consts::DLL_EXTENSION;

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
        .filter(|p| p.extension().is_some_and(|ext| ext == LIB_EXTENSION) && p.is_file())
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

/// Loads and opens the plugin in `file`.
pub fn load_plugin(file: &Path, copies_dir: &Path) -> Result<LoadedPlugin, PluginLoadError> {
    let fail = |reason: String| PluginLoadError {
        path: file.display().to_string(),
        reason,
    };
    crate::config::ensure_private_dir(copies_dir)
        .map_err(|e| fail(format!("cannot create {}: {e}", copies_dir.display())))?;
    let library = Library::load_copy(file, copies_dir).map_err(|e| fail(e.to_string()))?;
    let config = config_for(&library.manifest().config_keys);
    let provider = library
        .open(&config)
        .map_err(|e| fail(format!("open failed: {e}")))?;
    Ok(LoadedPlugin {
        manifest: library.manifest().clone(),
        api_version: library.api_version().to_string(),
        source: file.to_path_buf(),
        provider,
        loaded_at: SystemTime::now(),
    })
}

/// The `open` config of a plugin: each declared key read from the environment.
fn config_for(keys: &[String]) -> Config {
    keys.iter()
        .filter_map(|k| std::env::var(k).ok().map(|v| (k.clone(), v)))
        .collect()
}
