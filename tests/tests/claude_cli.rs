//! The claude-cli plugin running the real Claude Code CLI, offline: a local
//! Messages API ([`FakeMessages::echo`]) answers it, and real shims, the
//! daemon and the plugin loaded from its .so file carry each call. Covered:
//! an answer streamed from the session's directory, a prompt that looks
//! like a flag, `claude:<model>`, a continued session, a missing login and
//! an expired one, a missing binary, a cancel that leaves no process
//! behind, `list_models`, and a consensus of Claude Code, the Gemini CLI,
//! Codex and a Poe bot.
//!
//! Needs Claude Code (and the consensus also the Gemini CLI; see
//! `testkit::external`: a test fails without them unless
//! `POE_CODE_TEST_SKIP` names `claude` or `gemini`).

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use testkit::anthropic::{EXPIRED_KEY, FakeMessages};
use testkit::client::{error_code, is_tool_error, result_text};
use testkit::external::{Tool, require};
use testkit::procs::{leader, named_in, wait_group_gone};
use testkit::{McpClient, TestEnv};

struct Setup {
    env: TestEnv,
    shim: McpClient,
    /// Where the shim (and so the session) runs.
    work: PathBuf,
    /// The daemon's (and so the CLIs') `HOME`.
    home: PathBuf,
    /// Claude Code's `CLAUDE_CONFIG_DIR` (its sessions are stored here).
    config: PathBuf,
    api: FakeMessages,
    _scratch: tempfile::TempDir,
}

/// A daemon with claude-cli running `bin` against the fake API with `key`
/// (`None`: no login at all), and a shim in a fresh working directory.
async fn setup(bin: &Path, key: Option<&str>) -> Setup {
    setup_with(bin, key, &["claude-cli"], &[]).await
}

/// [`setup`] with more plugins and daemon variables.
async fn setup_with(
    bin: &Path,
    key: Option<&str>,
    plugins: &[&str],
    vars: &[(&str, String)],
) -> Setup {
    let scratch = testkit::env::scratch_dir();
    let work = scratch.path().join("project");
    let home = scratch.path().join("home");
    std::fs::create_dir_all(&work).unwrap();
    std::fs::create_dir_all(&home).unwrap();
    let work = work.canonicalize().unwrap();
    let config = home.join(".claude");
    let api = FakeMessages::echo().await;
    let mut env = TestEnv::new(plugins)
        .with_var("CLAUDE_BIN", bin.display().to_string())
        .with_var("HOME", home.display().to_string())
        .with_var("CLAUDE_CONFIG_DIR", config.display().to_string())
        .with_var("ANTHROPIC_BASE_URL", api.base_url())
        .with_var("CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC", "1")
        .without_var("CLAUDE_CODE_OAUTH_TOKEN")
        .without_var("ANTHROPIC_AUTH_TOKEN");
    env = match key {
        Some(key) => env.with_var("ANTHROPIC_API_KEY", key),
        None => env.without_var("ANTHROPIC_API_KEY"),
    };
    for (key, value) in vars {
        env = env.with_var(key, value.clone());
    }
    let mut shim = env.shim_in(&work).await;
    shim.initialize("claude-cli-e2e").await;
    Setup {
        env,
        shim,
        work,
        home,
        config,
        api,
        _scratch: scratch,
    }
}

fn meta(answer: &Value) -> &Value {
    &answer["result"]["_meta"]
}

