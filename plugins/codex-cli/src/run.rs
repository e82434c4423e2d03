//! One codex run: prepare the command, spawn it in its own process group,
//! feed the prompt on stdin, read events until codex exits, and turn the
//! outcome into a `Response` or a typed error.
//!
//! The host's cancel flag and the request deadline are watched the whole
//! time; either stops the run by terminating the process group (see
//! `process`) before the call returns, so no codex process outlives it.

use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::process::Stdio;

use base64::Engine;
use poe_plugin_api::{ErrorKind, LogLevel, PluginError, Request, Response, Role, Sink};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};

use crate::command::{self, Settings};
use crate::errors;
use crate::events::Turn;
use crate::process::{Group, StderrTail};

/// Variables of the daemon's environment codex has no business seeing.
const HIDDEN_ENV: &[&str] = &["POE_API_KEY"];

/// The directory codex works in: the calling session's cwd.
fn working_dir(request: &Request, sink: &Sink) -> Result<Option<PathBuf>, PluginError> {
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
                "no session working directory; codex runs in the daemon's",
            );
            Ok(None)
        }
    }
}

/// Image attachments sent inline (`data:image/...`) become files codex can
/// take with `--image`; returns the paths and, per message, the
/// attachments used.
fn image_files(request: &Request, dir: &Path) -> (Vec<PathBuf>, Vec<Vec<usize>>) {
    let mut paths = Vec::new();
    let mut taken = Vec::with_capacity(request.messages.len());
    for (m, message) in request.messages.iter().enumerate() {
        let mut used = Vec::new();
        // Only the message codex is asked about can carry images.
        let is_last_user = request.messages[m..]
            .iter()
            .skip(1)
            .all(|later| later.role != Role::User)
            && message.role == Role::User;
        for (a, attachment) in message.attachments.iter().enumerate() {
            let Some((meta, data)) = attachment
                .url
                .strip_prefix("data:")
                .and_then(|rest| rest.split_once(','))
            else {
                continue;
            };
            let Some(mime) = meta.strip_suffix(";base64") else {
                continue;
            };
            let Some(ext) = mime.strip_prefix("image/").filter(|_| is_last_user) else {
                continue;
            };
            let Ok(bytes) = base64::engine::general_purpose::STANDARD.decode(data.trim()) else {
                continue;
            };
            let ext: String = ext.chars().filter(char::is_ascii_alphanumeric).collect();
            let path = dir.join(format!("image-{m}-{a}.{ext}"));
            if std::fs::write(&path, bytes).is_ok() {
                paths.push(path);
                used.push(a);
            }
        }
        taken.push(used);
    }
    (paths, taken)
}

