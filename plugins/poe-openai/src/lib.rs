//! poe-openai: the poe-code provider plugin for Poe's OpenAI-compatible API
//! (`POST {base}/chat/completions` with SSE, media links in answers, and the
//! `/v1/videos` jobs API).
//!
//! One provider instance owns its `reqwest::Client`s, taken in turn through
//! `Lanes` so no HTTP/2 connection to Poe carries more calls than its stream
//! limit (one client, one connection pool, until 64 calls are in flight).
//! It is an `AsyncProvider`: each call is a future on the
//! runtime the SDK gives the provider, so a call waiting on Poe holds no
//! thread, raced against the host's cancel signal and the request's
//! deadline (`poe_plugin_api::cancel::race`). Nothing here retries: the host owns retries,
//! rate limits and backoff, so every failure is returned at once as a typed
//! [`PluginError`] (see `errors`).
//!
//! Module map: `chat` builds and sends chat completions, `sse` reads
//! streamed answers, `wire` holds the upstream JSON shapes and assembles
//! answers, `media` pulls generated file links out of answers, `video`
//! runs `/v1/videos` jobs, `errors` maps failures and `ratelimit` reads
//! Poe's rate-limit headers.

mod chat;
mod errors;
mod media;
mod ratelimit;
mod sse;
#[cfg(test)]
mod test_support;
mod video;
mod wire;

use std::time::Duration;

use std::sync::Arc;

use poe_plugin_api::lanes::{Lanes, Outgoing, Ticket};
use poe_plugin_api::{
    AsyncProvider, Capability, Config, ErrorKind, Manifest, Options, OutputKind, PluginError,
    RateLimit, Request, Response, Sink, attachment_kind, export_async_provider,
};

/// Where Poe's OpenAI-compatible API lives unless `POE_BASE_URL` says otherwise.
pub const DEFAULT_BASE_URL: &str = "https://api.poe.com/v1";

/// How often a `/v1/videos` job is polled unless `POE_VIDEO_POLL_MS` says
/// otherwise. Poe recommends 5 s; 2 s keeps short jobs snappy while staying
/// far below the 500 requests/minute limit.
const DEFAULT_VIDEO_POLL: Duration = Duration::from_secs(2);

/// Connecting is the one phase with a plugin-side limit: a dead host should
/// fail fast, while an answer may legitimately stream for minutes (the host
/// enforces the overall deadline).
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// The provider for Poe's OpenAI-compatible API.
pub struct PoeOpenAi {
    http: Lanes<reqwest::Client>,
    /// Base URL without a trailing slash, e.g. `https://api.poe.com/v1`.
    base_url: String,
    /// Key from the configuration; a request's own `api_key` wins.
    api_key: Option<String>,
    video_poll: Duration,
}

/// Everything one call needs, borrowed from the provider and the host.
pub(crate) struct Call<'a> {
    pub(crate) http: &'a Ticket<reqwest::Client>,
    pub(crate) base_url: &'a str,
    pub(crate) api_key: &'a str,
    pub(crate) request: &'a Request,
    pub(crate) sink: &'a Sink,
    pub(crate) video_poll: Duration,
}

impl Call<'_> {
    /// Sends `value` as the JSON body of the request `build` starts, on the
    /// call's client (see `Lanes`: the first call on an idle client tells
    /// the others when it is on its way). Taken by value so the tree is
    /// freed before the answer is awaited.
    pub(crate) async fn send_json(
        &self,
        build: impl Fn() -> reqwest::RequestBuilder,
        value: serde_json::Value,
    ) -> reqwest::Result<reqwest::Response> {
        let bytes = serde_json::to_vec(&value).expect("a JSON value always serialises");
        drop(value);
        self.http
            .send(bytes, |body| {
                build()
                    .header(reqwest::header::CONTENT_TYPE, "application/json")
                    .body(match body {
                        Outgoing::Opening(opening) => reqwest::Body::wrap(opening),
                        Outgoing::Whole(bytes) => reqwest::Body::from(bytes),
                    })
                    .send()
            })
            .await
    }
}

impl PoeOpenAi {
    /// The base URL this provider talks to (no trailing slash).
    pub fn base_url(&self) -> &str {
        &self.base_url
    }

    async fn dispatch(&self, call: &Call<'_>) -> Result<Response, PluginError> {
        if call.request.output == OutputKind::Video && video::uses_videos_api(&call.request.model) {
            video::run(call).await
        } else {
            chat::run(call).await
        }
    }
}

/// Reads a non-empty, trimmed config value.
fn config_value<'a>(config: &'a Config, key: &str) -> Option<&'a str> {
    config.get(key).map(|v| v.trim()).filter(|v| !v.is_empty())
}

