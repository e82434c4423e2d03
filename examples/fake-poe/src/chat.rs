//! The fake `POST /v1/chat/completions`, choosing its behaviour from the
//! `model` (case-insensitive):
//!
//! | model | answer |
//! |---|---|
//! | `fake-401`, `fake-402`, `fake-404`, `fake-429`, `fake-500` | that status with Poe's error body |
//! | `fake-garbage` | 200 `text/event-stream` whose data line is not JSON |
//! | `fake-slow` | the ordinary echo, delayed by 30 s (cancellation tests) |
//! | `fake-slow-<ms>` | the ordinary echo, delayed by `<ms>` milliseconds (the in-flight benchmark) |
//! | any, when the last message has role `tool` | `Tool <tool_call_id> returned: <content>` |
//! | contains `tool` | a call of the first tool in `tools`, arguments `{"echo": <last user message>}` |
//! | contains `banana` or `image` | a markdown image plus the bare URL (`/files/<n>.png`) |
//! | starts with `elevenlabs` or contains `audio` | only the bare URL (`/files/<n>.mp3`) |
//! | anything else | `Echo from <model>: <last user message>` |
//!
//! With `"stream": true` the answer is SSE: one chunk per word (or argument
//! piece), a final chunk with the finish reason, a usage chunk when
//! `stream_options.include_usage` is set, then `data: [DONE]`.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use serde_json::{Value, json};
use wiremock::{Request, Respond, ResponseTemplate};

use crate::wire;

/// How long `fake-slow` waits before answering.
const SLOW_DELAY: Duration = Duration::from_secs(30);

/// Answers chat completions; see the module docs for the model table.
pub(crate) struct ChatResponder {
    /// `http://127.0.0.1:PORT`, for file links pointing back at the fake.
    root: String,
    files: Arc<AtomicU64>,
    ids: AtomicU64,
    /// Each answered call's points (`/usage/points_history`).
    history: crate::usage::History,
}

impl ChatResponder {
    pub(crate) fn new(root: String, files: Arc<AtomicU64>, history: crate::usage::History) -> Self {
        Self {
            root,
            files,
            ids: AtomicU64::new(0),
            history,
        }
    }

    fn file_url(&self, ext: &str) -> String {
        let n = self.files.fetch_add(1, Ordering::Relaxed) + 1;
        format!("{}/files/{n}.{ext}", self.root)
    }
}

/// What the fake bot answers, before it is framed as JSON or SSE.
pub(crate) enum Answer {
    Text(String),
    ToolCall { name: String, arguments: String },
}

