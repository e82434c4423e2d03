//! Calls that cost the host no thread (feature `tokio`): an
//! [`AsyncProvider`] answers with a future, and its [`Driver`] runs every
//! call on one small runtime the provider owns, ending each through the
//! sink (the start request and finish event of [`crate::start`]).
//!
//! The blocking [`crate::Provider`] holds one host thread per call in
//! flight, so a host with a few hundred calls waiting on slow upstreams runs
//! out of threads (tokio caps its blocking pool at 512) and memory grows with
//! every call. Here a call in flight is a task: a few hundred bytes.
//!
//! Cancellation still reaches the plugin through the sink's flag, but one
//! watcher per provider polls the flags of all its running calls (every
//! [`crate::cancel::CANCEL_POLL`], only while calls run) and wakes the ones
//! cancelled; [`crate::cancel::race`] and [`crate::cancel::stopped`] await
//! that instead of a timer per call. Panics in a call become `internal`
//! errors, as everywhere else at the boundary.

use std::any::Any;
use std::collections::HashMap;
use std::future::Future;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};

use abi_stable::std_types::{RErr, ROk, RResult, RStr, RString};
use tokio::sync::Notify;

use crate::Sink;
use crate::abi::{ProviderAbi, SinkBox};
use crate::cancel::CANCEL_POLL;
use crate::sdk::{error_json, guarded, panic_message, to_json};
use crate::types::{Config, ErrorKind, Manifest, PluginError, Request, Response};

/// Worker threads of a provider's runtime: calls in flight are tasks, so
/// this does not grow with them; two keep one slow parse from stalling the
/// rest.
const WORKER_THREADS: usize = 2;

/// A provider whose calls are futures. Implement this, then
/// `export_async_provider!(Type)`.
///
/// The SDK opens the provider and gives it a multi-thread tokio runtime of
/// its own; every call's future runs there, so `reqwest`, `tokio::process`
/// and timers work as usual. Panics anywhere become `internal` errors.
pub trait AsyncProvider: Send + Sync + Sized + 'static {
    /// Describes the plugin. Called before `open`, possibly more than once.
    fn manifest() -> Manifest;

    /// Creates the provider from its configuration (on a thread of the
    /// provider's runtime, so clients that need one can be built here).
    fn open(config: Config) -> Result<Self, PluginError>;

    /// Runs one request, sending events to `sink` as they happen. The call
    /// should end soon after `sink` is cancelled: [`crate::cancel::race`]
    /// does that (and the request's `timeout_ms`) for a future.
    fn call(
        self: Arc<Self>,
        request: Request,
        sink: Arc<Sink>,
    ) -> impl Future<Output = Result<Response, PluginError>> + Send + 'static;
}

/// The cancel flag of one call, raised by the driver's watcher.
#[derive(Default)]
pub(crate) struct CancelSignal {
    raised: AtomicBool,
    notify: Notify,
}

impl CancelSignal {
    pub(crate) fn is_raised(&self) -> bool {
        self.raised.load(Ordering::Acquire)
    }

    fn raise(&self) {
        self.raised.store(true, Ordering::Release);
        self.notify.notify_waiters();
    }

    /// Resolves once the call is cancelled.
    pub(crate) async fn raised(&self) {
        loop {
            let notified = self.notify.notified();
            tokio::pin!(notified);
            // Registered before the check, so a raise in between is seen.
            notified.as_mut().enable();
            if self.is_raised() {
                return;
            }
            notified.await;
        }
    }
}

/// The calls of one provider that are running, for the cancel watcher.
#[derive(Default)]
struct Calls {
    next: AtomicU64,
    live: Mutex<HashMap<u64, Arc<Sink>>>,
    /// Wakes the watcher when the first call starts.
    started: Notify,
}

