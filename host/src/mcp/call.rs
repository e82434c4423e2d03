//! Runs one job on a plugin: waits its turn at the shared limiter, runs the
//! blocking `invoke` on a worker thread, feeds streamed events into the job,
//! retries what is worth retrying, and records the outcome.
//!
//! This is the only retry layer between an agent and an upstream: plugins
//! and HTTP clients never retry. Only what cannot have started paid work is
//! retried (5xx answers, connections that never opened), with exponential
//! backoff from 250 ms with jitter, bounded in attempts and total time; an
//! upstream 429 pauses the key for every session until its reset and the
//! call waits its turn again; other 4xx, timeouts and anything a plugin
//! marks final are not. Nothing is retried once text has streamed to the
//! client. The job's deadline bounds everything, waiting included.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use backon::{BackoffBuilder, ExponentialBuilder};
use futures::StreamExt;
use futures::channel::mpsc;
use poe_plugin_api::host::EventSink;
use poe_plugin_api::{ErrorKind, Event, LogLevel, OutputKind, PluginError, Request, Response};
use rmcp::model::{CallToolResult, ContentBlock, MetaObject, Resource};
use serde_json::json;

use super::errors::{Code, plugin_error, tool_error};
use crate::daemon::state::DaemonState;
use crate::jobs::{Job, Status};
use crate::limits::{Limiter, WaitBound};
use crate::plugins::LoadedPlugin;

/// Starts progress messages that report status rather than answer text, so
/// a client streaming the answer (like `poe-code query`) can tell them apart.
pub const STATUS_PREFIX: &str = "[poe-code] ";

/// How long a cancelled call may take to notice before we stop waiting for it.
const CANCEL_GRACE: Duration = Duration::from_secs(2);
/// Attempts after the first one.
const MAX_RETRIES: usize = 4;
/// No retry starts later than this after the call began.
const RETRY_DEADLINE: Duration = Duration::from_secs(120);
/// How often a running job's output is saved to the store.
const CHECKPOINT_EVERY: Duration = Duration::from_secs(1);

/// The host end of a plugin's event sink.
struct HostSink {
    /// futures' channel, not tokio's: it allocates per event, where tokio's
    /// allocates a block of 32 slots up front for every call in flight.
    events: mpsc::UnboundedSender<Event>,
    cancelled: Arc<AtomicBool>,
    /// The call's limiter, which grants its extra requests (polls).
    limiter: Arc<Limiter>,
}

impl EventSink for HostSink {
    fn emit(&self, event: Event) {
        let _ = self.events.unbounded_send(event);
    }

    fn is_cancelled(&self) -> bool {
        self.cancelled.load(Ordering::Relaxed)
    }

    fn permit(&self) -> Option<Duration> {
        self.limiter.try_acquire().err()
    }
}

/// How one attempt ended.
enum Attempt {
    Done(Response),
    Failed(PluginError),
    /// The job was cancelled or ran past its deadline.
    Stopped(Stop),
}

/// Why a job stopped before its plugin call ended.
#[derive(Debug, Clone, Copy)]
enum Stop {
    Cancelled,
    Deadline,
}

/// Resolves when the job is cancelled or reaches its deadline.
async fn stopped(job: &Job) -> Stop {
    tokio::select! {
        biased;
        _ = job.cancelled() => Stop::Cancelled,
        _ = tokio::time::sleep_until(job.deadline.into()) => Stop::Deadline,
    }
}

/// Turns a plugin's answer into the job's result, for tools whose result
/// is more than the answer (`chat` stores its turn first). Dropped unused
/// when the call fails.
pub type Finish = Box<
    dyn FnOnce(Response, Arc<Job>) -> futures::future::BoxFuture<'static, CallToolResult> + Send,
>;

/// How a [`sub_call`] that did not answer ended: its job as it stands
/// (error, streamed text, status).
pub type SubCallFailure = crate::jobs::Snapshot;

