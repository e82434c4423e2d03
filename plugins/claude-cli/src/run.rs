//! One Claude Code run: save attachments where its tools can read them,
//! build the command and prompt, let the `cli-provider` toolkit run it (its
//! own process group, a clean environment, the prompt on stdin, cancellation
//! and the deadline stopping the whole group), and turn the events and exit
//! status into a `Response` or a typed error.

use std::os::unix::process::ExitStatusExt;

use cli_provider::Invocation;
use poe_plugin_api::{PluginError, Request, Response, Sink};

use crate::command::{self, Settings};
use crate::errors;
use crate::events::Session;

/// Runs Claude Code for `request`.
pub(crate) async fn run(
    settings: &Settings,
    request: &Request,
    sink: &Sink,
) -> Result<Response, PluginError> {
    if let Some(problem) = &settings.problem {
        return Err(cli_provider::errors::misconfigured("claude-cli", problem));
    }
    let cli = &settings.cli;
    let cwd = cli_provider::working_dir(cli, request, sink)?;
    // Lives until Claude Code has exited: it holds the attachments.
    let attachments = cli_provider::attachments::Saved::new(cli, request)?;
    let prompt = attachments.prompt(cli, request, command::continuation(request).is_some())?;
    let mut invocation = Invocation {
        args: command::args(settings, request, attachments.dir()),
        stdin: Some(prompt),
        cwd,
        env: Vec::new(),
    };
    if let Some(dir) = &settings.config_dir {
        invocation
            .env
            .push(("CLAUDE_CONFIG_DIR".into(), dir.clone()));
    }
    let mut session = Session::new(request.stream);
    let exit = cli_provider::run(cli, invocation, sink, request.timeout_ms, |event| {
        session.on_event(event, sink, cli)
    })
    .await?;
    drop(attachments);
    cli_provider::note_continuation(
        cli,
        sink,
        command::continuation(request),
        session.session_id.as_deref(),
    );
    finish(settings, session, exit, request)
}

/// The call's outcome from what Claude Code printed and how it exited.
fn finish(
    settings: &Settings,
    session: Session,
    exit: cli_provider::Exit,
    request: &Request,
) -> Result<Response, PluginError> {
    let cli = &settings.cli;
    // A synthetic error message (no login, an API failure Claude Code gave
    // up on) says more than the result that follows it.
    let succeeded = session.outcome.as_ref().is_some_and(|o| !o.is_error);
    if let Some((kind, text)) = &session.error_message
        && !succeeded
    {
        return Err(errors::assistant_error(cli, kind, text));
    }
    let Some(outcome) = session.outcome else {
        return Err(errors::exited(
            cli,
            exit.status.code(),
            exit.status.signal(),
            &exit.stderr,
            session.session_id.is_some(),
        ));
    };
    if outcome.is_error {
        return Err(errors::result_error(cli, &outcome));
    }
    // The answer streamed is the answer returned; a run that streamed
    // nothing (e.g. only tools, then a result) answers with its result.
    let text = if session.text.is_empty() {
        outcome.text
    } else {
        session.text
    };
    Ok(Response {
        text,
        usage: outcome.usage,
        finish_reason: Some("stop".into()),
        model: session
            .model
            .or_else(|| command::claude_model(&request.model).map(str::to_string))
            .or_else(|| Some("claude".into())),
        continuation: session.session_id,
        ..Response::default()
    })
}