impl Calls {
    fn live(&self) -> std::sync::MutexGuard<'_, HashMap<u64, Arc<Sink>>> {
        self.live.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// Polls the host's cancel flag of every running call while there are any,
/// and raises the signal of those cancelled. It ends with the runtime.
async fn watch(calls: Arc<Calls>) {
    loop {
        let started = calls.started.notified();
        tokio::pin!(started);
        started.as_mut().enable();
        if calls.live().is_empty() {
            started.await;
        }
        tokio::time::sleep(CANCEL_POLL).await;
        for sink in calls.live().values() {
            let Some(signal) = &sink.signal else { continue };
            if !signal.is_raised() && sink.inner.is_cancelled() {
                signal.raise();
            }
        }
    }
}

/// Runs an [`AsyncProvider`]'s calls on the provider's own runtime. It is
/// what the ABI exports for such a provider; plugin tests use it directly
/// (`Driver::open` then [`Driver::invoke`]) to run calls the way the host
/// does.
pub struct Driver<P> {
    provider: Arc<P>,
    calls: Arc<Calls>,
    /// `Option` only so `Drop` can take it; `Some` until then.
    runtime: Option<tokio::runtime::Runtime>,
}

impl<P: AsyncProvider> Driver<P> {
    /// Starts the runtime (threads named after the plugin id) and opens the
    /// provider on it.
    pub fn open(config: Config) -> Result<Self, PluginError> {
        let id = P::manifest().id;
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(WORKER_THREADS)
            .thread_name(id)
            .enable_all()
            .build()
            .map_err(|e| PluginError::internal(format!("cannot start runtime: {e}")))?;
        let provider = {
            let _entered = runtime.enter();
            P::open(config)?
        };
        let calls = Arc::new(Calls::default());
        runtime.spawn(watch(calls.clone()));
        Ok(Driver {
            provider: Arc::new(provider),
            calls,
            runtime: Some(runtime),
        })
    }

    /// The provider itself.
    pub fn provider(&self) -> &P {
        &self.provider
    }

    /// How many calls are running.
    pub fn running(&self) -> usize {
        self.calls.live().len()
    }

    /// Starts `request`; `done` gets its outcome exactly once, on a thread
    /// of the provider's runtime (or at once, if the call never started).
    pub fn start(
        &self,
        request: Request,
        sink: Sink,
        done: impl FnOnce(Result<Response, PluginError>) + Send + 'static,
    ) {
        self.launch(request, sink, move |_, outcome| done(outcome));
    }

    /// [`Driver::start`], with the call's sink handed to `done` as well.
    fn launch(
        &self,
        request: Request,
        sink: Sink,
        done: impl FnOnce(&Sink, Result<Response, PluginError>) + Send + 'static,
    ) {
        let mut sink = sink;
        sink.signal = Some(Arc::default());
        let sink = Arc::new(sink);
        if sink.is_cancelled() {
            return done(&sink, Err(PluginError::cancelled()));
        }
        let work = catch_unwind(AssertUnwindSafe(|| {
            self.provider.clone().call(request, sink.clone())
        }));
        // Boxed here, not inside the task: a future the task's async block
        // captured by value would sit in the task and in the box both.
        let work = match work {
            Ok(work) => Box::pin(work),
            Err(payload) => return done(&sink, Err(panicked(&*payload))),
        };
        let id = self.calls.next.fetch_add(1, Ordering::Relaxed);
        self.calls.live().insert(id, sink.clone());
        self.calls.started.notify_one();
        let calls = self.calls.clone();
        self.runtime().spawn(async move {
            let outcome = CatchUnwind(work)
                .await
                .unwrap_or_else(|payload| Err(panicked(&*payload)));
            calls.live().remove(&id);
            done(&sink, outcome);
        });
    }

    /// Runs `request` to its end, blocking the calling thread (which must
    /// not be one of the provider's runtime). What hosts before 0.1.4 call,
    /// and what plugin tests use.
    pub fn invoke(&self, request: Request, sink: &Sink) -> Result<Response, PluginError> {
        let (tx, rx) = std::sync::mpsc::sync_channel(1);
        self.start(request, sink.share(), move |outcome| {
            let _ = tx.send(outcome);
        });
        rx.recv().unwrap_or_else(|_| {
            Err(PluginError::internal(
                "the call ended without an answer (the provider shut down)",
            ))
        })
    }

    fn runtime(&self) -> &tokio::runtime::Runtime {
        self.runtime
            .as_ref()
            .expect("the runtime is taken only when dropped")
    }
}

impl<P> std::ops::Deref for Driver<P> {
    type Target = P;
    fn deref(&self) -> &P {
        &self.provider
    }
}

impl<P> Drop for Driver<P> {
    fn drop(&mut self) {
        // The host drops a provider only once no call of it is waited for;
        // a plain drop would block, and panic inside an async context.
        if let Some(runtime) = self.runtime.take() {
            runtime.shutdown_background();
        }
    }
}

fn panicked(payload: &(dyn Any + Send)) -> PluginError {
    PluginError::internal(format!(
        "plugin panicked in a call: {}",
        panic_message(payload)
    ))
}

/// A future whose panics become an `Err` with the payload.
struct CatchUnwind<F>(Pin<Box<F>>);

impl<F: Future> Future for CatchUnwind<F> {
    type Output = Result<F::Output, Box<dyn Any + Send>>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        match catch_unwind(AssertUnwindSafe(|| self.0.as_mut().poll(cx))) {
            Ok(Poll::Pending) => Poll::Pending,
            Ok(Poll::Ready(value)) => Poll::Ready(Ok(value)),
            Err(payload) => Poll::Ready(Err(payload)),
        }
    }
}

