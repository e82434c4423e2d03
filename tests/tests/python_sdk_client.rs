//! Interoperability with an external client: the official MCP Python SDK
//! (PyPI `mcp` 2.x) drives a real shim over both lifecycles. Needs python3
//! with `mcp` (see `testkit::external`: it fails without one unless
//! `POE_CODE_TEST_SKIP` names `python-mcp`; `.ci/run` installs it).

use std::path::Path;
use std::process::Command;

use serde_json::Value;
use testkit::TestEnv;
use testkit::external::{Tool, require};

fn run_sdk(python: &Path, env: &TestEnv, mode: &str) -> Value {
    let script = testkit::build::workspace_root().join("tests/python/sdk_client.py");
    let out = Command::new(python)
        .arg(&script)
        .arg("stdio")
        .arg(testkit::build::binary("poe-code"))
        .arg(mode)
        .env_remove("POE_BASE_URL")
        .env_remove("POE_CODE_LOG")
        .envs(env.shim_env())
        .output()
        .expect("run python3");
    assert!(
        out.status.success(),
        "python SDK client failed ({mode}):\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let line = String::from_utf8_lossy(&out.stdout);
    serde_json::from_str(line.trim()).unwrap_or_else(|e| panic!("bad output {line}: {e}"))
}

#[test]
fn official_python_sdk_speaks_both_lifecycles() {
    let Some(python) = require(
        Tool::PythonMcp,
        "official_python_sdk_speaks_both_lifecycles",
    ) else {
        return;
    };
    let env = TestEnv::new(&["echo-plugin"]);
    for (mode, protocol) in [("initialize", "2025-11-25"), ("discover", "2026-07-28")] {
        let seen = run_sdk(&python, &env, mode);
        assert_eq!(seen["protocol"], protocol, "{seen}");
        assert_eq!(seen["text"], format!("hello via {mode}"));
        assert_eq!(seen["is_error"], false);
        assert_eq!(seen["tools"][0], "get_bot_response");
    }
}

#[test]
fn official_python_sdk_speaks_both_eras_over_http() {
    let Some(python) = require(
        Tool::PythonMcp,
        "official_python_sdk_speaks_both_eras_over_http",
    ) else {
        return;
    };
    let env = TestEnv::new(&["echo-plugin"]);
    let token = env.create_token("python");
    let base = env.start_http_daemon();
    let script = testkit::build::workspace_root().join("tests/python/sdk_client.py");
    for (mode, protocol) in [("initialize", "2025-11-25"), ("discover", "2026-07-28")] {
        let out = Command::new(&python)
            .arg(&script)
            .arg("http")
            .arg(format!("{base}/mcp"))
            .arg(&token)
            .arg(mode)
            .output()
            .expect("run python3");
        assert!(
            out.status.success(),
            "python SDK HTTP client failed ({mode}):\n{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let line = String::from_utf8_lossy(&out.stdout);
        let seen: Value =
            serde_json::from_str(line.trim()).unwrap_or_else(|e| panic!("bad output {line}: {e}"));
        assert_eq!(seen["protocol"], protocol, "{seen}");
        assert_eq!(seen["text"], format!("hello via {mode}"));
        assert_eq!(seen["is_error"], false);
        assert!(
            !String::from_utf8_lossy(&out.stderr).contains("Error"),
            "the SDK logged an error ({mode}): {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let status = env.status().unwrap();
    assert_eq!(status["http"]["tokens"][0]["name"], "python");
    assert_eq!(status["http"]["tokens"][0]["calls"], 2);
}
