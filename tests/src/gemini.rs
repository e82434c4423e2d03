//! A local fake of the Gemini API (`generativelanguage`'s `v1beta`) for
//! running the real Gemini CLI offline (`GOOGLE_GEMINI_BASE_URL`, which the
//! CLI accepts for 127.0.0.1 without TLS). Its model echoes: `Gemini heard:
//! <the user's messages, joined by " / ">` (the CLI's `<session_context>`
//! part is not the user's). `streamGenerateContent` streams the answer in two
//! SSE chunks as the real API does; `generateContent` (the CLI's model
//! router) and `countTokens` answer whole. A message containing `SLOW` is
//! held for two minutes (to cancel), and the key [`EXPIRED_KEY`] is refused
//! the way the API refuses an expired key.

use serde_json::{Value, json};
use wiremock::matchers::{method, path_regex};
use wiremock::{Mock, MockServer, Request, Respond, ResponseTemplate};

/// The API key the fake refuses (400 `API_KEY_INVALID`).
pub const EXPIRED_KEY: &str = "gemini-expired-0000";

/// A running fake Gemini API; every request is recorded.
pub struct FakeGemini {
    server: MockServer,
}

impl FakeGemini {
    /// Starts the fake.
    pub async fn start() -> FakeGemini {
        let server = MockServer::start().await;
        Mock::given(method("POST"))
            .and(path_regex(r"^/v1beta/models/[^/]+:countTokens$"))
            .respond_with(ResponseTemplate::new(200).set_body_json(json!({"totalTokens": 42})))
            .mount(&server)
            .await;
        Mock::given(method("POST"))
            .and(path_regex(
                r"^/v1beta/models/[^/]+:(stream)?[gG]enerateContent$",
            ))
            .respond_with(Echo)
            .mount(&server)
            .await;
        FakeGemini { server }
    }

    /// The value for `GOOGLE_GEMINI_BASE_URL`.
    pub fn base_url(&self) -> String {
        self.server.uri()
    }

    /// Per `streamGenerateContent` request so far: the model in its path
    /// and the user's texts.
    pub async fn turns(&self) -> Vec<(String, Vec<String>)> {
        self.server
            .received_requests()
            .await
            .unwrap_or_default()
            .iter()
            .filter(|r| r.url.path().ends_with(":streamGenerateContent"))
            .map(|r| {
                let model = r
                    .url
                    .path()
                    .trim_start_matches("/v1beta/models/")
                    .trim_end_matches(":streamGenerateContent")
                    .to_string();
                (
                    model,
                    user_texts(&serde_json::from_slice(&r.body).unwrap_or_default()),
                )
            })
            .collect()
    }
}

/// The user's own texts in a request.
fn user_texts(body: &Value) -> Vec<String> {
    body["contents"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|c| c["role"] == "user")
        .filter_map(|c| c["parts"].as_array())
        .flatten()
        .filter_map(|p| p["text"].as_str())
        .map(|t| t.trim().to_string())
        .filter(|t| !t.is_empty() && !t.starts_with("<session_context>"))
        .collect()
}

fn chunk(text: &str, last: bool) -> Value {
    let mut candidate =
        json!({"content": {"parts": [{"text": text}], "role": "model"}, "index": 0});
    let mut chunk = json!({"modelVersion": "gemini-fake"});
    if last {
        candidate["finishReason"] = json!("STOP");
        chunk["usageMetadata"] =
            json!({"promptTokenCount": 40, "candidatesTokenCount": 7, "totalTokenCount": 47});
    }
    chunk["candidates"] = json!([candidate]);
    chunk
}

struct Echo;

impl Respond for Echo {
    fn respond(&self, request: &Request) -> ResponseTemplate {
        let key = request
            .headers
            .get("x-goog-api-key")
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default();
        if key == EXPIRED_KEY {
            return ResponseTemplate::new(400).set_body_json(json!({"error": {
                "code": 400, "message": "API key expired. Please renew the API key.",
                "status": "INVALID_ARGUMENT",
                "details": [{"@type": "type.googleapis.com/google.rpc.ErrorInfo",
                             "reason": "API_KEY_INVALID", "domain": "googleapis.com"}]}}));
        }
        let body: Value = serde_json::from_slice(&request.body).unwrap_or_default();
        let said = user_texts(&body);
        let text = format!("Gemini heard: {}", said.join(" / "));
        let answer = if request.url.path().ends_with(":streamGenerateContent") {
            let split = text.len().min(7);
            let sse = format!(
                "data: {}\r\n\r\ndata: {}\r\n\r\n",
                chunk(&text[..split], false),
                chunk(&text[split..], true)
            );
            ResponseTemplate::new(200).set_body_raw(sse, "text/event-stream")
        } else {
            ResponseTemplate::new(200).set_body_json(chunk(&text, true))
        };
        if said.iter().any(|t| t.contains("SLOW")) {
            answer.set_delay(std::time::Duration::from_secs(120))
        } else {
            answer
        }
    }
}

/// Writes the Gemini CLI's user settings in `home` (`~/.gemini/settings.json`)
/// choosing API-key login. Without it the CLI takes `GOOGLE_GEMINI_BASE_URL`
/// for a "gateway" login, which 0.61.0 then refuses ("Invalid auth method
/// selected").
pub fn write_settings(home: &std::path::Path) {
    let dir = home.join(".gemini");
    std::fs::create_dir_all(&dir).expect("~/.gemini");
    std::fs::write(
        dir.join("settings.json"),
        json!({"security": {"auth": {"selectedType": "gemini-api-key"}}}).to_string(),
    )
    .expect("write ~/.gemini/settings.json");
}
