//! Runtime, cancellation and deadlines for plugins that run async code on
//! tokio (feature `tokio`). [`PluginRuntime`] bundles them for a blocking
//! [`crate::Provider`] that runs async code; an [`crate::AsyncProvider`]
//! needs none (its `Driver` owns the runtime) and uses [`race`].
//!
//! The host can only signal cancellation through [`Sink::is_cancelled`] (an
//! atomic load), so [`stopped`] polls it every [`CANCEL_POLL`] (for a call
//! run by a [`crate::Driver`], whose one watcher polls for all its calls, it
//! awaits that watcher's signal instead). [`race`] runs
//! a call against that: whichever finishes first wins and the rest is
//! dropped, which drops an in-flight HTTP request or stream and so closes
//! the upstream connection at once. The happy path pays nothing: the race
//! ends the moment the call does.

use std::future::Future;
use std::time::Duration;

use crate::{ErrorKind, PluginError, Sink};

/// How often the cancel flag is checked; bounds how long a cancelled call
/// keeps the upstream busy.
pub const CANCEL_POLL: Duration = Duration::from_millis(20);

/// The runtime a tokio plugin owns, one per provider and shared by all its
/// calls, so its connection pools are too.
///
/// It is a current-thread runtime: the host calls `invoke` on a thread of its
/// own, and `block_on` there drives that call's I/O on the same thread
/// instead of handing every read over from a worker thread (which cost about
/// a tenth of a millisecond per call). Concurrent calls share the I/O driver;
/// tokio supports `block_on` from many threads at once on this flavor.
pub fn runtime(name: &str) -> Result<tokio::runtime::Runtime, PluginError> {
    tokio::runtime::Builder::new_current_thread()
        .thread_name(name)
        .enable_all()
        .build()
        .map_err(|e| PluginError::internal(format!("cannot start runtime: {e}")))
}

/// Resolves once the host cancels the call (→ `cancelled`) or `timeout_ms`
/// passes (→ `timeout`, saying `what` did not finish), with that error.
pub async fn stopped(sink: &Sink, timeout_ms: Option<u64>, what: &str) -> PluginError {
    let cancelled = async {
        // Under a `Driver`, its one watcher raises the call's signal.
        if let Some(signal) = &sink.signal {
            return signal.raised().await;
        }
        loop {
            if sink.is_cancelled() {
                return;
            }
            tokio::time::sleep(CANCEL_POLL).await;
        }
    };
    let deadline = async {
        match timeout_ms {
            Some(ms) => tokio::time::sleep(Duration::from_millis(ms)).await,
            None => std::future::pending::<()>().await,
        }
    };
    tokio::select! {
        () = cancelled => PluginError::cancelled(),
        () = deadline => PluginError::new(
            ErrorKind::Timeout,
            format!("{what} did not finish within {} ms", timeout_ms.unwrap_or(0)),
        ),
    }
}

/// Runs `work` until it finishes, the host cancels, or `timeout_ms` passes.
///
/// `work` is boxed here, not awaited in place: an async fn keeps its
/// arguments in its own state for its whole life, so a call's whole future
/// would be stored twice, once as the argument and once where it runs.
pub fn race<'a, T: 'a>(
    sink: &'a Sink,
    timeout_ms: Option<u64>,
    what: &'a str,
    work: impl Future<Output = Result<T, PluginError>> + 'a,
) -> impl Future<Output = Result<T, PluginError>> + 'a {
    let work = Box::pin(work);
    async move {
        tokio::select! {
            // Work first: a call that is already done is not turned into a cancel.
            biased;
            result = work => result,
            err = stopped(sink, timeout_ms, what) => Err(err),
        }
    }
}

