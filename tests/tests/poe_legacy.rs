//! The real poe-legacy plugin through real shims and the daemon, against a
//! local fake bot server (wiremock on 127.0.0.1) replaying the event
//! streams a fastapi_poe bot server sends: `legacy:<Bot>` routing with the
//! prefix removed, streamed text, `replace_response`, files, and `error`
//! events whose `allow_retry` decides whether the host retries. Also the
//! routing rule itself: `list_models` and MODEL_NOT_FOUND with near matches.

use serde_json::{Value, json};
use testkit::client::{error_code, is_tool_error, result_text};
use testkit::{McpClient, TestEnv};
use wiremock::matchers::{method, path};
use wiremock::{Mock, MockServer, ResponseTemplate};

const KEY: &str = "legacy-e2e-key-0123456789";

fn sse(event: &str, data: Value) -> String {
    format!("event: {event}\r\ndata: {data}\r\n\r\n")
}

fn text(t: &str) -> String {
    sse("text", json!({"text": t}))
}

fn done() -> String {
    "event: done\r\ndata: {}\r\n\r\n".to_string()
}

/// A 200 event-stream answer.
fn stream(events: &[String]) -> ResponseTemplate {
    ResponseTemplate::new(200).set_body_raw(events.concat(), "text/event-stream")
}

async fn mount(server: &MockServer, bot: &str, answer: ResponseTemplate, times: Option<u64>) {
    let mock = Mock::given(method("POST"))
        .and(path(format!("/bot/{bot}")))
        .respond_with(answer);
    let mock = match times {
        Some(n) => mock.up_to_n_times(n),
        None => mock,
    };
    mock.mount(server).await;
}

async fn requests_to(server: &MockServer, bot: &str) -> Vec<wiremock::Request> {
    server
        .received_requests()
        .await
        .unwrap_or_default()
        .into_iter()
        .filter(|r| r.url.path() == format!("/bot/{bot}"))
        .collect()
}

async fn setup(plugins: &[&str]) -> (MockServer, TestEnv, McpClient) {
    let server = MockServer::start().await;
    let env = TestEnv::new(plugins)
        .with_var("POE_API_KEY", KEY)
        .with_var("POE_LEGACY_BASE_URL", format!("{}/bot/", server.uri()))
        .with_var(
            "POE_LEGACY_UPLOAD_URL",
            format!("{}/poe_api/", server.uri()),
        )
        .with_var("POE_LEGACY_BOTS", "House-Bot");
    let mut shim = env.shim().await;
    shim.initialize("poe-legacy-e2e").await;
    (server, env, shim)
}

fn ask(bot: &str, message: &str) -> Value {
    json!({
        "name": "get_bot_response",
        "arguments": {"bot_name": bot, "message": message},
        "_meta": {"progressToken": bot}
    })
}

#[tokio::test(flavor = "multi_thread")]
async fn legacy_prefix_routes_to_the_bot_and_text_streams() {
    let (server, _env, mut shim) = setup(&["poe-legacy"]).await;
    let meta = sse(
        "meta",
        json!({"content_type": "text/markdown", "refetch_settings": false, "linkify": true, "suggested_replies": false}),
    );
    mount(
        &server,
        "Claude-3-Opus",
        stream(&[meta, text("Hello "), text("from "), text("the bot"), done()]),
        None,
    )
    .await;
    let answer = shim
        .request("tools/call", ask("legacy:Claude-3-Opus", "hi"))
        .await;
    assert_eq!(result_text(&answer), "Hello from the bot", "{answer}");
    let streamed: String = shim.take_progress_messages().concat();
    // Coalesced, and stopped once the result (the whole text) is in.
    assert!("Hello from the bot".starts_with(&streamed), "{streamed:?}");

    // The bot got its own name (prefix removed), the key and the query.
    let sent = requests_to(&server, "Claude-3-Opus").await;
    assert_eq!(sent.len(), 1);
    assert_eq!(
        sent[0].headers["authorization"],
        format!("Bearer {KEY}").as_str()
    );
    let body: Value = serde_json::from_slice(&sent[0].body).unwrap();
    assert_eq!(body["type"], "query");
    assert_eq!(body["version"], "1.2");
    assert_eq!(body["query"][0]["role"], "user");
    assert_eq!(body["query"][0]["content"], "hi");

    // A bot listed in POE_LEGACY_BOTS needs no prefix.
    mount(
        &server,
        "House-Bot",
        stream(&[text("house answer"), done()]),
        None,
    )
    .await;
    let answer = shim.ask("House-Bot", "x").await;
    assert_eq!(result_text(&answer), "house answer", "{answer}");
}