fn parse_request(request: RStr<'_>) -> Result<Request, PluginError> {
    serde_json::from_str(request.as_str()).map_err(|e| {
        PluginError::new(
            ErrorKind::InvalidRequest,
            format!("request JSON not understood by plugin: {e}"),
        )
    })
}

fn outcome_json(outcome: Result<Response, PluginError>) -> RResult<RString, RString> {
    match outcome.and_then(|response| to_json(&response)) {
        Ok(json) => ROk(RString::from(json)),
        Err(err) => RErr(RString::from(error_json(&err))),
    }
}

impl<P: AsyncProvider> ProviderAbi for Driver<P> {
    fn invoke(&self, request: RStr<'_>, sink: SinkBox) -> RResult<RString, RString> {
        if crate::start::is_start(request.as_str()) {
            return guarded("invoke", || {
                let request = parse_request(request)?;
                self.launch(request, Sink::from_box(sink), |sink, outcome| {
                    let event = crate::start::finish_event(&outcome_json(outcome));
                    sink.inner.emit(RStr::from_str(&event));
                });
                Ok(crate::start::STARTED.to_string())
            });
        }
        guarded("invoke", || {
            let request = parse_request(request)?;
            let response = Driver::invoke(self, request, &Sink::from_box(sink))?;
            to_json(&response)
        })
    }
}

#[cfg(test)]
mod tests {
    use std::future::Future;
    use std::sync::Arc;
    use std::time::Duration;

    use abi_stable::sabi_trait::TD_Opaque;

    use super::*;
    use crate::abi::ProviderAbi_TO;
    use crate::cancel::race;
    use crate::host::{ProviderHandle, RecordingSink};
    use crate::types::{Capability, Message};

    /// Answers by the prompt: `panic now` panics before its future exists,
    /// `panic later` inside it, `wait` until cancelled, `sleep <ms>` after
    /// that long; anything else is echoed.
    struct Scripted;

    fn prompt(request: &Request) -> String {
        request
            .messages
            .last()
            .map(|m| m.content.clone())
            .unwrap_or_default()
    }

    fn request(text: &str) -> Request {
        Request {
            model: "scripted".into(),
            messages: vec![Message::user(text)],
            ..Request::default()
        }
    }

    impl AsyncProvider for Scripted {
        fn manifest() -> Manifest {
            Manifest {
                id: "scripted".into(),
                version: "0.0.0".into(),
                description: String::new(),
                models: vec!["scripted".into()],
                capabilities: vec![Capability::Text],
                default_rate_limit: None,
                config_keys: vec![],
                plugin_api_version: String::new(),
                options: vec![],
                attachments: vec![],
            }
        }

        fn open(_config: Config) -> Result<Self, PluginError> {
            // `open` runs inside the provider's runtime.
            tokio::runtime::Handle::try_current().expect("open runs on the runtime");
            Ok(Scripted)
        }

