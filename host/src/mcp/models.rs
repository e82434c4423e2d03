//! The `list_models` tool: aliases, default models, the `auto` rule, Poe's
//! model list, what the loaded plugins serve and the one rule that picks a
//! plugin for a `bot_name`, as text for models and as `structuredContent`
//! for programs.
//!
//! The rule described here is the one [`crate::plugins::Registry::route`]
//! applies; keep the two in step.

use std::sync::Arc;

use rmcp::model::{CallToolResult, ContentBlock};
use serde_json::{Value, json};

use crate::models::Models;
use crate::models::catalog::ModelInfo;
use crate::plugins::LoadedPlugin;

/// Poe models described one per line up to this many; more are listed by name.
const DETAILED: usize = 40;

/// The routing rule in words.
pub const ROUTING_RULE: &str = "A bot_name goes to the plugin whose model pattern matches it most \
     specifically: an exact name beats a prefix pattern, a longer prefix beats a shorter one, and \
     `*` takes whatever no other pattern claims. Matching ignores ASCII case. A pattern ending in \
     `:*` removes its prefix before the plugin sees the name (legacy:Claude-3-Opus reaches \
     poe-legacy as Claude-3-Opus; codex:gpt-5-codex reaches codex-cli as gpt-5-codex). A name \
     nothing matches fails with MODEL_NOT_FOUND and the closest patterns.";

/// What one pattern routes, in words.
fn describe(pattern: &str, plugin: &str) -> String {
    if pattern == "*" {
        return format!("any other name → {plugin}, sent as written");
    }
    if let Some(prefix) = pattern.strip_suffix(":*") {
        return format!("{prefix}:<name> → {plugin}, sent as <name>");
    }
    if let Some(prefix) = pattern.strip_suffix('*') {
        return format!("names starting with {prefix} → {plugin}, sent as written");
    }
    format!("{pattern} → {plugin}, sent as written")
}

/// One Poe model in a line: modalities, context window, pricing.
fn model_line(m: &ModelInfo) -> String {
    let mut line = m.id.clone();
    if !m.input_modalities.is_empty() || !m.output_modalities.is_empty() {
        line.push_str(&format!(
            " — {} → {}",
            m.input_modalities.join("+"),
            m.output_modalities.join("+")
        ));
    }
    if let Some(n) = m.context_length {
        line.push_str(&format!("; context {n} tokens"));
    }
    if let Some(pricing) = m.pricing.as_ref().and_then(Value::as_object) {
        let prices: Vec<String> = pricing
            .iter()
            .filter_map(|(k, v)| {
                Some(format!(
                    "{k} {}",
                    v.as_str()
                        .map(str::to_string)
                        .or_else(|| v.as_f64().map(|f| f.to_string()))?
                ))
            })
            .collect();
        if !prices.is_empty() {
            line.push_str(&format!("; USD per token/request: {}", prices.join(", ")));
        }
    }
    line
}