/// A call made on behalf of `parent` (a consensus model, a summary): a job
/// of its own (`tool`, `label`; `hash` must be unique to it) that waits its
/// turn at the limiter of its key and plugin like any call, shows in
/// `check_status`, and is cancelled with `parent`. `started` sees the job
/// before it runs. Returns the answer and how long it took.
#[allow(clippy::too_many_arguments)]
pub(crate) async fn sub_call(
    daemon: &Arc<DaemonState>,
    parent: &Arc<Job>,
    tool: &str,
    label: &str,
    hash: String,
    plugin: Arc<LoadedPlugin>,
    request: Request,
    started: impl FnOnce(&Arc<Job>),
) -> Result<(Response, Duration), SubCallFailure> {
    let child = daemon.jobs.create(
        tool,
        label,
        &json!({"for": parent.id, "model": request.model}),
        hash,
        parent.session_id,
        daemon.settings.deadlines.of(request.output),
    );
    child.run_in_background();
    started(&child);
    let (answered, answer) = tokio::sync::oneshot::channel::<Response>();
    let finish: Finish = Box::new(move |response: Response, job: Arc<Job>| {
        let result = success(response.clone(), OutputKind::Text, &job.id);
        let _ = answered.send(response);
        Box::pin(async move { result }) as futures::future::BoxFuture<'static, CallToolResult>
    });
    let limiter = daemon
        .limits
        .for_plugin(&plugin, request.api_key.as_deref());
    let began = Instant::now();
    tokio::spawn(execute(
        daemon.clone(),
        plugin,
        limiter,
        child.clone(),
        request,
        Some(finish),
    ));
    tokio::select! {
        biased;
        _ = child.finished() => {}
        _ = parent.cancelled() => child.request_cancel(),
    }
    child.finished().await;
    match answer.await {
        Ok(response) => Ok((response, began.elapsed())),
        Err(_) => Err(child.snapshot()),
    }
}

/// Runs `request` as `job` to the end and records the outcome in the job
/// table; `finish` shapes a successful answer (default: [`success`]).
pub(crate) async fn execute(
    daemon: Arc<DaemonState>,
    plugin: Arc<LoadedPlugin>,
    limiter: Arc<Limiter>,
    job: Arc<Job>,
    request: Request,
    finish: Option<Finish>,
) {
    let _guard = daemon.begin_job();
    let output = request.output;
    // A budget refuses new calls to the Poe plugins; this one sent nothing.
    if crate::usage::POE_PLUGINS.contains(&plugin.manifest.id.as_str())
        && let Some(why) = daemon
            .budget
            .refusal(daemon.client_of(job.session_id).0.as_deref())
    {
        tracing::info!(job = %job.id, model = %job.model, "refused: {why}");
        drop(finish);
        daemon.jobs.finish(
            &job,
            Status::Failed,
            tool_error(Code::BudgetExceeded, &why),
            Some(why),
        );
        return;
    }
    let started = Instant::now();
    let mut backoff = ExponentialBuilder::default()
        .with_min_delay(Duration::from_millis(250))
        .with_max_delay(Duration::from_secs(8))
        .with_jitter()
        .with_max_times(MAX_RETRIES)
        .build();
    let outcome = loop {
        if job.cancel_requested() {
            break Attempt::Stopped(Stop::Cancelled);
        }
        let waiting_since = Instant::now();
        let bound = daemon
            .settings
            .rate_limit_wait
            .min(job.deadline.saturating_duration_since(waiting_since));
        tokio::select! {
            biased;
            stop = stopped(&job) => break Attempt::Stopped(stop),
            turn = limiter.acquire(WaitBound(bound)) => {
                if let Err(exceeded) = turn {
                    let ms = exceeded.retry_after.as_millis() as u64;
                    break Attempt::Failed(
                        PluginError::new(
                            ErrorKind::RateLimited,
                            format!(
                                "the shared rate limit for {} ({} requests/minute) is exhausted",
                                plugin.manifest.id, limiter.limit.requests_per_minute
                            ),
                        )
                        .with_retry_after_ms(ms),
                    );
                }
            }
        }
        let waited = waiting_since.elapsed();
        if waited > Duration::from_millis(500) {
            job.push_progress(format!(
                "{STATUS_PREFIX}waited {:.1} s for the shared rate limit",
                waited.as_secs_f64()
            ));
        }
        let sent = Sent::now(&daemon, &job);
        let attempt = attempt(&daemon, &plugin, &limiter, &job, &request).await;
        let err = match attempt {
            Attempt::Failed(err) => err,
            other => {
                sent.record(
                    &daemon,
                    &plugin,
                    &job,
                    &request,
                    other.ledger_outcome(),
                    false,
                );
                break other;
            }
        };
        let streamed = !job.snapshot().output.is_empty();
        let retryable = is_retryable(&err) && !streamed && started.elapsed() < RETRY_DEADLINE;
        if err.kind == ErrorKind::RateLimited {
            // Everyone on this key waits until the upstream's reset.
            let wait = Duration::from_millis(err.retry_after_ms.unwrap_or(1000));
            limiter.pause_until(Instant::now() + wait);
        }
        let delay = match (retryable, backoff.next()) {
            (true, Some(delay)) => delay,
            _ => {
                sent.record(&daemon, &plugin, &job, &request, error_outcome(&err), false);
                break Attempt::Failed(err);
            }
        };
        sent.record(&daemon, &plugin, &job, &request, error_outcome(&err), true);
        let delay = if err.kind == ErrorKind::RateLimited {
            Duration::ZERO // the limiter's pause is the wait
        } else {
            delay
        };
        tracing::info!(job = %job.id, kind = err.kind.as_str(), status = ?err.status, ?delay, "retrying");
        job.push_progress(format!("{STATUS_PREFIX}upstream failed ({err}); retrying"));
        tokio::select! {
            stop = stopped(&job) => break Attempt::Stopped(stop),
            _ = tokio::time::sleep(delay) => {}
        }
    };
    match outcome {
        Attempt::Done(response) => {
            let result = match finish {
                Some(finish) => finish(response, job.clone()).await,
                None => success(response, output, &job.id),
            };
            daemon.jobs.finish(&job, Status::Completed, result, None);
        }
        other => {
            // Whatever `finish` holds (a conversation's turn) is released
            // before anyone learns the job ended.
            drop(finish);
            fail(&daemon, &plugin, &job, other, output);
        }
    }
}

