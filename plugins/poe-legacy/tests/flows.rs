//! The plugin against a local fake bot server (wiremock on 127.0.0.1) that
//! replays what a fastapi_poe bot server sends: the query request it must
//! receive, every event type, errors with and without `allow_retry`, HTTP
//! failures, attachments uploaded the fastapi_poe way, and cancellation.

mod common;

use std::time::{Duration, Instant};

use common::*;
use poe_plugin_api::{Attachment, ErrorKind, Event, Message, Options, OutputKind, Role};
use serde_json::{Value, json};
use wiremock::matchers::{header, method, path};
use wiremock::{Mock, ResponseTemplate};

fn mount(
    rt: &tokio::runtime::Runtime,
    server: &wiremock::MockServer,
    bot: &str,
    answer: ResponseTemplate,
) {
    rt.block_on(
        Mock::given(method("POST"))
            .and(path(format!("/bot/{bot}")))
            .respond_with(answer)
            .mount(server),
    );
}

#[test]
fn text_streams_and_the_query_matches_fastapi_poe() {
    let (rt, server) = server();
    mount(
        &rt,
        &server,
        "Claude-3-Opus",
        stream(&[meta(), text("Hello"), text(", "), text("world"), done()]),
    );
    let provider = provider(&server);
    let mut req = request("Claude-3-Opus", "hi there");
    req.options = Options {
        temperature: Some(0.2),
        stop: vec!["STOP".into()],
        ..Options::default()
    };
    let (result, rec) = invoke(&provider, req);
    let response = result.unwrap();
    assert_eq!(response.text, "Hello, world");
    assert_eq!(rec.streamed_text(), "Hello, world");
    assert_eq!(response.model.as_deref(), Some("Claude-3-Opus"));
    assert_eq!(response.finish_reason.as_deref(), Some("stop"));

    let sent = bodies(&rt, &server, "/bot/Claude-3-Opus");
    assert_eq!(sent.len(), 1);
    let headers = &sent[0].headers;
    assert_eq!(headers["authorization"], format!("Bearer {KEY}").as_str());
    assert_eq!(headers["accept"], "application/json");
    let body: Value = serde_json::from_slice(&sent[0].body).unwrap();
    assert_eq!(body["version"], "1.2");
    assert_eq!(body["type"], "query");
    assert_eq!(body["temperature"], 0.2);
    assert_eq!(body["stop_sequences"], json!(["STOP"]));
    assert_eq!(body["skip_system_prompt"], false);
    assert_eq!(body["logit_bias"], json!({}));
    for id in ["user_id", "conversation_id", "message_id"] {
        assert_eq!(body[id], "", "{id}");
    }
    assert_eq!(body["tools"], Value::Null, "tools only when given");
    assert_eq!(
        body["query"],
        json!([{
            "role": "user", "message_type": null, "sender_id": null, "sender": null,
            "content": "hi there", "parameters": {}, "content_type": "text/markdown",
            "timestamp": 0, "message_id": "", "feedback": [], "attachments": [],
            "metadata": null, "referenced_message": null, "reactions": []
        }])
    );
}

#[test]
fn replace_response_replaces_the_answer() {
    let (rt, server) = server();
    mount(
        &rt,
        &server,
        "Img",
        stream(&[
            text("Generating"),
            replace("Generating image (50%)"),
            replace("Here you go"),
            done(),
        ]),
    );
    let provider = provider(&server);
    let (result, rec) = invoke(&provider, request("Img", "draw"));
    assert_eq!(result.unwrap().text, "Here you go");
    // The extension streamed as text; the rewrite was announced.
    assert_eq!(rec.streamed_text(), "Generating image (50%)");
    assert!(rec.events().iter().any(|e| matches!(
        e,
        Event::Progress { message } if message.contains("replaced its answer")
    )));
}

