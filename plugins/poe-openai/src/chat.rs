//! `POST {base}/chat/completions`: builds the body from a plugin-api
//! `Request`, sends it, and turns the answer (JSON or SSE) into a `Response`.
//!
//! Request fields follow Poe's compatibility table
//! (<https://creator.poe.com/docs/external-applications/openai-compatible-api>):
//! `model` is the Poe bot name; `max_tokens`, `stream`, `stream_options`,
//! `top_p`, `tools`, `tool_choice`, `parallel_tool_calls` are supported;
//! `temperature` must be within 0..=2; `stop` works for non-whitespace
//! sequences. Poe ignores a top-level `reasoning_effort` (and may reject
//! ignored fields under strict validation), so `reasoning_effort` and
//! `verbosity` travel in `extra_body` with the custom parameters. Only the
//! options the caller set are sent. Assistant messages that asked for
//! tools are replayed with their `tool_calls`, so the `tool` answers after
//! them have their calls.
//!
//! Custom bot parameters (`Request::params`, e.g. `aspect_ratio`) go in an
//! `extra_body` object. Poe documents custom parameters for the
//! OpenAI-compatible API as `extra_body` (the OpenAI SDK's `extra_body=`),
//! and Poe's own client, poe-platform/poe-code `src/services/llm-client.ts`,
//! sends them exactly so: `body.extra_body = params` on `/chat/completions`.
//! Poe calls parameter passing "best effort": a bot ignores what it does not
//! know. Values stay strings, as Poe's client sends them.

use poe_plugin_api::{
    Attachment, Event, LogLevel, Message, OutputKind, PluginError, Request, Response, Role,
    ToolCall,
};
use serde_json::{Map, Value, json};

use crate::wire::{Assembled, Completion};
use crate::{Call, errors, media, ratelimit, sse};

fn role_name(role: Role) -> &'static str {
    match role {
        Role::System => "system",
        Role::User => "user",
        Role::Assistant => "assistant",
        Role::Tool => "tool",
    }
}

/// True when the attachment is an image the model can look at.
fn is_image(attachment: &Attachment) -> bool {
    let declared = attachment
        .content_type
        .as_deref()
        .is_some_and(|t| t.to_ascii_lowercase().starts_with("image/"));
    declared
        || attachment
            .url
            .to_ascii_lowercase()
            .starts_with("data:image/")
        || media::guess_mime(&attachment.url).is_some_and(|m| m.starts_with("image/"))
}

/// One OpenAI content part for an attachment. Images become `image_url`
/// parts (https or data URLs). Other files sent inline (data URLs) become
/// `file` parts with `file_data`, OpenAI's shape for documents such as PDFs.
/// A non-image file known only by an https URL has no content-part form in
/// chat completions, so the model is told the link in a text part.
fn attachment_part(attachment: &Attachment) -> Value {
    if is_image(attachment) {
        return json!({"type": "image_url", "image_url": {"url": attachment.url}});
    }
    let name = attachment.name.as_deref().unwrap_or("attachment");
    if attachment.url.starts_with("data:") {
        json!({"type": "file", "file": {"filename": name, "file_data": attachment.url}})
    } else {
        json!({"type": "text", "text": format!("Attached file {name}: {}", attachment.url)})
    }
}

fn message_json(message: &Message) -> Value {
    let mut out = Map::new();
    out.insert("role".into(), json!(role_name(message.role)));
    if message.attachments.is_empty() {
        out.insert("content".into(), json!(message.content));
    } else {
        let mut parts = Vec::with_capacity(message.attachments.len() + 1);
        if !message.content.is_empty() {
            parts.push(json!({"type": "text", "text": message.content}));
        }
        parts.extend(message.attachments.iter().map(attachment_part));
        out.insert("content".into(), Value::Array(parts));
    }
    if let Some(id) = &message.tool_call_id {
        out.insert("tool_call_id".into(), json!(id));
    }
    if !message.tool_calls.is_empty() {
        let calls: Vec<Value> = message
            .tool_calls
            .iter()
            .map(ToolCall::openai_json)
            .collect();
        out.insert("tool_calls".into(), Value::Array(calls));
        // OpenAI's shape: an assistant turn that only calls tools has null content.
        if message.content.is_empty() && message.attachments.is_empty() {
            out.insert("content".into(), Value::Null);
        }
    }
    Value::Object(out)
}

