//! The `chat` tool's conversations and messages in the store.
//!
//! Schema 2 adds what a conversation needs to be continued by any session
//! after a restart: its provider and that provider's own thread, the tools
//! it was given, its last turn's job, who owns it (a hash of the API key),
//! and per message the attachments, tool calls and turn number.

use rusqlite::{OptionalExtension, params};

use super::{Store, now_ms};

/// Upgrades schema 1 (or a fresh schema-1 create) to 2.
pub(super) const MIGRATE_TO_2: &str = "
ALTER TABLE conversations ADD COLUMN provider TEXT;
ALTER TABLE conversations ADD COLUMN thread TEXT;
ALTER TABLE conversations ADD COLUMN tools TEXT;
ALTER TABLE conversations ADD COLUMN owner TEXT NOT NULL DEFAULT '';
ALTER TABLE conversations ADD COLUMN last_job_id TEXT;
ALTER TABLE conversations ADD COLUMN turns INTEGER NOT NULL DEFAULT 0;
ALTER TABLE messages ADD COLUMN provider TEXT;
ALTER TABLE messages ADD COLUMN turn INTEGER NOT NULL DEFAULT 0;
ALTER TABLE messages ADD COLUMN attachments TEXT;
ALTER TABLE messages ADD COLUMN tool_calls TEXT;
ALTER TABLE messages ADD COLUMN tool_call_id TEXT;
ALTER TABLE messages ADD COLUMN meta TEXT;
CREATE INDEX IF NOT EXISTS conversations_by_updated ON conversations(updated_ms);
";

/// One conversation row (without its messages).
#[derive(Debug, Clone, PartialEq)]
pub struct ConversationRow {
    pub id: String,
    /// Hash of the API key that started it ([`crate::limits::key_id`]).
    pub owner: String,
    /// Plugin id and routed model name of the last turn.
    pub provider: Option<String>,
    pub model: Option<String>,
    /// The provider's own thread (codex), to continue there.
    pub thread: Option<String>,
    /// The tools of the last turn that had some, as JSON.
    pub tools: Option<String>,
    pub last_job_id: Option<String>,
    pub turns: u64,
    pub created_ms: u64,
    pub updated_ms: u64,
}

/// One stored message. JSON columns hold plugin-api types.
#[derive(Debug, Clone, PartialEq)]
pub struct MessageRow {
    pub role: String,
    pub content: String,
    pub model: Option<String>,
    pub provider: Option<String>,
    pub turn: u64,
    /// `Vec<Attachment>` as JSON, when any.
    pub attachments: Option<String>,
    /// `Vec<ToolCall>` as JSON, when any.
    pub tool_calls: Option<String>,
    pub tool_call_id: Option<String>,
    /// Per-message details (usage, response time, files), as JSON.
    pub meta: Option<String>,
    pub created_ms: u64,
}

const SELECT_CONVERSATION: &str = "SELECT id, owner, provider, model, thread, tools, last_job_id, turns, created_ms, updated_ms FROM conversations";

fn row_to_conversation(row: &rusqlite::Row<'_>) -> rusqlite::Result<ConversationRow> {
    Ok(ConversationRow {
        id: row.get(0)?,
        owner: row.get(1)?,
        provider: row.get(2)?,
        model: row.get(3)?,
        thread: row.get(4)?,
        tools: row.get(5)?,
        last_job_id: row.get(6)?,
        turns: row.get::<_, i64>(7)? as u64,
        created_ms: row.get::<_, i64>(8)? as u64,
        updated_ms: row.get::<_, i64>(9)? as u64,
    })
}

impl Store {
    /// Creates an empty conversation (or leaves an existing one alone).
    pub fn create_conversation(&self, row: &ConversationRow) -> rusqlite::Result<()> {
        self.with(|c| {
            c.execute(
                "INSERT OR IGNORE INTO conversations (id, owner, provider, model, thread, tools, last_job_id, turns, created_ms, updated_ms)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10)",
                params![
                    row.id,
                    row.owner,
                    row.provider,
                    row.model,
                    row.thread,
                    row.tools,
                    row.last_job_id,
                    row.turns as i64,
                    row.created_ms as i64,
                    row.updated_ms as i64
                ],
            )
            .map(|_| ())
        })
    }

    /// One conversation by id.
    pub fn conversation(&self, id: &str) -> rusqlite::Result<Option<ConversationRow>> {
        self.with(|c| {
            c.query_row(
                &format!("{SELECT_CONVERSATION} WHERE id = ?1"),
                params![id],
                row_to_conversation,
            )
            .optional()
        })
    }

    /// Records the job of a conversation's newest turn.
    pub fn set_conversation_job(&self, id: &str, job_id: &str) -> rusqlite::Result<()> {
        self.with(|c| {
            c.execute(
                "UPDATE conversations SET last_job_id = ?2 WHERE id = ?1",
                params![id, job_id],
            )
            .map(|_| ())
        })
    }

    /// The messages of a conversation, oldest first.
    pub fn messages(&self, conversation: &str) -> rusqlite::Result<Vec<MessageRow>> {
        self.with(|c| {
            let mut stmt = c.prepare_cached(
                "SELECT role, content, model, provider, turn, attachments, tool_calls, tool_call_id, meta, created_ms
                 FROM messages WHERE conversation_id = ?1 ORDER BY id",
            )?;
            let rows = stmt.query_map(params![conversation], |row| {
                Ok(MessageRow {
                    role: row.get(0)?,
                    content: row.get(1)?,
                    model: row.get(2)?,
                    provider: row.get(3)?,
                    turn: row.get::<_, i64>(4)? as u64,
                    attachments: row.get(5)?,
                    tool_calls: row.get(6)?,
                    tool_call_id: row.get(7)?,
                    meta: row.get(8)?,
                    created_ms: row.get::<_, i64>(9)? as u64,
                })
            })?;
            rows.collect()
        })
    }