/// Validates `POE_BASE_URL` and drops trailing slashes, so endpoint paths can
/// be appended with a single `/`.
fn normalize_base_url(raw: &str) -> Result<String, PluginError> {
    let trimmed = raw.trim().trim_end_matches('/');
    let unavailable = || {
        PluginError::new(
            ErrorKind::Unavailable,
            format!("POE_BASE_URL is not an http(s) URL: {trimmed:?}"),
        )
    };
    let url = reqwest::Url::parse(trimmed).map_err(|_| unavailable())?;
    if !matches!(url.scheme(), "http" | "https") || url.host_str().is_none() {
        return Err(unavailable());
    }
    Ok(trimmed.to_string())
}

impl AsyncProvider for PoeOpenAi {
    fn manifest() -> Manifest {
        Manifest {
            id: "poe-openai".into(),
            version: env!("CARGO_PKG_VERSION").into(),
            description: "Any Poe bot or model through Poe's OpenAI-compatible API \
                          (chat completions, media links, /v1/videos)"
                .into(),
            // The catch-all: more specific plugins (legacy:*, codex) win.
            models: vec!["*".into()],
            capabilities: vec![
                Capability::Text,
                Capability::Image,
                Capability::Video,
                Capability::Audio,
                Capability::Tools,
            ],
            // Poe's documented limit: https://creator.poe.com/api-reference/rate-limits
            default_rate_limit: Some(RateLimit {
                requests_per_minute: 500,
            }),
            config_keys: vec![
                "POE_API_KEY".into(),
                "POE_BASE_URL".into(),
                // Tests and demos shorten the video poll interval with this.
                "POE_VIDEO_POLL_MS".into(),
            ],
            plugin_api_version: String::new(),
            // Every option: Poe takes them all (reasoning_effort and
            // verbosity through extra_body).
            options: Options::NAMES.iter().map(|n| n.to_string()).collect(),
            attachments: vec![attachment_kind::IMAGE.into(), attachment_kind::PDF.into()],
        }
    }

    fn open(config: Config) -> Result<Self, PluginError> {
        let base_url =
            normalize_base_url(config_value(&config, "POE_BASE_URL").unwrap_or(DEFAULT_BASE_URL))?;
        let api_key = config_value(&config, "POE_API_KEY").map(str::to_string);
        let video_poll = config_value(&config, "POE_VIDEO_POLL_MS")
            .and_then(|v| v.parse::<u64>().ok())
            .map(|ms| Duration::from_millis(ms.clamp(1, 60_000)))
            .unwrap_or(DEFAULT_VIDEO_POLL);
        let client = || {
            reqwest::Client::builder()
                .connect_timeout(CONNECT_TIMEOUT)
                .user_agent(concat!("poe-code-poe-openai/", env!("CARGO_PKG_VERSION")))
                .build()
        };
        let http = Lanes::new(client)
            .map_err(|e| PluginError::internal(format!("cannot build HTTP client: {e}")))?;
        Ok(PoeOpenAi {
            http,
            base_url,
            api_key,
            video_poll,
        })
    }

    async fn call(
        self: Arc<Self>,
        request: Request,
        sink: Arc<Sink>,
    ) -> Result<Response, PluginError> {
        let api_key = request
            .effective_api_key(self.api_key.as_deref())
            .ok_or_else(|| {
                PluginError::new(
                    ErrorKind::Auth,
                    "no Poe API key: set POE_API_KEY or run 'poe-code login'",
                )
            })?
            .to_string();
        // Held for the whole call: a streamed answer keeps its HTTP/2 stream
        // open to the end, and a video job polls on the same client.
        let http = self.http.take();
        let call = Call {
            http: &http,
            base_url: &self.base_url,
            api_key: &api_key,
            request: &request,
            sink: &sink,
            video_poll: self.video_poll,
        };
        let result =
            poe_plugin_api::cancel::race(&sink, request.timeout_ms, "Poe", self.dispatch(&call))
                .await;
        // Last line of defence: whatever the upstream echoed, the key never
        // leaves the plugin in an error message.
        result.map_err(|e| e.redact(&api_key))
    }
}

export_async_provider!(PoeOpenAi);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base_url_tolerates_trailing_slash() {
        assert_eq!(
            normalize_base_url("https://api.poe.com/v1/").unwrap(),
            "https://api.poe.com/v1"
        );
        assert_eq!(
            normalize_base_url(" http://127.0.0.1:9/v1// ").unwrap(),
            "http://127.0.0.1:9/v1"
        );
    }

    #[test]
    fn base_url_must_be_http() {
        let err = normalize_base_url("ftp://example.com").unwrap_err();
        assert_eq!(err.kind, ErrorKind::Unavailable);
        assert!(normalize_base_url("not a url").is_err());
    }

    #[test]
    fn manifest_declares_catch_all_and_limits() {
        let m = PoeOpenAi::manifest();
        assert_eq!(m.id, "poe-openai");
        assert_eq!(m.models, vec!["*".to_string()]);
        assert_eq!(m.default_rate_limit.unwrap().requests_per_minute, 500);
        assert!(m.config_keys.iter().any(|k| k == "POE_API_KEY"));
        assert!(m.config_keys.iter().any(|k| k == "POE_BASE_URL"));
        assert_eq!(m.capabilities.len(), 5);
    }
}
