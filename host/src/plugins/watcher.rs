//! Hot reload: watches the plugin directories and reloads a plugin once its
//! file has settled, exactly once per real change.
//!
//! - Only events that can change a plugin file count: create, data
//!   modification, rename and removal of a library file directly in a plugin
//!   dir. Opens, reads and attribute changes do not (the daemon's own load
//!   reads the file), nor do other names (installers write a temporary name
//!   and rename it over the library).
//! - Builds and copies write a library in several steps, so an event only
//!   marks the file as pending; it is looked at once its size and mtime have
//!   not changed for [`SETTLE`].
//! - A settled file whose bytes equal the version serving is left alone
//!   (`touch`, identical rewrites), so a swap maps exactly one new library.
//! - A plugin dir that does not exist yet is watched through its nearest
//!   existing parent and watched itself once it appears (`plugins install`
//!   creates it), and loaded then; a removed dir goes back to its parent.
//!
//! A new file adds a plugin, a removed one retires its plugin, and a file
//! that fails to load leaves the old version serving.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use notify::event::ModifyKind;
use notify::{EventKind, RecommendedWatcher, RecursiveMode, Watcher};
use tokio::sync::mpsc;

use super::Registry;
use super::loader::is_plugin_file;

/// How long a file must stay unchanged before it is loaded.
pub const SETTLE: Duration = Duration::from_millis(300);
/// How often pending files are checked.
const TICK: Duration = Duration::from_millis(50);

/// What a pending file looked like when last checked.
struct Pending {
    fingerprint: Option<(u64, SystemTime)>,
    unchanged_since: Instant,
}

fn fingerprint(path: &Path) -> Option<(u64, SystemTime)> {
    let meta = std::fs::metadata(path).ok()?;
    Some((meta.len(), meta.modified().ok()?))
}

/// The watcher's report of one relevant event.
enum Change {
    /// These paths were created, written, renamed or removed.
    Paths(Vec<PathBuf>),
    /// Events were lost (queue overflow): look at everything again.
    Rescan,
}

/// Whether an event of this kind can change which bytes a path holds.
fn changes_content(kind: &EventKind) -> bool {
    match kind {
        EventKind::Create(_) | EventKind::Remove(_) => true,
        EventKind::Modify(ModifyKind::Data(_) | ModifyKind::Name(_)) => true,
        // Backends that cannot tell what changed.
        EventKind::Modify(ModifyKind::Any | ModifyKind::Other) => true,
        // Attributes (touch, chmod), opens, reads and closes, including the
        // daemon's own read when it loads the file: the bytes are the same.
        EventKind::Modify(ModifyKind::Metadata(_)) => false,
        EventKind::Access(_) | EventKind::Any | EventKind::Other => false,
    }
}

/// Stops hot reload when dropped.
pub struct WatchHandle {
    task: tokio::task::AbortHandle,
}

