//! Plugins that misbehave never take the daemon down: a panic in a call is an
//! INTERNAL_ERROR result, a plugin that panics while loading or is not a
//! plugin at all is refused with a reason in `status`, and the rest serve on.

use testkit::TestEnv;
use testkit::client::{error_code, result_text};

#[tokio::test(flavor = "multi_thread")]
async fn panic_in_a_call_is_contained() {
    let env = TestEnv::new(&["faulty-plugin", "echo-plugin"]);
    let mut shim = env.shim().await;
    shim.initialize("panic").await;
    let pid_before = env.status().unwrap()["pid"].clone();
    for _ in 0..3 {
        let answer = shim.ask("faulty-panic", "boom").await;
        assert_eq!(
            error_code(&answer).as_deref(),
            Some("INTERNAL_ERROR"),
            "{answer}"
        );
        assert!(result_text(&answer).contains("panicked"), "{answer}");
    }
    let answer = shim.ask("echo", "still here").await;
    assert_eq!(result_text(&answer), "still here");
    assert_eq!(env.status().unwrap()["pid"], pid_before, "daemon restarted");
}

#[tokio::test(flavor = "multi_thread")]
async fn plugin_that_panics_while_loading_is_refused_with_a_reason() {
    for stage in ["manifest", "open"] {
        let env =
            TestEnv::new(&["faulty-plugin", "echo-plugin"]).with_var("FAULTY_PANIC_IN", stage);
        let mut shim = env.shim().await;
        shim.initialize("load-panic").await;
        let status = env.status().unwrap();
        let ids: Vec<&str> = status["plugins"]
            .as_array()
            .unwrap()
            .iter()
            .map(|p| p["id"].as_str().unwrap())
            .collect();
        assert_eq!(
            ids,
            ["echo"],
            "faulty must be refused when it panics in {stage}"
        );
        let reason = status["plugin_errors"][0]["reason"].as_str().unwrap();
        assert!(
            reason.contains("panicked") && reason.contains(stage),
            "{reason}"
        );
        let answer = shim.ask("echo", "ok").await;
        assert_eq!(result_text(&answer), "ok");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_file_that_is_not_a_plugin_is_refused() {
    let env = TestEnv::new(&["echo-plugin"]);
    env.write_plugin_file("libgarbage.so", b"definitely not an ELF file");
    let mut shim = env.shim().await;
    shim.initialize("garbage").await;
    let status = env.status().unwrap();
    assert_eq!(status["plugins"].as_array().unwrap().len(), 1);
    let error = &status["plugin_errors"][0];
    assert!(error["path"].as_str().unwrap().ends_with("libgarbage.so"));
    assert!(!error["reason"].as_str().unwrap().contains('\n'));
}

#[tokio::test(flavor = "multi_thread")]
async fn a_plugin_dir_writable_by_others_is_refused() {
    use std::os::unix::fs::PermissionsExt;
    let env = TestEnv::new(&["echo-plugin"]);
    std::fs::set_permissions(env.plugin_dir(), std::fs::Permissions::from_mode(0o777)).unwrap();
    let mut shim = env.shim().await;
    shim.initialize("perm").await;
    let status = env.status().unwrap();
    assert!(status["plugins"].as_array().unwrap().is_empty());
    let reason = status["plugin_errors"][0]["reason"].as_str().unwrap();
    assert!(reason.contains("writable by other users"), "{reason}");
}
