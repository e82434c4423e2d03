//! Hot reload as a plugin author sees it: replace a plugin's file under a
//! daemon serving several sessions in a loop, and no call fails while new
//! calls reach the new version, with exactly one reload and one new mapping
//! per replacement; a `touch` or an identical rewrite reloads nothing; files
//! that are corrupt or built for another plugin-api major are refused while
//! the old version keeps answering.

use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use serde_json::Value;
use testkit::client::result_text;
use testkit::env::plugin;
use testkit::{TestEnv, build};

/// Replaces `target` with `source` the way installers do: write a temp file
/// beside it, then rename over it.
fn atomic_replace(source: &Path, target: &Path) {
    let tmp = target.with_extension("partial");
    std::fs::copy(source, &tmp).unwrap();
    std::fs::rename(&tmp, target).unwrap();
}

/// The watcher's settle window (host/src/plugins/watcher.rs `SETTLE`).
const SETTLE: Duration = Duration::from_millis(300);

/// Checks `pred` on `status` until several settle windows have passed, so a
/// late second reload would be seen. (Proving that nothing more happens
/// takes waiting; what is waited for first is a condition.)
fn assert_stays(env: &TestEnv, what: &str, pred: impl Fn(&Value) -> bool) {
    let until = Instant::now() + SETTLE * 5;
    while Instant::now() < until {
        let status = env.status().expect("daemon runs");
        assert!(pred(&status), "{what} no longer holds: {status}");
        std::thread::sleep(SETTLE / 3);
    }
}

fn mapped(status: &Value) -> u64 {
    status["libraries_mapped"].as_u64().unwrap()
}

async fn ask(shim: &mut testkit::McpClient, bot: &str, message: &str) -> String {
    let answer = shim.ask(bot, message).await;
    assert_ne!(answer["result"]["isError"], true, "{answer}");
    result_text(&answer)
}

