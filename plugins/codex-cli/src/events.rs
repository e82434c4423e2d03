//! Reads the JSONL event stream of `codex exec --json` into plugin-api
//! events and the final answer.
//!
//! The stream, as `codex-rs/exec/src/exec_events.rs` defines it and
//! codex-cli 0.169.0 prints it (checked against the real binary): one JSON
//! object per line with a `type`:
//! - `thread.started` `{thread_id}`: the thread a later `codex exec resume`
//!   continues; it becomes the call's continuation;
//! - `turn.started` `{}`; `turn.completed` `{usage: {input_tokens,
//!   cached_input_tokens, cache_write_input_tokens, output_tokens,
//!   reasoning_output_tokens}}`; `turn.failed` `{error: {message}}`;
//! - `item.started` / `item.updated` / `item.completed` `{item: {id, type,
//!   ...}}` with item types `agent_message` `{text}` (the answer; it arrives
//!   whole, in `item.completed`), `reasoning` `{text}`, `command_execution`
//!   `{command, aggregated_output, exit_code, status}`, `file_change`
//!   `{changes: [{path, kind}], status}`, `mcp_tool_call` `{server, tool,
//!   status}`, `web_search` `{query}`, `todo_list` `{items: [{text,
//!   completed}]}`, `plan` `{text}`, `error` `{message}` (non-fatal);
//! - `error` `{message}`: reported by the stream; not necessarily fatal
//!   (Codex prints "Reconnecting... 2/5 (...)" this way while it retries on
//!   its own), so only `turn.failed` and the exit status decide failure;
//! - `item.plan.delta`, `request_user_input`: no use to a one-shot call.
//!
//! Every field is read leniently: an odd or unknown line is logged, never a
//! panic and never a failed call.

use poe_plugin_api::{Event, LogLevel, Sink, Usage};
use serde_json::Value;

/// Longest piece of codex output quoted in a progress message.
const SNIPPET: usize = 200;

/// What the stream has said so far.
#[derive(Debug, Default)]
pub(crate) struct Turn {
    /// From `thread.started`.
    pub(crate) thread_id: Option<String>,
    /// The agent messages, joined by blank lines.
    pub(crate) text: String,
    pub(crate) usage: Option<Usage>,
    /// A `turn.completed` arrived.
    pub(crate) completed: bool,
    /// The message of `turn.failed`.
    pub(crate) failure: Option<String>,
    /// The last stream `error`, for when codex exits without `turn.failed`.
    pub(crate) last_error: Option<String>,
    /// Whether to stream text, usage and progress to the host.
    emit: bool,
}

fn str_of<'a>(value: &'a Value, key: &str) -> Option<&'a str> {
    value.get(key).and_then(Value::as_str)
}

pub(crate) use cli_provider::errors::snippet;

impl Turn {
    /// A turn that streams to the host when `emit` is set.
    pub(crate) fn new(emit: bool) -> Self {
        Turn {
            emit,
            ..Turn::default()
        }
    }

    fn progress(&self, sink: &Sink, message: String) {
        if self.emit {
            sink.emit(&Event::Progress { message });
        }
    }

    /// Folds in one event codex printed.
    pub(crate) fn on_event(&mut self, event: &Value, sink: &Sink) {
        match str_of(event, "type").unwrap_or("") {
            "thread.started" => {
                if let Some(id) = str_of(event, "thread_id").filter(|id| !id.is_empty()) {
                    sink.emit(&Event::Continuation { id: id.to_string() });
                    self.thread_id = Some(id.to_string());
                }
            }
            "turn.started" => self.progress(sink, "Codex is working".into()),
            "turn.completed" => {
                self.completed = true;
                if let Some(usage) = event.get("usage") {
                    let number = |key: &str| usage.get(key).and_then(Value::as_u64).unwrap_or(0);
                    let prompt = number("input_tokens");
                    let completion = number("output_tokens");
                    let usage = Usage {
                        prompt_tokens: prompt,
                        completion_tokens: completion,
                        total_tokens: prompt.saturating_add(completion),
                        points: None,
                    };
                    if self.emit {
                        sink.emit(&Event::Usage(usage.clone()));
                    }
                    self.usage = Some(usage);
                }
            }
            "turn.failed" => {
                let message = event
                    .get("error")
                    .and_then(|e| str_of(e, "message"))
                    .unwrap_or("the turn failed");
                self.failure = Some(message.to_string());
            }
            "error" => {
                let message = str_of(event, "message").unwrap_or("error");
                self.progress(sink, format!("Codex: {}", snippet(message, SNIPPET)));
                self.last_error = Some(message.to_string());
            }
            "item.started" => {
                if let Some(item) = event.get("item") {
                    self.item_started(item, sink);
                }
            }
            "item.updated" => {
                if let Some(item) = event.get("item")
                    && str_of(item, "type") == Some("todo_list")
                {
                    self.progress(sink, todo_list(item));
                }
            }
            "item.completed" => {
                if let Some(item) = event.get("item") {
                    self.item_completed(item, sink);
                }
            }
            "request_user_input" => sink.log(
                LogLevel::Warn,
                "Codex asked for user input, which a non-interactive run cannot give",
            ),
            "item.plan.delta" => {}
            other => sink.log(
                LogLevel::Debug,
                format!("unknown codex event type {:?}", snippet(other, 40)),
            ),
        }
    }