impl Respond for ChatResponder {
    fn respond(&self, request: &Request) -> ResponseTemplate {
        if let Some(denied) = wire::check_auth(request) {
            return denied;
        }
        let Ok(body) = serde_json::from_slice::<Value>(&request.body) else {
            return wire::error_body(
                400,
                "Request body is not valid JSON",
                "invalid_request_error",
                "invalid_json",
            );
        };
        let Some(model) = body.get("model").and_then(Value::as_str) else {
            return wire::error_body(
                400,
                "Missing required parameter: 'model'",
                "invalid_request_error",
                "missing_parameter",
            );
        };
        let lower = model.to_ascii_lowercase();
        let stream = body.get("stream").and_then(Value::as_bool).unwrap_or(false);
        let include_usage = body
            .pointer("/stream_options/include_usage")
            .and_then(Value::as_bool)
            .unwrap_or(false);
        let prompt = last_user_message(&body);

        let mut delay = None;
        let tool_answer = last_tool_answer(&body);
        let answer = match lower.as_str() {
            _ if let Some((id, content)) = tool_answer => {
                Answer::Text(format!("Tool {id} returned: {content}"))
            }
            "fake-401" => return wire::error(401),
            "fake-402" => return wire::error(402),
            "fake-404" => return wire::error(404),
            "fake-429" => return wire::error(429),
            "fake-500" => return wire::error(500),
            "fake-garbage" => {
                return ResponseTemplate::new(200).set_body_raw(
                    "data: this is not json {{{\n\ndata: [DONE]\n\n",
                    "text/event-stream",
                );
            }
            "fake-slow" => {
                delay = Some(SLOW_DELAY);
                Answer::Text(format!("Echo from {model}: {prompt}"))
            }
            m if let Some(ms) = m
                .strip_prefix("fake-slow-")
                .and_then(|ms| ms.parse::<u64>().ok()) =>
            {
                delay = Some(Duration::from_millis(ms));
                Answer::Text(format!("Echo from {model}: {prompt}"))
            }
            m if m.contains("tool") => match first_tool_name(&body) {
                Some(name) => Answer::ToolCall {
                    name,
                    arguments: json!({ "echo": prompt }).to_string(),
                },
                None => Answer::Text(format!("Echo from {model}: {prompt}")),
            },
            m if m.contains("banana") || m.contains("image") => {
                let url = self.file_url("png");
                Answer::Text(format!("![generated image]({url})\n\n{url}"))
            }
            m if m.starts_with("elevenlabs") || m.contains("audio") => {
                Answer::Text(self.file_url("mp3"))
            }
            _ => Answer::Text(format!("Echo from {model}: {prompt}")),
        };

        let id = format!(
            "chatcmpl-fake-{}",
            self.ids.fetch_add(1, Ordering::Relaxed) + 1
        );
        let frame = Frame {
            id: &id,
            model,
            created: wire::now_secs(),
            usage: usage(&body, &answer),
        };
        self.history
            .charge(model, frame.usage["total_tokens"].as_i64().unwrap_or(1));
        let template = if stream {
            wire::with_rate_headers(
                ResponseTemplate::new(200)
                    .set_body_raw(frame.sse(&answer, include_usage), "text/event-stream"),
            )
        } else {
            wire::ok_json(frame.completion(&answer))
        };
        match delay {
            Some(d) => template.set_delay(d),
            None => template,
        }
    }
}

/// Text of the last `user` message; content may be a string or OpenAI
/// content parts (text parts are joined with spaces).
/// `(tool_call_id, content)` when the conversation ends with a tool's answer.
fn last_tool_answer(body: &Value) -> Option<(String, String)> {
    let last = body.get("messages")?.as_array()?.last()?;
    if last.get("role")?.as_str()? != "tool" {
        return None;
    }
    let id = last.get("tool_call_id")?.as_str()?.to_string();
    let content = last.get("content")?.as_str()?.to_string();
    Some((id, content))
}

pub(crate) fn last_user_message(body: &Value) -> String {
    let Some(messages) = body.get("messages").and_then(Value::as_array) else {
        return String::new();
    };
    let Some(message) = messages
        .iter()
        .rev()
        .find(|m| m.get("role").and_then(Value::as_str) == Some("user"))
    else {
        return String::new();
    };
    match message.get("content") {
        Some(Value::String(s)) => s.clone(),
        Some(Value::Array(parts)) => parts
            .iter()
            .filter(|p| p.get("type").and_then(Value::as_str) == Some("text"))
            .filter_map(|p| p.get("text").and_then(Value::as_str))
            .collect::<Vec<_>>()
            .join(" "),
        _ => String::new(),
    }
}

fn first_tool_name(body: &Value) -> Option<String> {
    body.pointer("/tools/0/function/name")
        .and_then(Value::as_str)
        .map(str::to_string)
}

/// Rough token accounting: whitespace-separated words in and out.
pub(crate) fn usage(body: &Value, answer: &Answer) -> Value {
    let prompt_tokens: usize = body
        .get("messages")
        .and_then(Value::as_array)
        .map(|ms| {
            ms.iter()
                .filter_map(|m| m.get("content").and_then(Value::as_str))
                .map(|c| c.split_whitespace().count())
                .sum()
        })
        .unwrap_or(0);
    let completion_tokens = match answer {
        Answer::Text(t) => t.split_whitespace().count(),
        Answer::ToolCall { arguments, .. } => arguments.split_whitespace().count(),
    };
    json!({
        "prompt_tokens": prompt_tokens,
        "completion_tokens": completion_tokens,
        "total_tokens": prompt_tokens + completion_tokens,
    })
}

