//! Checks that the fake speaks Poe's wire format as a plain HTTP client sees
//! it: SSE chunks, whole completions, error bodies and headers, media files,
//! video jobs, request recording, test overrides, and the `fake-poe` binary.

use std::io::{BufRead, BufReader, Write};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use eventsource_stream::Eventsource;
use fake_poe::{BAD_API_KEY, FAKE_API_KEY, FakePoe};
use futures::StreamExt;
use serde_json::{Value, json};
use wiremock::matchers::{method, path};
use wiremock::{Mock, ResponseTemplate};

async fn post(fake: &FakePoe, key: &str, body: Value) -> reqwest::Response {
    reqwest::Client::new()
        .post(format!("{}/chat/completions", fake.base_url()))
        .bearer_auth(key)
        .json(&body)
        .send()
        .await
        .unwrap()
}

/// The data payloads of an SSE body, `[DONE]` included.
async fn sse_data(response: reqwest::Response) -> Vec<String> {
    response
        .bytes_stream()
        .eventsource()
        .map(|e| e.unwrap().data)
        .collect()
        .await
}

#[tokio::test]
async fn streaming_answer_is_sse_chunks_ending_in_done() {
    let fake = FakePoe::start().await;
    assert!(fake.base_url().starts_with("http://127.0.0.1:"));
    assert!(fake.base_url().ends_with("/v1"));
    let response = post(
        &fake,
        FAKE_API_KEY,
        json!({"model": "GPT-4o", "stream": true, "stream_options": {"include_usage": true},
               "messages": [{"role": "user", "content": "hi there"}]}),
    )
    .await;
    assert_eq!(response.status(), 200);
    assert_eq!(response.headers()["content-type"], "text/event-stream");
    let data = sse_data(response).await;
    assert_eq!(data.last().map(String::as_str), Some("[DONE]"));
    let chunks: Vec<Value> = data[..data.len() - 1]
        .iter()
        .map(|d| serde_json::from_str(d).expect("every data line but the last is JSON"))
        .collect();
    assert!(
        chunks
            .iter()
            .all(|c| c["object"] == "chat.completion.chunk")
    );
    let text: String = chunks
        .iter()
        .filter_map(|c| {
            c.pointer("/choices/0/delta/content")
                .and_then(Value::as_str)
        })
        .collect();
    assert_eq!(text, "Echo from GPT-4o: hi there");
    assert!(chunks.len() >= 6, "one chunk per word");
    let finish: Vec<_> = chunks
        .iter()
        .filter_map(|c| {
            c.pointer("/choices/0/finish_reason")
                .and_then(Value::as_str)
        })
        .collect();
    assert_eq!(finish, vec!["stop"]);
    let usage = &chunks.last().unwrap()["usage"];
    assert_eq!(usage["total_tokens"], json!(7));
    assert_eq!(chunks.last().unwrap()["choices"], json!([]));
}

#[tokio::test]
async fn whole_answer_is_a_chat_completion() {
    let fake = FakePoe::start().await;
    let response = post(
        &fake,
        FAKE_API_KEY,
        json!({"model": "Claude-Sonnet-4.6", "messages": [
            {"role": "system", "content": "be nice"},
            {"role": "user", "content": [{"type": "text", "text": "parts"}, {"type": "text", "text": "work"}]}
        ]}),
    )
    .await;
    assert_eq!(response.status(), 200);
    assert_eq!(response.headers()["x-ratelimit-limit-requests"], "500");
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["object"], "chat.completion");
    assert_eq!(
        body["choices"][0]["message"]["content"],
        "Echo from Claude-Sonnet-4.6: parts work"
    );
    assert_eq!(body["choices"][0]["finish_reason"], "stop");
    assert!(body["usage"]["total_tokens"].as_u64().unwrap() > 0);
}