/// The JSON body for `request`; `stream` says whether to ask for SSE.
pub(crate) fn build_body(request: &Request, stream: bool) -> Value {
    let mut body = Map::new();
    body.insert("model".into(), json!(request.model));
    body.insert(
        "messages".into(),
        Value::Array(request.messages.iter().map(message_json).collect()),
    );
    body.insert("stream".into(), json!(stream));
    if stream {
        // Poe lists stream_options as fully supported; without it a streamed
        // answer carries no usage at all.
        body.insert("stream_options".into(), json!({"include_usage": true}));
    }
    let o = &request.options;
    if let Some(v) = o.temperature {
        body.insert("temperature".into(), json!(v));
    }
    if let Some(v) = o.top_p {
        body.insert("top_p".into(), json!(v));
    }
    if let Some(v) = o.max_tokens {
        body.insert("max_tokens".into(), json!(v));
    }
    if !o.stop.is_empty() {
        body.insert("stop".into(), json!(o.stop));
    }
    if let Some(v) = &o.tools {
        body.insert("tools".into(), v.clone());
    }
    if let Some(v) = &o.tool_choice {
        body.insert("tool_choice".into(), v.clone());
    }
    if let Some(v) = o.parallel_tool_calls {
        body.insert("parallel_tool_calls".into(), json!(v));
    }
    let mut extra: Map<String, Value> = request
        .params
        .iter()
        .map(|(k, v)| (k.clone(), json!(v)))
        .collect();
    if let Some(v) = &o.reasoning_effort {
        extra.insert("reasoning_effort".into(), json!(v));
    }
    if let Some(v) = &o.verbosity {
        extra.insert("verbosity".into(), json!(v));
    }
    if !extra.is_empty() {
        body.insert("extra_body".into(), Value::Object(extra));
    }
    Value::Object(body)
}

/// Runs one chat completion.
pub(crate) async fn run(call: &Call<'_>) -> Result<Response, PluginError> {
    let request = call.request;
    let wants_media = request.output != OutputKind::Text;
    // Poe: "Image, video, and audio bots should be called with stream=False
    // for optimal performance and reliability." Text streams when asked.
    let upstream_stream = request.stream && !wants_media;
    let url = format!("{}/chat/completions", call.base_url);
    let response = call
        .send_json(
            || call.http.post(&url).bearer_auth(call.api_key),
            build_body(request, upstream_stream),
        )
        .await
        .map_err(errors::transport)?;
    ratelimit::report(call.sink, response.headers());
    let status = response.status().as_u16();
    if !response.status().is_success() {
        return Err(errors::from_response(response).await);
    }
    // Decide by what actually came back, not by what was asked for: a bot
    // may answer JSON to a streaming request or stream to a plain one.
    let is_sse = response
        .headers()
        .get(reqwest::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.to_ascii_lowercase().starts_with("text/event-stream"));
    let answer = if is_sse {
        sse::read(response, status, call.sink, request.stream).await?
    } else {
        let body = response.text().await.map_err(errors::transport)?;
        let answer = parse_completion(&body, status)?;
        if request.stream {
            // The caller asked for a stream; give it the same events a
            // streamed answer would have produced, all at once.
            emit_whole(call, &answer);
        }
        answer
    };
    let mut out = answer.into_response(&request.model);
    if wants_media {
        out.media = media::extract(&out.text, request.output);
        for item in &out.media {
            call.sink.emit(&Event::Media(item.clone()));
        }
        if out.media.is_empty() {
            call.sink.log(
                LogLevel::Warn,
                format!("{} answered without a media link", request.model),
            );
        }
    }
    Ok(out)
}

/// Parses a whole `chat.completion` body.
fn parse_completion(body: &str, status: u16) -> Result<Assembled, PluginError> {
    let completion: Completion = serde_json::from_str(body).map_err(|e| {
        errors::malformed(
            status,
            "JSON",
            format!("{e} in {:?}", errors::truncate(body.trim(), 80)),
        )
    })?;
    if let Some(error) = &completion.error {
        return Err(errors::from_stream_error(status, error));
    }
    if completion.choices.as_ref().is_none_or(|c| c.is_empty()) {
        return Err(errors::malformed(
            status,
            "JSON",
            "a completion without choices",
        ));
    }
    let mut answer = Assembled::default();
    answer.apply_completion(completion);
    Ok(answer)
}

