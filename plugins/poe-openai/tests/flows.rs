//! Happy paths of the plugin against fake-poe (and wiremock where a test
//! needs an answer fake-poe does not give): streamed and whole text, tool
//! calls, usage, custom parameters, attachments, image/audio links and the
//! `/v1/videos` job flow.

mod common;

use common::*;
use fake_poe::FAKE_API_KEY;
use poe_plugin_api::{Attachment, ErrorKind, Event, Message, Options, OutputKind, Role};
use serde_json::{Value, json};
use wiremock::matchers::{method, path};
use wiremock::{Mock, ResponseTemplate};

#[test]
fn streaming_text_emits_deltas_usage_and_final_response() {
    let (rt, fake) = fake();
    let provider = provider(&fake.base_url(), &[]);
    let req = poe_plugin_api::Request {
        stream: true,
        ..request("GPT-4o", "hello there world")
    };
    let (result, rec) = invoke(&provider, req);
    let response = result.unwrap();
    assert_eq!(response.text, "Echo from GPT-4o: hello there world");
    assert_eq!(rec.streamed_text(), response.text);
    let deltas = rec
        .events()
        .iter()
        .filter(|e| matches!(e, Event::TextDelta { .. }))
        .count();
    // The fake writes every chunk at once, and chunks that arrive together
    // reach the host as one delta (spread-out chunks: the paced tests).
    assert!(
        (1..=2).contains(&deltas),
        "deltas that arrived together are emitted together, got {deltas}"
    );
    assert_eq!(response.finish_reason.as_deref(), Some("stop"));
    assert_eq!(response.model.as_deref(), Some("GPT-4o"));
    let usage = response.usage.clone().expect("usage");
    assert!(usage.total_tokens > 0);
    assert!(rec.events().contains(&Event::Usage(usage)));

    let sent = rt.block_on(fake.chat_requests());
    assert_eq!(sent.len(), 1);
    assert_eq!(sent[0]["stream"], json!(true));
    assert_eq!(sent[0]["stream_options"], json!({"include_usage": true}));
    assert_eq!(
        sent[0]["messages"],
        json!([{"role": "user", "content": "hello there world"}])
    );
    assert!(sent[0].get("extra_body").is_none());
}

#[test]
fn chunks_spread_over_time_reach_the_host_one_by_one() {
    // A runtime with a worker, so the paced server runs while `invoke` blocks.
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap();
    let paced = rt.block_on(fake_poe::PacedPoe::start());
    let provider = provider(&paced.base_url(), &[]);
    let req = poe_plugin_api::Request {
        stream: true,
        ..request("fake-stream-500ms", "spread out")
    };
    let (result, rec) = invoke(&provider, req);
    let response = result.unwrap();
    assert_eq!(
        response.text,
        fake_poe::paced_answer("fake-stream-500ms", "spread out")
    );
    assert_eq!(rec.streamed_text(), response.text);
    let deltas = rec
        .events()
        .iter()
        .filter(|e| matches!(e, Event::TextDelta { .. }))
        .count();
    // The echo, one per 100 ms tick, and the tail: each its own read.
    assert!(
        deltas >= 5,
        "chunks that arrive apart stay apart, got {deltas}"
    );
}

#[test]
fn non_streaming_text_returns_only_the_result() {
    let (rt, fake) = fake();
    let provider = provider(&fake.base_url(), &[]);
    let (result, rec) = invoke(&provider, request("Claude-Sonnet-4.6", "hi"));
    let response = result.unwrap();
    assert_eq!(response.text, "Echo from Claude-Sonnet-4.6: hi");
    assert!(response.usage.is_some());
    // Only the host-facing rate-limit report; no streamed pieces.
    assert_eq!(
        rec.events(),
        vec![Event::RateLimit {
            limit: Some(500),
            remaining: Some(499),
            reset_ms: Some(1000)
        }]
    );
    let sent = rt.block_on(fake.chat_requests());
    assert_eq!(sent[0]["stream"], json!(false));
    assert!(sent[0].get("stream_options").is_none());
}

