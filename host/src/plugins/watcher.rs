//! Hot reload: watches the plugin directories and reloads a plugin once its
//! file has settled.
//!
//! Builds and copies write a library in several steps, so an event only
//! marks the file as pending; it is loaded once its size and mtime have not
//! changed for [`SETTLE`]. A new file adds a plugin, a removed one retires
//! its plugin, and a file that fails to load leaves the old version serving.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use notify::{RecursiveMode, Watcher};
use tokio::sync::mpsc;

use super::Registry;
use super::loader::LIB_EXTENSION;

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

fn is_plugin_file(path: &Path) -> bool {
    path.extension().is_some_and(|e| e == LIB_EXTENSION)
}

/// Starts watching; the returned watcher must be kept alive.
pub fn spawn(registry: Arc<Registry>) -> notify::Result<notify::RecommendedWatcher> {
    let (tx, rx) = mpsc::unbounded_channel::<PathBuf>();
    let mut watcher = notify::recommended_watcher(move |event: notify::Result<notify::Event>| {
        if let Ok(event) = event {
            for path in event.paths {
                if is_plugin_file(&path) {
                    let _ = tx.send(path);
                }
            }
        }
    })?;
    for dir in registry.dirs() {
        if dir.is_dir() {
            watcher.watch(dir, RecursiveMode::NonRecursive)?;
            tracing::info!(dir = %dir.display(), "watching plugin dir");
        }
    }
    tokio::spawn(settle_loop(registry, rx));
    Ok(watcher)
}

async fn settle_loop(registry: Arc<Registry>, mut events: mpsc::UnboundedReceiver<PathBuf>) {
    let mut pending: HashMap<PathBuf, Pending> = HashMap::new();
    let mut tick = tokio::time::interval(TICK);
    loop {
        tokio::select! {
            event = events.recv() => match event {
                Some(path) => {
                    pending.insert(path.clone(), Pending {
                        fingerprint: fingerprint(&path),
                        unchanged_since: Instant::now(),
                    });
                }
                None => return,
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
                    let state = pending.remove(&path);
                    let registry = registry.clone();
                    let exists = state.is_some_and(|s| s.fingerprint.is_some());
                    // Loading maps a library and runs its code: off the reactor.
                    let _ = tokio::task::spawn_blocking(move || {
                        if exists {
                            match registry.load_file(&path) {
                                Ok(id) => tracing::info!(file = %path.display(), %id, "hot reload done"),
                                Err(reason) => tracing::warn!(file = %path.display(), %reason, "hot reload refused; previous version keeps serving"),
                            }
                        } else {
                            registry.remove_file(&path);
                        }
                    })
                    .await;
                }
            }
        }
    }
}
