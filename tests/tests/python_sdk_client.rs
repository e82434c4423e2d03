//! Interoperability with an external client: the official MCP Python SDK
//! (PyPI `mcp` 2.x) drives a real shim over both lifecycles. Skipped, with
//! the reason printed, when python3 or the `mcp` package is missing
//! (`.ci/run` installs it).

use std::process::Command;

use serde_json::Value;
use testkit::TestEnv;

fn python_sdk_available() -> Result<(), String> {
    let out = Command::new("python3")
        .args([
            "-c",
            "import importlib.metadata as m; print(m.version('mcp'))",
        ])
        .output()
        .map_err(|e| format!("python3 not runnable: {e}"))?;
    if !out.status.success() {
        return Err("the Python package `mcp` is not installed (pip install 'mcp>=2')".into());
    }
    let version = String::from_utf8_lossy(&out.stdout).trim().to_string();
    if !version.starts_with('2') {
        return Err(format!("need mcp 2.x, found {version}"));
    }
    Ok(())
}

fn run_sdk(env: &TestEnv, mode: &str) -> Value {
    let script = testkit::build::workspace_root().join("tests/python/sdk_client.py");
    let binary = testkit::build::binary("poe-code");
    let command = env.command("poe-code");
    let program = command.get_program().to_owned();
    assert_eq!(program, binary.as_os_str());
    let out = Command::new("python3")
        .arg(&script)
        .arg(&binary)
        .arg(mode)
        .envs(
            command
                .get_envs()
                .filter_map(|(k, v)| v.map(|v| (k.to_owned(), v.to_owned()))),
        )
        .env("POE_API_KEY", testkit::env::TEST_API_KEY)
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
    if let Err(reason) = python_sdk_available() {
        println!("SKIPPED official_python_sdk_speaks_both_lifecycles: {reason}");
        return;
    }
    let env = TestEnv::new(&["echo-plugin"]);
    for (mode, protocol) in [("initialize", "2025-11-25"), ("discover", "2026-07-28")] {
        let seen = run_sdk(&env, mode);
        assert_eq!(seen["protocol"], protocol, "{seen}");
        assert_eq!(seen["text"], format!("hello via {mode}"));
        assert_eq!(seen["is_error"], false);
        assert_eq!(seen["tools"][0], "get_bot_response");
    }
}