#[tokio::test(flavor = "multi_thread")]
async fn replace_response_and_files_reach_the_agent() {
    let (server, _env, mut shim) = setup(&["poe-legacy"]).await;
    let file = sse(
        "file",
        json!({"url": "https://pfst.cf2.poecdn.net/base/image/cube.png", "content_type": "image/png",
               "name": "cube.png", "inline_ref": null}),
    );
    mount(
        &server,
        "Image-Bot",
        stream(&[
            text("Rendering..."),
            sse("replace_response", json!({"text": "Here is your cube"})),
            file,
            done(),
        ]),
        None,
    )
    .await;
    let answer = shim.ask("legacy:Image-Bot", "a cube").await;
    assert_eq!(
        result_text(&answer),
        "Here is your cube\n\n[cube.png](https://pfst.cf2.poecdn.net/base/image/cube.png)",
        "{answer}"
    );
    let image = shim
        .call_tool(
            "generate_image",
            json!({"prompt": "a cube", "bot_name": "legacy:Image-Bot"}),
        )
        .await;
    let links: Vec<&Value> = image["result"]["content"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|b| b["type"] == "resource_link")
        .collect();
    assert_eq!(links.len(), 1, "{image}");
    assert_eq!(
        links[0]["uri"],
        "https://pfst.cf2.poecdn.net/base/image/cube.png"
    );
    assert_eq!(links[0]["mimeType"], "image/png");
}

