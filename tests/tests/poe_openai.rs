//! The real poe-openai plugin through real shims and the daemon, against the
//! local stand-in for Poe's API: every tool answered, streamed progress,
//! media links as resource links, video through /v1/videos, each upstream
//! failure mapped to a stable code, and cancellation reaching the upstream.

use std::time::Duration;

use fake_poe::FakePoe;
use serde_json::{Value, json};
use testkit::client::{error_code, result_text};
use testkit::{McpClient, TestEnv};

async fn setup() -> (FakePoe, TestEnv, McpClient) {
    let fake = FakePoe::start().await;
    let env = TestEnv::new(&["poe-openai"])
        .with_var("POE_BASE_URL", fake.base_url())
        .with_var("POE_API_KEY", fake_poe::FAKE_API_KEY)
        .with_var("POE_VIDEO_POLL_MS", "20");
    let mut shim = env.shim().await;
    shim.initialize("poe-openai-e2e").await;
    (fake, env, shim)
}

fn resource_links(response: &Value) -> Vec<Value> {
    response["result"]["content"]
        .as_array()
        .map(|blocks| {
            blocks
                .iter()
                .filter(|b| b["type"] == "resource_link")
                .cloned()
                .collect()
        })
        .unwrap_or_default()
}

#[tokio::test(flavor = "multi_thread")]
async fn text_answer_streams_progress_and_reports_usage() {
    let (fake, _env, mut shim) = setup().await;
    let answer = shim
        .request(
            "tools/call",
            json!({
                "name": "get_bot_response",
                "arguments": {"bot_name": "Claude-Sonnet-4.5", "message": "hello from the test", "params": {"thinking_budget": "0"}},
                "_meta": {"progressToken": "t"}
            }),
        )
        .await;
    assert_eq!(
        result_text(&answer),
        "Echo from Claude-Sonnet-4.5: hello from the test"
    );
    let streamed: String = shim
        .take_notifications("notifications/progress")
        .iter()
        .map(|n| {
            n["params"]["message"]
                .as_str()
                .unwrap_or_default()
                .to_string()
        })
        .collect();
    // Progress is coalesced and stops once the result is in, which carries
    // the whole text: what streamed is the answer's beginning.
    assert!(
        "Echo from Claude-Sonnet-4.5: hello from the test".starts_with(&streamed),
        "{streamed:?}"
    );
    let usage = &answer["result"]["_meta"]["poe-code/usage"];
    assert!(usage["total_tokens"].as_u64().unwrap() > 0, "{answer}");
    let sent = fake.chat_requests().await;
    assert_eq!(sent[0]["model"], "Claude-Sonnet-4.5");
    assert_eq!(
        sent[0]["extra_body"]["thinking_budget"], "0",
        "params reach the bot: {}",
        sent[0]
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn media_tools_return_resource_links() {
    let (_fake, _env, mut shim) = setup().await;
    let image = shim
        .call_tool(
            "generate_image",
            json!({"prompt": "a red cube", "params": {"aspect_ratio": "16:9"}}),
        )
        .await;
    let links = resource_links(&image);
    assert_eq!(links.len(), 1, "{image}");
    let url = links[0]["uri"].as_str().unwrap();
    assert!(url.ends_with(".png"), "{url}");
    assert!(result_text(&image).contains(url), "link also as text");
    assert_eq!(links[0]["mimeType"], "image/png");
    // The link is real: the fake serves the file.
    let bytes = reqwest_get(url).await;
    assert!(!bytes.is_empty());

    let audio = shim
        .call_tool("generate_audio", json!({"prompt": "say hi"}))
        .await;
    let links = resource_links(&audio);
    assert!(
        links[0]["uri"].as_str().unwrap().ends_with(".mp3"),
        "{audio}"
    );

    let video = shim
        .call_tool(
            "generate_video",
            json!({"prompt": "waves", "params": {"seconds": "4"}}),
        )
        .await;
    let links = resource_links(&video);
    assert_eq!(links.len(), 1, "{video}");
    assert!(
        links[0]["uri"].as_str().unwrap().contains("/videos/"),
        "{video}"
    );
}

async fn reqwest_get(url: &str) -> Vec<u8> {
    let response = reqwest::get(url).await.expect("GET the media link");
    assert!(
        response.status().is_success(),
        "{url}: {}",
        response.status()
    );
    response.bytes().await.expect("body").to_vec()
}

#[tokio::test(flavor = "multi_thread")]
async fn upstream_failures_map_to_stable_codes_and_the_session_lives() {
    let (_fake, env, mut shim) = setup().await;
    let cases = [
        ("fake-401", "PROVIDER_UNAVAILABLE"),
        ("fake-402", "PROVIDER_UNAVAILABLE"),
        ("fake-404", "MODEL_NOT_FOUND"),
        ("fake-429", "RATE_LIMIT_EXCEEDED"),
        ("fake-500", "PROVIDER_UNAVAILABLE"),
        ("fake-garbage", "PROVIDER_UNAVAILABLE"),
    ];
    // All at once: retries of 429/500 run side by side.
    let mut ids = Vec::new();
    for (bot, _) in cases {
        ids.push(
            shim.send_request(
                "tools/call",
                json!({"name": "get_bot_response", "arguments": {"bot_name": bot, "message": "x"}}),
            )
            .await,
        );
    }
    for ((bot, code), id) in cases.iter().zip(ids) {
        let answer = shim.response(&id).await;
        assert_eq!(
            error_code(&answer).as_deref(),
            Some(*code),
            "{bot}: {answer}"
        );
        let text = result_text(&answer);
        assert!(!text.contains(fake_poe::FAKE_API_KEY), "key leaked: {text}");
        if *bot == "fake-402" {
            assert!(text.to_lowercase().contains("points"), "{text}");
        }
        if *bot == "fake-401" {
            assert!(text.contains("poe-code login"), "{text}");
        }
    }
    let answer = shim.ask("GPT-5", "alive").await;
    assert_eq!(result_text(&answer), "Echo from GPT-5: alive");
    assert!(
        !env.daemon_log().contains(fake_poe::FAKE_API_KEY),
        "key in the log"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn cancelling_a_call_drops_the_upstream_request() {
    let (_fake, env, mut shim) = setup().await;
    let id = shim
        .send_request(
            "tools/call",
            json!({"name": "get_bot_response", "arguments": {"bot_name": "fake-slow", "message": "x"}}),
        )
        .await;
    env.wait_status(Duration::from_secs(10), |s| s["calls_in_flight"] == 1);
    shim.send(&json!({"jsonrpc": "2.0", "method": "notifications/cancelled", "params": {"requestId": id}}))
        .await;
    // fake-slow answers after 30 s; the job ends long before that.
    env.wait_status(Duration::from_secs(10), |s| s["calls_in_flight"] == 0);
    let listed = shim.call_tool("check_status", json!({})).await;
    assert_eq!(
        listed["result"]["structuredContent"]["jobs"][0]["status"], "cancelled",
        "{listed}"
    );
}
