//! Server-sent events the way the model APIs the agent CLIs speak (the
//! Messages API, the Responses API) stream them: each event named by its
//! `type`, for the fakes of [`crate::anthropic`] and [`crate::responses`].

use serde_json::Value;
use wiremock::ResponseTemplate;

/// A 200 `text/event-stream` answer carrying `events` in order.
pub fn event_stream(events: &[Value]) -> ResponseTemplate {
    let body: String = events
        .iter()
        .map(|e| format!("event: {}\ndata: {e}\n\n", e["type"].as_str().unwrap_or("")))
        .collect();
    ResponseTemplate::new(200).set_body_raw(body, "text/event-stream")
}