#[test]
fn files_become_media_and_links() {
    let (rt, server) = server();
    let file = sse(
        "file",
        &json!({"url": "https://pfst.cf2.poecdn.net/base/image/cat.png", "content_type": "image/png",
                "name": "cat.png", "inline_ref": "ab12"}),
    );
    let pdf = sse(
        "file",
        &json!({"url": "https://pfst.cf2.poecdn.net/base/doc.pdf", "content_type": "application/pdf",
                "name": "doc.pdf", "inline_ref": null}),
    );
    mount(
        &rt,
        &server,
        "Img",
        stream(&[text("A cat: ![cat][ab12]"), file, pdf, done()]),
    );
    let provider = provider(&server);
    let (result, rec) = invoke(&provider, request("Img", "a cat"));
    let response = result.unwrap();
    assert_eq!(response.media.len(), 2);
    assert_eq!(response.media[0].kind, OutputKind::Image);
    assert_eq!(response.media[0].mime_type.as_deref(), Some("image/png"));
    assert_eq!(
        response.text,
        "A cat: ![cat][ab12]\n\n[ab12]: https://pfst.cf2.poecdn.net/base/image/cat.png\n\
         [doc.pdf](https://pfst.cf2.poecdn.net/base/doc.pdf)"
    );
    assert_eq!(rec.streamed_text(), response.text);
    let media_events = rec
        .events()
        .iter()
        .filter(|e| matches!(e, Event::Media(_)))
        .count();
    assert_eq!(media_events, 2);

    // Asked for an image: the links stay out of the text.
    let req = poe_plugin_api::Request {
        output: OutputKind::Image,
        ..request("Img", "a cat")
    };
    let (result, _) = invoke(&provider, req);
    assert_eq!(result.unwrap().text, "A cat: ![cat][ab12]");
}

#[test]
fn suggested_replies_ping_and_unknown_events_stay_out_of_the_answer() {
    let (rt, server) = server();
    mount(
        &rt,
        &server,
        "B",
        stream(&[
            "event: ping\r\ndata: \r\n\r\n".to_string(),
            text("answer"),
            sse("suggested_reply", &json!({"text": "Tell me more"})),
            sse("data", &json!({"metadata": "x"})),
            sse("mystery", &json!({})),
            done(),
        ]),
    );
    let (result, rec) = invoke(&provider(&server), request("B", "q"));
    assert_eq!(result.unwrap().text, "answer");
    assert!(rec.events().iter().any(|e| matches!(
        e,
        Event::Log { message, .. } if message.contains("mystery")
    )));
}

#[test]
fn json_events_carry_tool_calls() {
    let (rt, server) = server();
    let chunk = |delta: Value| {
        sse(
            "json",
            &json!({"choices": [{"index": 0, "delta": delta, "finish_reason": null}]}),
        )
    };
    mount(
        &rt,
        &server,
        "GPT-4o",
        stream(&[
            chunk(
                json!({"tool_calls": [{"index": 0, "id": "call_1", "type": "function",
                                          "function": {"name": "lookup", "arguments": "{\"q\":"}}]}),
            ),
            chunk(json!({"tool_calls": [{"index": 0, "function": {"arguments": "\"cat\"}"}}]})),
            done(),
        ]),
    );
    let tools = json!([{"type": "function", "function": {"name": "lookup", "description": "find",
        "parameters": {"type": "object", "properties": {"q": {"type": "string"}}, "required": ["q"]}}}]);
    let mut req = request("GPT-4o", "find the cat");
    req.options.tools = Some(tools.clone());
    let (result, rec) = invoke(&provider(&server), req);
    let response = result.unwrap();
    assert_eq!(response.finish_reason.as_deref(), Some("tool_calls"));
    assert_eq!(response.tool_calls.len(), 1);
    assert_eq!(response.tool_calls[0].id, "call_1");
    assert_eq!(response.tool_calls[0].name, "lookup");
    assert_eq!(response.tool_calls[0].arguments, "{\"q\":\"cat\"}");
    let deltas = rec
        .events()
        .iter()
        .filter(|e| matches!(e, Event::ToolCallDelta { .. }))
        .count();
    assert_eq!(deltas, 2);
    let sent = bodies(&rt, &server, "/bot/GPT-4o");
    let body: Value = serde_json::from_slice(&sent[0].body).unwrap();
    assert_eq!(body["tools"], tools);
}

