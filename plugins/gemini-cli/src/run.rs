//! One Gemini CLI run: save attachments where its tools can read them,
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

/// Runs the Gemini CLI for `request`.
pub(crate) async fn run(
    settings: &Settings,
    request: &Request,
    sink: &Sink,
) -> Result<Response, PluginError> {
    if let Some(problem) = &settings.problem {
        return Err(cli_provider::errors::misconfigured("gemini-cli", problem));
    }
    let cli = &settings.cli;
    let cwd = cli_provider::working_dir(cli, request, sink)?;
    // Lives until the Gemini CLI has exited: it holds the attachments.
    let attachments = cli_provider::attachments::Saved::new(cli, request)?;
    let prompt = attachments.prompt(cli, request, command::continuation(request).is_some())?;
    let invocation = Invocation {
        args: command::args(settings, request, attachments.dir()),
        stdin: Some(prompt),
        cwd,
        env: Vec::new(),
    };
    let mut session = Session::new(request.stream);
    let exit = cli_provider::run(cli, invocation, sink, request.timeout_ms, |event| {
        session.on_event(event, sink);
        std::ops::ControlFlow::Continue(())
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

/// The call's outcome from what the Gemini CLI printed and how it exited.
fn finish(
    settings: &Settings,
    session: Session,
    exit: cli_provider::Exit,
    request: &Request,
) -> Result<Response, PluginError> {
    let cli = &settings.cli;
    let Some(outcome) = session.outcome else {
        return Err(errors::exited(
            cli,
            exit.status.code(),
            exit.status.signal(),
            &exit.stderr,
            session.session_id.is_some(),
        ));
    };
    if !outcome.success {
        let message = if outcome.error.is_empty() {
            session.last_error.unwrap_or_else(|| "no message".into())
        } else {
            outcome.error
        };
        return Err(errors::result_error(cli, &message));
    }
    Ok(Response {
        text: session.text,
        usage: outcome.usage,
        finish_reason: Some("stop".into()),
        model: command::gemini_model(&request.model)
            .map(str::to_string)
            .or(session.model),
        continuation: session.session_id,
        ..Response::default()
    })
}
