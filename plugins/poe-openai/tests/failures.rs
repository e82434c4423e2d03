//! Every way a call can fail, and what the host gets back: the HTTP error
//! mapping (Poe's documented statuses and bodies), rate-limit hints, garbage
//! from the upstream, dead connections, cancellation and deadlines.

mod common;

use std::time::{Duration, Instant};

use common::*;
use poe_openai::PoeOpenAi;
use poe_plugin_api::{AsyncProvider, Config, Driver, ErrorKind, OutputKind, PluginError};
use serde_json::json;
use wiremock::matchers::{method, path};
use wiremock::{Mock, ResponseTemplate};

fn fake_error(model: &str) -> PluginError {
    let (_rt, fake) = fake();
    let provider = provider(&fake.base_url(), &[]);
    invoke(&provider, request(model, "hi")).0.unwrap_err()
}

/// A server whose chat endpoint answers `template`.
fn answering(template: ResponseTemplate) -> (tokio::runtime::Runtime, wiremock::MockServer) {
    let (rt, server) = mock_server();
    rt.block_on(
        Mock::given(method("POST"))
            .and(path("/v1/chat/completions"))
            .respond_with(template)
            .mount(&server),
    );
    (rt, server)
}

fn error_from(template: ResponseTemplate, stream: bool) -> PluginError {
    let (_rt, server) = answering(template);
    let provider = provider(&v1(&server), &[]);
    let req = poe_plugin_api::Request {
        stream,
        ..request("GPT-4o", "hi")
    };
    invoke(&provider, req).0.unwrap_err()
}

#[test]
fn unauthorized_is_auth() {
    let e = fake_error("fake-401");
    assert_eq!(e.kind, ErrorKind::Auth);
    assert_eq!(e.status, Some(401));
    assert!(
        e.message.contains("Invalid API key provided"),
        "{}",
        e.message
    );
}

#[test]
fn payment_required_says_insufficient_points() {
    let e = fake_error("fake-402");
    assert_eq!(e.kind, ErrorKind::Upstream);
    assert_eq!(e.status, Some(402));
    assert!(
        e.message.contains("insufficient Poe points"),
        "{}",
        e.message
    );
}

#[test]
fn not_found_is_model_not_found() {
    let e = fake_error("fake-404");
    assert_eq!(e.kind, ErrorKind::ModelNotFound);
    assert_eq!(e.status, Some(404));
}

#[test]
fn model_not_found_code_on_400_is_model_not_found() {
    let e = error_from(
        ResponseTemplate::new(400).set_body_json(json!({"error": {
            "message": "Model 'nope' does not exist",
            "type": "invalid_request_error",
            "code": "model_not_found"}})),
        false,
    );
    assert_eq!(e.kind, ErrorKind::ModelNotFound);
    assert_eq!(e.status, Some(400));
}

#[test]
fn too_many_requests_is_rate_limited_with_retry_after() {
    let e = fake_error("fake-429");
    assert_eq!(e.kind, ErrorKind::RateLimited);
    assert_eq!(e.status, Some(429));
    assert_eq!(e.retry_after_ms, Some(1000));
}

#[test]
fn rate_limit_hint_from_http_date_or_reset_header() {
    let at = std::time::SystemTime::now() + Duration::from_secs(20);
    let e = error_from(
        ResponseTemplate::new(429).insert_header("retry-after", httpdate::fmt_http_date(at)),
        false,
    );
    let ms = e.retry_after_ms.unwrap();
    assert!((15_000..=20_000).contains(&ms), "{ms}");

    let e = error_from(
        ResponseTemplate::new(429)
            .insert_header("x-ratelimit-limit-requests", "500")
            .insert_header("x-ratelimit-remaining-requests", "0")
            .insert_header("x-ratelimit-reset-requests", "7"),
        false,
    );
    assert_eq!(e.kind, ErrorKind::RateLimited);
    assert_eq!(e.retry_after_ms, Some(7000));
}

#[test]
fn server_error_is_upstream_with_status() {
    let e = fake_error("fake-500");
    assert_eq!(e.kind, ErrorKind::Upstream);
    assert_eq!(e.status, Some(500));
}

