//! The MCP tools: their names, descriptions and input schemas, and the typed
//! arguments each one accepts.
//!
//! Schemas are written by hand so optional fields stay plain (no
//! `["string", "null"]` type arrays, which strict clients reject).

use std::collections::BTreeMap;
use std::sync::Arc;

use poe_plugin_api::OutputKind;
use rmcp::model::{JsonObject, Tool, ToolAnnotations};
use serde::Deserialize;
use serde_json::{Value, json};

use super::defaults;

/// Names of the tools this server offers.
pub mod names {
    pub const GET_BOT_RESPONSE: &str = "get_bot_response";
    pub const GENERATE_IMAGE: &str = "generate_image";
    pub const GENERATE_VIDEO: &str = "generate_video";
    pub const GENERATE_AUDIO: &str = "generate_audio";
    pub const CHECK_STATUS: &str = "check_status";
    pub const CANCEL_JOB: &str = "cancel_job";
    pub const LIST_MODELS: &str = "list_models";
    pub const CHAT: &str = "chat";
    pub const CONSENSUS: &str = "consensus";
}

/// Arguments of `get_bot_response`. Unknown arguments are refused by
/// [`unknown_argument`] (serde cannot deny them next to `flatten`).
#[derive(Debug, Deserialize)]
pub struct BotResponseArgs {
    pub bot_name: String,
    pub message: String,
    #[serde(default)]
    pub params: BTreeMap<String, String>,
    /// Return a job id at once instead of waiting for the answer.
    #[serde(default, rename = "async")]
    pub run_async: bool,
    /// Continue the provider-side conversation of this earlier call.
    #[serde(default)]
    pub continuation_id: Option<String>,
    #[serde(flatten)]
    pub sampling: crate::chat::args::Sampling,
}

/// Arguments of the `generate_*` tools.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GenerateArgs {
    pub prompt: String,
    #[serde(default)]
    pub bot_name: Option<String>,
    #[serde(default)]
    pub params: BTreeMap<String, String>,
    /// Return a job id at once instead of waiting for the result.
    #[serde(default, rename = "async")]
    pub run_async: bool,
}

/// Arguments of `check_status`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CheckStatusArgs {
    #[serde(default)]
    pub continuation_id: Option<String>,
    #[serde(default)]
    pub full_history: bool,
    /// Character offset into the job's text, to page through a long one.
    #[serde(default)]
    pub offset: usize,
}

/// Arguments of `cancel_job`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CancelJobArgs {
    pub continuation_id: String,
}

/// Arguments of `list_models`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ListModelsArgs {
    /// Filter for Poe's model list.
    #[serde(default)]
    pub search: Option<String>,
    /// Fetch the list now.
    #[serde(default)]
    pub refresh: bool,
}

/// Which media a `generate_*` tool makes, and its default bot.
pub fn media_tool(name: &str) -> Option<(OutputKind, &'static str)> {
    match name {
        names::GENERATE_IMAGE => Some((OutputKind::Image, defaults::IMAGE_BOT)),
        names::GENERATE_VIDEO => Some((OutputKind::Video, defaults::VIDEO_BOT)),
        names::GENERATE_AUDIO => Some((OutputKind::Audio, defaults::AUDIO_BOT)),
        _ => None,
    }
}

fn params_schema() -> Value {
    json!({
        "type": "object",
        "description": "Custom bot parameters passed to the bot as given, e.g. {\"aspect_ratio\": \"16:9\"}.",
        "additionalProperties": { "type": "string" }
    })
}

fn async_schema() -> Value {
    json!({
        "type": "boolean",
        "description": "Return a continuation_id at once and run in the background; fetch the result with check_status."
    })
}

/// The sampling parameters `chat` and `get_bot_response` share.
fn sampling_properties() -> serde_json::Map<String, Value> {
    let Value::Object(map) = json!({
        "temperature": { "type": "number", "minimum": 0, "maximum": 2, "description": "Sampling temperature, 0-2." },
        "top_p": { "type": "number", "exclusiveMinimum": 0, "maximum": 1, "description": "Nucleus sampling, more than 0 and at most 1." },
        "max_tokens": { "type": "integer", "minimum": 1, "description": "Most tokens to generate." },
        "stop": {
            "type": "array", "items": { "type": "string" }, "maxItems": 4,
            "description": "Up to 4 stop sequences (a single string is accepted too); whitespace-only ones are refused."
        },
        "reasoning_effort": {
            "type": "string", "enum": crate::chat::args::REASONING_EFFORTS,
            "description": "How hard a reasoning model thinks (Poe and codex)."
        },
        "verbosity": {
            "type": "string", "enum": crate::chat::args::VERBOSITIES,
            "description": "How long the answer should be, for models that take it."
        },
    }) else {
        unreachable!("an object literal")
    };
    map
}