#[test]
fn tool_call_deltas_are_streamed_and_assembled() {
    let (rt, fake) = fake();
    let provider = provider(&fake.base_url(), &[]);
    let tools = json!([{
        "type": "function",
        "function": {"name": "lookup", "parameters": {"type": "object"}}
    }]);
    let req = poe_plugin_api::Request {
        stream: true,
        options: Options {
            tools: Some(tools.clone()),
            tool_choice: Some(json!("auto")),
            ..Options::default()
        },
        ..request("fake-tool-model", "find the cat")
    };
    let (result, rec) = invoke(&provider, req);
    let response = result.unwrap();
    assert_eq!(response.finish_reason.as_deref(), Some("tool_calls"));
    assert_eq!(response.tool_calls.len(), 1);
    let call = &response.tool_calls[0];
    assert_eq!(call.name, "lookup");
    assert_eq!(call.id, "call_fake_1");
    let args: Value = serde_json::from_str(&call.arguments).unwrap();
    assert_eq!(args, json!({"echo": "find the cat"}));

    let deltas: Vec<_> = rec
        .events()
        .into_iter()
        .filter_map(|e| match e {
            Event::ToolCallDelta {
                index,
                id,
                name,
                arguments,
            } => Some((index, id, name, arguments)),
            _ => None,
        })
        .collect();
    assert!(deltas.len() > 2, "arguments arrive in pieces: {deltas:?}");
    assert_eq!(deltas[0].1.as_deref(), Some("call_fake_1"));
    assert_eq!(deltas[0].2.as_deref(), Some("lookup"));
    let joined: String = deltas.iter().map(|d| d.3.as_str()).collect();
    assert_eq!(joined, call.arguments);

    let sent = rt.block_on(fake.chat_requests());
    assert_eq!(sent[0]["tools"], tools);
    assert_eq!(sent[0]["tool_choice"], json!("auto"));
}

#[test]
fn custom_params_reach_the_bot_in_extra_body() {
    let (rt, fake) = fake();
    let provider = provider(&fake.base_url(), &[]);
    let req = poe_plugin_api::Request {
        params: [
            ("aspect_ratio".to_string(), "16:9".to_string()),
            ("image_only".to_string(), "true".to_string()),
        ]
        .into(),
        ..media_request("nano-banana-pro", "a cat", OutputKind::Image)
    };
    invoke(&provider, req).0.unwrap();
    let sent = rt.block_on(fake.chat_requests());
    assert_eq!(
        sent[0]["extra_body"],
        json!({"aspect_ratio": "16:9", "image_only": "true"})
    );
    assert!(sent[0].get("aspect_ratio").is_none());
}

#[test]
fn options_and_attachments_are_sent_as_openai_fields() {
    let (rt, fake) = fake();
    let provider = provider(&fake.base_url(), &[]);
    let req = poe_plugin_api::Request {
        messages: vec![
            Message {
                role: Role::System,
                content: "be brief".into(),
                attachments: vec![],
                tool_call_id: None,
                tool_calls: vec![],
            },
            Message {
                role: Role::User,
                content: "what is this".into(),
                attachments: vec![Attachment {
                    url: "data:image/png;base64,iVBORw0KGgo=".into(),
                    content_type: Some("image/png".into()),
                    name: Some("x.png".into()),
                }],
                tool_call_id: None,
                tool_calls: vec![],
            },
        ],
        options: Options {
            temperature: Some(0.2),
            max_tokens: Some(64),
            ..Options::default()
        },
        ..request("GPT-4o", "")
    };
    let response = invoke(&provider, req).0.unwrap();
    assert_eq!(response.text, "Echo from GPT-4o: what is this");
    let sent = rt.block_on(fake.chat_requests());
    assert_eq!(sent[0]["temperature"], json!(0.2));
    assert_eq!(sent[0]["max_tokens"], json!(64));
    assert!(sent[0].get("top_p").is_none());
    assert_eq!(
        sent[0]["messages"][0],
        json!({"role": "system", "content": "be brief"})
    );
    assert_eq!(
        sent[0]["messages"][1]["content"],
        json!([
            {"type": "text", "text": "what is this"},
            {"type": "image_url", "image_url": {"url": "data:image/png;base64,iVBORw0KGgo="}}
        ])
    );
}

