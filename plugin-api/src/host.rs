//! The host's side of the ABI: load a plugin library from a path, read its
//! manifest, open providers and invoke them with a Rust event sink.
//!
//! Libraries are never unloaded (abi_stable leaks them by design), so callers
//! should load each file version once and keep the [`Library`].

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use abi_stable::{
    library::lib_header_from_path,
    sabi_trait::TD_Opaque,
    std_types::{RResult, RStr},
};

use crate::abi::{PluginModRef, ProviderBox, SinkAbi, SinkAbi_TO};
use crate::types::{Config, ErrorKind, Event, Manifest, PluginError, Request, Response};

/// Why a library could not be loaded; the `Display` is one line.
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    #[error("cannot load {path}: {reason}")]
    Library { path: PathBuf, reason: String },
    #[error("{path}: {reason}")]
    Incompatible { path: PathBuf, reason: String },
    #[error("{path}: manifest failed: {error}")]
    Manifest { path: PathBuf, error: PluginError },
}

/// A loaded plugin library (one mapping of one file).
#[derive(Clone)]
pub struct Library {
    module: PluginModRef,
    api_version: String,
    manifest: Manifest,
    path: PathBuf,
}

impl std::fmt::Debug for Library {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Library")
            .field("path", &self.path)
            .field("manifest", &self.manifest)
            .finish()
    }
}

fn one_line(s: impl std::fmt::Display) -> String {
    crate::text::one_line(&s.to_string())
}

impl Library {
    /// Loads the library at `path`, checks its ABI layout and plugin-api
    /// version, and reads its manifest.
    ///
    /// `path` should be a private copy: a file loaded once stays mapped for
    /// the life of the process, and loading the same path twice may return
    /// the old mapping.
    pub fn load(path: &Path) -> Result<Self, LoadError> {
        let header = lib_header_from_path(path).map_err(|e| LoadError::Library {
            path: path.to_owned(),
            reason: one_line(e),
        })?;
        // Say plainly what abi_stable's layout check would bury in pages.
        let built_for = header.version_strings().version.as_str().to_string();
        crate::compat::check_loadable(&built_for).map_err(|reason| LoadError::Incompatible {
            path: path.to_owned(),
            reason,
        })?;
        let module =
            header
                .init_root_module::<PluginModRef>()
                .map_err(|e| LoadError::Incompatible {
                    path: path.to_owned(),
                    reason: one_line(e),
                })?;
        let api_version = (module.plugin_api_version())().as_str().to_string();
        crate::compat::check(crate::PLUGIN_API_VERSION, &api_version).map_err(|reason| {
            LoadError::Incompatible {
                path: path.to_owned(),
                reason,
            }
        })?;
        let manifest = decode_result::<Manifest>((module.manifest())()).map_err(|error| {
            LoadError::Manifest {
                path: path.to_owned(),
                error,
            }
        })?;
        Ok(Self {
            module,
            api_version,
            manifest,
            path: path.to_owned(),
        })
    }

    /// Loads `file` from a fresh copy in `copies_dir`, deleted again once
    /// mapped. This is how a file can be loaded again after it changed: a
    /// path loaded once keeps answering with its first mapping.
    pub fn load_copy(file: &Path, copies_dir: &Path) -> Result<Self, LoadError> {
        static COPIES: AtomicU64 = AtomicU64::new(0);
        let stem = file
            .file_stem()
            .map(|s| s.to_string_lossy().into_owned())
            .unwrap_or_else(|| "plugin".into());
        let n = COPIES.fetch_add(1, Ordering::Relaxed);
        let copy = copies_dir.join(format!(
            "{stem}-{}-{n}.{}",
            std::process::id(),
            std::env::consts::DLL_EXTENSION
        ));
        std::fs::copy(file, &copy).map_err(|e| LoadError::Library {
            path: file.to_owned(),
            reason: format!("cannot copy to {}: {e}", copy.display()),
        })?;
        Self::load_from_copy(file, &copy)
    }

    /// Loads `file` from `copy`, a fresh copy of it the caller wrote (say,
    /// hashing the bytes on the way), and deletes the copy once mapped. The
    /// library and any error name `file`, not the copy.
    pub fn load_from_copy(file: &Path, copy: &Path) -> Result<Self, LoadError> {
        let loaded = Self::load(copy);
        let _ = std::fs::remove_file(copy);
        // Report the file the user knows, not the private copy.
        match loaded {
            Ok(mut library) => {
                library.path = file.to_owned();
                Ok(library)
            }
            Err(mut err) => {
                let (LoadError::Library { path, .. }
                | LoadError::Incompatible { path, .. }
                | LoadError::Manifest { path, .. }) = &mut err;
                *path = file.to_owned();
                Err(err)
            }
        }
    }

    /// The plugin's manifest.
    pub fn manifest(&self) -> &Manifest {
        &self.manifest
    }

    /// The plugin-api version the plugin was built against.
    pub fn api_version(&self) -> &str {
        &self.api_version
    }

