//! The job table as MCP sees it: the `check_status` and `cancel_job` tools
//! (shaped after the Converse API), and the same jobs as SEP-2663 tasks
//! (`tasks/get`, `tasks/cancel`). Both are views of one table, so a job
//! started in one session can be watched or cancelled from any other.

use rmcp::model::{
    CallToolResult, ContentBlock, DetailedTask, JsonObject, Task, TaskPayload, TaskStatus,
};
use serde_json::{Value, json};

use super::errors::{Code, tool_error};
use super::output::{char_budget, head};
use crate::chat::conversation::is_conversation_id;
use std::sync::Arc;

use crate::daemon::state::DaemonState;
use crate::jobs::{Snapshot, Status};
use crate::summaries::Summaries;

/// How many jobs `check_status` lists without an id.
const RECENT: usize = 10;
/// How much of a consensus model's latest text `check_status` shows.
const PARTIAL_TAIL: usize = 300;

/// The text of a finished job's result.
fn result_text(snapshot: &Snapshot) -> Option<String> {
    let result = snapshot.result.as_ref()?;
    let texts: Vec<&str> = result
        .content
        .iter()
        .filter_map(|b| b.as_text().map(|t| t.text.as_str()))
        .collect();
    Some(texts.join("\n"))
}

/// A page of `text` from `offset`, at most `budget` characters.
fn page(text: &str, offset: usize, budget: usize) -> (String, Option<usize>) {
    let rest: String = text.chars().skip(offset).collect();
    let shown = head(&rest, budget).to_string();
    let shown_len = shown.chars().count();
    let next = (shown_len < rest.chars().count()).then_some(offset + shown_len);
    (shown, next)
}

/// `check_status`. `owner` is the caller's key hash, which conversations
/// are checked against.
pub fn check_status(
    daemon: &Arc<DaemonState>,
    id: Option<&str>,
    full_history: bool,
    offset: usize,
    owner: &str,
) -> CallToolResult {
    let Some(id) = id else {
        let jobs: Vec<Value> = daemon
            .jobs
            .recent(RECENT)
            .iter()
            .map(|s| {
                let mut entry = json!({
                    "continuation_id": s.id,
                    "status": s.status.as_str(),
                    "tool": s.tool,
                    "model": s.model,
                    "elapsed_seconds": (s.elapsed_secs() * 10.0).round() / 10.0,
                });
                let title = daemon.summaries.title(&s.id).or_else(|| {
                    s.result
                        .as_ref()
                        .and_then(|r| r.structured_content.as_ref())
                        .and_then(|b| b.get("title"))
                        .and_then(Value::as_str)
                        .map(str::to_string)
                });
                if let Some(title) = title {
                    entry["title"] = json!(title);
                }
                entry
            })
            .collect();
        let body = json!({ "jobs": jobs });
        return structured(body);
    };
    if is_conversation_id(id) {
        return conversation_status(daemon, id, full_history, offset, owner);
    }
    let Some(snapshot) = daemon.jobs.get(id) else {
        return tool_error(
            Code::InvalidArgument,
            format!(
                "no job '{id}' (jobs are kept 3 days; call check_status without an id to list recent ones)"
            ),
        );
    };
    structured(job_body(daemon, &snapshot, full_history, offset))
}

