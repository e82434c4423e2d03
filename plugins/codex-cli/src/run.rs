//! One codex run: prepare the command and prompt, let the `cli-provider`
//! toolkit run it (its own process group, a clean environment, the prompt
//! on stdin, cancellation and the deadline stopping the whole group), and
//! turn the events and exit status into a `Response` or a typed error.

use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};

use base64::Engine;
use cli_provider::Invocation;
use poe_plugin_api::{ErrorKind, PluginError, Request, Response, Role, Sink};

use crate::command::{self, Settings};
use crate::errors;
use crate::events::Turn;

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
        return Err(cli_provider::errors::misconfigured("codex-cli", problem));
    }
    let cwd = cli_provider::working_dir(&settings.cli, request, sink)?;
    // Lives until codex has exited: it holds the --image files.
    let scratch = tempfile::Builder::new()
        .prefix("poe-code-codex")
        .tempdir()
        .map_err(|e| PluginError::internal(format!("cannot create a temp dir: {e}")))?;
    let (images, taken) = image_files(request, scratch.path());
    let prompt = command::prompt(request, &taken)?;
    let mut invocation = Invocation {
        args: command::args(settings, request, &images),
        stdin: Some(prompt),
        cwd,
        env: Vec::new(),
    };
    if let Some(home) = &settings.home {
        invocation.env.push(("CODEX_HOME".into(), home.clone()));
    }
    let mut turn = Turn::new(request.stream);
    let exit = cli_provider::run(
        &settings.cli,
        invocation,
        sink,
        request.timeout_ms,
        |event| {
            turn.on_event(event, sink);
            std::ops::ControlFlow::Continue(())
        },
    )
    .await?;
    drop(scratch);
    // Codex resolves a non-UUID id as a thread name and starts a fresh
    // thread when none matches.
    cli_provider::note_continuation(
        &settings.cli,
        sink,
        command::continuation(request),
        turn.thread_id.as_deref(),
    );
    finish(settings, turn, exit.status, &exit.stderr, request)
}

/// The call's outcome from what codex printed and how it exited.
fn finish(
    settings: &Settings,
    turn: Turn,
    status: std::process::ExitStatus,
    stderr: &[String],
    request: &Request,
) -> Result<Response, PluginError> {
    if let Some(failure) = &turn.failure {
        return Err(errors::turn_failed(
            &settings.cli,
            failure,
            command::has_login(settings),
        ));
    }
    if !status.success() {
        return Err(errors::exited(
            &settings.cli,
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
