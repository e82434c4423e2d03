//! The smallest complete poe-code provider: it answers any `echo` model by
//! streaming the last user message back, word by word.
//!
//! Copy this crate to start a plugin of your own: implement
//! [`Provider`] and export it with one `export_provider!` line.

use poe_plugin_api::{
    Capability, Config, ErrorKind, Event, Manifest, PluginError, Provider, RateLimit, Request,
    Response, Role, Sink, Usage, export_provider,
};

/// Echoes the prompt back.
pub struct Echo {
    prefix: String,
}

impl Provider for Echo {
    fn manifest() -> Manifest {
        Manifest {
            id: "echo".into(),
            version: env!("CARGO_PKG_VERSION").into(),
            description: "Echoes the last user message (example plugin)".into(),
            // Exact names and `prefix*` patterns; the most specific match wins.
            models: vec!["echo".into(), "echo-*".into()],
            capabilities: vec![Capability::Text],
            default_rate_limit: Some(RateLimit {
                requests_per_minute: 6000,
            }),
            config_keys: vec!["ECHO_PREFIX".into()],
            plugin_api_version: String::new(),
        }
    }

    fn open(config: Config) -> Result<Self, PluginError> {
        Ok(Echo {
            prefix: config.get("ECHO_PREFIX").cloned().unwrap_or_default(),
        })
    }

    fn invoke(&self, request: Request, sink: &Sink) -> Result<Response, PluginError> {
        let prompt = request
            .messages
            .iter()
            .rev()
            .find(|m| m.role == Role::User)
            .map(|m| m.content.clone())
            .ok_or_else(|| PluginError::new(ErrorKind::InvalidRequest, "no user message"))?;
        let mut text = self.prefix.clone();
        for (i, word) in prompt.split(' ').enumerate() {
            if sink.is_cancelled() {
                return Err(PluginError::cancelled());
            }
            let piece = if i == 0 {
                word.to_string()
            } else {
                format!(" {word}")
            };
            if request.stream {
                sink.emit(&Event::TextDelta {
                    text: piece.clone(),
                });
            }
            text.push_str(&piece);
        }
        let words = prompt.split_whitespace().count() as u64;
        Ok(Response {
            text,
            usage: Some(Usage {
                prompt_tokens: words,
                completion_tokens: words,
                total_tokens: 2 * words,
                points: None,
            }),
            model: Some(request.model),
            ..Response::default()
        })
    }
}

export_provider!(Echo);
