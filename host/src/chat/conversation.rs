//! Conversations of the `chat` tool: their messages in the store, which
//! turn is running in each, who may continue them, and retention.
//!
//! The store is the truth, so a conversation continues from any session
//! and after a restart. Only the running turn of each conversation lives
//! in memory: a second turn while one runs would be built on a history
//! that is about to change, so it is refused (`CONVERSATION_BUSY`).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use poe_plugin_api::{Attachment, Message, Role, ToolCall};

use super::args::Refusal;
use crate::mcp::errors::Code;
use crate::store::{ConversationRow, MessageRow, Store, now_ms};

/// Prefix of conversation ids, which tells them from job ids.
pub const ID_PREFIX: &str = "conv_";

/// Whether `id` is shaped like a conversation id (and so safe as a
/// directory name).
pub fn is_conversation_id(id: &str) -> bool {
    id.strip_prefix(ID_PREFIX)
        .is_some_and(|rest| rest.len() == 32 && rest.chars().all(|c| c.is_ascii_hexdigit()))
}

/// Every conversation of the daemon.
pub struct Conversations {
    store: Arc<Store>,
    retention: Duration,
    /// Conversation id -> job id of its running turn.
    running: Arc<Mutex<HashMap<String, Option<String>>>>,
}

/// A conversation's claim on running its next turn; dropping it frees the
/// conversation.
pub struct TurnSlot {
    id: String,
    running: Arc<Mutex<HashMap<String, Option<String>>>>,
}

impl TurnSlot {
    /// The conversation this slot belongs to.
    pub fn conversation_id(&self) -> &str {
        &self.id
    }

    /// Records the job running the turn (for `check_status`/`cancel_job`).
    pub fn bind(&self, job_id: &str) {
        let mut running = self.running.lock().unwrap_or_else(|e| e.into_inner());
        running.insert(self.id.clone(), Some(job_id.to_string()));
    }
}

impl Drop for TurnSlot {
    fn drop(&mut self) {
        let mut running = self.running.lock().unwrap_or_else(|e| e.into_inner());
        running.remove(&self.id);
    }
}

fn refusal(code: Code, message: String) -> Refusal {
    Refusal { code, message }
}

impl Conversations {
    /// Conversations kept in `store`; without one, in a private in-memory
    /// store (they then end with the daemon).
    pub fn new(store: Option<Arc<Store>>, retention: Duration) -> Self {
        let store = store.unwrap_or_else(|| {
            Arc::new(Store::in_memory().expect("an in-memory SQLite database opens"))
        });
        Self {
            store,
            retention,
            running: Arc::default(),
        }
    }

    /// How long a conversation stays continuable after its last turn.
    pub fn retention(&self) -> Duration {
        self.retention
    }

    /// The store conversations live in.
    pub fn store(&self) -> &Arc<Store> {
        &self.store
    }

    /// Claims the next turn of conversation `id`; `None` when one runs.
    pub fn claim(&self, id: &str) -> Option<TurnSlot> {
        let mut running = self.running.lock().unwrap_or_else(|e| e.into_inner());
        if running.contains_key(id) {
            return None;
        }
        running.insert(id.to_string(), None);
        Some(TurnSlot {
            id: id.to_string(),
            running: self.running.clone(),
        })
    }

    /// Conversation `id` with its messages, claimed for one turn: refused
    /// while another turn runs in it, or when `owner` may not continue it.
    pub fn continue_turn(
        &self,
        id: &str,
        owner: &str,
    ) -> Result<(ConversationRow, Vec<MessageRow>, TurnSlot), Refusal> {
        let slot = self.claim(id).ok_or_else(|| {
            refusal(
                Code::ConversationBusy,
                format!(
                    "conversation '{id}' is still answering its previous turn; wait for it (check_status with this continuation_id) or cancel it (cancel_job)"
                ),
            )
        })?;
        let (row, messages) = self.load(id, owner)?;
        Ok((row, messages, slot))
    }

    /// The job of the turn running in conversation `id`, if any.
    pub fn running_job(&self, id: &str) -> Option<String> {
        let running = self.running.lock().unwrap_or_else(|e| e.into_inner());
        running.get(id).cloned().flatten()
    }

