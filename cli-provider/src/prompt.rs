//! The prompt a one-shot CLI run gets on stdin, from a chat request.

use poe_plugin_api::{ErrorKind, Message, PluginError, Request, Role};

fn speaker(role: Role) -> &'static str {
    match role {
        Role::System => "System",
        Role::User => "User",
        Role::Assistant => "Assistant",
        Role::Tool => "Tool result",
    }
}

/// The last user message, after any system text and the earlier turns as
/// context. A `resumed` thread already holds the conversation, so it gets
/// only the last user message. `notes(i, message)` is appended to message
/// `i` (e.g. where its attachments are, or that they could not be passed).
pub fn transcript(
    request: &Request,
    resumed: bool,
    notes: impl Fn(usize, &Message) -> String,
) -> Result<String, PluginError> {
    let last_user = request
        .messages
        .iter()
        .rposition(|m| m.role == Role::User)
        .ok_or_else(|| PluginError::new(ErrorKind::InvalidRequest, "no user message"))?;
    let last = &request.messages[last_user];
    let ask = format!("{}{}", last.content, notes(last_user, last));
    if resumed {
        return Ok(ask);
    }
    let system: Vec<&str> = request
        .messages
        .iter()
        .filter(|m| m.role == Role::System)
        .map(|m| m.content.as_str())
        .collect();
    let history: Vec<String> = request.messages[..last_user]
        .iter()
        .enumerate()
        .filter(|(_, m)| m.role != Role::System)
        .map(|(i, m)| format!("{}: {}{}", speaker(m.role), m.content, notes(i, m)))
        .collect();
    let mut out = String::new();
    if !system.is_empty() {
        out.push_str(&system.join("\n\n"));
        out.push_str("\n\n");
    }
    if !history.is_empty() {
        out.push_str("Conversation so far:\n");
        out.push_str(&history.join("\n"));
        out.push_str("\n\n");
    }
    out.push_str(&ask);
    Ok(out)
}
