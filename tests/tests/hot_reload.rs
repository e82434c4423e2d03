//! Hot reload as a plugin author sees it: replace a plugin's file under a
//! daemon serving several sessions in a loop, and no call fails while new
//! calls reach the new version; files that are corrupt or built for another
//! plugin-api major are refused while the old version keeps answering.

use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use testkit::client::result_text;
use testkit::{TestEnv, build};

/// Replaces `target` with `source` the way installers do: write a temp file
/// beside it, then rename over it.
fn atomic_replace(source: &Path, target: &Path) {
    let tmp = target.with_extension("partial");
    std::fs::copy(source, &tmp).unwrap();
    std::fs::rename(&tmp, target).unwrap();
}

fn plugin(status: &Value, id: &str) -> Option<Value> {
    status["plugins"]
        .as_array()?
        .iter()
        .find(|p| p["id"] == id)
        .cloned()
}

async fn ask(shim: &mut testkit::McpClient, bot: &str, message: &str) -> String {
    let answer = shim
        .call_tool(
            "get_bot_response",
            json!({"bot_name": bot, "message": message}),
        )
        .await;
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

    let swapped_at: Arc<std::sync::Mutex<Option<Instant>>> = Arc::default();
    let stop = Arc::new(AtomicBool::new(false));
    let mut workers = Vec::new();
    for w in 0..4 {
        let mut shim = env.shim().await;
        shim.initialize(&format!("worker-{w}")).await;
        let stop = stop.clone();
        let swapped_at = swapped_at.clone();
        workers.push(tokio::spawn(async move {
            let mut seen_v2_after: Option<Duration> = None;
            let mut calls = 0u32;
            let deadline = Instant::now() + Duration::from_secs(30);
            while !stop.load(Ordering::Relaxed) && Instant::now() < deadline {
                calls += 1;
                let message = format!("w{w} c{calls}");
                let text = ask(&mut shim, "echo", &message).await;
                if text == format!("v2: {message}") {
                    if seen_v2_after.is_none() {
                        let at = swapped_at.lock().unwrap().expect("v2 only after the swap");
                        seen_v2_after = Some(at.elapsed());
                    }
                } else {
                    assert_eq!(text, message, "an answer from neither version");
                    assert!(seen_v2_after.is_none(), "an old answer after a new one");
                }
            }
            (calls, seen_v2_after)
        }));
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    *swapped_at.lock().unwrap() = Some(Instant::now());
    atomic_replace(&build::plugin_library("echo-v2-plugin"), &target);
    // Every worker must reach v2; then stop them.
    let status = env.wait_status(Duration::from_secs(10), |s| {
        plugin(s, "echo").is_some_and(|p| p["version"] == "0.2.0")
    });
    tokio::time::sleep(Duration::from_millis(500)).await;
    stop.store(true, Ordering::Relaxed);
    for worker in workers {
        let (calls, seen) = worker.await.expect("no call failed");
        let after = seen.expect("worker never got the new version");
        // 300 ms of settling plus 1 s; generous for a loaded CI machine.
        assert!(
            after < Duration::from_millis(2000),
            "new version took {after:?} ({calls} calls)"
        );
    }
    let echo = plugin(&status, "echo").unwrap();
    assert_eq!(echo["reload_count"], 1);
    assert!(echo["last_error"].is_null());
    assert!(status["libraries_mapped"].as_u64().unwrap() >= 2);
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
    let out = env.run("poe-coded", &["reload", "echo"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
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
    let gone = shim
        .call_tool(
            "get_bot_response",
            json!({"bot_name": "older", "message": "x"}),
        )
        .await;
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
    let _ = shim
        .call_tool(
            "get_bot_response",
            json!({"bot_name": "faulty-panic", "message": "x"}),
        )
        .await;
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