#[test]
fn context_length_is_recognised() {
    let e = error_from(
        ResponseTemplate::new(413).set_body_json(json!({"error": {
            "code": 413, "type": "request_too_large", "message": "tokens > context window"}})),
        false,
    );
    assert_eq!(e.kind, ErrorKind::ContextLengthExceeded);
    let e = error_from(
        ResponseTemplate::new(400).set_body_json(json!({"error": {
            "type": "invalid_request_error",
            "message": "This model's maximum context length is 128000 tokens"}})),
        false,
    );
    assert_eq!(e.kind, ErrorKind::ContextLengthExceeded);
    let e = error_from(
        ResponseTemplate::new(400).set_body_json(json!({"error": {
            "type": "invalid_request_error", "code": "invalid_parameter",
            "message": "Temperature must be between 0 and 2"}})),
        false,
    );
    assert_eq!(e.kind, ErrorKind::InvalidRequest);
}

#[test]
fn garbage_sse_is_a_clear_upstream_error() {
    for stream in [true, false] {
        let (_rt, fake) = fake();
        let provider = provider(&fake.base_url(), &[]);
        let req = poe_plugin_api::Request {
            stream,
            ..request("fake-garbage", "hi")
        };
        let e = invoke(&provider, req).0.unwrap_err();
        assert_eq!(e.kind, ErrorKind::Upstream);
        assert_eq!(e.status, Some(200));
        assert!(
            e.message.starts_with("upstream sent malformed SSE:"),
            "{}",
            e.message
        );
        assert!(e.message.contains("this is not json"), "{}", e.message);
    }
}

#[test]
fn garbage_json_is_a_clear_upstream_error() {
    let e = error_from(
        ResponseTemplate::new(200).set_body_raw("{\"choices\": [", "application/json"),
        false,
    );
    assert_eq!(e.kind, ErrorKind::Upstream);
    assert!(
        e.message.starts_with("upstream sent malformed JSON:"),
        "{}",
        e.message
    );
}

#[test]
fn stream_cut_short_is_an_error() {
    let body = "data: {\"choices\":[{\"index\":0,\"delta\":{\"content\":\"Hel\"}}]}\n\n";
    let e = error_from(
        ResponseTemplate::new(200).set_body_raw(body, "text/event-stream"),
        true,
    );
    assert_eq!(e.kind, ErrorKind::Upstream);
    assert!(
        e.message.contains("before the answer was complete"),
        "{}",
        e.message
    );
}

#[test]
fn error_inside_the_stream_is_mapped() {
    let body = "data: {\"choices\":[{\"index\":0,\"delta\":{\"content\":\"Hel\"}}]}\n\n\
                data: {\"error\":{\"code\":502,\"type\":\"upstream_error\",\"message\":\"model backend not working\"}}\n\n";
    let e = error_from(
        ResponseTemplate::new(200).set_body_raw(body, "text/event-stream"),
        true,
    );
    assert_eq!(e.kind, ErrorKind::Upstream);
    assert!(
        e.message.contains("model backend not working"),
        "{}",
        e.message
    );
}

#[test]
fn connection_refused_is_upstream_without_status() {
    // Bind then free a port so nothing listens there.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let provider = provider(&format!("http://127.0.0.1:{port}/v1"), &[]);
    let e = invoke(&provider, request("GPT-4o", "hi")).0.unwrap_err();
    assert_eq!(e.kind, ErrorKind::Upstream);
    assert_eq!(e.status, None);
    assert!(
        e.message.starts_with("cannot connect to Poe"),
        "{}",
        e.message
    );
}

#[test]
fn api_key_never_appears_in_errors() {
    let key = "sk-very-secret-key-123";
    let (_rt, server) = answering(ResponseTemplate::new(401).set_body_json(json!({"error": {
        "message": format!("Invalid API key {key}"), "type": "authentication_error"}})));
    let provider = provider(&v1(&server), &[("POE_API_KEY", key)]);
    let e = invoke(&provider, request("GPT-4o", "hi")).0.unwrap_err();
    assert_eq!(e.kind, ErrorKind::Auth);
    assert!(!e.message.contains(key), "{}", e.message);
    assert!(e.message.contains("[redacted]"));
}