#[test]
fn image_bot_links_become_media() {
    let (rt, fake) = fake();
    let provider = provider(&fake.base_url(), &[]);
    let (result, rec) = invoke(
        &provider,
        media_request("Nano-Banana-Pro", "a cat", OutputKind::Image),
    );
    let response = result.unwrap();
    assert_eq!(response.media.len(), 1, "markdown + bare URL are one file");
    let media = &response.media[0];
    assert_eq!(media.kind, OutputKind::Image);
    assert_eq!(media.mime_type.as_deref(), Some("image/png"));
    assert!(media.url.ends_with(".png"));
    assert!(
        response
            .text
            .contains(&format!("![generated image]({})", media.url))
    );
    assert!(rec.events().contains(&Event::Media(media.clone())));
    // Poe asks for stream=false with media bots; the caller still gets the text.
    let sent = rt.block_on(fake.chat_requests());
    assert_eq!(sent[0]["stream"], json!(false));
    assert_eq!(rec.streamed_text(), response.text);
    let fetched = rt.block_on(async {
        let r = reqwest::get(&media.url).await.unwrap();
        (
            r.headers()["content-type"].to_str().unwrap().to_string(),
            r.bytes().await.unwrap(),
        )
    });
    assert_eq!(fetched.0, "image/png");
    assert!(fetched.1.starts_with(b"\x89PNG"));
}

#[test]
fn audio_bot_bare_url_becomes_media() {
    let (_rt, fake) = fake();
    let provider = provider(&fake.base_url(), &[]);
    let (result, _) = invoke(
        &provider,
        media_request("ElevenLabs-v3", "say hi", OutputKind::Audio),
    );
    let response = result.unwrap();
    assert_eq!(response.media.len(), 1);
    assert_eq!(response.media[0].kind, OutputKind::Audio);
    assert_eq!(response.media[0].mime_type.as_deref(), Some("audio/mpeg"));
    assert_eq!(response.text, response.media[0].url);
}

#[test]
fn video_job_is_created_polled_and_linked() {
    let (rt, fake) = fake();
    let provider = provider(&fake.base_url(), &[("POE_VIDEO_POLL_MS", "10")]);
    let req = poe_plugin_api::Request {
        params: [
            ("seconds".to_string(), "8".to_string()),
            ("size".to_string(), "1280x720".to_string()),
        ]
        .into(),
        ..media_request("Veo-3.1", "a skier in the Alps", OutputKind::Video)
    };
    let (result, rec) = invoke(&provider, req);
    let response = result.unwrap();
    assert_eq!(response.media.len(), 1);
    let media = &response.media[0];
    assert_eq!(media.kind, OutputKind::Video);
    assert_eq!(media.mime_type.as_deref(), Some("video/mp4"));
    assert!(
        media
            .url
            .starts_with(&format!("{}/videos/video_fake_", fake.base_url()))
    );
    assert!(media.url.ends_with("/content"));
    assert_eq!(response.model.as_deref(), Some("Veo-3.1"));

    let progress: Vec<String> = rec
        .events()
        .into_iter()
        .filter_map(|e| match e {
            Event::Progress { message } => Some(message),
            _ => None,
        })
        .collect();
    assert_eq!(
        progress,
        vec![
            "video queued 0%",
            "video in_progress 50%",
            "video completed 100%"
        ]
    );
    assert!(rec.events().contains(&Event::Media(media.clone())));

    let requests = rt.block_on(fake.server().received_requests()).unwrap();
    let create = requests
        .iter()
        .find(|r| r.method.as_str() == "POST" && r.url.path() == "/v1/videos")
        .expect("create request");
    let body: Value = create.body_json().unwrap();
    assert_eq!(body["model"], json!("Veo-3.1"));
    assert_eq!(body["prompt"], json!("a skier in the Alps"));
    assert_eq!(body["seconds"], json!(8));
    assert_eq!(body["size"], json!("1280x720"));
    assert!(rt.block_on(fake.chat_requests()).is_empty());

    let (status, kind, bytes) = rt.block_on(async {
        let r = reqwest::Client::new()
            .get(&media.url)
            .bearer_auth(FAKE_API_KEY)
            .send()
            .await
            .unwrap();
        (
            r.status().as_u16(),
            r.headers()["content-type"].to_str().unwrap().to_string(),
            r.bytes().await.unwrap(),
        )
    });
    assert_eq!((status, kind.as_str()), (200, "video/mp4"));
    assert_eq!(&bytes[4..8], b"ftyp");
}