fn emit_whole(call: &Call<'_>, answer: &Assembled) {
    if !answer.text.is_empty() {
        call.sink.emit(&Event::TextDelta {
            text: answer.text.clone(),
        });
    }
    if let Some(usage) = &answer.usage {
        call.sink.emit(&Event::Usage(usage.clone()));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use poe_plugin_api::Options;

    #[test]
    fn only_set_options_are_sent() {
        let request = Request {
            model: "GPT-4o".into(),
            messages: vec![Message::user("hi")],
            ..Request::default()
        };
        let body = build_body(&request, false);
        assert_eq!(
            body,
            json!({"model": "GPT-4o", "messages": [{"role": "user", "content": "hi"}], "stream": false})
        );
    }

    #[test]
    fn options_params_and_stream_options() {
        let request = Request {
            model: "m".into(),
            messages: vec![Message::user("hi")],
            params: [("aspect_ratio".to_string(), "16:9".to_string())].into(),
            options: Options {
                temperature: Some(0.5),
                top_p: Some(0.9),
                max_tokens: Some(100),
                stop: vec!["END".into()],
                reasoning_effort: Some("high".into()),
                verbosity: Some("low".into()),
                tools: Some(json!([{"type": "function", "function": {"name": "f"}}])),
                tool_choice: Some(json!("auto")),
                parallel_tool_calls: Some(false),
            },
            ..Request::default()
        };
        let body = build_body(&request, true);
        assert_eq!(body["stream_options"], json!({"include_usage": true}));
        assert_eq!(
            body["extra_body"],
            json!({"aspect_ratio": "16:9", "reasoning_effort": "high", "verbosity": "low"}),
            "Poe ignores a top-level reasoning_effort"
        );
        assert!(body.get("reasoning_effort").is_none());
        assert_eq!(body["temperature"], json!(0.5));
        assert_eq!(body["max_tokens"], json!(100));
        assert_eq!(body["stop"], json!(["END"]));
        assert_eq!(body["tool_choice"], json!("auto"));
        assert_eq!(body["parallel_tool_calls"], json!(false));
        assert_eq!(body["tools"][0]["function"]["name"], json!("f"));
    }

    #[test]
    fn attachments_become_content_parts() {
        let message = Message {
            role: Role::User,
            content: "look".into(),
            attachments: vec![
                Attachment {
                    url: "https://x.example/cat.png".into(),
                    content_type: None,
                    name: None,
                },
                Attachment {
                    url: "data:application/pdf;base64,JVBER".into(),
                    content_type: Some("application/pdf".into()),
                    name: Some("doc.pdf".into()),
                },
                Attachment {
                    url: "https://x.example/notes.txt".into(),
                    content_type: Some("text/plain".into()),
                    name: Some("notes.txt".into()),
                },
            ],
            tool_call_id: None,
            tool_calls: vec![],
        };
        let v = message_json(&message);
        let parts = v["content"].as_array().unwrap();
        assert_eq!(parts[0], json!({"type": "text", "text": "look"}));
        assert_eq!(parts[1]["type"], "image_url");
        assert_eq!(parts[1]["image_url"]["url"], "https://x.example/cat.png");
        assert_eq!(parts[2]["type"], "file");
        assert_eq!(parts[2]["file"]["filename"], "doc.pdf");
        assert_eq!(parts[3]["type"], "text");
    }

    #[test]
    fn tool_messages_keep_their_call_id() {
        let message = Message {
            role: Role::Tool,
            content: "42".into(),
            attachments: vec![],
            tool_call_id: Some("call_1".into()),
            tool_calls: vec![],
        };
        assert_eq!(
            message_json(&message),
            json!({"role": "tool", "content": "42", "tool_call_id": "call_1"})
        );
    }

    #[test]
    fn completion_without_choices_is_malformed() {
        let err = parse_completion("{}", 200).unwrap_err();
        assert!(err.message.contains("malformed JSON"), "{}", err.message);
        assert_eq!(err.status, Some(200));
        assert!(parse_completion("not json", 200).is_err());
    }

    #[test]
    fn assistant_tool_calls_are_replayed() {
        let message = Message {
            role: Role::Assistant,
            content: String::new(),
            attachments: vec![],
            tool_call_id: None,
            tool_calls: vec![poe_plugin_api::ToolCall {
                id: "call_1".into(),
                name: "get_weather".into(),
                arguments: "{\"city\":\"Paris\"}".into(),
            }],
        };
        assert_eq!(
            message_json(&message),
            json!({
                "role": "assistant",
                "content": null,
                "tool_calls": [{
                    "id": "call_1",
                    "type": "function",
                    "function": {"name": "get_weather", "arguments": "{\"city\":\"Paris\"}"},
                }],
            })
        );
    }
}
