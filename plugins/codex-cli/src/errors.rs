//! Turns the ways a codex run fails into typed [`PluginError`]s.
//!
//! What codex-cli 0.169.0 does, observed against a fake Responses API:
//! - an upstream failure is retried by codex itself ("Reconnecting... 1/5"),
//!   then reported as `turn.failed` with a message such as
//!   `unexpected status 401 Unauthorized: ..., url: ...` or
//!   `stream disconnected before completion: ...`, and exit status 1;
//! - a setup problem (bad `-c` value, unknown thread to resume, outside a
//!   git repo without `--skip-git-repo-check`) prints `Error: ...` (or a
//!   plain sentence) on stderr and exits 1 before any thread starts;
//! - not being logged in shows up as the upstream's 401.
//!
//! A missing binary, a rejected login and a broken setup are `unavailable`
//! (the host's PROVIDER_UNAVAILABLE) with the fix in the message. An HTTP
//! status codex quotes is kept for the message; no failure is retried
//! (`invoke` marks them all final: a turn may have changed files).

use cli_provider::Cli;
use poe_plugin_api::{ErrorKind, PluginError};

use crate::events::snippet;

/// Longest message passed on.
const MAX_MESSAGE: usize = 400;

/// How to fix a missing or rejected login.
pub(crate) const LOGIN_FIX: &str = "run `codex login` (or `printenv OPENAI_API_KEY | codex login --with-api-key`) \
     as the user that runs poe-coded, with the same CODEX_HOME";

/// The HTTP status in codex's `unexpected status 401 Unauthorized: ...`.
fn quoted_status(message: &str) -> Option<u16> {
    let rest = message.split("unexpected status ").nth(1)?;
    rest.get(..3)?.parse().ok()
}

/// A `turn.failed` (or last stream error) message; `has_login` says whether
/// Codex had credentials to send (a 401 then means they were refused).
pub(crate) fn turn_failed(cli: &Cli, message: &str, has_login: bool) -> PluginError {
    let lower = message.to_ascii_lowercase();
    let status = quoted_status(message);
    let said = snippet(message, MAX_MESSAGE);
    if matches!(status, Some(401 | 403))
        || lower.contains("not logged in")
        || lower.contains("unauthorized")
    {
        return if has_login && !lower.contains("not logged in") {
            cli_provider::errors::login_rejected(cli, &said)
        } else {
            cli_provider::errors::not_logged_in(cli, &said)
        };
    }
    if status == Some(429) || lower.contains("usage limit") || lower.contains("rate limit") {
        // Codex already retried on its own; running the turn again could
        // repeat what it did before failing.
        return PluginError::new(
            ErrorKind::RateLimited,
            format!("Codex is rate limited: {said}"),
        )
        .not_retryable();
    }
    if lower.contains("context window")
        || lower.contains("context_length_exceeded")
        || lower.contains("maximum context length")
    {
        return PluginError::new(
            ErrorKind::ContextLengthExceeded,
            format!("Codex ran out of context: {said}"),
        );
    }
    if status == Some(404) || lower.contains("model_not_found") {
        return PluginError::new(
            ErrorKind::ModelNotFound,
            format!("Codex's model provider does not know the model: {said}"),
        );
    }
    // A failed turn may have run commands or changed files: never rerun it.
    let error =
        PluginError::new(ErrorKind::Upstream, format!("Codex failed: {said}")).not_retryable();
    match status {
        Some(status) => error.with_status(status),
        None => error,
    }
}

/// The stderr lines worth quoting: codex's own `Error:` line first, else
/// the last few, without the stack backtrace it appends.
fn stderr_summary(stderr: &[String]) -> String {
    let useful: Vec<&str> = stderr
        .iter()
        .map(String::as_str)
        .take_while(|l| !l.starts_with("Stack backtrace"))
        .filter(|l| !l.starts_with("Reading additional input from stdin"))
        .collect();
    if let Some(error) = useful.iter().find(|l| l.starts_with("Error:")) {
        return snippet(error.trim_start_matches("Error:").trim(), MAX_MESSAGE);
    }
    let start = useful.len().saturating_sub(3);
    snippet(&useful[start..].join(" "), MAX_MESSAGE)
}