    fn item_started(&self, item: &Value, sink: &Sink) {
        let message = match str_of(item, "type").unwrap_or("") {
            "command_execution" => format!(
                "running `{}`",
                snippet(str_of(item, "command").unwrap_or("?"), SNIPPET)
            ),
            "mcp_tool_call" => format!(
                "calling {}.{}",
                str_of(item, "server").unwrap_or("?"),
                str_of(item, "tool").unwrap_or("?")
            ),
            "web_search" => format!(
                "searching the web: {}",
                snippet(str_of(item, "query").unwrap_or(""), SNIPPET)
            ),
            _ => return,
        };
        self.progress(sink, message);
    }

    fn item_completed(&mut self, item: &Value, sink: &Sink) {
        let message = match str_of(item, "type").unwrap_or("") {
            "agent_message" => {
                let text = str_of(item, "text").unwrap_or("");
                if text.is_empty() {
                    return;
                }
                // Several messages in one turn read as paragraphs.
                let piece = if self.text.is_empty() {
                    text.to_string()
                } else {
                    format!("\n\n{text}")
                };
                if self.emit {
                    sink.text(piece.clone());
                }
                self.text.push_str(&piece);
                return;
            }
            "reasoning" => format!(
                "thinking: {}",
                snippet(str_of(item, "text").unwrap_or(""), SNIPPET)
            ),
            "command_execution" => {
                let command = snippet(str_of(item, "command").unwrap_or("?"), SNIPPET);
                match item.get("exit_code").and_then(Value::as_i64) {
                    Some(code) => format!("ran `{command}` (exit {code})"),
                    None => format!(
                        "ran `{command}` ({})",
                        str_of(item, "status").unwrap_or("no exit code")
                    ),
                }
            }
            "file_change" => {
                let changes: Vec<String> = item
                    .get("changes")
                    .and_then(Value::as_array)
                    .map(Vec::as_slice)
                    .unwrap_or(&[])
                    .iter()
                    .map(|c| {
                        format!(
                            "{} {}",
                            str_of(c, "kind").unwrap_or("change"),
                            str_of(c, "path").unwrap_or("?")
                        )
                    })
                    .collect();
                format!(
                    "file changes ({}): {}",
                    str_of(item, "status").unwrap_or("?"),
                    snippet(&changes.join(", "), SNIPPET)
                )
            }
            "mcp_tool_call" => format!(
                "called {}.{} ({})",
                str_of(item, "server").unwrap_or("?"),
                str_of(item, "tool").unwrap_or("?"),
                str_of(item, "status").unwrap_or("?")
            ),
            "web_search" => format!(
                "searched the web: {}",
                snippet(str_of(item, "query").unwrap_or(""), SNIPPET)
            ),
            "todo_list" => todo_list(item),
            "plan" => format!(
                "plan: {}",
                snippet(str_of(item, "text").unwrap_or(""), SNIPPET)
            ),
            "error" => {
                // Non-fatal notices ("Model metadata for ... not found").
                sink.log(
                    LogLevel::Warn,
                    format!("codex: {}", str_of(item, "message").unwrap_or("error")),
                );
                return;
            }
            _ => return,
        };
        self.progress(sink, message);
    }
}

/// `[x] done, [ ] next` for a to-do list item.
fn todo_list(item: &Value) -> String {
    let items: Vec<String> = item
        .get("items")
        .and_then(Value::as_array)
        .map(Vec::as_slice)
        .unwrap_or(&[])
        .iter()
        .map(|t| {
            let mark = if t.get("completed").and_then(Value::as_bool) == Some(true) {
                "[x]"
            } else {
                "[ ]"
            };
            format!("{mark} {}", str_of(t, "text").unwrap_or(""))
        })
        .collect();
    format!("plan: {}", snippet(&items.join(", "), SNIPPET))
}