        fn call(
            self: Arc<Self>,
            request: Request,
            sink: Arc<Sink>,
        ) -> impl Future<Output = Result<Response, PluginError>> + Send + 'static {
            let text = prompt(&request);
            assert_ne!(text, "panic now", "scripted panic before the future");
            async move {
                if text == "panic later" {
                    tokio::task::yield_now().await;
                    panic!("scripted panic inside the future");
                }
                if text == "wait" {
                    return race(&sink, None, "the script", std::future::pending()).await;
                }
                if let Some(ms) = text.strip_prefix("sleep ") {
                    tokio::time::sleep(Duration::from_millis(ms.parse().unwrap())).await;
                }
                sink.text(text.clone());
                Ok(Response {
                    text,
                    ..Response::default()
                })
            }
        }
    }

    fn driver() -> Driver<Scripted> {
        Driver::open(Config::default()).unwrap()
    }

    /// Waits (polling a condition, not a fixed sleep) until `done` holds.
    fn wait_until(what: &str, done: impl Fn() -> bool) {
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        while !done() {
            assert!(std::time::Instant::now() < deadline, "never: {what}");
            std::thread::sleep(Duration::from_millis(5));
        }
    }

    #[test]
    fn calls_answer_and_panics_anywhere_become_internal_errors() {
        let driver = driver();
        let recorder = RecordingSink::default();
        let sink = Sink::new(recorder.clone());
        let answer = driver.invoke(request("hello"), &sink).unwrap();
        assert_eq!(answer.text, "hello");
        assert_eq!(recorder.streamed_text(), "hello");

        for script in ["panic now", "panic later"] {
            let err = driver.invoke(request(script), &sink).unwrap_err();
            assert_eq!(err.kind, ErrorKind::Internal, "{script}");
            assert!(err.message.contains("plugin panicked in a call"), "{err}");
            assert!(err.message.contains("scripted panic"), "{err}");
        }
        // The runtime survived both.
        assert_eq!(
            driver.invoke(request("again"), &sink).unwrap().text,
            "again"
        );
        assert_eq!(driver.running(), 0);
    }

    #[test]
    fn the_host_cancel_flag_ends_a_waiting_call() {
        let driver = Arc::new(driver());
        let recorder = RecordingSink::default();
        let call = {
            let driver = driver.clone();
            let sink = Sink::new(recorder.clone());
            std::thread::spawn(move || driver.invoke(request("wait"), &sink))
        };
        wait_until("the call runs", || driver.running() == 1);
        recorder.cancel();
        let err = call.join().unwrap().unwrap_err();
        assert_eq!(err.kind, ErrorKind::Cancelled);
        assert_eq!(driver.running(), 0);

        // Cancelled before it starts: the provider is never called.
        let err = driver
            .invoke(request("panic now"), &Sink::new(recorder))
            .unwrap_err();
        assert_eq!(err.kind, ErrorKind::Cancelled);
    }

    fn threads() -> usize {
        let status = std::fs::read_to_string("/proc/self/status").unwrap();
        status
            .lines()
            .find_map(|l| l.strip_prefix("Threads:"))
            .unwrap()
            .trim()
            .parse()
            .unwrap()
    }

    #[tokio::test]
    async fn through_the_abi_a_thousand_calls_in_flight_take_no_thread_each() {
        let handle = ProviderHandle::from_box(ProviderAbi_TO::from_value(driver(), TD_Opaque));
        let before = threads();
        let calls: Vec<_> = (0..1000)
            .map(|i| {
                let handle = handle.clone();
                tokio::spawn(async move {
                    let text = if i == 0 {
                        "wait".to_string()
                    } else {
                        format!("sleep {}", 200 + i % 7)
                    };
                    handle.call(&request(&text), RecordingSink::default()).await
                })
            })
            .collect();
        // While they are in flight the process has no thread per call (the
        // test's own runtime is single-threaded; the driver owns two).
        tokio::task::yield_now().await;
        assert!(threads() < before + 16, "{} threads", threads());
        let mut calls = calls.into_iter();
        let waiting = calls.next().unwrap();
        for (i, call) in calls.enumerate() {
            let answer = call.await.unwrap().unwrap();
            assert_eq!(answer.text, format!("sleep {}", 200 + (i + 1) % 7));
        }
        assert!(!waiting.is_finished());
        waiting.abort();
    }

    /// A blocking provider, as plugins before 0.1.4 (and simple plugins)
    /// write them: its ABI object has no `start`.
    struct Blocking;

    impl crate::Provider for Blocking {
        fn manifest() -> Manifest {
            Scripted::manifest()
        }
        fn open(_config: Config) -> Result<Self, PluginError> {
            Ok(Blocking)
        }
        fn invoke(&self, request: Request, _sink: &Sink) -> Result<Response, PluginError> {
            Ok(Response {
                text: format!("blocking: {}", prompt(&request)),
                ..Response::default()
            })
        }
    }

    #[tokio::test]
    async fn a_provider_without_start_runs_on_a_blocking_thread() {
        extern "C" fn api_version() -> RStr<'static> {
            RStr::from_str(crate::PLUGIN_API_VERSION)
        }
        let root = crate::sdk::root_module::<Blocking>(api_version);
        let provider = match (root.open())(RStr::from_str("{}")) {
            ROk(provider) => provider,
            RErr(err) => panic!("{err}"),
        };
        let handle = ProviderHandle::from_box(provider);
        let answer = handle
            .call(&request("hi"), RecordingSink::default())
            .await
            .unwrap();
        assert_eq!(answer.text, "blocking: hi");
    }

    #[tokio::test]
    async fn a_start_request_the_plugin_cannot_read_is_refused_at_once() {
        let recorder = RecordingSink::default();
        let sink = crate::abi::SinkAbi_TO::from_value(
            crate::host::SinkBridge(recorder.clone()),
            TD_Opaque,
        );
        let garbage = format!("{}\"model\":7}}", crate::start::START_PREFIX);
        match ProviderAbi::invoke(&driver(), RStr::from_str(&garbage), sink) {
            RErr(err) => assert!(err.contains("request JSON not understood"), "{err}"),
            ROk(ok) => panic!("read garbage: {ok}"),
        }
        assert!(recorder.events().is_empty());
    }
}
