//! The `chat` tool end to end: real shims, the real daemon and the real
//! poe-openai plugin against the local stand-in for Poe's API. A
//! conversation continues from another session and after the daemon is
//! killed; files and images reach the upstream in Poe's shapes; escapes
//! from the allowed roots are refused before any request; a function call
//! makes the round trip; export writes Converse's layout; every answer
//! carries usage; bad input gets its stable code.

use std::path::Path;

use fake_poe::FakePoe;
use serde_json::{Value, json};
use testkit::client::{error_code, result_text};
use testkit::{McpClient, TestEnv};

/// A 1x1 PNG.
const PNG: &[u8] = &[
    0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a, 0x00, 0x00, 0x00, 0x0d, 0x49, 0x48, 0x44, 0x52,
    0x00, 0x00, 0x00, 0x01, 0x00, 0x00, 0x00, 0x01, 0x08, 0x06, 0x00, 0x00, 0x00, 0x1f, 0x15, 0xc4,
    0x89, 0x00, 0x00, 0x00, 0x0d, 0x49, 0x44, 0x41, 0x54, 0x78, 0x9c, 0x63, 0x00, 0x01, 0x00, 0x00,
    0x05, 0x00, 0x01, 0x0d, 0x0a, 0x2d, 0xb4, 0x00, 0x00, 0x00, 0x00, 0x49, 0x45, 0x4e, 0x44, 0xae,
    0x42, 0x60, 0x82,
];

async fn fake_env(plugins: &[&str]) -> (FakePoe, TestEnv) {
    let fake = FakePoe::start().await;
    let env = TestEnv::new(plugins)
        .with_var("POE_BASE_URL", fake.base_url())
        .with_var("POE_API_KEY", fake_poe::FAKE_API_KEY);
    (fake, env)
}

async fn session(env: &TestEnv, cwd: &Path, name: &str) -> McpClient {
    let mut shim = env.shim_in(cwd).await;
    shim.initialize(name).await;
    shim
}

fn body(answer: &Value) -> &Value {
    &answer["result"]["structuredContent"]
}

fn conversation_id(answer: &Value) -> String {
    body(answer)["continuation"]["id"]
        .as_str()
        .unwrap_or_else(|| panic!("no continuation in {answer}"))
        .to_string()
}

/// Usage is in every answer, in Converse's names.
fn assert_usage(answer: &Value) {
    let usage = &body(answer)["metadata"]["usage"];
    assert!(usage["total_tokens"].as_u64().unwrap_or(0) > 0, "{answer}");
    assert!(usage["input_tokens"].as_u64().is_some(), "{answer}");
    assert!(usage["output_tokens"].as_u64().is_some(), "{answer}");
    assert!(
        body(answer)["metadata"]["response_time_ms"]
            .as_u64()
            .is_some()
    );
}