/// Codex exited unsuccessfully without `turn.failed`. `started` says
/// whether a thread had started (after that, it is the run that failed;
/// before, the setup).
pub(crate) fn exited(
    cli: &Cli,
    code: Option<i32>,
    signal: Option<i32>,
    stderr: &[String],
    started: bool,
    last_error: Option<&str>,
) -> PluginError {
    let how = cli_provider::errors::how_it_exited(code, signal);
    let said = stderr_summary(stderr);
    let lower = said.to_ascii_lowercase();
    if lower.contains("no rollout found") || lower.contains("no saved session") {
        return PluginError::new(
            ErrorKind::InvalidRequest,
            format!("no Codex thread to resume with that continuation id: {said}"),
        );
    }
    if lower.contains("not logged in") || lower.contains("login") {
        return cli_provider::errors::not_logged_in(cli, &said);
    }
    if started {
        // The run itself broke (crash, kill); the last stream error says why.
        let why = last_error.map(|e| snippet(e, MAX_MESSAGE)).unwrap_or(said);
        return PluginError::new(
            ErrorKind::Upstream,
            format!("Codex stopped with {how}: {why}"),
        )
        .not_retryable();
    }
    PluginError::new(
        ErrorKind::Unavailable,
        format!(
            "Codex could not start ({how}): {}. Check CODEX_BIN, CODEX_SANDBOX_MODE, \
             CODEX_APPROVAL_POLICY, CODEX_SKIP_GIT_CHECK and Codex's own config",
            if said.is_empty() { "no message" } else { &said }
        ),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn turn_failures() {
        let cli = crate::command::Settings::from_config(&Default::default()).cli;
        let turn_failed = |message: &str| turn_failed(&cli, message, true);
        let e = turn_failed(
            "unexpected status 401 Unauthorized: Incorrect API key provided, url: http://127.0.0.1:1/v1/responses",
        );
        assert_eq!(e.kind, ErrorKind::Unavailable);
        assert!(e.message.contains("codex login"), "{}", e.message);
        assert!(
            e.message.contains("rejected or has expired"),
            "{}",
            e.message
        );
        let e = super::turn_failed(&cli, "unexpected status 401 Unauthorized", false);
        assert!(e.message.contains("is not logged in"), "{}", e.message);
        let e = turn_failed("unexpected status 429 Too Many Requests: slow down");
        assert_eq!(e.kind, ErrorKind::RateLimited);
        let e = turn_failed("unexpected status 500 Internal Server Error: boom");
        assert_eq!((e.kind, e.status), (ErrorKind::Upstream, Some(500)));
        let e = turn_failed("stream disconnected before completion: the fake model broke");
        assert_eq!((e.kind, e.status), (ErrorKind::Upstream, None));
        let e = turn_failed("Codex ran out of room in the model's context window.");
        assert_eq!(e.kind, ErrorKind::ContextLengthExceeded);
    }

    #[test]
    fn exits_without_a_turn() {
        let cli = crate::command::Settings::from_config(&Default::default()).cli;
        let exited = |code, signal, stderr: &[String], started, last_error| {
            exited(&cli, code, signal, stderr, started, last_error)
        };
        let stderr = |lines: &[&str]| lines.iter().map(|l| l.to_string()).collect::<Vec<_>>();
        let e = exited(
            Some(1),
            None,
            &stderr(&[
                "Reading additional input from stdin...",
                "Error: thread/resume: thread/resume failed: no rollout found for thread id 01a2 (code -32600)",
                "",
                "Stack backtrace:",
                "   0: <unknown>",
            ]),
            false,
            None,
        );
        assert_eq!(e.kind, ErrorKind::InvalidRequest, "{}", e.message);
        let e = exited(
            Some(1),
            None,
            &stderr(&[
                "Error: approval_policy = \"untrusted\" is no longer supported; remove this setting",
            ]),
            false,
            None,
        );
        assert_eq!(e.kind, ErrorKind::Unavailable);
        assert!(e.message.contains("no longer supported"), "{}", e.message);
        let e = exited(
            Some(1),
            None,
            &stderr(&[
                "Not inside a trusted directory and --skip-git-repo-check was not specified.",
            ]),
            false,
            None,
        );
        assert!(e.message.contains("trusted directory"), "{}", e.message);
        let e = exited(None, Some(9), &[], true, Some("Reconnecting... 2/5"));
        assert_eq!((e.kind, e.status), (ErrorKind::Upstream, None));
        assert!(e.message.contains("signal 9"));
    }
}