#[tokio::test(flavor = "multi_thread")]
async fn allow_retry_decides_whether_the_host_retries() {
    let (server, _env, mut shim) = setup(&["poe-legacy"]).await;
    let no_retry = sse(
        "error",
        json!({"allow_retry": false, "text": "The bot encountered an unexpected issue."}),
    );
    mount(&server, "Final-Bot", stream(&[no_retry, done()]), None).await;
    // Fails once with allow_retry true, then answers.
    let retry = sse(
        "error",
        json!({"allow_retry": true, "text": "busy, try again"}),
    );
    mount(&server, "Flaky-Bot", stream(&[retry, done()]), Some(1)).await;
    mount(
        &server,
        "Flaky-Bot",
        stream(&[text("recovered"), done()]),
        None,
    )
    .await;
    let too_long = sse(
        "error",
        json!({"allow_retry": false, "text": "Message too long", "error_type": "user_message_too_long"}),
    );
    mount(&server, "Strict-Bot", stream(&[too_long, done()]), None).await;

    let failed = shim.ask("legacy:Final-Bot", "x").await;
    assert!(is_tool_error(&failed));
    assert_eq!(
        error_code(&failed).as_deref(),
        Some("PROVIDER_UNAVAILABLE"),
        "{failed}"
    );
    assert!(
        result_text(&failed).contains("unexpected issue"),
        "{failed}"
    );
    assert_eq!(
        requests_to(&server, "Final-Bot").await.len(),
        1,
        "allow_retry false is never retried"
    );

    let recovered = shim.ask("legacy:Flaky-Bot", "x").await;
    assert_eq!(result_text(&recovered), "recovered", "{recovered}");
    assert_eq!(
        requests_to(&server, "Flaky-Bot").await.len(),
        2,
        "allow_retry true was retried"
    );

    let strict = shim.ask("legacy:Strict-Bot", "x").await;
    assert_eq!(
        error_code(&strict).as_deref(),
        Some("CONTEXT_LENGTH_EXCEEDED"),
        "{strict}"
    );
    assert_eq!(requests_to(&server, "Strict-Bot").await.len(), 1);

    // An unknown bot is the upstream's 404.
    mount(
        &server,
        "Nobody",
        ResponseTemplate::new(404).set_body_json(json!({"detail": "Bot does not exist"})),
        None,
    )
    .await;
    let missing = shim.ask("legacy:Nobody", "x").await;
    assert_eq!(
        error_code(&missing).as_deref(),
        Some("MODEL_NOT_FOUND"),
        "{missing}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn list_models_shows_the_rule_and_unknown_names_get_near_matches() {
    let (_server, env, mut shim) = setup(&["poe-legacy", "codex-cli"]).await;
    let listed = shim.call_tool("list_models", json!({})).await;
    assert!(!is_tool_error(&listed), "{listed}");
    let body = &listed["result"]["structuredContent"];
    let plugins = body["plugins"].as_array().unwrap();
    let ids: Vec<&str> = plugins.iter().map(|p| p["id"].as_str().unwrap()).collect();
    assert_eq!(ids, ["codex-cli", "poe-legacy"]);
    assert_eq!(plugins[0]["patterns"], json!(["codex", "codex:*"]));
    assert_eq!(plugins[0]["capabilities"], json!(["text"]));
    assert_eq!(plugins[1]["patterns"], json!(["legacy:*", "House-Bot"]));
    assert!(plugins[1]["version"].is_string());
    assert!(
        body["routing"]
            .as_str()
            .unwrap()
            .contains("most specifically")
    );
    let text = result_text(&listed);
    assert!(
        text.contains("legacy:<name> → poe-legacy, sent as <name>"),
        "{text}"
    );
    assert!(text.contains("codex → codex-cli"), "{text}");

    let bad = shim
        .call_tool("list_models", json!({"verbose": true}))
        .await;
    assert_eq!(
        error_code(&bad).as_deref(),
        Some("INVALID_ARGUMENT"),
        "{bad}"
    );

    // Without poe-openai's `*`, an unknown name is MODEL_NOT_FOUND with the
    // closest patterns.
    let typo = shim.ask("codx", "x").await;
    assert_eq!(
        error_code(&typo).as_deref(),
        Some("MODEL_NOT_FOUND"),
        "{typo}"
    );
    let message = result_text(&typo);
    assert!(message.contains("closest: codex (codex-cli)"), "{message}");
    let empty = shim.ask("legacy:", "x").await;
    assert_eq!(
        error_code(&empty).as_deref(),
        Some("MODEL_NOT_FOUND"),
        "{empty}"
    );
    assert!(result_text(&empty).contains("legacy:<name>"), "{empty}");
    assert!(!env.daemon_log().contains(KEY), "key in the log");
}

/// A 1x1 PNG.
const PNG: &[u8] = &[
    0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a, 0x00, 0x00, 0x00, 0x0d, 0x49, 0x48, 0x44, 0x52,
    0x00, 0x00, 0x00, 0x01, 0x00, 0x00, 0x00, 0x01, 0x08, 0x06, 0x00, 0x00, 0x00, 0x1f, 0x15, 0xc4,
    0x89, 0x00, 0x00, 0x00, 0x0d, 0x49, 0x44, 0x41, 0x54, 0x78, 0x9c, 0x63, 0x00, 0x01, 0x00, 0x00,
    0x05, 0x00, 0x01, 0x0d, 0x0a, 0x2d, 0xb4, 0x00, 0x00, 0x00, 0x00, 0x49, 0x45, 0x4e, 0x44, 0xae,
    0x42, 0x60, 0x82,
];

#[tokio::test(flavor = "multi_thread")]
async fn chat_uploads_images_and_replays_the_conversation_to_a_legacy_bot() {
    let server = MockServer::start().await;
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("pixel.png"), PNG).unwrap();
    let env = TestEnv::new(&["poe-legacy"])
        .with_var("POE_API_KEY", KEY)
        .with_var("POE_LEGACY_BASE_URL", format!("{}/bot/", server.uri()))
        .with_var(
            "POE_LEGACY_UPLOAD_URL",
            format!("{}/poe_api/", server.uri()),
        );
    let mut shim = env.shim_in(dir.path()).await;
    shim.initialize("legacy-chat").await;
    Mock::given(method("POST"))
        .and(path("/poe_api/file_upload_3RD_PARTY_POST"))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({
            "attachment_url": "https://pfst.cf2.poecdn.net/base/image/pixel.png",
            "mime_type": "image/png"
        })))
        .mount(&server)
        .await;
    mount(
        &server,
        "Vision-Bot",
        stream(&[text("a single pixel"), done()]),
        None,
    )
    .await;

    let first = shim
        .call_tool(
            "chat",
            json!({"prompt": "what is this?", "model": "legacy:Vision-Bot",
                   "images": ["pixel.png"], "temperature": 0.3, "stop": ["END"],
                   "reasoning_effort": "high"}),
        )
        .await;
    assert_eq!(
        first["result"]["structuredContent"]["content"], "a single pixel",
        "{first}"
    );
    let meta = &first["result"]["structuredContent"]["metadata"];
    assert_eq!(meta["provider"], "poe-legacy");
    // The legacy protocol has no reasoning effort: not sent, and said so.
    assert_eq!(
        meta["ignored_parameters"],
        json!(["reasoning_effort"]),
        "{first}"
    );
    let id = first["result"]["structuredContent"]["continuation"]["id"]
        .as_str()
        .unwrap()
        .to_string();

    // The image was uploaded (multipart, the bare key) and went as an attachment.
    let uploads: Vec<_> = server
        .received_requests()
        .await
        .unwrap()
        .into_iter()
        .filter(|r| r.url.path().ends_with("file_upload_3RD_PARTY_POST"))
        .collect();
    assert_eq!(uploads.len(), 1);
    assert_eq!(uploads[0].headers["authorization"], KEY);
    assert!(
        String::from_utf8_lossy(&uploads[0].body).contains("name=\"file\""),
        "multipart with a file part"
    );
    let sent = requests_to(&server, "Vision-Bot").await;
    let body: Value = serde_json::from_slice(&sent[0].body).unwrap();
    assert_eq!(body["temperature"], 0.3);
    assert_eq!(body["stop_sequences"], json!(["END"]));
    let attachment = &body["query"][0]["attachments"][0];
    assert_eq!(
        attachment["url"],
        "https://pfst.cf2.poecdn.net/base/image/pixel.png"
    );
    assert_eq!(attachment["content_type"], "image/png");

    // The next turn replays the history: user, bot, user.
    let second = shim
        .call_tool("chat", json!({"prompt": "and now?", "continuation_id": id}))
        .await;
    assert_eq!(
        second["result"]["structuredContent"]["continuation"]["messageCount"], 4,
        "{second}"
    );
    let sent = requests_to(&server, "Vision-Bot").await;
    let body: Value = serde_json::from_slice(&sent[1].body).unwrap();
    let roles: Vec<&str> = body["query"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["role"].as_str().unwrap())
        .collect();
    assert_eq!(roles, ["user", "bot", "user"], "{body}");
    assert_eq!(body["query"][1]["content"], "a single pixel");
    assert_eq!(body["query"][2]["content"], "and now?");
}
