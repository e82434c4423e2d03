//! Turns the ways a Gemini CLI run fails into typed [`PluginError`]s.
//!
//! What Gemini CLI 0.61.0 does, observed against a local Gemini API:
//! - no login: a message on stderr ("When using Gemini API, you must specify
//!   the GEMINI_API_KEY environment variable", "Please set an Auth method
//!   ...") and exit status 41 (its FATAL_AUTHENTICATION_ERROR);
//! - a refused or expired key: a `result` with `status: "error"` quoting the
//!   API's error (`API_KEY_INVALID`, `API key expired`, 401/403);
//! - an unknown session to resume: "Error resuming session: Invalid session
//!   identifier ..." on stderr;
//! - exit 42: bad input; exit 53: the turn limit.
//!
//! None is retried by the host: a turn may have read or changed files.

use poe_plugin_api::{ErrorKind, PluginError};

use cli_provider::Cli;
use cli_provider::errors::{login_rejected, not_logged_in, snippet};

/// Longest message passed on.
const MAX_MESSAGE: usize = 400;

/// The exit status of a run that had no usable login.
const FATAL_AUTHENTICATION_ERROR: i32 = 41;
/// The exit status of bad input.
const FATAL_INPUT_ERROR: i32 = 42;
/// The exit status of a run that hit its turn limit.
const FATAL_TURN_LIMIT: i32 = 53;

fn refused_login(lower: &str) -> bool {
    [
        "api_key_invalid",
        "api key not valid",
        "api key expired",
        "unauthenticated",
        "permission_denied",
        "invalid authentication credentials",
        "\"code\":401",
        "\"code\":403",
    ]
    .iter()
    .any(|word| lower.contains(word))
}

/// A `result` with `status: "error"`.
pub(crate) fn result_error(cli: &Cli, message: &str) -> PluginError {
    let said = snippet(message, MAX_MESSAGE);
    let lower = message.to_ascii_lowercase();
    if refused_login(&lower) {
        return login_rejected(cli, &said);
    }
    if lower.contains("resource_exhausted")
        || lower.contains("\"code\":429")
        || lower.contains("quota")
    {
        return PluginError::new(
            ErrorKind::RateLimited,
            format!("the Gemini CLI is rate limited: {said}"),
        )
        .with_status(429);
    }
    if lower.contains("exceeds the maximum number of tokens") || lower.contains("context window") {
        return PluginError::new(
            ErrorKind::ContextLengthExceeded,
            format!("the Gemini CLI ran out of context: {said}"),
        );
    }
    if lower.contains("\"code\":404") || lower.contains("is not found") {
        return PluginError::new(
            ErrorKind::ModelNotFound,
            format!("the Gemini API does not know the model: {said}"),
        );
    }
    PluginError::new(
        ErrorKind::Upstream,
        format!("the Gemini CLI failed: {said}"),
    )
}

/// The stderr lines worth quoting: an error line if there is one, else the
/// last few, without the CLI's notes about the terminal.
fn stderr_summary(stderr: &[String]) -> String {
    let useful: Vec<&str> = stderr
        .iter()
        .map(String::as_str)
        .filter(|l| {
            !l.starts_with("Warning: 256-color")
                && !l.starts_with("Ripgrep is not available")
                && !l.starts_with("Approval mode overridden")
                && !l.trim_start().starts_with("at ")
        })
        .collect();
    if let Some(error) = useful
        .iter()
        .find(|l| l.contains("Error") || l.contains("must specify"))
    {
        return snippet(error, MAX_MESSAGE);
    }
    let start = useful.len().saturating_sub(3);
    snippet(&useful[start..].join(" "), MAX_MESSAGE)
}

/// The Gemini CLI exited unsuccessfully without a `result`.
pub(crate) fn exited(
    cli: &Cli,
    code: Option<i32>,
    signal: Option<i32>,
    stderr: &[String],
    started: bool,
) -> PluginError {
    let said = stderr_summary(stderr);
    let lower = said.to_ascii_lowercase();
    if lower.contains("error resuming session") || lower.contains("invalid session identifier") {
        return PluginError::new(
            ErrorKind::InvalidRequest,
            format!("no Gemini CLI session to resume with that continuation id: {said}"),
        );
    }
    if refused_login(&lower) {
        return login_rejected(cli, &said);
    }
    let how = cli_provider::errors::how_it_exited(code, signal);
    let said = if said.is_empty() {
        "no message".to_string()
    } else {
        said
    };
    match code {
        Some(FATAL_AUTHENTICATION_ERROR) => not_logged_in(cli, &said),
        Some(FATAL_INPUT_ERROR) => PluginError::new(
            ErrorKind::InvalidRequest,
            format!("the Gemini CLI refused the input: {said}"),
        ),
        Some(FATAL_TURN_LIMIT) => PluginError::new(
            ErrorKind::Upstream,
            format!("the Gemini CLI stopped at its turn limit: {said}"),
        ),
        _ if started => PluginError::new(
            ErrorKind::Upstream,
            format!("the Gemini CLI stopped with {how}: {said}"),
        ),
        _ => PluginError::new(
            ErrorKind::Unavailable,
            format!(
                "the Gemini CLI could not start ({how}): {said}. Check GEMINI_BIN, \
                 GEMINI_APPROVAL_MODE and the Gemini CLI's own settings"
            ),
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cli() -> Cli {
        crate::command::Settings::from_config(&Default::default()).cli
    }

    fn lines(lines: &[&str]) -> Vec<String> {
        lines.iter().map(|l| l.to_string()).collect()
    }

    #[test]
    fn each_failure_is_typed() {
        let e = exited(
            &cli(),
            Some(41),
            None,
            &lines(&[
                "Warning: 256-color support not detected.",
                "When using Gemini API, you must specify the GEMINI_API_KEY environment variable.",
            ]),
            false,
        );
        assert_eq!(e.kind, ErrorKind::Unavailable);
        assert!(e.message.contains("is not logged in"), "{e}");
        assert!(e.message.contains("must specify the GEMINI_API_KEY"), "{e}");
        let e = result_error(
            &cli(),
            r#"[API Error: {"error":{"code":400,"message":"API key expired. Please renew the API key.","status":"INVALID_ARGUMENT","details":[{"reason":"API_KEY_INVALID"}]}}]"#,
        );
        assert!(e.message.contains("rejected or has expired"), "{e}");
        let e = result_error(
            &cli(),
            r#"[API Error: {"error":{"code":429,"status":"RESOURCE_EXHAUSTED"}}]"#,
        );
        assert_eq!(e.kind, ErrorKind::RateLimited);
        let e = exited(
            &cli(),
            Some(1),
            None,
            &lines(&["Error resuming session: Invalid session identifier \"0000\"."]),
            false,
        );
        assert_eq!(e.kind, ErrorKind::InvalidRequest);
        let e = exited(&cli(), None, Some(9), &[], true);
        assert_eq!(e.kind, ErrorKind::Upstream);
    }
}
