//! A chat completions endpoint that streams its answer over time, for tests
//! of what happens while an answer is still arriving (progress, long calls).
//! wiremock only sends a body all at once, so this is a small hyper server
//! of its own on 127.0.0.1, speaking the same wire format as `chat.rs`.
//!
//! `POST /v1/chat/completions` with model `fake-stream-<n>s` (or `<n>ms`)
//! answers `Echo from <model>: <last user message>` at once, then one more
//! chunk every [`TICK`] (` 1`, ` 2`, …) until `<n>` has passed, then the
//! words of [`TAIL`] at once, as a real stream's last deltas often arrive
//! together with its end; any other model gets the echo alone. [`paced_answer`] says the whole text. Without
//! `"stream": true` the whole answer comes as one `chat.completion` after
//! the same time.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::{StreamExt, stream};
use http_body_util::{BodyExt, StreamBody, combinators::BoxBody};
use hyper::body::{Bytes, Frame as BodyFrame, Incoming};
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use serde_json::{Value, json};
use tokio::net::TcpListener;
use tokio::task::JoinHandle;

use crate::chat::{Answer, Frame, last_user_message, usage};
use crate::{BAD_API_KEY, wire};

/// The time between two streamed chunks of a `fake-stream-*` answer.
pub const TICK: Duration = Duration::from_millis(100);

/// The words a `fake-stream-*` answer ends with, sent in one burst.
pub const TAIL: &str = " (end of stream)";

/// A running paced chat endpoint on `127.0.0.1:<random port>`; it stops
/// accepting when dropped.
pub struct PacedPoe {
    addr: SocketAddr,
    requests: Arc<Mutex<Vec<Value>>>,
    accept: JoinHandle<()>,
}

impl PacedPoe {
    /// Binds 127.0.0.1 on a random port and serves on the current runtime.
    pub async fn start() -> PacedPoe {
        let listener = TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind 127.0.0.1");
        let addr = listener.local_addr().expect("local addr");
        let requests = Arc::new(Mutex::new(Vec::new()));
        let recorded = requests.clone();
        let accept = tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                let recorded = recorded.clone();
                tokio::spawn(async move {
                    let service = hyper::service::service_fn(move |request| {
                        respond(request, recorded.clone())
                    });
                    // A client that hangs up mid-answer is not our error.
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(TokioIo::new(stream), service)
                        .await;
                });
            }
        });
        PacedPoe {
            addr,
            requests,
            accept,
        }
    }

    /// The OpenAI-compatible base URL, `http://127.0.0.1:PORT/v1`.
    pub fn base_url(&self) -> String {
        format!("http://{}/v1", self.addr)
    }

    /// JSON bodies of every chat completion request so far, in order.
    pub fn chat_requests(&self) -> Vec<Value> {
        self.requests.lock().expect("requests lock").clone()
    }
}

impl Drop for PacedPoe {
    fn drop(&mut self) {
        self.accept.abort();
    }
}

/// How long `model` streams: `fake-stream-<n>s` or `fake-stream-<n>ms`.
fn duration_of(model: &str) -> Duration {
    let Some(spec) = model
        .to_ascii_lowercase()
        .strip_prefix("fake-stream-")
        .map(str::to_string)
    else {
        return Duration::ZERO;
    };
    let parsed = if let Some(ms) = spec.strip_suffix("ms") {
        ms.parse().ok().map(Duration::from_millis)
    } else {
        spec.strip_suffix('s')
            .and_then(|s| s.parse().ok())
            .map(Duration::from_secs)
    };
    parsed.unwrap_or(Duration::ZERO)
}

/// How many tick chunks follow the echo.
fn ticks_of(model: &str) -> u32 {
    (duration_of(model).as_millis() / TICK.as_millis()) as u32
}

/// The whole text a paced answer to `prompt` from `model` adds up to.
pub fn paced_answer(model: &str, prompt: &str) -> String {
    let mut text = format!("Echo from {model}: {prompt}");
    let ticks = ticks_of(model);
    for n in 1..=ticks {
        text.push_str(&format!(" {n}"));
    }
    if ticks > 0 {
        text.push_str(TAIL);
    }
    text
}

type Body = BoxBody<Bytes, Infallible>;

