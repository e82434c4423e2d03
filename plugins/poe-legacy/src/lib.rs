//! poe-legacy: the poe-code provider plugin for Poe's legacy bot protocol,
//! the one the Python package `fastapi_poe` speaks in `get_bot_response`:
//! `POST {POE_LEGACY_BASE_URL}{bot}` with a JSON `query` request, answered by
//! server-sent events (`text`, `replace_response`, `json`, `file`,
//! `suggested_reply`, `meta`, `error`, `done`).
//!
//! Models reach this plugin as `legacy:<Bot>` (the host strips `legacy:`), or
//! by their plain name when listed in `POE_LEGACY_BOTS`.
//!
//! One provider instance owns its `reqwest::Client`s, taken in turn through
//! `Lanes` so no HTTP/2 connection to Poe carries more calls than its stream
//! limit (one client until 64 calls are in flight). It is an
//! `AsyncProvider`: each call is a future on the runtime the SDK gives the
//! provider (no thread held while a bot answers), raced against the host's
//! cancel signal and the request deadline (`poe_plugin_api::cancel::race`).
//! Nothing here retries: every failure is a typed [`PluginError`] and the
//! host decides (`errors`).
//!
//! Module map: `query` builds the request body, `upload` sends attachments
//! the way fastapi_poe's `upload_file` does, `stream` reads the event stream
//! into an answer, `errors` maps failures.

mod errors;
mod query;
mod stream;
mod upload;

use std::sync::Arc;
use std::time::Duration;

use poe_plugin_api::lanes::{Lanes, Ticket};
use poe_plugin_api::{
    AsyncProvider, Capability, Config, ErrorKind, Manifest, PluginError, RateLimit, Request,
    Response, Sink, attachment_kind, export_async_provider,
};
use reqwest::Url;

/// Where the bot protocol lives unless `POE_LEGACY_BASE_URL` says otherwise
/// (fastapi_poe's `base_url` default).
pub const DEFAULT_BASE_URL: &str = "https://api.poe.com/bot/";

/// Where attachments are uploaded unless `POE_LEGACY_UPLOAD_URL` says
/// otherwise (fastapi_poe's `upload_file` `base_url` default).
pub const DEFAULT_UPLOAD_URL: &str = "https://www.quora.com/poe_api/";

/// Extra bot names (comma-separated) routed here without the `legacy:`
/// prefix. Read by the manifest, so it is an environment variable of the
/// daemon rather than an `open` config value.
pub const BOTS_ENV: &str = "POE_LEGACY_BOTS";

/// A dead host should fail fast; an answer may stream for minutes (the host
/// owns the overall deadline).
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// The provider for Poe's legacy bot protocol.
pub struct PoeLegacy {
    http: Lanes<reqwest::Client>,
    base_url: Url,
    upload_url: Url,
    /// Key from the configuration; a request's own `api_key` wins.
    api_key: Option<String>,
}

/// Everything one call needs, borrowed from the provider and the host.
pub(crate) struct Call<'a> {
    pub(crate) http: &'a Ticket<reqwest::Client>,
    pub(crate) base_url: &'a Url,
    pub(crate) upload_url: &'a Url,
    pub(crate) api_key: &'a str,
    pub(crate) request: &'a Request,
    pub(crate) sink: &'a Sink,
}

impl PoeLegacy {
    /// The base URL bots are reached under (always ends in `/`).
    pub fn base_url(&self) -> &str {
        self.base_url.as_str()
    }
}

/// Reads a non-empty, trimmed config value.
fn config_value<'a>(config: &'a Config, key: &str) -> Option<&'a str> {
    config.get(key).map(|v| v.trim()).filter(|v| !v.is_empty())
}

/// Parses an http(s) base URL and makes sure it ends in `/`, so a bot name
/// or endpoint can be appended as one more path segment.
fn parse_base_url(key: &str, raw: &str) -> Result<Url, PluginError> {
    let unavailable = || {
        PluginError::new(
            ErrorKind::Unavailable,
            format!("{key} is not an http(s) URL: {raw:?}"),
        )
    };
    let mut url = Url::parse(raw.trim()).map_err(|_| unavailable())?;
    if !matches!(url.scheme(), "http" | "https") || url.host_str().is_none() {
        return Err(unavailable());
    }
    if !url.path().ends_with('/') {
        let path = format!("{}/", url.path());
        url.set_path(&path);
    }
    Ok(url)
}

/// The bot names of `POE_LEGACY_BOTS`: trimmed, non-empty, no wildcards
/// (a wildcard there would steal names from other plugins).
fn configured_bots(raw: &str) -> Vec<String> {
    raw.split(',')
        .map(str::trim)
        .filter(|name| !name.is_empty() && !name.contains('*'))
        .map(str::to_string)
        .collect()
}

