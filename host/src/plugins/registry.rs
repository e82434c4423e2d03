//! The set of loaded plugins and the routing rule from a model name to a
//! plugin: the most specific manifest pattern wins (an exact name beats a
//! `prefix*` pattern, a longer prefix beats a shorter one, `*` matches last).
//! A `prefix:*` pattern also removes `prefix:` from the name the plugin
//! receives (`legacy:Claude-3-Opus` reaches poe-legacy as `Claude-3-Opus`).
//!
//! The set is swapped as a whole (arc-swap): a (re)load builds the next set
//! and stores it atomically, so running calls keep the plugin they started
//! with and new calls get the new one. A load that fails leaves the previous
//! version serving and records a one-line reason.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use arc_swap::ArcSwap;
use poe_plugin_api::Manifest;
use poe_plugin_api::host::ProviderHandle;

use super::loader::{self, SettingsTables};
use crate::config::Paths;
use crate::config::file::ConfigFile;
use crate::ipc::status::{PluginDirStatus, PluginLoadError, PluginSetting, PluginStatus};

/// One loaded and opened plugin.
pub struct LoadedPlugin {
    pub manifest: Manifest,
    pub api_version: String,
    /// The file it came from.
    pub source: PathBuf,
    pub provider: ProviderHandle,
    pub loaded_at: SystemTime,
    /// Hash of the bytes loaded ([`loader::content_hash`]).
    pub hash: u64,
    /// The settings it was opened with, as `status` shows them.
    pub settings: Vec<PluginSetting>,
    /// Keys of its `[plugins.<id>]` table it does not read.
    pub ignored_settings: Vec<String>,
}

/// No plugin serves a model.
#[derive(Debug, thiserror::Error)]
#[error("no loaded plugin serves model '{model}'{hint}")]
pub struct RouteError {
    pub model: String,
    hint: String,
}

/// Where a model name goes.
pub struct Route {
    pub plugin: Arc<LoadedPlugin>,
    /// The name the plugin receives: the caller's, minus the prefix of a
    /// matching `prefix:*` pattern.
    pub model: String,
    /// The manifest pattern that won.
    pub pattern: String,
}

/// What the registry knows of one plugin file.
#[derive(Debug, Clone, Default)]
struct FileState {
    /// The plugin this file provides now, if it loaded.
    plugin_id: Option<String>,
    /// Successful loads after the first.
    reloads: u32,
    /// Why the last attempt failed, if it did.
    last_error: Option<String>,
    /// Hash of the bytes serving now, if it loaded.
    hash: Option<u64>,
}

/// Upstream call figures of one plugin.
#[derive(Debug, Default)]
struct Metrics {
    requests: u64,
    errors: BTreeMap<String, u64>,
    /// Latencies of the most recent calls, in milliseconds.
    latencies: VecDeque<f64>,
}

/// How many recent latencies a plugin's percentiles are computed from.
const LATENCY_WINDOW: usize = 1000;

/// The command that installs the bundled plugins, run in a poe-code checkout.
pub const INSTALL_BUNDLED: &str = "poe-code plugins install plugins/poe-openai plugins/poe-legacy plugins/codex-cli plugins/claude-cli plugins/gemini-cli";

