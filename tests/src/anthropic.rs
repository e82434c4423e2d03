//! A local fake of Anthropic's Messages API for running the real Claude Code
//! offline (`ANTHROPIC_BASE_URL`). Its "model" is a script read from the
//! prompt: every line `CALL <json>` is one call of [`FakeMessages::tool`]
//! with those arguments, made one per turn in order; once every call has its
//! `tool_result`, it answers with text quoting each result
//! (`RESULT <n>: <text>`). Requests without the tool (titles, summaries)
//! get a short text. Answers stream like the real API (`message_start`,
//! `content_block_start`/`_delta`/`_stop`, `message_delta`, `message_stop`)
//! or come whole when `stream` is false; `count_tokens` is answered too.
//!
//! [`FakeMessages::echo`] is a model for Claude Code as a provider instead:
//! it answers `Claude heard: <the user's messages, joined by " / ">`, holds
//! an answer to a message containing `SLOW` for two minutes (to cancel),
//! and refuses the key [`EXPIRED_KEY`] with a 401 as for an expired login.

use serde_json::{Value, json};
use wiremock::matchers::{method, path};
use wiremock::{Mock, MockServer, Request, Respond, ResponseTemplate};

use crate::sse::event_stream;

/// The API key [`FakeMessages::echo`] refuses (401 `authentication_error`).
pub const EXPIRED_KEY: &str = "sk-ant-expired-0000";

/// A running fake Messages API; every request is recorded.
pub struct FakeMessages {
    server: MockServer,
}

impl FakeMessages {
    /// Starts the fake; `tool` is the full tool name the script calls
    /// (`mcp__<server>__<tool>`).
    pub async fn start(tool: &str) -> FakeMessages {
        Self::serve(Script {
            tool: tool.to_string(),
        })
        .await
    }

    /// The echoing model (see the module docs).
    pub async fn echo() -> FakeMessages {
        Self::serve(Echo).await
    }

    /// A fake whose `POST /v1/messages` is answered by `model`.
    async fn serve(model: impl Respond + 'static) -> FakeMessages {
        let server = MockServer::start().await;
        Mock::given(method("POST"))
            .and(path("/v1/messages/count_tokens"))
            .respond_with(ResponseTemplate::new(200).set_body_json(json!({"input_tokens": 42})))
            .mount(&server)
            .await;
        Mock::given(method("POST"))
            .and(path("/v1/messages"))
            .respond_with(model)
            .mount(&server)
            .await;
        // Claude Code checks that the base URL answers before it starts.
        Mock::given(method("HEAD"))
            .respond_with(ResponseTemplate::new(200))
            .mount(&server)
            .await;
        FakeMessages { server }
    }

    /// The user texts of every Messages request so far (as [`FakeMessages::echo`] reads them).
    pub async fn user_texts(&self) -> Vec<Vec<String>> {
        self.server
            .received_requests()
            .await
            .unwrap_or_default()
            .iter()
            .filter(|r| r.url.path() == "/v1/messages")
            .map(|r| user_texts(&serde_json::from_slice(&r.body).unwrap_or_default()))
            .collect()
    }

    /// The value for `ANTHROPIC_BASE_URL`.
    pub fn base_url(&self) -> String {
        self.server.uri()
    }

    /// Every request so far as `METHOD path: summary`, for failure messages
    /// (what Claude Code really sends).
    pub async fn traffic(&self) -> Vec<String> {
        self.server
            .received_requests()
            .await
            .unwrap_or_default()
            .iter()
            .map(|r| {
                let body: Value = serde_json::from_slice(&r.body).unwrap_or_default();
                format!(
                    "{} {}: model {}, stream {}, {} messages, {} tools",
                    r.method,
                    r.url.path(),
                    body["model"],
                    body["stream"],
                    body["messages"].as_array().map_or(0, Vec::len),
                    body["tools"].as_array().map_or(0, Vec::len),
                )
            })
            .collect()
    }
}

/// Whether a request offers `tool` to the model.
fn offers(body: &Value, tool: &str) -> bool {
    body["tools"]
        .as_array()
        .is_some_and(|tools| tools.iter().any(|t| t["name"] == tool))
}

/// The text parts of a message's content (a string or content blocks).
fn texts(content: &Value) -> Vec<String> {
    match content {
        Value::String(s) => vec![s.clone()],
        Value::Array(blocks) => blocks
            .iter()
            .filter(|b| b["type"] == "text")
            .filter_map(|b| b["text"].as_str().map(str::to_string))
            .collect(),
        _ => Vec::new(),
    }
}

/// The `tool_result` blocks of the conversation, as text, in order.
pub fn tool_results(body: &Value) -> Vec<String> {
    body["messages"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|m| m["role"] == "user")
        .filter_map(|m| m["content"].as_array())
        .flatten()
        .filter(|b| b["type"] == "tool_result")
        .map(|b| match &b["content"] {
            Value::String(s) => s.clone(),
            other => texts(other).join(""),
        })
        .collect()
}

/// The `CALL <json>` lines of the user's messages.
fn scripted_calls(body: &Value) -> Vec<Value> {
    body["messages"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|m| m["role"] == "user")
        .flat_map(|m| texts(&m["content"]))
        .flat_map(|t| {
            t.lines()
                .filter_map(|l| l.trim().strip_prefix("CALL "))
                .filter_map(|json| serde_json::from_str(json).ok())
                .collect::<Vec<Value>>()
        })
        .collect()
}