#[cfg(test)]
mod tests {
    use super::*;
    use poe_plugin_api::host::EventSink;
    use std::sync::{Arc, Mutex};

    #[derive(Clone, Default)]
    struct Recorder(Arc<Mutex<Vec<Event>>>);

    impl EventSink for Recorder {
        fn emit(&self, event: Event) {
            self.0.lock().unwrap().push(event);
        }
        fn is_cancelled(&self) -> bool {
            false
        }
    }

    /// Lines codex-cli 0.169.0 printed against a fake Responses API.
    const REAL: &[&str] = &[
        r#"{"type":"thread.started","thread_id":"01a20791-dc58-75c1-b04d-8a1dcb93c4ed"}"#,
        r#"{"type":"item.completed","item":{"id":"item_0","type":"error","message":"Model metadata for `fake-model` not found."}}"#,
        r#"{"type":"turn.started"}"#,
        r#"{"type":"item.started","item":{"id":"item_1","type":"command_execution","command":"bash -lc ls","aggregated_output":"","exit_code":null,"status":"in_progress"}}"#,
        r#"{"type":"item.completed","item":{"id":"item_1","type":"command_execution","command":"bash -lc ls","aggregated_output":"a\n","exit_code":0,"status":"completed"}}"#,
        r#"{"type":"item.completed","item":{"id":"item_2","type":"file_change","changes":[{"path":"a.rs","kind":"update"}],"status":"completed"}}"#,
        r#"{"type":"item.completed","item":{"id":"item_3","type":"agent_message","text":"Hello from the fake."}}"#,
        r#"{"type":"item.completed","item":{"id":"item_4","type":"agent_message","text":"Second."}}"#,
        r#"{"type":"turn.completed","usage":{"input_tokens":11,"cached_input_tokens":0,"cache_write_input_tokens":0,"output_tokens":5,"reasoning_output_tokens":0}}"#,
    ];

    /// One stdout line, as the toolkit hands it over.
    fn feed(turn: &mut Turn, line: &str, sink: &Sink) {
        if let Some(event) = cli_provider::parse_event(line.as_bytes()) {
            turn.on_event(&event, sink);
        }
    }

    #[test]
    fn a_real_stream_becomes_events() {
        let recorder = Recorder::default();
        let sink = Sink::new(recorder.clone());
        let mut turn = Turn::new(true);
        for line in REAL {
            feed(&mut turn, line, &sink);
        }
        assert_eq!(
            turn.thread_id.as_deref(),
            Some("01a20791-dc58-75c1-b04d-8a1dcb93c4ed")
        );
        assert_eq!(turn.text, "Hello from the fake.\n\nSecond.");
        assert!(turn.completed);
        let usage = turn.usage.clone().unwrap();
        assert_eq!(
            (
                usage.prompt_tokens,
                usage.completion_tokens,
                usage.total_tokens
            ),
            (11, 5, 16)
        );
        let events = recorder.0.lock().unwrap().clone();
        assert!(matches!(&events[0], Event::Continuation { id } if id.starts_with("01a2")));
        let progress: Vec<String> = events
            .iter()
            .filter_map(|e| match e {
                Event::Progress { message } => Some(message.clone()),
                _ => None,
            })
            .collect();
        assert_eq!(
            progress,
            [
                "Codex is working",
                "running `bash -lc ls`",
                "ran `bash -lc ls` (exit 0)",
                "file changes (completed): update a.rs",
            ]
        );
    }

    #[test]
    fn failures_and_garbage() {
        let sink = Sink::new(Recorder::default());
        let mut turn = Turn::new(false);
        for line in [
            "not json",
            "[1,2]",
            r#"{"type":"error","message":"Reconnecting... 1/5 (stream disconnected)"}"#,
            r#"{"type":"item.completed"}"#,
            r#"{"type":"item.completed","item":{"type":"agent_message","text":7}}"#,
            r#"{"type":"turn.failed","error":{"message":"unexpected status 401 Unauthorized"}}"#,
            r#"{"type":"future.event","x":1}"#,
        ] {
            feed(&mut turn, line, &sink);
        }
        assert_eq!(turn.text, "");
        assert!(!turn.completed);
        assert_eq!(
            turn.failure.as_deref(),
            Some("unexpected status 401 Unauthorized")
        );
        assert!(turn.last_error.unwrap().starts_with("Reconnecting"));
    }
}
