//! The real Claude Code and Codex CLIs reaching the daemon over HTTP, each
//! through the entry `poe-code mcp configure <agent> --http` writes: the
//! URL and the name of the variable holding the token, never the token.
//! Both list the server as connected and make a tool call through it; the
//! daemon shows each as an HTTP session under its token.
//!
//! Needs Claude Code and Codex (see `testkit::external`: a test fails
//! without its CLI unless `POE_CODE_TEST_SKIP` names it).

use serde_json::{Value, json};
use testkit::TestEnv;
use testkit::anthropic::FakeMessages;
use testkit::claude::ClaudeCode;
use testkit::codex::Codex;
use testkit::external::{Tool, require};
use testkit::responses::{FakeResponses, tool_caller};

const SERVER: &str = "poe-code";
const TOKEN_ENV: &str = "POE_CODE_TOKEN";

#[tokio::test(flavor = "multi_thread")]
async fn claude_code_reaches_the_daemon_over_http() {
    let test = "claude_code_reaches_the_daemon_over_http";
    let Some(claude) = require(Tool::Claude, test) else {
        return;
    };
    let env = TestEnv::new(&["echo-plugin"]);
    let token = env.create_token("claude");
    let base = env.start_http_daemon();
    let tool = format!("mcp__{SERVER}__get_bot_response");
    let messages = FakeMessages::start(&tool).await;
    let scratch = testkit::env::scratch_dir();
    let mut agent = ClaudeCode::new(claude, scratch.path(), messages.base_url());
    let url = format!("{base}/mcp");
    env.configure_agent("claude-code", |c| {
        c.args(["--http", "--url", &url])
            .env("HOME", agent.home())
            .env_remove("CLAUDE_CONFIG_DIR");
    });
    let written = std::fs::read_to_string(agent.home().join(".claude.json")).unwrap();
    assert!(!written.contains(&token), "the token is not in the file");
    assert!(written.contains("${POE_CODE_TOKEN}"), "{written}");
    agent.set_env(TOKEN_ENV, &token);

    let got = agent.cli(&["mcp", "get", SERVER]).await;
    let shown = String::from_utf8_lossy(&got.stdout);
    assert!(
        got.status.success(),
        "claude mcp get failed: {shown}\n{}",
        String::from_utf8_lossy(&got.stderr)
    );
    assert!(shown.contains(&url), "{shown}");
    assert!(shown.contains("Connected"), "claude mcp get: {shown}");

    let call = json!({"bot_name": "echo", "message": "hello over http"});
    let run = agent
        .run(&format!("Ask once.\nCALL {call}"), &[&tool])
        .await;
    let log: Vec<String> = agent.mcp_log(SERVER).iter().map(Value::to_string).collect();
    let context = format!(
        "claude: {run:#?}\n--- MCP log:\n{}\n--- daemon log:\n{}",
        log.join("\n"),
        env.daemon_log()
    );
    assert!(run.success, "claude -p failed\n{context}");
    assert_eq!(run.result(), "RESULT 1: hello over http", "{context}");
    let problems: Vec<&String> = log
        .iter()
        .filter(|l| {
            let l = l.to_lowercase();
            l.contains("\"error\"") || l.contains("connection error") || l.contains("failed")
        })
        .collect();
    assert!(
        problems.is_empty(),
        "protocol problems: {problems:?}\n{context}"
    );
    // Claude Code closes its session when it exits; the calls stay counted
    // under the token.
    let status = env.status().unwrap();
    assert_eq!(status["http"]["tokens"][0]["name"], "claude", "{status}");
    assert!(
        status["http"]["tokens"][0]["calls"].as_u64() >= Some(1),
        "{status}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn codex_reaches_the_daemon_over_http() {
    let test = "codex_reaches_the_daemon_over_http";
    let Some(codex_bin) = require(Tool::Codex, test) else {
        return;
    };
    let env = TestEnv::new(&["echo-plugin"]);
    let token = env.create_token("codex");
    let base = env.start_http_daemon();
    let arguments = json!({"bot_name": "echo", "message": "hello from codex over http"});
    let responses = FakeResponses::start(tool_caller(SERVER, "get_bot_response", arguments)).await;
    let scratch = testkit::env::scratch_dir();
    let mut codex = Codex::new(
        codex_bin,
        scratch.path(),
        &responses.base_url(),
        "fake-model",
    );
    let url = format!("{base}/mcp");
    env.configure_agent("codex", |c| {
        c.args(["--http", "--url", &url])
            .env("HOME", scratch.path())
            .env("CODEX_HOME", codex.home());
    });
    let written = std::fs::read_to_string(codex.home().join("config.toml")).unwrap();
    assert!(!written.contains(&token), "the token is not in the file");
    assert!(
        written.contains("bearer_token_env_var = \"POE_CODE_TOKEN\""),
        "{written}"
    );
    codex.set_env(TOKEN_ENV, &token);

    let listed = codex.cli(&["mcp", "list", "--json"]).await;
    let shown = String::from_utf8_lossy(&listed.stdout);
    assert!(
        listed.status.success(),
        "codex mcp list failed: {shown}\n{}",
        String::from_utf8_lossy(&listed.stderr)
    );
    let servers: Value =
        serde_json::from_str(shown.trim()).unwrap_or_else(|e| panic!("{e}: {shown}"));
    let entry = servers
        .as_array()
        .and_then(|s| s.iter().find(|s| s["name"] == SERVER))
        .unwrap_or_else(|| panic!("poe-code not listed: {shown}"));
    assert!(entry.to_string().contains(&url), "{entry}");

    let run = codex.exec("Ask echo to say hello.").await;
    let context = format!("codex: {run:#?}\n--- daemon log:\n{}", env.daemon_log());
    assert!(run.success, "codex exec failed\n{context}");
    assert!(
        run.last_message.contains("hello from codex over http"),
        "the answer came back through Codex\n{context}"
    );
    let calls = run.mcp_tool_calls();
    assert_eq!(calls.len(), 1, "{context}");
    assert_eq!(calls[0]["status"], "completed", "{context}");
    let status = env.status().unwrap();
    let used = &status["http"]["tokens"][0];
    assert_eq!(used["name"], "codex", "{status}");
    assert_eq!(used["calls"], 1, "{status}");
}
