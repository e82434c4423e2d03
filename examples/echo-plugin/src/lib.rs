//! The smallest complete poe-code provider: it answers any `echo` model by
//! streaming the last user message back, word by word.
//!
//! The bot parameter `delay_ms` pauses that long before each word (the call
//! stays cancellable), so tests can make an answer stream slowly.
//!
//! Copy this crate to start a plugin of your own: implement
//! [`Provider`] and export it with one `export_provider!` line.

use std::time::{Duration, Instant};

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
            options: vec![],
            attachments: vec![],
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
        let delay = match request.params.get("delay_ms") {
            Some(ms) => Duration::from_millis(ms.parse().map_err(|_| {
                PluginError::new(
                    ErrorKind::InvalidRequest,
                    format!("delay_ms must be a whole number of milliseconds, not {ms:?}"),
                )
            })?),
            None => Duration::ZERO,
        };
        let mut text = self.prefix.clone();
        for (i, word) in prompt.split(' ').enumerate() {
            pause(delay, sink)?;
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

/// Waits `delay`, returning early with `cancelled` when the host cancels.
fn pause(delay: Duration, sink: &Sink) -> Result<(), PluginError> {
    let until = Instant::now() + delay;
    loop {
        if sink.is_cancelled() {
            return Err(PluginError::cancelled());
        }
        let left = until.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Ok(());
        }
        std::thread::sleep(left.min(Duration::from_millis(10)));
    }
}

export_provider!(Echo);