/// The `chat` tool.
fn consensus_tool() -> Tool {
    tool(
        names::CONSENSUS,
        "Ask several models and let them refine",
        "Ask several models the same thing in parallel (any mix of Poe models, aliases, codex, \
         legacy:<Bot>), then let each that answered see the others' answers and refine its own \
         (cross-feedback). Returns every model's initial and refined answer with usage, which \
         failed and why, and a continuation.id that continue the discussion with consensus or \
         chat. Progress says who answered and who is still working; check_status shows each \
         model's state; cancel_job stops all, keeping what arrived."
            .to_string(),
        json!({
            "type": "object",
            "properties": {
                "prompt": { "type": "string", "description": "The question or task for every model." },
                "models": {
                    "type": "array",
                    "items": { "type": "string" },
                    "description": "2 to 8 models: Poe names, aliases (sonnet, gpt, gemini, ...), codex, legacy:<Bot>, or auto; {\"model\": name} objects are accepted too. Duplicates are asked once."
                },
                "files": {
                    "type": "array", "items": { "type": "string" },
                    "description": "Files every model sees (same rules as chat: inside your working directory or config.toml [chat] roots)."
                },
                "images": {
                    "type": "array", "items": { "type": "string" },
                    "description": "Images every model sees: paths or data: URLs."
                },
                "continuation_id": { "type": "string", "description": "Continue an earlier consensus (or chat) conversation: each model sees the earlier rounds." },
                "enable_cross_feedback": { "type": "boolean", "description": "Let each model refine its answer after seeing the others' (default true)." },
                "cross_feedback_prompt": { "type": "string", "description": "Replaces the default refinement instruction given after the other answers." },
                "temperature": { "type": "number", "minimum": 0, "maximum": 2, "description": "Sampling temperature, 0 to 2." },
                "reasoning_effort": {
                    "type": "string",
                    "enum": crate::chat::args::REASONING_EFFORTS,
                    "description": "Reasoning effort for models that take it."
                },
                "async": async_schema(),
                "export": { "type": "boolean", "description": "Also write the conversation to files, one response file per model and phase (<export dir>/<continuation_id>/1_request.txt, 1_response_<model>_initial.txt, 1_response_<model>_refined.txt, ..., metadata.json); the result names the folder in export_path." },
            },
            "required": ["prompt", "models"],
            "additionalProperties": false
        }),
        false,
    )
}

fn chat_tool() -> Tool {
    let mut properties = serde_json::Map::new();
    let Value::Object(own) = json!({
        "prompt": { "type": "string", "description": "Your message. May be left out when tool_results answer the model's tool calls." },
        "model": {
            "type": "string",
            "description": "Model: a Poe model name (case-insensitive, owner/id accepted), an alias such as sonnet, opus, gpt, gemini, grok (see list_models), codex, legacy:<Bot>, or auto (default: a documented preference list; a vision model when images are attached). A continued conversation keeps its model unless you name another."
        },
        "files": {
            "type": "array", "items": { "type": "string" },
            "description": "Paths of files to include (absolute, or relative to your working directory; only inside it or config.toml [chat] roots). Text files are sent line-numbered; PDFs as documents."
        },
        "images": {
            "type": "array", "items": { "type": "string" },
            "description": "Images to show the model: paths (same rules as files) or data: URLs. The type is read from the content."
        },
        "continuation_id": { "type": "string", "description": "Continue this conversation (from any session, also after a restart): the continuation.id of an earlier chat result." },
        "tools": {
            "type": "array", "items": { "type": "object" },
            "description": "Functions the model may call, in OpenAI's shape: [{\"type\": \"function\", \"function\": {\"name\", \"description\", \"parameters\": <JSON Schema>}}]. Kept for the rest of the conversation unless you pass new ones."
        },
        "tool_choice": {
            "type": "string",
            "description": "none, auto or required (an object {\"type\": \"function\", \"function\": {\"name\": ...}} is accepted too)."
        },
        "parallel_tool_calls": { "type": "boolean", "description": "Whether the model may ask for several calls at once." },
        "tool_results": {
            "type": "array",
            "items": {
                "type": "object",
                "properties": {
                    "tool_call_id": { "type": "string" },
                    "content": { "type": "string", "description": "What the call returned (JSON is accepted too)." }
                },
                "required": ["tool_call_id", "content"]
            },
            "description": "Answers to the tool calls of the model's last answer, with its continuation_id; every call must be answered."
        },
        "params": params_schema(),
        "async": async_schema(),
        "export": { "type": "boolean", "description": "Also write the conversation to files (<export dir>/<continuation_id>/1_request.txt, 1_response.txt, ..., metadata.json); the result names the folder." },
    }) else {
        unreachable!("an object literal")
    };
    properties.extend(own);
    properties.extend(sampling_properties());
    tool(
        names::CHAT,
        "Chat with a model",
        "Talk with any Poe model (or codex) in a conversation that persists: the result's \
         continuation.id continues it from any session, also after a daemon restart. Attach files \
         and images, set sampling parameters, and pass tools for function calling: when the model \
         asks for calls, run them and answer with tool_results. Results carry usage."
            .to_string(),
        json!({
            "type": "object",
            "properties": properties,
            "additionalProperties": false
        }),
        false,
    )
}