#[test]
fn failed_video_job_is_an_upstream_error() {
    let (rt, server) = mock_server();
    rt.block_on(async {
        Mock::given(method("POST"))
            .and(path("/v1/videos"))
            .respond_with(ResponseTemplate::new(200).set_body_json(
                json!({"id": "video_1", "object": "video", "status": "failed",
                       "error": {"code": "moderation_blocked", "message": "prompt was blocked"}}),
            ))
            .mount(&server)
            .await;
    });
    let provider = provider(&v1(&server), &[]);
    let (result, _) = invoke(&provider, media_request("Sora-2", "x", OutputKind::Video));
    let err = result.unwrap_err();
    assert_eq!(err.kind, ErrorKind::Upstream);
    assert!(
        err.message.contains("prompt was blocked"),
        "{}",
        err.message
    );
}

#[test]
fn a_video_that_fails_after_creation_is_never_offered_for_a_retry() {
    let (rt, server) = mock_server();
    rt.block_on(async {
        Mock::given(method("POST"))
            .and(path("/v1/videos"))
            .respond_with(
                ResponseTemplate::new(200)
                    .set_body_json(json!({"id": "video_1", "object": "video", "status": "queued"})),
            )
            .mount(&server)
            .await;
        Mock::given(method("GET"))
            .and(path("/v1/videos/video_1"))
            .respond_with(ResponseTemplate::new(200).set_body_json(
                json!({"id": "video_1", "object": "video", "status": "failed",
                       "error": {"message": "render crashed"}}),
            ))
            .mount(&server)
            .await;
    });
    let provider = provider(&v1(&server), &[("POE_VIDEO_POLL_MS", "5")]);
    let (result, _) = invoke(&provider, media_request("Veo-3.1", "x", OutputKind::Video));
    let err = result.unwrap_err();
    assert_eq!(err.retryable, Some(false), "{err}");
    assert!(err.message.contains("render crashed"), "{err}");
    assert!(err.message.contains("video_1"), "names the job: {err}");
}

