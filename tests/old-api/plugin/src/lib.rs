//! Test fixture: an echo plugin built against plugin-api 0.1.3, whose SDK
//! has only the blocking `invoke` (no `"__start"` calls). It answers `old-api: <message>` (or waits
//! `sleep <ms>` first, watching the cancel flag, so a test can hold calls in
//! flight and cancel them).

use std::time::{Duration, Instant};

use poe_plugin_api::{
    Capability, Config, ErrorKind, Manifest, PluginError, Provider, Request, Response, Role, Sink,
    export_provider,
};

/// The provider.
pub struct OldApi;

impl Provider for OldApi {
    fn manifest() -> Manifest {
        Manifest {
            id: "old-api".into(),
            version: env!("CARGO_PKG_VERSION").into(),
            description: "Echo built against plugin-api 0.1.3 (test fixture)".into(),
            models: vec!["old-api".into()],
            capabilities: vec![Capability::Text],
            default_rate_limit: None,
            config_keys: vec![],
            plugin_api_version: String::new(),
            options: vec![],
            attachments: vec![],
        }
    }

    fn open(_config: Config) -> Result<Self, PluginError> {
        Ok(OldApi)
    }

    fn invoke(&self, request: Request, sink: &Sink) -> Result<Response, PluginError> {
        let prompt = request
            .messages
            .iter()
            .rev()
            .find(|m| m.role == Role::User)
            .map(|m| m.content.clone())
            .ok_or_else(|| PluginError::new(ErrorKind::InvalidRequest, "no user message"))?;
        if let Some(ms) = prompt.strip_prefix("sleep ") {
            let ms: u64 = ms.trim().parse().unwrap_or(0);
            let until = Instant::now() + Duration::from_millis(ms);
            while Instant::now() < until {
                if sink.is_cancelled() {
                    return Err(PluginError::new(ErrorKind::Cancelled, "cancelled"));
                }
                std::thread::sleep(Duration::from_millis(10));
            }
        }
        if prompt == "panic" {
            panic!("old-api fixture panics on request");
        }
        Ok(Response {
            text: format!("old-api: {prompt}"),
            ..Response::default()
        })
    }
}

export_provider!(OldApi);