/// The first argument of `args` that `tool`'s schema does not list, if any.
pub fn unknown_argument(tool: &str, args: &Value) -> Option<String> {
    static KNOWN: std::sync::LazyLock<std::collections::HashMap<String, Vec<String>>> =
        std::sync::LazyLock::new(|| {
            all()
                .into_iter()
                .map(|t| {
                    let props = t
                        .input_schema
                        .get("properties")
                        .and_then(Value::as_object)
                        .map(|p| p.keys().cloned().collect())
                        .unwrap_or_default();
                    (t.name.to_string(), props)
                })
                .collect()
        });
    let known = KNOWN.get(tool)?;
    args.as_object()?
        .keys()
        .find(|k| !known.contains(k))
        .cloned()
}

fn schema(value: Value) -> Arc<JsonObject> {
    match value {
        Value::Object(map) => Arc::new(map),
        _ => unreachable!("tool schemas are objects"),
    }
}

/// A model tool. `read_only` only where no provider it can reach may change
/// the caller's environment (`get_bot_response` reaches codex, which may
/// write files when its sandbox allows).
fn tool(
    name: &'static str,
    title: &str,
    description: String,
    input: Value,
    read_only: bool,
) -> Tool {
    let mut tool = Tool::new(name, description, schema(input));
    let mut annotations = ToolAnnotations::default();
    annotations.title = Some(title.to_string());
    annotations.read_only_hint = Some(read_only);
    annotations.open_world_hint = Some(true);
    tool.annotations = Some(annotations);
    tool
}

fn job_tool(
    name: &'static str,
    title: &str,
    description: &str,
    input: Value,
    read_only: bool,
) -> Tool {
    let mut tool = Tool::new(name, description.to_string(), schema(input));
    let mut annotations = ToolAnnotations::default();
    annotations.title = Some(title.to_string());
    annotations.read_only_hint = Some(read_only);
    annotations.open_world_hint = Some(false);
    tool.annotations = Some(annotations);
    tool
}

fn media(name: &'static str, title: &str, what: &str, default_bot: &str) -> Tool {
    tool(
        name,
        title,
        format!(
            "Generate {what} with a Poe bot (default {default_bot}). Returns the link(s) to the \
             generated file as resource links and as text."
        ),
        json!({
            "type": "object",
            "properties": {
                "prompt": { "type": "string", "description": format!("What {what} to generate.") },
                "bot_name": { "type": "string", "description": format!("Poe bot to use (default {default_bot}).") },
                "params": params_schema(),
                "async": async_schema(),
            },
            "required": ["prompt"],
            "additionalProperties": false
        }),
        true,
    )
}

