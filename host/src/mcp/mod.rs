//! The MCP server one session talks to: tool listing and dispatch. Every
//! model call becomes a job ([`crate::jobs`]) run by [`call`]; this module
//! decides whether the caller waits for it (with progress), gets its id at
//! once (`async`, or an SEP-2663 task), or picks up an identical earlier one.

pub mod call;
pub mod defaults;
pub mod errors;
mod jobs_view;
mod models;
pub mod output;
mod progress;
pub mod tools;

use std::sync::Arc;

use poe_plugin_api::{Message, OutputKind, Request};

use crate::summaries::Summaries;
use rmcp::model::{
    CallToolRequestParams, CallToolResponse, CallToolResult, CancelTaskParams, ContentBlock,
    CreateTaskResult, GetTaskParams, GetTaskResult, Implementation, InitializeRequestParams,
    InitializeResult, ListToolsResult, PaginatedRequestParams, ServerCapabilities, ServerConfig,
};
use rmcp::service::RequestContext;
use rmcp::{ErrorData as McpError, RoleServer, ServerHandler};
use serde::de::DeserializeOwned;
use serde_json::{Value, json};
use tokio_util::sync::CancellationToken;

use crate::chat;
use crate::chat::args::ChatArgs;
use crate::daemon::state::{DaemonState, SessionInfo};
use crate::jobs::{Existing, Job, Waiter, request_hash};
use errors::{Code, tool_error};
use progress::Progress;
use tools::{BotResponseArgs, CancelJobArgs, CheckStatusArgs, GenerateArgs, ListModelsArgs, names};

/// The MCP server of one session.
#[derive(Clone)]
pub struct PoeServer {
    daemon: Arc<DaemonState>,
    session: Arc<SessionInfo>,
    /// Cancelled when the session ends (stdin EOF) or the daemon stops.
    calls: CancellationToken,
    /// An HTTP session's registration, dropped with its last clone.
    http: Option<Arc<HttpLease>>,
}

/// Keeps an HTTP session listed in the daemon while its server lives (rmcp
/// drops the server when the session closes or, stateless, the request ends).
struct HttpLease {
    daemon: Arc<DaemonState>,
    session: u64,
}

impl Drop for HttpLease {
    fn drop(&mut self) {
        self.daemon.close_session(self.session);
    }
}

/// A model call, parsed from a tool's arguments.
struct ModelCall {
    request: Request,
    run_async: bool,
}

/// A call ready to become a job: routed, labelled, with the chat turn it
/// belongs to.
struct Planned {
    /// The request as the plugin receives it (routed model name).
    request: Request,
    plugin: Arc<crate::plugins::LoadedPlugin>,
    /// The model as the caller meant it: the job's label.
    label: String,
    run_async: bool,
    turn: Option<chat::turn::Turn>,
}

impl Planned {
    fn from_turn(prepared: chat::turn::Prepared) -> Self {
        Self {
            request: prepared.request,
            plugin: prepared.plugin,
            label: prepared.model,
            run_async: prepared.run_async,
            turn: Some(prepared.turn),
        }
    }
}

impl PoeServer {
    /// A server for `session`; `calls` cancels the calls it waits on.
    pub fn new(
        daemon: Arc<DaemonState>,
        session: Arc<SessionInfo>,
        calls: CancellationToken,
    ) -> Self {
        Self {
            daemon,
            session,
            calls,
            http: None,
        }
    }

    /// A server for an HTTP session (or one stateless request) of `caller`.
    pub fn for_http(daemon: Arc<DaemonState>, caller: &crate::http::Caller) -> Self {
        let session = daemon.open_http_session(caller.token.clone(), caller.api_key.clone());
        let lease = HttpLease {
            daemon: daemon.clone(),
            session: session.id,
        };
        Self {
            calls: daemon.shutdown.child_token(),
            daemon,
            session,
            http: Some(Arc::new(lease)),
        }
    }

