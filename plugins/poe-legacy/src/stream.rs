//! One bot query: upload attachments, `POST {base}{bot}`, and read the
//! server-sent events into an answer.
//!
//! The events and their `data` JSON, as fastapi_poe's client reads them
//! (`_BotContext.perform_query_request`) and its server writes them
//! (`PoeBot.text_event` etc.):
//! - `text` `{"text"}`: more answer text;
//! - `replace_response` `{"text"}`: the answer so far is replaced;
//! - `file` `{"url", "content_type", "name", "inline_ref"}`: an attachment
//!   of the answer (a media link here);
//! - `json`: arbitrary JSON, in practice OpenAI chat chunks carrying
//!   function calls (`choices[0].delta.tool_calls`) or `content`;
//! - `suggested_reply` `{"text"}`: a follow-up the user might send; not
//!   part of the answer;
//! - `meta` `{"content_type", "linkify", "suggested_replies", ...}`: only
//!   honoured as the first event, and carries nothing an agent needs;
//! - `error` `{"allow_retry", "text", "error_type", "raw_response"}`: the
//!   call failed (see `errors`);
//! - `done` `{}`: the answer is complete. A stream that ends without it was
//!   cut short;
//! - `ping` (FastAPI keep-alive) and `data` `{"metadata"}` are ignored.

use std::collections::BTreeMap;

use eventsource_stream::{EventStreamError, Eventsource};
use futures::StreamExt;
use poe_plugin_api::lanes::Outgoing;
use poe_plugin_api::{
    ErrorKind, Event, LogLevel, Media, OutputKind, PluginError, Response, ToolCall,
};
use reqwest::Url;
use serde_json::{Map, Value};

use crate::errors::{self, truncate};
use crate::{Call, query, upload};

/// How much of a bad event to quote in an error.
const SNIPPET: usize = 80;

/// Runs one query to the bot named by `call.request.model`.
pub(crate) async fn run(call: &Call<'_>) -> Result<Response, PluginError> {
    let request = call.request;
    let bot = request.model.trim();
    if request.messages.iter().any(|m| !m.attachments.is_empty()) {
        // Uploads (to another host) may take long: calls waiting for this
        // one to open the connection to Poe go now, each on its own.
        call.http.opened();
    }
    let attachments = upload::upload_all(call).await?;
    let body = serde_json::to_vec(&query::build_body(request, &attachments)?)
        .map_err(|e| PluginError::internal(format!("cannot encode the query: {e}")))?;
    let url = bot_url(call.base_url, bot)?;
    // Waits for the client's connection to Poe when another call is
    // opening it.
    let response = call
        .http
        .send(body, |body| {
            call.http
                .post(url.clone())
                // fastapi_poe's `_BotContext.headers`.
                .header(reqwest::header::ACCEPT, "application/json")
                .header(reqwest::header::CONTENT_TYPE, "application/json")
                .bearer_auth(call.api_key)
                .body(match body {
                    Outgoing::Opening(opening) => reqwest::Body::wrap(opening),
                    Outgoing::Whole(bytes) => reqwest::Body::from(bytes),
                })
                .send()
        })
        .await
        .map_err(errors::transport)?;
    let status = response.status().as_u16();
    if status != 200 {
        return Err(errors::from_response(bot, response).await);
    }
    let is_sse = response
        .headers()
        .get(reqwest::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.to_ascii_lowercase().starts_with("text/event-stream"));
    if !is_sse {
        // httpx_sse refuses such an answer and fastapi_poe retries it.
        let body = errors::read_capped(response, 4096).await;
        let said = errors::body_message(&body).unwrap_or_else(|| "no event stream".into());
        return Err(PluginError::new(
            ErrorKind::Upstream,
            truncate(
                &format!("{bot} did not answer with an event stream: {said}"),
                300,
            ),
        ));
    }
    let mut answer = read(response, status, call, bot).await?;
    if answer.text.is_empty() && answer.media.is_empty() && answer.calls.is_empty() {
        // fastapi_poe's get_final_response: BotError "Bot ... sent no response".
        return Err(PluginError::new(
            ErrorKind::Upstream,
            format!("{bot} sent no response"),
        ));
    }
    answer.link_files(call);
    Ok(answer.into_response(bot))
}

/// `{base}{bot}`, with the bot name as one properly escaped path segment.
fn bot_url(base: &Url, bot: &str) -> Result<Url, PluginError> {
    let mut url = base.clone();
    url.path_segments_mut()
        .map_err(|_| {
            PluginError::new(
                ErrorKind::Unavailable,
                "POE_LEGACY_BASE_URL cannot take a path",
            )
        })?
        .pop_if_empty()
        .push(bot);
    Ok(url)
}

/// A file the bot attached to its answer.
#[derive(Debug)]
struct FileRef {
    url: String,
    name: String,
    inline_ref: Option<String>,
}

/// A tool call being put together from `json` chunks.
#[derive(Debug, Default)]
struct PartialCall {
    id: Option<String>,
    name: Option<String>,
    arguments: String,
}

