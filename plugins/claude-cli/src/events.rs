//! Reads the event stream of `claude -p --output-format stream-json
//! --verbose` into plugin-api events and the final outcome.
//!
//! The stream, as Claude Code 2.1.197 prints it (checked against the real
//! binary and a local Messages API): one JSON object per line with a `type`:
//! - `system` `{subtype: "init", session_id, model, cwd, tools, ...}` first;
//!   `{subtype: "api_retry", attempt, max_retries, error_status, error}`
//!   while it retries a failed request on its own (a 401 with
//!   `authentication_failed` is retried too, for minutes);
//!   `{subtype: "status", ...}`;
//! - `stream_event` `{event: <a Messages API stream event>,
//!   parent_tool_use_id}` with `--include-partial-messages`: the answer's
//!   `content_block_start` / `content_block_delta` (`text_delta`) as it
//!   arrives;
//! - `assistant` `{message: {content: [text | tool_use | thinking ...]},
//!   parent_tool_use_id, error?}`: each block whole. A run without a login
//!   prints a synthetic one with `error: "authentication_failed"` and the
//!   text "Not logged in · Please run /login";
//! - `user` `{message: {content: [tool_result ...]}}`;
//! - `result` `{subtype: "success" | "error_during_execution" |
//!   "error_max_turns" | ..., is_error, result, errors?, session_id,
//!   total_cost_usd, usage {input_tokens, output_tokens,
//!   cache_creation_input_tokens, cache_read_input_tokens}, num_turns,
//!   api_error_status}` last.
//!
//! Events of sub-agents (`parent_tool_use_id` set) are progress, not the
//! answer. Every field is read leniently: an odd or unknown event is logged,
//! never a panic and never a failed call.

use std::ops::ControlFlow;

use poe_plugin_api::{Event, LogLevel, PluginError, Sink, Usage};
use serde_json::Value;

use cli_provider::Cli;
use cli_provider::errors::snippet;

/// Longest piece of Claude Code output quoted in a progress message.
const SNIPPET: usize = 200;

/// The final `result` event.
#[derive(Debug, Default, Clone)]
pub(crate) struct Outcome {
    pub(crate) subtype: String,
    pub(crate) is_error: bool,
    /// `result`, or the `errors` joined.
    pub(crate) text: String,
    pub(crate) usage: Option<Usage>,
    pub(crate) cost_usd: Option<f64>,
    pub(crate) num_turns: Option<u64>,
    pub(crate) api_error_status: Option<u64>,
}

/// What the stream has said so far.
#[derive(Debug, Default)]
pub(crate) struct Session {
    /// From `system`/`init` (or any later event).
    pub(crate) session_id: Option<String>,
    pub(crate) model: Option<String>,
    /// The main thread's answer text: its text blocks, joined by blank
    /// lines (what was streamed, when streaming).
    pub(crate) text: String,
    /// The text of an `assistant` event marked as an error.
    pub(crate) error_message: Option<(String, String)>,
    pub(crate) outcome: Option<Outcome>,
    /// Whether to stream text and progress to the host.
    emit: bool,
    /// Text streamed for the current block (deltas), so the whole block
    /// that follows is not added twice.
    streamed_block: bool,
}

fn str_of<'a>(value: &'a Value, key: &str) -> Option<&'a str> {
    value.get(key).and_then(Value::as_str)
}

fn is_main_thread(event: &Value) -> bool {
    event.get("parent_tool_use_id").is_none_or(Value::is_null)
}

/// Claude's token counts: cached and cache-writing input count as input.
fn usage_of(usage: &Value) -> Usage {
    let number = |key: &str| usage.get(key).and_then(Value::as_u64).unwrap_or(0);
    let prompt = number("input_tokens")
        .saturating_add(number("cache_creation_input_tokens"))
        .saturating_add(number("cache_read_input_tokens"));
    let completion = number("output_tokens");
    Usage {
        prompt_tokens: prompt,
        completion_tokens: completion,
        total_tokens: prompt.saturating_add(completion),
        points: None,
    }
}

