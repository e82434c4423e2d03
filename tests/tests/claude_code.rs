//! The real Claude Code CLI as our MCP client, offline: `claude -p` talks to
//! a local fake of the Messages API that calls `get_bot_response` five
//! times (short answers around one streamed over 10 s), through the entry
//! `poe-code mcp configure claude-code` writes, a real shim, the daemon and
//! the real poe-openai plugin, against a local stand-in for Poe that
//! streams over time. Claude Code's own MCP log for our server must show no
//! protocol error at all: its TypeScript MCP SDK reports a progress
//! notification that arrives with (or after) its result as
//! `Connection error: Received a progress notification for an unknown token`.
//!
//! Needs Claude Code (see `testkit::external`: it fails without one unless
//! `POE_CODE_TEST_SKIP` names `claude`).

use fake_poe::{FAKE_API_KEY, PacedPoe, paced_answer};
use serde_json::{Value, json};
use testkit::TestEnv;
use testkit::anthropic::FakeMessages;
use testkit::claude::ClaudeCode;
use testkit::external::{Tool, require};

const SERVER: &str = "poe-code";
const TOOL: &str = "mcp__poe-code__get_bot_response";

/// Whether a line of Claude Code's MCP log reports a problem: an `error`
/// entry, or a debug line about an error, a dropped connection or a failure.
fn is_problem(entry: &Value) -> bool {
    if entry.get("error").is_some() {
        return true;
    }
    let text = entry["debug"].as_str().unwrap_or_default().to_lowercase();
    ["error", "dropped", "fail"]
        .iter()
        .any(|word| text.contains(word))
}

#[tokio::test(flavor = "multi_thread")]
async fn claude_code_gets_short_and_long_answers_without_protocol_errors() {
    let test = "claude_code_gets_short_and_long_answers_without_protocol_errors";
    let Some(claude) = require(Tool::Claude, test) else {
        return;
    };
    let poe = PacedPoe::start().await;
    let env = TestEnv::new(&["poe-openai"])
        .with_var("POE_BASE_URL", poe.base_url())
        .with_var("POE_API_KEY", FAKE_API_KEY);
    let messages = FakeMessages::start(TOOL).await;
    let scratch = testkit::env::scratch_dir();
    let agent = ClaudeCode::new(claude, scratch.path(), messages.base_url());

    // The entry a user gets, plus the environment of this test's install.
    env.configure_agent("claude-code", |c| {
        c.env("HOME", agent.home()).env_remove("CLAUDE_CONFIG_DIR");
    });
    agent.set_server_env(SERVER, &env.shim_env());

    // Short answers stream their deltas in one burst right before the
    // result, the case clients trip over; each is one more chance to, so
    // the long answer is flanked by several.
    let asks = [
        ("GPT-4o", "a short question"),
        ("fake-stream-10s", "a long question"),
        ("GPT-4o", "a second short question"),
        ("Claude-Sonnet-4.5", "a third short question"),
        ("GPT-4o", "a fourth short question"),
    ];
    let script: Vec<String> = asks
        .iter()
        .map(|(bot, message)| format!("CALL {}", json!({"bot_name": bot, "message": message})))
        .collect();
    let prompt = format!(
        "Ask these bots, one after the other.\n{}",
        script.join("\n")
    );
    let run = agent.run(&prompt, &[TOOL]).await;

    let log = agent.mcp_log(SERVER);
    let shown: Vec<String> = log.iter().map(Value::to_string).collect();
    let context = format!(
        "claude: {run:#?}\n--- MCP log:\n{}\n--- Messages API traffic:\n{}\n--- daemon log:\n{}",
        shown.join("\n"),
        messages.traffic().await.join("\n"),
        env.daemon_log()
    );
    assert!(run.success, "claude -p failed\n{context}");
    assert_eq!(run.output["is_error"], false, "{context}");
    let expected: Vec<String> = asks
        .iter()
        .enumerate()
        .map(|(n, (bot, message))| format!("RESULT {}: {}", n + 1, paced_answer(bot, message)))
        .collect();
    assert_eq!(
        run.result(),
        expected.join("\n"),
        "the stand-in Poe's answers came back through Claude Code\n{context}"
    );
    assert_eq!(poe.chat_requests().len(), asks.len(), "{context}");
    let calls = shown.iter().filter(|l| l.contains("Calling MCP tool"));
    assert_eq!(
        calls.count(),
        asks.len(),
        "every call is in the MCP log\n{context}"
    );

    let connection_errors = shown
        .iter()
        .filter(|l| l.contains("Connection error"))
        .count();
    let problems: Vec<&String> = log
        .iter()
        .zip(&shown)
        .filter(|(entry, _)| is_problem(entry))
        .map(|(_, line)| line)
        .collect();
    assert!(
        problems.is_empty(),
        "Claude Code's MCP log shows {} problem lines ({connection_errors} `Connection error`):\n{}\n\n{context}",
        problems.len(),
        problems
            .iter()
            .map(|l| l.as_str())
            .collect::<Vec<_>>()
            .join("\n")
    );
}
