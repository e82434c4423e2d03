//! A local fake of OpenAI's Responses API (`POST /v1/responses`, server-sent
//! events), which the real Codex CLI speaks (it no longer speaks chat
//! completions). Each test gives it a "model": a function from the request
//! body to the next [`Turn`]. [`tool_caller`] is the model for Codex as an
//! MCP client; it follows whichever route Codex offers the tool by.

use std::sync::Arc;

use serde_json::{Value, json};
use wiremock::matchers::{method, path};
use wiremock::{Mock, MockServer, Request, Respond, ResponseTemplate};

use crate::sse::event_stream;

/// Usage every answer reports.
pub const USAGE: (u64, u64) = (42, 9);

/// What the fake model does next.
#[derive(Debug)]
pub enum Turn {
    /// An assistant message with this text (streamed as one delta).
    Say(String),
    /// One output item as it stands (a function or tool call).
    Item(Value),
}

/// A running fake Responses API; every request is recorded.
pub struct FakeResponses {
    server: MockServer,
}

type Model = dyn Fn(&Value) -> Turn + Send + Sync;

struct Responder(Arc<Model>);

impl Respond for Responder {
    fn respond(&self, request: &Request) -> ResponseTemplate {
        let body: Value = serde_json::from_slice(&request.body).unwrap_or_default();
        sse(&(self.0)(&body))
    }
}

impl FakeResponses {
    /// Starts the fake with `model` answering every `POST /v1/responses`.
    pub async fn start(model: impl Fn(&Value) -> Turn + Send + Sync + 'static) -> Self {
        let server = MockServer::start().await;
        Mock::given(method("POST"))
            .and(path("/v1/responses"))
            .respond_with(Responder(Arc::new(model)))
            .mount(&server)
            .await;
        Self { server }
    }

    /// The provider `base_url` for Codex's config, `http://127.0.0.1:PORT/v1`.
    pub fn base_url(&self) -> String {
        format!("{}/v1", self.server.uri())
    }

    /// The server, to mount test-specific mocks (they need a higher
    /// priority than the default 5 to win).
    pub fn server(&self) -> &MockServer {
        &self.server
    }

    /// Bodies of every `POST /v1/responses` so far, in order.
    pub async fn requests(&self) -> Vec<Value> {
        self.server
            .received_requests()
            .await
            .unwrap_or_default()
            .iter()
            .filter(|r| r.url.path() == "/v1/responses")
            .filter_map(|r| serde_json::from_slice(&r.body).ok())
            .collect()
    }
}

/// The SSE answer for one turn: `response.created`, the item (a message's
/// text as a delta too), `response.completed` with [`USAGE`].
pub fn sse(turn: &Turn) -> ResponseTemplate {
    let mut events = vec![json!({"type": "response.created", "response": {"id": "resp_fake"}})];
    match turn {
        Turn::Say(text) => {
            let item = |content: Value| {
                json!({"type": "message", "role": "assistant", "id": "msg_fake",
                       "content": content})
            };
            events.push(
                json!({"type": "response.output_item.added", "output_index": 0,
                               "item": item(json!([]))}),
            );
            events.push(
                json!({"type": "response.output_text.delta", "item_id": "msg_fake",
                               "output_index": 0, "content_index": 0, "delta": text}),
            );
            events.push(
                json!({"type": "response.output_item.done", "output_index": 0,
                               "item": item(json!([{"type": "output_text", "text": text,
                                                    "annotations": []}]))}),
            );
        }
        Turn::Item(item) => {
            events.push(
                json!({"type": "response.output_item.done", "output_index": 0,
                               "item": item}),
            );
        }
    }
    let (input, output) = USAGE;
    events.push(
        json!({"type": "response.completed", "response": {"id": "resp_fake",
        "usage": {"input_tokens": input, "input_tokens_details": {"cached_tokens": 0},
                  "output_tokens": output, "output_tokens_details": {"reasoning_tokens": 0},
                  "total_tokens": input + output}}}),
    );
    event_stream(&events)
}

/// The user's own texts in a request, in order (not the
/// `<environment_context>` and instructions Codex adds, which start with `<`
/// or `#`).
pub fn user_texts(body: &Value) -> Vec<String> {
    body["input"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|item| item["role"] == "user")
        .filter_map(|item| item["content"].as_array())
        .flatten()
        .filter_map(|part| part["text"].as_str())
        .map(str::trim)
        .filter(|t| !t.starts_with('<') && !t.starts_with('#'))
        .map(str::to_string)
        .collect()
}

