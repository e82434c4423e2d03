//! Stand-ins for Poe's OpenAI-compatible API on 127.0.0.1 (wiremock) that
//! tests keep a handle on: streamed answers, Poe's error shape, and an
//! upstream that enforces a sliding-window limit and records the most
//! requests it ever saw in one window.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use wiremock::matchers::{method, path};
use wiremock::{Mock, MockServer, Request, Respond, ResponseTemplate};

/// A responder whose state the test keeps a handle on.
pub struct Shared<T>(pub Arc<T>);

impl<T> std::ops::Deref for Shared<T> {
    type Target = T;
    fn deref(&self) -> &T {
        &self.0
    }
}

/// What a [`Shared`] responder answers (a trait of ours, so tests can give
/// their own state types one).
pub trait Answer: Send + Sync + 'static {
    fn answer(&self, request: &Request) -> ResponseTemplate;
}

impl<T: Answer> Respond for Shared<T> {
    fn respond(&self, request: &Request) -> ResponseTemplate {
        self.0.answer(request)
    }
}

/// A streamed chat completion answering `text`.
pub fn sse_answer(text: &str) -> ResponseTemplate {
    let chunk = json!({
        "id": "chatcmpl-test", "object": "chat.completion.chunk", "created": 1, "model": "test-bot",
        "choices": [{"index": 0, "delta": {"role": "assistant", "content": text}, "finish_reason": null}]
    });
    let stop = json!({
        "id": "chatcmpl-test", "object": "chat.completion.chunk", "created": 1, "model": "test-bot",
        "choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}]
    });
    let body = format!("data: {chunk}\n\ndata: {stop}\n\ndata: [DONE]\n\n");
    ResponseTemplate::new(200).set_body_raw(body, "text/event-stream")
}

pub fn last_user_message(request: &Request) -> String {
    let body: Value = serde_json::from_slice(&request.body).unwrap_or_default();
    body["messages"]
        .as_array()
        .and_then(|m| m.last())
        .and_then(|m| m["content"].as_str())
        .unwrap_or_default()
        .to_string()
}

pub fn poe_error(status: u16, message: &str) -> ResponseTemplate {
    ResponseTemplate::new(status).set_body_json(json!({
        "error": {"code": status, "type": "test_error", "message": message}
    }))
}

/// Answers within a sliding-window limit and 429 beyond it, recording the
/// most requests it ever saw in one window.
pub struct WindowedUpstream {
    pub window: Duration,
    pub limit: usize,
    pub seen: Mutex<VecDeque<Instant>>,
    pub max_in_window: Mutex<usize>,
    pub rejected: Mutex<usize>,
}

impl WindowedUpstream {
    /// A stand-in allowing `limit` requests per `window`, none seen yet.
    pub fn new(window: Duration, limit: usize) -> Self {
        Self {
            window,
            limit,
            seen: Mutex::new(VecDeque::new()),
            max_in_window: Mutex::new(0),
            rejected: Mutex::new(0),
        }
    }
}

impl Answer for WindowedUpstream {
    fn answer(&self, request: &Request) -> ResponseTemplate {
        let now = Instant::now();
        let mut seen = self.seen.lock().unwrap();
        while seen
            .front()
            .is_some_and(|t| now.duration_since(*t) >= self.window)
        {
            seen.pop_front();
        }
        seen.push_back(now);
        let count = seen.len();
        let mut max = self.max_in_window.lock().unwrap();
        *max = (*max).max(count);
        if count > self.limit {
            *self.rejected.lock().unwrap() += 1;
            return poe_error(429, "rate limit exceeded").insert_header("retry-after", "1");
        }
        sse_answer(&format!("echo {}", last_user_message(request)))
    }
}

pub async fn upstream_with(responder: impl Respond + 'static) -> MockServer {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path("/v1/chat/completions"))
        .respond_with(responder)
        .mount(&server)
        .await;
    server
}
