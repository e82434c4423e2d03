//! The gemini-cli plugin running the real Gemini CLI, offline: a local
//! Gemini API ([`FakeGemini`], reached through `GOOGLE_GEMINI_BASE_URL`)
//! answers it, and real shims, the daemon and the plugin loaded from its .so
//! file carry each call. Covered: an answer from the session's directory, a
//! prompt that looks like a flag, `gemini:<model>`, a continued session, a
//! missing login and an expired key, a missing binary, and a cancel that
//! leaves no process behind. (`claude_cli` runs a consensus with it.)
//!
//! Needs the Gemini CLI (see `testkit::external`: it fails without one
//! unless `POE_CODE_TEST_SKIP` names `gemini`).

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use testkit::client::{error_code, is_tool_error, result_text};
use testkit::external::{Tool, require};
use testkit::gemini::{EXPIRED_KEY, FakeGemini};
use testkit::procs::{leader, named_in, wait_group_gone};
use testkit::{McpClient, TestEnv};

struct Setup {
    env: TestEnv,
    shim: McpClient,
    /// Where the shim (and so the session) runs.
    work: PathBuf,
    api: FakeGemini,
    _scratch: tempfile::TempDir,
}

/// A daemon with gemini-cli running `bin` against the fake API with `key`
/// (`None`: no login at all), and a shim in a fresh working directory.
async fn setup(bin: &Path, key: Option<&str>) -> Setup {
    let scratch = testkit::env::scratch_dir();
    let work = scratch.path().join("project");
    let home = scratch.path().join("home");
    std::fs::create_dir_all(&work).unwrap();
    testkit::gemini::write_settings(&home);
    let work = work.canonicalize().unwrap();
    let api = FakeGemini::start().await;
    let mut env = TestEnv::new(&["gemini-cli"])
        .with_var("GEMINI_BIN", bin.display().to_string())
        .with_var("HOME", home.display().to_string())
        .with_var("GOOGLE_GEMINI_BASE_URL", api.base_url())
        .without_var("GOOGLE_API_KEY")
        .without_var("GOOGLE_GENAI_USE_VERTEXAI")
        .without_var("GOOGLE_GENAI_USE_GCA");
    env = match key {
        Some(key) => env.with_var("GEMINI_API_KEY", key),
        None => env.without_var("GEMINI_API_KEY"),
    };
    let mut shim = env.shim_in(&work).await;
    shim.initialize("gemini-cli-e2e").await;
    Setup {
        env,
        shim,
        work,
        api,
        _scratch: scratch,
    }
}

fn meta(answer: &Value) -> &Value {
    &answer["result"]["_meta"]
}

#[tokio::test(flavor = "multi_thread")]
async fn gemini_answers_and_continues_its_session() {
    let test = "gemini_answers_and_continues_its_session";
    let Some(gemini) = require(Tool::Gemini, test) else {
        return;
    };
    let mut s = setup(&gemini, Some("gemini-fake-0000")).await;
    // A prompt that looks like flags stays the prompt.
    let prompt = "--yolo -p what is in this repo?";
    let answer = s
        .shim
        .request(
            "tools/call",
            json!({
                "name": "get_bot_response",
                "arguments": {"bot_name": "gemini-cli", "message": prompt},
                "_meta": {"progressToken": "g"}
            }),
        )
        .await;
    let expected = format!("Gemini heard: {prompt}");
    assert_eq!(result_text(&answer), expected, "{answer}");
    assert_eq!(
        meta(&answer)["poe-code/usage"]["total_tokens"],
        47,
        "{answer}"
    );
    let progress = s.shim.take_progress_messages();
    assert!(
        progress
            .iter()
            .any(|p| p.ends_with("The Gemini CLI is working")),
        "{progress:?}"
    );
    let session = meta(&answer)["poe-code/thread"]
        .as_str()
        .expect("Gemini CLI session id")
        .to_string();

    let id = meta(&answer)["poe-code/continuation_id"]
        .as_str()
        .expect("job id")
        .to_string();
    let second = s
        .shim
        .call_tool(
            "get_bot_response",
            json!({"bot_name": "gemini-cli", "message": "and then?", "continuation_id": id}),
        )
        .await;
    assert_eq!(
        result_text(&second),
        format!("Gemini heard: {prompt} / and then?"),
        "{second}"
    );
    assert_eq!(meta(&second)["poe-code/thread"], session.as_str());

    // `gemini:<model>` picks the model.
    let picked = s.shim.ask("gemini:gemini-2.5-flash", "which model?").await;
    assert_eq!(
        result_text(&picked),
        "Gemini heard: which model?",
        "{picked}"
    );
    let turns = s.api.turns().await;
    assert!(
        turns
            .iter()
            .any(|(model, said)| model == "gemini-2.5-flash" && said == &["which model?"]),
        "{turns:?}"
    );
    assert!(!s.env.daemon_log().contains("gemini-fake-0000"));
}