#[test]
fn transient_poll_failures_poll_again_through_the_limiter_without_a_second_render() {
    let (rt, server) = mock_server();
    rt.block_on(async {
        Mock::given(method("POST"))
            .and(path("/v1/videos"))
            .respond_with(ResponseTemplate::new(200).set_body_json(
                json!({"id": "video_2", "object": "video", "status": "queued"}),
            ))
            .mount(&server)
            .await;
        // Two failed polls (a 502, then a 429), then the finished job.
        Mock::given(method("GET"))
            .and(path("/v1/videos/video_2"))
            .respond_with(ResponseTemplate::new(502).set_body_string("bad gateway"))
            .up_to_n_times(1)
            .mount(&server)
            .await;
        Mock::given(method("GET"))
            .and(path("/v1/videos/video_2"))
            .respond_with(
                ResponseTemplate::new(429)
                    .insert_header("retry-after", "0")
                    .set_body_json(json!({"error": {"code": 429, "type": "rate_limit_error", "message": "slow down"}})),
            )
            .up_to_n_times(1)
            .mount(&server)
            .await;
        Mock::given(method("GET"))
            .and(path("/v1/videos/video_2"))
            .respond_with(ResponseTemplate::new(200).set_body_json(
                json!({"id": "video_2", "object": "video", "status": "completed", "progress": 100}),
            ))
            .mount(&server)
            .await;
    });
    let provider = provider(&v1(&server), &[("POE_VIDEO_POLL_MS", "5")]);
    let recorder = Recorder::default();
    recorder.refuse_permits(3);
    let sink = poe_plugin_api::Sink::new(recorder.clone());
    let response = provider
        .invoke(media_request("Veo-3.1", "x", OutputKind::Video), &sink)
        .expect("the job finishes despite failed polls");
    assert!(
        response.text.ends_with("/videos/video_2/content"),
        "{}",
        response.text
    );
    let requests = rt.block_on(server.received_requests()).unwrap();
    let posts = requests
        .iter()
        .filter(|r| r.method.as_str() == "POST")
        .count();
    let polls = requests
        .iter()
        .filter(|r| r.method.as_str() == "GET")
        .count();
    assert_eq!((posts, polls), (1, 3));
    // Every poll asked the limiter, and the refused asks were asked again.
    assert_eq!(recorder.permits_asked(), 3 + 3);
}

#[test]
fn other_video_bots_go_through_chat_completions() {
    let (rt, server) = mock_server();
    rt.block_on(async {
        Mock::given(method("POST"))
            .and(path("/v1/chat/completions"))
            .respond_with(ResponseTemplate::new(200).set_body_json(json!({
                "model": "Kling-2.1",
                "choices": [{"index": 0, "finish_reason": "stop",
                    "message": {"role": "assistant", "content": "https://cdn.example/v/clip.mp4"}}]
            })))
            .mount(&server)
            .await;
    });
    let provider = provider(&v1(&server), &[]);
    let (result, _) = invoke(
        &provider,
        media_request("Kling-2.1", "a boat", OutputKind::Video),
    );
    let response = result.unwrap();
    assert_eq!(response.media[0].url, "https://cdn.example/v/clip.mp4");
    assert_eq!(response.media[0].mime_type.as_deref(), Some("video/mp4"));
}

#[test]
fn json_answer_to_a_streaming_request_still_streams_the_text() {
    let (rt, server) = mock_server();
    rt.block_on(async {
        Mock::given(method("POST"))
            .and(path("/v1/chat/completions"))
            .respond_with(ResponseTemplate::new(200).set_body_json(json!({
                "model": "Some-Bot",
                "choices": [{"index": 0, "finish_reason": "stop",
                    "message": {"role": "assistant", "content": "whole answer"}}],
                "usage": {"prompt_tokens": 1, "completion_tokens": 2, "total_tokens": 3}
            })))
            .mount(&server)
            .await;
    });
    let provider = provider(&v1(&server), &[]);
    let req = poe_plugin_api::Request {
        stream: true,
        ..request("Some-Bot", "q")
    };
    let (result, rec) = invoke(&provider, req);
    assert_eq!(result.unwrap().text, "whole answer");
    assert_eq!(rec.streamed_text(), "whole answer");
}

#[test]
fn request_api_key_overrides_the_configured_one() {
    let (rt, fake) = fake();
    let provider = provider(&fake.base_url(), &[("POE_API_KEY", fake_poe::BAD_API_KEY)]);
    let (result, _) = invoke(&provider, request("GPT-4o", "hi"));
    assert_eq!(result.unwrap_err().kind, ErrorKind::Auth);
    let req = poe_plugin_api::Request {
        api_key: Some("per-session-key-1234".into()),
        ..request("GPT-4o", "hi")
    };
    assert!(invoke(&provider, req).0.is_ok());
    let requests = rt.block_on(fake.server().received_requests()).unwrap();
    let auth = requests.last().unwrap().headers["authorization"]
        .to_str()
        .unwrap()
        .to_string();
    assert_eq!(auth, "Bearer per-session-key-1234");
}
