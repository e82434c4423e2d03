//! fake-poe: a local stand-in for Poe's OpenAI-compatible API, used by the
//! end-to-end tests, the offline demo and the benchmark.
//!
//! It is a real HTTP server on 127.0.0.1 (a `wiremock::MockServer`) whose
//! default mocks are custom [`wiremock::Respond`] implementations speaking
//! the same wire format the `poe-openai` plugin talks to:
//!
//! - `POST /v1/chat/completions`: chat completions, plain JSON or SSE
//!   (`data: {chat.completion.chunk}` … `data: [DONE]`), behaviour chosen by
//!   the model name (see the table in `chat.rs`).
//! - `POST /v1/videos`, `GET /v1/videos/{id}`, `GET /v1/videos/{id}/content`:
//!   OpenAI Videos API jobs (queued → in_progress → completed).
//! - `GET /files/{n}.{png,mp3,mp4}`: the media files the fake bots link to.
//! - `GET /v1/models`: Poe's model list shape (`models.rs`).
//! - `GET /usage/current_balance`, `GET /usage/points_history`: Poe's usage
//!   API, one entry per answered call (`usage.rs`).
//!
//! - [`PacedPoe`] (`paced.rs`): a separate server whose chat answers stream
//!   over seconds, which wiremock cannot do.
//! - [`TlsFront`] (`tls.rs`): HTTPS with ALPN h2 in front of either, as
//!   api.poe.com is served, with a chosen HTTP/2 stream limit.
//!
//! Tests that need something special mount their own mocks on
//! [`FakePoe::server`] with `with_priority(1)`; the defaults use the default
//! priority (5), so the test's mock wins.

mod chat;
mod files;
mod models;
mod paced;
mod tls;
mod usage;
mod video;
mod wire;

pub use models::MODELS;
pub use paced::{PacedPoe, TAIL, TICK, paced_answer};
pub use tls::TlsFront;
pub use usage::{CLOCK_SKEW, Entry, POINTS_PER_TOKEN, STARTING_BALANCE};

use std::sync::Arc;
use std::sync::atomic::AtomicU64;

use wiremock::matchers::{method, path, path_regex};
use wiremock::{Mock, MockServer};

/// The API key tests and demos should use. Any non-empty Bearer token is
/// accepted except the literal `bad-key`, which gets Poe's 401.
pub const FAKE_API_KEY: &str = "fake-poe-key-0000";

/// The Bearer token that the fake rejects with 401.
pub const BAD_API_KEY: &str = "bad-key";

/// A listener on 127.0.0.1 whose accept queue holds a burst of thousands of
/// connections: std's holds 128, and a SYN dropped from a full queue costs
/// the client a second (the benchmark's 2,000 calls in flight hit that).
/// Must run inside a tokio runtime.
fn roomy_listener() -> std::net::TcpListener {
    let socket = tokio::net::TcpSocket::new_v4().expect("socket");
    socket
        .bind(std::net::SocketAddr::from(([127, 0, 0, 1], 0)))
        .expect("bind 127.0.0.1");
    socket
        .listen(4096)
        .and_then(|listener| listener.into_std())
        .expect("listen on 127.0.0.1")
}

/// A running fake Poe API on `127.0.0.1:<random port>`; it stops when dropped.
pub struct FakePoe {
    server: MockServer,
    history: usage::History,
}

impl FakePoe {
    /// Binds 127.0.0.1 on a random port and mounts the default behaviour.
    /// Every request is recorded (see [`FakePoe::chat_requests`]).
    pub async fn start() -> FakePoe {
        Self::start_with(
            MockServer::builder()
                .listener(roomy_listener())
                .start()
                .await,
        )
        .await
    }

    /// Like [`FakePoe::start`] but without recording requests, so a
    /// long-running demo or benchmark does not grow in memory with every call;
    /// [`FakePoe::chat_requests`] then stays empty.
    pub async fn start_without_recording() -> FakePoe {
        Self::start_with(
            MockServer::builder()
                .listener(roomy_listener())
                .disable_request_recording()
                .start()
                .await,
        )
        .await
    }

    async fn start_with(server: MockServer) -> FakePoe {
        let root = server.uri();
        // Shared so every file URL handed out by any bot is unique.
        let file_counter = Arc::new(AtomicU64::new(0));
        let history = usage::History::default();
        Mock::given(method("POST"))
            .and(path("/v1/chat/completions"))
            .respond_with(chat::ChatResponder::new(
                root.clone(),
                file_counter,
                history.clone(),
            ))
            .named("fake-poe chat completions")
            .mount(&server)
            .await;
        let jobs = video::Jobs::default();
        Mock::given(method("POST"))
            .and(path("/v1/videos"))
            .respond_with(video::CreateVideo(jobs.clone()))
            .named("fake-poe create video")
            .mount(&server)
            .await;
        Mock::given(method("GET"))
            .and(path_regex(r"^/v1/videos/[^/]+$"))
            .respond_with(video::GetVideo(jobs.clone()))
            .named("fake-poe get video")
            .mount(&server)
            .await;
        Mock::given(method("GET"))
            .and(path_regex(r"^/v1/videos/[^/]+/content$"))
            .respond_with(video::VideoContent(jobs))
            .named("fake-poe video content")
            .mount(&server)
            .await;
        Mock::given(method("GET"))
            .and(path("/v1/models"))
            .respond_with(models::ModelList)
            .named("fake-poe model list")
            .mount(&server)
            .await;
        Mock::given(method("GET"))
            .and(path_regex(r"^/files/[^/]+$"))
            .respond_with(files::Files)
            .named("fake-poe files")
            .mount(&server)
            .await;
        Mock::given(method("GET"))
            .and(path("/usage/current_balance"))
            .respond_with(usage::Balance(history.clone()))
            .named("fake-poe balance")
            .mount(&server)
            .await;
        Mock::given(method("GET"))
            .and(path("/usage/points_history"))
            .respond_with(usage::PointsHistory(history.clone()))
            .named("fake-poe points history")
            .mount(&server)
            .await;
        FakePoe { server, history }
    }

    /// The OpenAI-compatible base URL, `http://127.0.0.1:PORT/v1`.
    pub fn base_url(&self) -> String {
        format!("{}/v1", self.server.uri())
    }

    /// The points history so far, oldest first (one entry per answered call).
    pub fn points_history(&self) -> Vec<Entry> {
        self.history.entries()
    }

    /// The underlying server, for mounting test-specific mocks
    /// (use `with_priority(1)` so they win over the defaults).
    pub fn server(&self) -> &MockServer {
        &self.server
    }

    /// JSON bodies of every `POST /v1/chat/completions` received so far, in
    /// order (bodies that are not JSON are skipped).
    pub async fn chat_requests(&self) -> Vec<serde_json::Value> {
        self.server
            .received_requests()
            .await
            .unwrap_or_default()
            .into_iter()
            .filter(|r| r.method.as_str() == "POST" && r.url.path() == "/v1/chat/completions")
            .filter_map(|r| r.body_json::<serde_json::Value>().ok())
            .collect()
    }
}
