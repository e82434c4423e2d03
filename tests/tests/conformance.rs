//! The official MCP conformance suite (`@modelcontextprotocol/conformance`,
//! pinned in `.ci/run`) against a real daemon's HTTP listener, once per
//! protocol era (2025-11-25 sessions, 2026-07-28 stateless). Every generic
//! scenario must pass; the checks that need the suite's own fixture tools,
//! prompts or resources are listed, each with its reason, in
//! `tests/conformance/expected-failures.yml`, and the runner also fails when
//! one of those starts to pass. The suite sends no token, so the listener is
//! started without tokens (allowed on loopback only); `http.rs` tests tokens.
//!
//! Needs the suite and Node.js 22 (see `testkit::external`: it fails without
//! them unless `POE_CODE_TEST_SKIP` names `conformance`).

use std::process::Command;

use testkit::TestEnv;
use testkit::external::{Tool, conformance_script, require};

#[test]
fn the_official_conformance_suite_passes_in_both_eras() {
    let Some(node) = require(
        Tool::Conformance,
        "the_official_conformance_suite_passes_in_both_eras",
    ) else {
        return;
    };
    let env = TestEnv::new(&["echo-plugin"]);
    env.write_config("[http]\nrequire_token = false\n");
    let base = env.start_http_daemon();
    let baseline = testkit::build::workspace_root().join("tests/conformance/expected-failures.yml");
    for version in ["2025-11-25", "2026-07-28"] {
        let results = tempfile::tempdir().unwrap();
        let out = Command::new(&node)
            .arg(conformance_script())
            .args(["server", "--url", &format!("{base}/mcp"), "--suite", "all"])
            .args(["--spec-version", version])
            .arg("--expected-failures")
            .arg(&baseline)
            .arg("-o")
            .arg(results.path())
            .env("NO_COLOR", "1")
            .output()
            .expect("run the conformance suite");
        let stdout = String::from_utf8_lossy(&out.stdout);
        let summary = stdout
            .find("=== SUMMARY ===")
            .map_or(stdout.as_ref(), |at| &stdout[at..]);
        assert!(
            out.status.success(),
            "conformance {version}: failures outside the baseline\n{summary}\n{}\n--- daemon log:\n{}",
            String::from_utf8_lossy(&out.stderr),
            env.daemon_log()
        );
        assert!(
            summary.contains("all failures are expected"),
            "conformance {version}: {summary}"
        );
    }
}