/// Runs codex for `request`.
pub(crate) async fn run(
    settings: &Settings,
    request: &Request,
    sink: &Sink,
) -> Result<Response, PluginError> {
    if let Some(problem) = &settings.problem {
        return Err(PluginError::new(
            ErrorKind::Unavailable,
            format!("the codex-cli plugin is misconfigured: {problem}"),
        ));
    }
    let cwd = working_dir(request, sink)?;
    // Lives until codex has exited: it holds the --image files.
    let scratch = tempfile::Builder::new()
        .prefix("poe-code-codex")
        .tempdir()
        .map_err(|e| PluginError::internal(format!("cannot create a temp dir: {e}")))?;
    let (images, taken) = image_files(request, scratch.path());
    let prompt = command::prompt(request, &taken)?;
    let args = command::args(settings, request, &images);

    let mut cmd = tokio::process::Command::new(&settings.bin);
    cmd.args(&args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        // Its own group: one signal reaches everything codex started.
        .process_group(0)
        // Backstop if the group guard is never reached.
        .kill_on_drop(true);
    if let Some(cwd) = &cwd {
        cmd.current_dir(cwd);
    }
    if let Some(home) = &settings.home {
        cmd.env("CODEX_HOME", home);
    }
    for name in HIDDEN_ENV {
        cmd.env_remove(name);
    }
    let mut child = cmd.spawn().map_err(|e| errors::spawn(&settings.bin, &e))?;
    let mut group = Group::new(child.id().unwrap_or(0));
    sink.log(
        LogLevel::Debug,
        format!("started {} {}", settings.bin, args.join(" ")),
    );

    // Written from its own task so a prompt bigger than the pipe buffer
    // cannot stall reading codex's output.
    if let Some(mut stdin) = child.stdin.take() {
        tokio::spawn(async move {
            let _ = stdin.write_all(prompt.as_bytes()).await;
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
        return Err(PluginError::internal("codex stdout was not captured"));
    };
    let mut lines = BufReader::new(stdout).split(b'\n');
    let mut turn = Turn::new(request.stream);
    let stop = poe_plugin_api::cancel::stopped(sink, request.timeout_ms, "Codex");
    tokio::pin!(stop);

    let stopped = loop {
        tokio::select! {
            biased;
            reason = &mut stop => break Some(reason),
            line = lines.next_segment() => match line {
                Ok(Some(line)) => turn.on_line(&String::from_utf8_lossy(&line), sink),
                Ok(None) => break None,
                Err(e) => {
                    sink.log(LogLevel::Warn, format!("reading codex output failed: {e}"));
                    break None;
                }
            },
        }
    };
    let status = match stopped {
        Some(reason) => Err(reason),
        // Output closed; codex may still be finishing (or be stuck).
        None => tokio::select! {
            biased;
            reason = &mut stop => Err(reason),
            status = child.wait() => Ok(status),
        },
    };
    let status = match status {
        Ok(Ok(status)) => {
            group.disarm();
            status
        }
        Ok(Err(e)) => {
            group.terminate(&mut child).await;
            return Err(PluginError::internal(format!(
                "waiting for codex failed: {e}"
            )));
        }
        Err(reason) => {
            group.terminate(&mut child).await;
            sink.log(
                LogLevel::Info,
                format!("codex stopped: {}", reason.kind.as_str()),
            );
            return Err(reason);
        }
    };
    drop(scratch);
    if let (Some(asked), Some(got)) = (command::continuation(request), turn.thread_id.as_deref())
        && asked != got
    {
        // Codex resolves a non-UUID id as a thread name and starts a fresh
        // thread when none matches.
        sink.log(
            LogLevel::Info,
            format!("codex continued thread {got}, not {asked} (resolved by name or new)"),
        );
    }
    finish(turn, status, &stderr.lines(), request)
}

/// The call's outcome from what codex printed and how it exited.
fn finish(
    turn: Turn,
    status: std::process::ExitStatus,
    stderr: &[String],
    request: &Request,
) -> Result<Response, PluginError> {
    if let Some(failure) = &turn.failure {
        return Err(errors::turn_failed(failure));
    }
    if !status.success() {
        return Err(errors::exited(
            status.code(),
            status.signal(),
            stderr,
            turn.thread_id.is_some(),
            turn.last_error.as_deref(),
        ));
    }
    if !turn.completed && turn.text.is_empty() {
        return Err(PluginError::new(
            ErrorKind::Upstream,
            "Codex exited without completing its turn or answering",
        ));
    }
    Ok(Response {
        text: turn.text,
        usage: turn.usage,
        finish_reason: Some("stop".into()),
        model: Some(
            command::codex_model(&request.model)
                .unwrap_or("codex")
                .to_string(),
        ),
        continuation: turn.thread_id,
        ..Response::default()
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use poe_plugin_api::{Attachment, Message};

    #[test]
    fn inline_images_become_files() {
        let dir = tempfile::tempdir().unwrap();
        let request = Request {
            messages: vec![Message {
                role: Role::User,
                content: "what is this".into(),
                attachments: vec![
                    Attachment {
                        url: "https://x/a.png".into(),
                        content_type: None,
                        name: None,
                    },
                    Attachment {
                        url: "data:image/png;base64,aGVsbG8=".into(),
                        content_type: None,
                        name: None,
                    },
                    Attachment {
                        url: "data:text/plain;base64,aGVsbG8=".into(),
                        content_type: None,
                        name: None,
                    },
                ],
                tool_call_id: None,
                tool_calls: vec![],
            }],
            ..Request::default()
        };
        let (paths, taken) = image_files(&request, dir.path());
        assert_eq!(taken, vec![vec![1]]);
        assert_eq!(paths.len(), 1);
        assert_eq!(std::fs::read(&paths[0]).unwrap(), b"hello");
        assert!(paths[0].to_string_lossy().ends_with(".png"));
    }
}
