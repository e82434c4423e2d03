//! The plugin driving a fake `codex` (tests/fixtures/fake-codex.py, which
//! prints codex-cli 0.169.0's real JSONL): the command line and working
//! directory, text, progress and usage, thread continuation, each failure
//! mapped to a typed error, and cancellation and timeouts that leave no
//! process behind.

mod common;

use std::time::{Duration, Instant};

use common::*;
use poe_plugin_api::{Driver, ErrorKind, Event, Sink};
use serde_json::json;

struct Scratch {
    dir: tempfile::TempDir,
}

impl Scratch {
    fn new() -> Self {
        Scratch {
            dir: tempfile::tempdir().unwrap(),
        }
    }
    fn work(&self) -> std::path::PathBuf {
        let work = self.dir.path().join("work");
        std::fs::create_dir_all(&work).unwrap();
        work.canonicalize().unwrap()
    }
}

/// The fake's log, shared by every test of this binary. Codex gets the
/// variables of the daemon's (here the test's) environment it is allowed
/// (`CODEX_PASS_ENV` adds FAKE_CODEX_LOG), so it is set here, with a
/// POE_API_KEY the plugin must hide from codex. Every test calls this
/// first, so the environment is written before any test starts a process.
fn run_log() -> std::path::PathBuf {
    static LOG: std::sync::OnceLock<(tempfile::TempDir, std::path::PathBuf)> =
        std::sync::OnceLock::new();
    LOG.get_or_init(|| {
        let dir = tempfile::tempdir().unwrap();
        let log = dir.path().join("runs.jsonl");
        // SAFETY: runs once, before any test of this binary spawns a process
        // (each test waits here first); nothing else writes the environment.
        unsafe {
            std::env::set_var("FAKE_CODEX_LOG", &log);
            std::env::set_var("POE_API_KEY", "poe-secret-for-the-test");
        }
        (dir, log)
    })
    .1
    .clone()
}

/// The fake's record of the run whose prompt contained `marker`.
fn record_of(marker: &str) -> serde_json::Value {
    let log = run_log();
    assert!(eventually(5, || runs(&log)
        .iter()
        .any(|r| r["prompt"].as_str().unwrap_or("").contains(marker))));
    runs(&log)
        .into_iter()
        .find(|r| r["prompt"].as_str().unwrap_or("").contains(marker))
        .unwrap()
}

#[test]
fn a_run_streams_text_progress_usage_and_its_thread() {
    run_log();
    let scratch = Scratch::new();
    let work = scratch.work();
    let provider = provider(&[]);
    let (result, rec) = invoke(&provider, request("codex", "first-run hello", &work));
    let response = result.unwrap();
    assert_eq!(response.text, "Codex heard: first-run hello");
    assert_eq!(rec.streamed_text(), response.text);
    assert_eq!(response.model.as_deref(), Some("codex"));
    let usage = response.usage.clone().unwrap();
    assert_eq!(
        (
            usage.prompt_tokens,
            usage.completion_tokens,
            usage.total_tokens
        ),
        (120, 7, 127)
    );
    let thread = response.continuation.clone().expect("thread id");
    assert!(
        rec.events()
            .contains(&Event::Continuation { id: thread.clone() })
    );
    let progress = rec.progress();
    assert!(
        progress.contains(&"running `bash -lc ls`".to_string()),
        "{progress:?}"
    );
    assert!(
        progress.iter().any(|p| p.starts_with("thinking:")),
        "{progress:?}"
    );

    let record = record_of("first-run hello");
    assert_eq!(record["cwd"], json!(work.display().to_string()));
    assert_eq!(
        record["argv"],
        json!([
            "exec",
            "--json",
            "--sandbox=read-only",
            "-c",
            "approval_policy=\"never\"",
            "--skip-git-repo-check",
            "--",
            "-"
        ])
    );
    assert_eq!(
        record["prompt"], "first-run hello",
        "the prompt arrives on stdin"
    );

    // The thread id continues the conversation through `codex exec resume`.
    // The host strips `codex:`; the plugin gets the bare model name.
    let mut again = request("gpt-5-codex", "second-run more", &work);
    again.continuation = Some(thread.clone());
    let (result, _) = invoke(&provider, again);
    let response = result.unwrap();
    assert_eq!(
        response.text,
        format!("Resumed {thread}. Codex heard: second-run more (model gpt-5-codex)")
    );
    assert_eq!(response.continuation.as_deref(), Some(thread.as_str()));
    let record = record_of("second-run more");
    let argv: Vec<String> = serde_json::from_value(record["argv"].clone()).unwrap();
    let resume = argv.iter().position(|a| a == "resume").expect("resume");
    assert!(argv[..resume].contains(&"--model=gpt-5-codex".to_string()));
    assert_eq!(&argv[resume + 1..], ["--", thread.as_str(), "-"]);
}

