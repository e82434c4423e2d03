//! The real codex-cli plugin through real shims and the daemon, driving the
//! fake `codex` of tests/fixtures/fake-codex.py (which prints codex-cli's
//! real JSONL): `codex` and `codex:<model>` routing, the session's working
//! directory, streamed text and progress, a failing run, a missing login, a
//! missing binary, and cancellation that leaves no process behind.

use std::path::{Path, PathBuf};
use std::time::Duration;

use serde_json::json;
use testkit::client::{error_code, is_tool_error, result_text};
use testkit::fake_codex::{self, argv, runs};
use testkit::procs::{alive, group_members};
use testkit::{McpClient, TestEnv};

struct Setup {
    env: TestEnv,
    shim: McpClient,
    /// Where the shim (and so the session) runs.
    work: PathBuf,
    /// One JSON line per fake codex run.
    log: PathBuf,
    _scratch: tempfile::TempDir,
}

/// A daemon with codex-cli whose CODEX_BIN is `bin`, and a shim started in
/// a fresh working directory.
async fn setup(bin: &Path) -> Setup {
    let scratch = tempfile::tempdir().unwrap();
    let work = scratch.path().join("project");
    std::fs::create_dir_all(&work).unwrap();
    let work = work.canonicalize().unwrap();
    let log = scratch.path().join("codex-runs.jsonl");
    let env = TestEnv::new(&["codex-cli"])
        .with_var("CODEX_BIN", bin.display().to_string())
        .with_var("FAKE_CODEX_LOG", log.display().to_string())
        .with_var("CODEX_PASS_ENV", "FAKE_CODEX_LOG");
    let mut shim = env.shim_in(&work).await;
    shim.initialize("codex-cli-e2e").await;
    Setup {
        env,
        shim,
        work,
        log,
        _scratch: scratch,
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn codex_runs_in_the_session_directory_and_streams() {
    let mut s = setup(&fake_codex::path()).await;
    let answer = s
        .shim
        .request(
            "tools/call",
            json!({
                "name": "get_bot_response",
                "arguments": {"bot_name": "codex", "message": "what is in this repo?"},
                "_meta": {"progressToken": "c"}
            }),
        )
        .await;
    assert_eq!(
        result_text(&answer),
        "Codex heard: what is in this repo?",
        "{answer}"
    );
    let usage = &answer["result"]["_meta"]["poe-code/usage"];
    assert_eq!(usage["total_tokens"], 127, "{answer}");
    let progress: Vec<String> = s.shim.take_progress_messages();
    // Status lines may carry a prefix marking them as status, not answer text.
    assert!(
        progress
            .iter()
            .any(|p| p.ends_with("running `bash -lc ls`")),
        "{progress:?}"
    );
    // Answer text is coalesced and stops at the result, which carries it
    // whole: what streamed is the answer's beginning.
    let streamed: String = progress
        .iter()
        .filter(|p| !p.starts_with("[poe-code]"))
        .map(String::as_str)
        .collect();
    assert!(
        "Codex heard: what is in this repo?".starts_with(&streamed),
        "{progress:?}"
    );

    let run = &runs(&s.log)[0];
    assert_eq!(
        run["cwd"],
        json!(s.work.display().to_string()),
        "the session's cwd"
    );
    assert_eq!(run["prompt"], "what is in this repo?");
    assert_eq!(run["poe_api_key_visible"], false);
    let argv: Vec<String> = serde_json::from_value(run["argv"].clone()).unwrap();
    assert_eq!(&argv[..3], ["exec", "--json", "--sandbox=read-only"]);
    assert!(
        argv.contains(&"approval_policy=\"never\"".to_string()),
        "{argv:?}"
    );
    assert!(
        argv.contains(&"--skip-git-repo-check".to_string()),
        "{argv:?}"
    );

    // `codex:<model>` picks the model; the plugin sees the name without the prefix.
    let answer = s.shim.ask("codex:gpt-5-codex", "hi").await;
    assert_eq!(
        result_text(&answer),
        "Codex heard: hi (model gpt-5-codex)",
        "{answer}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn failures_map_to_provider_unavailable_with_the_fix() {
    let mut s = setup(&fake_codex::path()).await;
    let login = s.shim.ask("codex", "NOLOGIN").await;
    assert!(is_tool_error(&login));
    assert_eq!(
        error_code(&login).as_deref(),
        Some("PROVIDER_UNAVAILABLE"),
        "{login}"
    );
    assert!(result_text(&login).contains("codex login"), "{login}");
    assert_eq!(runs(&s.log).len(), 1, "a missing login is not retried");

    let crash = s.shim.ask("codex", "CRASH").await;
    assert_eq!(
        error_code(&crash).as_deref(),
        Some("PROVIDER_UNAVAILABLE"),
        "{crash}"
    );
    assert!(
        result_text(&crash).contains("could not load its configuration"),
        "{crash}"
    );

    // A failed turn is an upstream failure the plugin marks not retryable:
    // the turn may already have run commands, so it runs exactly once.
    let failed = s.shim.ask("codex", "please FAIL").await;
    assert_eq!(
        error_code(&failed).as_deref(),
        Some("PROVIDER_UNAVAILABLE"),
        "{failed}"
    );
    assert!(
        result_text(&failed).contains("the fake model broke"),
        "{failed}"
    );
    let fail_runs = runs(&s.log)
        .iter()
        .filter(|r| r["prompt"] == "please FAIL")
        .count();
    assert_eq!(fail_runs, 1, "a failed agent turn must not be rerun");
    assert!(!s.env.daemon_log().contains("test-key-0123456789abcdef"));
}

#[tokio::test(flavor = "multi_thread")]
async fn a_missing_binary_is_provider_unavailable() {
    let mut s = setup(Path::new("/nonexistent/bin/codex")).await;
    let answer = s.shim.ask("codex", "x").await;
    assert_eq!(
        error_code(&answer).as_deref(),
        Some("PROVIDER_UNAVAILABLE"),
        "{answer}"
    );
    let text = result_text(&answer);
    assert!(text.contains("npm install -g @openai/codex"), "{text}");
    assert!(text.contains("CODEX_BIN=/nonexistent/bin/codex"), "{text}");
}

#[tokio::test(flavor = "multi_thread")]
async fn cancelling_a_run_leaves_no_process_behind() {
    let mut s = setup(&fake_codex::path()).await;
    for marker in ["SLOW run", "STUBBORN run"] {
        let id = s
            .shim
            .send_request(
                "tools/call",
                json!({"name": "get_bot_response", "arguments": {"bot_name": "codex", "message": marker}}),
            )
            .await;
        // Wait until the fake has started its child.
        let deadline = std::time::Instant::now() + Duration::from_secs(20);
        let run = loop {
            if let Some(run) = runs(&s.log).into_iter().find(|r| r["prompt"] == marker) {
                break run;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "fake codex never started"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        };
        let (pid, child, pgid) = (
            run["pid"].as_i64().unwrap(),
            run["child_pid"].as_i64().unwrap(),
            run["pgid"].as_i64().unwrap(),
        );
        assert_eq!(pid, pgid, "codex leads its own process group");
        assert!(alive(pid) && alive(child));
        s.shim
            .send(&json!({"jsonrpc": "2.0", "method": "notifications/cancelled", "params": {"requestId": id}}))
            .await;
        s.env
            .wait_status(Duration::from_secs(10), |st| st["calls_in_flight"] == 0);
        let deadline = std::time::Instant::now() + Duration::from_secs(5);
        while (alive(pid) || alive(child)) && std::time::Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        assert!(
            !alive(pid),
            "{marker}: fake codex {pid} survived the cancel"
        );
        assert!(!alive(child), "{marker}: its child {child} was orphaned");
        assert!(
            group_members(pgid).is_empty(),
            "{marker}: group {pgid} not empty"
        );
    }
    let listed = s.shim.call_tool("check_status", json!({})).await;
    assert_eq!(
        listed["result"]["structuredContent"]["jobs"][0]["status"], "cancelled",
        "{listed}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_continuation_id_resumes_the_codex_thread_over_mcp() {
    let mut s = setup(&fake_codex::path()).await;
    let first = s.shim.ask("codex", "start a thread").await;
    let meta = &first["result"]["_meta"];
    let id = meta["poe-code/continuation_id"]
        .as_str()
        .expect("job id")
        .to_string();
    let thread = meta["poe-code/thread"]
        .as_str()
        .expect("codex thread")
        .to_string();

    let second = s
        .shim
        .call_tool(
            "get_bot_response",
            json!({"bot_name": "codex", "message": "and go on", "continuation_id": id}),
        )
        .await;
    assert!(
        result_text(&second).starts_with(&format!("Resumed {thread}.")),
        "{second}"
    );
    assert_eq!(
        second["result"]["_meta"]["poe-code/thread"],
        thread.as_str()
    );
    let resumed = runs(&s.log)
        .into_iter()
        .find(|r| r["prompt"] == "and go on")
        .expect("second run");
    let argv = argv(&resumed);
    assert!(
        argv.contains(&"resume") && argv.contains(&thread.as_str()),
        "{argv:?}"
    );

    // A call without a thread cannot be continued.
    let echo_like = s
        .shim
        .call_tool(
            "get_bot_response",
            json!({"bot_name": "codex", "message": "x", "continuation_id": "job_unknown"}),
        )
        .await;
    assert_eq!(error_code(&echo_like).as_deref(), Some("INVALID_ARGUMENT"));
}