/// What `check_status` says about one job.
fn job_body(
    daemon: &Arc<DaemonState>,
    snapshot: &Snapshot,
    full_history: bool,
    offset: usize,
) -> Value {
    let budget = char_budget(daemon.settings.max_output_tokens).saturating_sub(2_000);
    let mut body = json!({
        "continuation_id": snapshot.id,
        "status": snapshot.status.as_str(),
        "tool": snapshot.tool,
        "model": snapshot.model,
        "elapsed_seconds": (snapshot.elapsed_secs() * 10.0).round() / 10.0,
        "progress": {
            "events": snapshot.events,
            "characters_streamed": snapshot.output.chars().count(),
        },
    });
    if let Some(error) = &snapshot.error {
        body["error"] = json!(error);
    }
    // Its AI title, and while it runs a summary of the output so far.
    if !snapshot.status.is_finished()
        && let Some(job) = daemon.jobs.running(&snapshot.id)
    {
        if let Some(title) = daemon.summaries.title(&snapshot.id) {
            body["title"] = json!(title);
        }
        if let Some(summary) = Summaries::partial(daemon, &job) {
            body["summary"] = json!(summary);
        }
    }
    // A running consensus: each model call's state and latest text.
    if let Some(members) = daemon.consensus.members(&snapshot.id) {
        let models: Vec<Value> = members
            .iter()
            .filter_map(|m| {
                let call = daemon.jobs.get(&m.job_id)?;
                let tail: String = {
                    let chars: Vec<char> = call.output.chars().collect();
                    chars[chars.len().saturating_sub(PARTIAL_TAIL)..]
                        .iter()
                        .collect()
                };
                Some(json!({
                    "model": m.model,
                    "phase": m.phase,
                    "status": call.status.as_str(),
                    "elapsed_seconds": (call.elapsed_secs() * 10.0).round() / 10.0,
                    "characters_streamed": call.output.chars().count(),
                    "partial_response": tail,
                    "error": call.error,
                    "job_id": m.job_id,
                }))
            })
            .collect();
        body["models"] = json!(models);
    }
    // The streamed text while running or on request; the result once done.
    let (key, text) = if full_history || !snapshot.status.is_finished() {
        let streamed = if snapshot.output.is_empty() {
            result_text(snapshot).unwrap_or_default()
        } else {
            snapshot.output.clone()
        };
        ("output", streamed)
    } else {
        ("result", result_text(snapshot).unwrap_or_default())
    };
    let (shown, next) = page(&text, offset, budget);
    body[key] = json!(shown);
    if let Some(next) = next {
        body["next_offset"] = json!(next);
    }
    if snapshot.status.is_finished() {
        // What its upstream requests cost: tokens, and Poe points once
        // matched (`points_priced` of `requests` have them).
        if let Some(usage) = daemon
            .jobs
            .store()
            .and_then(|store| store.job_usage(&snapshot.id).ok().flatten())
        {
            body["usage"] = json!({
                "requests": usage.requests,
                "prompt_tokens": usage.prompt_tokens,
                "completion_tokens": usage.completion_tokens,
                "points": usage.points,
                "points_priced": usage.priced,
            });
        }
        daemon.jobs.mark_delivered(&snapshot.id);
        if let Some(structured) = snapshot
            .result
            .as_ref()
            .and_then(|r| r.structured_content.as_ref())
            && (structured.get("continuation").is_some() || snapshot.tool == "consensus")
        {
            // A chat turn: its usage, tool calls and continuation; a
            // consensus: its phases and outcome.
            for key in [
                "continuation",
                "metadata",
                "tool_calls",
                "phases",
                "notes",
                "title",
                "final_summary",
                "summary_source",
            ] {
                if let Some(v) = structured.get(key) {
                    body[key] = v.clone();
                }
            }
            if snapshot.tool == "consensus"
                && let Some(v) = structured.get("status")
            {
                body["consensus_status"] = v.clone();
            }
        }
    }
    body
}

/// `check_status` on a conversation: its newest turn as a job, plus the
/// conversation, plus its messages with `full_history` (newest first kept
/// when they do not all fit).
fn conversation_status(
    daemon: &Arc<DaemonState>,
    id: &str,
    full_history: bool,
    offset: usize,
    owner: &str,
) -> CallToolResult {
    let Some((row, messages)) = daemon.conversations.view(id, owner) else {
        return tool_error(
            Code::ConversationNotFound,
            format!("no conversation '{id}' (call check_status without an id to list recent jobs)"),
        );
    };
    let job = daemon
        .conversations
        .running_job(id)
        .or(row.last_job_id.clone())
        .and_then(|job| daemon.jobs.get(&job));
    let mut body = match &job {
        Some(snapshot) => {
            let mut body = job_body(daemon, snapshot, false, offset);
            body["job_id"] = json!(snapshot.id);
            body
        }
        None => json!({ "status": "idle" }),
    };
    body["continuation_id"] = json!(id);
    body["conversation"] = json!({
        "provider": row.provider,
        "model": row.model,
        "messageCount": messages.len(),
        "turns": row.turns,
        "created": rfc3339(row.created_ms),
        "updated": rfc3339(row.updated_ms),
    });
    if full_history {
        let budget = char_budget(daemon.settings.max_output_tokens).saturating_sub(4_000);
        let mut used = 0;
        let mut shown: Vec<Value> = Vec::new();
        for m in messages.iter().rev() {
            used += m.content.len() + 200;
            if used > budget && !shown.is_empty() {
                break;
            }
            let attachments: Vec<String> = m
                .attachments
                .as_deref()
                .and_then(|j| serde_json::from_str::<Vec<poe_plugin_api::Attachment>>(j).ok())
                .unwrap_or_default()
                .into_iter()
                .map(|a| a.name.unwrap_or_else(|| "attachment".into()))
                .collect();
            let mut entry = json!({
                "role": m.role,
                "content": head(&m.content, budget),
                "model": m.model,
                "turn": m.turn,
                "created": rfc3339(m.created_ms),
            });
            if !attachments.is_empty() {
                entry["attachments"] = json!(attachments);
            }
            if let Some(calls) = m
                .tool_calls
                .as_deref()
                .and_then(|j| serde_json::from_str::<Value>(j).ok())
            {
                entry["tool_calls"] = calls;
            }
            if let Some(call) = &m.tool_call_id {
                entry["tool_call_id"] = json!(call);
            }
            shown.push(entry);
        }
        if shown.len() < messages.len() {
            body["messages_omitted"] = json!(messages.len() - shown.len());
        }
        shown.reverse();
        body["messages"] = Value::Array(shown);
    }
    structured(body)
}

