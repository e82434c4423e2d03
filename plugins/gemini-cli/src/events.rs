//! Reads the event stream of `gemini --output-format=stream-json` into
//! plugin-api events and the final outcome.
//!
//! The stream, as Gemini CLI 0.61.0 prints it (its `JsonStreamEventType`,
//! checked against the real binary and a local Gemini API): one JSON object
//! per line with a `type` and a `timestamp`:
//! - `init` `{session_id, model}` first;
//! - `message` `{role: "user" | "assistant", content, delta?}`: the user's
//!   prompt echoed, then the answer in pieces (`delta: true`);
//! - `tool_use` `{tool_name, tool_id, parameters}`; `tool_result` `{tool_id,
//!   status: "success" | "error", output?, error? {type, message}}`;
//! - `error` `{severity: "warning" | "error", message}`: not fatal by itself;
//! - `result` `{status: "success" | "error", error? {type, message},
//!   stats {total_tokens, input_tokens, output_tokens, cached, duration_ms,
//!   tool_calls, models}}` last.
//!
//! Every field is read leniently: an odd or unknown event is logged, never a
//! panic and never a failed call.

use poe_plugin_api::{Event, LogLevel, Sink, Usage};
use serde_json::Value;

use cli_provider::errors::snippet;

/// Longest piece of Gemini CLI output quoted in a progress message.
const SNIPPET: usize = 200;

/// The final `result` event.
#[derive(Debug, Default, Clone)]
pub(crate) struct Outcome {
    pub(crate) success: bool,
    /// `error.message`, when it failed.
    pub(crate) error: String,
    pub(crate) usage: Option<Usage>,
}

/// What the stream has said so far.
#[derive(Debug, Default)]
pub(crate) struct Session {
    /// From `init`.
    pub(crate) session_id: Option<String>,
    pub(crate) model: Option<String>,
    /// The assistant's messages, as streamed.
    pub(crate) text: String,
    /// The last `error` event's message.
    pub(crate) last_error: Option<String>,
    pub(crate) outcome: Option<Outcome>,
    /// Whether to stream text and progress to the host.
    emit: bool,
    /// The last event was an assistant message (a tool call or result in
    /// between makes the next one a new paragraph).
    in_message: bool,
}

fn str_of<'a>(value: &'a Value, key: &str) -> Option<&'a str> {
    value.get(key).and_then(Value::as_str)
}

/// The Gemini CLI's token counts (`input_tokens` includes cached input).
fn usage_of(stats: &Value) -> Usage {
    let number = |key: &str| stats.get(key).and_then(Value::as_u64).unwrap_or(0);
    let prompt = number("input_tokens");
    let completion = number("output_tokens");
    let total = match number("total_tokens") {
        0 => prompt.saturating_add(completion),
        total => total,
    };
    Usage {
        prompt_tokens: prompt,
        completion_tokens: completion,
        total_tokens: total,
        points: None,
    }
}

/// A tool call, as a progress line.
fn tool_line(event: &Value) -> String {
    cli_provider::request::tool_summary(
        str_of(event, "tool_name").unwrap_or("a tool"),
        event.get("parameters").unwrap_or(&Value::Null),
    )
}

impl Session {
    /// A session that streams to the host when `emit` is set.
    pub(crate) fn new(emit: bool) -> Self {
        Session {
            emit,
            ..Session::default()
        }
    }

    fn progress(&self, sink: &Sink, message: String) {
        if self.emit {
            sink.emit(&Event::Progress { message });
        }
    }