impl Attempt {
    /// How it ended, as the usage ledger says it, with the tokens it used.
    fn ledger_outcome(&self) -> (String, Option<poe_plugin_api::Usage>) {
        match self {
            Attempt::Done(response) => ("ok".into(), response.usage.clone()),
            Attempt::Failed(err) => error_outcome(err),
            Attempt::Stopped(Stop::Cancelled) => ("cancelled".into(), None),
            Attempt::Stopped(Stop::Deadline) => ("timeout".into(), None),
        }
    }
}

/// A failed request as the usage ledger says it (`error:<kind>`).
fn error_outcome(err: &PluginError) -> (String, Option<poe_plugin_api::Usage>) {
    let outcome = match err.kind {
        ErrorKind::Cancelled => "cancelled".to_string(),
        kind => format!("error:{}", kind.as_str()),
    };
    (outcome, None)
}

/// When one upstream request (an attempt) began, for its ledger row.
struct Sent {
    at_ms: u64,
    began: Instant,
    /// Read when the request is sent: the session may be gone by its end.
    client: (Option<String>, Option<String>),
}

impl Sent {
    fn now(daemon: &DaemonState, job: &Job) -> Sent {
        Sent {
            at_ms: crate::store::now_ms(),
            began: Instant::now(),
            client: daemon.client_of(job.session_id),
        }
    }

    /// Writes the request's row in the usage ledger: every attempt counts,
    /// as each may have cost (a retried or cancelled one too).
    fn record(
        &self,
        daemon: &DaemonState,
        plugin: &LoadedPlugin,
        job: &Job,
        request: &Request,
        (outcome, usage): (String, Option<poe_plugin_api::Usage>),
        retried: bool,
    ) {
        let (client, client_version) = self.client.clone();
        let usage = usage.unwrap_or_default();
        daemon.jobs.record_request(crate::store::LedgerRow {
            at_ms: self.at_ms,
            duration_ms: self.began.elapsed().as_millis() as u64,
            plugin: plugin.manifest.id.clone(),
            model: request.model.clone(),
            client,
            client_version,
            session_id: (job.session_id != 0).then_some(job.session_id),
            job_id: Some(job.id.clone()),
            prompt_tokens: usage.prompt_tokens,
            completion_tokens: usage.completion_tokens,
            outcome,
            retried,
        });
    }
}

