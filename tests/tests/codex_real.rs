//! The real Codex CLI, offline, through real shims, the daemon and the
//! codex-cli plugin: codex is pointed at a local fake of OpenAI's Responses
//! API (`POST /v1/responses`, server-sent events; Codex no longer speaks
//! chat completions) configured as a custom model provider (`base_url`,
//! `wire_api = "responses"`) in a throwaway CODEX_HOME.
//!
//! Needs the Codex CLI (see `testkit::external`: it fails without one
//! unless `POE_CODE_TEST_SKIP` names `codex`). `codex_agent.rs` is the other
//! direction: Codex as our MCP client.

use serde_json::Value;
use testkit::TestEnv;
use testkit::client::result_text;
use testkit::external::{Tool, require};
use testkit::responses::{FakeResponses, Turn, user_texts};

/// Echoes the model and the user's last text, so the test sees both arrived.
fn echo(body: &Value) -> Turn {
    Turn::Say(format!(
        "Fake Responses API ({}) heard: {}",
        body["model"].as_str().unwrap_or("?"),
        user_texts(body)
            .last()
            .map(String::as_str)
            .unwrap_or_default()
    ))
}

#[tokio::test(flavor = "multi_thread")]
async fn real_codex_answers_offline_through_the_daemon() {
    let Some(codex) = require(Tool::Codex, "real_codex_answers_offline_through_the_daemon") else {
        return;
    };
    let responses = FakeResponses::start(echo).await;
    let scratch = testkit::env::scratch_dir();
    let home = scratch.path().join("codex-home");
    testkit::codex::write_config(&home, &responses.base_url(), "fake-model");
    let work = scratch.path().join("project");
    std::fs::create_dir_all(&work).unwrap();
    let env = TestEnv::new(&["codex-cli"])
        .with_var("CODEX_BIN", codex.display().to_string())
        .with_var("CODEX_HOME", home.display().to_string());
    let mut shim = env.shim_in(&work).await;
    shim.initialize("real-codex-e2e").await;

    let answer = shim.ask("codex", "Say hello to the offline test").await;
    assert_eq!(
        result_text(&answer),
        "Fake Responses API (fake-model) heard: Say hello to the offline test",
        "{answer}\n--- daemon log:\n{}",
        env.daemon_log()
    );
    let usage = &answer["result"]["_meta"]["poe-code/usage"];
    assert_eq!(usage["prompt_tokens"], 42, "{answer}");
    assert_eq!(usage["completion_tokens"], 9, "{answer}");

    // `codex:<model>` reaches the provider as the request's model.
    let answer = shim.ask("codex:fake-model-2", "Which model?").await;
    assert_eq!(
        result_text(&answer),
        "Fake Responses API (fake-model-2) heard: Which model?",
        "{answer}"
    );

    let bodies = responses.requests().await;
    assert_eq!(bodies.len(), 2, "one Responses call per run");
    assert_eq!(bodies[0]["stream"], true);
}