/// All plugins of the daemon; swapped as a whole so readers never lock.
pub struct Registry {
    plugins: ArcSwap<Vec<Arc<LoadedPlugin>>>,
    files: Mutex<BTreeMap<PathBuf, FileState>>,
    dir_errors: Mutex<Vec<PluginLoadError>>,
    mapped: AtomicUsize,
    copies_dir: PathBuf,
    dirs: Vec<PathBuf>,
    config_file: PathBuf,
    /// Plugin settings from the last config.toml that parsed, and why the
    /// latest read failed, if it did.
    settings: Mutex<(SettingsTables, Option<String>)>,
    /// What the watcher watches for each plugin dir.
    watching: Mutex<BTreeMap<PathBuf, PathBuf>>,
    metrics: Mutex<HashMap<String, Metrics>>,
    /// Serialises loads so two reloads never race on the swap.
    swap: Mutex<()>,
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl Registry {
    /// Loads every plugin of every plugin dir. Failures are recorded, not fatal.
    pub fn load(paths: &Paths) -> Self {
        let registry = Self {
            plugins: ArcSwap::from_pointee(Vec::new()),
            files: Mutex::new(BTreeMap::new()),
            dir_errors: Mutex::new(Vec::new()),
            mapped: AtomicUsize::new(0),
            copies_dir: paths.plugin_copies(),
            dirs: paths.plugin_dirs(),
            config_file: paths.config_file(),
            settings: Mutex::new((SettingsTables::new(), None)),
            watching: Mutex::new(BTreeMap::new()),
            metrics: Mutex::new(HashMap::new()),
            swap: Mutex::new(()),
        };
        registry.rescan();
        registry
    }

    /// The plugin directories watched and scanned.
    pub fn dirs(&self) -> &[PathBuf] {
        &self.dirs
    }

    /// The plugin files of `dir`, or why it is refused.
    fn plugin_files(&self, dir: &Path) -> Result<Vec<PathBuf>, String> {
        if dir == self.copies_dir {
            // Its files are the daemon's own private copies.
            return Err(
                "refused: this is where poe-coded keeps its private copies of plugins".into(),
            );
        }
        loader::plugin_files(dir)
    }

    /// Loads every plugin file not loaded yet and retires plugins whose file
    /// is gone. Returns the files it tried.
    pub fn rescan(&self) -> Vec<PathBuf> {
        let mut dir_errors = Vec::new();
        let mut present = Vec::new();
        for dir in &self.dirs {
            match self.plugin_files(dir) {
                Ok(files) => present.extend(files),
                Err(reason) => {
                    tracing::warn!(dir = %dir.display(), %reason, "plugin dir refused");
                    dir_errors.push(PluginLoadError {
                        path: dir.display().to_string(),
                        reason,
                    });
                }
            }
        }
        *lock(&self.dir_errors) = dir_errors;
        let known: Vec<PathBuf> = lock(&self.files).keys().cloned().collect();
        for gone in known.iter().filter(|k| !present.contains(k)) {
            self.remove_file(gone);
        }
        let mut tried = Vec::new();
        for file in present {
            if !lock(&self.files).contains_key(&file) {
                let _ = self.load_file(&file);
                tried.push(file);
            }
        }
        tried
    }

    /// Loads (or reloads) the plugin in `file` and swaps it in. On failure
    /// the previous version keeps serving and the reason is recorded.
    pub fn load_file(&self, file: &Path) -> Result<String, String> {
        let _swap = lock(&self.swap);
        self.load_locked(file)
    }

    /// Like [`Registry::load_file`], but does nothing (`None`) when the file
    /// holds the bytes that already serve: a `touch`, an identical rewrite,
    /// or an install of the same build is not a new version.
    pub fn load_file_if_changed(&self, file: &Path) -> Option<Result<String, String>> {
        let _swap = lock(&self.swap);
        let state = lock(&self.files).get(file).cloned().unwrap_or_default();
        if let (Some(id), Some(loaded)) = (state.plugin_id, state.hash)
            && loader::content_hash(file).ok() == Some(loaded)
        {
            tracing::info!(file = %file.display(), %id, "plugin file unchanged; not reloaded");
            // A refused version was replaced by the one serving: nothing is wrong any more.
            if let Some(state) = lock(&self.files).get_mut(file) {
                state.last_error = None;
            }
            return None;
        }
        Some(self.load_locked(file))
    }

    /// Plugin settings from config.toml, read now; when the file does not
    /// parse, the last tables that did (none at start) and the reason.
    fn settings_tables(&self) -> SettingsTables {
        let mut settings = lock(&self.settings);
        match ConfigFile::load(&self.config_file) {
            Ok(file) => *settings = (file.plugins, None),
            Err(e) => {
                tracing::warn!(error = %e, "config.toml ignored for plugin settings; the last settings that parsed stay in effect");
                settings.1 = Some(e);
            }
        }
        settings.0.clone()
    }

    /// Why config.toml was last ignored for plugin settings, if it was.
    pub fn config_error(&self) -> Option<String> {
        lock(&self.settings).1.clone()
    }

    fn load_locked(&self, file: &Path) -> Result<String, String> {
        let tables = self.settings_tables();
        let outcome = loader::load_plugin(file, &self.copies_dir, &tables);
        let plugin = match outcome {
            Ok(plugin) => plugin,
            Err(err) => {
                tracing::warn!(file = %err.path, reason = %err.reason, "plugin refused");
                lock(&self.files)
                    .entry(file.to_path_buf())
                    .or_default()
                    .last_error = Some(err.reason.clone());
                return Err(err.reason);
            }
        };
        self.mapped.fetch_add(1, Ordering::Relaxed);
        let id = plugin.manifest.id.clone();
        let hash = plugin.hash;
        let current = self.plugins.load_full();
        if let Some(other) = current
            .iter()
            .find(|p| p.manifest.id == id && p.source != file)
        {
            let reason = format!(
                "duplicate plugin id '{id}' (already loaded from {})",
                other.source.display()
            );
            tracing::warn!(file = %file.display(), %reason, "plugin skipped");
            lock(&self.files)
                .entry(file.to_path_buf())
                .or_default()
                .last_error = Some(reason.clone());
            return Err(reason);
        }
        let mut next: Vec<Arc<LoadedPlugin>> = current
            .iter()
            .filter(|p| p.source != file)
            .cloned()
            .collect();
        let replaced = next.len() != current.len();
        tracing::info!(
            id = %id,
            version = %plugin.manifest.version,
            file = %file.display(),
            replaced,
            "plugin loaded"
        );
        next.push(Arc::new(plugin));
        next.sort_by(|a, b| a.source.cmp(&b.source));
        self.plugins.store(Arc::new(next));
        let mut files = lock(&self.files);
        let state = files.entry(file.to_path_buf()).or_default();
        if replaced {
            state.reloads += 1;
        }
        state.plugin_id = Some(id.clone());
        state.last_error = None;
        state.hash = Some(hash);
        Ok(id)
    }

    /// Retires the plugin loaded from `file`; its running calls finish.
    pub fn remove_file(&self, file: &Path) {
        let _swap = lock(&self.swap);
        let current = self.plugins.load_full();
        let next: Vec<Arc<LoadedPlugin>> = current
            .iter()
            .filter(|p| p.source != file)
            .cloned()
            .collect();
        if next.len() != current.len() {
            tracing::info!(file = %file.display(), "plugin file removed; plugin retired");
            self.plugins.store(Arc::new(next));
        }
        lock(&self.files).remove(file);
    }

    /// Reloads the plugin `id` (or every plugin) from its file; returns
    /// `(id or file, outcome)` per file.
    pub fn reload(&self, id: Option<&str>) -> Vec<(String, Result<String, String>)> {
        let files: Vec<PathBuf> = lock(&self.files)
            .iter()
            .filter(|(_, state)| id.is_none() || state.plugin_id.as_deref() == id)
            .map(|(path, _)| path.clone())
            .collect();
        let mut outcomes: Vec<(String, Result<String, String>)> = files
            .iter()
            .map(|f| (f.display().to_string(), self.load_file(f)))
            .collect();
        if id.is_none() {
            for file in self.rescan() {
                let state = lock(&self.files).get(&file).cloned().unwrap_or_default();
                let outcome = match (state.plugin_id, state.last_error) {
                    (_, Some(e)) => Err(e),
                    (Some(id), None) => Ok(id),
                    (None, None) => Err("not loaded".into()),
                };
                outcomes.push((file.display().to_string(), outcome));
            }
        }
        outcomes
    }

    /// Records one upstream attempt of `plugin`.
    pub fn record_call(&self, plugin: &str, latency: Duration, error_kind: Option<&str>) {
        let mut metrics = lock(&self.metrics);
        let m = metrics.entry(plugin.to_string()).or_default();
        m.requests += 1;
        if let Some(kind) = error_kind {
            *m.errors.entry(kind.to_string()).or_default() += 1;
        }
        if m.latencies.len() == LATENCY_WINDOW {
            m.latencies.pop_front();
        }
        m.latencies.push_back(latency.as_secs_f64() * 1000.0);
    }

    /// The plugins loaded now.
    pub fn plugins(&self) -> Arc<Vec<Arc<LoadedPlugin>>> {
        self.plugins.load_full()
    }

    /// The id of the plugin that would serve `model`, if any.
    pub fn plugin_of(&self, model: &str) -> Option<String> {
        self.route(model).ok().map(|r| r.plugin.manifest.id.clone())
    }

    /// The plugin that serves `model`, and the name to send it.
    pub fn route(&self, model: &str) -> Result<Route, RouteError> {
        let plugins = self.plugins.load();
        let Some((index, pattern)) = best_match(plugins.iter().map(|p| &p.manifest), model) else {
            return Err(RouteError {
                model: model.to_string(),
                hint: not_found_hint(plugins.iter().map(|p| &p.manifest), model, || {
                    format!(" ({}; see `poe-coded status`)", self.none_loaded_hint())
                }),
            });
        };
        let sent = routed_name(pattern, model);
        if sent.trim().is_empty() {
            let prefix = pattern.trim_end_matches('*');
            return Err(RouteError {
                model: model.to_string(),
                hint: format!("; name one after the prefix, e.g. {prefix}<name>"),
            });
        }
        Ok(Route {
            plugin: plugins[index].clone(),
            model: sent.to_string(),
            pattern: pattern.to_string(),
        })
    }

    /// Records what the watcher watches for plugin dir `dir` (`None`: nothing).
    pub fn set_watching(&self, dir: &Path, watching: Option<PathBuf>) {
        let mut map = lock(&self.watching);
        match watching {
            Some(path) => map.insert(dir.to_path_buf(), path),
            None => map.remove(dir),
        };
    }

    /// The plugin dirs: whether each exists, its library files, what hot
    /// reload watches for it, and why it is refused, if it is.
    pub fn dir_status(&self) -> Vec<PluginDirStatus> {
        let watching = lock(&self.watching).clone();
        self.dirs
            .iter()
            .map(|dir| {
                let listed = self.plugin_files(dir);
                PluginDirStatus {
                    path: dir.display().to_string(),
                    exists: dir.is_dir(),
                    files: listed.as_ref().map(Vec::len).unwrap_or(0),
                    watching: watching.get(dir).map(|p| p.display().to_string()),
                    refused: listed.err(),
                }
            })
            .collect()
    }

    /// What to tell a user when no plugin is loaded: where the daemon
    /// looked, what it found there, and how to install the bundled plugins.
    pub fn none_loaded_hint(&self) -> String {
        let dirs: Vec<String> = self
            .dir_status()
            .iter()
            .map(|d| {
                let what = match (&d.refused, d.exists, d.files) {
                    (Some(reason), _, _) => reason.clone(),
                    (None, false, _) => "missing".into(),
                    (None, true, 0) => "empty".into(),
                    (None, true, n) => format!("{n} files, none loaded; see `poe-coded status`"),
                };
                format!("{} ({what})", d.path)
            })
            .collect();
        format!(
            "no plugins are loaded; searched {}; install the bundled plugins from the poe-code \
             source dir with `{INSTALL_BUNDLED}`, or set {} to where they are",
            dirs.join(", "),
            crate::config::PLUGIN_DIR_ENV
        )
    }

    /// Status rows for the loaded plugins, refused files, and the number of
    /// library mappings so far.
    pub fn status(&self) -> (Vec<PluginStatus>, Vec<PluginLoadError>, usize) {
        let files = lock(&self.files).clone();
        let metrics = lock(&self.metrics);
        let plugins = self
            .plugins()
            .iter()
            .map(|p| {
                let state = files.get(&p.source).cloned().unwrap_or_default();
                let m = metrics.get(&p.manifest.id);
                let mut latencies: Vec<f64> = m
                    .map(|m| m.latencies.iter().copied().collect())
                    .unwrap_or_default();
                latencies.sort_by(f64::total_cmp);
                let pct = |q: f64| {
                    (!latencies.is_empty()).then(|| {
                        let i = ((latencies.len() - 1) as f64 * q).round() as usize;
                        (latencies[i] * 100.0).round() / 100.0
                    })
                };
                PluginStatus {
                    id: p.manifest.id.clone(),
                    version: p.manifest.version.clone(),
                    plugin_api_version: p.api_version.clone(),
                    path: p.source.display().to_string(),
                    models: p.manifest.models.clone(),
                    capabilities: p
                        .manifest
                        .capabilities
                        .iter()
                        .map(|c| format!("{c:?}").to_lowercase())
                        .collect(),
                    loaded_at: chrono::DateTime::<chrono::Utc>::from(p.loaded_at)
                        .to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
                    reload_count: state.reloads,
                    last_error: state.last_error,
                    requests: m.map(|m| m.requests).unwrap_or(0),
                    errors: m.map(|m| m.errors.clone()).unwrap_or_default(),
                    latency_p50_ms: pct(0.50),
                    latency_p95_ms: pct(0.95),
                    settings: p.settings.clone(),
                    ignored_settings: p.ignored_settings.clone(),
                }
            })
            .collect();
        let mut errors = lock(&self.dir_errors).clone();
        errors.extend(files.iter().filter_map(|(path, state)| {
            match (&state.plugin_id, &state.last_error) {
                (None, Some(reason)) => Some(PluginLoadError {
                    path: path.display().to_string(),
                    reason: reason.clone(),
                }),
                _ => None,
            }
        }));
        (plugins, errors, self.mapped.load(Ordering::Relaxed))
    }
}

/// How specifically `pattern` matches `model`, or `None`.
fn match_score(pattern: &str, model: &str) -> Option<usize> {
    match pattern.strip_suffix('*') {
        Some(prefix) => {
            let matches = model.len() >= prefix.len()
                && model.is_char_boundary(prefix.len())
                && model[..prefix.len()].eq_ignore_ascii_case(prefix);
            matches.then_some(prefix.len())
        }
        None => pattern
            .eq_ignore_ascii_case(model)
            .then_some(usize::MAX / 2 + pattern.len()),
    }
}

/// The index (into `manifests`) and pattern that serve `model`: the highest
/// [`match_score`]; on a tie, the later manifest (the registry keeps them
/// sorted by file path, so the choice is stable).
fn best_match<'a>(
    manifests: impl Iterator<Item = &'a Manifest>,
    model: &str,
) -> Option<(usize, &'a str)> {
    manifests
        .enumerate()
        .flat_map(|(index, manifest)| {
            manifest.models.iter().filter_map(move |pattern| {
                match_score(pattern, model).map(|score| (score, index, pattern.as_str()))
            })
        })
        .max_by_key(|(score, _, _)| *score)
        .map(|(_, index, pattern)| (index, pattern))
}

