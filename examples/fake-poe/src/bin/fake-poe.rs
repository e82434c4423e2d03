//! `fake-poe`: runs the fake Poe API for the offline demo and the benchmark.
//!
//! Prints exactly one line, `FAKE_POE_BASE_URL=http://127.0.0.1:PORT/v1`, to
//! stdout, then serves until it gets SIGINT/SIGTERM or its stdin reaches EOF
//! (so a parent that dies takes the fake with it). When stdin is `/dev/null`
//! (how shells start background jobs) EOF means nothing, and only a signal
//! stops it.

use std::io::{Read, Write};

use fake_poe::FakePoe;

#[tokio::main(flavor = "current_thread")]
async fn main() {
    // No recording: a long benchmark must not grow with every request.
    let fake = FakePoe::start_without_recording().await;
    {
        let mut out = std::io::stdout().lock();
        // If stdout is gone nobody can learn the URL; serving would be pointless.
        if writeln!(out, "FAKE_POE_BASE_URL={}", fake.base_url())
            .and_then(|()| out.flush())
            .is_err()
        {
            return;
        }
    }

    let stdin_closed = async {
        if stdin_is_dev_null() {
            std::future::pending::<()>().await;
        }
        // Reading blocks, so it runs on the blocking pool; any error counts as EOF.
        let _ = tokio::task::spawn_blocking(|| {
            let mut buf = [0u8; 1024];
            let mut stdin = std::io::stdin().lock();
            while matches!(stdin.read(&mut buf), Ok(n) if n > 0) {}
        })
        .await;
    };

    tokio::select! {
        () = stdin_closed => {}
        () = terminated() => {}
    }
    drop(fake);
}

/// Resolves on SIGINT or SIGTERM.
async fn terminated() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        match signal(SignalKind::terminate()) {
            Ok(mut term) => {
                tokio::select! {
                    _ = tokio::signal::ctrl_c() => {}
                    _ = term.recv() => {}
                }
            }
            Err(_) => {
                let _ = tokio::signal::ctrl_c().await;
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
}

/// True when stdin is the null device, whose immediate EOF says nothing about
/// the parent.
fn stdin_is_dev_null() -> bool {
    #[cfg(unix)]
    {
        use std::os::unix::fs::MetadataExt;
        match (
            std::fs::metadata("/dev/stdin"),
            std::fs::metadata("/dev/null"),
        ) {
            (Ok(stdin), Ok(null)) => stdin.rdev() == null.rdev() && stdin.dev() == null.dev(),
            _ => false,
        }
    }
    #[cfg(not(unix))]
    {
        false
    }
}