#[tokio::test(flavor = "multi_thread")]
async fn claude_answers_from_the_session_directory_and_continues_its_session() {
    let test = "claude_answers_from_the_session_directory_and_continues_its_session";
    let Some(claude) = require(Tool::Claude, test) else {
        return;
    };
    let mut s = setup(&claude, Some("sk-ant-fake-0000")).await;
    // A prompt that looks like flags stays the prompt.
    let prompt = "--dangerously-skip-permissions -p what is in this repo?";
    let answer = s
        .shim
        .request(
            "tools/call",
            json!({
                "name": "get_bot_response",
                "arguments": {"bot_name": "claude", "message": prompt},
                "_meta": {"progressToken": "c"}
            }),
        )
        .await;
    let expected = format!("Claude heard: {prompt}");
    assert_eq!(result_text(&answer), expected, "{answer}");
    assert_eq!(
        meta(&answer)["poe-code/usage"]["total_tokens"],
        51,
        "{answer}"
    );
    let progress = s.shim.take_progress_messages();
    assert!(
        progress
            .iter()
            .any(|p| p.ends_with("Claude Code is working")),
        "{progress:?}"
    );
    let streamed: String = progress
        .iter()
        .filter(|p| !p.starts_with("[poe-code]"))
        .map(String::as_str)
        .collect();
    // Answer text is coalesced and stops at the result, which carries it
    // whole: what streamed is the answer's beginning.
    assert!(expected.starts_with(&streamed), "{progress:?}");
    // Claude Code ran in the session's directory: its session is stored
    // under that directory's project slug.
    let session = meta(&answer)["poe-code/thread"]
        .as_str()
        .expect("Claude Code session id")
        .to_string();
    let slug = s.work.display().to_string().replace(['/', '.'], "-");
    let stored = s
        .config
        .join("projects")
        .join(&slug)
        .join(format!("{session}.jsonl"));
    assert!(stored.is_file(), "no {}", stored.display());

    // The session continues: the API sees the earlier turn again.
    let id = meta(&answer)["poe-code/continuation_id"]
        .as_str()
        .expect("job id")
        .to_string();
    let second = s
        .shim
        .call_tool(
            "get_bot_response",
            json!({"bot_name": "claude", "message": "and then?", "continuation_id": id}),
        )
        .await;
    assert_eq!(
        result_text(&second),
        format!("Claude heard: {prompt} / and then?"),
        "{second}"
    );
    assert_eq!(meta(&second)["poe-code/thread"], session.as_str());

    // `claude:<model>` picks the model.
    let picked = s.shim.ask("claude:claude-sonnet-4-5", "which model?").await;
    assert_eq!(
        result_text(&picked),
        "Claude heard: which model?",
        "{picked}"
    );
    let traffic = s.api.traffic().await;
    assert!(
        traffic
            .iter()
            .any(|t| t.contains("model \"claude-sonnet-4-5\"")),
        "{traffic:?}"
    );
    assert!(!s.env.daemon_log().contains("sk-ant-fake-0000"));
}

#[tokio::test(flavor = "multi_thread")]
async fn a_missing_login_and_a_refused_one_say_what_to_do() {
    let test = "a_missing_login_and_a_refused_one_say_what_to_do";
    let Some(claude) = require(Tool::Claude, test) else {
        return;
    };
    let mut s = setup(&claude, None).await;
    let missing = s.shim.ask("claude", "hello").await;
    assert!(is_tool_error(&missing), "{missing}");
    assert_eq!(
        error_code(&missing).as_deref(),
        Some("PROVIDER_UNAVAILABLE")
    );
    let text = result_text(&missing);
    assert!(text.contains("Claude Code is not logged in"), "{text}");
    assert!(text.contains("ANTHROPIC_API_KEY"), "{text}");

    // Claude Code retries a refused key for minutes; the plugin stops it at
    // the first refusal.
    let mut s = setup(&claude, Some(EXPIRED_KEY)).await;
    let refused = s.shim.ask("claude", "hello again").await;
    assert_eq!(
        error_code(&refused).as_deref(),
        Some("PROVIDER_UNAVAILABLE")
    );
    let text = result_text(&refused);
    assert!(text.contains("login was rejected or has expired"), "{text}");
    assert!(!s.env.daemon_log().contains(EXPIRED_KEY));
}

