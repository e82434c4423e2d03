//! The fake `GET /v1/models`: Poe's model list shape (`id`, `created` in
//! Unix ms, `owned_by`, `description`, `architecture`, `context_window`,
//! `pricing`), without authentication as Poe serves it.
//!
//! It lists real-looking names (so aliases and `auto` resolve to listed
//! models) and the fake's behaviour models; `Text-Only-Bot` reads no images,
//! so `auto` with images attached must pass it over.

use serde_json::{Value, json};
use wiremock::{Request, Respond, ResponseTemplate};

/// `(id, owner, reads images, output)` of every listed model.
pub const MODELS: &[(&str, &str, bool, &str)] = &[
    ("Claude-Sonnet-4.5", "Anthropic", true, "text"),
    ("Claude-Opus-4.1", "Anthropic", true, "text"),
    ("Claude-Haiku-4.5", "Anthropic", true, "text"),
    ("GPT-5", "OpenAI", true, "text"),
    ("GPT-5-mini", "OpenAI", true, "text"),
    ("Gemini-2.5-Pro", "Google", true, "text"),
    ("Grok-4", "xAI", true, "text"),
    ("Text-Only-Bot", "fake-poe", false, "text"),
    ("fake-tool-bot", "fake-poe", false, "text"),
    ("nano-banana-pro", "Google", true, "image"),
    ("veo-3.1", "Google", true, "video"),
    ("ElevenLabs-v3", "ElevenLabs", false, "audio"),
];

/// Answers `GET /v1/models`.
pub(crate) struct ModelList;

fn entry(id: &str, owner: &str, images: bool, output: &str) -> Value {
    let input = if images {
        json!(["text", "image"])
    } else {
        json!(["text"])
    };
    json!({
        "id": id,
        "object": "model",
        "created": 1_735_689_600_000u64,
        "owned_by": owner,
        "description": format!("{id} on the fake Poe API"),
        "architecture": {"input_modalities": input, "output_modalities": [output]},
        "context_window": {"context_length": 200_000, "max_output_tokens": 32_000},
        "pricing": {"prompt": "0.000003", "completion": "0.000015", "request": null},
    })
}

impl Respond for ModelList {
    fn respond(&self, _: &Request) -> ResponseTemplate {
        let data: Vec<Value> = MODELS
            .iter()
            .map(|(id, owner, images, output)| entry(id, owner, *images, output))
            .collect();
        ResponseTemplate::new(200).set_body_json(json!({"object": "list", "data": data}))
    }
}
