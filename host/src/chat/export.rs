//! `export: true`: a conversation written out as files, in Converse's
//! layout: `<dir>/<continuation_id>/1_request.txt`, `1_response.txt`, …,
//! `metadata.json`. A `consensus` round has one response file per model
//! and phase: `1_response_<model>_initial.txt`, `…_refined.txt`.
//!
//! Each file is written to a temporary name in the same folder and renamed
//! into place, so a reader never sees half a file. The folder name is the
//! conversation id, checked to be nothing but `conv_` and hex digits, so an
//! export can never reach another conversation's folder or leave the dir.

use std::io::Write;
use std::path::{Path, PathBuf};

use serde_json::{Value, json};

use super::conversation::is_conversation_id;
use crate::store::{ConversationRow, MessageRow};

/// One turn: what was sent and what came back (one answer per model of a
/// consensus round).
struct Turn<'a> {
    number: u64,
    sent: Vec<&'a MessageRow>,
    answers: Vec<&'a MessageRow>,
}

fn turns(messages: &[MessageRow]) -> Vec<Turn<'_>> {
    let mut turns: Vec<Turn<'_>> = Vec::new();
    for m in messages {
        if turns.last().is_none_or(|t| t.number != m.turn) {
            turns.push(Turn {
                number: m.turn,
                sent: Vec::new(),
                answers: Vec::new(),
            });
        }
        let turn = turns.last_mut().expect("pushed above");
        if m.role == "assistant" {
            turn.answers.push(m);
        } else {
            turn.sent.push(m);
        }
    }
    turns
}

fn request_text(turn: &Turn<'_>) -> String {
    let mut out = String::new();
    for m in &turn.sent {
        if !out.is_empty() {
            out.push_str("\n\n");
        }
        match (m.role.as_str(), &m.tool_call_id) {
            ("tool", Some(id)) => out.push_str(&format!("[tool result for {id}]\n{}", m.content)),
            _ => out.push_str(&m.content),
        }
        let names: Vec<String> = m
            .attachments
            .as_deref()
            .and_then(|j| serde_json::from_str::<Vec<poe_plugin_api::Attachment>>(j).ok())
            .unwrap_or_default()
            .into_iter()
            .map(|a| a.name.unwrap_or_else(|| "attachment".into()))
            .collect();
        if !names.is_empty() {
            out.push_str(&format!("\n\n[attached: {}]", names.join(", ")));
        }
    }
    out.push('\n');
    out
}

fn response_text(answer: &MessageRow) -> String {
    let mut out = answer.content.clone();
    let calls: Vec<poe_plugin_api::ToolCall> = answer
        .tool_calls
        .as_deref()
        .and_then(|j| serde_json::from_str(j).ok())
        .unwrap_or_default();
    for call in calls {
        out.push_str(&format!(
            "\n[tool call {}: {}({})]",
            call.id, call.name, call.arguments
        ));
    }
    out.push('\n');
    out
}

fn write_atomic(dir: &Path, name: &str, bytes: &[u8]) -> std::io::Result<()> {
    let mut tmp = tempfile::NamedTempFile::new_in(dir)?;
    tmp.write_all(bytes)?;
    tmp.as_file().sync_all()?;
    tmp.persist(dir.join(name)).map_err(|e| e.error)?;
    Ok(())
}