    /// An HTTP request must come from the token that opened its session,
    /// so a leaked session id is no use with another token.
    fn check_caller(&self, context: &RequestContext<RoleServer>) -> Result<(), McpError> {
        if self.http.is_none() {
            return Ok(());
        }
        let caller = context
            .extensions
            .get::<axum::http::request::Parts>()
            .and_then(|parts| parts.extensions.get::<crate::http::Caller>());
        let opened_by = match &self.session.peer {
            crate::daemon::state::Peer::Http { token } => token.as_ref(),
            _ => None,
        };
        match caller {
            Some(caller) if caller.token.as_ref() == opened_by => Ok(()),
            _ => Err(McpError::invalid_request(
                "this session was opened with another token",
                None,
            )),
        }
    }

    /// Over stateless HTTP a dropped connection cancels the request's
    /// context, yet it is no request to stop (the spec: disconnection is not
    /// cancellation); the call goes on in the background.
    fn disconnect_only(&self, context: &RequestContext<RoleServer>) -> bool {
        self.http.is_some()
            && context
                .extensions
                .get::<axum::http::request::Parts>()
                .is_some_and(|parts| !parts.headers.contains_key("mcp-session-id"))
    }

    fn note_client(&self, context: &RequestContext<RoleServer>) {
        if let Some(info) = context.client_info() {
            let version = context.protocol_version().map(|v| v.to_string());
            self.session.set_client(&info.name, &info.version, version);
        }
    }

    fn model_call(&self, name: &str, args: &Value) -> Result<ModelCall, CallToolResult> {
        let mut thread = None;
        let mut options = poe_plugin_api::Options::default();
        let (model, message, output, params, run_async) = match name {
            names::GET_BOT_RESPONSE => {
                let a: BotResponseArgs = parse_args(args)?;
                if let Some(id) = &a.continuation_id {
                    thread = Some(self.thread_of(id)?);
                }
                a.sampling
                    .apply(&mut options)
                    .map_err(|r| tool_error(r.code, r.message))?;
                (
                    a.bot_name,
                    a.message,
                    OutputKind::Text,
                    a.params,
                    a.run_async,
                )
            }
            other => match tools::media_tool(other) {
                Some((kind, _)) => {
                    let a: GenerateArgs = parse_args(args)?;
                    let bot = a
                        .bot_name
                        .unwrap_or_else(|| self.daemon.models.default_for(kind));
                    (bot, a.prompt, kind, a.params, a.run_async)
                }
                None => {
                    return Err(tool_error(
                        Code::InternalError,
                        format!("{other} is not a model tool"),
                    ));
                }
            },
        };
        if model.trim().is_empty() {
            return Err(tool_error(
                Code::InvalidArgument,
                "bot_name must not be empty",
            ));
        }
        // Aliases and `auto` mean the same here as in `chat`.
        let registry = &self.daemon.registry;
        let route = |name: &str| registry.plugin_of(name);
        let model = self
            .daemon
            .models
            .resolve(Some(&model), false, &route)
            .map_err(|e| tool_error(Code::ModelNotFound, e.to_string()))?
            .model;
        Ok(ModelCall {
            request: Request {
                model,
                messages: vec![Message::user(message)],
                output,
                params,
                options,
                stream: true,
                api_key: self.session.api_key.clone(),
                cwd: self.session.cwd.clone(),
                continuation: thread,
                ..Request::default()
            },
            run_async,
        })
    }

    /// The provider thread an earlier call (job `id`) left to continue.
    fn thread_of(&self, id: &str) -> Result<String, CallToolResult> {
        let snapshot = self.daemon.jobs.get(id).ok_or_else(|| {
            tool_error(
                Code::InvalidArgument,
                format!("no earlier call '{id}' to continue"),
            )
        })?;
        snapshot
            .result
            .as_ref()
            .and_then(|r| r.meta.as_ref())
            .and_then(|m| m.0.get(call::META_THREAD))
            .and_then(|t| t.as_str())
            .map(str::to_string)
            .ok_or_else(|| {
                tool_error(
                    Code::InvalidArgument,
                    format!(
                        "call '{id}' left no conversation to continue (only providers that keep threads, such as codex, do)"
                    ),
                )
            })
    }

