//! The real Codex CLI as our MCP client, offline: `codex exec` talks to a
//! local fake of the Responses API whose model calls `get_bot_response`
//! through the entry `poe-code mcp configure codex` writes, a real shim, the
//! daemon and the real poe-openai plugin against the local stand-in for Poe,
//! then quotes the tool's output. Codex offers an MCP tool to the model in
//! one of three ways depending on the model's metadata; one model per way:
//! a plain function in the `mcp__poe_code` namespace (a model Codex does not
//! know), deferred behind `tool_search`, or only from code mode's `exec`.
//! (`codex_real.rs` is the other direction: our codex-cli plugin running
//! Codex.)
//!
//! Needs the Codex CLI (see `testkit::external`: it fails without one
//! unless `POE_CODE_TEST_SKIP` names `codex`).

use fake_poe::{FAKE_API_KEY, FakePoe};
use serde_json::json;
use testkit::TestEnv;
use testkit::codex::Codex;
use testkit::external::{Tool, require};
use testkit::responses::{FakeResponses, Route, route_taken, tool_caller};

const SERVER: &str = "poe-code";

/// Models and the route Codex 0.171 offers our tool to each by (from its
/// bundled model catalog; a model it does not know gets plain functions).
const MODELS: &[(&str, Route)] = &[
    ("fake-model", Route::Function),
    ("gpt-5.5", Route::ToolSearch),
    ("gpt-6.2-sol", Route::CodeMode),
];

#[tokio::test(flavor = "multi_thread")]
async fn codex_gets_the_answer_by_every_route_it_offers_the_tool() {
    let test = "codex_gets_the_answer_by_every_route_it_offers_the_tool";
    let Some(codex_bin) = require(Tool::Codex, test) else {
        return;
    };
    let poe = FakePoe::start().await;
    let env = TestEnv::new(&["poe-openai"])
        .with_var("POE_BASE_URL", poe.base_url())
        .with_var("POE_API_KEY", FAKE_API_KEY);
    let scratch = testkit::env::scratch_dir();
    // Codex may send its first model request before a cold daemon (a debug
    // build takes about a second to copy and load the plugins) has listed
    // its tools; this test is about the tool call, so the daemon is warm.
    let mut warm = env.shim().await;
    warm.initialize("warm-up").await;
    env.wait_status(std::time::Duration::from_secs(30), |s| {
        testkit::env::plugin(s, "poe-openai").is_some()
    });

    for (model, route) in MODELS {
        let message = format!("Hello from Codex with {model}");
        let arguments = json!({"bot_name": "GPT-4o", "message": message});
        let responses =
            FakeResponses::start(tool_caller(SERVER, "get_bot_response", arguments)).await;
        let codex = Codex::new(
            codex_bin.clone(),
            &scratch.path().join(model),
            &responses.base_url(),
            model,
        );
        // The entry a user gets, plus the environment of this test's install.
        env.configure_agent("codex", |c| {
            c.env("HOME", scratch.path())
                .env("CODEX_HOME", codex.home());
        });
        codex.set_server_env(SERVER, &env.shim_env());

        let run = codex.exec("Ask GPT-4o to say hello.").await;
        let requests = responses.requests().await;
        let context = format!(
            "model {model}\ncodex: {run:#?}\n--- Responses API requests: {}\n--- daemon log:\n{}",
            serde_json::to_string_pretty(&requests).unwrap_or_default(),
            env.daemon_log()
        );
        assert!(run.success, "codex exec failed\n{context}");
        let answer = format!("Echo from GPT-4o: {message}");
        assert!(
            run.last_message.starts_with("TOOL OUTPUT: ") && run.last_message.contains(&answer),
            "the stand-in Poe's answer came back through Codex\n{context}"
        );
        let calls = run.mcp_tool_calls();
        assert_eq!(calls.len(), 1, "{context}");
        assert_eq!(calls[0]["server"], SERVER, "{context}");
        assert_eq!(calls[0]["status"], "completed", "{context}");
        assert!(calls[0]["error"].is_null(), "{context}");
        assert_eq!(
            route_taken(&requests),
            Some(*route),
            "Codex offered the tool to {model} another way (its model catalog changed?)\n{context}"
        );
    }
    let asked: Vec<String> = poe
        .chat_requests()
        .await
        .iter()
        .map(|body| body["messages"].to_string())
        .collect();
    assert_eq!(asked.len(), MODELS.len(), "{asked:?}");
}
