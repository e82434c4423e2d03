//! One turn of a `chat` conversation, in two halves around the job that
//! runs it: [`prepare`] checks everything and builds the request before
//! any upstream request (so a bad file, model or tool result costs
//! nothing), and [`Turn::finish`] stores the turn, exports it and shapes
//! the answer once the provider has answered.

use std::sync::Arc;

use poe_plugin_api::{
    Attachment, Message, Options, OutputKind, Request, Response, Role, ToolCall, attachment_kind,
};
use rmcp::model::{CallToolResult, ContentBlock, MetaObject};
use serde_json::{Value, json};

use super::args::{ChatArgs, Refusal, check_tool_results, check_tools};
use super::conversation::{TurnSlot, pending_tool_calls, role_name, to_message};
use super::files::{FileInput, InputRules, read_files, read_images};
use crate::daemon::state::{DaemonState, SessionInfo};
use crate::jobs::Job;
use crate::mcp::call::{META_CONTINUATION_ID, META_THREAD};
use crate::mcp::errors::{Code, tool_error};
use crate::models::Via;
use crate::plugins::LoadedPlugin;
use crate::store::{ConversationRow, MessageRow, now_ms};
use crate::summaries::Summaries;

/// A checked turn, ready to run.
pub struct Prepared {
    pub request: Request,
    pub plugin: Arc<LoadedPlugin>,
    /// The model as resolved (before routing): the job's label.
    pub model: String,
    pub run_async: bool,
    pub turn: Turn,
}

/// What [`Turn::finish`] needs to store and describe the turn.
pub struct Turn {
    conversation: ConversationRow,
    /// The user and tool messages of this turn.
    sent: Vec<MessageRow>,
    number: u64,
    model: String,
    provider: String,
    /// Tools to remember for the next turns (JSON).
    tools: Option<String>,
    ignored: Vec<&'static str>,
    via: Via,
    export: bool,
    history: usize,
    /// Frees the conversation for its next turn when dropped.
    slot: TurnSlot,
}

fn refused(r: Refusal) -> CallToolResult {
    tool_error(r.code, r.message)
}

/// The owner id of a session's conversations: a hash of its key.
pub fn owner_of(session: &SessionInfo) -> String {
    session
        .api_key
        .as_deref()
        .map(crate::limits::key_id)
        .unwrap_or_default()
}

/// The attachment kind (`image`, `pdf`) of `a`, by its content type.
fn kind_of(a: &Attachment) -> &'static str {
    match a.content_type.as_deref() {
        Some(t) if t.starts_with("image/") => attachment_kind::IMAGE,
        Some("application/pdf") => attachment_kind::PDF,
        _ if a.url.starts_with("data:image/") => attachment_kind::IMAGE,
        _ => attachment_kind::PDF,
    }
}

pub(crate) fn row(
    role: Role,
    content: String,
    turn: u64,
    model: &str,
    provider: &str,
) -> MessageRow {
    MessageRow {
        role: role_name(role).to_string(),
        content,
        model: Some(model.to_string()),
        provider: Some(provider.to_string()),
        turn,
        attachments: None,
        tool_calls: None,
        tool_call_id: None,
        meta: None,
        created_ms: now_ms(),
    }
}

/// The user message of a turn: the prompt, text files as blocks after it,
/// PDFs and images as attachments (their names in `meta.files`).
pub fn user_row(
    prompt: &str,
    files: Vec<FileInput>,
    images: Vec<Attachment>,
    turn: u64,
) -> MessageRow {
    let mut content = prompt.to_string();
    let mut attachments: Vec<Attachment> = Vec::new();
    let mut names = Vec::new();
    for file in files {
        match file {
            FileInput::Text { path, block } => {
                content.push_str("\n\n");
                content.push_str(&block);
                names.push(path);
            }
            FileInput::Attached(a) => {
                names.push(a.name.clone().unwrap_or_default());
                attachments.push(a);
            }
        }
    }
    attachments.extend(images);
    let mut m = row(Role::User, content, turn, "", "");
    m.model = None;
    m.provider = None;
    if !attachments.is_empty() {
        m.attachments = serde_json::to_string(&attachments).ok();
    }
    if !names.is_empty() {
        m.meta = Some(json!({ "files": names }).to_string());
    }
    m
}