/// The models part of the text: aliases, defaults, auto, Poe's list.
fn models_text(
    described: &Value,
    search: Option<&str>,
    refreshed: Option<&Result<usize, String>>,
) -> String {
    let mut text = String::from("Aliases (any case):");
    for a in described["aliases"].as_array().into_iter().flatten() {
        text.push_str(&format!(
            " {} → {} ({});",
            a["alias"].as_str().unwrap_or_default(),
            a["model"].as_str().unwrap_or_default(),
            a["source"].as_str().unwrap_or_default()
        ));
    }
    text.push_str("\nDefaults:");
    for kind in ["text", "image", "video", "audio"] {
        let d = &described["defaults"][kind];
        text.push_str(&format!(
            " {kind} {} ({}, {} overrides);",
            d["model"].as_str().unwrap_or_default(),
            d["source"].as_str().unwrap_or_default(),
            d["env"].as_str().unwrap_or_default()
        ));
    }
    let auto = &described["auto"];
    let preference: Vec<&str> = auto["preference"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(Value::as_str)
        .collect();
    text.push_str(&format!(
        "\nAuto: {} Preference now: {}.\n",
        auto["rule"].as_str().unwrap_or_default(),
        preference.join(", ")
    ));
    match refreshed {
        Some(Ok(n)) => text.push_str(&format!("\nFetched Poe's model list now: {n} models.\n")),
        Some(Err(e)) => text.push_str(&format!(
            "\nPoe's model list could not be fetched now: {e}\n"
        )),
        None => {}
    }
    let catalog = &described["catalog"];
    let models: Vec<ModelInfo> = catalog["models"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|m| serde_json::from_value(m.clone()).ok())
        .collect();
    match catalog["total"].as_u64() {
        None => {
            text.push_str(&format!(
                "\nPoe's model list is not known yet ({}{}); any Poe name can still be used.\n",
                catalog["source"].as_str().unwrap_or_default(),
                catalog["last_error"]
                    .as_str()
                    .map(|e| format!(": {e}"))
                    .unwrap_or_else(|| if catalog["enabled"] == false {
                        ": fetching is off".into()
                    } else {
                        ": being fetched, ask again shortly".into()
                    })
            ));
        }
        Some(total) => {
            let age =
                chrono::DateTime::from_timestamp(catalog["fetched_at"].as_i64().unwrap_or(0), 0)
                    .map(|t| t.format("%Y-%m-%d %H:%M UTC").to_string())
                    .unwrap_or_default();
            match search {
                Some(q) => text.push_str(&format!(
                    "\nPoe models matching {q:?}: {} of {total} (list fetched {age}):\n",
                    models.len()
                )),
                None => text.push_str(&format!("\nPoe models: {total} (list fetched {age}):\n")),
            }
            if models.len() <= DETAILED {
                for m in &models {
                    text.push_str(&format!("  {}\n", model_line(m)));
                }
            } else {
                let ids: Vec<&str> = models.iter().map(|m| m.id.as_str()).collect();
                text.push_str(&format!(
                    "  {}\n  (pass `search` for modalities, context windows and pricing)\n",
                    ids.join(", ")
                ));
            }
        }
    }
    text
}

/// The `list_models` result for `plugins` and `models`; `search` filters
/// Poe's list, `refreshed` is what a fetch asked for now returned.
pub fn list_models(
    plugins: &[Arc<LoadedPlugin>],
    models: &Models,
    search: Option<&str>,
    refreshed: Option<Result<usize, String>>,
) -> CallToolResult {
    let mut sorted: Vec<&LoadedPlugin> = plugins.iter().map(Arc::as_ref).collect();
    sorted.sort_by(|a, b| a.manifest.id.cmp(&b.manifest.id));
    let entries: Vec<Value> = sorted
        .iter()
        .map(|p| {
            let m = &p.manifest;
            json!({
                "id": m.id,
                "version": m.version,
                "description": m.description,
                "patterns": m.models,
                "capabilities": m.capabilities,
                "routes": m.models.iter().map(|pattern| describe(pattern, &m.id)).collect::<Vec<_>>(),
            })
        })
        .collect();
    let described = models.describe(search);
    let mut text = models_text(&described, search, refreshed.as_ref());
    text.push_str(&format!("\nRouting: {ROUTING_RULE}\n"));
    if sorted.is_empty() {
        text.push_str("\nNo plugins are loaded (see `poe-coded status`).\n");
    }
    for p in &sorted {
        let m = &p.manifest;
        let capabilities: Vec<String> = m
            .capabilities
            .iter()
            .filter_map(|c| serde_json::to_value(c).ok())
            .filter_map(|v| v.as_str().map(str::to_string))
            .collect();
        text.push_str(&format!("\n{} {}", m.id, m.version));
        if !m.description.is_empty() {
            text.push_str(&format!(" — {}", m.description));
        }
        text.push_str(&format!(
            "\n  patterns: {}\n  capabilities: {}\n",
            m.models.join(", "),
            capabilities.join(", ")
        ));
        for pattern in &m.models {
            text.push_str(&format!("  {}\n", describe(pattern, &m.id)));
        }
    }
    let mut result = CallToolResult::success(vec![ContentBlock::text(text)]);
    let mut body = json!({
        "routing": ROUTING_RULE,
        "plugins": entries,
        "aliases": described["aliases"],
        "defaults": described["defaults"],
        "auto": described["auto"],
        "catalog": described["catalog"],
    });
    if let Some(r) = refreshed {
        body["refresh"] = match r {
            Ok(n) => json!({"ok": true, "models": n}),
            Err(e) => json!({"ok": false, "error": e}),
        };
    }
    result.structured_content = Some(body);
    result
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn patterns_in_words() {
        assert_eq!(
            describe("codex", "codex-cli"),
            "codex → codex-cli, sent as written"
        );
        assert_eq!(
            describe("legacy:*", "poe-legacy"),
            "legacy:<name> → poe-legacy, sent as <name>"
        );
        assert_eq!(
            describe("echo-*", "echo"),
            "names starting with echo- → echo, sent as written"
        );
        assert_eq!(
            describe("*", "poe-openai"),
            "any other name → poe-openai, sent as written"
        );
    }

    #[test]
    fn empty_registry() {
        let catalog = Arc::new(crate::models::Catalog::with_switch(
            "http://fake".into(),
            "/nonexistent/models.json".into(),
            false,
        ));
        let models = Models::load_with_env(&Default::default(), catalog, |_| None);
        let result = list_models(&[], &models, None, None);
        let body = result.structured_content.unwrap();
        assert_eq!(body["plugins"], json!([]));
        assert!(body["routing"].as_str().unwrap().contains("most"));
    }
}