/// Waits for the host's rate limiter to grant one more upstream request of
/// this call (see [`Sink::permit`]), or until the host cancels.
pub async fn permit(sink: &Sink) -> Result<(), PluginError> {
    loop {
        let Some(wait) = sink.permit() else {
            return Ok(());
        };
        if sink.is_cancelled() {
            return Err(PluginError::cancelled());
        }
        // Short naps keep a cancel noticed within CANCEL_POLL-ish time.
        tokio::time::sleep(wait.min(Duration::from_millis(250))).await;
    }
}

/// The tokio runtime a provider owns, from [`runtime`]: runs each call with
/// [`PluginRuntime::run`], and shuts down in the background when dropped (a
/// plain drop of a runtime blocks until its tasks stop, and panics inside an
/// async context; the host may drop a provider from anywhere).
pub struct PluginRuntime {
    /// `Option` only so `Drop` can take it; `Some` until then.
    runtime: Option<tokio::runtime::Runtime>,
}

impl PluginRuntime {
    /// Builds the runtime; `name` names its threads (the plugin id).
    pub fn new(name: &str) -> Result<Self, PluginError> {
        Ok(Self {
            runtime: Some(runtime(name)?),
        })
    }

    /// Drives `work` to its end on the calling thread.
    pub fn block_on<F: Future>(&self, work: F) -> F::Output {
        self.runtime
            .as_ref()
            .expect("the runtime is taken only when dropped")
            .block_on(work)
    }

    /// Runs one call: refuses at once if the host already cancelled, else
    /// drives `work` until it finishes, the host cancels, or `timeout_ms`
    /// passes (see [`race`]).
    pub fn run<T>(
        &self,
        sink: &Sink,
        timeout_ms: Option<u64>,
        what: &str,
        work: impl Future<Output = Result<T, PluginError>>,
    ) -> Result<T, PluginError> {
        if sink.is_cancelled() {
            return Err(PluginError::cancelled());
        }
        self.block_on(race(sink, timeout_ms, what, work))
    }
}

impl Drop for PluginRuntime {
    fn drop(&mut self) {
        if let Some(runtime) = self.runtime.take() {
            runtime.shutdown_background();
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicBool, Ordering};

    use super::*;
    use crate::host::RecordingSink;

    #[test]
    fn a_call_runs_to_its_end_and_a_cancel_stops_it() {
        let runtime = PluginRuntime::new("test").unwrap();
        let recorder = RecordingSink::default();
        let sink = Sink::new(recorder.clone());
        assert_eq!(runtime.run(&sink, None, "work", async { Ok(7) }), Ok(7));

        let host = recorder.clone();
        let err = runtime
            .run(&sink, None, "work", async move {
                host.cancel();
                std::future::pending::<Result<(), PluginError>>().await
            })
            .unwrap_err();
        assert_eq!(err.kind, ErrorKind::Cancelled);

        // Already cancelled: the work never starts.
        let started = Arc::new(AtomicBool::new(false));
        let flag = started.clone();
        let err = runtime
            .run(&sink, None, "work", async move {
                flag.store(true, Ordering::SeqCst);
                Ok(())
            })
            .unwrap_err();
        assert_eq!(err.kind, ErrorKind::Cancelled);
        assert!(!started.load(Ordering::SeqCst));
    }

    #[test]
    fn a_deadline_ends_a_call_with_a_timeout_naming_what_did_not_finish() {
        let runtime = PluginRuntime::new("test").unwrap();
        let sink = Sink::new(RecordingSink::default());
        let err = runtime
            .run(
                &sink,
                Some(30),
                "Poe",
                std::future::pending::<Result<(), _>>(),
            )
            .unwrap_err();
        assert_eq!(err.kind, ErrorKind::Timeout);
        assert!(
            err.message.contains("Poe did not finish within 30 ms"),
            "{err}"
        );
    }

    #[test]
    fn dropping_it_inside_an_async_context_does_not_panic() {
        let outer = tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap();
        let runtime = PluginRuntime::new("test").unwrap();
        outer.block_on(async move { drop(runtime) });
    }
}