/// `cancel_job`.
pub fn cancel_job(daemon: &DaemonState, id: &str) -> CallToolResult {
    if is_conversation_id(id) {
        return match daemon.conversations.running_job(id) {
            Some(job) => cancel_job(daemon, &job),
            None => structured(json!({
                "continuation_id": id,
                "status": "idle",
                "message": "no turn of this conversation is running; nothing to cancel",
            })),
        };
    }
    if let Some(job) = daemon.jobs.running(id) {
        job.request_cancel();
        return structured(json!({
            "continuation_id": id,
            "status": "cancelled",
            "message": "cancellation requested; text streamed so far is kept (see check_status)",
        }));
    }
    match daemon.jobs.get(id) {
        Some(snapshot) => structured(json!({
            "continuation_id": id,
            "status": snapshot.status.as_str(),
            "message": "the job had already finished; nothing to cancel",
        })),
        None => tool_error(Code::InvalidArgument, format!("no job '{id}'")),
    }
}

fn structured(body: Value) -> CallToolResult {
    let text = serde_json::to_string_pretty(&body).unwrap_or_default();
    let mut result = CallToolResult::success(vec![ContentBlock::text(text)]);
    result.structured_content = Some(body);
    result
}

fn rfc3339(ms: u64) -> String {
    chrono::DateTime::from_timestamp_millis(ms as i64)
        .unwrap_or_default()
        .to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
}

/// A job as an SEP-2663 task.
pub fn task(snapshot: &Snapshot) -> Task {
    let status = match snapshot.status {
        Status::Processing => TaskStatus::Working,
        Status::Completed | Status::CompletedWithErrors | Status::Failed => TaskStatus::Completed,
        Status::Cancelled => TaskStatus::Cancelled,
    };
    let updated = snapshot.finished_ms.unwrap_or_else(crate::store::now_ms);
    Task::new(
        snapshot.id.clone(),
        status,
        rfc3339(snapshot.created_ms),
        rfc3339(updated),
    )
    .with_status_message(format!("{} ({})", snapshot.status.as_str(), snapshot.model))
    .with_ttl_ms(crate::jobs::RETENTION.as_millis() as u64)
    .with_poll_interval_ms(1000)
}

/// A job as an SEP-2663 task with its payload. Tool failures are completed
/// tasks whose result has `isError: true`, as the extension specifies.
pub fn detailed_task(snapshot: &Snapshot) -> DetailedTask {
    let payload = match (snapshot.status, &snapshot.result) {
        (Status::Processing, _) => TaskPayload::Working,
        (Status::Cancelled, _) => TaskPayload::Cancelled,
        (_, Some(result)) => TaskPayload::Completed {
            result: match serde_json::to_value(result) {
                Ok(Value::Object(map)) => map,
                _ => JsonObject::new(),
            },
        },
        (_, None) => TaskPayload::Failed {
            error: match json!({"code": -32603, "message": snapshot.error.clone().unwrap_or_default()})
            {
                Value::Object(map) => map,
                _ => JsonObject::new(),
            },
        },
    };
    DetailedTask::new(task(snapshot), payload)
}
