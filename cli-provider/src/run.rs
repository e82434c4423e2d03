//! One run of a CLI: spawn it in its own process group with a clean
//! environment, feed the prompt on stdin, hand each JSON event it prints to
//! the caller, and stop the whole group when the call is cancelled or its
//! deadline passes, so no process outlives the call.

use std::ops::ControlFlow;
use std::path::PathBuf;
use std::process::{ExitStatus, Stdio};

use poe_plugin_api::{ErrorKind, LogLevel, PluginError, Request, Sink};
use serde_json::Value;
use tokio::io::{AsyncWriteExt, BufReader};

use crate::errors::{self, snippet};
use crate::lines::{Line, Lines};
use crate::process::{Group, StderrTail};
use crate::{Cli, env};

/// Longest stdout line read; a longer one is skipped with a warning.
pub const MAX_EVENT_BYTES: usize = 16 << 20;

/// What to run, beyond the CLI itself.
#[derive(Debug, Default, Clone)]
pub struct Invocation {
    /// Arguments after the binary. Pass tool-supplied values as
    /// `--flag=value` or after `--`, never as a bare argument that could
    /// start with `-`; the prompt goes on stdin.
    pub args: Vec<String>,
    /// Written to the CLI's stdin, which is then closed.
    pub stdin: Option<String>,
    /// The working directory ([`working_dir`]); `None`: the daemon's.
    pub cwd: Option<PathBuf>,
    /// Variables set on top of the filtered environment.
    pub env: Vec<(String, String)>,
}

/// How a run that was not stopped ended.
#[derive(Debug)]
pub struct Exit {
    pub status: ExitStatus,
    /// The last lines of stderr ([`crate::process::StderrTail`]).
    pub stderr: Vec<String>,
}

/// The directory the CLI works in: the calling session's cwd. A cwd that
/// does not exist is refused; none at all runs in the daemon's (logged).
pub fn working_dir(
    cli: &Cli,
    request: &Request,
    sink: &Sink,
) -> Result<Option<PathBuf>, PluginError> {
    match request
        .cwd
        .as_deref()
        .map(str::trim)
        .filter(|c| !c.is_empty())
    {
        Some(cwd) => {
            let path = PathBuf::from(cwd);
            if path.is_dir() {
                Ok(Some(path))
            } else {
                Err(PluginError::new(
                    ErrorKind::InvalidRequest,
                    format!("the session's working directory {cwd} does not exist"),
                ))
            }
        }
        None => {
            sink.log(
                LogLevel::Warn,
                format!(
                    "no session working directory; {} runs in the daemon's",
                    cli.name
                ),
            );
            Ok(None)
        }
    }
}

/// Logs that the CLI continued another session than the one asked for
/// (it resolves some ids by name, or starts afresh).
pub fn note_continuation(cli: &Cli, sink: &Sink, asked: Option<&str>, got: Option<&str>) {
    if let (Some(asked), Some(got)) = (asked, got)
        && asked != got
    {
        sink.log(
            LogLevel::Info,
            format!("{} continued session {got}, not {asked}", cli.name),
        );
    }
}

/// Parses one stdout line as a JSON object; anything else is `None`.
pub fn parse_event(line: &[u8]) -> Option<Value> {
    match serde_json::from_slice(line) {
        Ok(v @ Value::Object(_)) => Some(v),
        _ => None,
    }
}

/// Runs `cli` with `invocation`, calling `on_event` for every JSON object
/// it prints on stdout (other lines are logged and skipped), until it exits,
/// the call is cancelled or times out (`timeout_ms`), or `on_event` breaks
/// with an error (e.g. the CLI is retrying a refused login, which no retry
/// fixes). A stopped run returns that error after the process group is
/// gone.
pub async fn run(
    cli: &Cli,
    invocation: Invocation,
    sink: &Sink,
    timeout_ms: Option<u64>,
    mut on_event: impl FnMut(&Value) -> ControlFlow<PluginError>,
) -> Result<Exit, PluginError> {
    let name = cli.name;
    let mut cmd = tokio::process::Command::new(&cli.bin);
    cmd.args(&invocation.args)
        .stdin(if invocation.stdin.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .env_clear()
        .envs(env::filtered(std::env::vars_os(), cli.env, &cli.pass_env))
        .envs(invocation.env.iter().map(|(k, v)| (k, v)))
        // Its own group: one signal reaches everything the CLI started.
        .process_group(0)
        // Backstop if the group guard is never reached.
        .kill_on_drop(true);
    if let Some(cwd) = &invocation.cwd {
        cmd.current_dir(cwd);
    }
    let mut child = cmd.spawn().map_err(|e| errors::spawn_failed(cli, &e))?;
    let mut group = Group::new(child.id().unwrap_or(0));
    sink.log(
        LogLevel::Debug,
        format!("started {} {}", cli.bin, invocation.args.join(" ")),
    );

    // Written from its own task so a prompt bigger than the pipe buffer
    // cannot stall reading the CLI's output.
    if let (Some(mut stdin), Some(text)) = (child.stdin.take(), invocation.stdin) {
        tokio::spawn(async move {
            let _ = stdin.write_all(text.as_bytes()).await;
            let _ = stdin.shutdown().await;
        });
    }
    let stderr = child
        .stderr
        .take()
        .map(StderrTail::collect)
        .unwrap_or_default();
    let Some(stdout) = child.stdout.take() else {
        group.terminate(&mut child).await;
        return Err(PluginError::internal(format!(
            "{name} stdout was not captured"
        )));
    };
    let mut lines = Lines::new(BufReader::new(stdout), MAX_EVENT_BYTES);
    let stop = poe_plugin_api::cancel::stopped(sink, timeout_ms, name);
    tokio::pin!(stop);

    let stopped = loop {
        tokio::select! {
            biased;
            reason = &mut stop => break Some(reason),
            // Cancel-safe: `Lines::next` keeps a partly read line.
            line = lines.next() => match line {
                Ok(Some(Line::Text(line))) => match parse_event(&line) {
                    Some(event) => {
                        if let ControlFlow::Break(error) = on_event(&event) {
                            break Some(error);
                        }
                    }
                    None if line.iter().all(u8::is_ascii_whitespace) => {}
                    None => sink.log(
                        LogLevel::Debug,
                        format!(
                            "{name} printed a non-event line: {}",
                            snippet(&String::from_utf8_lossy(&line), 200)
                        ),
                    ),
                },
                Ok(Some(Line::TooLong(n))) => sink.log(
                    LogLevel::Warn,
                    format!("{name} printed a line of {n} bytes; skipped (limit {MAX_EVENT_BYTES})"),
                ),
                Ok(None) => break None,
                Err(e) => {
                    sink.log(LogLevel::Warn, format!("reading {name}'s output failed: {e}"));
                    break None;
                }
            },
        }
    };
    let status = match stopped {
        Some(reason) => Err(reason),
        // Output closed; the CLI may still be finishing (or be stuck).
        None => tokio::select! {
            biased;
            reason = &mut stop => Err(reason),
            status = child.wait() => Ok(status),
        },
    };
    match status {
        Ok(Ok(status)) => {
            group.disarm();
            Ok(Exit {
                status,
                stderr: stderr.lines(),
            })
        }
        Ok(Err(e)) => {
            group.terminate(&mut child).await;
            Err(PluginError::internal(format!(
                "waiting for {name} failed: {e}"
            )))
        }
        Err(reason) => {
            group.terminate(&mut child).await;
            sink.log(
                LogLevel::Info,
                format!("{name} stopped: {}", reason.kind.as_str()),
            );
            Err(reason)
        }
    }
}