/// The answer so far.
#[derive(Debug, Default)]
struct Answer {
    text: String,
    media: Vec<Media>,
    files: Vec<FileRef>,
    calls: BTreeMap<u32, PartialCall>,
    suggested_replies: Vec<String>,
}

/// Reads the event stream until `done`.
async fn read(
    response: reqwest::Response,
    status: u16,
    call: &Call<'_>,
    bot: &str,
) -> Result<Answer, PluginError> {
    let sink = call.sink;
    let emit = call.request.stream;
    let mut events = response
        .bytes_stream()
        // Linear parsing however large the reads (see `chunks`).
        .flat_map(|read| futures::stream::iter(poe_plugin_api::chunks::by_line(read)))
        .eventsource();
    let mut answer = Answer::default();
    let mut count = 0usize;
    while let Some(item) = events.next().await {
        let event = item.map_err(|e| match e {
            EventStreamError::Transport(err) => errors::transport(err),
            other => errors::malformed(status, other),
        })?;
        count += 1;
        let data = event.data.as_str();
        let object = || json_object(data, &event.event, status);
        match event.event.as_str() {
            "done" => {
                if !answer.suggested_replies.is_empty() {
                    sink.log(
                        LogLevel::Debug,
                        format!("{bot} suggested: {}", answer.suggested_replies.join(" | ")),
                    );
                }
                return Ok(answer);
            }
            "text" => {
                let text = string_field(&object()?, "text", &event.event, status)?;
                if emit && !text.is_empty() {
                    sink.text(text.clone());
                }
                answer.text.push_str(&text);
            }
            "replace_response" => {
                let text = string_field(&object()?, "text", &event.event, status)?;
                // A replacement that only extends the answer streams as the
                // new part; any other cannot be un-sent, so it is announced
                // and the final result carries the replacement.
                match text.strip_prefix(answer.text.as_str()) {
                    Some(rest) if emit && !rest.is_empty() => sink.text(rest.to_string()),
                    Some(_) => {}
                    None if emit => sink.emit(&Event::Progress {
                        message: format!("{bot} replaced its answer: {}", truncate(&text, SNIPPET)),
                    }),
                    None => {}
                }
                answer.text = text;
            }
            "file" => {
                let data = object()?;
                let url = string_field(&data, "url", &event.event, status)?;
                let content_type = string_field(&data, "content_type", &event.event, status)?;
                let name = string_field(&data, "name", &event.event, status)?;
                let inline_ref = data
                    .get("inline_ref")
                    .and_then(Value::as_str)
                    .map(str::to_string);
                let media = Media {
                    url: url.clone(),
                    kind: kind_of(&content_type),
                    mime_type: Some(content_type),
                };
                sink.emit(&Event::Media(media.clone()));
                answer.media.push(media);
                answer.files.push(FileRef {
                    url,
                    name,
                    inline_ref,
                });
            }
            "suggested_reply" => {
                let text = string_field(&object()?, "text", &event.event, status)?;
                answer.suggested_replies.push(text);
            }
            "json" => {
                let value: Value =
                    serde_json::from_str(data).map_err(|e| bad_json(e, data, status))?;
                answer.apply_json(&value, call);
            }
            "meta" => {
                // The spec ignores a meta event that is not the first one.
                if count == 1 {
                    sink.log(
                        LogLevel::Debug,
                        format!("{bot} meta: {}", truncate(data, SNIPPET)),
                    );
                }
            }
            "error" => {
                return Err(errors::from_error_event(bot, status, &object()?));
            }
            "ping" | "data" => {}
            other => sink.log(
                LogLevel::Warn,
                format!(
                    "{bot} sent an unknown event type {:?}",
                    truncate(other, SNIPPET)
                ),
            ),
        }
    }
    // fastapi_poe reports "Bot exited without sending 'done' event"; here the
    // answer is known to be cut short, so it is an error, not a result.
    Err(PluginError::new(
        ErrorKind::Upstream,
        format!("{bot} closed the stream before the answer was done"),
    ))
}

fn bad_json(error: serde_json::Error, data: &str, status: u16) -> PluginError {
    errors::malformed(status, format!("{error} in {:?}", truncate(data, SNIPPET)))
}

/// The `data` of `event` as a JSON object.
fn json_object(data: &str, event: &str, status: u16) -> Result<Map<String, Value>, PluginError> {
    match serde_json::from_str::<Value>(data) {
        Ok(Value::Object(map)) => Ok(map),
        Ok(_) => Err(errors::malformed(
            status,
            format!("'{event}' event data is not a JSON object"),
        )),
        Err(e) => Err(bad_json(e, data, status)),
    }
}

/// A string field the protocol requires.
fn string_field(
    data: &Map<String, Value>,
    field: &str,
    event: &str,
    status: u16,
) -> Result<String, PluginError> {
    data.get(field)
        .and_then(Value::as_str)
        .map(str::to_string)
        .ok_or_else(|| {
            errors::malformed(
                status,
                format!("'{event}' event without a string '{field}'"),
            )
        })
}

