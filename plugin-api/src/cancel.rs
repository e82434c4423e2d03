//! Runtime, cancellation and deadlines for plugins that run async code on
//! tokio (feature `tokio`).
//!
//! The host can only signal cancellation through [`Sink::is_cancelled`] (an
//! atomic load), so [`stopped`] polls it every [`CANCEL_POLL`]. [`race`] runs
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
pub async fn race<T>(
    sink: &Sink,
    timeout_ms: Option<u64>,
    what: &str,
    work: impl Future<Output = Result<T, PluginError>>,
) -> Result<T, PluginError> {
    tokio::select! {
        // Work first: a call that is already done is not turned into a cancel.
        biased;
        result = work => result,
        err = stopped(sink, timeout_ms, what) => Err(err),
    }
}
