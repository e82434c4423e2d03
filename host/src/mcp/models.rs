//! The `list_models` tool: what the loaded plugins serve and the one rule
//! that picks a plugin for a `bot_name`, as text for models and as
//! `structuredContent` for programs.
//!
//! The rule described here is the one [`crate::plugins::Registry::route`]
//! applies; keep the two in step.

use std::sync::Arc;

use rmcp::model::{CallToolResult, ContentBlock};
use serde_json::{Value, json};

use crate::plugins::LoadedPlugin;

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

/// The `list_models` result for `plugins`.
pub fn list_models(plugins: &[Arc<LoadedPlugin>]) -> CallToolResult {
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
    let mut text = format!("Routing: {ROUTING_RULE}\n");
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
    result.structured_content = Some(json!({
        "routing": ROUTING_RULE,
        "plugins": entries,
    }));
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
        let result = list_models(&[]);
        let body = result.structured_content.unwrap();
        assert_eq!(body["plugins"], json!([]));
        assert!(body["routing"].as_str().unwrap().contains("most"));
    }
}
