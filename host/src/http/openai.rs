//! The OpenAI-compatible API on the HTTP listener: `POST /v1/chat/completions`
//! (streamed or not) and `GET /v1/models`. A completion is a job like any
//! MCP call: routed to a plugin, through the shared limiter of its key and
//! the one retry layer (`mcp/call.rs`), visible in `check_status`. So a
//! script using an OpenAI SDK shares the daemon's budget with the agents
//! instead of racing them for it. A client that hangs up cancels its
//! completion, as OpenAI's API does.

use std::collections::BTreeMap;
use std::convert::Infallible;
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use axum::Json;
use axum::body::{Body, Bytes};
use axum::extract::{Extension, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use poe_plugin_api::{
    Attachment, Message, OutputKind, Request, Response as Answer, Role, ToolCall,
};
use serde::Deserialize;
use serde_json::{Value, json};
use tokio::sync::{mpsc, oneshot};

use super::Caller;
use crate::daemon::state::DaemonState;
use crate::jobs::{Job, JobEvent};
use crate::mcp::call;

/// The tool name completions are recorded under in the job table.
pub const JOB_TOOL: &str = "openai.chat_completions";

/// An error in OpenAI's shape with its HTTP status.
struct ApiError {
    status: StatusCode,
    kind: &'static str,
    code: Option<String>,
    message: String,
}

impl ApiError {
    fn invalid(message: impl Into<String>) -> Self {
        Self {
            status: StatusCode::BAD_REQUEST,
            kind: "invalid_request_error",
            code: None,
            message: message.into(),
        }
    }

    fn body(&self) -> Value {
        json!({"error": {
            "message": self.message,
            "type": self.kind,
            "param": null,
            "code": self.code,
        }})
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        (self.status, Json(self.body())).into_response()
    }
}

/// A chat completion request, as far as we read it. Fields we do not
/// forward are listed back in the answer's `poe_code.ignored`.
#[derive(Deserialize)]
struct CompletionRequest {
    model: String,
    messages: Vec<InMessage>,
    #[serde(default)]
    stream: bool,
    stream_options: Option<StreamOptions>,
    temperature: Option<f64>,
    top_p: Option<f64>,
    max_tokens: Option<u32>,
    max_completion_tokens: Option<u32>,
    stop: Option<Stop>,
    tools: Option<Value>,
    tool_choice: Option<Value>,
    parallel_tool_calls: Option<bool>,
    reasoning_effort: Option<String>,
    verbosity: Option<String>,
    n: Option<u32>,
    /// Bot parameters (Poe's `extra_body`), sent as a key or merged in by
    /// an SDK: strings, numbers and booleans are passed to the plugin.
    #[serde(default)]
    extra_body: BTreeMap<String, Value>,
    #[serde(flatten)]
    other: BTreeMap<String, Value>,
}

#[derive(Deserialize)]
struct StreamOptions {
    #[serde(default)]
    include_usage: bool,
}

#[derive(Deserialize)]
#[serde(untagged)]
enum Stop {
    One(String),
    Many(Vec<String>),
}

#[derive(Deserialize)]
struct InMessage {
    role: String,
    #[serde(default)]
    content: Option<Content>,
    tool_call_id: Option<String>,
    #[serde(default)]
    tool_calls: Vec<InToolCall>,
}

#[derive(Deserialize)]
#[serde(untagged)]
enum Content {
    Text(String),
    Parts(Vec<Part>),
}

#[derive(Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
enum Part {
    Text { text: String },
    ImageUrl { image_url: ImageUrl },
    File { file: FilePart },
}

#[derive(Deserialize)]
struct ImageUrl {
    url: String,
}

#[derive(Deserialize)]
struct FilePart {
    filename: Option<String>,
    file_data: String,
}

#[derive(Deserialize)]
struct InToolCall {
    id: String,
    function: InFunction,
}

#[derive(Deserialize)]
struct InFunction {
    name: String,
    #[serde(default)]
    arguments: String,
}

/// Fields OpenAI defines that no plugin takes (Poe ignores them too).
const KNOWN_IGNORED: &[&str] = &[
    "response_format",
    "seed",
    "presence_penalty",
    "frequency_penalty",
    "logit_bias",
    "user",
    "metadata",
    "store",
    "modalities",
    "audio",
    "prediction",
    "service_tier",
    "logprobs",
    "top_logprobs",
];

fn message(m: InMessage, index: usize) -> Result<Message, ApiError> {
    let role = match m.role.as_str() {
        "system" | "developer" => Role::System,
        "user" => Role::User,
        "assistant" => Role::Assistant,
        "tool" => Role::Tool,
        other => {
            return Err(ApiError::invalid(format!(
                "messages[{index}].role '{other}' is not one of system, developer, user, assistant, tool"
            )));
        }
    };
    let mut out = Message::new(role, String::new());
    match m.content {
        None => {}
        Some(Content::Text(text)) => out.content = text,
        Some(Content::Parts(parts)) => {
            let mut texts = Vec::new();
            for part in parts {
                match part {
                    Part::Text { text } => texts.push(text),
                    Part::ImageUrl { image_url } => {
                        if !(image_url.url.starts_with("data:image/")
                            || image_url.url.starts_with("https://"))
                        {
                            return Err(ApiError::invalid(format!(
                                "messages[{index}]: an image_url must be a data:image/… URL or an https URL"
                            )));
                        }
                        out.attachments.push(Attachment {
                            content_type: mime_of_data_url(&image_url.url),
                            url: image_url.url,
                            name: None,
                        });
                    }
                    Part::File { file } => {
                        if !file.file_data.starts_with("data:") {
                            return Err(ApiError::invalid(format!(
                                "messages[{index}]: file_data must be a data: URL"
                            )));
                        }
                        out.attachments.push(Attachment {
                            content_type: mime_of_data_url(&file.file_data),
                            url: file.file_data,
                            name: file.filename,
                        });
                    }
                }
            }
            out.content = texts.join("\n");
        }
    }
    if role == Role::Tool {
        out.tool_call_id = Some(m.tool_call_id.ok_or_else(|| {
            ApiError::invalid(format!(
                "messages[{index}]: a tool message needs tool_call_id"
            ))
        })?);
    }
    out.tool_calls = m
        .tool_calls
        .into_iter()
        .map(|c| ToolCall {
            id: c.id,
            name: c.function.name,
            arguments: c.function.arguments,
        })
        .collect();
    Ok(out)
}

fn mime_of_data_url(url: &str) -> Option<String> {
    let rest = url.strip_prefix("data:")?;
    let end = rest.find([';', ','])?;
    Some(rest[..end].to_string()).filter(|m| !m.is_empty())
}

/// What a checked request becomes.
struct Planned {
    request: Request,
    plugin: Arc<crate::plugins::LoadedPlugin>,
    /// The model as the caller wrote it.
    model: String,
    stream: bool,
    include_usage: bool,
    ignored: Vec<String>,
}

fn plan(daemon: &DaemonState, caller: &Caller, body: &[u8]) -> Result<Planned, ApiError> {
    let raw: Value = serde_json::from_slice(body)
        .map_err(|e| ApiError::invalid(format!("the body is not JSON: {e}")))?;
    if !raw.is_object() {
        return Err(ApiError::invalid("the body must be a JSON object"));
    }
    let req: CompletionRequest = serde_json::from_value(raw)
        .map_err(|e| ApiError::invalid(format!("invalid chat completion request: {e}")))?;
    if req.n.is_some_and(|n| n != 1) {
        return Err(ApiError::invalid("n must be 1"));
    }
    if req.messages.is_empty() {
        return Err(ApiError::invalid("messages must not be empty"));
    }
    if let Some(t) = req.temperature
        && !(0.0..=2.0).contains(&t)
    {
        return Err(ApiError::invalid("temperature must be between 0 and 2"));
    }
    let messages = req
        .messages
        .into_iter()
        .enumerate()
        .map(|(i, m)| message(m, i))
        .collect::<Result<Vec<_>, _>>()?;
    let needs_vision = messages.iter().any(|m| {
        m.attachments.iter().any(|a| {
            a.content_type
                .as_deref()
                .is_some_and(|t| t.starts_with("image/"))
        })
    });
    let registry = &daemon.registry;
    let route_of = |name: &str| registry.plugin_of(name);
    let resolved = daemon
        .models
        .resolve(Some(&req.model), needs_vision, &route_of)
        .map_err(|e| ApiError {
            status: StatusCode::NOT_FOUND,
            kind: "invalid_request_error",
            code: Some("model_not_found".into()),
            message: e.to_string(),
        })?;
    let route = registry.route(&resolved.model).map_err(|e| ApiError {
        status: StatusCode::NOT_FOUND,
        kind: "invalid_request_error",
        code: Some("model_not_found".into()),
        message: e.to_string(),
    })?;
    let mut options = poe_plugin_api::Options {
        temperature: req.temperature,
        top_p: req.top_p,
        max_tokens: req.max_completion_tokens.or(req.max_tokens),
        reasoning_effort: req.reasoning_effort,
        verbosity: req.verbosity,
        tools: req.tools,
        tool_choice: req.tool_choice,
        parallel_tool_calls: req.parallel_tool_calls,
        ..Default::default()
    };
    options.stop = match req.stop {
        None => Vec::new(),
        Some(Stop::One(s)) => vec![s],
        Some(Stop::Many(v)) => v,
    };
    // SDKs merge `extra_body` into the top level; unknown top-level keys
    // that are not OpenAI's are bot parameters.
    let mut params = BTreeMap::new();
    let mut ignored = Vec::new();
    let extra = req
        .extra_body
        .into_iter()
        .chain(req.other.into_iter().filter(|(k, _)| {
            if KNOWN_IGNORED.contains(&k.as_str()) {
                ignored.push(k.clone());
                false
            } else {
                true
            }
        }));
    for (key, value) in extra {
        let value = match value {
            Value::String(s) => s,
            Value::Number(n) => n.to_string(),
            Value::Bool(b) => b.to_string(),
            _ => {
                return Err(ApiError::invalid(format!(
                    "parameter '{key}' must be a string, number or boolean"
                )));
            }
        };
        params.insert(key, value);
    }
    Ok(Planned {
        request: Request {
            model: route.model,
            messages,
            output: OutputKind::Text,
            params,
            options,
            stream: true,
            api_key: caller.api_key.clone(),
            ..Request::default()
        },
        plugin: route.plugin,
        model: req.model,
        stream: req.stream,
        include_usage: req.stream_options.is_some_and(|o| o.include_usage),
        ignored,
    })
}

/// The job's failure as OpenAI would report it.
fn failure(job: &Job) -> ApiError {
    let snapshot = job.snapshot();
    let error = snapshot
        .result
        .as_ref()
        .and_then(|r| r.structured_content.as_ref())
        .and_then(|c| c.get("error"))
        .cloned()
        .unwrap_or_default();
    let code = error
        .get("code")
        .and_then(Value::as_str)
        .unwrap_or("INTERNAL_ERROR");
    let message = error
        .get("message")
        .and_then(Value::as_str)
        .map(str::to_string)
        .or(snapshot.error)
        .unwrap_or_else(|| "the call failed".into());
    let (status, kind) = match code {
        "RATE_LIMIT_EXCEEDED" => (StatusCode::TOO_MANY_REQUESTS, "rate_limit_error"),
        "MODEL_NOT_FOUND" => (StatusCode::NOT_FOUND, "invalid_request_error"),
        "INVALID_ARGUMENT" | "CONTEXT_LENGTH_EXCEEDED" => {
            (StatusCode::BAD_REQUEST, "invalid_request_error")
        }
        "CANCELLED" => (StatusCode::REQUEST_TIMEOUT, "timeout_error"),
        "PROVIDER_UNAVAILABLE" => (StatusCode::BAD_GATEWAY, "upstream_error"),
        _ => (StatusCode::INTERNAL_SERVER_ERROR, "server_error"),
    };
    ApiError {
        status,
        kind,
        code: Some(code.to_ascii_lowercase()),
        message: format!("{message} (job {})", snapshot.id),
    }
}

fn now_secs() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

fn usage_json(answer: &Answer) -> Value {
    let usage = answer.usage.clone().unwrap_or_default();
    json!({
        "prompt_tokens": usage.prompt_tokens,
        "completion_tokens": usage.completion_tokens,
        "total_tokens": usage.total_tokens,
    })
}

fn finish_reason(answer: &Answer) -> String {
    answer.finish_reason.clone().unwrap_or_else(|| {
        if answer.tool_calls.is_empty() {
            "stop".into()
        } else {
            "tool_calls".into()
        }
    })
}

/// `POST /v1/chat/completions`
pub async fn chat_completions(
    State(daemon): State<Arc<DaemonState>>,
    Extension(caller): Extension<Caller>,
    body: Bytes,
) -> Response {
    let planned = match plan(&daemon, &caller, &body) {
        Ok(planned) => planned,
        Err(e) => return e.into_response(),
    };
    daemon.count_http_call(caller.token.as_ref());
    let Planned {
        request,
        plugin,
        model,
        stream,
        include_usage,
        ignored,
    } = planned;
    if !ignored.is_empty() {
        tracing::debug!(?ignored, "completion fields no plugin takes");
    }
    let job = daemon.jobs.create(
        JOB_TOOL,
        &model,
        &json!({"model": model, "messages": request.messages.len(), "stream": stream}),
        // Never joined with another call: each completion is its own.
        format!("openai:{}", uuid::Uuid::new_v4().simple()),
        0,
        daemon.settings.deadlines.of(OutputKind::Text),
    );
    let (answered, answer) = oneshot::channel::<Answer>();
    let finish: call::Finish = Box::new(move |response: Answer, job: Arc<Job>| {
        let result = call::success(response.clone(), OutputKind::Text, &job.id);
        let _ = answered.send(response);
        Box::pin(async move { result }) as futures::future::BoxFuture<'static, _>
    });
    let Some(mut waiter) = job.attach() else {
        return failure(&job).into_response();
    };
    let limiter = daemon
        .limits
        .for_plugin(&plugin, request.api_key.as_deref());
    tokio::spawn(call::execute(
        daemon.clone(),
        plugin,
        limiter,
        job.clone(),
        request,
        Some(finish),
    ));
    let id = format!("chatcmpl-{}", job.id.trim_start_matches("job_"));
    let created = now_secs();
    if !stream {
        // The waiter leaves (and the job stops) if the client hangs up.
        job.finished().await;
        drop(waiter);
        return match answer.await {
            Ok(answer) => {
                let mut message = json!({"role": "assistant", "content": answer.text});
                if !answer.tool_calls.is_empty() {
                    message["tool_calls"] = answer
                        .tool_calls
                        .iter()
                        .map(ToolCall::openai_json)
                        .collect();
                }
                Json(json!({
                    "id": id,
                    "object": "chat.completion",
                    "created": created,
                    "model": answer.model.clone().unwrap_or(model),
                    "choices": [{"index": 0, "message": message, "finish_reason": finish_reason(&answer)}],
                    "usage": usage_json(&answer),
                    "poe_code": {"job_id": job.id, "ignored": ignored},
                }))
                .into_response()
            }
            Err(_) => failure(&job).into_response(),
        };
    }

    let (tx, rx) = mpsc::channel::<Bytes>(64);
    let chunk = {
        let id = id.clone();
        let model = model.clone();
        move |delta: Value, finish: Option<&str>| {
            let value = json!({
                "id": id,
                "object": "chat.completion.chunk",
                "created": created,
                "model": model,
                "choices": [{"index": 0, "delta": delta, "finish_reason": finish}],
            });
            sse(&value)
        }
    };
    tokio::spawn(async move {
        let send = |bytes: Bytes| tx.send(bytes);
        if send(chunk(json!({"role": "assistant", "content": ""}), None))
            .await
            .is_err()
        {
            return;
        }
        let mut sent = 0usize;
        loop {
            tokio::select! {
                biased;
                // The client hung up: leaving drops the waiter, which stops the job.
                _ = tx.closed() => return,
                event = waiter.events().recv() => match event {
                    Ok(JobEvent::Text(text)) => {
                        sent += text.len();
                        if send(chunk(json!({"content": text}), None)).await.is_err() {
                            return;
                        }
                    }
                    Ok(JobEvent::Progress(_)) => {}
                    // Lines were skipped: catch up from the job's output.
                    Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => {
                        let output = job.snapshot().output;
                        if let Some(rest) = output.get(sent..).filter(|r| !r.is_empty()) {
                            sent = output.len();
                            if send(chunk(json!({"content": rest}), None)).await.is_err() {
                                return;
                            }
                        }
                    }
                    Err(tokio::sync::broadcast::error::RecvError::Closed) => job.finished().await,
                },
                _ = job.finished() => break,
            }
        }
        drop(waiter);
        let answer = match answer.await {
            Ok(answer) => answer,
            Err(_) => {
                // Streamed so far, then OpenAI's in-stream error form.
                let _ = send(sse(&failure(&job).body())).await;
                return;
            }
        };
        if let Some(rest) = answer.text.get(sent..).filter(|r| !r.is_empty()) {
            let _ = send(chunk(json!({"content": rest}), None)).await;
        }
        if !answer.tool_calls.is_empty() {
            let calls: Vec<Value> = answer
                .tool_calls
                .iter()
                .enumerate()
                .map(|(index, c)| {
                    let mut call = c.openai_json();
                    call["index"] = json!(index);
                    call
                })
                .collect();
            let _ = send(chunk(json!({"tool_calls": calls}), None)).await;
        }
        let _ = send(chunk(json!({}), Some(&finish_reason(&answer)))).await;
        if include_usage {
            let value = json!({
                "id": id,
                "object": "chat.completion.chunk",
                "created": created,
                "model": model,
                "choices": [],
                "usage": usage_json(&answer),
            });
            let _ = send(sse(&value)).await;
        }
        let _ = send(Bytes::from_static(b"data: [DONE]\n\n")).await;
    });
    let body = futures::stream::unfold(rx, |mut rx| async move {
        rx.recv()
            .await
            .map(|bytes| (Ok::<_, Infallible>(bytes), rx))
    });
    Response::builder()
        .header(header::CONTENT_TYPE, "text/event-stream")
        .header(header::CACHE_CONTROL, "no-cache")
        .body(Body::from_stream(body))
        .unwrap_or_else(|_| StatusCode::INTERNAL_SERVER_ERROR.into_response())
}

fn sse(value: &Value) -> Bytes {
    Bytes::from(format!("data: {value}\n\n"))
}

/// `GET /v1/models`: every name a loaded plugin serves by name, the
/// aliases, and Poe's list when it is known.
pub async fn models(State(daemon): State<Arc<DaemonState>>) -> Response {
    let mut seen = std::collections::BTreeSet::new();
    let mut data = Vec::new();
    let mut add = |id: String, owned_by: String| {
        if seen.insert(id.to_ascii_lowercase()) {
            data.push(json!({"id": id, "object": "model", "created": 0, "owned_by": owned_by}));
        }
    };
    for plugin in daemon.registry.plugins().iter() {
        for pattern in &plugin.manifest.models {
            if !pattern.contains('*') {
                add(pattern.clone(), plugin.manifest.id.clone());
            }
        }
    }
    for alias in daemon.models.alias_names() {
        add(alias.to_string(), "poe-code alias".into());
    }
    if let Some(snapshot) = daemon.models.catalog.snapshot().as_ref() {
        for model in &snapshot.models {
            add(
                model.id.clone(),
                model.owned_by.clone().unwrap_or_else(|| "poe".into()),
            );
        }
    }
    Json(json!({"object": "list", "data": data})).into_response()
}