/// Records a job that did not get an answer.
fn fail(
    daemon: &DaemonState,
    plugin: &LoadedPlugin,
    job: &Arc<Job>,
    outcome: Attempt,
    output: OutputKind,
) {
    match outcome {
        Attempt::Done(_) => unreachable!("answered jobs are finished by execute"),
        Attempt::Failed(err) => {
            tracing::warn!(job = %job.id, plugin = %plugin.manifest.id, model = %job.model,
                kind = err.kind.as_str(), status = ?err.status, message = %err.message, "call failed");
            let status = if err.kind == ErrorKind::Cancelled {
                Status::Cancelled
            } else {
                Status::Failed
            };
            daemon
                .jobs
                .finish(job, status, plugin_error(&err), Some(err.to_string()));
        }
        Attempt::Stopped(Stop::Cancelled) => {
            tracing::info!(job = %job.id, model = %job.model, "call cancelled");
            daemon.jobs.finish(
                job,
                Status::Cancelled,
                tool_error(Code::Cancelled, "the call was cancelled"),
                Some("cancelled".into()),
            );
        }
        Attempt::Stopped(Stop::Deadline) => {
            let limit = job.deadline.duration_since(job.started);
            let err = PluginError::new(
                ErrorKind::Timeout,
                format!(
                    "{} did not finish within its deadline of {} (config.toml [deadlines] {:?}); the text streamed so far is kept",
                    job.model,
                    human_duration(limit),
                    crate::config::Deadlines::name(output),
                ),
            );
            tracing::warn!(job = %job.id, model = %job.model, ?limit, "call ran past its deadline");
            daemon.jobs.finish(
                job,
                Status::Failed,
                plugin_error(&err),
                Some(err.to_string()),
            );
        }
    }
}

/// `10 min`, `45 s`.
fn human_duration(d: Duration) -> String {
    let secs = d.as_secs();
    if secs >= 60 && secs.is_multiple_of(60) {
        format!("{} min", secs / 60)
    } else {
        format!("{:.0} s", d.as_secs_f64())
    }
}

/// Whether a failed attempt may be sent again. Only failures that cannot
/// have started paid work upstream qualify: the upstream refused it (429,
/// 5xx) or it never left (connection refused). A timeout may have been
/// billed and a plugin can forbid a retry (`retryable: Some(false)`), e.g.
/// once a video render or a Codex turn has started.
fn is_retryable(err: &PluginError) -> bool {
    if err.kind == ErrorKind::Cancelled {
        return false;
    }
    if let Some(retryable) = err.retryable {
        return retryable;
    }
    match err.kind {
        ErrorKind::RateLimited => true,
        ErrorKind::Upstream => err.status.is_some_and(|s| s >= 500),
        _ => false,
    }
}

/// One invocation of the plugin.
async fn attempt(
    daemon: &DaemonState,
    plugin: &LoadedPlugin,
    limiter: &Arc<Limiter>,
    job: &Job,
    request: &Request,
) -> Attempt {
    let (events_tx, mut events) = mpsc::unbounded();
    let cancelled = Arc::new(AtomicBool::new(false));
    let sink = HostSink {
        events: events_tx,
        cancelled: cancelled.clone(),
        limiter: limiter.clone(),
    };
    let provider = plugin.provider.clone();
    let mut request = request.clone();
    // The plugin bounds its own waits by what is left of the job's deadline.
    request.timeout_ms = Some(
        job.deadline
            .saturating_duration_since(Instant::now())
            .as_millis() as u64,
    );
    let started = Instant::now();
    // No thread is held while the plugin works (plugins before plugin-api
    // 0.1.4 get one of the blocking pool; see `ProviderHandle::call`).
    let mut invocation = Box::pin(async move { provider.call(&request, sink).await });
    let mut checkpoint = tokio::time::interval(CHECKPOINT_EVERY);
    checkpoint.reset();
    let joined = loop {
        tokio::select! {
            biased;
            stop = stopped(job) => {
                cancelled.store(true, Ordering::Relaxed);
                // Let the plugin stop its upstream request; never wait long.
                let _ = tokio::time::timeout(CANCEL_GRACE, &mut invocation).await;
                while let Ok(event) = events.try_recv() {
                    on_event(job, limiter, event);
                }
                daemon.registry.record_call(&plugin.manifest.id, started.elapsed(), Some(match stop {
                    Stop::Cancelled => ErrorKind::Cancelled.as_str(),
                    Stop::Deadline => ErrorKind::Timeout.as_str(),
                }));
                return Attempt::Stopped(stop);
            }
            Some(event) = events.next() => on_event(job, limiter, event),
            joined = &mut invocation => break joined,
            _ = checkpoint.tick() => daemon.jobs.checkpoint(job),
        }
    };
    // Events that raced the end of the call come before the result.
    while let Ok(event) = events.try_recv() {
        on_event(job, limiter, event);
    }
    let error_kind = joined.as_ref().err().map(|err| err.kind.as_str());
    daemon
        .registry
        .record_call(&plugin.manifest.id, started.elapsed(), error_kind);
    match joined {
        Ok(response) => Attempt::Done(response),
        Err(err) if err.kind == ErrorKind::Cancelled => Attempt::Stopped(Stop::Cancelled),
        Err(err) => Attempt::Failed(err),
    }
}