#[test]
fn error_events_map_allow_retry() {
    let (rt, server) = server();
    mount(
        &rt,
        &server,
        "NoRetry",
        stream(&[
            text("par"),
            error(false, "The bot encountered an unexpected issue.", None),
            done(),
        ]),
    );
    mount(
        &rt,
        &server,
        "Retry",
        stream(&[error(true, "overloaded, try again", None), done()]),
    );
    mount(
        &rt,
        &server,
        "TooLong",
        stream(&[
            error(false, "too long", Some("user_message_too_long")),
            done(),
        ]),
    );
    mount(
        &rt,
        &server,
        "Broke",
        stream(&["event: text\r\ndata: {not json\r\n\r\n".to_string(), done()]),
    );
    let provider = provider(&server);
    let no_retry = invoke(&provider, request("NoRetry", "x")).0.unwrap_err();
    assert_eq!(no_retry.kind, ErrorKind::Upstream);
    assert_eq!(no_retry.status, Some(200), "{no_retry}");
    assert!(no_retry.message.contains("unexpected issue"), "{no_retry}");
    let retry = invoke(&provider, request("Retry", "x")).0.unwrap_err();
    assert_eq!((retry.kind, retry.status), (ErrorKind::Upstream, None));
    assert!(retry.message.contains("overloaded"));
    let too_long = invoke(&provider, request("TooLong", "x")).0.unwrap_err();
    assert_eq!(too_long.kind, ErrorKind::ContextLengthExceeded);
    let broke = invoke(&provider, request("Broke", "x")).0.unwrap_err();
    assert_eq!((broke.kind, broke.status), (ErrorKind::Upstream, Some(200)));
    assert!(broke.message.contains("malformed"), "{broke}");
}

#[test]
fn cut_short_and_empty_answers_are_errors() {
    let (rt, server) = server();
    mount(&rt, &server, "Cut", stream(&[text("half an ans")]));
    mount(&rt, &server, "Empty", stream(&[meta(), done()]));
    let provider = provider(&server);
    let cut = invoke(&provider, request("Cut", "x")).0.unwrap_err();
    assert_eq!((cut.kind, cut.status), (ErrorKind::Upstream, None));
    assert!(cut.message.contains("before the answer was done"));
    let empty = invoke(&provider, request("Empty", "x")).0.unwrap_err();
    assert!(empty.message.contains("sent no response"), "{empty}");
}

#[test]
fn http_failures_are_typed() {
    let (rt, server) = server();
    mount(
        &rt,
        &server,
        "Bad-Key",
        ResponseTemplate::new(401)
            .set_body_json(json!({"detail": format!("Invalid API key {KEY}")})),
    );
    mount(
        &rt,
        &server,
        "Nobody",
        ResponseTemplate::new(404).set_body_json(json!({"detail": "Bot does not exist"})),
    );
    mount(
        &rt,
        &server,
        "Busy",
        ResponseTemplate::new(429).insert_header("retry-after", "3"),
    );
    mount(
        &rt,
        &server,
        "Down",
        ResponseTemplate::new(502).set_body_string("<html>bad gateway</html>"),
    );
    let provider = provider(&server);
    let auth = invoke(&provider, request("Bad-Key", "x")).0.unwrap_err();
    assert_eq!(auth.kind, ErrorKind::Auth);
    assert!(!auth.message.contains(KEY), "key redacted: {auth}");
    let missing = invoke(&provider, request("Nobody", "x")).0.unwrap_err();
    assert_eq!(missing.kind, ErrorKind::ModelNotFound);
    assert!(missing.message.contains("Nobody"));
    let busy = invoke(&provider, request("Busy", "x")).0.unwrap_err();
    assert_eq!(
        (busy.kind, busy.retry_after_ms),
        (ErrorKind::RateLimited, Some(3000))
    );
    let down = invoke(&provider, request("Down", "x")).0.unwrap_err();
    assert_eq!((down.kind, down.status), (ErrorKind::Upstream, Some(502)));
}