#[tokio::test(flavor = "multi_thread")]
async fn a_missing_gemini_login_and_an_expired_key_say_what_to_do() {
    let test = "a_missing_gemini_login_and_an_expired_key_say_what_to_do";
    let Some(gemini) = require(Tool::Gemini, test) else {
        return;
    };
    let mut s = setup(&gemini, None).await;
    let missing = s.shim.ask("gemini-cli", "hello").await;
    assert!(is_tool_error(&missing), "{missing}");
    assert_eq!(
        error_code(&missing).as_deref(),
        Some("PROVIDER_UNAVAILABLE")
    );
    let text = result_text(&missing);
    assert!(text.contains("The Gemini CLI is not logged in"), "{text}");
    assert!(text.contains("GEMINI_API_KEY"), "{text}");

    let mut s = setup(&gemini, Some(EXPIRED_KEY)).await;
    let refused = s.shim.ask("gemini-cli", "hello again").await;
    assert_eq!(
        error_code(&refused).as_deref(),
        Some("PROVIDER_UNAVAILABLE")
    );
    let text = result_text(&refused);
    assert!(text.contains("login was rejected or has expired"), "{text}");
    assert!(!s.env.daemon_log().contains(EXPIRED_KEY));
}

#[tokio::test(flavor = "multi_thread")]
async fn a_missing_gemini_binary_is_provider_unavailable() {
    let mut s = setup(Path::new("/nonexistent/bin/gemini"), None).await;
    let answer = s.shim.ask("gemini-cli", "x").await;
    assert_eq!(
        error_code(&answer).as_deref(),
        Some("PROVIDER_UNAVAILABLE"),
        "{answer}"
    );
    let text = result_text(&answer);
    assert!(text.contains("npm install -g @google/gemini-cli"), "{text}");
    assert!(
        text.contains("GEMINI_BIN=/nonexistent/bin/gemini"),
        "{text}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn cancelling_gemini_leaves_no_process_behind() {
    let test = "cancelling_gemini_leaves_no_process_behind";
    let Some(gemini) = require(Tool::Gemini, test) else {
        return;
    };
    let mut s = setup(&gemini, Some("gemini-fake-0000")).await;
    let id = s
        .shim
        .send_request(
            "tools/call",
            json!({"name": "get_bot_response", "arguments": {"bot_name": "gemini-cli", "message": "SLOW one"}}),
        )
        .await;
    let deadline = Instant::now() + Duration::from_secs(60);
    while !s
        .api
        .turns()
        .await
        .iter()
        .any(|(_, said)| said.iter().any(|t| t.contains("SLOW")))
    {
        assert!(
            Instant::now() < deadline,
            "the Gemini CLI never asked the API"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let running = named_in(&s.work, "gemini");
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
        "the Gemini CLI's group {leader} survived the cancel: {left:?}"
    );
    let left = named_in(&s.work, "gemini");
    assert!(left.is_empty(), "{left:?}");
    let listed = s.shim.call_tool("check_status", json!({})).await;
    assert_eq!(
        listed["result"]["structuredContent"]["jobs"][0]["status"], "cancelled",
        "{listed}"
    );
}
