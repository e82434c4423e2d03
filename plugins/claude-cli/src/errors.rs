//! Turns the ways a Claude Code run fails into typed [`PluginError`]s.
//!
//! What Claude Code 2.1.197 does, observed against a local Messages API:
//! - no login at all: a synthetic assistant message with
//!   `error: "authentication_failed"` ("Not logged in · Please run /login"),
//!   a `result` with `is_error`, exit status 1;
//! - a refused or expired login: `api_retry` events with status 401 for
//!   minutes (the run is stopped at the first, see `events`);
//! - an unknown session to resume: `result` `error_during_execution` with
//!   `errors: ["No conversation found with session ID: …"]`, exit 1;
//! - other API failures: retried by Claude Code itself, then a `result`
//!   with `is_error`, the message in `result` and the HTTP status in
//!   `api_error_status`.
//!
//! None is retried by the host: a turn may have read or changed files.

use poe_plugin_api::{ErrorKind, PluginError};

use cli_provider::Cli;
use cli_provider::errors::{login_rejected, not_logged_in, snippet};

use crate::events::Outcome;

/// Longest message passed on.
const MAX_MESSAGE: usize = 400;

/// Whether Claude Code's words mean a login problem, and which.
fn login_problem(cli: &Cli, said: &str) -> Option<PluginError> {
    let lower = said.to_ascii_lowercase();
    if lower.contains("not logged in")
        || lower.contains("please run /login") && !lower.contains("invalid")
    {
        return Some(not_logged_in(cli, said));
    }
    if lower.contains("invalid api key")
        || lower.contains("oauth token has expired")
        || lower.contains("authentication")
        || lower.contains("unauthorized")
    {
        return Some(login_rejected(cli, said));
    }
    None
}

/// A synthetic assistant error message (`error` set on the event).
pub(crate) fn assistant_error(cli: &Cli, kind: &str, text: &str) -> PluginError {
    let said = if text.is_empty() { kind } else { text };
    if kind == "authentication_failed" {
        return login_problem(cli, said).unwrap_or_else(|| login_rejected(cli, said));
    }
    failed(cli, said, None)
}

/// A `result` with `is_error`.
pub(crate) fn result_error(cli: &Cli, outcome: &Outcome) -> PluginError {
    let said = snippet(&outcome.text, MAX_MESSAGE);
    if said.contains("No conversation found") {
        return PluginError::new(
            ErrorKind::InvalidRequest,
            format!("no Claude Code session to resume with that continuation id: {said}"),
        );
    }
    if outcome.subtype == "error_max_turns" {
        return PluginError::new(
            ErrorKind::Upstream,
            format!("Claude Code stopped at its turn limit: {said}"),
        );
    }
    let status = outcome.api_error_status.and_then(|s| u16::try_from(s).ok());
    if matches!(status, Some(401 | 403)) {
        return login_rejected(cli, &said);
    }
    failed(cli, &said, status)
}

fn failed(cli: &Cli, said: &str, status: Option<u16>) -> PluginError {
    if let Some(login) = login_problem(cli, said) {
        return login;
    }
    let lower = said.to_ascii_lowercase();
    let error =
        if status == Some(429) || lower.contains("rate limit") || lower.contains("usage limit") {
            PluginError::new(
                ErrorKind::RateLimited,
                format!("Claude Code is rate limited: {said}"),
            )
        } else if lower.contains("prompt is too long")
            || lower.contains("context") && lower.contains("exceed")
        {
            PluginError::new(
                ErrorKind::ContextLengthExceeded,
                format!("Claude Code ran out of context: {said}"),
            )
        } else if status == Some(404)
            || lower.contains("not_found_error")
            || lower.contains("model") && lower.contains("not found")
        {
            PluginError::new(
                ErrorKind::ModelNotFound,
                format!("Claude Code's API does not know the model: {said}"),
            )
        } else {
            PluginError::new(ErrorKind::Upstream, format!("Claude Code failed: {said}"))
        };
    match status {
        Some(status) => error.with_status(status),
        None => error,
    }
}

/// Claude Code exited unsuccessfully without a `result`: a setup problem
/// (a bad flag or setting) or a crash; stderr says which.
pub(crate) fn exited(
    cli: &Cli,
    code: Option<i32>,
    signal: Option<i32>,
    stderr: &[String],
    started: bool,
) -> PluginError {
    let how = cli_provider::errors::how_it_exited(code, signal);
    let start = stderr.len().saturating_sub(3);
    let said = snippet(&stderr[start..].join(" "), MAX_MESSAGE);
    if let Some(login) = login_problem(cli, &said) {
        return login;
    }
    if started {
        return PluginError::new(
            ErrorKind::Upstream,
            format!(
                "Claude Code stopped with {how}: {}",
                if said.is_empty() { "no message" } else { &said }
            ),
        );
    }
    PluginError::new(
        ErrorKind::Unavailable,
        format!(
            "Claude Code could not start ({how}): {}. Check CLAUDE_BIN, CLAUDE_PERMISSION_MODE \
             and Claude Code's own settings",
            if said.is_empty() { "no message" } else { &said }
        ),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cli() -> Cli {
        crate::command::Settings::from_config(&Default::default()).cli
    }

    fn outcome(text: &str, status: Option<u64>) -> Outcome {
        Outcome {
            subtype: "success".into(),
            is_error: true,
            text: text.into(),
            api_error_status: status,
            ..Outcome::default()
        }
    }

    #[test]
    fn each_failure_is_typed() {
        let e = assistant_error(
            &cli(),
            "authentication_failed",
            "Not logged in · Please run /login",
        );
        assert_eq!(e.kind, ErrorKind::Unavailable);
        assert!(e.message.contains("is not logged in"), "{e}");
        assert!(e.message.contains("ANTHROPIC_API_KEY"), "{e}");
        let e = result_error(
            &cli(),
            &outcome("Invalid API key · Fix external API key", None),
        );
        assert!(e.message.contains("rejected or has expired"), "{e}");
        let e = result_error(&cli(), &outcome("OAuth token has expired", Some(401)));
        assert!(e.message.contains("rejected or has expired"), "{e}");
        let e = result_error(&cli(), &outcome("API Error: 429 slow down", Some(429)));
        assert_eq!((e.kind, e.status), (ErrorKind::RateLimited, Some(429)));
        let e = result_error(&cli(), &outcome("Prompt is too long", Some(400)));
        assert_eq!(e.kind, ErrorKind::ContextLengthExceeded);
        let e = result_error(
            &cli(),
            &outcome("No conversation found with session ID: x", None),
        );
        assert_eq!(e.kind, ErrorKind::InvalidRequest);
        let e = result_error(&cli(), &outcome("API Error: 500 boom", Some(500)));
        assert_eq!((e.kind, e.status), (ErrorKind::Upstream, Some(500)));
        let e = exited(
            &cli(),
            Some(1),
            None,
            &["error: unknown option '--bogus'".into()],
            false,
        );
        assert_eq!(e.kind, ErrorKind::Unavailable);
        assert!(e.message.contains("unknown option"), "{e}");
    }
}