#[test]
fn missing_key_fails_before_any_request() {
    let mut config = Config::new();
    config.insert("POE_BASE_URL".into(), "http://127.0.0.1:9/v1".into());
    let provider = Driver::<PoeOpenAi>::open(config).unwrap();
    let e = invoke(&provider, request("GPT-4o", "hi")).0.unwrap_err();
    assert_eq!(e.kind, ErrorKind::Auth);
}

#[test]
fn bad_base_url_refuses_to_open() {
    let mut config = Config::new();
    config.insert("POE_BASE_URL".into(), "not a url".into());
    let e = PoeOpenAi::open(config).err().unwrap();
    assert_eq!(e.kind, ErrorKind::Unavailable);
}

#[test]
fn cancel_stops_a_slow_request_quickly() {
    let (rt, fake) = fake();
    let provider = provider(&fake.base_url(), &[]);
    let recorder = Recorder::default();
    let sink = poe_plugin_api::Sink::new(recorder.clone());
    let canceller = recorder.clone();
    let started = Instant::now();
    let e = std::thread::scope(|scope| {
        scope.spawn(|| cancel_when(canceller, || !rt.block_on(fake.chat_requests()).is_empty()));
        provider
            .invoke(request("fake-slow", "hi"), &sink)
            .unwrap_err()
    });
    let elapsed = started.elapsed();
    assert_eq!(e.kind, ErrorKind::Cancelled);
    assert!(elapsed < Duration::from_secs(2), "took {elapsed:?}");
}

#[test]
fn already_cancelled_call_does_nothing() {
    let (rt, fake) = fake();
    let provider = provider(&fake.base_url(), &[]);
    let recorder = Recorder::default();
    recorder.cancel();
    let sink = poe_plugin_api::Sink::new(recorder);
    let e = provider.invoke(request("GPT-4o", "hi"), &sink).unwrap_err();
    assert_eq!(e.kind, ErrorKind::Cancelled);
    assert!(rt.block_on(fake.chat_requests()).is_empty());
}

#[test]
fn deadline_turns_into_timeout() {
    let (_rt, fake) = fake();
    let provider = provider(&fake.base_url(), &[]);
    let started = Instant::now();
    let req = poe_plugin_api::Request {
        timeout_ms: Some(300),
        ..request("fake-slow", "hi")
    };
    let e = invoke(&provider, req).0.unwrap_err();
    assert_eq!(e.kind, ErrorKind::Timeout);
    assert!(started.elapsed() < Duration::from_secs(2));
}

#[test]
fn cancel_interrupts_video_polling() {
    let (rt, fake) = fake();
    // A poll interval far longer than the test: only cancel can end it.
    let provider = provider(&fake.base_url(), &[("POE_VIDEO_POLL_MS", "60000")]);
    let recorder = Recorder::default();
    let sink = poe_plugin_api::Sink::new(recorder.clone());
    let canceller = recorder.clone();
    // The job exists upstream, so the plugin is polling it.
    let created = || {
        rt.block_on(fake.server().received_requests())
            .unwrap_or_default()
            .iter()
            .any(|r| r.method.as_str() == "POST" && r.url.path() == "/v1/videos")
    };
    let started = Instant::now();
    let e = std::thread::scope(|scope| {
        scope.spawn(|| cancel_when(canceller, created));
        provider
            .invoke(media_request("Veo-3.1", "x", OutputKind::Video), &sink)
            .unwrap_err()
    });
    assert_eq!(e.kind, ErrorKind::Cancelled);
    assert!(started.elapsed() < Duration::from_secs(2));
}

#[test]
fn concurrent_calls_share_one_provider() {
    let (_rt, fake) = fake();
    let provider = provider(&fake.base_url(), &[]);
    std::thread::scope(|s| {
        let handles: Vec<_> = (0..8)
            .map(|i| {
                let provider = &provider;
                s.spawn(move || {
                    let req = poe_plugin_api::Request {
                        stream: i % 2 == 0,
                        ..request("GPT-4o", &format!("call {i}"))
                    };
                    invoke(provider, req).0.unwrap().text
                })
            })
            .collect();
        for (i, h) in handles.into_iter().enumerate() {
            assert_eq!(h.join().unwrap(), format!("Echo from GPT-4o: call {i}"));
        }
    });
}