    /// A new, empty conversation owned by `owner`, with its slot claimed.
    pub fn start(&self, owner: &str) -> Result<(ConversationRow, TurnSlot), Refusal> {
        let now = now_ms();
        let row = ConversationRow {
            id: format!("{ID_PREFIX}{}", uuid::Uuid::new_v4().simple()),
            owner: owner.to_string(),
            provider: None,
            model: None,
            thread: None,
            tools: None,
            last_job_id: None,
            turns: 0,
            created_ms: now,
            updated_ms: now,
        };
        self.store.create_conversation(&row).map_err(|e| {
            refusal(
                Code::InternalError,
                format!("cannot store the conversation: {e}"),
            )
        })?;
        let slot = self.claim(&row.id).expect("a new conversation is free");
        Ok((row, slot))
    }

    /// Conversation `id` with its messages, if `owner` may continue it.
    /// Another key's conversation is reported as unknown, so ids reveal
    /// nothing across keys.
    pub fn load(
        &self,
        id: &str,
        owner: &str,
    ) -> Result<(ConversationRow, Vec<MessageRow>), Refusal> {
        let not_found = || {
            refusal(
                Code::ConversationNotFound,
                format!(
                    "no conversation '{id}' (continuation_id comes from an earlier chat result; conversations are kept {} after their last turn)",
                    human_days(self.retention)
                ),
            )
        };
        if !is_conversation_id(id) {
            return Err(not_found());
        }
        let row = self
            .store
            .conversation(id)
            .map_err(|e| {
                refusal(
                    Code::InternalError,
                    format!("cannot read the conversation: {e}"),
                )
            })?
            .ok_or_else(not_found)?;
        if row.owner != owner {
            return Err(not_found());
        }
        let age = Duration::from_millis(now_ms().saturating_sub(row.updated_ms));
        if age > self.retention {
            return Err(refusal(
                Code::ConversationExpired,
                format!(
                    "conversation '{id}' expired: its last turn was {} ago and conversations are kept {} (config.toml [chat] retention_days); start a new one without continuation_id",
                    human_days(age),
                    human_days(self.retention)
                ),
            ));
        }
        let messages = self.store.messages(id).map_err(|e| {
            refusal(
                Code::InternalError,
                format!("cannot read the conversation: {e}"),
            )
        })?;
        Ok((row, messages))
    }

    /// A conversation and its messages for `check_status`, without the
    /// retention check (an expired one is still shown until pruned).
    pub fn view(&self, id: &str, owner: &str) -> Option<(ConversationRow, Vec<MessageRow>)> {
        let row = self.store.conversation(id).ok()??;
        if row.owner != owner {
            return None;
        }
        let messages = self.store.messages(id).ok()?;
        Some((row, messages))
    }

    /// Deletes conversations older than the retention.
    pub fn prune(&self) -> rusqlite::Result<usize> {
        self.store.prune_conversations(self.retention)
    }
}

/// `3 days`, `5 h`, `12 min`.
fn human_days(d: Duration) -> String {
    let secs = d.as_secs();
    match secs {
        s if s >= 86_400 && s % 86_400 == 0 => format!("{} days", s / 86_400),
        s if s >= 86_400 => format!("{:.1} days", s as f64 / 86_400.0),
        s if s >= 3600 => format!("{:.0} h", s as f64 / 3600.0),
        s => format!("{} min", s.div_ceil(60)),
    }
}

/// The stored spelling of a role.
pub fn role_name(role: Role) -> &'static str {
    match role {
        Role::System => "system",
        Role::User => "user",
        Role::Assistant => "assistant",
        Role::Tool => "tool",
    }
}

fn role_of(name: &str) -> Role {
    match name {
        "system" => Role::System,
        "assistant" => Role::Assistant,
        "tool" => Role::Tool,
        _ => Role::User,
    }
}

/// A stored message as the plugin API carries it.
pub fn to_message(row: &MessageRow) -> Message {
    let attachments: Vec<Attachment> = row
        .attachments
        .as_deref()
        .and_then(|j| serde_json::from_str(j).ok())
        .unwrap_or_default();
    let tool_calls: Vec<ToolCall> = row
        .tool_calls
        .as_deref()
        .and_then(|j| serde_json::from_str(j).ok())
        .unwrap_or_default();
    Message {
        role: role_of(&row.role),
        content: row.content.clone(),
        attachments,
        tool_call_id: row.tool_call_id.clone(),
        tool_calls,
    }
}

