//! A plugin built against plugin-api 0.1.3 — before calls could run without
//! a host thread (0.1.4's start requests) — still loads and runs in today's
//! daemon: its blocking `invoke` gets a thread of the blocking pool. The
//! fixture is a workspace of its own (tests/old-api) holding that release of
//! plugin-api, so it really is built against the old ABI.
//!
//! (Plugins built for 0.1.0/0.1.1 have not loaded since 0.1.2 appended an
//! entry to the sink's vtable; `compat::check_loadable` refuses them in one
//! line, unit-tested there.)

use std::path::PathBuf;
use std::process::Command;
use std::sync::OnceLock;
use std::time::Duration;

use serde_json::json;
use testkit::client::{error_code, result_text};
use testkit::env::plugin;
use testkit::{McpClient, TestEnv, build};

/// Builds tests/old-api once per process and returns its cdylib.
fn old_api_library() -> &'static PathBuf {
    static BUILT: OnceLock<PathBuf> = OnceLock::new();
    BUILT.get_or_init(|| {
        let root = build::workspace_root();
        let target = build::artifact_dir()
            .parent()
            .expect("artifact dir has a parent")
            .join("old-api");
        let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
        let mut command = Command::new(cargo);
        command
            .current_dir(root.join("tests/old-api"))
            .env("CARGO_TARGET_DIR", &target)
            .args(["build", "--quiet", "--locked", "-p", "old-api-plugin"]);
        if build::RELEASE {
            command.arg("--release");
        }
        let output = command.output().expect("cannot run cargo build");
        assert!(
            output.status.success(),
            "building the plugin-api 0.1.3 fixture failed:\n{}",
            String::from_utf8_lossy(&output.stderr)
        );
        target
            .join(if build::RELEASE { "release" } else { "debug" })
            .join("libold_api_plugin.so")
    })
}

async fn env_with_old_plugin() -> (TestEnv, McpClient) {
    let env = TestEnv::new(&["echo-plugin"]);
    std::fs::copy(
        old_api_library(),
        env.plugin_dir().join("libold_api_plugin.so"),
    )
    .unwrap();
    let mut shim = env.shim().await;
    shim.initialize("old-api").await;
    (env, shim)
}

#[tokio::test(flavor = "multi_thread")]
async fn a_plugin_built_for_0_1_3_loads_answers_and_contains_its_panics() {
    let (env, mut shim) = env_with_old_plugin().await;
    let status = env.status().unwrap();
    let old = plugin(&status, "old-api").expect("old-api plugin loaded");
    assert_eq!(old["plugin_api_version"], "0.1.3", "{status}");

    let answer = shim.ask("old-api", "hello").await;
    assert_eq!(result_text(&answer), "old-api: hello", "{answer}");

    let panicked = shim.ask("old-api", "panic").await;
    assert_eq!(
        error_code(&panicked).as_deref(),
        Some("INTERNAL_ERROR"),
        "{panicked}"
    );
    let answer = shim.ask("old-api", "after").await;
    assert_eq!(result_text(&answer), "old-api: after", "{answer}");
    // A new-ABI plugin beside it is unaffected.
    assert_eq!(result_text(&shim.ask("echo", "new").await), "new");
}

#[tokio::test(flavor = "multi_thread")]
async fn old_plugin_calls_run_side_by_side_and_can_be_cancelled() {
    let (env, mut shim) = env_with_old_plugin().await;
    let mut ids = Vec::new();
    // Distinct prompts: identical calls would share one job.
    for i in 0..4 {
        ids.push(
            shim.send_request(
                "tools/call",
                json!({"name": "get_bot_response",
                       "arguments": {"bot_name": "old-api", "message": format!("sleep 6000{i}")}}),
            )
            .await,
        );
    }
    // All four are in the plugin at once, each on its own blocking thread.
    env.wait_status(Duration::from_secs(20), |s| s["calls_in_flight"] == 4);
    for id in &ids {
        shim.send(
            &json!({"jsonrpc": "2.0", "method": "notifications/cancelled",
                          "params": {"requestId": id}}),
        )
        .await;
    }
    // The plugin sees the flag through the old sink and returns.
    env.wait_status(Duration::from_secs(20), |s| s["calls_in_flight"] == 0);
    let listed = shim.call_tool("check_status", json!({})).await;
    let jobs = listed["result"]["structuredContent"]["jobs"]
        .as_array()
        .unwrap_or_else(|| panic!("{listed}"));
    assert_eq!(jobs.len(), 4, "{listed}");
    assert!(
        jobs.iter().all(|job| job["status"] == "cancelled"),
        "{listed}"
    );
    assert_eq!(
        result_text(&shim.ask("old-api", "still").await),
        "old-api: still"
    );
}
