//! The failures every CLI provider shares, as typed [`PluginError`]s whose
//! message says what to do: the binary is missing, the login is missing,
//! the login was rejected or has expired. All are `unavailable` (the host's
//! PROVIDER_UNAVAILABLE): nothing a retry would fix.

use std::io;

use poe_plugin_api::{ErrorKind, PluginError};

use crate::Cli;

/// At most `max` characters on one line, with an ellipsis when cut.
pub fn snippet(s: &str, max: usize) -> String {
    let line = s.split_whitespace().collect::<Vec<_>>().join(" ");
    match line.char_indices().nth(max) {
        Some((i, _)) => format!("{}…", &line[..i]),
        None => line,
    }
}

/// A plugin setting is wrong; every call says so (rather than the plugin
/// refusing to load, so the user sees the reason where they call it).
pub fn misconfigured(plugin: &str, problem: &str) -> PluginError {
    PluginError::new(
        ErrorKind::Unavailable,
        format!("the {plugin} plugin is misconfigured: {problem}"),
    )
}

/// How a CLI process ended, for messages: `exit status 1`, `signal 9`.
pub fn how_it_exited(code: Option<i32>, signal: Option<i32>) -> String {
    match (code, signal) {
        (Some(code), _) => format!("exit status {code}"),
        (None, Some(signal)) => format!("signal {signal}"),
        (None, None) => "an unknown status".to_string(),
    }
}

/// Spawning the CLI failed: not installed, not executable, or otherwise.
pub fn spawn_failed(cli: &Cli, error: &io::Error) -> PluginError {
    let Cli {
        name,
        bin,
        bin_key,
        install,
        ..
    } = cli;
    let message = match error.kind() {
        io::ErrorKind::NotFound => format!(
            "the {name} CLI was not found ({bin_key}={bin}). Fix: `{install}`, or set {bin_key} \
             to its executable"
        ),
        io::ErrorKind::PermissionDenied => format!(
            "the {name} CLI at {bin_key}={bin} is not executable. Fix: `chmod +x` it, or point \
             {bin_key} at its executable"
        ),
        _ => format!("cannot start the {name} CLI ({bin_key}={bin}): {error}"),
    };
    PluginError::new(ErrorKind::Unavailable, message)
}

/// The CLI has no credentials at all.
pub fn not_logged_in(cli: &Cli, said: &str) -> PluginError {
    PluginError::new(
        ErrorKind::Unavailable,
        format!(
            "{} is not logged in ({}). Fix: {}",
            cli.name,
            snippet(said, 300),
            cli.login
        ),
    )
}

/// The CLI's credentials were refused: a wrong key or an expired login.
pub fn login_rejected(cli: &Cli, said: &str) -> PluginError {
    PluginError::new(
        ErrorKind::Unavailable,
        format!(
            "{}'s login was rejected or has expired ({}). Fix: {}",
            cli.name,
            snippet(said, 300),
            cli.login
        ),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cli() -> Cli {
        Cli {
            name: "Demo",
            bin: "/nope/demo".into(),
            bin_key: "DEMO_BIN",
            install: "npm install -g demo",
            login: "run `demo login`",
            env: &[],
            pass_env: Vec::new(),
        }
    }

    #[test]
    fn each_failure_says_what_to_do() {
        let e = spawn_failed(&cli(), &io::Error::from(io::ErrorKind::NotFound));
        assert_eq!(e.kind, ErrorKind::Unavailable);
        assert!(e.message.contains("npm install -g demo"), "{}", e.message);
        assert!(e.message.contains("DEMO_BIN=/nope/demo"), "{}", e.message);
        let e = not_logged_in(&cli(), "no key");
        assert!(
            e.message.starts_with("Demo is not logged in"),
            "{}",
            e.message
        );
        let e = login_rejected(&cli(), "401");
        assert!(
            e.message.contains("rejected or has expired"),
            "{}",
            e.message
        );
        assert!(e.message.contains("demo login"), "{}", e.message);
        assert_eq!(snippet("a\n b   c", 3), "a b…");
    }
}
