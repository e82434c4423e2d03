//! Shared test harness: a recording sink, a provider opened the way the host
//! opens it, and fake upstreams (fake-poe or bare wiremock) on 127.0.0.1.
//!
//! The provider runs in a `Driver`, as the host runs it; `invoke` blocks the
//! test's thread until the call's future ends on the provider's runtime.
//! Tests are plain `#[test]`s and only use their small runtime for starting
//! servers and inspecting requests.

#![allow(dead_code)] // each test binary uses a different subset

use fake_poe::{FAKE_API_KEY, FakePoe};
use poe_openai::PoeOpenAi;
use poe_plugin_api::{Config, Driver, Message, OutputKind, PluginError, Request, Response, Sink};

/// Records events; `cancel()` flips the flag the plugin polls.
pub use poe_plugin_api::host::RecordingSink as Recorder;

/// A current-thread runtime for the async bits of a test.
pub fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
}

/// Starts fake-poe; keep the runtime for later `block_on`s.
pub fn fake() -> (tokio::runtime::Runtime, FakePoe) {
    let rt = runtime();
    let fake = rt.block_on(FakePoe::start());
    (rt, fake)
}

/// Starts a bare wiremock server.
pub fn mock_server() -> (tokio::runtime::Runtime, wiremock::MockServer) {
    let rt = runtime();
    let server = rt.block_on(wiremock::MockServer::start());
    (rt, server)
}

/// Opens the provider against `base` with the fake key plus `extra` config.
pub fn provider(base: &str, extra: &[(&str, &str)]) -> Driver<PoeOpenAi> {
    let mut config = Config::new();
    config.insert("POE_BASE_URL".into(), base.into());
    config.insert("POE_API_KEY".into(), FAKE_API_KEY.into());
    for (k, v) in extra {
        config.insert((*k).into(), (*v).into());
    }
    Driver::open(config).expect("provider opens")
}

/// A one-message request.
pub fn request(model: &str, prompt: &str) -> Request {
    Request {
        model: model.into(),
        messages: vec![Message::user(prompt)],
        ..Request::default()
    }
}

/// A streaming request for `output`.
pub fn media_request(model: &str, prompt: &str, output: OutputKind) -> Request {
    Request {
        output,
        stream: true,
        ..request(model, prompt)
    }
}

/// Invokes with a fresh recorder.
pub fn invoke(
    provider: &Driver<PoeOpenAi>,
    request: Request,
) -> (Result<Response, PluginError>, Recorder) {
    let recorder = Recorder::default();
    let sink = Sink::new(recorder.clone());
    let result = provider.invoke(request, &sink);
    (result, recorder)
}

/// Wiremock's base URL with `/v1`.
pub fn v1(server: &wiremock::MockServer) -> String {
    format!("{}/v1", server.uri())
}

/// Cancels through `canceller` once `reached()` says the request got to the
/// upstream, or after 20 s (so a request that never arrives fails the test
/// instead of hanging it). Run it on a scoped thread beside the call.
pub fn cancel_when(canceller: Recorder, reached: impl Fn() -> bool) {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    while !reached() && std::time::Instant::now() < deadline {
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
    canceller.cancel();
}
