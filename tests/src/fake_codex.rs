//! The fake `codex` of tests/fixtures/fake-codex.py (codex-cli's real JSONL,
//! behaviour picked by a word in the prompt) and the record it keeps of each
//! run when `FAKE_CODEX_LOG` names a file.

use std::path::{Path, PathBuf};

use serde_json::Value;

use crate::build;

/// The fake's path, for `CODEX_BIN`.
pub fn path() -> PathBuf {
    build::workspace_root().join("tests/fixtures/fake-codex.py")
}

/// Every run recorded in `log` so far, oldest first (argv, cwd, prompt,
/// pids, `CODEX_HOME`, …).
pub fn runs(log: &Path) -> Vec<Value> {
    std::fs::read_to_string(log)
        .unwrap_or_default()
        .lines()
        .filter_map(|l| serde_json::from_str(l).ok())
        .collect()
}

/// The arguments a recorded run was started with.
pub fn argv(run: &Value) -> Vec<&str> {
    run["argv"]
        .as_array()
        .expect("a run records its argv")
        .iter()
        .filter_map(Value::as_str)
        .collect()
}