/// The user's own texts in a request: Claude Code adds `<system-reminder>`
/// blocks to user turns, which are not what the user said.
fn user_texts(body: &Value) -> Vec<String> {
    body["messages"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|m| m["role"] == "user")
        .flat_map(|m| texts(&m["content"]))
        .map(|t| t.trim().to_string())
        .filter(|t| !t.is_empty() && !t.starts_with("<system-reminder>"))
        .collect()
}

struct Echo;

impl Respond for Echo {
    fn respond(&self, request: &Request) -> ResponseTemplate {
        let key = request
            .headers
            .get("x-api-key")
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default();
        if key == EXPIRED_KEY {
            return ResponseTemplate::new(401).set_body_json(json!({"type": "error",
                "error": {"type": "authentication_error", "message": "OAuth token has expired"}}));
        }
        let Ok(body) = serde_json::from_slice::<Value>(&request.body) else {
            return ResponseTemplate::new(400).set_body_json(json!({"type": "error",
                "error": {"type": "invalid_request_error", "message": "body is not JSON"}}));
        };
        let model = body["model"].as_str().unwrap_or("claude-fake").to_string();
        let said = user_texts(&body);
        let text = format!("Claude heard: {}", said.join(" / "));
        let answer = if body["stream"] == json!(true) {
            event_stream(&events(&model, &Block::Text(text), "end_turn"))
        } else {
            ResponseTemplate::new(200).set_body_json(json!({
                "id": "msg_fake", "type": "message", "role": "assistant", "model": model,
                "content": [{"type": "text", "text": text}], "stop_reason": "end_turn",
                "stop_sequence": null, "usage": {"input_tokens": 42, "output_tokens": 9},
            }))
        };
        if said.iter().any(|t| t.contains("SLOW")) {
            answer.set_delay(std::time::Duration::from_secs(120))
        } else {
            answer
        }
    }
}

/// One content block of an answer.
enum Block {
    Text(String),
    ToolUse {
        id: String,
        name: String,
        input: Value,
    },
}

struct Script {
    tool: String,
}

impl Respond for Script {
    fn respond(&self, request: &Request) -> ResponseTemplate {
        let Ok(body) = serde_json::from_slice::<Value>(&request.body) else {
            return ResponseTemplate::new(400).set_body_json(json!({"type": "error",
                "error": {"type": "invalid_request_error", "message": "body is not JSON"}}));
        };
        let model = body["model"].as_str().unwrap_or("claude-fake").to_string();
        let results = tool_results(&body);
        let calls = scripted_calls(&body);
        let (block, stop) = if offers(&body, &self.tool) && results.len() < calls.len() {
            let n = results.len();
            let block = Block::ToolUse {
                id: format!("toolu_fake_{n}"),
                name: self.tool.clone(),
                input: calls[n].clone(),
            };
            (block, "tool_use")
        } else if !results.is_empty() {
            let quoted: Vec<String> = results
                .iter()
                .enumerate()
                .map(|(n, r)| format!("RESULT {}: {r}", n + 1))
                .collect();
            (Block::Text(quoted.join("\n")), "end_turn")
        } else {
            (Block::Text("Fake title".into()), "end_turn")
        };
        if body["stream"] == json!(true) {
            event_stream(&events(&model, &block, stop))
        } else {
            let content = match &block {
                Block::Text(text) => json!({"type": "text", "text": text}),
                Block::ToolUse { id, name, input } => {
                    json!({"type": "tool_use", "id": id, "name": name, "input": input})
                }
            };
            ResponseTemplate::new(200).set_body_json(json!({
                "id": "msg_fake", "type": "message", "role": "assistant", "model": model,
                "content": [content], "stop_reason": stop, "stop_sequence": null,
                "usage": {"input_tokens": 42, "output_tokens": 9},
            }))
        }
    }
}

/// The streamed events of a one-block answer.
fn events(model: &str, block: &Block, stop: &str) -> Vec<Value> {
    let (start, delta) = match block {
        Block::Text(text) => (
            json!({"type": "text", "text": ""}),
            json!({"type": "text_delta", "text": text}),
        ),
        Block::ToolUse { id, name, input } => (
            json!({"type": "tool_use", "id": id, "name": name, "input": {}}),
            json!({"type": "input_json_delta", "partial_json": input.to_string()}),
        ),
    };
    vec![
        json!({"type": "message_start", "message": {"id": "msg_fake", "type": "message",
            "role": "assistant", "model": model, "content": [], "stop_reason": null,
            "stop_sequence": null, "usage": {"input_tokens": 42, "output_tokens": 1}}}),
        json!({"type": "content_block_start", "index": 0, "content_block": start}),
        json!({"type": "content_block_delta", "index": 0, "delta": delta}),
        json!({"type": "content_block_stop", "index": 0}),
        json!({"type": "message_delta", "delta": {"stop_reason": stop, "stop_sequence": null},
            "usage": {"output_tokens": 9}}),
        json!({"type": "message_stop"}),
    ]
}