#[tokio::test]
async fn error_models_answer_poe_error_bodies() {
    let fake = FakePoe::start().await;
    for (model, status, code) in [
        ("fake-401", 401, "invalid_api_key"),
        ("FAKE-402", 402, "insufficient_points"),
        ("fake-404", 404, "model_not_found"),
        ("fake-429", 429, "rate_limit_exceeded"),
        ("fake-500", 500, "internal_error"),
    ] {
        let response = post(&fake, FAKE_API_KEY, json!({"model": model, "messages": []})).await;
        assert_eq!(response.status().as_u16(), status, "{model}");
        if status == 429 {
            assert_eq!(response.headers()["retry-after"], "1");
            assert_eq!(response.headers()["x-ratelimit-remaining-requests"], "0");
            assert_eq!(response.headers()["x-ratelimit-reset-requests"], "1");
        }
        let body: Value = response.json().await.unwrap();
        assert_eq!(body["error"]["code"], code, "{model}");
        assert!(body["error"]["message"].as_str().unwrap().len() > 5);
        assert!(body["error"]["type"].is_string());
    }
}

#[tokio::test]
async fn bad_or_missing_key_is_401() {
    let fake = FakePoe::start().await;
    let body = json!({"model": "GPT-4o", "messages": []});
    assert_eq!(post(&fake, BAD_API_KEY, body.clone()).await.status(), 401);
    let anonymous = reqwest::Client::new()
        .post(format!("{}/chat/completions", fake.base_url()))
        .json(&body)
        .send()
        .await
        .unwrap();
    assert_eq!(anonymous.status(), 401);
    assert_eq!(post(&fake, "anything-else", body).await.status(), 200);
}

#[tokio::test]
async fn garbage_model_streams_non_json() {
    let fake = FakePoe::start().await;
    let response = post(
        &fake,
        FAKE_API_KEY,
        json!({"model": "fake-garbage", "messages": []}),
    )
    .await;
    assert_eq!(response.status(), 200);
    let data = sse_data(response).await;
    assert!(serde_json::from_str::<Value>(&data[0]).is_err());
}

#[tokio::test]
async fn media_bots_link_back_to_served_files() {
    let fake = FakePoe::start().await;
    let image: Value = post(
        &fake,
        FAKE_API_KEY,
        json!({"model": "nano-banana-pro", "messages": [{"role": "user", "content": "cat"}]}),
    )
    .await
    .json()
    .await
    .unwrap();
    let content = image["choices"][0]["message"]["content"].as_str().unwrap();
    let url = content.rsplit('\n').next().unwrap();
    assert!(content.starts_with(&format!("![generated image]({url})")));
    assert!(url.starts_with(&fake.server().uri()) && url.ends_with(".png"));
    let file = reqwest::get(url).await.unwrap();
    assert_eq!(file.headers()["content-type"], "image/png");

    let audio: Value = post(
        &fake,
        FAKE_API_KEY,
        json!({"model": "ElevenLabs-v3", "messages": [{"role": "user", "content": "hi"}]}),
    )
    .await
    .json()
    .await
    .unwrap();
    let url = audio["choices"][0]["message"]["content"].as_str().unwrap();
    assert!(url.ends_with(".mp3") && !url.contains(' '));
    let file = reqwest::get(url).await.unwrap();
    assert_eq!(file.headers()["content-type"], "audio/mpeg");
}

#[tokio::test]
async fn tool_models_stream_a_call_of_the_first_tool() {
    let fake = FakePoe::start().await;
    let response = post(
        &fake,
        FAKE_API_KEY,
        json!({"model": "fake-tool", "stream": true,
               "tools": [{"type": "function", "function": {"name": "lookup"}}],
               "messages": [{"role": "user", "content": "cats"}]}),
    )
    .await;
    let data = sse_data(response).await;
    let chunks: Vec<Value> = data[..data.len() - 1]
        .iter()
        .map(|d| serde_json::from_str(d).unwrap())
        .collect();
    assert_eq!(
        chunks[0].pointer("/choices/0/delta/tool_calls/0/function/name"),
        Some(&json!("lookup"))
    );
    let arguments: String = chunks
        .iter()
        .filter_map(|c| {
            c.pointer("/choices/0/delta/tool_calls/0/function/arguments")
                .and_then(Value::as_str)
        })
        .collect();
    assert_eq!(
        serde_json::from_str::<Value>(&arguments).unwrap(),
        json!({"echo": "cats"})
    );
}