    async fn dispatch(
        &self,
        name: &str,
        args: Value,
        context: &RequestContext<RoleServer>,
    ) -> Result<CallToolResponse, McpError> {
        if let Some(unknown) = tools::unknown_argument(name, &args) {
            return Ok(tool_error(
                Code::InvalidArgument,
                format!("invalid arguments: unknown argument `{unknown}` for {name}"),
            )
            .into());
        }
        match name {
            names::CHECK_STATUS => {
                let a: CheckStatusArgs = match parse_args(&args) {
                    Ok(a) => a,
                    Err(e) => return Ok(e.into()),
                };
                let daemon = self.daemon.clone();
                let owner = chat::turn::owner_of(&self.session);
                // Store reads are blocking I/O.
                let result = tokio::task::spawn_blocking(move || {
                    jobs_view::check_status(
                        &daemon,
                        a.continuation_id.as_deref(),
                        a.full_history,
                        a.offset,
                        &owner,
                    )
                })
                .await
                .unwrap_or_else(|e| tool_error(Code::InternalError, e.to_string()));
                return Ok(result.into());
            }
            names::CANCEL_JOB => {
                let a: CancelJobArgs = match parse_args(&args) {
                    Ok(a) => a,
                    Err(e) => return Ok(e.into()),
                };
                return Ok(jobs_view::cancel_job(&self.daemon, &a.continuation_id).into());
            }
            names::LIST_MODELS => {
                let a = match parse_args::<ListModelsArgs>(&args) {
                    Ok(a) => a,
                    Err(e) => return Ok(e.into()),
                };
                let catalog = &self.daemon.models.catalog;
                let refreshed = if a.refresh {
                    Some(catalog.refresh_now().await)
                } else {
                    catalog.refresh_in_background();
                    None
                };
                return Ok(models::list_models(
                    &self.daemon.registry.plugins(),
                    &self.daemon.models,
                    a.search.as_deref(),
                    refreshed,
                )
                .into());
            }
            _ => {}
        }
        let is_chat = name == names::CHAT;
        if !is_chat
            && tools::media_tool(name).is_none()
            && name != names::GET_BOT_RESPONSE
            && name != names::CONSENSUS
        {
            return Err(McpError::invalid_params(
                format!("Unknown tool: {name}"),
                None,
            ));
        }
        let run_async = args.get("async").and_then(Value::as_bool).unwrap_or(false);
        let mut identity = args.clone();
        if let Value::Object(map) = &mut identity {
            map.remove("async");
        }
        let hash = request_hash(name, &identity, self.session.api_key.as_deref());
        // A retried call picks up the identical earlier one (before a chat
        // turn claims its conversation, which the earlier one holds).
        if !run_async {
            match self.daemon.jobs.existing(&hash) {
                Some(Existing::Running(waiter)) => {
                    tracing::info!(job = %waiter.job().id, "identical call running; waiting for it");
                    self.daemon.count_call(&self.session);
                    let id = waiter.job().id.clone();
                    return Ok(self.wait(waiter, context, &id).await.into());
                }
                Some(Existing::Undelivered(snapshot)) => {
                    tracing::info!(job = %snapshot.id, "returning the undelivered result of an identical call");
                    self.daemon.count_call(&self.session);
                    self.daemon.jobs.mark_delivered(&snapshot.id);
                    let result = snapshot.result.unwrap_or_else(|| {
                        tool_error(Code::InternalError, "stored job has no result")
                    });
                    return Ok(self.capped(result, &snapshot.id).into());
                }
                None => {}
            }
        }
        if name == names::CONSENSUS {
            return self.consensus(args, hash, context).await;
        }
        let call = if is_chat {
            let a: ChatArgs = match parse_args(&args) {
                Ok(a) => a,
                Err(e) => return Ok(e.into()),
            };
            let daemon = self.daemon.clone();
            let session = self.session.clone();
            // Reads the store and the attached files.
            match tokio::task::spawn_blocking(move || chat::turn::prepare(&daemon, &session, a))
                .await
            {
                Ok(Ok(prepared)) => Planned::from_turn(prepared),
                Ok(Err(refused)) => return Ok(refused.into()),
                Err(e) => return Ok(tool_error(Code::InternalError, e.to_string()).into()),
            }
        } else {
            let call = match self.model_call(name, &args) {
                Ok(call) => call,
                Err(result) => return Ok(result.into()),
            };
            let route = match self.daemon.registry.route(&call.request.model) {
                Ok(route) => route,
                Err(e) => return Ok(tool_error(Code::ModelNotFound, e.to_string()).into()),
            };
            // The job keeps the name the caller wrote; the plugin gets the routed one.
            let mut request = call.request;
            let label = std::mem::replace(&mut request.model, route.model);
            Planned {
                request,
                plugin: route.plugin,
                label,
                run_async: call.run_async,
                turn: None,
            }
        };
        self.daemon.count_call(&self.session);
        let Planned {
            request,
            plugin,
            label,
            run_async,
            turn,
        } = call;
        let job = self.daemon.jobs.create(
            name,
            &label,
            &args,
            hash,
            self.session.id,
            self.daemon.settings.deadlines.of(request.output),
        );
        let limiter = self
            .daemon
            .limits
            .for_plugin(&plugin, request.api_key.as_deref());
        if turn.is_some() {
            let prompt = args
                .get("prompt")
                .and_then(Value::as_str)
                .unwrap_or_default();
            let prompt = if prompt.trim().is_empty() {
                // A turn that only answers tool calls: the results are its request.
                args.get("tool_results")
                    .map(Value::to_string)
                    .unwrap_or_default()
            } else {
                prompt.to_string()
            };
            Summaries::start_title(&self.daemon, &job, &prompt, request.api_key.clone());
        }
        // What the client uses to come back: the conversation, or the job.
        let handle = turn
            .as_ref()
            .map_or_else(|| job.id.clone(), |t| t.conversation_id().to_string());
        let finish: Option<call::Finish> = turn.map(|turn| {
            turn.bind(&self.daemon, &job);
            let daemon = self.daemon.clone();
            Box::new(move |response, job| {
                Box::pin(turn.finish(daemon, job, response))
                    as futures::future::BoxFuture<'static, CallToolResult>
            }) as call::Finish
        });
        // Attach before the job starts so no early event is missed.
        let waiter = if run_async {
            job.run_in_background();
            None
        } else {
            job.attach()
        };
        tokio::spawn(call::execute(
            self.daemon.clone(),
            plugin,
            limiter,
            job.clone(),
            request,
            finish,
        ));
        match waiter {
            Some(waiter) => Ok(self.wait(waiter, context, &handle).await.into()),
            None => Ok(self.started(&job, &handle, context)),
        }
    }