impl Drop for WatchHandle {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Starts watching the registry's plugin dirs; hot reload runs until the
/// returned handle is dropped.
pub fn spawn(registry: Arc<Registry>) -> notify::Result<WatchHandle> {
    let (tx, rx) = mpsc::unbounded_channel::<Change>();
    let dirs = registry.dirs().to_vec();
    let relevant = {
        let dirs = dirs.clone();
        // A parent watched for a missing dir (often the state dir, where
        // state.db is written all the time) reports much else.
        move |path: &PathBuf| is_plugin_path(&dirs, path) || affects_watches(&dirs, path)
    };
    let watcher =
        notify::recommended_watcher(move |event: notify::Result<notify::Event>| match event {
            Ok(event) if event.need_rescan() => {
                let _ = tx.send(Change::Rescan);
            }
            Ok(event) if changes_content(&event.kind) => {
                let paths: Vec<PathBuf> = event.paths.into_iter().filter(&relevant).collect();
                if !paths.is_empty() {
                    let _ = tx.send(Change::Paths(paths));
                }
            }
            Ok(_) => {}
            Err(e) => tracing::warn!(error = %e, "plugin dir watch failed"),
        })?;
    let dirs = DirWatches {
        watcher,
        dirs,
        targets: BTreeMap::new(),
    };
    let task = tokio::spawn(settle_loop(registry, dirs, rx));
    Ok(WatchHandle {
        task: task.abort_handle(),
    })
}

/// The watches behind the plugin dirs: each dir itself when it exists, else
/// its nearest existing parent.
struct DirWatches {
    watcher: RecommendedWatcher,
    dirs: Vec<PathBuf>,
    /// Plugin dir -> the path watched for it.
    targets: BTreeMap<PathBuf, PathBuf>,
}

impl DirWatches {
    /// What should be watched for `dir` now.
    fn wanted(dir: &Path) -> Option<PathBuf> {
        if dir.is_dir() {
            return Some(dir.to_path_buf());
        }
        dir.ancestors()
            .skip(1)
            .find(|a| a.is_dir())
            .map(Path::to_path_buf)
    }