/// How Codex offered the MCP tool to the model.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Route {
    /// A plain function inside a `mcp__<server>` namespace tool.
    Function,
    /// Deferred behind `tool_search`, found with a `tool_search_call`.
    ToolSearch,
    /// Only through code mode's `exec` (JavaScript calling `tools.*`).
    CodeMode,
}

/// The name Codex gives a server's namespace: `mcp__` plus the server name
/// with anything but letters, digits and `_` replaced by `_`.
pub fn namespace_of(server: &str) -> String {
    let safe: String = server
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '_' {
                c
            } else {
                '_'
            }
        })
        .collect();
    format!("mcp__{safe}")
}

/// Every tool the request offers: `tools`, the tools of `additional_tools`
/// input items (code mode), and those a `tool_search_output` returned.
fn offered_tools(body: &Value) -> Vec<Value> {
    let mut tools: Vec<Value> = body["tools"].as_array().cloned().unwrap_or_default();
    for item in body["input"].as_array().into_iter().flatten() {
        if matches!(
            item["type"].as_str(),
            Some("additional_tools" | "tool_search_output")
        ) {
            tools.extend(item["tools"].as_array().cloned().unwrap_or_default());
        }
    }
    tools
}

/// Input items of `kind`.
fn items<'a>(body: &'a Value, kind: &'a str) -> impl Iterator<Item = &'a Value> + 'a {
    body["input"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(move |item| item["type"] == kind)
}

/// The texts of a tool output (a string, or a list of `input_text` parts).
fn output_texts(output: &Value) -> Vec<String> {
    match output {
        Value::String(s) => vec![s.clone()],
        Value::Array(parts) => parts
            .iter()
            .filter_map(|p| p["text"].as_str().map(str::to_string))
            .collect(),
        _ => Vec::new(),
    }
}

/// The route a finished exchange took, judged from the requests Codex sent.
pub fn route_taken(requests: &[Value]) -> Option<Route> {
    let last = requests.last()?;
    if items(last, "tool_search_call").next().is_some() {
        Some(Route::ToolSearch)
    } else if items(last, "custom_tool_call").next().is_some() {
        Some(Route::CodeMode)
    } else if items(last, "function_call").next().is_some() {
        Some(Route::Function)
    } else {
        None
    }
}

/// A model that calls `tool` of MCP server `server` once with `arguments`,
/// by whichever route Codex offers it, then answers
/// `TOOL OUTPUT: <the output's texts>`. When Codex offers no route it says
/// so, naming what it was offered, so the test fails with the evidence.
pub fn tool_caller(
    server: &str,
    tool: &str,
    arguments: Value,
) -> impl Fn(&Value) -> Turn + Send + Sync + 'static {
    let namespace = namespace_of(server);
    let server = server.to_string();
    let tool = tool.to_string();
    move |body: &Value| {
        let outputs: Vec<String> = items(body, "function_call_output")
            .chain(items(body, "custom_tool_call_output"))
            .flat_map(|item| output_texts(&item["output"]))
            .collect();
        if !outputs.is_empty() {
            return Turn::Say(format!("TOOL OUTPUT: {}", outputs.join("\n")));
        }
        let tools = offered_tools(body);
        let has_namespace = tools
            .iter()
            .any(|t| t["type"] == "namespace" && t["name"] == namespace.as_str());
        if has_namespace {
            return Turn::Item(json!({"type": "function_call", "id": "fc_fake",
                "call_id": "call_fake", "namespace": namespace, "name": tool,
                "arguments": arguments.to_string()}));
        }
        let searched = items(body, "tool_search_output").next().is_some();
        if !searched && tools.iter().any(|t| t["type"] == "tool_search") {
            return Turn::Item(json!({"type": "tool_search_call", "id": "ts_fake",
                "call_id": "ts_call_fake", "execution": "client", "status": "completed",
                "arguments": {"query": format!("{server} {tool}")}}));
        }
        let has_exec = tools.iter().any(|t| {
            t["tools"]
                .as_array()
                .is_some_and(|inner| inner.iter().any(|i| i["name"] == "exec"))
        });
        if has_exec {
            // Code mode: JavaScript in Codex's isolate calls the tool.
            let script = format!(
                "const r = await tools.{namespace}__{tool}({arguments});\n\
                 text(r.content.map((c) => c.text).join(\"\"));"
            );
            return Turn::Item(json!({"type": "custom_tool_call", "id": "ctc_fake",
                "call_id": "exec_fake", "name": "exec", "input": script}));
        }
        let offered: Vec<String> = tools
            .iter()
            .map(|t| format!("{}:{}", t["type"], t["name"]))
            .collect();
        Turn::Say(format!(
            "NO ROUTE to {namespace}/{tool}; offered {offered:?}"
        ))
    }
}
