//! Runs a planned consensus as its parent job: phase 1 asks every model in
//! parallel, phase 2 asks each that answered to refine its answer given the
//! others', then the round is stored and the answer shaped (Converse's
//! layout). Cancelling the parent stops every model still running; what
//! arrived is kept in the result.

use std::sync::Arc;

use futures::StreamExt;
use futures::stream::FuturesUnordered;
use poe_plugin_api::{Message, OutputKind, Request, Role, Usage};
use rmcp::model::{CallToolResult, ContentBlock, MetaObject};
use serde_json::{Value, json};

use super::prepare::{Plan, Seat, feedback_message};
use super::{DEFAULT_FEEDBACK_PROMPT, Member};
use crate::chat::turn::row;
use crate::daemon::state::DaemonState;
use crate::jobs::{Job, Status};
use crate::mcp::call::{self, META_CONTINUATION_ID, STATUS_PREFIX};
use crate::mcp::errors::{Code, tool_error};
use crate::store::now_ms;
use crate::summaries::Summaries;

/// How one model call ended.
enum Outcome {
    Answered {
        text: String,
        usage: Option<Usage>,
        ms: u64,
    },
    Failed {
        error: String,
        partial: String,
        cancelled: bool,
    },
}

/// Asks `seat` with `messages` as a job of its own (child of `parent`).
async fn ask(
    daemon: &Arc<DaemonState>,
    parent: &Arc<Job>,
    plan: &Plan,
    seat: &Seat,
    messages: Vec<Message>,
    phase: &'static str,
) -> Outcome {
    let request = Request {
        model: seat.routed.clone(),
        messages,
        output: OutputKind::Text,
        params: Default::default(),
        options: plan.options.clone(),
        stream: true,
        api_key: plan.api_key.clone(),
        cwd: plan.cwd.clone(),
        continuation: None,
        timeout_ms: None,
    };
    let answered = call::sub_call(
        daemon,
        parent,
        "consensus",
        &format!("{} ({phase})", seat.model),
        // Unique: a model call of a consensus is never shared with another.
        format!("consensus:{}:{}:{phase}", parent.id, seat.model),
        seat.plugin.clone(),
        request,
        |child| {
            daemon.consensus.add(
                &parent.id,
                Member {
                    model: seat.model.clone(),
                    phase,
                    job_id: child.id.clone(),
                },
            )
        },
    )
    .await;
    match answered {
        Ok((response, took)) => Outcome::Answered {
            text: response.text,
            usage: response.usage,
            ms: took.as_millis() as u64,
        },
        Err(snapshot) => Outcome::Failed {
            error: snapshot
                .error
                .unwrap_or_else(|| format!("the call ended as {}", snapshot.status.as_str())),
            partial: snapshot.output,
            cancelled: snapshot.status == Status::Cancelled,
        },
    }
}