#[tokio::test]
async fn video_jobs_progress_and_serve_mp4() {
    let fake = FakePoe::start().await;
    let client = reqwest::Client::new();
    let created: Value = client
        .post(format!("{}/videos", fake.base_url()))
        .bearer_auth(FAKE_API_KEY)
        .json(&json!({"model": "Veo-3.1", "prompt": "waves", "seconds": 4}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(created["object"], "video");
    assert_eq!(created["status"], "queued");
    assert_eq!(created["seconds"], 4);
    let id = created["id"].as_str().unwrap();
    let content_url = format!("{}/videos/{id}/content", fake.base_url());
    let early = client
        .get(&content_url)
        .bearer_auth(FAKE_API_KEY)
        .send()
        .await
        .unwrap();
    assert_eq!(early.status(), 404);

    let mut statuses = Vec::new();
    for _ in 0..3 {
        let polled: Value = client
            .get(format!("{}/videos/{id}", fake.base_url()))
            .bearer_auth(FAKE_API_KEY)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        statuses.push(polled["status"].as_str().unwrap().to_string());
    }
    assert_eq!(statuses, vec!["in_progress", "completed", "completed"]);
    let content = client
        .get(&content_url)
        .bearer_auth(FAKE_API_KEY)
        .send()
        .await
        .unwrap();
    assert_eq!(content.status(), 200);
    assert_eq!(content.headers()["content-type"], "video/mp4");
    let unknown = client
        .get(format!("{}/videos/nope", fake.base_url()))
        .bearer_auth(FAKE_API_KEY)
        .send()
        .await
        .unwrap();
    assert_eq!(unknown.status(), 404);
}

#[tokio::test]
async fn records_chat_bodies_and_lets_tests_override() {
    let fake = FakePoe::start().await;
    Mock::given(method("POST"))
        .and(path("/v1/chat/completions"))
        .respond_with(ResponseTemplate::new(503))
        .with_priority(1)
        .up_to_n_times(1)
        .mount(fake.server())
        .await;
    let body = json!({"model": "GPT-4o", "messages": [{"role": "user", "content": "x"}]});
    assert_eq!(post(&fake, FAKE_API_KEY, body.clone()).await.status(), 503);
    assert_eq!(post(&fake, FAKE_API_KEY, body.clone()).await.status(), 200);
    assert_eq!(fake.chat_requests().await, vec![body.clone(), body]);
}

#[test]
fn binary_prints_its_url_and_exits_on_stdin_eof() {
    let mut child = Command::new(env!("CARGO_BIN_EXE_fake-poe"))
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut stdout = BufReader::new(child.stdout.take().unwrap());
    let mut line = String::new();
    stdout.read_line(&mut line).unwrap();
    let base = line
        .trim_end()
        .strip_prefix("FAKE_POE_BASE_URL=")
        .unwrap_or_else(|| panic!("unexpected first line {line:?}"))
        .to_string();
    assert!(base.starts_with("http://127.0.0.1:") && base.ends_with("/v1"));

    // It serves while stdin stays open.
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let status = rt.block_on(async {
        reqwest::Client::new()
            .post(format!("{base}/chat/completions"))
            .bearer_auth(FAKE_API_KEY)
            .json(&json!({"model": "GPT-4o", "messages": []}))
            .send()
            .await
            .unwrap()
            .status()
    });
    assert_eq!(status, 200);

    let mut stdin = child.stdin.take().unwrap();
    stdin.flush().unwrap();
    drop(stdin);
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            assert!(status.success());
            break;
        }
        assert!(
            Instant::now() < deadline,
            "fake-poe did not exit on stdin EOF"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    let mut rest = String::new();
    std::io::Read::read_to_string(&mut stdout, &mut rest).unwrap();
    assert_eq!(rest, "", "exactly one line on stdout");
}