#[test]
fn settings_reach_the_command_line_and_the_poe_key_does_not() {
    run_log();
    let scratch = Scratch::new();
    let provider = provider(&[
        ("CODEX_SANDBOX_MODE", "workspace-write"),
        ("CODEX_APPROVAL_POLICY", "on-request"),
        ("CODEX_SKIP_GIT_CHECK", "false"),
    ]);
    let (result, _) = invoke(&provider, request("codex", "settings-run", &scratch.work()));
    result.unwrap();
    let record = record_of("settings-run");
    let argv: Vec<String> = serde_json::from_value(record["argv"].clone()).unwrap();
    assert!(
        argv.contains(&"--sandbox=workspace-write".to_string()),
        "{argv:?}"
    );
    assert!(
        argv.contains(&"approval_policy=\"on-request\"".to_string()),
        "{argv:?}"
    );
    assert!(
        !argv.contains(&"--skip-git-repo-check".to_string()),
        "{argv:?}"
    );
    assert_eq!(record["poe_api_key_visible"], false);
}

#[test]
fn failures_are_typed() {
    run_log();
    let scratch = Scratch::new();
    let work = scratch.work();
    let provider = provider(&[]);
    let fail = invoke(&provider, request("codex", "please FAIL", &work))
        .0
        .unwrap_err();
    assert_eq!((fail.kind, fail.status), (ErrorKind::Upstream, None));
    assert!(fail.message.contains("the fake model broke"), "{fail}");
    let login = invoke(&provider, request("codex", "NOLOGIN", &work))
        .0
        .unwrap_err();
    assert_eq!(login.kind, ErrorKind::Unavailable);
    assert!(login.message.contains("codex login"), "{login}");
    let crash = invoke(&provider, request("codex", "CRASH", &work))
        .0
        .unwrap_err();
    assert_eq!(crash.kind, ErrorKind::Unavailable);
    assert!(
        crash.message.contains("could not load its configuration"),
        "{crash}"
    );
    assert!(!crash.message.contains("Stack backtrace"), "{crash}");

    let missing = provider_with_bin("/nonexistent/codex");
    let err = invoke(&missing, request("codex", "x", &work))
        .0
        .unwrap_err();
    assert_eq!(err.kind, ErrorKind::Unavailable);
    assert!(
        err.message.contains("npm install -g @openai/codex"),
        "{err}"
    );

    let gone = request("codex", "x", &work.join("no-such-dir"));
    let err = invoke(&provider, gone).0.unwrap_err();
    assert_eq!(err.kind, ErrorKind::InvalidRequest);

    let bad = common::provider(&[("CODEX_SANDBOX_MODE", "yolo")]);
    let err = invoke(&bad, request("codex", "x", &work)).0.unwrap_err();
    assert_eq!(err.kind, ErrorKind::Unavailable);
    assert!(err.message.contains("CODEX_SANDBOX_MODE"), "{err}");
}

fn provider_with_bin(bin: &str) -> Driver<codex_cli::CodexCli> {
    let mut config = poe_plugin_api::Config::new();
    config.insert("CODEX_BIN".into(), bin.into());
    Driver::open(config).unwrap()
}

/// Starts a run with `marker`, cancels it once the fake has started its
/// child, and checks that the whole process group is gone.
fn cancel_leaves_nothing(marker: &str) {
    run_log();
    let scratch = Scratch::new();
    let work = scratch.work();
    let provider = provider(&[]);
    let recorder = Recorder::default();
    let canceller = recorder.clone();
    let watcher = std::thread::spawn({
        let marker = marker.to_string();
        move || {
            let record = record_of(&marker);
            canceller.cancel();
            record
        }
    });
    let started = Instant::now();
    let sink = Sink::new(recorder.clone());
    let err = provider
        .invoke(request("codex", marker, &work), &sink)
        .unwrap_err();
    let elapsed = started.elapsed();
    assert_eq!(err.kind, ErrorKind::Cancelled);
    // Inside the host's two-second grace for cancelled calls.
    assert!(elapsed < Duration::from_secs(5), "took {elapsed:?}");
    let record = watcher.join().unwrap();
    let pid = record["pid"].as_i64().unwrap();
    let child = record["child_pid"].as_i64().unwrap();
    let pgid = record["pgid"].as_i64().unwrap();
    assert_eq!(pgid, pid, "codex leads its own process group");
    assert!(!alive(pid), "fake codex {pid} still running");
    assert!(!alive(child), "its child {child} was orphaned");
    assert!(group_members(pgid).is_empty(), "group {pgid} not empty");
}

#[test]
fn cancelling_kills_the_whole_process_group() {
    cancel_leaves_nothing("SLOW cancel-me");
}

#[test]
fn processes_ignoring_sigterm_are_killed() {
    cancel_leaves_nothing("STUBBORN cancel-me-harder");
}

#[test]
fn a_deadline_stops_the_run() {
    run_log();
    let scratch = Scratch::new();
    let provider = provider(&[]);
    let mut req = request("codex", "SLOW deadline-run", &scratch.work());
    // Long enough for the fake to start its child, far below its 60 s sleep.
    req.timeout_ms = Some(2000);
    let (result, _) = invoke(&provider, req);
    assert_eq!(result.unwrap_err().kind, ErrorKind::Timeout);
    let record = record_of("deadline-run");
    let child = record["child_pid"].as_i64().unwrap();
    assert!(eventually(2, || !alive(child)), "child {child} survived");
}