    /// The path this library was loaded from.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Opens a provider instance.
    pub fn open(&self, config: &Config) -> Result<ProviderHandle, PluginError> {
        let config = serde_json::to_string(config)
            .map_err(|e| PluginError::internal(format!("serialize config: {e}")))?;
        match (self.module.open())(RStr::from_str(&config)) {
            RResult::ROk(provider) => Ok(ProviderHandle::new(provider, &self.api_version)),
            RResult::RErr(err) => Err(decode_error(err.as_str())),
        }
    }
}

/// Receives the events of one call on the host side.
pub trait EventSink: Send + Sync + 'static {
    /// One event from the plugin.
    fn emit(&self, event: Event);
    /// Whether the plugin should stop.
    fn is_cancelled(&self) -> bool;
    /// One more upstream request from the running call: `None` when it may
    /// go now, else how long to wait before asking again (see
    /// [`crate::Sink::permit`]). Grants everything unless overridden.
    fn permit(&self) -> Option<std::time::Duration> {
        None
    }
}

/// An [`EventSink`] that keeps every event, with a cancel switch: for testing
/// a provider in-process (through [`crate::Sink::new`]) or across the ABI.
#[derive(Clone, Default)]
pub struct RecordingSink {
    events: Arc<std::sync::Mutex<Vec<Event>>>,
    cancelled: Arc<std::sync::atomic::AtomicBool>,
    /// Permits asked for so far.
    permits_asked: Arc<AtomicU64>,
    /// Permits still to refuse (each with a 10 ms wait) before granting.
    permits_refused: Arc<AtomicU64>,
}

impl RecordingSink {
    /// Every event so far.
    pub fn events(&self) -> Vec<Event> {
        self.events
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// Asks the running call to stop.
    pub fn cancel(&self) {
        self.cancelled.store(true, Ordering::SeqCst);
    }

    /// The text deltas, concatenated.
    pub fn streamed_text(&self) -> String {
        self.events()
            .into_iter()
            .filter_map(|e| match e {
                Event::TextDelta { text } => Some(text),
                _ => None,
            })
            .collect()
    }

    /// Refuses the next `n` permit requests (asking to wait 10 ms each),
    /// as a busy shared limiter would.
    pub fn refuse_permits(&self, n: u64) {
        self.permits_refused.store(n, Ordering::SeqCst);
    }

    /// How many times the plugin asked for a permit.
    pub fn permits_asked(&self) -> u64 {
        self.permits_asked.load(Ordering::SeqCst)
    }

    /// The progress messages.
    pub fn progress(&self) -> Vec<String> {
        self.events()
            .into_iter()
            .filter_map(|e| match e {
                Event::Progress { message } => Some(message),
                _ => None,
            })
            .collect()
    }
}

impl EventSink for RecordingSink {
    fn emit(&self, event: Event) {
        self.events
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(event);
    }

    fn is_cancelled(&self) -> bool {
        self.cancelled.load(Ordering::SeqCst)
    }

    fn permit(&self) -> Option<std::time::Duration> {
        self.permits_asked.fetch_add(1, Ordering::SeqCst);
        let refused = self
            .permits_refused
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1));
        refused
            .is_ok()
            .then(|| std::time::Duration::from_millis(10))
    }
}

/// Adapts a host [`EventSink`] to the ABI sink trait; shared with
/// [`crate::Sink::new`].
pub(crate) struct SinkBridge<S>(pub(crate) S);

impl<S: EventSink> SinkAbi for SinkBridge<S> {
    fn emit(&self, event: RStr<'_>) {
        // A malformed event is a plugin bug; dropping it keeps the call alive.
        if let Ok(event) = serde_json::from_str::<Event>(event.as_str()) {
            self.0.emit(event);
        }
    }

    fn is_cancelled(&self) -> bool {
        self.0.is_cancelled()
    }

    fn permit(&self) -> u64 {
        // 0 means granted, so a wait rounds up to at least 1 ms.
        self.0
            .permit()
            .map_or(0, |wait| (wait.as_millis() as u64).max(1))
    }
}

/// The sink of a started call (see [`crate::start`]): a [`SinkBridge`]
/// that also catches the finish event and hands its outcome to the waiting
/// call.
#[cfg(feature = "tokio")]
struct StartSink<S> {
    bridge: SinkBridge<Arc<S>>,
    done: std::sync::Mutex<Option<tokio::sync::oneshot::Sender<Result<Response, PluginError>>>>,
}

#[cfg(feature = "tokio")]
impl<S: EventSink> SinkAbi for StartSink<S> {
    fn emit(&self, event: RStr<'_>) {
        let Some(outcome) = crate::start::parse_finish(event.as_str()) else {
            return self.bridge.emit(event);
        };
        let done = self.done.lock().unwrap_or_else(|e| e.into_inner()).take();
        // A second finish is a plugin bug; the first answer stands.
        if let Some(done) = done {
            let _ = done.send(decode_result::<Response>(outcome));
        }
    }

    fn is_cancelled(&self) -> bool {
        self.bridge.is_cancelled()
    }

    fn permit(&self) -> u64 {
        self.bridge.permit()
    }
}