    /// Runs a `consensus` call (see [`crate::consensus`]): checked and
    /// planned before anything is sent, then run as a parent job whose
    /// model calls are jobs of their own.
    async fn consensus(
        &self,
        args: Value,
        hash: String,
        context: &RequestContext<RoleServer>,
    ) -> Result<CallToolResponse, McpError> {
        let a: crate::consensus::prepare::ConsensusArgs = match parse_args(&args) {
            Ok(a) => a,
            Err(e) => return Ok(e.into()),
        };
        let daemon = self.daemon.clone();
        let session = self.session.clone();
        let plan = match tokio::task::spawn_blocking(move || {
            crate::consensus::prepare::prepare(&daemon, &session, a)
        })
        .await
        {
            Ok(Ok(plan)) => plan,
            Ok(Err(refused)) => return Ok(refused.into()),
            Err(e) => return Ok(tool_error(Code::InternalError, e.to_string()).into()),
        };
        self.daemon.count_call(&self.session);
        let label = format!(
            "consensus: {}",
            plan.seats
                .iter()
                .map(|s| s.model.as_str())
                .collect::<Vec<_>>()
                .join(", ")
        );
        // Two rounds, each bounded by the text deadline.
        let deadline = self.daemon.settings.deadlines.of(OutputKind::Text) * 2;
        let job = self.daemon.jobs.create(
            names::CONSENSUS,
            &label,
            &args,
            hash,
            self.session.id,
            deadline,
        );
        Summaries::start_title(
            &self.daemon,
            &job,
            args.get("prompt")
                .and_then(Value::as_str)
                .unwrap_or_default(),
            plan.api_key.clone(),
        );
        plan.slot.bind(&job.id);
        if let Err(e) = self
            .daemon
            .conversations
            .store()
            .set_conversation_job(plan.slot.conversation_id(), &job.id)
        {
            tracing::warn!(error = %e, "cannot record the consensus job");
        }
        let handle = plan.slot.conversation_id().to_string();
        let waiter = if plan.run_async {
            job.run_in_background();
            None
        } else {
            job.attach()
        };
        tokio::spawn(crate::consensus::run::run(
            self.daemon.clone(),
            job.clone(),
            plan,
        ));
        match waiter {
            Some(waiter) => Ok(self.wait(waiter, context, &handle).await.into()),
            None => Ok(self.started(&job, &handle, context)),
        }
    }

