//! AI titles and summaries of `chat` and `consensus` jobs, when turned on
//! (`ENABLE_RESPONSE_SUMMARIZATION=true` or config.toml `summarization`):
//! a title (at most 60 characters) written while the job starts, a one or
//! two sentence summary when it ends, and for `check_status` on a running
//! job a summary of its partial output, refreshed at most every 30 s.
//!
//! None of it ever holds an answer back for long or changes it: a title or
//! summary that fails (or, at the end, takes longer than 10 s) is replaced by
//! a snippet of the text. Each is a call of its own through
//! [`crate::mcp::call::sub_call`], so it waits at the same limiter, shows
//! in `check_status` and costs what any call costs.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use poe_plugin_api::text::{one_line, truncate};
use poe_plugin_api::{Message, OutputKind, Request};
use serde_json::{Value, json};

use crate::daemon::state::DaemonState;
use crate::jobs::Job;
use crate::mcp::call;

/// The summarization model unless configured: cheap and fast.
pub const DEFAULT_MODEL: &str = "Claude-Haiku-4.5";
/// The longest title.
pub const TITLE_CHARS: usize = 60;
/// How long the end of a job waits for its summary before using a snippet.
const FINAL_WAIT: Duration = Duration::from_secs(10);
/// A running job's summary is refreshed at most this often...
const PARTIAL_EVERY: Duration = Duration::from_secs(30);
/// ...and only when its output grew by at least this many characters.
const PARTIAL_GROWTH: usize = 200;
/// The longest summary snippet.
const SNIPPET_CHARS: usize = 200;
/// The most text of a job sent to be summarized (its tail for partials).
const SOURCE_CHARS: usize = 8_000;

const TITLE_PROMPT: &str = "Write a short title (at most 60 characters) for the request below. \
     Answer with the title only, no quotes.\n\nRequest:\n";
const SUMMARY_PROMPT: &str = "Summarize the answer below in one or two sentences. Answer with the \
     summary only.\n\nAnswer:\n";
const PARTIAL_PROMPT: &str = "The answer below is still being written. Summarize what it says so \
     far in one or two sentences. Answer with the summary only.\n\nAnswer so far:\n";

/// What is known of one job.
#[derive(Default)]
struct Entry {
    title: Option<String>,
    partial: Option<String>,
    partial_at: Option<Instant>,
    partial_chars: usize,
    partial_running: bool,
    api_key: Option<String>,
    /// The title being written, for the end to wait on.
    title_task: Option<tokio::task::JoinHandle<()>>,
}

/// Titles and summaries of the jobs that are running.
pub struct Summaries {
    model: Option<String>,
    entries: Mutex<HashMap<String, Entry>>,
}

/// `text` as one line of at most `chars` characters.
fn snippet(text: &str, chars: usize) -> String {
    truncate(&one_line(text), chars.saturating_sub(1))
}

/// A model's answer as a title: its first line, unquoted, capped.
fn clean_title(answer: &str) -> Option<String> {
    let line = answer.lines().map(str::trim).find(|l| !l.is_empty())?;
    let line =
        line.trim_matches(|c: char| matches!(c, '"' | '\'' | '#' | '*' | '`') || c.is_whitespace());
    (!line.is_empty()).then(|| snippet(line, TITLE_CHARS))
}

impl Summaries {
    /// Summaries written by `model`; `None` turns them off.
    pub fn new(model: Option<String>) -> Self {
        Self {
            model,
            entries: Mutex::new(HashMap::new()),
        }
    }