/// The roles and texts of the messages of the `n`th chat request.
fn sent_messages(requests: &[Value], n: usize) -> Vec<(String, String)> {
    requests[n]["messages"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| {
            let text = match &m["content"] {
                Value::String(s) => s.clone(),
                Value::Array(parts) => parts
                    .iter()
                    .filter_map(|p| p["text"].as_str())
                    .collect::<Vec<_>>()
                    .join(""),
                _ => String::new(),
            };
            (m["role"].as_str().unwrap_or_default().to_string(), text)
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn a_conversation_continues_from_another_session_and_after_a_daemon_kill() {
    let (fake, env) = fake_env(&["poe-openai"]).await;
    let dir = tempfile::tempdir().unwrap();
    let mut claude = session(&env, dir.path(), "claude-code").await;
    let first = claude
        .call_tool("chat", json!({"prompt": "first", "model": "GPT-5"}))
        .await;
    assert_eq!(body(&first)["content"], "Echo from GPT-5: first", "{first}");
    assert_usage(&first);
    let id = conversation_id(&first);
    assert_eq!(body(&first)["continuation"]["messageCount"], 2);
    assert_eq!(body(&first)["continuation"]["provider"], "poe-openai");
    assert!(
        result_text(&first).contains(&id),
        "the id is in the text too"
    );

    // Another agent continues it; the model sticks.
    let mut codex = session(&env, dir.path(), "codex").await;
    let second = codex
        .call_tool("chat", json!({"prompt": "second", "continuation_id": id}))
        .await;
    assert_eq!(
        body(&second)["content"],
        "Echo from GPT-5: second",
        "{second}"
    );
    assert_eq!(body(&second)["continuation"]["messageCount"], 4);
    assert_usage(&second);
    let requests = fake.chat_requests().await;
    assert_eq!(
        sent_messages(&requests, 1),
        [
            ("user".to_string(), "first".to_string()),
            (
                "assistant".to_string(),
                "Echo from GPT-5: first".to_string()
            ),
            ("user".to_string(), "second".to_string()),
        ]
    );

    // The daemon dies; the conversation is in the store.
    let pid = env.kill_daemon();
    let third = codex
        .call_tool(
            "chat",
            json!({"prompt": "third", "continuation_id": id, "model": "Gemini-2.5-Pro"}),
        )
        .await;
    let status = env.status().expect("a new daemon serves");
    assert_ne!(status["pid"].as_u64(), Some(pid), "{third}");
    assert_eq!(
        body(&third)["content"],
        "Echo from Gemini-2.5-Pro: third",
        "{third}"
    );
    assert_eq!(
        body(&third)["continuation"]["model"],
        "Gemini-2.5-Pro",
        "switching is recorded"
    );
    let requests = fake.chat_requests().await;
    let last = sent_messages(&requests, requests.len() - 1);
    assert_eq!(last.len(), 5, "{last:?}");
    assert_eq!(last[3].1, "Echo from GPT-5: second");

    // check_status on the conversation shows its history.
    let status = claude
        .call_tool(
            "check_status",
            json!({"continuation_id": id, "full_history": true}),
        )
        .await;
    let status = body(&status);
    assert_eq!(status["status"], "completed", "{status}");
    assert_eq!(status["conversation"]["messageCount"], 6);
    let models: Vec<&str> = status["messages"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|m| m["role"] == "assistant")
        .map(|m| m["model"].as_str().unwrap())
        .collect();
    assert_eq!(models, ["GPT-5", "GPT-5", "Gemini-2.5-Pro"]);
}

#[tokio::test(flavor = "multi_thread")]
async fn files_and_images_reach_the_upstream_in_poes_shapes() {
    let (fake, env) = fake_env(&["poe-openai"]).await;
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("notes.txt"), "alpha\nbeta\n").unwrap();
    std::fs::write(
        dir.path().join("report.pdf"),
        b"%PDF-1.4\n1 0 obj <<>> endobj\ntrailer <<>>\n%%EOF\n",
    )
    .unwrap();
    // Named .txt, but a PNG: the type comes from the content.
    std::fs::write(dir.path().join("screenshot.txt"), PNG).unwrap();
    let mut shim = session(&env, dir.path(), "files").await;
    let answer = shim
        .call_tool(
            "chat",
            json!({
                "prompt": "what is in these?",
                "model": "Claude-Sonnet-4.5",
                "files": ["notes.txt", dir.path().join("report.pdf")],
                "images": ["screenshot.txt"],
            }),
        )
        .await;
    assert!(body(&answer)["content"].is_string(), "{answer}");
    assert_usage(&answer);
    let requests = fake.chat_requests().await;
    let parts = requests[0]["messages"][0]["content"]
        .as_array()
        .unwrap()
        .clone();
    let text = parts[0]["text"].as_str().unwrap();
    assert!(text.starts_with("what is in these?"), "{text}");
    assert!(text.contains("notes.txt"), "{text}");
    assert!(
        text.contains("1 | alpha") && text.contains("2 | beta"),
        "{text}"
    );
    let file = parts
        .iter()
        .find(|p| p["type"] == "file")
        .expect("a file part");
    assert_eq!(file["file"]["filename"], "report.pdf");
    assert!(
        file["file"]["file_data"]
            .as_str()
            .unwrap()
            .starts_with("data:application/pdf;base64,")
    );
    let image = parts
        .iter()
        .find(|p| p["type"] == "image_url")
        .expect("an image part");
    assert!(
        image["image_url"]["url"]
            .as_str()
            .unwrap()
            .starts_with("data:image/png;base64,"),
        "{image}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn paths_that_leave_the_roots_are_refused_before_any_request() {
    let (fake, env) = fake_env(&["poe-openai"]).await;
    let outside = tempfile::tempdir().unwrap();
    std::fs::write(outside.path().join("secret.txt"), "secret").unwrap();
    let dir = tempfile::tempdir().unwrap();
    let cwd = dir.path().join("project");
    std::fs::create_dir(&cwd).unwrap();
    std::fs::write(dir.path().join("sibling.txt"), "not yours").unwrap();
    std::os::unix::fs::symlink(outside.path().join("secret.txt"), cwd.join("link.txt")).unwrap();
    let mut shim = session(&env, &cwd, "escapes").await;
    let secret = outside.path().join("secret.txt");
    for (files, images) in [
        (json!(["../sibling.txt"]), json!([])),
        (json!(["link.txt"]), json!([])),
        (json!([secret]), json!([])),
        (json!([]), json!([secret])),
    ] {
        let answer = shim
            .call_tool(
                "chat",
                json!({"prompt": "read", "model": "GPT-5", "files": files, "images": images}),
            )
            .await;
        assert_eq!(
            error_code(&answer).as_deref(),
            Some("PATH_NOT_ALLOWED"),
            "{answer}"
        );
    }
    assert!(
        fake.chat_requests().await.is_empty(),
        "nothing reached the upstream"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_tool_call_makes_the_round_trip() {
    let (fake, env) = fake_env(&["poe-openai"]).await;
    let dir = tempfile::tempdir().unwrap();
    let mut shim = session(&env, dir.path(), "tools").await;
    let tools = json!([{
        "type": "function",
        "function": {
            "name": "get_weather",
            "description": "Weather in a city",
            "parameters": {"type": "object", "properties": {"echo": {"type": "string"}}}
        }
    }]);
    let asked = shim
        .call_tool(
            "chat",
            json!({"prompt": "weather in Paris?", "model": "fake-tools", "tools": tools, "tool_choice": "auto"}),
        )
        .await;
    let calls = body(&asked)["tool_calls"]
        .as_array()
        .expect("tool calls")
        .clone();
    assert_eq!(calls.len(), 1, "{asked}");
    assert_eq!(calls[0]["function"]["name"], "get_weather");
    let arguments: Value =
        serde_json::from_str(calls[0]["function"]["arguments"].as_str().unwrap()).unwrap();
    assert_eq!(
        arguments["echo"], "weather in Paris?",
        "streamed deltas assembled"
    );
    assert!(
        result_text(&asked).contains("get_weather"),
        "calls are in the text too"
    );
    let id = conversation_id(&asked);
    let call_id = calls[0]["id"].as_str().unwrap().to_string();

    // Answering a call that was never made is refused.
    let wrong = shim
        .call_tool(
            "chat",
            json!({"continuation_id": id, "tool_results": [{"tool_call_id": "call_nope", "content": "x"}]}),
        )
        .await;
    assert_eq!(
        error_code(&wrong).as_deref(),
        Some("UNKNOWN_TOOL_CALL"),
        "{wrong}"
    );

    let answered = shim
        .call_tool(
            "chat",
            json!({"continuation_id": id, "tool_results": [{"tool_call_id": call_id, "content": "sunny, 21 C"}]}),
        )
        .await;
    assert_eq!(
        body(&answered)["content"],
        format!("Tool {call_id} returned: sunny, 21 C"),
        "{answered}"
    );
    assert_usage(&answered);
    let requests = fake.chat_requests().await;
    let second = &requests[requests.len() - 1];
    let messages = second["messages"].as_array().unwrap();
    assert_eq!(messages[1]["role"], "assistant");
    assert_eq!(messages[1]["tool_calls"][0]["id"], call_id.as_str());
    assert_eq!(
        messages[1]["tool_calls"][0]["function"]["name"],
        "get_weather"
    );
    assert_eq!(messages[2]["role"], "tool");
    assert_eq!(messages[2]["tool_call_id"], call_id.as_str());
    assert_eq!(
        second["tools"][0]["function"]["name"], "get_weather",
        "tools are kept"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn export_writes_converses_layout() {
    let (_fake, env) = fake_env(&["poe-openai"]).await;
    let dir = tempfile::tempdir().unwrap();
    let mut shim = session(&env, dir.path(), "export").await;
    let first = shim
        .call_tool(
            "chat",
            json!({"prompt": "one", "model": "GPT-5", "export": true}),
        )
        .await;
    let id = conversation_id(&first);
    let second = shim
        .call_tool(
            "chat",
            json!({"prompt": "two", "continuation_id": id, "export": true}),
        )
        .await;
    let folder = body(&second)["metadata"]["export_path"]
        .as_str()
        .unwrap()
        .to_string();
    assert_eq!(Path::new(&folder), env.home().join("exports").join(&id));
    let mut names: Vec<String> = std::fs::read_dir(&folder)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    assert_eq!(
        names,
        [
            "1_request.txt",
            "1_response.txt",
            "2_request.txt",
            "2_response.txt",
            "metadata.json"
        ]
    );
    assert_eq!(
        std::fs::read_to_string(Path::new(&folder).join("2_request.txt")).unwrap(),
        "two\n"
    );
    let metadata: Value = serde_json::from_str(
        &std::fs::read_to_string(Path::new(&folder).join("metadata.json")).unwrap(),
    )
    .unwrap();
    assert_eq!(metadata["continuation_id"], id.as_str());
    assert_eq!(metadata["messageCount"], 4);
}

#[tokio::test(flavor = "multi_thread")]
async fn async_chat_is_followed_by_its_conversation_id() {
    let (_fake, env) = fake_env(&["poe-openai"]).await;
    let dir = tempfile::tempdir().unwrap();
    let mut shim = session(&env, dir.path(), "async").await;
    let started = shim
        .call_tool(
            "chat",
            json!({"prompt": "later", "model": "GPT-5", "async": true}),
        )
        .await;
    let id = body(&started)["continuation_id"]
        .as_str()
        .unwrap()
        .to_string();
    assert!(id.starts_with("conv_"), "{started}");
    let done = loop {
        let status = shim
            .call_tool("check_status", json!({"continuation_id": id}))
            .await;
        if body(&status)["status"] != "processing" {
            break status;
        }
        tokio::task::yield_now().await;
    };
    assert_eq!(body(&done)["status"], "completed", "{done}");
    assert!(
        body(&done)["result"]
            .as_str()
            .unwrap()
            .contains("Echo from GPT-5: later")
    );
    assert_eq!(body(&done)["continuation"]["id"], id.as_str());
    assert!(
        body(&done)["metadata"]["usage"]["total_tokens"]
            .as_u64()
            .unwrap()
            > 0
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn bad_input_gets_a_stable_code_and_sends_nothing() {
    let (fake, env) = fake_env(&["poe-openai", "codex-cli"]).await;
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("doc.pdf"), b"%PDF-1.4\n%%EOF\n").unwrap();
    std::fs::write(dir.path().join("blob.bin"), [0u8, 159, 146, 150, 0, 1]).unwrap();
    std::fs::write(dir.path().join("big.txt"), "x".repeat(2 * 1024 * 1024)).unwrap();
    std::fs::write(dir.path().join("text.txt"), "just text").unwrap();
    let mut shim = session(&env, dir.path(), "bad").await;
    let unknown = format!("conv_{}", "0".repeat(32));
    let cases = [
        (
            json!({"prompt": "x", "continuation_id": unknown}),
            "CONVERSATION_NOT_FOUND",
        ),
        (
            json!({"prompt": "x", "continuation_id": "job_123"}),
            "CONVERSATION_NOT_FOUND",
        ),
        (json!({"prompt": "x", "temperature": 3}), "INVALID_ARGUMENT"),
        (json!({"prompt": "x", "stop": ["   "]}), "INVALID_ARGUMENT"),
        (
            json!({"prompt": "x", "reasoning_effort": "maximal"}),
            "INVALID_ARGUMENT",
        ),
        (json!({"prompt": "x", "colour": "red"}), "INVALID_ARGUMENT"),
        (json!({"prompt": ""}), "INVALID_ARGUMENT"),
        (
            json!({"prompt": "x", "tools": [{"type": "function", "function": {}}]}),
            "INVALID_TOOLS",
        ),
        (
            json!({"prompt": "x", "tool_choice": "auto"}),
            "INVALID_TOOLS",
        ),
        (
            json!({"tool_results": [{"tool_call_id": "c1", "content": "x"}]}),
            "UNKNOWN_TOOL_CALL",
        ),
        (
            json!({"prompt": "x", "files": ["missing.txt"]}),
            "FILE_NOT_FOUND",
        ),
        (
            json!({"prompt": "x", "files": ["blob.bin"]}),
            "UNSUPPORTED_FILE",
        ),
        (
            json!({"prompt": "x", "files": ["big.txt"]}),
            "FILE_TOO_LARGE",
        ),
        (json!({"prompt": "x", "files": ["."]}), "UNSUPPORTED_FILE"),
        (
            json!({"prompt": "x", "images": ["text.txt"]}),
            "INVALID_IMAGE",
        ),
        (
            json!({"prompt": "x", "images": ["data:image/png;base64,@@@"]}),
            "INVALID_IMAGE",
        ),
        (
            json!({"prompt": "x", "model": "codex", "files": ["doc.pdf"]}),
            "UNSUPPORTED_ATTACHMENT",
        ),
    ];
    for (arguments, code) in cases {
        let mut arguments = arguments;
        if arguments.get("model").is_none() {
            arguments["model"] = json!("GPT-5");
        }
        let answer = shim.call_tool("chat", arguments.clone()).await;
        assert_eq!(
            error_code(&answer).as_deref(),
            Some(code),
            "{arguments} -> {answer}"
        );
        let message = result_text(&answer);
        assert!(
            message.len() > code.len() + 10,
            "a useful message: {message}"
        );
    }
    assert!(
        fake.chat_requests().await.is_empty(),
        "nothing reached the upstream"
    );
}
