//! The real Codex CLI, offline, through real shims, the daemon and the
//! codex-cli plugin: codex is pointed at a local fake of OpenAI's Responses
//! API (`POST /v1/responses`, server-sent events; Codex no longer speaks
//! chat completions) configured as a custom model provider (`base_url`,
//! `wire_api = "responses"`) in a throwaway CODEX_HOME.
//!
//! Runs when a `codex` is installed (CODEX_BIN, else `codex` on PATH), and
//! is skipped with a printed reason otherwise. With npm:
//! `npm install --prefix /tmp/codex @openai/codex` and
//! `CODEX_BIN=/tmp/codex/node_modules/.bin/codex`.

use std::path::{Path, PathBuf};

use serde_json::{Value, json};
use testkit::client::result_text;
use testkit::{McpClient, TestEnv};
use wiremock::matchers::{method, path};
use wiremock::{Mock, MockServer, Request, Respond, ResponseTemplate};

/// The text of the last `input_text` part of a Responses API request.
fn last_user_text(body: &Value) -> String {
    body["input"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|item| item["role"] == "user")
        .filter_map(|item| item["content"].as_array())
        .flatten()
        .filter_map(|part| part["text"].as_str())
        .next_back()
        .unwrap_or_default()
        .to_string()
}

/// Answers like the Responses API streams: `response.created`, the
/// message item with its text deltas, `response.completed` with usage. The
/// text echoes the prompt and the model, so the test can see both arrived.
struct FakeResponses;

impl Respond for FakeResponses {
    fn respond(&self, request: &Request) -> ResponseTemplate {
        let body: Value = serde_json::from_slice(&request.body).unwrap_or_default();
        let text = format!(
            "Fake Responses API ({}) heard: {}",
            body["model"].as_str().unwrap_or("?"),
            last_user_text(&body).trim()
        );
        let events = [
            (
                "response.created",
                json!({"type": "response.created", "response": {"id": "resp_fake"}}),
            ),
            (
                "response.output_item.added",
                json!({"type": "response.output_item.added", "output_index": 0,
                "item": {"type": "message", "role": "assistant", "id": "msg_fake", "content": []}}),
            ),
            (
                "response.output_text.delta",
                json!({"type": "response.output_text.delta", "item_id": "msg_fake",
                "output_index": 0, "content_index": 0, "delta": text}),
            ),
            (
                "response.output_item.done",
                json!({"type": "response.output_item.done", "output_index": 0,
                "item": {"type": "message", "role": "assistant", "id": "msg_fake",
                         "content": [{"type": "output_text", "text": text, "annotations": []}]}}),
            ),
            (
                "response.completed",
                json!({"type": "response.completed", "response": {"id": "resp_fake",
                "usage": {"input_tokens": 42, "input_tokens_details": {"cached_tokens": 0},
                          "output_tokens": 9, "output_tokens_details": {"reasoning_tokens": 0},
                          "total_tokens": 51}}}),
            ),
        ];
        let sse: String = events
            .iter()
            .map(|(event, data)| format!("event: {event}\ndata: {data}\n\n"))
            .collect();
        ResponseTemplate::new(200).set_body_raw(sse, "text/event-stream")
    }
}

/// A CODEX_HOME whose config sends every request to `base_url`.
fn codex_home(dir: &Path, base_url: &str) -> PathBuf {
    let home = dir.join("codex-home");
    std::fs::create_dir_all(&home).unwrap();
    std::fs::write(
        home.join("config.toml"),
        format!(
            "model = \"fake-model\"\nmodel_provider = \"fake\"\n\n\
             [model_providers.fake]\nname = \"Fake Responses API\"\n\
             base_url = \"{base_url}\"\nwire_api = \"responses\"\n"
        ),
    )
    .unwrap();
    home
}

#[tokio::test(flavor = "multi_thread")]
async fn real_codex_answers_offline_through_the_daemon() {
    let codex = match testkit::codex::find_codex() {
        Ok(codex) => codex,
        Err(reason) => {
            println!("skipped: the real Codex CLI is not installed ({reason})");
            return;
        }
    };
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path("/v1/responses"))
        .respond_with(FakeResponses)
        .mount(&server)
        .await;
    let scratch = tempfile::tempdir().unwrap();
    let home = codex_home(scratch.path(), &format!("{}/v1", server.uri()));
    let work = scratch.path().join("project");
    std::fs::create_dir_all(&work).unwrap();
    let env = TestEnv::new(&["codex-cli"])
        .with_var("CODEX_BIN", codex.display().to_string())
        .with_var("CODEX_HOME", home.display().to_string());
    let mut command = tokio::process::Command::from(env.command("poe-code"));
    command.args(["mcp", "run"]).current_dir(&work);
    let mut shim = McpClient::spawn(command).await;
    shim.initialize("real-codex-e2e").await;

    let answer = shim
        .call_tool(
            "get_bot_response",
            json!({"bot_name": "codex", "message": "Say hello to the offline test"}),
        )
        .await;
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
    let answer = shim
        .call_tool(
            "get_bot_response",
            json!({"bot_name": "codex:fake-model-2", "message": "Which model?"}),
        )
        .await;
    assert_eq!(
        result_text(&answer),
        "Fake Responses API (fake-model-2) heard: Which model?",
        "{answer}"
    );

    let requests = server.received_requests().await.unwrap_or_default();
    let bodies: Vec<Value> = requests
        .iter()
        .filter(|r| r.url.path() == "/v1/responses")
        .filter_map(|r| serde_json::from_slice(&r.body).ok())
        .collect();
    assert_eq!(bodies.len(), 2, "one Responses call per run");
    assert_eq!(bodies[0]["stream"], true);
    println!("real codex at {} answered offline", codex.display());
}
