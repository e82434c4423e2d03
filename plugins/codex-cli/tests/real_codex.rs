//! The plugin driving the real Codex CLI, offline: codex is pointed at a
//! local fake of the Responses API (a custom model provider with
//! `base_url` and `wire_api = "responses"` in a throwaway CODEX_HOME).
//! Proves what the fake `codex` cannot: the flags are ones the real CLI
//! accepts, `codex exec resume` continues the thread named by the
//! continuation, and cancelling kills the real process tree (npm's node
//! launcher and the native binary it starts).
//!
//! Needs the Codex CLI (see `testkit::external`: it fails without one
//! unless `POE_CODE_TEST_SKIP` names `codex`).

mod common;

use std::time::{Duration, Instant};

use common::*;
use poe_plugin_api::{Config, Driver, ErrorKind, Sink};
use serde_json::Value;
use testkit::external::{Tool, require};
use testkit::responses::{FakeResponses, Turn, user_texts};
use wiremock::matchers::{body_string_contains, method, path};
use wiremock::{Mock, ResponseTemplate};

/// Names every user text it was sent, so a resumed thread shows its history.
fn heard(body: &Value) -> Turn {
    Turn::Say(format!("heard: {}", user_texts(body).join(" / ")))
}

/// Live processes whose environment holds `needle` (our CODEX_HOME).
fn processes_with_env(needle: &str) -> Vec<i64> {
    let Ok(dir) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    dir.filter_map(|e| e.ok()?.file_name().to_str()?.parse::<i64>().ok())
        .filter(|pid| *pid != i64::from(std::process::id()) && alive(*pid))
        .filter(|pid| {
            std::fs::read(format!("/proc/{pid}/environ"))
                .map(|env| env.split(|b| *b == 0).any(|var| var == needle.as_bytes()))
                .unwrap_or(false)
        })
        .collect()
}

#[test]
fn real_codex_runs_resumes_and_is_killed_on_cancel() {
    let Some(codex) = require(
        Tool::Codex,
        "real_codex_runs_resumes_and_is_killed_on_cancel",
    ) else {
        return;
    };
    let scratch = testkit::env::scratch_dir();
    let home = scratch.path().join("codex-home");
    let marker = format!("CODEX_HOME={}", home.display());
    // SAFETY: the only test in this binary, before it starts any thread.
    unsafe { std::env::set_var("CODEX_HOME", &home) };

    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let responses = rt.block_on(async {
        let responses = FakeResponses::start(heard).await;
        Mock::given(method("POST"))
            .and(path("/v1/responses"))
            .and(body_string_contains("never-answered"))
            .respond_with(ResponseTemplate::new(200).set_delay(Duration::from_secs(60)))
            .with_priority(1)
            .mount(responses.server())
            .await;
        responses
    });
    testkit::codex::write_config(&home, &responses.base_url(), "fake-model");
    let mut config = Config::new();
    config.insert("CODEX_BIN".into(), codex.display().to_string());
    let provider = Driver::<codex_cli::CodexCli>::open(config).unwrap();
    let work = scratch.path().join("project");
    std::fs::create_dir_all(&work).unwrap();

    let (first, rec) = invoke(&provider, request("codex", "remember plum", &work));
    let first = first.unwrap();
    assert_eq!(first.text, "heard: remember plum");
    assert_eq!(rec.streamed_text(), first.text);
    let thread = first.continuation.clone().expect("thread id");

    let mut again = request("codex", "which fruit?", &work);
    again.continuation = Some(thread.clone());
    let second = invoke(&provider, again).0.unwrap();
    assert_eq!(
        second.text, "heard: remember plum / which fruit?",
        "the thread was resumed"
    );
    assert_eq!(second.continuation.as_deref(), Some(thread.as_str()));

    // An unknown thread is the caller's mistake, not a new conversation.
    let mut unknown = request("codex", "hello?", &work);
    unknown.continuation = Some("01a20791-0000-7000-8000-000000000000".into());
    let err = invoke(&provider, unknown).0.unwrap_err();
    assert_eq!(err.kind, ErrorKind::InvalidRequest, "{err}");

    let recorder = Recorder::default();
    let canceller = recorder.clone();
    let started = Instant::now();
    let err = std::thread::scope(|scope| {
        let watcher = scope.spawn(|| {
            // Cancel once codex is up and waiting on the never-answered request.
            let asked = || {
                let rt = tokio::runtime::Builder::new_current_thread()
                    .build()
                    .unwrap();
                rt.block_on(responses.requests())
                    .iter()
                    .any(|body| body.to_string().contains("never-answered"))
            };
            let seen = eventually(60, asked);
            canceller.cancel();
            seen
        });
        let err = provider
            .invoke(
                request("codex", "never-answered", &work),
                &Sink::new(recorder),
            )
            .unwrap_err();
        assert!(watcher.join().unwrap(), "codex never sent the request");
        err
    });
    assert_eq!(err.kind, ErrorKind::Cancelled, "{err}");
    assert!(started.elapsed() < Duration::from_secs(25));
    let left = processes_with_env(&marker);
    assert!(
        left.is_empty(),
        "codex processes left after cancel: {left:?}"
    );
}
