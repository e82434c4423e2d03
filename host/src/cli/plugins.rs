//! `poe-code plugins install`: builds a plugin crate (or takes a built
//! library), checks that it loads through the ABI, and puts it where the
//! daemon looks. A running daemon picks the new file up by hot reload.
//!
//! `cargo install` installs binaries, not cdylibs, so this is how both the
//! bundled plugins and third-party ones get installed.

use std::io::BufRead;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use anyhow::{Context, bail};
use poe_plugin_api::host::Library;
use serde::Deserialize;

use crate::config::{self, Paths};
use crate::plugins::loader::{LIB_EXTENSION, plugin_files};

/// One line of `cargo build --message-format=json` that we care about.
#[derive(Deserialize)]
struct CargoMessage {
    reason: String,
    #[serde(default)]
    manifest_path: Option<PathBuf>,
    #[serde(default)]
    target: Option<CargoTarget>,
    #[serde(default)]
    filenames: Vec<PathBuf>,
}

#[derive(Deserialize)]
struct CargoTarget {
    kind: Vec<String>,
}

/// Installs each of `sources` (a crate dir or a built library) into `dir`,
/// or into the first plugin dir when `dir` is `None`.
pub fn install(
    paths: &Paths,
    sources: &[PathBuf],
    profile: &str,
    dir: Option<PathBuf>,
) -> anyhow::Result<()> {
    let dest = dir.unwrap_or_else(|| default_dir(paths));
    prepare_dir(&dest)?;
    // Build and check everything before installing anything, so one bad
    // source leaves the plugin dir as it was.
    let mut checked = Vec::new();
    for source in sources {
        let library = if source.is_dir() {
            build(source, profile)?
        } else if source.is_file() {
            source.clone()
        } else {
            bail!("{}: no such crate dir or library file", source.display());
        };
        let summary = check(paths, &library)
            .with_context(|| format!("{} was not installed", library.display()))?;
        checked.push((library, summary));
    }
    for (library, summary) in checked {
        let target = copy_atomically(&library, &dest)?;
        eprintln!("installed {summary}\n  -> {}", target.display());
    }
    eprintln!("A running poe-coded loads new and changed plugins within about a second.");
    Ok(())
}

/// `$POE_CODE_PLUGIN_DIR`'s first entry when set, else `~/.poe-code/plugins`.
fn default_dir(paths: &Paths) -> PathBuf {
    match std::env::var_os(config::PLUGIN_DIR_ENV).filter(|v| !v.is_empty()) {
        Some(dirs) => std::env::split_paths(&dirs)
            .next()
            .unwrap_or_else(|| paths.user_plugins()),
        None => paths.user_plugins(),
    }
}

/// Creates `dir` (private) if missing; refuses one the daemon would refuse.
fn prepare_dir(dir: &Path) -> anyhow::Result<()> {
    use std::os::unix::fs::DirBuilderExt;
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
        .with_context(|| format!("cannot create plugin dir {}", dir.display()))?;
    plugin_files(dir).map_err(|reason| anyhow::anyhow!("{}: {reason}", dir.display()))?;
    Ok(())
}

/// Builds the cdylib of the crate in `dir` and returns its path.
fn build(dir: &Path, profile: &str) -> anyhow::Result<PathBuf> {
    let manifest = dir.join("Cargo.toml");
    let manifest = manifest
        .canonicalize()
        .with_context(|| format!("{} is not a crate dir", dir.display()))?;
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    eprintln!("building {} ({profile})", dir.display());
    let mut child = Command::new(cargo)
        .args(["build", "--lib", "--message-format=json-render-diagnostics"])
        .arg("--profile")
        .arg(profile)
        .arg("--manifest-path")
        .arg(&manifest)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .context("cannot run cargo")?;
    let mut built = None;
    if let Some(stdout) = child.stdout.take() {
        for line in std::io::BufReader::new(stdout).lines() {
            let Ok(message) = serde_json::from_str::<CargoMessage>(&line?) else {
                continue;
            };
            let ours = message.manifest_path.as_deref() == Some(manifest.as_path());
            let cdylib = message
                .target
                .is_some_and(|t| t.kind.iter().any(|k| k == "cdylib"));
            if message.reason == "compiler-artifact" && ours && cdylib {
                built = message
                    .filenames
                    .into_iter()
                    .find(|f| f.extension().is_some_and(|e| e == LIB_EXTENSION));
            }
        }
    }
    let status = child.wait().context("cargo did not finish")?;
    if !status.success() {
        bail!(
            "cargo build failed for {}; nothing was installed",
            dir.display()
        );
    }
    built.with_context(|| {
        format!(
            "{} built no cdylib; a plugin crate sets crate-type = [\"cdylib\"] in [lib]",
            dir.display()
        )
    })
}

/// Loads `library` through the ABI as the daemon would (from a private
/// copy) and describes it; fails for anything the daemon would refuse.
fn check(paths: &Paths, library: &Path) -> anyhow::Result<String> {
    let copies = paths.plugin_copies();
    config::ensure_private_dir(&copies)
        .with_context(|| format!("cannot create {}", copies.display()))?;
    let loaded = Library::load_copy(library, &copies)?;
    let manifest = loaded.manifest();
    Ok(format!(
        "{} {} (plugin-api {}), models [{}]",
        manifest.id,
        manifest.version,
        loaded.api_version(),
        manifest.models.join(", ")
    ))
}

/// Copies `library` into `dest` under its own file name, by rename, so the
/// daemon's watcher never sees a half-written library.
fn copy_atomically(library: &Path, dest: &Path) -> anyhow::Result<PathBuf> {
    use std::os::unix::fs::PermissionsExt;
    let name = library
        .file_name()
        .with_context(|| format!("{} has no file name", library.display()))?;
    let target = dest.join(name);
    // Not a library name, so the watcher ignores it until the rename.
    let partial = dest.join(format!(
        ".{}.installing-{}",
        name.to_string_lossy(),
        std::process::id()
    ));
    let result = std::fs::copy(library, &partial)
        .and_then(|_| std::fs::set_permissions(&partial, std::fs::Permissions::from_mode(0o644)))
        .and_then(|()| std::fs::rename(&partial, &target));
    if let Err(e) = result {
        let _ = std::fs::remove_file(&partial);
        return Err(e).with_context(|| format!("cannot install into {}", dest.display()));
    }
    Ok(target)
}
