//! The author-facing side: a plain Rust trait and the glue that turns it into
//! the ABI of [`crate::abi`], catching every panic on the way out.

use std::any::Any;
use std::panic::{AssertUnwindSafe, catch_unwind};

use abi_stable::{
    prefix_type::PrefixTypeTrait,
    sabi_trait::TD_Opaque,
    std_types::{RErr, ROk, RResult, RStr, RString},
};

use crate::abi::{
    PluginMod, PluginModRef, ProviderAbi, ProviderAbi_TO, ProviderBox, SinkAbi_TO, SinkBox,
};
use crate::types::{Config, Event, LogLevel, Manifest, PluginError, Request, Response};

/// A provider of model answers. Implement this, then `export_provider!(Type)`.
///
/// `invoke` is blocking and may be called from many host threads at once,
/// holding one for each call in flight: fine for calls that answer at once.
/// A provider that waits on the network or a process should be an
/// [`crate::AsyncProvider`] instead (feature `tokio`). Panics anywhere in
/// these methods become `internal` errors in the host.
pub trait Provider: Send + Sync + 'static {
    /// Describes the plugin. Called before `open`, possibly more than once.
    fn manifest() -> Manifest
    where
        Self: Sized;

    /// Creates the provider from its configuration.
    fn open(config: Config) -> Result<Self, PluginError>
    where
        Self: Sized;

    /// Runs one request to completion, sending events to `sink` as they happen.
    fn invoke(&self, request: Request, sink: &Sink) -> Result<Response, PluginError>;
}

/// The host's end of a running call: send events, ask whether to stop.
pub struct Sink {
    /// Shared so a driver can hand a call its own `Sink` (with its own
    /// cancel signal) over a sink the caller keeps.
    pub(crate) inner: std::sync::Arc<SinkBox>,
    /// Set by [`crate::Driver`] for the calls it runs: raised by its one
    /// watcher when the host cancels, so a call can await its cancellation
    /// instead of polling the flag on a timer of its own.
    #[cfg(feature = "tokio")]
    pub(crate) signal: Option<std::sync::Arc<crate::driver::CancelSignal>>,
}

impl Sink {
    /// Builds a sink that delivers to `sink` directly, without a loaded
    /// library: lets a plugin crate test its `Provider` in-process (through
    /// its rlib) with the same JSON round trip the real ABI uses.
    pub fn new(sink: impl crate::host::EventSink) -> Sink {
        Sink::from_box(SinkAbi_TO::from_value(
            crate::host::SinkBridge(sink),
            TD_Opaque,
        ))
    }

    pub(crate) fn from_box(inner: SinkBox) -> Sink {
        Sink {
            inner: std::sync::Arc::new(inner),
            #[cfg(feature = "tokio")]
            signal: None,
        }
    }

    /// Another handle on the same host sink, without a driver's signal.
    #[cfg(feature = "tokio")]
    pub(crate) fn share(&self) -> Sink {
        Sink {
            inner: self.inner.clone(),
            signal: None,
        }
    }

    /// Sends one event to the host.
    pub fn emit(&self, event: &Event) {
        if let Ok(json) = serde_json::to_string(event) {
            self.inner.emit(RStr::from_str(&json));
        }
    }

    /// Sends a text delta.
    pub fn text(&self, text: impl Into<String>) {
        self.emit(&Event::TextDelta { text: text.into() });
    }

    /// Sends a log line to the daemon's log.
    pub fn log(&self, level: LogLevel, message: impl Into<String>) {
        self.emit(&Event::Log {
            level,
            message: message.into(),
        });
    }

    /// True once the host has cancelled this call (client cancel, timeout,
    /// session closed). Check it between steps; stop with
    /// [`PluginError::cancelled`].
    pub fn is_cancelled(&self) -> bool {
        #[cfg(feature = "tokio")]
        if self.signal.as_ref().is_some_and(|s| s.is_raised()) {
            return true;
        }
        self.inner.is_cancelled()
    }

    /// Asks the host's shared rate limiter for one more upstream request of
    /// this call (the call's first request was granted before `invoke`):
    /// `None` when it may go now, else how long to wait before asking
    /// again. Hosts before plugin-api 0.1.2 always grant. With the `tokio`
    /// feature, [`crate::cancel::permit`] does the waiting.
    pub fn permit(&self) -> Option<std::time::Duration> {
        match self.inner.permit() {
            0 => None,
            ms => Some(std::time::Duration::from_millis(ms)),
        }
    }
}

pub(crate) fn panic_message(payload: &(dyn Any + Send)) -> String {
    if let Some(s) = payload.downcast_ref::<&str>() {
        (*s).to_string()
    } else if let Some(s) = payload.downcast_ref::<String>() {
        s.clone()
    } else {
        "non-string panic payload".to_string()
    }
}