/// Writes `conversation` under `dir`; returns its folder.
pub fn export(
    dir: &Path,
    conversation: &ConversationRow,
    messages: &[MessageRow],
) -> std::io::Result<PathBuf> {
    if !is_conversation_id(&conversation.id) {
        return Err(std::io::Error::new(
            std::io::ErrorKind::InvalidInput,
            format!("'{}' is not a conversation id", conversation.id),
        ));
    }
    crate::config::ensure_private_dir(dir)?;
    let folder = dir.join(&conversation.id);
    crate::config::ensure_private_dir(&folder)?;
    let turns = turns(messages);
    let mut listed: Vec<Value> = Vec::new();
    for turn in &turns {
        write_atomic(
            &folder,
            &format!("{}_request.txt", turn.number),
            request_text(turn).as_bytes(),
        )?;
        let meta_of = |a: &MessageRow| -> Value {
            a.meta
                .as_deref()
                .and_then(|m| serde_json::from_str(m).ok())
                .unwrap_or(Value::Null)
        };
        match turn.answers.as_slice() {
            [] => listed.push(json!({"turn": turn.number})),
            [answer] => {
                write_atomic(
                    &folder,
                    &format!("{}_response.txt", turn.number),
                    response_text(answer).as_bytes(),
                )?;
                listed.push(json!({
                    "turn": turn.number,
                    "model": answer.model,
                    "provider": answer.provider,
                    "metadata": meta_of(answer),
                }));
            }
            several => {
                let mut answers = Vec::new();
                for answer in several {
                    let meta = meta_of(answer);
                    let model = file_part(answer.model.as_deref().unwrap_or("model"));
                    let phase = meta["phase"].as_str().unwrap_or("initial");
                    if let Some(initial) = meta["initial"].as_str().filter(|_| phase == "refined") {
                        write_atomic(
                            &folder,
                            &format!("{}_response_{model}_initial.txt", turn.number),
                            format!("{initial}\n").as_bytes(),
                        )?;
                    }
                    write_atomic(
                        &folder,
                        &format!("{}_response_{model}_{phase}.txt", turn.number),
                        response_text(answer).as_bytes(),
                    )?;
                    answers.push(json!({
                        "model": answer.model,
                        "provider": answer.provider,
                        "metadata": meta,
                    }));
                }
                listed.push(json!({"turn": turn.number, "answers": answers}));
            }
        }
    }
    let metadata = json!({
        "continuation_id": conversation.id,
        "provider": conversation.provider,
        "model": conversation.model,
        "messageCount": messages.len(),
        "created": rfc3339(conversation.created_ms),
        "updated": rfc3339(conversation.updated_ms),
        "turns": listed,
    });
    write_atomic(
        &folder,
        "metadata.json",
        serde_json::to_string_pretty(&metadata)
            .unwrap_or_default()
            .as_bytes(),
    )?;
    Ok(folder)
}

/// A model name as part of a file name: letters, digits, `-`, `.`, `_`.
fn file_part(name: &str) -> String {
    name.chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || matches!(c, '-' | '.' | '_') {
                c
            } else {
                '_'
            }
        })
        .collect::<String>()
        .trim_start_matches('.')
        .to_string()
}

fn rfc3339(ms: u64) -> String {
    chrono::DateTime::from_timestamp_millis(ms as i64)
        .map(|t| t.to_rfc3339_opts(chrono::SecondsFormat::Millis, true))
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(role: &str, content: &str, turn: u64) -> MessageRow {
        MessageRow {
            role: role.into(),
            content: content.into(),
            model: Some("GPT-5".into()),
            provider: Some("poe-openai".into()),
            turn,
            attachments: None,
            tool_calls: None,
            tool_call_id: None,
            meta: Some(r#"{"usage":{"total_tokens":3}}"#.into()),
            created_ms: 0,
        }
    }

    #[test]
    fn writes_converses_layout_and_refuses_odd_ids() {
        let dir = tempfile::tempdir().unwrap();
        let id = format!("conv_{}", "ab".repeat(16));
        let conversation = ConversationRow {
            id: id.clone(),
            owner: String::new(),
            provider: Some("poe-openai".into()),
            model: Some("GPT-5".into()),
            thread: None,
            tools: None,
            last_job_id: None,
            turns: 2,
            created_ms: 1_700_000_000_000,
            updated_ms: 1_700_000_000_000,
        };
        let messages = vec![
            row("user", "hi", 1),
            row("assistant", "hello", 1),
            row("user", "more", 2),
            row("assistant", "sure", 2),
        ];
        let folder = export(dir.path(), &conversation, &messages).unwrap();
        assert_eq!(folder, dir.path().join(&id));
        let mut names: Vec<String> = std::fs::read_dir(&folder)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        names.sort();
        assert_eq!(
            names,
            [
                "1_request.txt",
                "1_response.txt",
                "2_request.txt",
                "2_response.txt",
                "metadata.json"
            ]
        );
        assert_eq!(
            std::fs::read_to_string(folder.join("2_response.txt")).unwrap(),
            "sure\n"
        );
        let meta: Value =
            serde_json::from_str(&std::fs::read_to_string(folder.join("metadata.json")).unwrap())
                .unwrap();
        assert_eq!(meta["messageCount"], 4);
        assert_eq!(meta["turns"][1]["metadata"]["usage"]["total_tokens"], 3);
        let mut evil = conversation.clone();
        evil.id = "../escape".into();
        assert!(export(dir.path(), &evil, &messages).is_err());
        assert!(!dir.path().parent().unwrap().join("escape").exists());
    }
}