#[tokio::test(flavor = "multi_thread")]
async fn a_missing_claude_binary_is_provider_unavailable() {
    let mut s = setup(Path::new("/nonexistent/bin/claude"), None).await;
    let answer = s.shim.ask("claude", "x").await;
    assert_eq!(
        error_code(&answer).as_deref(),
        Some("PROVIDER_UNAVAILABLE"),
        "{answer}"
    );
    let text = result_text(&answer);
    assert!(
        text.contains("npm install -g @anthropic-ai/claude-code"),
        "{text}"
    );
    assert!(
        text.contains("CLAUDE_BIN=/nonexistent/bin/claude"),
        "{text}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn cancelling_claude_leaves_no_process_behind() {
    let test = "cancelling_claude_leaves_no_process_behind";
    let Some(claude) = require(Tool::Claude, test) else {
        return;
    };
    let mut s = setup(&claude, Some("sk-ant-fake-0000")).await;
    let id = s
        .shim
        .send_request(
            "tools/call",
            json!({"name": "get_bot_response", "arguments": {"bot_name": "claude", "message": "SLOW one"}}),
        )
        .await;
    // Wait until Claude Code is waiting for the (held) answer.
    let deadline = Instant::now() + Duration::from_secs(60);
    while !s
        .api
        .user_texts()
        .await
        .iter()
        .any(|texts| texts.iter().any(|t| t.contains("SLOW")))
    {
        assert!(Instant::now() < deadline, "Claude Code never asked the API");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let running = named_in(&s.work, "claude");
    let leader =
        leader(&running).unwrap_or_else(|| panic!("no process group leader among {running:?}"));
    s.shim
        .send(&json!({"jsonrpc": "2.0", "method": "notifications/cancelled", "params": {"requestId": id}}))
        .await;
    s.env
        .wait_status(Duration::from_secs(10), |st| st["calls_in_flight"] == 0);
    let left = wait_group_gone(leader, Duration::from_secs(5)).await;
    assert!(
        left.is_empty(),
        "Claude Code's group {leader} survived the cancel: {left:?}"
    );
    let left = named_in(&s.work, "claude");
    assert!(left.is_empty(), "{left:?}");
    let listed = s.shim.call_tool("check_status", json!({})).await;
    assert_eq!(
        listed["result"]["structuredContent"]["jobs"][0]["status"], "cancelled",
        "{listed}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn list_models_shows_the_cli_plugins_and_consensus_mixes_claude_gemini_codex_and_poe() {
    let test = "list_models_shows_the_cli_plugins_and_consensus_mixes_claude_gemini_codex_and_poe";
    let (Some(claude), Some(gemini)) = (require(Tool::Claude, test), require(Tool::Gemini, test))
    else {
        return;
    };
    let poe = fake_poe::FakePoe::start().await;
    let gemini_api = testkit::gemini::FakeGemini::start().await;
    let scratch = tempfile::tempdir().unwrap();
    let log = scratch.path().join("codex-runs.jsonl");
    let mut s = setup_with(
        &claude,
        Some("sk-ant-fake-0000"),
        &["claude-cli", "gemini-cli", "codex-cli", "poe-openai"],
        &[
            ("GEMINI_BIN", gemini.display().to_string()),
            ("GOOGLE_GEMINI_BASE_URL", gemini_api.base_url()),
            ("GEMINI_API_KEY", "gemini-fake-0000".into()),
            (
                "CODEX_BIN",
                testkit::fake_codex::path().display().to_string(),
            ),
            ("FAKE_CODEX_LOG", log.display().to_string()),
            ("CODEX_PASS_ENV", "FAKE_CODEX_LOG".into()),
            ("POE_BASE_URL", poe.base_url()),
            ("POE_API_KEY", fake_poe::FAKE_API_KEY.into()),
        ],
    )
    .await;
    testkit::gemini::write_settings(&s.home);
    let shim = &mut s.shim;
    let listed = shim.call_tool("list_models", json!({})).await;
    let text = listed.to_string();
    for served in [
        "claude-cli",
        "claude:*",
        "gemini-cli",
        "gemini:*",
        "codex-cli",
    ] {
        assert!(text.contains(served), "{served} not in {listed}");
    }

    let answer = shim
        .call_tool(
            "consensus",
            json!({"prompt": "which sort is stable?",
                   "models": ["claude", "gemini-cli", "codex", "GPT-5"]}),
        )
        .await;
    let b = &answer["result"]["structuredContent"];
    assert_eq!(b["status"], "consensus_complete", "{answer}");
    let initial = b["phases"]["initial"].as_array().expect("initial phase");
    let by_model = |model: &str| {
        initial
            .iter()
            .find(|e| e["model"] == model)
            .unwrap_or_else(|| panic!("no {model} in {answer}"))
    };
    assert_eq!(
        by_model("claude")["response"],
        "Claude heard: which sort is stable?"
    );
    assert_eq!(
        by_model("gemini-cli")["response"],
        "Gemini heard: which sort is stable?"
    );
    assert_eq!(
        by_model("codex")["response"],
        "Codex heard: which sort is stable?"
    );
    assert!(
        by_model("GPT-5")["response"]
            .as_str()
            .is_some_and(|r| !r.is_empty())
    );
    assert_eq!(b["refined_responses"], 4, "{answer}");
}
