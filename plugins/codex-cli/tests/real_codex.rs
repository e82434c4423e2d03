//! The plugin driving the real Codex CLI, offline: codex is pointed at a
//! local fake of the Responses API (a custom model provider with
//! `base_url` and `wire_api = "responses"` in a throwaway CODEX_HOME).
//! Proves what the fake `codex` cannot: the flags are ones the real CLI
//! accepts, `codex exec resume` continues the thread named by the
//! continuation, and cancelling kills the real process tree (npm's node
//! launcher and the native binary it starts).
//!
//! Runs when a `codex` is installed (CODEX_BIN, else `codex` on PATH), and
//! is skipped with a printed reason otherwise.

mod common;

use std::time::{Duration, Instant};

use common::*;
use poe_plugin_api::{Config, ErrorKind, Provider, Sink};
use serde_json::{Value, json};
use wiremock::matchers::{body_string_contains, method, path};
use wiremock::{Mock, MockServer, Request, Respond, ResponseTemplate};

/// The user's own texts in a Responses request (not codex's injected
/// `<environment_context>` and instructions, which start with `<` or `#`).
fn user_texts(body: &Value) -> Vec<String> {
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

/// Streams an answer naming every user text it was sent, so a resumed
/// thread shows its history.
struct FakeResponses;

impl Respond for FakeResponses {
    fn respond(&self, request: &Request) -> ResponseTemplate {
        let body: Value = serde_json::from_slice(&request.body).unwrap_or_default();
        let text = format!("heard: {}", user_texts(&body).join(" / "));
        let item = json!({"type": "message", "role": "assistant", "id": "msg_1",
                          "content": [{"type": "output_text", "text": text, "annotations": []}]});
        let events = [
            json!({"type": "response.created", "response": {"id": "resp_1"}}),
            json!({"type": "response.output_item.done", "output_index": 0, "item": item}),
            json!({"type": "response.completed", "response": {"id": "resp_1",
                   "usage": {"input_tokens": 10, "output_tokens": 2, "total_tokens": 12}}}),
        ];
        let sse: String = events
            .iter()
            .map(|e| format!("event: {}\ndata: {e}\n\n", e["type"].as_str().unwrap_or("")))
            .collect();
        ResponseTemplate::new(200).set_body_raw(sse, "text/event-stream")
    }
}

/// Live processes whose environment holds `needle` (our CODEX_HOME).
fn processes_with_env(needle: &str) -> Vec<i64> {
    let Ok(dir) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    dir.filter_map(|e| e.ok()?.file_name().to_str()?.parse::<i64>().ok())
        .filter(|pid| *pid != i64::from(std::process::id()) && alive(*pid))
        .filter(|pid| {
            std::fs::read(format!("/proc/{pid}/environ"))
                .map(|env| env.split(|b| *b == 0).any(|var| var == needle.as_bytes()))
                .unwrap_or(false)
        })
        .collect()
}

#[test]
fn real_codex_runs_resumes_and_is_killed_on_cancel() {
    let codex = match testkit::codex::find_codex() {
        Ok(codex) => codex,
        Err(reason) => {
            println!("skipped: the real Codex CLI is not installed ({reason})");
            return;
        }
    };
    let scratch = tempfile::tempdir().unwrap();
    let home = scratch.path().join("codex-home");
    std::fs::create_dir_all(&home).unwrap();
    let marker = format!("CODEX_HOME={}", home.display());
    // SAFETY: the only test in this binary, before it starts any thread.
    unsafe { std::env::set_var("CODEX_HOME", &home) };

    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let server = rt.block_on(MockServer::start());
    rt.block_on(async {
        Mock::given(method("POST"))
            .and(path("/v1/responses"))
            .and(body_string_contains("never-answered"))
            .respond_with(ResponseTemplate::new(200).set_delay(Duration::from_secs(60)))
            .mount(&server)
            .await;
        Mock::given(method("POST"))
            .and(path("/v1/responses"))
            .respond_with(FakeResponses)
            .mount(&server)
            .await;
    });
    std::fs::write(
        home.join("config.toml"),
        format!(
            "model = \"fake-model\"\nmodel_provider = \"fake\"\n\n[model_providers.fake]\n\
             name = \"Fake\"\nbase_url = \"{}/v1\"\nwire_api = \"responses\"\n",
            server.uri()
        ),
    )
    .unwrap();
    let mut config = Config::new();
    config.insert("CODEX_BIN".into(), codex.display().to_string());
    let provider = codex_cli::CodexCli::open(config).unwrap();
    let work = scratch.path().join("project");
    std::fs::create_dir_all(&work).unwrap();

    let (first, rec) = invoke(&provider, request("codex", "remember plum", &work));
    let first = first.unwrap();
    assert_eq!(first.text, "heard: remember plum");
    assert_eq!(rec.streamed_text(), first.text);
    let thread = first.continuation.clone().expect("thread id");

    let mut again = request("codex", "which fruit?", &work);
    again.continuation = Some(thread.clone());
    let second = invoke(&provider, again).0.unwrap();
    assert_eq!(
        second.text, "heard: remember plum / which fruit?",
        "the thread was resumed"
    );
    assert_eq!(second.continuation.as_deref(), Some(thread.as_str()));

    // An unknown thread is the caller's mistake, not a new conversation.
    let mut unknown = request("codex", "hello?", &work);
    unknown.continuation = Some("01a20791-0000-7000-8000-000000000000".into());
    let err = invoke(&provider, unknown).0.unwrap_err();
    assert_eq!(err.kind, ErrorKind::InvalidRequest, "{err}");

    let recorder = Recorder::default();
    let canceller = recorder.clone();
    let watched = marker.clone();
    let watcher = std::thread::spawn(move || {
        // Cancel once codex is up and waiting on the (never answered) request.
        let seen = eventually(20, || !processes_with_env(&watched).is_empty());
        std::thread::sleep(Duration::from_millis(1500));
        canceller.cancel();
        seen
    });
    let started = Instant::now();
    let err = provider
        .invoke(
            request("codex", "never-answered", &work),
            &Sink::new(recorder),
        )
        .unwrap_err();
    assert!(watcher.join().unwrap(), "codex never started");
    assert_eq!(err.kind, ErrorKind::Cancelled);
    assert!(started.elapsed() < Duration::from_secs(25));
    let left = processes_with_env(&marker);
    assert!(
        left.is_empty(),
        "codex processes left after cancel: {left:?}"
    );
    println!(
        "real codex at {} ran, resumed and was cancelled cleanly",
        codex.display()
    );
}