fn whole(status: StatusCode, content_type: &str, body: String) -> Response<Body> {
    Response::builder()
        .status(status)
        .header("content-type", content_type)
        .body(http_body_util::Full::new(Bytes::from(body)).boxed())
        .expect("valid response")
}

/// Poe's error body, as `wire::error` sends it through wiremock.
fn error(status: u16, message: &str, kind: &str, code: &str) -> Response<Body> {
    let body = json!({"error": {"message": message, "type": kind, "code": code}});
    whole(
        StatusCode::from_u16(status).expect("status"),
        "application/json",
        body.to_string(),
    )
}

async fn respond(
    request: Request<Incoming>,
    recorded: Arc<Mutex<Vec<Value>>>,
) -> Result<Response<Body>, Infallible> {
    if request.method() != hyper::Method::POST || request.uri().path() != "/v1/chat/completions" {
        return Ok(error(404, "Not found", "not_found_error", "not_found"));
    }
    let token = request
        .headers()
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .map(str::trim)
        .unwrap_or("")
        .to_string();
    if token.is_empty() || token == BAD_API_KEY {
        return Ok(error(
            401,
            "Invalid API key provided",
            "invalid_request_error",
            "invalid_api_key",
        ));
    }
    let Ok(bytes) = request.into_body().collect().await.map(|b| b.to_bytes()) else {
        return Ok(error(
            400,
            "Request body was cut off",
            "invalid_request_error",
            "invalid_body",
        ));
    };
    let Ok(body) = serde_json::from_slice::<Value>(&bytes) else {
        return Ok(error(
            400,
            "Request body is not valid JSON",
            "invalid_request_error",
            "invalid_json",
        ));
    };
    recorded.lock().expect("requests lock").push(body.clone());
    let model = body["model"].as_str().unwrap_or_default().to_string();
    let prompt = last_user_message(&body);
    let text = paced_answer(&model, &prompt);
    let answer = Answer::Text(text.clone());
    let frame = Frame {
        id: "chatcmpl-paced",
        model: &model,
        created: wire::now_secs(),
        usage: usage(&body, &answer),
    };
    let ticks = ticks_of(&model);
    if body["stream"] != json!(true) {
        tokio::time::sleep(TICK * ticks).await;
        return Ok(whole(
            StatusCode::OK,
            "application/json",
            frame.completion(&answer).to_string(),
        ));
    }

    // Everything but the ticks is framed up front; the ticks go out one by
    // one as time passes.
    let echo = format!("Echo from {model}: {prompt}");
    let mut head = frame.sse_events(&Answer::Text(echo), false);
    let tail = head.split_off(head.len() - 1); // the finish chunk
    let include_usage = body
        .pointer("/stream_options/include_usage")
        .and_then(Value::as_bool)
        .unwrap_or(false);
    let mut end = tail;
    if include_usage {
        end.push(frame.usage_chunk());
    }
    let tick_chunks: Vec<Value> = (1..=ticks)
        .map(|n| frame.chunk(json!({"content": format!(" {n}")}), None))
        .collect();
    let tail_chunks: Vec<Value> = if ticks > 0 {
        TAIL.split(' ')
            .filter(|w| !w.is_empty())
            .map(|w| frame.chunk(json!({"content": format!(" {w}")}), None))
            .collect()
    } else {
        Vec::new()
    };

    let now = |chunks: Vec<Value>| chunks.into_iter().map(|c| (Duration::ZERO, Some(c)));
    let events = stream::iter(now(head))
        .chain(stream::iter(
            tick_chunks.into_iter().map(|c| (TICK, Some(c))),
        ))
        .chain(stream::iter(now(tail_chunks)))
        .chain(stream::iter(now(end)))
        .chain(stream::iter([(Duration::ZERO, None)]));
    let body = StreamBody::new(events.then(|(wait, chunk)| async move {
        tokio::time::sleep(wait).await;
        let data = match chunk {
            Some(chunk) => format!("data: {chunk}\n\n"),
            None => "data: [DONE]\n\n".to_string(),
        };
        Ok::<_, Infallible>(BodyFrame::data(Bytes::from(data)))
    }));
    Ok(Response::builder()
        .status(StatusCode::OK)
        .header("content-type", "text/event-stream")
        .header("cache-control", "no-cache")
        .body(BodyExt::boxed(body))
        .expect("valid response"))
}