/// The attachment a provider cannot take among `messages`, as a refusal.
pub fn refuse_attachments(
    plugin: &LoadedPlugin,
    model: &str,
    messages: &[Message],
) -> Result<(), CallToolResult> {
    let accepts = &plugin.manifest.attachments;
    let provider = &plugin.manifest.id;
    if !accepts.is_empty()
        && let Some(a) = messages
            .iter()
            .flat_map(|m| &m.attachments)
            .find(|a| !accepts.iter().any(|k| k == kind_of(a)))
    {
        return Err(tool_error(
            Code::UnsupportedAttachment,
            format!(
                "{provider} (serving {model}) cannot take {} attachments such as {} (it takes: {}); use a model that does, e.g. a Poe model",
                kind_of(a),
                a.name.as_deref().unwrap_or("this one"),
                accepts.join(", ")
            ),
        ));
    }
    Ok(())
}

/// Checks a `chat` call and builds its request. Blocking: reads the store
/// and the attached files.
pub fn prepare(
    daemon: &DaemonState,
    session: &SessionInfo,
    args: ChatArgs,
) -> Result<Prepared, CallToolResult> {
    let mut options = Options::default();
    args.sampling.apply(&mut options).map_err(refused)?;
    check_tools(args.tools.as_ref(), args.tool_choice.as_ref()).map_err(refused)?;
    options.tool_choice = args.tool_choice.clone();
    options.parallel_tool_calls = args.parallel_tool_calls;
    let prompt = args.prompt.clone().unwrap_or_default();
    if prompt.trim().is_empty() && args.tool_results.is_empty() {
        return Err(tool_error(
            Code::InvalidArgument,
            "prompt must not be empty (it may be left out only when tool_results answer the model's tool calls)",
        ));
    }
    let owner = owner_of(session);
    let conversations = &daemon.conversations;

    // The conversation to continue, claimed so no other turn runs in it.
    let existing = match &args.continuation_id {
        Some(id) => {
            let (row, messages, slot) = conversations.continue_turn(id, &owner).map_err(refused)?;
            Some(((row, messages), slot))
        }
        None => None,
    };
    let (existing, history) = match existing {
        Some(((row, messages), slot)) => (Some((row, slot)), messages),
        None => (None, Vec::new()),
    };
    let history: &[MessageRow] = &history;

    // Tool results answer exactly what the model waits for.
    let pending = pending_tool_calls(history);
    if args.tool_results.is_empty() && !pending.is_empty() {
        return Err(tool_error(
            Code::InvalidArgument,
            format!(
                "the model's last answer asked for tool calls ({}): answer them with tool_results [{{tool_call_id, content}}] and this continuation_id",
                pending.join(", ")
            ),
        ));
    }
    if existing.is_none() && !args.tool_results.is_empty() {
        return Err(tool_error(
            Code::UnknownToolCall,
            "tool_results need the continuation_id of the conversation whose model asked for the calls",
        ));
    }
    check_tool_results(&args.tool_results, &pending).map_err(refused)?;

    // The model: as named, else the conversation's, else `auto`.
    let route_of = |name: &str| daemon.registry.plugin_of(name);
    let sticky = existing
        .as_ref()
        .and_then(|(row, _)| row.model.clone())
        .filter(|_| args.model.is_none());
    let resolved = match &sticky {
        Some(model) => crate::models::Resolved {
            model: model.clone(),
            via: Via::Name,
        },
        None => daemon
            .models
            .resolve(args.model.as_deref(), !args.images.is_empty(), &route_of)
            .map_err(|e| tool_error(Code::ModelNotFound, e.to_string()))?,
    };
    let route = daemon
        .registry
        .route(&resolved.model)
        .map_err(|e| tool_error(Code::ModelNotFound, e.to_string()))?;
    let plugin = route.plugin;
    let provider = plugin.manifest.id.clone();

    // Files and images, read before anything is sent.
    let rules = InputRules::for_session(&daemon.settings.chat, session.cwd.as_deref());
    let files = read_files(&args.files, &rules).map_err(|e| tool_error(e.code, e.message))?;
    let images = read_images(&args.images, &rules).map_err(|e| tool_error(e.code, e.message))?;

    let number = existing.as_ref().map_or(0, |(row, _)| row.turns) + 1;
    let mut sent = Vec::new();
    for result in &args.tool_results {
        let mut m = row(
            Role::Tool,
            result.text(),
            number,
            &resolved.model,
            &provider,
        );
        m.tool_call_id = Some(result.tool_call_id.clone());
        sent.push(m);
    }
    if !prompt.trim().is_empty() || !files.is_empty() || !images.is_empty() {
        let mut m = user_row(&prompt, files, images, number);
        m.model = Some(resolved.model.clone());
        m.provider = Some(provider.clone());
        sent.push(m);
    }

    // A provider with its own thread gets only the new messages there.
    let (conversation, slot, thread) = match existing {
        Some((row, slot)) => {
            let thread = row
                .thread
                .clone()
                .filter(|_| row.provider.as_deref() == Some(provider.as_str()));
            (row, slot, thread)
        }
        None => {
            let (row, slot) = conversations.start(&owner).map_err(refused)?;
            (row, slot, None)
        }
    };
    let replay: Vec<&MessageRow> = if thread.is_some() {
        sent.iter().collect()
    } else {
        history.iter().chain(sent.iter()).collect()
    };
    let messages: Vec<Message> = replay.iter().map(|m| to_message(m)).collect();

    // Refuse attachments the provider cannot send, before any request.
    refuse_attachments(&plugin, &resolved.model, &messages)?;

    // Tools: as given, else the conversation's.
    let tools = args.tools.clone().or_else(|| {
        conversation
            .tools
            .as_deref()
            .and_then(|t| serde_json::from_str(t).ok())
    });
    options.tools = tools.clone();
    let declared = &plugin.manifest.options;
    let ignored: Vec<&'static str> = if declared.is_empty() {
        Vec::new()
    } else {
        options
            .set_names()
            .into_iter()
            .filter(|name| !declared.iter().any(|d| d == name))
            .collect()
    };
    if provider == "poe-openai" {
        daemon.models.catalog.refresh_in_background();
    }
    let request = Request {
        model: route.model,
        messages,
        output: OutputKind::Text,
        params: args.params.clone(),
        options,
        stream: true,
        api_key: session.api_key.clone(),
        cwd: session.cwd.clone(),
        continuation: thread,
        timeout_ms: None,
    };
    Ok(Prepared {
        request,
        plugin,
        model: resolved.model.clone(),
        run_async: args.run_async,
        turn: Turn {
            conversation,
            sent,
            number,
            model: resolved.model,
            provider,
            tools: tools.map(|t| t.to_string()),
            ignored,
            via: resolved.via,
            export: args.export,
            history: history.len(),
            slot,
        },
    })
}