impl<S: EventSink> EventSink for Arc<S> {
    fn emit(&self, event: Event) {
        (**self).emit(event)
    }

    fn is_cancelled(&self) -> bool {
        (**self).is_cancelled()
    }

    fn permit(&self) -> Option<std::time::Duration> {
        (**self).permit()
    }
}

/// An open provider; cheap to clone, safe to call from many threads.
#[derive(Clone)]
pub struct ProviderHandle {
    inner: Arc<ProviderBox>,
    /// Whether calls go as start requests: the plugin reports plugin-api
    /// 0.1.4 or later and has not answered that it can only block.
    starts: Arc<std::sync::atomic::AtomicBool>,
}

/// Whether a plugin's SDK understands start requests (0.1.4 and later).
fn understands_start(api_version: &str) -> bool {
    semver::Version::parse(api_version).is_ok_and(|v| v >= semver::Version::new(0, 1, 4))
}

impl ProviderHandle {
    fn new(provider: ProviderBox, api_version: &str) -> Self {
        ProviderHandle {
            inner: Arc::new(provider),
            starts: Arc::new(understands_start(api_version).into()),
        }
    }

    /// Wraps a provider made in-process, for tests of the ABI paths.
    #[cfg(test)]
    pub(crate) fn from_box(provider: ProviderBox) -> Self {
        Self::new(provider, crate::PLUGIN_API_VERSION)
    }

    /// Runs `request` without holding a thread while it is in flight: a
    /// plugin whose calls are futures (plugin-api 0.1.4 or later) runs it on
    /// its own runtime and ends it through the sink; any other gets a thread
    /// of tokio's blocking pool for its blocking `invoke`. Dropping the
    /// future abandons the answer (cancel through `sink` first to stop the
    /// call).
    #[cfg(feature = "tokio")]
    pub async fn call(
        &self,
        request: &Request,
        sink: impl EventSink,
    ) -> Result<Response, PluginError> {
        use std::sync::atomic::Ordering::Relaxed;
        let request = serde_json::to_string(request)
            .map_err(|e| PluginError::internal(format!("serialize request: {e}")))?;
        let sink = Arc::new(sink);
        if self.starts.load(Relaxed) {
            let (done, answer) = tokio::sync::oneshot::channel();
            let start_sink = SinkAbi_TO::from_value(
                StartSink {
                    bridge: SinkBridge(sink.clone()),
                    done: std::sync::Mutex::new(Some(done)),
                },
                TD_Opaque,
            );
            let flagged = crate::start::flagged(&request);
            match self.inner.invoke(RStr::from_str(&flagged), start_sink) {
                RResult::ROk(json) if json.as_str() == crate::start::STARTED => {
                    return answer.await.unwrap_or_else(|_| {
                        Err(PluginError::internal(
                            "plugin dropped the call without an answer",
                        ))
                    });
                }
                // Nothing ran: from now on this provider gets plain requests.
                RResult::ROk(json) if json.as_str() == crate::start::BLOCKING => {
                    self.starts.store(false, Relaxed);
                }
                // Refused before it started (e.g. a request it cannot read).
                other => return decode_result::<Response>(other),
            }
        }
        let provider = self.inner.clone();
        tokio::task::spawn_blocking(move || {
            let sink = SinkAbi_TO::from_value(SinkBridge(sink), TD_Opaque);
            decode_result::<Response>(provider.invoke(RStr::from_str(&request), sink))
        })
        .await
        .unwrap_or_else(|e| {
            Err(PluginError::internal(format!(
                "plugin call worker failed: {e}"
            )))
        })
    }

    /// Runs `request`, blocking the calling thread until the plugin returns.
    pub fn invoke(&self, request: &Request, sink: impl EventSink) -> Result<Response, PluginError> {
        let request = serde_json::to_string(request)
            .map_err(|e| PluginError::internal(format!("serialize request: {e}")))?;
        let sink = SinkAbi_TO::from_value(SinkBridge(sink), TD_Opaque);
        decode_result::<Response>(self.inner.invoke(RStr::from_str(&request), sink))
    }
}

fn decode_error(json: &str) -> PluginError {
    serde_json::from_str(json).unwrap_or_else(|e| {
        PluginError::new(
            ErrorKind::Internal,
            format!(
                "plugin returned an unreadable error ({e}): {}",
                truncate(json, 200)
            ),
        )
    })
}

fn decode_result<T: serde::de::DeserializeOwned>(
    result: RResult<abi_stable::std_types::RString, abi_stable::std_types::RString>,
) -> Result<T, PluginError> {
    match result {
        RResult::ROk(json) => serde_json::from_str(json.as_str()).map_err(|e| {
            PluginError::internal(format!(
                "plugin returned unreadable JSON ({e}): {}",
                truncate(json.as_str(), 200)
            ))
        }),
        RResult::RErr(err) => Err(decode_error(err.as_str())),
    }
}

fn truncate(s: &str, max: usize) -> &str {
    match s.char_indices().nth(max) {
        Some((i, _)) => &s[..i],
        None => s,
    }
}