/// The fields shared by every object of one answer.
pub(crate) struct Frame<'a> {
    pub(crate) id: &'a str,
    pub(crate) model: &'a str,
    pub(crate) created: u64,
    pub(crate) usage: Value,
}

impl Frame<'_> {
    /// A non-streamed `chat.completion`.
    pub(crate) fn completion(&self, answer: &Answer) -> Value {
        let (message, finish) = match answer {
            Answer::Text(text) => (json!({"role": "assistant", "content": text}), "stop"),
            Answer::ToolCall { name, arguments } => (
                json!({
                    "role": "assistant",
                    "content": null,
                    "tool_calls": [{
                        "id": "call_fake_1",
                        "type": "function",
                        "function": {"name": name, "arguments": arguments},
                    }],
                }),
                "tool_calls",
            ),
        };
        json!({
            "id": self.id,
            "object": "chat.completion",
            "created": self.created,
            "model": self.model,
            "choices": [{"index": 0, "message": message, "finish_reason": finish}],
            "usage": self.usage,
        })
    }

    /// One `chat.completion.chunk`.
    pub(crate) fn chunk(&self, delta: Value, finish: Option<&str>) -> Value {
        json!({
            "id": self.id,
            "object": "chat.completion.chunk",
            "created": self.created,
            "model": self.model,
            "choices": [{"index": 0, "delta": delta, "finish_reason": finish}],
        })
    }

    /// The whole SSE body of a streamed answer.
    fn sse(&self, answer: &Answer, include_usage: bool) -> String {
        let mut out = String::new();
        for chunk in self.sse_events(answer, include_usage) {
            out.push_str("data: ");
            out.push_str(&chunk.to_string());
            out.push_str("\n\n");
        }
        out.push_str("data: [DONE]\n\n");
        out
    }

    /// The final chunk carrying only usage (`stream_options.include_usage`).
    pub(crate) fn usage_chunk(&self) -> Value {
        json!({
            "id": self.id,
            "object": "chat.completion.chunk",
            "created": self.created,
            "model": self.model,
            "choices": [],
            "usage": self.usage,
        })
    }

    /// The chunks of a streamed answer, before `[DONE]`: the role, the
    /// pieces, the finish reason, then usage if asked for.
    pub(crate) fn sse_events(&self, answer: &Answer, include_usage: bool) -> Vec<Value> {
        let mut chunks = Vec::new();
        let finish = match answer {
            Answer::Text(text) => {
                chunks.push(self.chunk(json!({"role": "assistant", "content": ""}), None));
                for (i, word) in text.split(' ').enumerate() {
                    let piece = if i == 0 {
                        word.to_string()
                    } else {
                        format!(" {word}")
                    };
                    chunks.push(self.chunk(json!({"content": piece}), None));
                }
                "stop"
            }
            Answer::ToolCall { name, arguments } => {
                chunks.push(self.chunk(
                    json!({
                        "role": "assistant",
                        "tool_calls": [{
                            "index": 0,
                            "id": "call_fake_1",
                            "type": "function",
                            "function": {"name": name, "arguments": ""},
                        }],
                    }),
                    None,
                ));
                for piece in split_chars(arguments, 8) {
                    chunks.push(self.chunk(
                        json!({"tool_calls": [{"index": 0, "function": {"arguments": piece}}]}),
                        None,
                    ));
                }
                "tool_calls"
            }
        };
        chunks.push(self.chunk(json!({}), Some(finish)));
        if include_usage {
            chunks.push(self.usage_chunk());
        }
        chunks
    }
}

/// Splits `s` into pieces of at most `n` characters (never inside a char).
fn split_chars(s: &str, n: usize) -> Vec<String> {
    let chars: Vec<char> = s.chars().collect();
    chars.chunks(n.max(1)).map(|c| c.iter().collect()).collect()
}