/// Runs `f`, turning a panic into an `internal` error JSON.
pub(crate) fn guarded(
    what: &str,
    f: impl FnOnce() -> Result<String, PluginError>,
) -> RResult<RString, RString> {
    let outcome = catch_unwind(AssertUnwindSafe(f)).unwrap_or_else(|payload| {
        Err(PluginError::internal(format!(
            "plugin panicked in {what}: {}",
            panic_message(&*payload)
        )))
    });
    match outcome {
        Ok(json) => ROk(RString::from(json)),
        Err(err) => RErr(RString::from(error_json(&err))),
    }
}

pub(crate) fn error_json(err: &PluginError) -> String {
    serde_json::to_string(err).unwrap_or_else(|_| {
        r#"{"kind":"internal","message":"unserializable plugin error"}"#.to_string()
    })
}

pub(crate) fn to_json<T: serde::Serialize>(value: &T) -> Result<String, PluginError> {
    serde_json::to_string(value).map_err(|e| PluginError::internal(format!("serialize: {e}")))
}

extern "C" fn manifest_fn<P: Provider>() -> RResult<RString, RString> {
    guarded("manifest", || {
        let mut manifest = P::manifest();
        manifest.plugin_api_version = crate::PLUGIN_API_VERSION.to_string();
        to_json(&manifest)
    })
}

extern "C" fn open_fn<P: Provider>(config: RStr<'_>) -> RResult<ProviderBox, RString> {
    let opened = catch_unwind(AssertUnwindSafe(|| {
        let config: Config = serde_json::from_str(config.as_str())
            .map_err(|e| PluginError::internal(format!("bad config JSON from host: {e}")))?;
        P::open(config)
    }))
    .unwrap_or_else(|payload| {
        Err(PluginError::internal(format!(
            "plugin panicked in open: {}",
            panic_message(&*payload)
        )))
    });
    match opened {
        Ok(provider) => ROk(ProviderAbi_TO::from_value(Adapter(provider), TD_Opaque)),
        Err(err) => RErr(RString::from(error_json(&err))),
    }
}

/// Bridges a [`Provider`] to the ABI trait object.
struct Adapter<P>(P);

impl<P: Provider> ProviderAbi for Adapter<P> {
    fn invoke(&self, request: RStr<'_>, sink: SinkBox) -> RResult<RString, RString> {
        // A blocking provider cannot start a call: the host resends it
        // from a thread of its own (see `crate::start`).
        if crate::start::is_start(request.as_str()) {
            return ROk(RString::from(crate::start::BLOCKING));
        }
        guarded("invoke", || {
            let request: Request = serde_json::from_str(request.as_str()).map_err(|e| {
                PluginError::new(
                    crate::ErrorKind::InvalidRequest,
                    format!("request JSON not understood by plugin: {e}"),
                )
            })?;
            let sink = Sink::from_box(sink);
            let response = self.0.invoke(request, &sink)?;
            to_json(&response)
        })
    }
}

/// Builds the root module for `P`; used by `export_provider!`.
pub fn root_module<P: Provider>(api_version: extern "C" fn() -> RStr<'static>) -> PluginModRef {
    PluginMod {
        plugin_api_version: api_version,
        manifest: manifest_fn::<P>,
        open: open_fn::<P>,
    }
    .leak_into_prefix()
}

/// Builds the root module for an [`crate::AsyncProvider`]; used by
/// `export_async_provider!`.
#[cfg(feature = "tokio")]
pub fn root_module_async<P: crate::AsyncProvider>(
    api_version: extern "C" fn() -> RStr<'static>,
) -> PluginModRef {
    extern "C" fn manifest_async<P: crate::AsyncProvider>() -> RResult<RString, RString> {
        guarded("manifest", || {
            let mut manifest = P::manifest();
            manifest.plugin_api_version = crate::PLUGIN_API_VERSION.to_string();
            to_json(&manifest)
        })
    }
    extern "C" fn open_async<P: crate::AsyncProvider>(
        config: RStr<'_>,
    ) -> RResult<ProviderBox, RString> {
        let opened = catch_unwind(AssertUnwindSafe(|| {
            let config: Config = serde_json::from_str(config.as_str())
                .map_err(|e| PluginError::internal(format!("bad config JSON from host: {e}")))?;
            crate::Driver::<P>::open(config)
        }))
        .unwrap_or_else(|payload| {
            Err(PluginError::internal(format!(
                "plugin panicked in open: {}",
                panic_message(&*payload)
            )))
        });
        match opened {
            Ok(driver) => ROk(ProviderAbi_TO::from_value(driver, TD_Opaque)),
            Err(err) => RErr(RString::from(error_json(&err))),
        }
    }
    PluginMod {
        plugin_api_version: api_version,
        manifest: manifest_async::<P>,
        open: open_async::<P>,
    }
    .leak_into_prefix()
}