impl Turn {
    /// The conversation this turn belongs to.
    pub fn conversation_id(&self) -> &str {
        self.slot.conversation_id()
    }

    /// Marks `job` as the one running this turn.
    pub fn bind(&self, daemon: &DaemonState, job: &Job) {
        self.slot.bind(&job.id);
        if let Err(e) = daemon
            .conversations
            .store()
            .set_conversation_job(self.slot.conversation_id(), &job.id)
        {
            tracing::warn!(error = %e, "cannot record the turn's job");
        }
    }

    /// Stores the answered turn, exports it when asked, and builds the
    /// result. A turn that cannot be stored still returns its answer, with
    /// a warning: the answer is never lost for a bookkeeping failure.
    pub async fn finish(
        self,
        daemon: Arc<DaemonState>,
        job: Arc<Job>,
        response: Response,
    ) -> CallToolResult {
        let elapsed_ms = job.started.elapsed().as_millis() as u64;
        let usage = response.usage.clone().unwrap_or_default();
        let mut answer = row(
            Role::Assistant,
            response.text.clone(),
            self.number,
            &self.model,
            &self.provider,
        );
        if !response.tool_calls.is_empty() {
            answer.tool_calls = serde_json::to_string(&response.tool_calls).ok();
        }
        let usage_json = json!({
            "input_tokens": usage.prompt_tokens,
            "output_tokens": usage.completion_tokens,
            "total_tokens": usage.total_tokens,
        });
        answer.meta = Some(
            json!({
                "usage": usage_json,
                "response_time_ms": elapsed_ms,
                "job_id": job.id,
                "answered_by": response.model,
            })
            .to_string(),
        );
        let mut conversation = self.conversation.clone();
        conversation.provider = Some(self.provider.clone());
        conversation.model = Some(self.model.clone());
        conversation.thread = match &response.continuation {
            Some(thread) => Some(thread.clone()),
            // A thread belongs to its provider; another one starts afresh.
            None if self.conversation.provider.as_deref() == Some(self.provider.as_str()) => {
                self.conversation.thread.clone()
            }
            None => None,
        };
        conversation.tools = self.tools.clone();
        conversation.last_job_id = Some(job.id.clone());
        conversation.turns = self.number;
        conversation.updated_ms = now_ms();
        let mut rows = self.sent.clone();
        rows.push(answer);
        let message_count = self.history + rows.len();
        let export_dir = daemon
            .settings
            .chat
            .export_dir
            .clone()
            .unwrap_or_else(|| daemon.paths.exports());
        let export = self.export;
        let stored = {
            let daemon = daemon.clone();
            let conversation = conversation.clone();
            tokio::task::spawn_blocking(move || {
                let store = daemon.conversations.store();
                store
                    .append_turn(&conversation, &rows)
                    .map_err(|e| format!("the turn could not be saved ({e}); continuing this conversation will miss it"))?;
                if !export {
                    return Ok(None);
                }
                let messages = store
                    .messages(&conversation.id)
                    .map_err(|e| format!("export failed: {e}"))?;
                super::export::export(&export_dir, &conversation, &messages)
                    .map(Some)
                    .map_err(|e| format!("export to {} failed: {e}", export_dir.display()))
            })
            .await
            .unwrap_or_else(|e| Err(format!("saving the turn failed: {e}")))
        };
        // The next turn may start as soon as this one is stored.
        let id = self.slot.conversation_id().to_string();
        drop(self.slot);

        let mut metadata = json!({
            "model": response.model.clone().unwrap_or_else(|| self.model.clone()),
            "provider": self.provider,
            "usage": usage_json,
            "response_time_ms": elapsed_ms,
        });
        if let Via::Alias(alias) = &self.via {
            metadata["alias"] = json!(alias);
        }
        if self.via == Via::Auto {
            metadata["auto"] = json!(true);
        }
        if !self.ignored.is_empty() {
            metadata["ignored_parameters"] = json!(self.ignored);
            metadata["note"] = json!(format!(
                "{} does not take {}; they were not sent",
                self.provider,
                self.ignored.join(", ")
            ));
        }
        match &stored {
            Ok(Some(folder)) => metadata["export_path"] = json!(folder.display().to_string()),
            Ok(None) => {}
            Err(warning) => {
                tracing::warn!(conversation = %id, %warning, "chat turn");
                metadata["warning"] = json!(warning);
            }
        }
        let mut body = json!({
            "content": response.text,
            "continuation": {
                "id": id,
                "provider": self.provider,
                "model": self.model,
                "messageCount": message_count,
            },
            "metadata": metadata,
        });
        if let Some(summary) = Summaries::conclude(&daemon, &job, &response.text).await
            && let (Value::Object(body), Value::Object(summary)) = (&mut body, summary)
        {
            body.extend(summary);
        }
        let mut text = response.text.clone();
        if !response.tool_calls.is_empty() {
            let calls: Vec<Value> = response
                .tool_calls
                .iter()
                .map(ToolCall::openai_json)
                .collect();
            body["tool_calls"] = Value::Array(calls);
            if !text.is_empty() {
                text.push_str("\n\n");
            }
            text.push_str("The model asks for these tool calls:\n");
            for c in &response.tool_calls {
                text.push_str(&format!("- {} {}({})\n", c.id, c.name, c.arguments));
            }
            text.push_str(
                "Run them and answer with chat(tool_results: [{tool_call_id, content}], continuation_id).",
            );
        }
        text.push_str(&format!("\n\n[continuation_id: {id}]"));
        let mut result = CallToolResult::success(vec![ContentBlock::text(text)]);
        result.structured_content = Some(body);
        let mut meta = MetaObject::new();
        meta.0.insert(META_CONTINUATION_ID.into(), json!(id));
        meta.0.insert("poe-code/job_id".into(), json!(job.id));
        meta.0.insert("poe-code/usage".into(), json!(usage));
        if let Some(thread) = &response.continuation {
            meta.0.insert(META_THREAD.into(), json!(thread));
        }
        result.meta = Some(meta);
        result
    }
}
