//! The upstream JSON shapes of chat completions (whole and streamed chunks)
//! and [`Assembled`], which folds either into the final `Response`.
//!
//! Every field is optional and unknown fields are ignored: the upstream (Poe
//! fronting hundreds of different bots) controls these bodies, and a missing
//! or null field must never become a panic, only a smaller answer.

use std::collections::BTreeMap;

use poe_plugin_api::{Event, Response, Sink, ToolCall, Usage};
use serde::Deserialize;
use serde_json::Value;

/// A `chat.completion` or one `chat.completion.chunk`.
#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub(crate) struct Completion {
    pub(crate) model: Option<String>,
    pub(crate) choices: Option<Vec<Choice>>,
    pub(crate) usage: Option<WireUsage>,
    /// Some servers report failures inside a 200 body or an SSE chunk.
    pub(crate) error: Option<Value>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub(crate) struct Choice {
    pub(crate) index: Option<u32>,
    /// Whole answers.
    pub(crate) message: Option<WireMessage>,
    /// Streamed pieces.
    pub(crate) delta: Option<WireMessage>,
    pub(crate) finish_reason: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub(crate) struct WireMessage {
    /// A string, or (rarely) OpenAI content parts.
    pub(crate) content: Option<Value>,
    pub(crate) tool_calls: Option<Vec<WireToolCall>>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub(crate) struct WireToolCall {
    pub(crate) index: Option<u32>,
    pub(crate) id: Option<String>,
    pub(crate) function: Option<WireFunction>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub(crate) struct WireFunction {
    pub(crate) name: Option<String>,
    /// JSON text per the spec; some bots send an object instead.
    pub(crate) arguments: Option<Value>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub(crate) struct WireUsage {
    pub(crate) prompt_tokens: Option<u64>,
    pub(crate) completion_tokens: Option<u64>,
    pub(crate) total_tokens: Option<u64>,
}

impl WireUsage {
    fn to_usage(&self) -> Usage {
        let prompt = self.prompt_tokens.unwrap_or(0);
        let completion = self.completion_tokens.unwrap_or(0);
        Usage {
            prompt_tokens: prompt,
            completion_tokens: completion,
            total_tokens: self
                .total_tokens
                .unwrap_or(prompt.saturating_add(completion)),
            points: None,
        }
    }
}

/// Text of a `content` value: a string, or the text parts of an array.
fn content_text(content: &Value) -> String {
    match content {
        Value::String(s) => s.clone(),
        Value::Array(parts) => parts
            .iter()
            .filter_map(|p| p.get("text").and_then(Value::as_str))
            .collect(),
        _ => String::new(),
    }
}

fn arguments_text(arguments: &Value) -> String {
    match arguments {
        Value::String(s) => s.clone(),
        Value::Null => String::new(),
        other => other.to_string(),
    }
}

/// A tool call being put together from deltas.
#[derive(Debug, Default)]
struct PartialCall {
    id: Option<String>,
    name: Option<String>,
    arguments: String,
}

/// The answer so far, from whole completions or streamed chunks.
#[derive(Debug, Default)]
pub(crate) struct Assembled {
    pub(crate) text: String,
    calls: BTreeMap<u32, PartialCall>,
    pub(crate) usage: Option<Usage>,
    pub(crate) finish_reason: Option<String>,
    pub(crate) model: Option<String>,
    /// Text folded in but not yet emitted: deltas that arrive together go
    /// to the host as one event (see [`Assembled::flush`]).
    unsent: String,
}

impl Assembled {
    /// Folds in a whole (non-streamed) completion.
    pub(crate) fn apply_completion(&mut self, completion: Completion) {
        if completion.model.is_some() {
            self.model = completion.model;
        }
        if let Some(usage) = &completion.usage {
            self.usage = Some(usage.to_usage());
        }
        // Poe always returns exactly one choice; take the first.
        if let Some(choice) = completion.choices.unwrap_or_default().into_iter().next() {
            if let Some(message) = choice.message {
                if let Some(content) = &message.content {
                    self.text.push_str(&content_text(content));
                }
                for (position, call) in message
                    .tool_calls
                    .unwrap_or_default()
                    .into_iter()
                    .enumerate()
                {
                    self.add_call_piece(position, call);
                }
            }
            if choice.finish_reason.is_some() {
                self.finish_reason = choice.finish_reason;
            }
        }
    }

    /// Emits the text folded in since the last flush as one delta. A
    /// streamed answer arrives as one chunk per token or word; crossing the
    /// ABI and the job once per network read instead of once per chunk is
    /// what keeps a long answer cheap.
    pub(crate) fn flush(&mut self, sink: &Sink) {
        if !self.unsent.is_empty() {
            sink.emit(&Event::TextDelta {
                text: std::mem::take(&mut self.unsent),
            });
        }
    }

    /// Folds in one streamed chunk, keeping text deltas for the next
    /// [`Assembled::flush`] and emitting others when `emit` is set.
    pub(crate) fn apply_chunk(&mut self, chunk: Completion, sink: &Sink, emit: bool) {
        if chunk.model.is_some() {
            self.model = chunk.model;
        }
        for choice in chunk.choices.unwrap_or_default() {
            // Only the first choice is the answer (Poe sends exactly one).
            if choice.index.unwrap_or(0) != 0 {
                continue;
            }
            if let Some(delta) = choice.delta {
                if let Some(content) = &delta.content {
                    let piece = content_text(content);
                    if !piece.is_empty() {
                        if emit {
                            self.unsent.push_str(&piece);
                        }
                        self.text.push_str(&piece);
                    }
                }
                for (position, call) in delta.tool_calls.unwrap_or_default().into_iter().enumerate()
                {
                    let id = call.id.clone();
                    let name = call.function.as_ref().and_then(|f| f.name.clone());
                    let (index, fragment) = self.add_call_piece(position, call);
                    if emit {
                        self.flush(sink);
                        sink.emit(&Event::ToolCallDelta {
                            index,
                            id,
                            name,
                            arguments: fragment,
                        });
                    }
                }
            }
            if choice.finish_reason.is_some() {
                self.finish_reason = choice.finish_reason;
            }
        }
        if let Some(usage) = chunk.usage {
            let usage = usage.to_usage();
            if emit {
                self.flush(sink);
                sink.emit(&Event::Usage(usage.clone()));
            }
            self.usage = Some(usage);
        }
    }

    /// Adds one (piece of a) tool call; returns its index and the argument
    /// fragment it contributed.
    fn add_call_piece(&mut self, position: usize, call: WireToolCall) -> (u32, String) {
        let index = call
            .index
            .unwrap_or_else(|| u32::try_from(position).unwrap_or(u32::MAX));
        let entry = self.calls.entry(index).or_default();
        if let Some(id) = call.id.filter(|id| !id.is_empty()) {
            entry.id = Some(id);
        }
        let mut fragment = String::new();
        if let Some(function) = call.function {
            if let Some(name) = function.name.filter(|n| !n.is_empty()) {
                entry.name = Some(name);
            }
            if let Some(arguments) = &function.arguments {
                fragment = arguments_text(arguments);
                entry.arguments.push_str(&fragment);
            }
        }
        (index, fragment)
    }

    /// Whether the upstream said the answer is complete.
    pub(crate) fn finished(&self) -> bool {
        self.finish_reason.is_some()
    }

    /// The final response; `fallback_model` when the upstream did not say.
    pub(crate) fn into_response(self, fallback_model: &str) -> Response {
        let tool_calls = self
            .calls
            .into_iter()
            .map(|(index, call)| ToolCall {
                id: call.id.unwrap_or_else(|| format!("call_{index}")),
                name: call.name.unwrap_or_default(),
                arguments: call.arguments,
            })
            .collect();
        Response {
            text: self.text,
            media: Vec::new(),
            tool_calls,
            usage: self.usage,
            finish_reason: self.finish_reason,
            model: Some(self.model.unwrap_or_else(|| fallback_model.to_string())),
            continuation: None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn whole_completion_with_tool_calls_and_null_content() {
        let completion: Completion = serde_json::from_str(
            r#"{"model":"GPT-4o","choices":[{"index":0,"message":{"role":"assistant","content":null,
            "tool_calls":[{"id":"c1","type":"function","function":{"name":"f","arguments":"{\"a\":1}"}}]},
            "finish_reason":"tool_calls"}],"usage":{"prompt_tokens":3,"completion_tokens":null}}"#,
        )
        .unwrap();
        let mut acc = Assembled::default();
        acc.apply_completion(completion);
        let r = acc.into_response("x");
        assert_eq!(r.text, "");
        assert_eq!(r.tool_calls.len(), 1);
        assert_eq!(r.tool_calls[0].arguments, "{\"a\":1}");
        assert_eq!(r.finish_reason.as_deref(), Some("tool_calls"));
        assert_eq!(r.usage.unwrap().total_tokens, 3);
        assert_eq!(r.model.as_deref(), Some("GPT-4o"));
    }

    #[test]
    fn odd_shapes_do_not_panic() {
        for body in [
            r#"{}"#,
            r#"{"choices":null}"#,
            r#"{"choices":[{}]}"#,
            r#"{"choices":[{"message":{"content":[{"type":"text","text":"hi"}]}}]}"#,
            r#"{"choices":[{"message":{"tool_calls":[{"function":{"arguments":{"a":1}}}]}}]}"#,
        ] {
            let completion: Completion = serde_json::from_str(body).unwrap();
            let mut acc = Assembled::default();
            acc.apply_completion(completion);
            let _ = acc.into_response("m");
        }
    }
}
