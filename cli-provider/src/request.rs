//! Reading a plugin's settings and a request the way every CLI provider
//! does: trimmed settings, the routed model name, the session to resume,
//! and a tool call as one progress line.

use poe_plugin_api::{Config, Request};
use serde_json::Value;

use crate::errors::snippet;

/// A setting's value, trimmed; `None` when unset or blank.
pub fn setting<'a>(config: &'a Config, key: &str) -> Option<&'a str> {
    config.get(key).map(|v| v.trim()).filter(|v| !v.is_empty())
}

/// The CLI's model for a routed name: one of `defaults` (e.g. `claude`)
/// means the CLI's configured default (`None`); anything else is passed on
/// without a leading `<prefix>:` of `prefixes` (the host strips the prefix
/// it routed by; a caller that loads the plugin directly may not).
pub fn model<'a>(name: &'a str, prefixes: &[&str], defaults: &[&str]) -> Option<&'a str> {
    let name = name.trim();
    let name = prefixes
        .iter()
        .find_map(|prefix| {
            let head = name.get(..prefix.len() + 1)?;
            (head.strip_suffix(':')?.eq_ignore_ascii_case(prefix))
                .then(|| &name[prefix.len() + 1..])
        })
        .unwrap_or(name);
    (!name.is_empty() && !defaults.iter().any(|d| name.eq_ignore_ascii_case(d))).then_some(name)
}

/// The CLI session or thread to resume, if any.
pub fn continuation(request: &Request) -> Option<&str> {
    request
        .continuation
        .as_deref()
        .map(str::trim)
        .filter(|c| !c.is_empty())
}

/// A tool call as a progress line: its name and the first telling argument
/// (a command, a path, a pattern, a URL, a query).
pub fn tool_summary(name: &str, input: &Value) -> String {
    let detail = [
        "command",
        "file_path",
        "absolute_path",
        "path",
        "pattern",
        "url",
        "query",
        "description",
    ]
    .iter()
    .find_map(|key| input.get(key).and_then(Value::as_str));
    match detail {
        Some(detail) => format!("{name}: {}", snippet(detail, 200)),
        None => format!("using {name}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn models_and_tools() {
        let prefixes = ["gemini-cli", "gemini"];
        assert_eq!(model("gemini-cli", &prefixes, &["gemini-cli"]), None);
        assert_eq!(
            model("Gemini:flash", &prefixes, &["gemini-cli"]),
            Some("flash")
        );
        assert_eq!(
            model("gemini-cli:pro", &prefixes, &["gemini-cli"]),
            Some("pro")
        );
        assert_eq!(model(" pro ", &prefixes, &["gemini-cli"]), Some("pro"));
        assert_eq!(model("codex:", &["codex"], &["codex"]), None);
        assert_eq!(
            tool_summary("Read", &json!({"file_path": "/a"})),
            "Read: /a"
        );
        assert_eq!(tool_summary("Think", &json!({})), "using Think");
    }
}