fn on_event(job: &Job, limiter: &Limiter, event: Event) {
    match event {
        Event::TextDelta { text } => job.push_text(&text),
        Event::Progress { message } => job.push_progress(format!("{STATUS_PREFIX}{message}")),
        Event::Media(media) => {
            job.push_progress(format!("{STATUS_PREFIX}media ready: {}", media.url))
        }
        Event::RateLimit {
            remaining,
            reset_ms,
            ..
        } => limiter.observe(remaining, reset_ms.map(Duration::from_millis)),
        Event::Log { level, message } => match level {
            LogLevel::Error | LogLevel::Warn => {
                tracing::warn!(job = %job.id, plugin_log = %message)
            }
            _ => tracing::debug!(job = %job.id, plugin_log = %message),
        },
        Event::ToolCallDelta { .. } | Event::Usage(_) | Event::Continuation { .. } => {}
    }
}

/// `_meta` key of a result: the job id, to fetch it again or continue it.
pub const META_CONTINUATION_ID: &str = "poe-code/continuation_id";
/// `_meta` key of a result: the provider's own thread, when it has one.
pub const META_THREAD: &str = "poe-code/thread";

pub(crate) fn success(response: Response, output: OutputKind, job_id: &str) -> CallToolResult {
    let mut content = Vec::new();
    if output == OutputKind::Text || response.media.is_empty() {
        content.push(ContentBlock::text(response.text.clone()));
    } else {
        let links: Vec<&str> = response.media.iter().map(|m| m.url.as_str()).collect();
        content.push(ContentBlock::text(links.join("\n")));
        for (i, media) in response.media.iter().enumerate() {
            let name = media
                .url
                .rsplit('/')
                .next()
                .filter(|s| !s.is_empty())
                .map(str::to_string)
                .unwrap_or_else(|| format!("{:?}-{}", media.kind, i + 1).to_lowercase());
            let mut resource = Resource::new(media.url.clone(), name);
            resource.mime_type = media.mime_type.clone();
            content.push(ContentBlock::resource_link(resource));
        }
    }
    let mut result = CallToolResult::success(content);
    let mut meta = MetaObject::new();
    meta.0.insert(
        "poe-code/usage".into(),
        json!(response.usage.clone().unwrap_or_default()),
    );
    if let Some(model) = &response.model {
        meta.0.insert("poe-code/model".into(), json!(model));
    }
    meta.0.insert(META_CONTINUATION_ID.into(), json!(job_id));
    if let Some(thread) = &response.continuation {
        meta.0.insert(META_THREAD.into(), json!(thread));
    }
    result.meta = Some(meta);
    result
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_failures_that_cannot_have_been_paid_for_are_retried() {
        let upstream = |status| PluginError::new(ErrorKind::Upstream, "x").with_status(status);
        assert!(is_retryable(&upstream(502)));
        assert!(is_retryable(&PluginError::new(ErrorKind::RateLimited, "x")));
        assert!(is_retryable(
            &PluginError::new(ErrorKind::Upstream, "refused").retryable()
        ));
        // The request may have reached the upstream and been billed.
        assert!(!is_retryable(&PluginError::new(ErrorKind::Timeout, "x")));
        assert!(!is_retryable(&PluginError::new(
            ErrorKind::Upstream,
            "broke"
        )));
        assert!(!is_retryable(&upstream(400)));
        // The plugin knows better: a started render, a Codex turn.
        assert!(!is_retryable(&upstream(503).not_retryable()));
        assert!(!is_retryable(&PluginError::cancelled()));
    }
}