    /// Folds in one event the CLI printed.
    pub(crate) fn on_event(&mut self, event: &Value, sink: &Sink) {
        let kind = str_of(event, "type").unwrap_or("");
        if kind != "message" {
            self.in_message = false;
        }
        match kind {
            "init" => {
                if let Some(id) = str_of(event, "session_id").filter(|id| !id.is_empty()) {
                    sink.emit(&Event::Continuation { id: id.to_string() });
                    self.session_id = Some(id.to_string());
                }
                self.model = str_of(event, "model").map(str::to_string);
                self.progress(sink, "The Gemini CLI is working".into());
            }
            "message" if str_of(event, "role") == Some("assistant") => {
                let content = str_of(event, "content").unwrap_or("");
                let piece = if !self.in_message && !self.text.is_empty() {
                    format!("\n\n{content}")
                } else {
                    content.to_string()
                };
                self.in_message = true;
                if piece.is_empty() {
                    return;
                }
                if self.emit {
                    sink.text(piece.clone());
                }
                self.text.push_str(&piece);
            }
            "message" => {}
            "tool_use" => self.progress(sink, tool_line(event)),
            "tool_result" => {
                if str_of(event, "status") == Some("error") {
                    let message = event
                        .get("error")
                        .and_then(|e| str_of(e, "message"))
                        .unwrap_or("failed");
                    self.progress(
                        sink,
                        format!("a tool failed: {}", snippet(message, SNIPPET)),
                    );
                }
            }
            "error" => {
                let message = str_of(event, "message").unwrap_or("error");
                self.progress(sink, format!("Gemini CLI: {}", snippet(message, SNIPPET)));
                self.last_error = Some(message.to_string());
            }
            "result" => {
                let outcome = Outcome {
                    success: str_of(event, "status") == Some("success"),
                    error: event
                        .get("error")
                        .and_then(|e| str_of(e, "message"))
                        .unwrap_or("")
                        .to_string(),
                    usage: event.get("stats").map(usage_of),
                };
                if let Some(usage) = &outcome.usage
                    && self.emit
                {
                    sink.emit(&Event::Usage(usage.clone()));
                }
                self.outcome = Some(outcome);
            }
            other => sink.log(
                LogLevel::Debug,
                format!("unknown Gemini CLI event type {:?}", snippet(other, 40)),
            ),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use poe_plugin_api::host::RecordingSink;

    /// What Gemini CLI 0.61.0 printed for a short answer, plus a tool call.
    const REAL: &[&str] = &[
        r#"{"type":"init","timestamp":"2026-12-02T15:19:05.369Z","session_id":"69ac8bd5-f26a-4960-8cb1-1bdfae8827a9","model":"auto"}"#,
        r#"{"type":"message","timestamp":"2026-12-02T15:19:05.370Z","role":"user","content":"-hello there\n"}"#,
        r#"{"type":"message","timestamp":"2026-12-02T15:19:05.405Z","role":"assistant","content":"Gemini ","delta":true}"#,
        r#"{"type":"message","timestamp":"2026-12-02T15:19:05.407Z","role":"assistant","content":"heard you","delta":true}"#,
        r#"{"type":"tool_use","timestamp":"2026-12-02T15:19:05.408Z","tool_name":"read_file","tool_id":"t1","parameters":{"absolute_path":"/w/a.rs"}}"#,
        r#"{"type":"tool_result","timestamp":"2026-12-02T15:19:05.409Z","tool_id":"t1","status":"error","error":{"type":"FILE_NOT_FOUND","message":"no such file"}}"#,
        r#"{"type":"message","timestamp":"2026-12-02T15:19:05.410Z","role":"assistant","content":"Done.","delta":true}"#,
        r#"{"type":"future","x":1}"#,
        r#"{"type":"result","timestamp":"2026-12-02T15:19:05.464Z","status":"success","stats":{"total_tokens":47,"input_tokens":40,"output_tokens":7,"cached":0,"input":40,"duration_ms":96,"tool_calls":1}}"#,
    ];

    #[test]
    fn a_real_stream_becomes_events() {
        let recorder = RecordingSink::default();
        let sink = Sink::new(recorder.clone());
        let mut session = Session::new(true);
        for line in REAL {
            session.on_event(&cli_provider::parse_event(line.as_bytes()).unwrap(), &sink);
        }
        assert_eq!(
            session.session_id.as_deref(),
            Some("69ac8bd5-f26a-4960-8cb1-1bdfae8827a9")
        );
        assert_eq!(session.text, "Gemini heard you\n\nDone.");
        let outcome = session.outcome.clone().unwrap();
        assert!(outcome.success);
        let usage = outcome.usage.unwrap();
        assert_eq!(
            (
                usage.prompt_tokens,
                usage.completion_tokens,
                usage.total_tokens
            ),
            (40, 7, 47)
        );
        let events = recorder.events();
        let streamed: String = events
            .iter()
            .filter_map(|e| match e {
                Event::TextDelta { text } => Some(text.as_str()),
                _ => None,
            })
            .collect();
        assert_eq!(streamed, session.text);
        let progress: Vec<&str> = events
            .iter()
            .filter_map(|e| match e {
                Event::Progress { message } => Some(message.as_str()),
                _ => None,
            })
            .collect();
        assert_eq!(
            progress,
            [
                "The Gemini CLI is working",
                "read_file: /w/a.rs",
                "a tool failed: no such file"
            ]
        );
    }

    #[test]
    fn a_failed_result() {
        let sink = Sink::new(RecordingSink::default());
        let mut session = Session::new(false);
        let line = r#"{"type":"result","status":"error","error":{"type":"unknown","message":"[API Error: API key expired]"},"stats":{"total_tokens":0}}"#;
        session.on_event(&cli_provider::parse_event(line.as_bytes()).unwrap(), &sink);
        let outcome = session.outcome.unwrap();
        assert!(!outcome.success);
        assert_eq!(outcome.error, "[API Error: API key expired]");
    }
}