/// Every tool, in listing order.
pub fn all() -> Vec<Tool> {
    let mut bot_properties = serde_json::Map::new();
    let Value::Object(own) = json!({
        "bot_name": { "type": "string", "description": "Name of the Poe bot or model." },
        "message": { "type": "string", "description": "The message to send." },
        "params": params_schema(),
        "async": async_schema(),
        "continuation_id": {
            "type": "string",
            "description": "Continue the conversation of an earlier call with a provider that keeps threads (e.g. codex): pass that call's continuation_id (in its result's _meta). For conversations with any model, use chat."
        },
    }) else {
        unreachable!("an object literal")
    };
    bot_properties.extend(own);
    bot_properties.extend(sampling_properties());
    vec![
        tool(
            names::GET_BOT_RESPONSE,
            "Ask a Poe bot",
            format!(
                "Send a message to any Poe bot or model (e.g. {}, GPT-5, Gemini-2.5-Pro) and \
                 return its text answer.",
                defaults::TEXT_BOT
            ),
            json!({
                "type": "object",
                "properties": bot_properties,
                "required": ["bot_name", "message"],
                "additionalProperties": false
            }),
            false,
        ),
        media(
            names::GENERATE_IMAGE,
            "Generate an image",
            "an image",
            defaults::IMAGE_BOT,
        ),
        media(
            names::GENERATE_VIDEO,
            "Generate a video",
            "a video",
            defaults::VIDEO_BOT,
        ),
        media(
            names::GENERATE_AUDIO,
            "Generate audio",
            "audio (speech, music or sound)",
            defaults::AUDIO_BOT,
        ),
        chat_tool(),
        consensus_tool(),
        job_tool(
            names::CHECK_STATUS,
            "Check a job",
            "Status of a job started by any session of this poe-code daemon (async calls, and calls \
             that outlived the client's timeout): processing, completed, failed, cancelled or \
             completed_with_errors, with progress, elapsed seconds and the result once done. Without \
             continuation_id, lists the 10 most recent jobs. Long texts come in pages: pass the \
             next_offset you were given as offset.",
            json!({
                "type": "object",
                "properties": {
                    "continuation_id": { "type": "string", "description": "The job id a call returned." },
                    "full_history": { "type": "boolean", "description": "Include the whole streamed text, not only the result." },
                    "offset": { "type": "integer", "minimum": 0, "description": "Character offset to continue a long text from." }
                },
                "additionalProperties": false
            }),
            true,
        ),
        job_tool(
            names::CANCEL_JOB,
            "Cancel a job",
            "Cancel a running job (from any session). The upstream request is stopped; text that had \
             already streamed is kept and can be read with check_status.",
            json!({
                "type": "object",
                "properties": {
                    "continuation_id": { "type": "string", "description": "The job id to cancel." }
                },
                "required": ["continuation_id"],
                "additionalProperties": false
            }),
            false,
        ),
        tool(
            names::LIST_MODELS,
            "List models",
            "Which models can be named and where they go: aliases (sonnet, gpt, …), the default \
             models, the rule `auto` follows, Poe's model list (modalities, context window, \
             pricing; cached, `search` filters it, `refresh` fetches it now), and each loaded \
             plugin's model patterns and the rule that picks a plugin for a name (e.g. codex → \
             codex-cli, legacy:<Bot> → poe-legacy, any other name → poe-openai)."
                .to_string(),
            json!({
                "type": "object",
                "properties": {
                    "search": {
                        "type": "string",
                        "description": "Only Poe models whose name, owner or description contains this (any case)."
                    },
                    "refresh": {
                        "type": "boolean",
                        "description": "Fetch Poe's model list now instead of using the cached one."
                    }
                },
                "additionalProperties": false
            }),
            true,
        ),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Strict clients reject type arrays and schemas without a `type`.
    fn assert_strict(value: &Value, path: &str) {
        if let Some(obj) = value.as_object() {
            if let Some(t) = obj.get("type") {
                assert!(
                    t.is_string(),
                    "{path}: type must be a single string, got {t}"
                );
            }
            for (k, v) in obj {
                assert_strict(v, &format!("{path}.{k}"));
            }
        }
    }

    #[test]
    fn schemas_are_strict_objects() {
        for tool in all() {
            let schema = Value::Object((*tool.input_schema).clone());
            assert_eq!(schema["type"], "object", "{}", tool.name);
            assert_strict(&schema, &tool.name);
        }
    }

    #[test]
    fn wrong_argument_types_are_rejected() {
        let bad = json!({"bot_name": 7, "message": "hi"});
        assert!(serde_json::from_value::<BotResponseArgs>(bad).is_err());
        let extra = json!({"bot_name": "x", "message": "hi", "temprature": 1});
        assert_eq!(
            unknown_argument(names::GET_BOT_RESPONSE, &extra).as_deref(),
            Some("temprature")
        );
        let fine = json!({"prompt": "hi", "temperature": 1, "tools": []});
        assert_eq!(unknown_argument(names::CHAT, &fine), None);
        let unknown = json!({"prompt": "x", "colour": "red"});
        assert!(serde_json::from_value::<GenerateArgs>(unknown).is_err());
    }
}