#[tokio::test(flavor = "multi_thread")]
async fn replacing_a_plugin_under_load_fails_no_call_and_new_calls_get_the_new_version() {
    let env = TestEnv::new(&["echo-plugin"]);
    let target = env.plugin_dir().join("libecho_plugin.so");
    let mut warm = env.shim().await;
    warm.initialize("warm").await;
    assert_eq!(ask(&mut warm, "echo", "before").await, "before");
    let mapped_before = mapped(&env.status().unwrap());

    let swapped = Arc::new(AtomicBool::new(false));
    let stop = Arc::new(AtomicBool::new(false));
    let calls_total = Arc::new(AtomicUsize::new(0));
    let on_v2 = Arc::new(AtomicUsize::new(0));
    let mut workers = Vec::new();
    for w in 0..4 {
        let mut shim = env.shim().await;
        shim.initialize(&format!("worker-{w}")).await;
        let (stop, swapped) = (stop.clone(), swapped.clone());
        let (calls_total, on_v2) = (calls_total.clone(), on_v2.clone());
        workers.push(tokio::spawn(async move {
            let mut seen_v2 = false;
            let mut calls = 0u32;
            while !stop.load(Ordering::SeqCst) {
                calls += 1;
                let message = format!("w{w} c{calls}");
                let text = ask(&mut shim, "echo", &message).await;
                calls_total.fetch_add(1, Ordering::SeqCst);
                if text == format!("v2: {message}") {
                    assert!(swapped.load(Ordering::SeqCst), "v2 only after the swap");
                    if !seen_v2 {
                        seen_v2 = true;
                        on_v2.fetch_add(1, Ordering::SeqCst);
                    }
                } else {
                    assert_eq!(text, message, "an answer from neither version");
                    assert!(!seen_v2, "an old answer after a new one");
                }
            }
            calls
        }));
    }
    let wait = |what: &str, done: &dyn Fn() -> bool| {
        let deadline = Instant::now() + Duration::from_secs(30);
        while !done() {
            assert!(Instant::now() < deadline, "timed out waiting: {what}");
            std::thread::sleep(Duration::from_millis(20));
        }
    };
    wait("workers under way", &|| {
        calls_total.load(Ordering::SeqCst) >= 20
    });
    swapped.store(true, Ordering::SeqCst);
    atomic_replace(&build::plugin_library("echo-v2-plugin"), &target);
    let status = env.wait_status(Duration::from_secs(10), |s| {
        plugin(s, "echo").is_some_and(|p| p["version"] == "0.2.0")
    });
    // Every worker must reach v2; then stop them.
    wait("every worker on v2", &|| on_v2.load(Ordering::SeqCst) == 4);
    stop.store(true, Ordering::SeqCst);
    for worker in workers {
        worker.await.expect("no call failed");
    }
    let echo = plugin(&status, "echo").unwrap();
    assert_eq!(echo["reload_count"], 1);
    assert!(echo["last_error"].is_null());
    // One replacement: one reload, one new mapping, and nothing after it
    // (the daemon's own read of the file must not count as a change).
    let one_swap = |s: &Value| {
        plugin(s, "echo").is_some_and(|p| p["reload_count"] == 1 && p["version"] == "0.2.0")
            && mapped(s) == mapped_before + 1
    };
    assert!(one_swap(&status), "{status}");
    assert_stays(&env, "one reload and one mapping per swap", one_swap);

    // A second swap (back to v1) is again exactly one more.
    atomic_replace(&build::plugin_library("echo-plugin"), &target);
    env.wait_status(Duration::from_secs(10), |s| {
        plugin(s, "echo").is_some_and(|p| p["version"] == "0.1.0")
    });
    let two_swaps = |s: &Value| {
        plugin(s, "echo").is_some_and(|p| p["reload_count"] == 2) && mapped(s) == mapped_before + 2
    };
    assert_stays(&env, "two reloads after two swaps", two_swaps);
    assert_eq!(ask(&mut warm, "echo", "after").await, "after");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_touch_or_an_identical_rewrite_or_reinstall_reloads_nothing() {
    let env = TestEnv::new(&["echo-plugin"]);
    let target = env.plugin_dir().join("libecho_plugin.so");
    let mut shim = env.shim().await;
    shim.initialize("unchanged").await;
    assert_eq!(ask(&mut shim, "echo", "v1").await, "v1");
    let before = env.status().unwrap();
    let mapped_before = mapped(&before);
    let unchanged = |s: &Value| {
        plugin(s, "echo").is_some_and(|p| p["reload_count"] == 0) && mapped(s) == mapped_before
    };
    let skipped = || env.daemon_log().matches("plugin file unchanged").count();

    // `touch`: new mtime, same bytes (an attribute event only).
    std::fs::File::options()
        .write(true)
        .open(&target)
        .unwrap()
        .set_modified(std::time::SystemTime::now() + Duration::from_secs(5))
        .unwrap();
    // The same bytes written again in place: a real modify event.
    std::fs::write(&target, std::fs::read(&target).unwrap()).unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    while skipped() < 1 {
        assert!(
            Instant::now() < deadline,
            "rewrite never looked at:\n{}",
            env.daemon_log()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    assert!(unchanged(&env.status().unwrap()));
    // The same build installed again by rename.
    atomic_replace(&build::plugin_library("echo-plugin"), &target);
    while skipped() < 2 {
        assert!(
            Instant::now() < deadline,
            "reinstall never looked at:\n{}",
            env.daemon_log()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    assert_stays(&env, "no reload for unchanged bytes", unchanged);
    assert_eq!(ask(&mut shim, "echo", "still v1").await, "still v1");
}

#[tokio::test(flavor = "multi_thread")]
async fn broken_or_incompatible_files_are_refused_while_the_old_version_answers() {
    let env = TestEnv::new(&["echo-plugin"]);
    let target = env.plugin_dir().join("libecho_plugin.so");
    let mut shim = env.shim().await;
    shim.initialize("refusals").await;
    assert_eq!(ask(&mut shim, "echo", "v1").await, "v1");

    // A truncated write (not a library at all).
    std::fs::write(&target, b"\x7fELF but not really").unwrap();
    let status = env.wait_status(Duration::from_secs(10), |s| {
        plugin(s, "echo").is_some_and(|p| p["last_error"].is_string())
    });
    let reason = plugin(&status, "echo").unwrap()["last_error"]
        .as_str()
        .unwrap()
        .to_string();
    assert!(!reason.contains('\n'), "one line: {reason}");
    assert_eq!(ask(&mut shim, "echo", "still v1").await, "still v1");

    // A plugin built for plugin-api 9.x.
    atomic_replace(&build::plugin_library("future-api-plugin"), &target);
    let status = env.wait_status(Duration::from_secs(10), |s| {
        plugin(s, "echo").is_some_and(|p| {
            p["last_error"]
                .as_str()
                .is_some_and(|e| e.contains("9.0.0"))
        })
    });
    let reason = plugin(&status, "echo").unwrap()["last_error"]
        .as_str()
        .unwrap()
        .to_string();
    assert!(reason.contains("incompatible"), "{reason}");
    assert_eq!(ask(&mut shim, "echo", "v1 again").await, "v1 again");
    assert!(env.daemon_log().contains("previous version keeps serving"));

    // `poe-coded reload echo` says the same and fails.
    let out = env.run("poe-coded", &["reload", "echo"]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stdout).contains("REFUSED"));

    // Putting a good file back is picked up, and the reload command works.
    atomic_replace(&build::plugin_library("echo-v2-plugin"), &target);
    env.wait_status(Duration::from_secs(10), |s| {
        plugin(s, "echo").is_some_and(|p| p["version"] == "0.2.0")
    });
    let out = env.run_ok("poe-coded", &["reload", "echo"]);
    assert!(String::from_utf8_lossy(&out.stdout).contains("reloaded echo"));
    assert_eq!(ask(&mut shim, "echo", "hi").await, "v2: hi");
}

#[tokio::test(flavor = "multi_thread")]
async fn new_files_add_plugins_removed_files_retire_them_and_older_compatible_apis_load() {
    let env = TestEnv::new(&["echo-plugin"]);
    let mut shim = env.shim().await;
    shim.initialize("add-remove").await;
    let older = env.plugin_dir().join("libolder_api_plugin.so");
    atomic_replace(&build::plugin_library("older-api-plugin"), &older);
    let status = env.wait_status(Duration::from_secs(10), |s| plugin(s, "older").is_some());
    assert_eq!(
        plugin(&status, "older").unwrap()["plugin_api_version"],
        "0.1.0"
    );
    assert_eq!(ask(&mut shim, "older", "x").await, "older: ok");

    std::fs::remove_file(&older).unwrap();
    env.wait_status(Duration::from_secs(10), |s| plugin(s, "older").is_none());
    let gone = shim.ask("older", "x").await;
    assert_eq!(
        testkit::client::error_code(&gone).as_deref(),
        Some("MODEL_NOT_FOUND")
    );
    assert_eq!(ask(&mut shim, "echo", "echo stays").await, "echo stays");
}

#[tokio::test(flavor = "multi_thread")]
async fn status_reports_per_plugin_upstream_figures() {
    let env = TestEnv::new(&["echo-plugin", "faulty-plugin"]);
    let mut shim = env.shim().await;
    shim.initialize("metrics").await;
    for i in 0..5 {
        ask(&mut shim, "echo", &format!("m{i}")).await;
    }
    let _ = shim.ask("faulty-panic", "x").await;
    let status = env.status().unwrap();
    let echo = plugin(&status, "echo").unwrap();
    assert_eq!(echo["requests"], 5);
    assert!(echo["latency_p50_ms"].as_f64().is_some());
    assert!(echo["latency_p95_ms"].as_f64().is_some());
    let faulty = plugin(&status, "faulty").unwrap();
    assert_eq!(faulty["errors"]["internal"], 1);
    assert_eq!(status["sessions"][0]["client_version"], "1.0.0");
    let human = env.run("poe-coded", &["status"]);
    let text = String::from_utf8_lossy(&human.stdout);
    assert!(text.contains("5 upstream requests"), "{text}");
    assert!(text.contains("internal 1"), "{text}");
}