    /// The answer to an `async` call: a task for clients that speak
    /// SEP-2663, a continuation id for everyone else.
    fn started(
        &self,
        job: &Job,
        handle: &str,
        context: &RequestContext<RoleServer>,
    ) -> CallToolResponse {
        let speaks_tasks = context
            .client_capabilities()
            .is_some_and(|caps| caps.supports_tasks());
        if speaks_tasks {
            return CallToolResponse::Task(CreateTaskResult::new(jobs_view::task(&job.snapshot())));
        }
        let mut body = json!({
            "continuation_id": handle,
            "status": "processing",
            "message": "started in the background; call check_status with this continuation_id for progress and the result",
        });
        if handle != job.id {
            body["job_id"] = json!(job.id);
        }
        let mut result = CallToolResult::success(vec![ContentBlock::text(
            serde_json::to_string_pretty(&body).unwrap_or_default(),
        )]);
        result.structured_content = Some(body);
        result.into()
    }

    /// Waits for the job, forwarding its progress (see [`progress`]), until
    /// it ends, the client cancels, the session ends, or the soft deadline
    /// hands its id back. Leaving early drops `waiter`, which stops the job
    /// only if nobody else waits for it.
    async fn wait(
        &self,
        mut waiter: Waiter,
        context: &RequestContext<RoleServer>,
        handle: &str,
    ) -> CallToolResult {
        let job = waiter.job().clone();
        let mut progress = Progress::new(
            context.meta.get_progress_token(),
            context.peer.clone(),
            self.daemon.settings.progress_heartbeat,
        );
        let soft_deadline = tokio::time::Instant::now() + self.daemon.settings.soft_deadline;
        let far = soft_deadline + std::time::Duration::from_secs(3600);
        loop {
            let flush_at = progress.flush_at();
            let heartbeat_at = progress.heartbeat_at();
            tokio::select! {
                biased;
                _ = context.ct.cancelled() => {
                    if self.disconnect_only(context) {
                        waiter.detach();
                        return self.detached(handle);
                    }
                    return tool_error(Code::Cancelled, "the call was cancelled");
                }
                _ = self.calls.cancelled() => {
                    return tool_error(Code::Cancelled, "the session ended");
                }
                _ = job.finished() => break,
                event = waiter.events().recv() => match event {
                    Ok(event) => progress.on_event(event),
                    // A slow listener skips lines; the text is in the job.
                    Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => {}
                    Err(tokio::sync::broadcast::error::RecvError::Closed) => {}
                },
                _ = tokio::time::sleep_until(flush_at.unwrap_or(far)), if flush_at.is_some() => {
                    progress.flush().await;
                }
                _ = tokio::time::sleep_until(heartbeat_at.unwrap_or(far)), if heartbeat_at.is_some() => {
                    progress.heartbeat().await;
                }
                _ = tokio::time::sleep_until(soft_deadline) => {
                    waiter.detach();
                    return self.detached(handle);
                }
            }
        }
        progress.finish().await;
        drop(waiter);
        let snapshot = job.snapshot();
        self.daemon.jobs.mark_delivered(&job.id);
        let result = snapshot
            .result
            .unwrap_or_else(|| tool_error(Code::InternalError, "job ended without a result"));
        self.capped(result, handle)
    }

