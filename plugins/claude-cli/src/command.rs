//! The `claude` command line for one call, and the settings it comes from.
//!
//! Flags verified against Claude Code 2.1.197 (`claude --help`, and runs
//! against a local stand-in of the Messages API):
//! - `-p` (print: one non-interactive turn) reads the prompt from stdin when
//!   no prompt argument is given: no `ARG_MAX` limit, nothing in `ps`, and a
//!   prompt starting with `-` stays a prompt;
//! - `--output-format=stream-json` needs `--verbose`;
//!   `--include-partial-messages` adds the answer's text deltas;
//! - `--permission-mode=<acceptEdits|auto|bypassPermissions|default|dontAsk|plan>`;
//! - `--model=<alias or name>`, `--resume=<session id>`,
//!   `--add-dir=<dir>` (the attachments' directory, readable by its tools).
//!
//! Every value goes in as `--flag=value`, so none can be read as a flag.

use std::path::Path;

use poe_plugin_api::{Config, Request};

/// The permission modes `claude --permission-mode` accepts.
pub(crate) const PERMISSION_MODES: &[&str] = &[
    "plan",
    "default",
    "dontAsk",
    "acceptEdits",
    "auto",
    "bypassPermissions",
];

/// How Claude Code is run; from the `open` config.
#[derive(Debug, Clone)]
pub(crate) struct Settings {
    /// `CLAUDE_BIN` (default `claude`, looked up on `PATH`) and
    /// `CLAUDE_PASS_ENV`.
    pub(crate) cli: cli_provider::Cli,
    /// `CLAUDE_PERMISSION_MODE`, default `plan` (read-only).
    pub(crate) permission_mode: String,
    /// `CLAUDE_CONFIG_DIR` for Claude Code (its settings, login and
    /// sessions); unset, its own default.
    pub(crate) config_dir: Option<String>,
    /// A configuration mistake; every call fails with it (as `unavailable`,
    /// with the fix) rather than the plugin refusing to load.
    pub(crate) problem: Option<String>,
}

/// How to log Claude Code in, for error messages.
pub(crate) const LOGIN_FIX: &str = "run `claude` and `/login` (a Claude subscription), or set \
     ANTHROPIC_API_KEY, as the user that runs poe-coded (with the same CLAUDE_CONFIG_DIR)";

/// What Claude Code reads from the environment besides the usual: its own
/// settings, and the credentials of Bedrock and Vertex when it uses them.
const CLAUDE_ENV: &[&str] = &[
    "ANTHROPIC_*",
    "CLAUDE_*",
    "AWS_*",
    "GOOGLE_*",
    "CLOUD_ML_REGION",
    "VERTEX_REGION_*",
    "DISABLE_*",
    "MAX_THINKING_TOKENS",
    "API_TIMEOUT_MS",
];

use cli_provider::setting as config_value;

impl Settings {
    /// Reads and checks the configuration.
    pub(crate) fn from_config(config: &Config) -> Settings {
        let permission_mode = config_value(config, "CLAUDE_PERMISSION_MODE")
            .unwrap_or("plan")
            .to_string();
        let problem = (!PERMISSION_MODES.contains(&permission_mode.as_str())).then(|| {
            format!(
                "CLAUDE_PERMISSION_MODE={permission_mode:?} is not one of {}",
                PERMISSION_MODES.join(", ")
            )
        });
        Settings {
            cli: cli_provider::Cli {
                name: "Claude Code",
                bin: config_value(config, "CLAUDE_BIN")
                    .unwrap_or("claude")
                    .to_string(),
                bin_key: "CLAUDE_BIN",
                install: "npm install -g @anthropic-ai/claude-code",
                login: LOGIN_FIX,
                env: CLAUDE_ENV,
                pass_env: config_value(config, "CLAUDE_PASS_ENV")
                    .map(cli_provider::env::names)
                    .unwrap_or_default(),
            },
            permission_mode,
            config_dir: config_value(config, "CLAUDE_CONFIG_DIR").map(str::to_string),
            problem,
        }
    }
}

/// The Claude model for a routed model name: `claude` itself means Claude
/// Code's configured default; anything else (from `claude:<model>`) is
/// passed on. A leftover `claude:` prefix (a caller that loads the plugin
/// directly) is dropped too.
pub(crate) fn claude_model(model: &str) -> Option<&str> {
    cli_provider::request::model(model, &["claude"], &["claude"])
}

pub(crate) use cli_provider::continuation;

/// The arguments after the binary name; `attachments` is the directory the
/// attachments were saved in, if any.
pub(crate) fn args(
    settings: &Settings,
    request: &Request,
    attachments: Option<&Path>,
) -> Vec<String> {
    let mut args = vec![
        "-p".to_string(),
        "--output-format=stream-json".to_string(),
        "--verbose".to_string(),
        format!("--permission-mode={}", settings.permission_mode),
    ];
    if request.stream {
        args.push("--include-partial-messages".into());
    }
    if let Some(model) = claude_model(&request.model) {
        args.push(format!("--model={model}"));
    }
    if let Some(session) = continuation(request) {
        args.push(format!("--resume={session}"));
    }
    if let Some(dir) = attachments {
        args.push(format!("--add-dir={}", dir.display()));
    }
    args
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings(pairs: &[(&str, &str)]) -> Settings {
        let config: Config = pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        Settings::from_config(&config)
    }

    #[test]
    fn defaults_are_read_only() {
        let s = settings(&[]);
        assert_eq!(
            (s.cli.bin.as_str(), s.permission_mode.as_str()),
            ("claude", "plan")
        );
        assert!(s.problem.is_none());
        let s = settings(&[("CLAUDE_PERMISSION_MODE", "yolo")]);
        assert!(s.problem.unwrap().contains("CLAUDE_PERMISSION_MODE"));
    }

    #[test]
    fn no_value_can_become_a_flag() {
        let request = Request {
            model: "claude:--dangerously-skip-permissions".into(),
            continuation: Some("-x".into()),
            stream: true,
            ..Request::default()
        };
        let args = args(&settings(&[]), &request, Some(Path::new("/tmp/a")));
        assert_eq!(
            args,
            [
                "-p",
                "--output-format=stream-json",
                "--verbose",
                "--permission-mode=plan",
                "--include-partial-messages",
                "--model=--dangerously-skip-permissions",
                "--resume=-x",
                "--add-dir=/tmp/a",
            ]
        );
        assert_eq!(claude_model("claude"), None);
        assert_eq!(claude_model("Claude:sonnet"), Some("sonnet"));
        assert_eq!(claude_model("opus"), Some("opus"));
    }
}