    /// Brings the watches in line with the file system; returns whether
    /// they changed, so that the plugin files must be looked at again (a dir
    /// that appeared holds files to load, one that went away plugins to retire).
    fn refresh(&mut self, registry: &Registry) -> bool {
        let initial = self.targets.clone();
        // A dir created between looking and watching would be missed, so
        // look again after each change until nothing moves.
        for _ in 0..8 {
            let wanted: BTreeMap<PathBuf, PathBuf> = self
                .dirs
                .iter()
                .filter_map(|d| Some((d.clone(), Self::wanted(d)?)))
                .collect();
            if wanted == self.targets {
                break;
            }
            let before: BTreeSet<PathBuf> = self.targets.values().cloned().collect();
            let after: BTreeSet<PathBuf> = wanted.values().cloned().collect();
            for gone in before.difference(&after) {
                // Fails when the path itself was deleted; the watch is gone then anyway.
                let _ = self.watcher.unwatch(gone);
            }
            let mut failed = BTreeSet::new();
            for new in after.difference(&before) {
                match self.watcher.watch(new, RecursiveMode::NonRecursive) {
                    Ok(()) => tracing::debug!(path = %new.display(), "watching"),
                    Err(e) => {
                        tracing::warn!(path = %new.display(), error = %e, "cannot watch; hot reload misses changes there");
                        failed.insert(new.clone());
                    }
                }
            }
            for dir in &self.dirs {
                let target = wanted.get(dir).filter(|t| !failed.contains(*t));
                if target.is_some_and(|t| t == dir) && self.targets.get(dir) != Some(dir) {
                    tracing::info!(dir = %dir.display(), "watching plugin dir");
                } else if target.is_some_and(|t| t != dir) && self.targets.get(dir) != target {
                    tracing::info!(
                        dir = %dir.display(),
                        parent = %target.map(|t| t.display().to_string()).unwrap_or_default(),
                        "plugin dir does not exist yet; watching its parent for it"
                    );
                }
                registry.set_watching(dir, target.cloned());
            }
            self.targets = wanted
                .into_iter()
                .filter(|(_, t)| !failed.contains(t))
                .collect();
        }
        self.targets != initial
    }
}

/// Whether `path` is one of `dirs` or a parent of one, so that its creation,
/// removal or renaming can change what must be watched.
fn affects_watches(dirs: &[PathBuf], path: &Path) -> bool {
    dirs.iter().any(|d| d.starts_with(path))
}

/// Whether `path` is a library file directly in one of `dirs`.
fn is_plugin_path(dirs: &[PathBuf], path: &Path) -> bool {
    is_plugin_file(path) && path.parent().is_some_and(|p| dirs.iter().any(|d| d == p))
}

/// Loads any plugin file not loaded yet (off the reactor: loading runs the
/// library's code).
async fn rescan(registry: &Arc<Registry>) {
    let registry = registry.clone();
    let _ = tokio::task::spawn_blocking(move || registry.rescan()).await;
}

async fn settle_loop(
    registry: Arc<Registry>,
    mut dirs: DirWatches,
    mut events: mpsc::UnboundedReceiver<Change>,
) {
    dirs.refresh(&registry);
    // Files that arrived between the first scan and the watches.
    rescan(&registry).await;
    let mut pending: HashMap<PathBuf, Pending> = HashMap::new();
    let mut tick = tokio::time::interval(TICK);
    loop {
        tokio::select! {
            change = events.recv() => {
                let paths = match change {
                    Some(Change::Paths(paths)) => paths,
                    Some(Change::Rescan) => {
                        dirs.refresh(&registry);
                        rescan(&registry).await;
                        // Anything may have changed; unchanged files are skipped by hash.
                        registry.plugins().iter().map(|p| p.source.clone()).collect()
                    }
                    None => return,
                };
                if paths.iter().any(|p| affects_watches(&dirs.dirs, p)) && dirs.refresh(&registry) {
                    rescan(&registry).await;
                }
                for path in paths.into_iter().filter(|p| is_plugin_path(&dirs.dirs, p)) {
                    pending.insert(path.clone(), Pending {
                        fingerprint: fingerprint(&path),
                        unchanged_since: Instant::now(),
                    });
                }
            },
            _ = tick.tick(), if !pending.is_empty() => {
                let mut ready = Vec::new();
                for (path, state) in pending.iter_mut() {
                    let now = fingerprint(path);
                    if now != state.fingerprint {
                        state.fingerprint = now;
                        state.unchanged_since = Instant::now();
                    } else if state.unchanged_since.elapsed() >= SETTLE {
                        ready.push(path.clone());
                    }
                }
                for path in ready {
                    let exists = pending.remove(&path).is_some_and(|s| s.fingerprint.is_some());
                    let registry = registry.clone();
                    // Loading maps a library and runs its code: off the reactor.
                    let _ = tokio::task::spawn_blocking(move || {
                        if !exists {
                            registry.remove_file(&path);
                            return;
                        }
                        match registry.load_file_if_changed(&path) {
                            None => {}
                            Some(Ok(id)) => tracing::info!(file = %path.display(), %id, "hot reload done"),
                            Some(Err(reason)) => tracing::warn!(file = %path.display(), %reason, "hot reload refused; previous version keeps serving"),
                        }
                    })
                    .await;
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use notify::event::{AccessKind, CreateKind, DataChange, MetadataKind, RemoveKind, RenameMode};

    #[test]
    fn only_events_that_can_change_bytes_count() {
        assert!(changes_content(&EventKind::Create(CreateKind::File)));
        assert!(changes_content(&EventKind::Modify(ModifyKind::Data(
            DataChange::Any
        ))));
        assert!(changes_content(&EventKind::Modify(ModifyKind::Name(
            RenameMode::To
        ))));
        assert!(changes_content(&EventKind::Remove(RemoveKind::File)));
        // What the daemon's own load of a file causes, and `touch`.
        assert!(!changes_content(&EventKind::Access(AccessKind::Any)));
        assert!(!changes_content(&EventKind::Modify(ModifyKind::Metadata(
            MetadataKind::Any
        ))));
    }

    #[test]
    fn a_missing_dir_is_watched_through_its_nearest_parent() {
        let root = tempfile::tempdir().unwrap();
        let dir = root.path().join("a/b/plugins");
        assert_eq!(DirWatches::wanted(&dir).as_deref(), Some(root.path()));
        std::fs::create_dir_all(root.path().join("a")).unwrap();
        assert_eq!(DirWatches::wanted(&dir), Some(root.path().join("a")));
        std::fs::create_dir_all(&dir).unwrap();
        assert_eq!(DirWatches::wanted(&dir), Some(dir));
    }
}
