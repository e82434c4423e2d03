//! Shared test harness: a recording sink, the provider opened the way the
//! host opens it with the fake `codex` of tests/fixtures as CODEX_BIN, and
//! /proc checks for processes left behind.
//!
//! `invoke` blocks on the provider's own runtime, so tests are plain
//! `#[test]`s.

#![allow(dead_code)] // each test binary uses a different subset

use std::path::{Path, PathBuf};

use codex_cli::CodexCli;
use poe_plugin_api::{Config, Driver, Message, PluginError, Request, Response, Sink};
use serde_json::Value;

/// Records events; `cancel()` flips the flag the plugin polls.
pub use poe_plugin_api::host::RecordingSink as Recorder;

/// tests/fixtures/fake-codex.py of the workspace.
pub fn fake_codex() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../tests/fixtures/fake-codex.py")
        .canonicalize()
        .expect("fake codex fixture")
}

/// The provider with `CODEX_BIN` = the fake (and its log variable passed),
/// plus `extra` config.
pub fn provider(extra: &[(&str, &str)]) -> Driver<CodexCli> {
    let mut config = Config::new();
    config.insert("CODEX_BIN".into(), fake_codex().display().to_string());
    // The fake's log is named in the daemon's (here the test's) environment;
    // codex gets only the variables it is allowed.
    config.insert("CODEX_PASS_ENV".into(), "FAKE_CODEX_LOG".into());
    for (k, v) in extra {
        config.insert((*k).into(), (*v).into());
    }
    Driver::open(config).expect("provider opens")
}

/// A streaming request for `model` with `prompt`, run in `cwd`.
pub fn request(model: &str, prompt: &str, cwd: &Path) -> Request {
    Request {
        model: model.into(),
        messages: vec![Message::user(prompt)],
        stream: true,
        cwd: Some(cwd.display().to_string()),
        ..Request::default()
    }
}

/// Invokes with a fresh recorder.
pub fn invoke(
    provider: &Driver<CodexCli>,
    request: Request,
) -> (Result<Response, PluginError>, Recorder) {
    let recorder = Recorder::default();
    let sink = Sink::new(recorder.clone());
    let result = provider.invoke(request, &sink);
    (result, recorder)
}

/// The records the fake wrote to `log` (one JSON object per run).
pub fn runs(log: &Path) -> Vec<Value> {
    std::fs::read_to_string(log)
        .unwrap_or_default()
        .lines()
        .map(|l| serde_json::from_str(l).expect("fake codex log line"))
        .collect()
}

/// State letter and process group of `pid`, from /proc/<pid>/stat.
fn stat(pid: i64) -> Option<(char, i64)> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // "pid (comm) S ppid pgrp ...": comm may hold spaces, so split after ')'.
    let rest = &stat[stat.rfind(')')? + 1..];
    let mut fields = rest.split_whitespace();
    let state = fields.next()?.chars().next()?;
    let _ppid = fields.next()?;
    let pgrp = fields.next()?.parse().ok()?;
    Some((state, pgrp))
}

/// Whether `pid` is a live (non-zombie) process.
pub fn alive(pid: i64) -> bool {
    stat(pid).is_some_and(|(state, _)| state != 'Z')
}

/// Live processes in process group `pgid`.
pub fn group_members(pgid: i64) -> Vec<i64> {
    std::fs::read_dir("/proc")
        .map(|dir| {
            dir.filter_map(|e| e.ok()?.file_name().to_str()?.parse::<i64>().ok())
                .filter(|pid| stat(*pid).is_some_and(|(state, pg)| pg == pgid && state != 'Z'))
                .collect()
        })
        .unwrap_or_default()
}

/// Polls `f` for up to `secs` seconds.
pub fn eventually(secs: u64, f: impl Fn() -> bool) -> bool {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(secs);
    while std::time::Instant::now() < deadline {
        if f() {
            return true;
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    f()
}