#[test]
fn attachments_are_uploaded_the_fastapi_poe_way() {
    let (rt, server) = server();
    rt.block_on(
        Mock::given(method("POST"))
            .and(path("/poe_api/file_upload_3RD_PARTY_POST"))
            // The bare key, as fastapi_poe's upload_file sends it.
            .and(header("authorization", KEY))
            .respond_with(ResponseTemplate::new(200).set_body_json(json!({
                "attachment_url": "https://pfst.cf2.poecdn.net/base/uploaded",
                "mime_type": "image/png"
            })))
            .mount(&server),
    );
    mount(&rt, &server, "Vision", stream(&[text("a cat"), done()]));
    let provider = provider(&server);
    let req = poe_plugin_api::Request {
        messages: vec![Message {
            role: Role::User,
            content: "what is this".into(),
            attachments: vec![
                Attachment {
                    url: "data:image/png;base64,aGVsbG8=".into(),
                    content_type: None,
                    name: Some("cat.png".into()),
                },
                Attachment {
                    url: "https://example.com/doc.pdf".into(),
                    content_type: None,
                    name: Some("doc.pdf".into()),
                },
            ],
            tool_call_id: None,
            tool_calls: vec![],
        }],
        ..request("Vision", "")
    };
    let (result, _) = invoke(&provider, req);
    assert_eq!(result.unwrap().text, "a cat");

    let uploads = bodies(&rt, &server, "/poe_api/file_upload_3RD_PARTY_POST");
    assert_eq!(uploads.len(), 2);
    let multipart = String::from_utf8_lossy(&uploads[0].body).into_owned();
    assert!(
        uploads[0].headers["content-type"]
            .to_str()
            .unwrap()
            .starts_with("multipart/form-data"),
    );
    assert!(
        multipart.contains(r#"name="file"; filename="cat.png""#),
        "{multipart}"
    );
    assert!(
        multipart.contains("hello"),
        "the decoded bytes: {multipart}"
    );
    let form = String::from_utf8_lossy(&uploads[1].body).into_owned();
    assert_eq!(
        form,
        "download_url=https%3A%2F%2Fexample.com%2Fdoc.pdf&download_filename=doc.pdf"
    );

    let sent = bodies(&rt, &server, "/bot/Vision");
    let body: Value = serde_json::from_slice(&sent[0].body).unwrap();
    let attachments = &body["query"][0]["attachments"];
    assert_eq!(
        attachments[0],
        json!({"url": "https://pfst.cf2.poecdn.net/base/uploaded", "content_type": "image/png",
               "name": "cat.png", "inline_ref": null, "parsed_content": null})
    );
    assert_eq!(attachments[1]["name"], "doc.pdf");
}

#[test]
fn a_failed_upload_stops_the_call() {
    let (rt, server) = server();
    rt.block_on(
        Mock::given(method("POST"))
            .and(path("/poe_api/file_upload_3RD_PARTY_POST"))
            .respond_with(ResponseTemplate::new(400).set_body_string("file too large"))
            .mount(&server),
    );
    let provider = provider(&server);
    let mut req = request("Vision", "look");
    req.messages[0].attachments.push(Attachment {
        url: "https://example.com/huge.bin".into(),
        content_type: None,
        name: None,
    });
    let err = invoke(&provider, req).0.unwrap_err();
    assert_eq!(err.kind, ErrorKind::InvalidRequest);
    assert!(err.message.contains("file too large"), "{err}");
    assert!(bodies(&rt, &server, "/bot/Vision").is_empty());
}

#[test]
fn cancellation_stops_a_slow_bot() {
    let (rt, server) = server();
    mount(
        &rt,
        &server,
        "Slow",
        stream(&[text("late"), done()]).set_delay(Duration::from_secs(30)),
    );
    let provider = provider(&server);
    let recorder = Recorder::default();
    let canceller = recorder.clone();
    let started = Instant::now();
    let sink = poe_plugin_api::Sink::new(recorder);
    let err = std::thread::scope(|scope| {
        scope.spawn(|| cancel_when(canceller, || !bodies(&rt, &server, "/bot/Slow").is_empty()));
        provider.invoke(request("Slow", "x"), &sink).unwrap_err()
    });
    assert_eq!(err.kind, ErrorKind::Cancelled);
    assert!(started.elapsed() < Duration::from_secs(5));
}

#[test]
fn a_deadline_becomes_a_timeout() {
    let (rt, server) = server();
    mount(
        &rt,
        &server,
        "Slow",
        stream(&[text("late"), done()]).set_delay(Duration::from_secs(30)),
    );
    let req = poe_plugin_api::Request {
        timeout_ms: Some(200),
        ..request("Slow", "x")
    };
    let err = invoke(&provider(&server), req).0.unwrap_err();
    assert_eq!(err.kind, ErrorKind::Timeout);
}