    /// Appends a finished turn's messages and updates the conversation, in
    /// one transaction: a turn is stored whole or not at all.
    pub fn append_turn(
        &self,
        conversation: &ConversationRow,
        messages: &[MessageRow],
    ) -> rusqlite::Result<()> {
        let mut conn = self.conn.lock().unwrap_or_else(|e| e.into_inner());
        let tx = conn.transaction()?;
        {
            let mut insert = tx.prepare_cached(
                "INSERT INTO messages (conversation_id, role, content, model, provider, turn, attachments, tool_calls, tool_call_id, meta, created_ms)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11)",
            )?;
            for m in messages {
                insert.execute(params![
                    conversation.id,
                    m.role,
                    m.content,
                    m.model,
                    m.provider,
                    m.turn as i64,
                    m.attachments,
                    m.tool_calls,
                    m.tool_call_id,
                    m.meta,
                    m.created_ms as i64
                ])?;
            }
        }
        tx.execute(
            "UPDATE conversations SET provider = ?2, model = ?3, thread = ?4, tools = ?5, last_job_id = ?6,
                turns = ?7, updated_ms = ?8 WHERE id = ?1",
            params![
                conversation.id,
                conversation.provider,
                conversation.model,
                conversation.thread,
                conversation.tools,
                conversation.last_job_id,
                conversation.turns as i64,
                conversation.updated_ms as i64
            ],
        )?;
        tx.commit()
    }

    /// Deletes conversations not used for `age` (their messages go with them).
    pub fn prune_conversations(&self, age: std::time::Duration) -> rusqlite::Result<usize> {
        let cutoff = now_ms().saturating_sub(age.as_millis() as u64) as i64;
        self.with(|c| {
            c.execute(
                "DELETE FROM conversations WHERE updated_ms < ?1",
                params![cutoff],
            )
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn conversation(id: &str) -> ConversationRow {
        ConversationRow {
            id: id.into(),
            owner: "k1".into(),
            provider: None,
            model: None,
            thread: None,
            tools: None,
            last_job_id: None,
            turns: 0,
            created_ms: now_ms(),
            updated_ms: now_ms(),
        }
    }

    fn message(role: &str, content: &str, turn: u64) -> MessageRow {
        MessageRow {
            role: role.into(),
            content: content.into(),
            model: Some("m".into()),
            provider: Some("p".into()),
            turn,
            attachments: None,
            tool_calls: None,
            tool_call_id: None,
            meta: None,
            created_ms: now_ms(),
        }
    }

    #[test]
    fn turns_append_whole_and_survive_reopening() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("state.db");
        {
            let store = Store::open(&path).unwrap();
            let mut c = conversation("conv_a");
            store.create_conversation(&c).unwrap();
            c.turns = 1;
            c.provider = Some("poe-openai".into());
            c.thread = Some("t1".into());
            store
                .append_turn(
                    &c,
                    &[message("user", "hi", 1), message("assistant", "hello", 1)],
                )
                .unwrap();
        }
        let store = Store::open(&path).unwrap();
        let c = store.conversation("conv_a").unwrap().unwrap();
        assert_eq!(c.turns, 1);
        assert_eq!(c.thread.as_deref(), Some("t1"));
        let messages = store.messages("conv_a").unwrap();
        assert_eq!(
            messages
                .iter()
                .map(|m| m.content.as_str())
                .collect::<Vec<_>>(),
            ["hi", "hello"]
        );
        assert!(store.conversation("conv_b").unwrap().is_none());
    }

    #[test]
    fn a_schema_1_store_is_upgraded_and_keeps_its_rows() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("state.db");
        {
            let old = rusqlite::Connection::open(&path).unwrap();
            old.execute_batch(super::super::SCHEMA).unwrap();
            old.execute(
                "INSERT INTO conversations (id, model, created_ms, updated_ms) VALUES ('old', 'm', 1, 2)",
                [],
            )
            .unwrap();
            old.pragma_update(None, "user_version", 1).unwrap();
        }
        let store = Store::open(&path).unwrap();
        let c = store.conversation("old").unwrap().unwrap();
        assert_eq!(c.model.as_deref(), Some("m"));
        assert_eq!(c.owner, "");
        // Opening again does not try to add the columns twice.
        drop(store);
        Store::open(&path).unwrap();
    }

    #[test]
    fn pruning_drops_old_conversations_with_their_messages() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&dir.path().join("state.db")).unwrap();
        let mut old = conversation("old");
        old.updated_ms = now_ms() - 10 * 86_400_000;
        store.create_conversation(&old).unwrap();
        store.append_turn(&old, &[message("user", "x", 1)]).unwrap();
        store.create_conversation(&conversation("new")).unwrap();
        assert_eq!(
            store
                .prune_conversations(std::time::Duration::from_secs(3 * 86_400))
                .unwrap(),
            1
        );
        assert!(store.messages("old").unwrap().is_empty());
        assert!(store.conversation("new").unwrap().is_some());
    }
}
