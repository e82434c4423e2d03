//! Shared test harness: a recording sink, a provider opened the way the host
//! opens it, a wiremock server on 127.0.0.1 and helpers that write the exact
//! server-sent events a fastapi_poe bot server sends.
//!
//! `invoke` blocks on the provider's own runtime, so tests are plain
//! `#[test]`s that use a small runtime only to start and inspect the server.

#![allow(dead_code)] // each test binary uses a different subset

use poe_legacy::PoeLegacy;
use poe_plugin_api::{Config, Driver, Message, PluginError, Request, Response, Sink};
use serde_json::{Value, json};
use wiremock::ResponseTemplate;

/// The key the tests configure.
pub const KEY: &str = "legacy-test-key-0123456789";

/// Records events; `cancel()` flips the flag the plugin polls.
pub use poe_plugin_api::host::RecordingSink as Recorder;

/// A wiremock server and the runtime that drives it.
pub fn server() -> (tokio::runtime::Runtime, wiremock::MockServer) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let server = rt.block_on(wiremock::MockServer::start());
    (rt, server)
}

/// The provider, pointed at `server`'s `/bot/` and `/poe_api/`.
pub fn provider(server: &wiremock::MockServer) -> Driver<PoeLegacy> {
    let mut config = Config::new();
    config.insert(
        "POE_LEGACY_BASE_URL".into(),
        format!("{}/bot/", server.uri()),
    );
    config.insert(
        "POE_LEGACY_UPLOAD_URL".into(),
        format!("{}/poe_api/", server.uri()),
    );
    config.insert("POE_API_KEY".into(), KEY.into());
    Driver::open(config).expect("provider opens")
}

/// A streaming one-message request to `bot`.
pub fn request(bot: &str, prompt: &str) -> Request {
    Request {
        model: bot.into(),
        messages: vec![Message::user(prompt)],
        stream: true,
        ..Request::default()
    }
}

/// Invokes with a fresh recorder.
pub fn invoke(
    provider: &Driver<PoeLegacy>,
    request: Request,
) -> (Result<Response, PluginError>, Recorder) {
    let recorder = Recorder::default();
    let sink = Sink::new(recorder.clone());
    let result = provider.invoke(request, &sink);
    (result, recorder)
}

/// One server-sent event as sse_starlette writes it.
pub fn sse(event: &str, data: &Value) -> String {
    format!("event: {event}\r\ndata: {data}\r\n\r\n")
}

/// The events of a bot server's answer (fastapi_poe's `PoeBot.*_event`).
pub fn text(t: &str) -> String {
    sse("text", &json!({"text": t}))
}
pub fn replace(t: &str) -> String {
    sse("replace_response", &json!({"text": t}))
}
pub fn done() -> String {
    "event: done\r\ndata: {}\r\n\r\n".to_string()
}
pub fn meta() -> String {
    sse(
        "meta",
        &json!({"content_type": "text/markdown", "refetch_settings": false, "linkify": true, "suggested_replies": false}),
    )
}
pub fn error(allow_retry: bool, text: &str, error_type: Option<&str>) -> String {
    let mut data = json!({"allow_retry": allow_retry, "text": text});
    if let Some(t) = error_type {
        data["error_type"] = json!(t);
    }
    sse("error", &data)
}

/// A 200 event-stream answer with `events`.
pub fn stream(events: &[String]) -> ResponseTemplate {
    // set_body_raw: set_body_string would override the content type.
    ResponseTemplate::new(200).set_body_raw(events.concat(), "text/event-stream; charset=utf-8")
}

/// The JSON bodies the server received on `path`.
pub fn bodies(
    rt: &tokio::runtime::Runtime,
    server: &wiremock::MockServer,
    path: &str,
) -> Vec<wiremock::Request> {
    rt.block_on(server.received_requests())
        .unwrap_or_default()
        .into_iter()
        .filter(|r| r.url.path() == path)
        .collect()
}

/// Cancels through `canceller` once `reached()` says the request got to the
/// upstream, or after 20 s (so a request that never arrives fails the test
/// instead of hanging it). Run it on a scoped thread beside the call.
pub fn cancel_when(canceller: Recorder, reached: impl Fn() -> bool) {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    while !reached() && std::time::Instant::now() < deadline {
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
    canceller.cancel();
}