impl AsyncProvider for PoeLegacy {
    fn manifest() -> Manifest {
        // `legacy:*` strips its prefix in the host; listed bots are exact
        // names, which beat poe-openai's `*`.
        let mut models = vec!["legacy:*".to_string()];
        if let Ok(raw) = std::env::var(BOTS_ENV) {
            models.extend(configured_bots(&raw));
        }
        Manifest {
            id: "poe-legacy".into(),
            version: env!("CARGO_PKG_VERSION").into(),
            description: "Poe bots through the legacy bot protocol (fastapi_poe's \
                          get_bot_response: query request, server-sent events)"
                .into(),
            models,
            capabilities: vec![
                Capability::Text,
                Capability::Image,
                Capability::Video,
                Capability::Audio,
                Capability::Tools,
            ],
            // Poe's documented API limit, as for poe-openai.
            default_rate_limit: Some(RateLimit {
                requests_per_minute: 500,
            }),
            config_keys: vec![
                "POE_API_KEY".into(),
                "POE_LEGACY_BASE_URL".into(),
                "POE_LEGACY_UPLOAD_URL".into(),
                BOTS_ENV.into(),
            ],
            plugin_api_version: String::new(),
            // What fastapi_poe's QueryRequest carries.
            options: vec!["temperature".into(), "stop".into(), "tools".into()],
            // Uploaded to Poe's file service, then attached to the message.
            attachments: vec![attachment_kind::IMAGE.into(), attachment_kind::PDF.into()],
        }
    }

    fn open(config: Config) -> Result<Self, PluginError> {
        let base_url = parse_base_url(
            "POE_LEGACY_BASE_URL",
            config_value(&config, "POE_LEGACY_BASE_URL").unwrap_or(DEFAULT_BASE_URL),
        )?;
        let upload_url = parse_base_url(
            "POE_LEGACY_UPLOAD_URL",
            config_value(&config, "POE_LEGACY_UPLOAD_URL").unwrap_or(DEFAULT_UPLOAD_URL),
        )?;
        let api_key = config_value(&config, "POE_API_KEY").map(str::to_string);
        let client = || {
            reqwest::Client::builder()
                .connect_timeout(CONNECT_TIMEOUT)
                .user_agent(concat!("poe-code-poe-legacy/", env!("CARGO_PKG_VERSION")))
                .build()
        };
        let http = Lanes::new(client)
            .map_err(|e| PluginError::internal(format!("cannot build HTTP client: {e}")))?;
        Ok(PoeLegacy {
            http,
            base_url,
            upload_url,
            api_key,
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
        if request.model.trim().is_empty() {
            return Err(PluginError::new(
                ErrorKind::InvalidRequest,
                "no bot name: call a legacy bot as legacy:<Bot>",
            ));
        }
        // Held for the whole call: the answer streams on its HTTP/2 stream.
        let http = self.http.take();
        let call = Call {
            http: &http,
            base_url: &self.base_url,
            upload_url: &self.upload_url,
            api_key: &api_key,
            request: &request,
            sink: &sink,
        };
        let result =
            poe_plugin_api::cancel::race(&sink, request.timeout_ms, "the bot", stream::run(&call))
                .await;
        // Whatever the upstream echoed, the key never leaves the plugin.
        result.map_err(|e| e.redact(&api_key))
    }
}

export_async_provider!(PoeLegacy);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base_urls_end_in_a_slash() {
        let url = parse_base_url("K", "http://127.0.0.1:9/bot").unwrap();
        assert_eq!(url.as_str(), "http://127.0.0.1:9/bot/");
        let url = parse_base_url("K", DEFAULT_BASE_URL).unwrap();
        assert_eq!(url.as_str(), DEFAULT_BASE_URL);
        let err = parse_base_url("POE_LEGACY_BASE_URL", "ftp://x").unwrap_err();
        assert_eq!(err.kind, ErrorKind::Unavailable);
        assert!(err.message.contains("POE_LEGACY_BASE_URL"));
    }

    #[test]
    fn configured_bots_are_exact_names() {
        assert_eq!(
            configured_bots(" MyBot, ,Other-Bot,evil*"),
            vec!["MyBot".to_string(), "Other-Bot".to_string()]
        );
    }

    #[test]
    fn manifest_declares_the_legacy_prefix() {
        let m = PoeLegacy::manifest();
        assert_eq!(m.id, "poe-legacy");
        assert_eq!(m.models[0], "legacy:*");
        assert!(m.config_keys.iter().any(|k| k == "POE_LEGACY_BASE_URL"));
    }
}