    /// The summarization model, when summaries are on.
    pub fn model(&self) -> Option<&str> {
        self.model.as_deref()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, Entry>> {
        self.entries.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The title of running job `id`, once written.
    pub fn title(&self, id: &str) -> Option<String> {
        self.lock().get(id).and_then(|e| e.title.clone())
    }

    /// Starts writing `job`'s title from `prompt`, in the background.
    pub fn start_title(
        daemon: &Arc<DaemonState>,
        job: &Arc<Job>,
        prompt: &str,
        api_key: Option<String>,
    ) {
        if daemon.summaries.model.is_none() {
            return;
        }
        daemon.summaries.lock().insert(
            job.id.clone(),
            Entry {
                api_key: api_key.clone(),
                ..Entry::default()
            },
        );
        let source = head(prompt);
        let writer = {
            let (daemon, job) = (daemon.clone(), job.clone());
            tokio::spawn(async move {
                let written = ask(&daemon, &job, "title", TITLE_PROMPT, &source, api_key).await;
                let title = written
                    .as_deref()
                    .and_then(clean_title)
                    .unwrap_or_else(|| snippet(&source, TITLE_CHARS));
                if let Some(entry) = daemon.summaries.lock().get_mut(&job.id) {
                    entry.title = Some(title);
                }
            })
        };
        if let Some(entry) = daemon.summaries.lock().get_mut(&job.id) {
            entry.title_task = Some(writer);
        }
        // The result carries what the end needs; forget the rest then.
        let (daemon, job) = (daemon.clone(), job.clone());
        tokio::spawn(async move {
            job.finished().await;
            daemon.summaries.lock().remove(&job.id);
        });
    }

    /// The end of `job`, whose answer is `text`: its title and summary for
    /// the result (`None` when summaries are off). Waits at most 10 s for the
    /// summary; a snippet stands in otherwise.
    pub async fn conclude(daemon: &Arc<DaemonState>, job: &Arc<Job>, text: &str) -> Option<Value> {
        daemon.summaries.model.as_ref()?;
        let (title_task, api_key) = {
            let mut entries = daemon.summaries.lock();
            let entry = entries.get_mut(&job.id);
            match entry {
                Some(e) => (e.title_task.take(), e.api_key.clone()),
                None => (None, None),
            }
        };
        let source = head(text);
        // The summary, and the title if still being written, side by side.
        let (written, _) = tokio::join!(
            tokio::time::timeout(
                FINAL_WAIT,
                ask(daemon, job, "summary", SUMMARY_PROMPT, &source, api_key),
            ),
            async {
                if let Some(task) = title_task {
                    let _ = tokio::time::timeout(FINAL_WAIT, task).await;
                }
            }
        );
        let written = written
            .ok()
            .flatten()
            .map(|s| one_line(&s))
            .filter(|s| !s.is_empty());
        let title = daemon.summaries.title(&job.id);
        let (summary, source_kind) = match written {
            Some(s) => (s, "model"),
            None => (snippet(text, SNIPPET_CHARS), "snippet"),
        };
        Some(json!({
            "title": title.unwrap_or_else(|| snippet(text, TITLE_CHARS)),
            "final_summary": summary,
            "summary_source": source_kind,
        }))
    }

    /// For `check_status` on running `job`: the latest summary of its
    /// output, refreshed in the background when stale.
    pub fn partial(daemon: &Arc<DaemonState>, job: &Arc<Job>) -> Option<String> {
        daemon.summaries.model.as_ref()?;
        let output = job.snapshot().output;
        let chars = output.chars().count();
        let mut entries = daemon.summaries.lock();
        let entry = entries.get_mut(&job.id)?;
        let stale = entry
            .partial_at
            .is_none_or(|at| at.elapsed() >= PARTIAL_EVERY);
        if !entry.partial_running && stale && chars >= entry.partial_chars + PARTIAL_GROWTH {
            entry.partial_running = true;
            entry.partial_at = Some(Instant::now());
            entry.partial_chars = chars;
            let api_key = entry.api_key.clone();
            let (daemon, job) = (daemon.clone(), job.clone());
            let skipped = chars.saturating_sub(SOURCE_CHARS);
            let tail: String = output.chars().skip(skipped).collect();
            tokio::spawn(async move {
                let written = ask(
                    &daemon,
                    &job,
                    "partial summary",
                    PARTIAL_PROMPT,
                    &tail,
                    api_key,
                )
                .await;
                if let Some(entry) = daemon.summaries.lock().get_mut(&job.id) {
                    entry.partial_running = false;
                    entry.partial = Some(
                        written
                            .map(|s| one_line(&s))
                            .filter(|s| !s.is_empty())
                            .unwrap_or_else(|| snippet(&tail, SNIPPET_CHARS)),
                    );
                }
            });
        }
        entry.partial.clone()
    }
}

/// The first [`SOURCE_CHARS`] of `text`.
fn head(text: &str) -> String {
    text.chars().take(SOURCE_CHARS).collect()
}

/// One summarization call for `job`; `None` when it cannot be made or fails.
async fn ask(
    daemon: &Arc<DaemonState>,
    job: &Arc<Job>,
    what: &str,
    instruction: &str,
    source: &str,
    api_key: Option<String>,
) -> Option<String> {
    let model = daemon.summaries.model.clone()?;
    let registry = &daemon.registry;
    let route_of = |name: &str| registry.plugin_of(name);
    let resolved = daemon.models.resolve(Some(&model), false, &route_of).ok()?;
    let route = match registry.route(&resolved.model) {
        Ok(route) => route,
        Err(e) => {
            tracing::warn!(%model, error = %e, "summarization model not served; using snippets");
            return None;
        }
    };
    let mut options = poe_plugin_api::Options::default();
    if route
        .plugin
        .manifest
        .options
        .iter()
        .any(|o| o == "max_tokens")
    {
        options.max_tokens = Some(300);
    }
    let request = Request {
        model: route.model,
        messages: vec![Message::user(format!("{instruction}{source}"))],
        output: OutputKind::Text,
        options,
        stream: false,
        api_key,
        ..Request::default()
    };
    let result = call::sub_call(
        daemon,
        job,
        "summary",
        &format!("{} ({what} of {})", resolved.model, job.id),
        format!("summary:{}:{}", job.id, uuid::Uuid::new_v4().simple()),
        route.plugin,
        request,
        |_| {},
    )
    .await;
    match result {
        Ok((response, _)) => Some(response.text),
        Err(failed) => {
            tracing::warn!(job = %job.id, what, error = ?failed.error, "summary failed; using a snippet");
            None
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn titles_are_one_short_clean_line() {
        assert_eq!(
            clean_title("\n\"Sorting stability\"\nmore").unwrap(),
            "Sorting stability"
        );
        assert_eq!(clean_title("## **Title**").unwrap(), "Title");
        let long = "word ".repeat(40);
        let title = clean_title(&long).unwrap();
        assert!(title.chars().count() <= TITLE_CHARS, "{title}");
        assert!(title.ends_with('…'));
        assert!(clean_title("  \n\"\"").is_none());
        assert_eq!(snippet("a\nb", 60), "a b");
    }
}
