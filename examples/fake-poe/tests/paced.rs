//! The paced endpoint speaks the same chat completions format as the
//! wiremock fake, and really spreads a `fake-stream-*` answer over time.

use std::time::{Duration, Instant};

use eventsource_stream::Eventsource;
use fake_poe::{BAD_API_KEY, FAKE_API_KEY, PacedPoe, TICK, paced_answer};
use futures::StreamExt;
use serde_json::{Value, json};

async fn post(paced: &PacedPoe, key: &str, body: Value) -> reqwest::Response {
    reqwest::Client::new()
        .post(format!("{}/chat/completions", paced.base_url()))
        .bearer_auth(key)
        .json(&body)
        .send()
        .await
        .unwrap()
}

#[tokio::test]
async fn streams_the_echo_then_one_tick_per_interval() {
    let paced = PacedPoe::start().await;
    let started = Instant::now();
    let response = post(
        &paced,
        FAKE_API_KEY,
        json!({"model": "fake-stream-500ms", "stream": true,
               "stream_options": {"include_usage": true},
               "messages": [{"role": "user", "content": "slowly please"}]}),
    )
    .await;
    assert_eq!(response.status(), 200);
    assert_eq!(response.headers()["content-type"], "text/event-stream");
    let data: Vec<String> = response
        .bytes_stream()
        .eventsource()
        .map(|e| e.unwrap().data)
        .collect()
        .await;
    // A lower bound, which the server's sleeps guarantee (never an upper one).
    assert!(started.elapsed() >= TICK * 5, "the ticks were not paced");
    assert_eq!(data.last().map(String::as_str), Some("[DONE]"));
    let chunks: Vec<Value> = data[..data.len() - 1]
        .iter()
        .map(|d| serde_json::from_str(d).expect("JSON chunk"))
        .collect();
    let text: String = chunks
        .iter()
        .filter_map(|c| c.pointer("/choices/0/delta/content")?.as_str())
        .collect();
    assert_eq!(
        text,
        "Echo from fake-stream-500ms: slowly please 1 2 3 4 5 (end of stream)"
    );
    assert_eq!(text, paced_answer("fake-stream-500ms", "slowly please"));
    let finish: Vec<&str> = chunks
        .iter()
        .filter_map(|c| c.pointer("/choices/0/finish_reason")?.as_str())
        .collect();
    assert_eq!(finish, ["stop"]);
    assert_eq!(chunks.last().unwrap()["choices"], json!([]));
    assert!(chunks.last().unwrap()["usage"]["total_tokens"].as_u64() > Some(0));
    assert_eq!(paced.chat_requests().len(), 1);
}

#[tokio::test]
async fn other_models_echo_at_once_and_whole_answers_are_completions() {
    let paced = PacedPoe::start().await;
    let response = post(
        &paced,
        FAKE_API_KEY,
        json!({"model": "GPT-4o", "messages": [{"role": "user", "content": "hi"}]}),
    )
    .await;
    assert_eq!(response.status(), 200);
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["object"], "chat.completion");
    assert_eq!(
        body["choices"][0]["message"]["content"],
        "Echo from GPT-4o: hi"
    );
    assert_eq!(paced_answer("GPT-4o", "hi"), "Echo from GPT-4o: hi");
    assert_eq!(
        paced_answer("fake-stream-2s", "x").split(' ').count(),
        4 + (Duration::from_secs(2).as_millis() / TICK.as_millis()) as usize + 3
    );
}

#[tokio::test]
async fn bad_key_and_wrong_path_get_poe_error_bodies() {
    let paced = PacedPoe::start().await;
    let response = post(&paced, BAD_API_KEY, json!({"model": "GPT-4o"})).await;
    assert_eq!(response.status(), 401);
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["error"]["code"], "invalid_api_key");
    let response = reqwest::Client::new()
        .get(format!("{}/models", paced.base_url()))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 404);
    assert!(paced.chat_requests().is_empty());
}