    /// The answer when a call outlives the soft deadline: it keeps running.
    fn detached(&self, handle: &str) -> CallToolResult {
        let secs = self.daemon.settings.soft_deadline.as_secs_f64();
        let body = json!({
            "continuation_id": handle,
            "status": "processing",
            "message": format!(
                "still running after {secs:.0} s, so it continues in the background (client tool calls time out); \
                 call check_status with this continuation_id to get the result — making the same call again also picks it up"
            ),
        });
        let mut result = CallToolResult::success(vec![ContentBlock::text(
            serde_json::to_string_pretty(&body).unwrap_or_default(),
        )]);
        result.structured_content = Some(body);
        result
    }

    fn capped(&self, result: CallToolResult, job_id: &str) -> CallToolResult {
        output::cap(
            result,
            job_id,
            output::char_budget(self.daemon.settings.max_output_tokens),
        )
    }
}

fn parse_args<T: DeserializeOwned>(args: &Value) -> Result<T, CallToolResult> {
    serde_json::from_value(args.clone())
        .map_err(|e| tool_error(Code::InvalidArgument, format!("invalid arguments: {e}")))
}

impl ServerHandler for PoeServer {
    fn get_info(&self) -> ServerConfig {
        let mut implementation = Implementation::new("poe-code", crate::VERSION);
        implementation.title = Some("poe-code".into());
        ServerConfig::new(
            ServerCapabilities::builder()
                .enable_tools()
                .enable_tasks()
                .build(),
        )
        .with_server_info(implementation)
        .with_instructions(
            "Reach Poe bots and models: chat for conversations (continue them with \
             continuation_id from any session; files, images and function calling), \
             get_bot_response for a one-off text answer, consensus to ask several models and \
             let them refine each other's answers, generate_image / generate_video / \
             generate_audio for media, list_models for names and aliases. Long calls can run \
             in the background (async: true); check_status and cancel_job work from any session.",
        )
    }

    async fn initialize(
        &self,
        request: InitializeRequestParams,
        context: RequestContext<RoleServer>,
    ) -> Result<InitializeResult, McpError> {
        context.peer.set_peer_info(request.clone());
        let result = self.negotiate_initialize(&request)?;
        self.session.set_client(
            &request.client_info.name,
            &request.client_info.version,
            Some(result.protocol_version.to_string()),
        );
        Ok(result)
    }

    async fn list_tools(
        &self,
        _request: Option<PaginatedRequestParams>,
        context: RequestContext<RoleServer>,
    ) -> Result<ListToolsResult, McpError> {
        self.check_caller(&context)?;
        self.note_client(&context);
        Ok(ListToolsResult::with_all_items(tools::all()))
    }

    async fn call_tool(
        &self,
        request: CallToolRequestParams,
        context: RequestContext<RoleServer>,
    ) -> Result<CallToolResponse, McpError> {
        self.check_caller(&context)?;
        self.note_client(&context);
        let args = Value::Object(request.arguments.unwrap_or_default());
        self.dispatch(&request.name, args, &context).await
    }

    async fn get_task(
        &self,
        request: GetTaskParams,
        context: RequestContext<RoleServer>,
    ) -> Result<GetTaskResult, McpError> {
        self.check_caller(&context)?;
        match self.daemon.jobs.get(&request.task_id) {
            Some(snapshot) => {
                if snapshot.status.is_finished() {
                    self.daemon.jobs.mark_delivered(&snapshot.id);
                }
                Ok(GetTaskResult::new(jobs_view::detailed_task(&snapshot)))
            }
            None => Err(McpError::invalid_params(
                format!("no task '{}'", request.task_id),
                None,
            )),
        }
    }

    async fn cancel_task(
        &self,
        request: CancelTaskParams,
        context: RequestContext<RoleServer>,
    ) -> Result<(), McpError> {
        self.check_caller(&context)?;
        match self.daemon.jobs.running(&request.task_id) {
            Some(job) => {
                job.request_cancel();
                Ok(())
            }
            None if self.daemon.jobs.get(&request.task_id).is_some() => Ok(()),
            None => Err(McpError::invalid_params(
                format!("no task '{}'", request.task_id),
                None,
            )),
        }
    }
}