/// The name a plugin receives for `model` matched by `pattern`: a
/// `prefix:*` pattern strips `prefix:`; every other pattern passes the name
/// on as written.
fn routed_name<'m>(pattern: &str, model: &'m str) -> &'m str {
    match pattern.strip_suffix(":*") {
        Some(prefix) if match_score(pattern, model).is_some() => &model[prefix.len() + 1..],
        _ => model,
    }
}

/// Edit distance between two names, ignoring ASCII case.
fn edit_distance(a: &str, b: &str) -> usize {
    let a: Vec<char> = a.chars().map(|c| c.to_ascii_lowercase()).collect();
    let b: Vec<char> = b.chars().map(|c| c.to_ascii_lowercase()).collect();
    let mut row: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.iter().enumerate() {
        let mut diagonal = row[0];
        row[0] = i + 1;
        for (j, cb) in b.iter().enumerate() {
            let above = row[j + 1];
            row[j + 1] = (diagonal + usize::from(ca != cb))
                .min(row[j] + 1)
                .min(above + 1);
            diagonal = above;
        }
    }
    row[b.len()]
}

/// How far `model` is from `pattern`: to an exact name, the whole name; to
/// a `prefix*` pattern, the prefix against as much of the model.
fn pattern_distance(pattern: &str, model: &str) -> usize {
    match pattern.strip_suffix('*') {
        Some(prefix) => {
            let head: String = model.chars().take(prefix.chars().count()).collect();
            edit_distance(prefix, &head)
        }
        None => edit_distance(pattern, model),
    }
}