/// What kind of media a MIME type is.
fn kind_of(content_type: &str) -> OutputKind {
    let lower = content_type.to_ascii_lowercase();
    if lower.starts_with("image/") {
        OutputKind::Image
    } else if lower.starts_with("video/") {
        OutputKind::Video
    } else if lower.starts_with("audio/") {
        OutputKind::Audio
    } else {
        OutputKind::Text
    }
}

impl Answer {
    /// Folds in a `json` event: OpenAI chat chunks with tool-call deltas
    /// (what fastapi_poe's `_stream_request_with_tools` reads) or content.
    fn apply_json(&mut self, value: &Value, call: &Call<'_>) {
        let emit = call.request.stream;
        let Some(delta) = value
            .get("choices")
            .and_then(|c| c.get(0))
            .and_then(|c| c.get("delta"))
        else {
            call.sink.log(
                LogLevel::Debug,
                format!("json event: {}", truncate(&value.to_string(), SNIPPET)),
            );
            return;
        };
        if let Some(content) = delta.get("content").and_then(Value::as_str)
            && !content.is_empty()
        {
            if emit {
                call.sink.text(content.to_string());
            }
            self.text.push_str(content);
        }
        let calls = delta
            .get("tool_calls")
            .and_then(Value::as_array)
            .map(Vec::as_slice)
            .unwrap_or(&[]);
        for (position, piece) in calls.iter().enumerate() {
            let index = piece
                .get("index")
                .and_then(Value::as_u64)
                .and_then(|i| u32::try_from(i).ok())
                .unwrap_or_else(|| u32::try_from(position).unwrap_or(u32::MAX));
            let id = piece.get("id").and_then(Value::as_str).map(str::to_string);
            let function = piece.get("function");
            let name = function
                .and_then(|f| f.get("name"))
                .and_then(Value::as_str)
                .map(str::to_string);
            let arguments = match function.and_then(|f| f.get("arguments")) {
                Some(Value::String(s)) => s.clone(),
                Some(Value::Null) | None => String::new(),
                Some(other) => other.to_string(),
            };
            let entry = self.calls.entry(index).or_default();
            if let Some(id) = id.clone().filter(|i| !i.is_empty()) {
                entry.id = Some(id);
            }
            if let Some(name) = name.clone().filter(|n| !n.is_empty()) {
                entry.name = Some(name);
            }
            entry.arguments.push_str(&arguments);
            if emit {
                call.sink.emit(&Event::ToolCallDelta {
                    index,
                    id,
                    name,
                    arguments,
                });
            }
        }
    }

    /// A text answer cannot carry resource links, so the bot's files are
    /// linked at its end: as the definition of an `![..][inline_ref]`
    /// reference the text already uses, or as a plain markdown link.
    fn link_files(&mut self, call: &Call<'_>) {
        if call.request.output != OutputKind::Text || self.files.is_empty() {
            return;
        }
        let mut extra = String::new();
        for file in &self.files {
            match &file.inline_ref {
                Some(r) if self.text.contains(&format!("[{r}]")) => {
                    extra.push_str(&format!("\n[{r}]: {}", file.url));
                }
                _ => extra.push_str(&format!("\n[{}]({})", file.name, file.url)),
            }
        }
        let extra = if self.text.is_empty() {
            extra.trim_start().to_string()
        } else {
            format!("\n{extra}")
        };
        if call.request.stream {
            call.sink.text(extra.clone());
        }
        self.text.push_str(&extra);
    }

    fn into_response(self, bot: &str) -> Response {
        let tool_calls: Vec<ToolCall> = self
            .calls
            .into_iter()
            .map(|(index, call)| ToolCall {
                id: call.id.unwrap_or_else(|| format!("call_{index}")),
                name: call.name.unwrap_or_default(),
                arguments: call.arguments,
            })
            .collect();
        let finish_reason = if tool_calls.is_empty() {
            "stop"
        } else {
            "tool_calls"
        };
        Response {
            text: self.text,
            media: self.media,
            tool_calls,
            usage: None,
            finish_reason: Some(finish_reason.to_string()),
            model: Some(bot.to_string()),
            continuation: None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bot_names_are_one_path_segment() {
        let base = Url::parse("https://api.poe.com/bot/").unwrap();
        assert_eq!(
            bot_url(&base, "Claude-3-Opus").unwrap().as_str(),
            "https://api.poe.com/bot/Claude-3-Opus"
        );
        assert_eq!(
            bot_url(&base, "a/b c").unwrap().as_str(),
            "https://api.poe.com/bot/a%2Fb%20c"
        );
    }

    #[test]
    fn media_kinds() {
        assert_eq!(kind_of("image/png"), OutputKind::Image);
        assert_eq!(kind_of("VIDEO/mp4"), OutputKind::Video);
        assert_eq!(kind_of("audio/mpeg"), OutputKind::Audio);
        assert_eq!(kind_of("application/pdf"), OutputKind::Text);
    }
}