/// Ids of the tool calls of the last assistant message that no tool
/// message after it answers: what the model waits for.
pub fn pending_tool_calls(messages: &[MessageRow]) -> Vec<String> {
    let Some(last) = messages.iter().rposition(|m| m.role == "assistant") else {
        return Vec::new();
    };
    let calls: Vec<ToolCall> = messages[last]
        .tool_calls
        .as_deref()
        .and_then(|j| serde_json::from_str(j).ok())
        .unwrap_or_default();
    let answered: Vec<&str> = messages[last + 1..]
        .iter()
        .filter(|m| m.role == "tool")
        .filter_map(|m| m.tool_call_id.as_deref())
        .collect();
    calls
        .into_iter()
        .map(|c| c.id)
        .filter(|id| !answered.contains(&id.as_str()))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn conversations(retention: Duration) -> Conversations {
        Conversations::new(None, retention)
    }

    #[test]
    fn ids_are_checked_before_any_lookup() {
        assert!(is_conversation_id(&format!(
            "{ID_PREFIX}{}",
            "a".repeat(32)
        )));
        for bad in [
            "conv_../../x",
            "job_123",
            "conv_",
            &format!("conv_{}", "g".repeat(32)),
        ] {
            assert!(!is_conversation_id(bad), "{bad}");
        }
    }

    #[test]
    fn only_the_owner_continues_and_only_one_turn_runs() {
        let c = conversations(Duration::from_secs(60));
        let (row, slot) = c.start("key-a").unwrap();
        assert!(c.claim(&row.id).is_none(), "busy while a turn runs");
        slot.bind("job_1");
        assert_eq!(c.running_job(&row.id).as_deref(), Some("job_1"));
        drop(slot);
        assert!(c.running_job(&row.id).is_none());
        assert!(c.claim(&row.id).is_some());
        assert!(c.load(&row.id, "key-a").is_ok());
        let other = c.load(&row.id, "key-b").unwrap_err();
        assert_eq!(other.code, Code::ConversationNotFound);
        let unknown = c
            .load(&format!("conv_{}", "0".repeat(32)), "key-a")
            .unwrap_err();
        assert_eq!(unknown.code, Code::ConversationNotFound);
    }

    #[test]
    fn expired_conversations_say_so() {
        let c = conversations(Duration::from_secs(60));
        let (mut row, _slot) = c.start("k").unwrap();
        row.updated_ms = now_ms() - 3_600_000;
        c.store().append_turn(&row, &[]).unwrap();
        let err = c.load(&row.id, "k").unwrap_err();
        assert_eq!(err.code, Code::ConversationExpired);
        assert!(err.message.contains("retention_days"), "{}", err.message);
    }

    fn msg(role: &str, calls: &[&str], answers: Option<&str>) -> MessageRow {
        MessageRow {
            role: role.into(),
            content: String::new(),
            model: None,
            provider: None,
            turn: 1,
            attachments: None,
            tool_calls: (!calls.is_empty()).then(|| {
                serde_json::to_string(
                    &calls
                        .iter()
                        .map(|id| ToolCall {
                            id: id.to_string(),
                            name: "f".into(),
                            arguments: "{}".into(),
                        })
                        .collect::<Vec<_>>(),
                )
                .unwrap()
            }),
            tool_call_id: answers.map(str::to_string),
            meta: None,
            created_ms: 0,
        }
    }

    #[test]
    fn pending_calls_are_those_of_the_last_answer_not_yet_answered() {
        let history = vec![
            msg("user", &[], None),
            msg("assistant", &["c1", "c2"], None),
            msg("tool", &[], Some("c1")),
        ];
        assert_eq!(pending_tool_calls(&history), ["c2"]);
        let mut done = history.clone();
        done.push(msg("tool", &[], Some("c2")));
        done.push(msg("assistant", &[], None));
        assert!(pending_tool_calls(&done).is_empty());
        let message = to_message(&history[1]);
        assert_eq!(message.role, Role::Assistant);
        assert_eq!(message.tool_calls.len(), 2);
    }
}