/// A tool use, as a progress line.
fn tool_line(block: &Value) -> String {
    cli_provider::request::tool_summary(
        str_of(block, "name").unwrap_or("a tool"),
        block.get("input").unwrap_or(&Value::Null),
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

    /// Appends answer text, a blank line apart from what came before.
    fn push_text(&mut self, sink: &Sink, text: &str, starts_block: bool) {
        let piece = if starts_block && !self.text.is_empty() {
            format!("\n\n{text}")
        } else {
            text.to_string()
        };
        if piece.is_empty() {
            return;
        }
        if self.emit {
            sink.text(piece.clone());
        }
        self.text.push_str(&piece);
    }

    /// Folds in one event; breaks when the run should stop now (a login
    /// Claude Code would retry for minutes, though no retry fixes it).
    pub(crate) fn on_event(
        &mut self,
        event: &Value,
        sink: &Sink,
        cli: &Cli,
    ) -> ControlFlow<PluginError> {
        if let Some(id) = str_of(event, "session_id").filter(|id| !id.is_empty())
            && self.session_id.as_deref() != Some(id)
        {
            sink.emit(&Event::Continuation { id: id.to_string() });
            self.session_id = Some(id.to_string());
        }
        match str_of(event, "type").unwrap_or("") {
            "system" => return self.on_system(event, sink, cli),
            "stream_event" if is_main_thread(event) => self.on_stream(event, sink),
            "stream_event" => {}
            "assistant" => self.on_assistant(event, sink),
            "user" => {}
            "result" => self.on_result(event, sink),
            other => sink.log(
                LogLevel::Debug,
                format!("unknown Claude Code event type {:?}", snippet(other, 40)),
            ),
        }
        ControlFlow::Continue(())
    }

    fn on_system(&mut self, event: &Value, sink: &Sink, cli: &Cli) -> ControlFlow<PluginError> {
        match str_of(event, "subtype").unwrap_or("") {
            "init" => {
                self.model = str_of(event, "model").map(str::to_string);
                self.progress(sink, "Claude Code is working".into());
            }
            "api_retry" => {
                let status = event.get("error_status").and_then(Value::as_u64);
                let error = str_of(event, "error").unwrap_or("error");
                if matches!(status, Some(401 | 403)) || error == "authentication_failed" {
                    return ControlFlow::Break(cli_provider::errors::login_rejected(
                        cli,
                        &format!("the API answered {} ({error})", status.unwrap_or(401)),
                    ));
                }
                self.progress(
                    sink,
                    format!(
                        "Claude Code is retrying ({error}{}; attempt {} of {})",
                        status.map(|s| format!(", HTTP {s}")).unwrap_or_default(),
                        event.get("attempt").and_then(Value::as_u64).unwrap_or(0),
                        event
                            .get("max_retries")
                            .and_then(Value::as_u64)
                            .unwrap_or(0),
                    ),
                );
            }
            _ => {}
        }
        ControlFlow::Continue(())
    }

    fn on_stream(&mut self, event: &Value, sink: &Sink) {
        let Some(inner) = event.get("event") else {
            return;
        };
        match str_of(inner, "type").unwrap_or("") {
            "content_block_start" => {
                let block = inner.get("content_block").unwrap_or(&Value::Null);
                if str_of(block, "type") == Some("text") {
                    self.streamed_block = true;
                    let text = str_of(block, "text").unwrap_or("");
                    // The separator goes out with the block's first text.
                    if !self.text.is_empty() {
                        self.push_text(sink, "\n\n", false);
                    }
                    self.push_text(sink, text, false);
                }
            }
            "content_block_delta" => {
                let delta = inner.get("delta").unwrap_or(&Value::Null);
                if str_of(delta, "type") == Some("text_delta") {
                    self.push_text(sink, str_of(delta, "text").unwrap_or(""), false);
                }
            }
            _ => {}
        }
    }

    fn on_assistant(&mut self, event: &Value, sink: &Sink) {
        let main = is_main_thread(event);
        let blocks = event
            .get("message")
            .and_then(|m| m.get("content"))
            .and_then(Value::as_array)
            .map(Vec::as_slice)
            .unwrap_or(&[]);
        if let Some(kind) = str_of(event, "error") {
            let text: Vec<&str> = blocks.iter().filter_map(|b| str_of(b, "text")).collect();
            self.error_message = Some((kind.to_string(), text.join(" ")));
            return;
        }
        for block in blocks {
            match str_of(block, "type").unwrap_or("") {
                "text" if main => {
                    // Streamed already, delta by delta.
                    if std::mem::take(&mut self.streamed_block) {
                        continue;
                    }
                    self.push_text(sink, str_of(block, "text").unwrap_or(""), true);
                }
                "text" => self.progress(
                    sink,
                    format!(
                        "subagent: {}",
                        snippet(str_of(block, "text").unwrap_or(""), SNIPPET)
                    ),
                ),
                "tool_use" => self.progress(sink, tool_line(block)),
                "thinking" => self.progress(
                    sink,
                    format!(
                        "thinking: {}",
                        snippet(str_of(block, "thinking").unwrap_or(""), SNIPPET)
                    ),
                ),
                _ => {}
            }
        }
    }

    fn on_result(&mut self, event: &Value, sink: &Sink) {
        let errors: Vec<&str> = event
            .get("errors")
            .and_then(Value::as_array)
            .map(|e| e.iter().filter_map(Value::as_str).collect())
            .unwrap_or_default();
        let text = match str_of(event, "result") {
            Some(result) if !result.is_empty() => result.to_string(),
            _ => errors.join("; "),
        };
        let outcome = Outcome {
            subtype: str_of(event, "subtype").unwrap_or("").to_string(),
            is_error: event
                .get("is_error")
                .and_then(Value::as_bool)
                .unwrap_or(false),
            text,
            usage: event.get("usage").map(usage_of),
            cost_usd: event.get("total_cost_usd").and_then(Value::as_f64),
            num_turns: event.get("num_turns").and_then(Value::as_u64),
            api_error_status: event.get("api_error_status").and_then(Value::as_u64),
        };
        if let Some(usage) = &outcome.usage
            && self.emit
        {
            sink.emit(&Event::Usage(usage.clone()));
        }
        if !outcome.is_error {
            let turns = outcome.num_turns.unwrap_or(0);
            let cost = outcome
                .cost_usd
                .map(|c| format!(", ${c:.4} by Claude Code's reckoning"))
                .unwrap_or_default();
            let line = format!(
                "Claude Code finished: {turns} turn{}{cost}",
                if turns == 1 { "" } else { "s" }
            );
            sink.log(LogLevel::Info, line.clone());
            self.progress(sink, line);
        }
        self.outcome = Some(outcome);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use poe_plugin_api::host::RecordingSink;

    fn cli() -> Cli {
        crate::command::Settings::from_config(&Default::default()).cli
    }

    fn feed(session: &mut Session, lines: &[&str], sink: &Sink) -> ControlFlow<PluginError> {
        for line in lines {
            if let Some(event) = cli_provider::parse_event(line.as_bytes()) {
                session.on_event(&event, sink, &cli())?;
            }
        }
        ControlFlow::Continue(())
    }

    /// What Claude Code 2.1.197 printed for a one-line answer, trimmed.
    const REAL: &[&str] = &[
        r#"{"type":"system","subtype":"init","cwd":"/tmp/w","session_id":"b0af898d-fbae-48d6-a032-c0bedcbaf33d","model":"claude-opus-4-8[1m]","permissionMode":"plan"}"#,
        r#"{"type":"system","subtype":"status","status":"requesting","session_id":"b0af898d-fbae-48d6-a032-c0bedcbaf33d"}"#,
        r#"{"type":"stream_event","event":{"type":"message_start","message":{"id":"msg_1","content":[]}},"session_id":"b0af898d-fbae-48d6-a032-c0bedcbaf33d","parent_tool_use_id":null}"#,
        r#"{"type":"stream_event","event":{"type":"content_block_start","index":0,"content_block":{"type":"text","text":""}},"session_id":"b0af898d-fbae-48d6-a032-c0bedcbaf33d","parent_tool_use_id":null}"#,
        r#"{"type":"stream_event","event":{"type":"content_block_delta","index":0,"delta":{"type":"text_delta","text":"answer"}},"session_id":"b0af898d-fbae-48d6-a032-c0bedcbaf33d","parent_tool_use_id":null}"#,
        r#"{"type":"stream_event","event":{"type":"content_block_delta","index":0,"delta":{"type":"text_delta","text":" to 2 messages"}},"session_id":"b0af898d-fbae-48d6-a032-c0bedcbaf33d","parent_tool_use_id":null}"#,
        r#"{"type":"assistant","message":{"id":"msg_1","content":[{"type":"text","text":"answer to 2 messages"}]},"parent_tool_use_id":null,"session_id":"b0af898d-fbae-48d6-a032-c0bedcbaf33d"}"#,
        r#"{"type":"assistant","message":{"id":"msg_2","content":[{"type":"tool_use","id":"t1","name":"Read","input":{"file_path":"/tmp/w/a.rs"}}]},"parent_tool_use_id":null,"session_id":"b0af898d-fbae-48d6-a032-c0bedcbaf33d"}"#,
        r#"{"type":"stream_event","event":{"type":"content_block_stop","index":0},"session_id":"b0af898d-fbae-48d6-a032-c0bedcbaf33d","parent_tool_use_id":null}"#,
        r#"{"type":"future_event","x":1}"#,
        r#"{"type":"result","subtype":"success","is_error":false,"api_error_status":null,"num_turns":1,"result":"answer to 2 messages","session_id":"b0af898d-fbae-48d6-a032-c0bedcbaf33d","total_cost_usd":0.000435,"usage":{"input_tokens":42,"cache_creation_input_tokens":3,"cache_read_input_tokens":5,"output_tokens":9}}"#,
    ];

    #[test]
    fn a_real_stream_becomes_events() {
        let recorder = RecordingSink::default();
        let sink = Sink::new(recorder.clone());
        let mut session = Session::new(true);
        assert!(feed(&mut session, REAL, &sink).is_continue());
        assert_eq!(
            session.session_id.as_deref(),
            Some("b0af898d-fbae-48d6-a032-c0bedcbaf33d")
        );
        assert_eq!(session.text, "answer to 2 messages");
        let outcome = session.outcome.clone().unwrap();
        assert!(!outcome.is_error);
        let usage = outcome.usage.unwrap();
        assert_eq!((usage.prompt_tokens, usage.completion_tokens), (50, 9));
        let events = recorder.events();
        let continuations = events
            .iter()
            .filter(|e| matches!(e, Event::Continuation { .. }))
            .count();
        assert_eq!(continuations, 1, "{events:?}");
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
                "Claude Code is working",
                "Read: /tmp/w/a.rs",
                "Claude Code finished: 1 turn, $0.0004 by Claude Code's reckoning"
            ]
        );
    }

    #[test]
    fn without_deltas_whole_blocks_make_the_text() {
        let sink = Sink::new(RecordingSink::default());
        let mut session = Session::new(false);
        let lines = [
            r#"{"type":"assistant","message":{"content":[{"type":"text","text":"one"}]},"parent_tool_use_id":null}"#,
            r#"{"type":"assistant","message":{"content":[{"type":"text","text":"sub"}]},"parent_tool_use_id":"t1"}"#,
            r#"{"type":"assistant","message":{"content":[{"type":"text","text":"two"}]},"parent_tool_use_id":null}"#,
        ];
        assert!(feed(&mut session, &lines, &sink).is_continue());
        assert_eq!(session.text, "one\n\ntwo");
    }

    #[test]
    fn logins_and_failures() {
        let sink = Sink::new(RecordingSink::default());
        let mut session = Session::new(false);
        let lines = [
            r#"{"type":"assistant","message":{"model":"<synthetic>","content":[{"type":"text","text":"Not logged in · Please run /login"}]},"parent_tool_use_id":null,"error":"authentication_failed"}"#,
            r#"{"type":"result","subtype":"success","is_error":true,"result":"Not logged in · Please run /login","num_turns":1}"#,
        ];
        assert!(feed(&mut session, &lines, &sink).is_continue());
        assert_eq!(session.text, "");
        assert_eq!(
            session.error_message,
            Some((
                "authentication_failed".into(),
                "Not logged in · Please run /login".into()
            ))
        );
        assert!(session.outcome.unwrap().is_error);

        let mut session = Session::new(false);
        let retry = [
            r#"{"type":"system","subtype":"api_retry","attempt":1,"max_retries":10,"error_status":401,"error":"authentication_failed"}"#,
        ];
        let ControlFlow::Break(error) = feed(&mut session, &retry, &sink) else {
            panic!("a refused login stops the run");
        };
        assert!(error.message.contains("rejected or has expired"), "{error}");

        let mut session = Session::new(false);
        let retry = [
            r#"{"type":"system","subtype":"api_retry","attempt":1,"max_retries":10,"error_status":529,"error":"overloaded"}"#,
        ];
        assert!(feed(&mut session, &retry, &sink).is_continue());
        let missing = [
            r#"{"type":"result","subtype":"error_during_execution","is_error":true,"num_turns":0,"errors":["No conversation found with session ID: 0000"]}"#,
        ];
        assert!(feed(&mut session, &missing, &sink).is_continue());
        assert_eq!(
            session.outcome.unwrap().text,
            "No conversation found with session ID: 0000"
        );
    }
}
