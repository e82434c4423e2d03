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
use crate::daemon::state::DaemonState;
use crate::jobs::{Snapshot, Status};

/// How many jobs `check_status` lists without an id.
const RECENT: usize = 10;

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

/// `check_status`.
pub fn check_status(
    daemon: &DaemonState,
    id: Option<&str>,
    full_history: bool,
    offset: usize,
) -> CallToolResult {
    let Some(id) = id else {
        let jobs: Vec<Value> = daemon
            .jobs
            .recent(RECENT)
            .iter()
            .map(|s| {
                json!({
                    "continuation_id": s.id,
                    "status": s.status.as_str(),
                    "tool": s.tool,
                    "model": s.model,
                    "elapsed_seconds": (s.elapsed_secs() * 10.0).round() / 10.0,
                })
            })
            .collect();
        let body = json!({ "jobs": jobs });
        return structured(body);
    };
    let Some(snapshot) = daemon.jobs.get(id) else {
        return tool_error(
            Code::InvalidArgument,
            format!(
                "no job '{id}' (jobs are kept 3 days; call check_status without an id to list recent ones)"
            ),
        );
    };
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
    // The streamed text while running or on request; the result once done.
    let (key, text) = if full_history || !snapshot.status.is_finished() {
        let streamed = if snapshot.output.is_empty() {
            result_text(&snapshot).unwrap_or_default()
        } else {
            snapshot.output.clone()
        };
        ("output", streamed)
    } else {
        ("result", result_text(&snapshot).unwrap_or_default())
    };
    let (shown, next) = page(&text, offset, budget);
    body[key] = json!(shown);
    if let Some(next) = next {
        body["next_offset"] = json!(next);
    }
    if snapshot.status.is_finished() {
        daemon.jobs.mark_delivered(&snapshot.id);
    }
    structured(body)
}

/// `cancel_job`.
pub fn cancel_job(daemon: &DaemonState, id: &str) -> CallToolResult {
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