/// The tail of a MODEL_NOT_FOUND message: the patterns within a small edit
/// distance of `model` (closest first), then every pattern served; when no
/// plugin serves anything, `none_loaded`.
fn not_found_hint<'a>(
    manifests: impl Iterator<Item = &'a Manifest>,
    model: &str,
    none_loaded: impl FnOnce() -> String,
) -> String {
    let served: Vec<(&str, &str)> = manifests
        .flat_map(|m| m.models.iter().map(move |p| (p.as_str(), m.id.as_str())))
        .collect();
    if served.is_empty() {
        return none_loaded();
    }
    let mut near: Vec<(usize, &str, &str)> = served
        .iter()
        .filter(|(pattern, _)| *pattern != "*")
        .map(|(pattern, id)| (pattern_distance(pattern, model), *pattern, *id))
        .filter(|(distance, pattern, _)| {
            let len = pattern.trim_end_matches('*').chars().count();
            *distance <= (len / 3).max(1)
        })
        .collect();
    near.sort();
    let all: Vec<&str> = served.iter().map(|(pattern, _)| *pattern).collect();
    let all = format!("served patterns: {} (see list_models)", all.join(", "));
    if near.is_empty() {
        return format!("; {all}");
    }
    let near: Vec<String> = near
        .iter()
        .take(5)
        .map(|(_, pattern, id)| format!("{pattern} ({id})"))
        .collect();
    format!("; closest: {}; {all}", near.join(", "))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn manifest(id: &str, models: &[&str]) -> Manifest {
        Manifest {
            id: id.into(),
            version: "1.0.0".into(),
            description: String::new(),
            models: models.iter().map(|m| m.to_string()).collect(),
            capabilities: vec![],
            default_rate_limit: None,
            config_keys: vec![],
            plugin_api_version: String::new(),
            options: vec![],
            attachments: vec![],
        }
    }

    /// The three bundled plugins' patterns.
    fn bundled() -> Vec<Manifest> {
        vec![
            manifest("codex-cli", &["codex", "codex:*"]),
            manifest("poe-legacy", &["legacy:*", "MyBot"]),
            manifest("poe-openai", &["*"]),
        ]
    }

    /// (plugin id, name sent) for `model`.
    fn route(manifests: &[Manifest], model: &str) -> Option<(String, String)> {
        best_match(manifests.iter(), model).map(|(index, pattern)| {
            (
                manifests[index].id.clone(),
                routed_name(pattern, model).to_string(),
            )
        })
    }

    #[test]
    fn exact_beats_prefix_beats_wildcard() {
        let exact = match_score("echo", "echo").unwrap();
        let prefix = match_score("echo*", "echo").unwrap();
        let any = match_score("*", "echo").unwrap();
        assert!(exact > prefix && prefix > any);
        assert_eq!(match_score("echo-*", "GPT-4o"), None);
        assert!(match_score("Claude-Sonnet-4.5", "claude-sonnet-4.5").is_some());
        assert!(
            match_score("codex:*", "codex:gpt-5").unwrap()
                > match_score("codex*", "codex:gpt-5").unwrap()
        );
    }

    #[test]
    fn bundled_plugins_route_predictably() {
        let m = bundled();
        let r = |model: &str| route(&m, model).unwrap();
        assert_eq!(r("codex"), ("codex-cli".into(), "codex".into()));
        assert_eq!(r("Codex"), ("codex-cli".into(), "Codex".into()));
        assert_eq!(
            r("codex:gpt-5-codex"),
            ("codex-cli".into(), "gpt-5-codex".into())
        );
        assert_eq!(
            r("legacy:Claude-3-Opus"),
            ("poe-legacy".into(), "Claude-3-Opus".into())
        );
        assert_eq!(
            r("LEGACY:Claude-3-Opus"),
            ("poe-legacy".into(), "Claude-3-Opus".into())
        );
        assert_eq!(r("mybot"), ("poe-legacy".into(), "mybot".into()));
        assert_eq!(r("GPT-5"), ("poe-openai".into(), "GPT-5".into()));
        // Only a `prefix:*` strips; the catch-all passes names on as written.
        assert_eq!(r("codexy"), ("poe-openai".into(), "codexy".into()));
        assert_eq!(r("legacy-bot"), ("poe-openai".into(), "legacy-bot".into()));
    }

    #[test]
    fn prefix_patterns_without_colon_do_not_strip() {
        assert_eq!(routed_name("echo-*", "echo-2"), "echo-2");
        assert_eq!(routed_name("*", "x"), "x");
        assert_eq!(routed_name("legacy:*", "legacy:"), "");
        assert_eq!(routed_name("legacy:*", "other"), "other");
    }

    #[test]
    fn unknown_models_list_near_matches() {
        let m = [
            manifest("codex-cli", &["codex", "codex:*"]),
            manifest("poe-legacy", &["legacy:*"]),
        ];
        assert!(best_match(m.iter(), "codx").is_none());
        let none = || unreachable!("plugins are loaded");
        let hint = not_found_hint(m.iter(), "codx", none);
        assert!(hint.starts_with("; closest: codex (codex-cli)"), "{hint}");
        assert!(
            !hint.contains("closest: codex (codex-cli), legacy"),
            "{hint}"
        );
        let hint = not_found_hint(m.iter(), "legacy-Claude", none);
        assert!(
            hint.starts_with("; closest: legacy:* (poe-legacy)"),
            "{hint}"
        );
        let hint = not_found_hint(m.iter(), "GPT-5", none);
        assert_eq!(
            hint,
            "; served patterns: codex, codex:*, legacy:* (see list_models)"
        );
        assert_eq!(not_found_hint([].iter(), "x", || "none".into()), "none");
    }

    #[test]
    fn edit_distances() {
        assert_eq!(edit_distance("codex", "codx"), 1);
        assert_eq!(edit_distance("Codex", "codex"), 0);
        assert_eq!(edit_distance("", "abc"), 3);
        assert_eq!(edit_distance("kitten", "sitting"), 3);
    }
}