/// Runs `calls` (seat index, future) to the end, telling the parent's
/// waiters after each how many answered and who is still working.
async fn gather(
    parent: &Job,
    phase: &str,
    names: &[&str],
    calls: Vec<(usize, futures::future::BoxFuture<'_, Outcome>)>,
) -> Vec<(usize, Outcome)> {
    let total = calls.len();
    let asked: Vec<usize> = calls.iter().map(|(i, _)| *i).collect();
    let mut pending: FuturesUnordered<_> = calls
        .into_iter()
        .map(|(i, call)| async move { (i, call.await) })
        .collect();
    let mut done: Vec<(usize, Outcome)> = Vec::with_capacity(total);
    while let Some((i, outcome)) = pending.next().await {
        done.push((i, outcome));
        let named = |answered: bool| -> Vec<&str> {
            done.iter()
                .filter(|(_, o)| matches!(o, Outcome::Answered { .. }) == answered)
                .map(|(i, _)| names[*i])
                .collect()
        };
        let (answered, failed) = (named(true), named(false));
        let waiting: Vec<&str> = asked
            .iter()
            .filter(|i| !done.iter().any(|(d, _)| d == *i))
            .map(|i| names[*i])
            .collect();
        let mut line = format!(
            "{STATUS_PREFIX}{phase}: {}/{total} answered",
            answered.len()
        );
        if !answered.is_empty() {
            line.push_str(&format!(": {}", answered.join(", ")));
        }
        if !failed.is_empty() {
            line.push_str(&format!("; failed: {}", failed.join(", ")));
        }
        if !waiting.is_empty() {
            line.push_str(&format!("; waiting for {}", waiting.join(", ")));
        }
        parent.push_progress(line);
    }
    done.sort_by_key(|(i, _)| *i);
    done
}

fn usage_json(usage: &Option<Usage>) -> Value {
    let u = usage.clone().unwrap_or_default();
    json!({
        "input_tokens": u.prompt_tokens,
        "output_tokens": u.completion_tokens,
        "total_tokens": u.total_tokens,
    })
}

/// Runs `plan` as `job` and records the outcome in the job table.
pub async fn run(daemon: Arc<DaemonState>, job: Arc<Job>, plan: Plan) {
    let _guard = daemon.begin_job();
    let names: Vec<&str> = plan.seats.iter().map(|s| s.model.as_str()).collect();
    let user = crate::chat::conversation::to_message(&plan.user);

    // Phase 1: everyone answers.
    let calls = plan
        .seats
        .iter()
        .enumerate()
        .map(|(i, seat)| {
            let mut messages = seat.history.clone();
            messages.push(user.clone());
            let call: futures::future::BoxFuture<'_, Outcome> =
                Box::pin(ask(&daemon, &job, &plan, seat, messages, "initial"));
            (i, call)
        })
        .collect();
    let initial = gather(&job, "initial answers", &names, calls).await;

    // Phase 2: each that answered refines, given the others' answers.
    let answers: Vec<(usize, &str)> = initial
        .iter()
        .filter_map(|(i, o)| match o {
            Outcome::Answered { text, .. } => Some((*i, text.as_str())),
            Outcome::Failed { .. } => None,
        })
        .collect();
    let cross = plan.enable_cross_feedback && answers.len() > 1 && !job.cancel_requested();
    let refined = if cross {
        let instruction = plan
            .feedback_prompt
            .as_deref()
            .unwrap_or(DEFAULT_FEEDBACK_PROMPT);
        let calls = answers
            .iter()
            .map(|&(i, own)| {
                let seat = &plan.seats[i];
                let others: Vec<(&str, &str)> = answers
                    .iter()
                    .filter(|(j, _)| *j != i)
                    .map(|&(j, text)| (names[j], text))
                    .collect();
                let mut messages = seat.history.clone();
                messages.push(user.clone());
                messages.push(Message {
                    role: Role::Assistant,
                    content: own.to_string(),
                    attachments: Vec::new(),
                    tool_call_id: None,
                    tool_calls: Vec::new(),
                });
                messages.push(feedback_message(&others, instruction));
                let call: futures::future::BoxFuture<'_, Outcome> =
                    Box::pin(ask(&daemon, &job, &plan, seat, messages, "refined"));
                (i, call)
            })
            .collect();
        gather(&job, "refined answers", &names, calls).await
    } else {
        Vec::new()
    };
    daemon.consensus.remove(&job.id);
    finish(daemon.clone(), job, plan, initial, refined).await;
}

/// One answer in `phases`.
fn entry(seat: &Seat, text: &str, usage: &Option<Usage>, ms: u64) -> Value {
    json!({
        "model": seat.model,
        "provider": seat.provider(),
        "status": "success",
        "response": text,
        "metadata": {
            "usage": usage_json(usage),
            "response_time_ms": ms,
        },
    })
}

/// One model call that did not answer, in `phases.failed`.
fn failure(seat: &Seat, phase: &str, error: &str, partial: &str, cancelled: bool) -> Value {
    json!({
        "model": seat.model,
        "provider": seat.provider(),
        "phase": phase,
        "status": if cancelled { "cancelled" } else { "failed" },
        "error": error,
        "partial_response": partial,
    })
}

/// Stores the round, shapes the answer, finishes the job.
async fn finish(
    daemon: Arc<DaemonState>,
    job: Arc<Job>,
    plan: Plan,
    initial: Vec<(usize, Outcome)>,
    refined: Vec<(usize, Outcome)>,
) {
    let cancelled = job.cancel_requested();
    let mut phases_initial = Vec::new();
    let mut phases_refined = Vec::new();
    let mut failed = Vec::new();
    // The answer each model ends with: refined if it got that far.
    let mut finals: Vec<(usize, String, Value)> = Vec::new();
    for (i, outcome) in &initial {
        let seat = &plan.seats[*i];
        match outcome {
            Outcome::Answered { text, usage, ms } => {
                phases_initial.push(entry(seat, text, usage, *ms));
                finals.push((
                    *i,
                    text.clone(),
                    json!({"phase": "initial", "usage": usage_json(usage), "response_time_ms": ms}),
                ));
            }
            Outcome::Failed {
                error,
                partial,
                cancelled,
            } => failed.push(failure(seat, "initial", error, partial, *cancelled)),
        }
    }
    for (i, outcome) in &refined {
        let seat = &plan.seats[*i];
        match outcome {
            Outcome::Answered { text, usage, ms } => {
                phases_refined.push(entry(seat, text, usage, *ms));
                if let Some(f) = finals.iter_mut().find(|(j, _, _)| j == i) {
                    let initial = std::mem::replace(&mut f.1, text.clone());
                    f.2 = json!({"phase": "refined", "initial": initial, "usage": usage_json(usage), "response_time_ms": ms});
                }
            }
            Outcome::Failed {
                error,
                partial,
                cancelled,
            } => failed.push(failure(seat, "refined", error, partial, *cancelled)),
        }
    }
    let id = plan.slot.conversation_id().to_string();
    let answered = phases_initial.len();
    if cancelled || answered == 0 {
        drop(plan.slot);
        let (code, message, status) = if cancelled {
            (
                Code::Cancelled,
                format!(
                    "the consensus was cancelled; {answered} of {} models had answered (kept below); the round was not stored",
                    plan.seats.len()
                ),
                Status::Cancelled,
            )
        } else {
            let errors: Vec<String> = failed
                .iter()
                .map(|f| {
                    format!(
                        "{}: {}",
                        f["model"].as_str().unwrap_or("?"),
                        f["error"].as_str().unwrap_or("?")
                    )
                })
                .collect();
            (
                Code::ProviderUnavailable,
                format!(
                    "every model failed, nothing was stored: {}",
                    errors.join("; ")
                ),
                Status::Failed,
            )
        };
        let mut result = tool_error(code, message.clone());
        if let Some(Value::Object(body)) = result.structured_content.as_mut() {
            body.insert(
                "phases".into(),
                json!({"initial": phases_initial, "refined": phases_refined, "failed": failed}),
            );
        }
        daemon.jobs.finish(&job, status, result, Some(message));
        return;
    }

    // Store the round: the user message, then each model's final answer.
    let first = finals[0].0;
    let mut conversation = plan.conversation.clone();
    conversation.provider = Some(plan.seats[first].provider().to_string());
    conversation.model = Some(plan.seats[first].model.clone());
    conversation.thread = None;
    conversation.last_job_id = Some(job.id.clone());
    conversation.turns = plan.number;
    conversation.updated_ms = now_ms();
    let mut rows = vec![plan.user.clone()];
    for (i, text, meta) in &finals {
        let seat = &plan.seats[*i];
        let mut answer = row(
            Role::Assistant,
            text.clone(),
            plan.number,
            &seat.model,
            seat.provider(),
        );
        answer.meta = Some(meta.to_string());
        rows.push(answer);
    }
    let message_count = plan.history_len + rows.len();
    let export_dir = plan.export.then(|| {
        daemon
            .settings
            .chat
            .export_dir
            .clone()
            .unwrap_or_else(|| daemon.paths.exports())
    });
    // Stored, then exported when asked; `Ok(Some(folder))` after an export.
    let stored = {
        let daemon = daemon.clone();
        tokio::task::spawn_blocking(move || -> Result<Option<std::path::PathBuf>, String> {
            let store = daemon.conversations.store();
            store.append_turn(&conversation, &rows).map_err(|e| {
                format!(
                    "the round could not be saved ({e}); continuing this conversation will miss it"
                )
            })?;
            let Some(dir) = export_dir else {
                return Ok(None);
            };
            let messages = store
                .messages(&conversation.id)
                .map_err(|e| format!("export failed: {e}"))?;
            crate::chat::export::export(&dir, &conversation, &messages)
                .map(Some)
                .map_err(|e| format!("export to {} failed: {e}", dir.display()))
        })
        .await
        .unwrap_or_else(|e| Err(format!("saving the round failed: {e}")))
    };
    drop(plan.slot);

    let status = if failed.is_empty() {
        "consensus_complete"
    } else {
        "completed_with_errors"
    };
    let mut body = json!({
        "status": status,
        "models_consulted": plan.seats.len(),
        "successful_initial_responses": answered,
        "failed_responses": failed.len(),
        "refined_responses": phases_refined.len(),
        "phases": {"initial": phases_initial, "refined": phases_refined, "failed": failed},
        "continuation": {"id": id, "messageCount": message_count},
        "settings": plan.settings,
    });
    if !plan.notes.is_empty() {
        body["notes"] = json!(plan.notes);
    }
    let discussion: String = finals
        .iter()
        .map(|(i, answer, _)| format!("{}: {answer}\n\n", plan.seats[*i].model))
        .collect();
    if let Some(summary) = Summaries::conclude(&daemon, &job, &discussion).await
        && let (Value::Object(body), Value::Object(summary)) = (&mut body, summary)
    {
        body.extend(summary);
    }
    match &stored {
        Ok(Some(folder)) => body["export_path"] = json!(folder.display().to_string()),
        Ok(None) => {}
        Err(warning) => {
            tracing::warn!(conversation = %id, %warning, "consensus round");
            body["warning"] = json!(warning);
        }
    }
    let mut text = String::new();
    for (i, answer, meta) in &finals {
        let phase = meta["phase"].as_str().unwrap_or("initial");
        text.push_str(&format!(
            "## {} ({phase})\n\n{answer}\n\n",
            plan.seats[*i].model
        ));
    }
    for f in body["phases"]["failed"].as_array().into_iter().flatten() {
        text.push_str(&format!(
            "## {} ({} in the {} phase)\n\n{}\n\n",
            f["model"].as_str().unwrap_or("?"),
            f["status"].as_str().unwrap_or("failed"),
            f["phase"].as_str().unwrap_or("?"),
            f["error"].as_str().unwrap_or("?")
        ));
    }
    for note in &plan.notes {
        text.push_str(&format!("Note: {note}\n"));
    }
    text.push_str(&format!("[{status}; continuation_id: {id}]"));
    let mut result = CallToolResult::success(vec![ContentBlock::text(text)]);
    result.structured_content = Some(body);
    let mut meta = MetaObject::new();
    meta.0.insert(META_CONTINUATION_ID.into(), json!(id));
    meta.0.insert("poe-code/job_id".into(), json!(job.id));
    result.meta = Some(meta);
    daemon.jobs.finish(&job, Status::Completed, result, None);
}
