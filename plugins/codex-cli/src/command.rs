//! The `codex` command line for one call, and the settings it comes from.
//!
//! Flags verified against codex-cli 0.169.0 (`codex exec --help`,
//! `codex exec resume --help`, and runs against a fake Responses API):
//! - `codex exec --json` prints the JSONL event stream; `--sandbox
//!   <read-only|workspace-write|danger-full-access>`; `--model`;
//!   `--skip-git-repo-check` (without it codex refuses to run outside a
//!   trusted git directory); `-c key=value` config overrides;
//!   `--image <FILE>`.
//! - `exec` has no approval flag (only the interactive `codex` has
//!   `--ask-for-approval`), so the policy goes in as
//!   `-c approval_policy="<policy>"`, which codex validates itself
//!   (0.169.0 rejects the removed `untrusted`).
//! - `codex exec resume <SESSION_ID> [PROMPT]` continues a thread. Exec-level
//!   options (`--json`, `--sandbox`, `-c`, `--model`, `--skip-git-repo-check`)
//!   go before `resume`; `resume` has no `--sandbox` of its own, so the mode
//!   is also given as `-c sandbox_mode=...` to be sure a resumed thread runs
//!   under it.
//! - The prompt is `-`, read from stdin: no `ARG_MAX` limit and the prompt
//!   does not show in `ps`. Positionals follow `--`, so neither a prompt nor
//!   a thread id can be read as a flag.

use std::path::PathBuf;

use poe_plugin_api::{Config, Message, PluginError, Request};

/// The sandbox modes `codex exec --sandbox` accepts.
pub(crate) const SANDBOX_MODES: &[&str] = &["read-only", "workspace-write", "danger-full-access"];

/// How codex is run; from the `open` config.
#[derive(Debug, Clone)]
pub(crate) struct Settings {
    /// `CODEX_BIN` (default `codex`, looked up on `PATH`) and
    /// `CODEX_PASS_ENV`.
    pub(crate) cli: cli_provider::Cli,
    /// `CODEX_SANDBOX_MODE`, default `read-only`.
    pub(crate) sandbox: String,
    /// `CODEX_APPROVAL_POLICY`, default `never`.
    pub(crate) approval: String,
    /// `--skip-git-repo-check` unless `CODEX_SKIP_GIT_CHECK=false`.
    pub(crate) skip_git_check: bool,
    /// `CODEX_HOME` for codex (its config and login); unset, codex inherits
    /// the daemon's environment.
    pub(crate) home: Option<String>,
    /// A configuration mistake; every call fails with it (as `unavailable`,
    /// with the fix) rather than the plugin refusing to load, so the user
    /// sees the reason where they call codex.
    pub(crate) problem: Option<String>,
}

use cli_provider::setting as config_value;

impl Settings {
    /// Reads and checks the configuration.
    pub(crate) fn from_config(config: &Config) -> Settings {
        let mut problems = Vec::new();
        let bin = config_value(config, "CODEX_BIN")
            .unwrap_or("codex")
            .to_string();
        let sandbox = config_value(config, "CODEX_SANDBOX_MODE")
            .unwrap_or("read-only")
            .to_string();
        if !SANDBOX_MODES.contains(&sandbox.as_str()) {
            problems.push(format!(
                "CODEX_SANDBOX_MODE={sandbox:?} is not one of {}",
                SANDBOX_MODES.join(", ")
            ));
        }
        let approval = config_value(config, "CODEX_APPROVAL_POLICY")
            .unwrap_or("never")
            .to_string();
        // Codex validates the policy itself; this only keeps the value a
        // plain word, since it is spliced into a TOML override.
        if approval.is_empty() || !approval.chars().all(|c| c.is_ascii_lowercase() || c == '-') {
            problems.push(format!(
                "CODEX_APPROVAL_POLICY={approval:?} is not a policy name such as never or on-request"
            ));
        }
        let skip_git_check = match config_value(config, "CODEX_SKIP_GIT_CHECK")
            .map(str::to_ascii_lowercase)
            .as_deref()
        {
            None | Some("true" | "1" | "yes") => true,
            Some("false" | "0" | "no") => false,
            Some(other) => {
                problems.push(format!(
                    "CODEX_SKIP_GIT_CHECK={other:?} is not true or false"
                ));
                true
            }
        };
        Settings {
            cli: cli_provider::Cli {
                name: "Codex",
                bin,
                bin_key: "CODEX_BIN",
                install: "npm install -g @openai/codex",
                login: crate::errors::LOGIN_FIX,
                env: &["CODEX_*", "OPENAI_*"],
                pass_env: config_value(config, "CODEX_PASS_ENV")
                    .map(cli_provider::env::names)
                    .unwrap_or_default(),
            },
            sandbox,
            approval,
            skip_git_check,
            home: config_value(config, "CODEX_HOME").map(str::to_string),
            problem: (!problems.is_empty()).then(|| problems.join("; ")),
        }
    }
}

/// Whether codex has credentials to send: a login in its home
/// (`auth.json`) or an API key in its environment. Used only to word a 401.
pub(crate) fn has_login(settings: &Settings) -> bool {
    let env_key = ["OPENAI_API_KEY", "CODEX_API_KEY"]
        .iter()
        .any(|k| std::env::var_os(k).is_some_and(|v| !v.is_empty()));
    let home = settings
        .home
        .clone()
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("CODEX_HOME").map(PathBuf::from))
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".codex")));
    env_key || home.is_some_and(|h| h.join("auth.json").is_file())
}

/// The Codex model for a routed model name: `codex` itself means Codex's
/// configured default; anything else (from `codex:<model>`) is passed on.
/// The host strips `codex:` before the plugin sees the name; a caller that
/// loads the plugin directly may not, so a leftover prefix is dropped too.
pub(crate) fn codex_model(model: &str) -> Option<&str> {
    cli_provider::request::model(model, &["codex"], &["codex"])
}

/// `"value"` as a TOML basic string (JSON's escaping is valid TOML for it).
fn toml_string(value: &str) -> String {
    serde_json::to_string(value).unwrap_or_else(|_| "\"\"".to_string())
}

/// The arguments after the binary name.
pub(crate) fn args(settings: &Settings, request: &Request, images: &[PathBuf]) -> Vec<String> {
    let mut args = vec![
        "exec".to_string(),
        "--json".to_string(),
        format!("--sandbox={}", settings.sandbox),
        "-c".to_string(),
        format!("approval_policy={}", toml_string(&settings.approval)),
    ];
    if settings.skip_git_check {
        args.push("--skip-git-repo-check".into());
    }
    if let Some(model) = codex_model(&request.model) {
        args.push(format!("--model={model}"));
    }
    if let Some(effort) = request
        .options
        .reasoning_effort
        .as_deref()
        .map(str::trim)
        .filter(|e| !e.is_empty() && e.chars().all(|c| c.is_ascii_alphanumeric()))
    {
        args.push("-c".into());
        args.push(format!("model_reasoning_effort={}", toml_string(effort)));
    }
    let images = images
        .iter()
        .map(|path| format!("--image={}", path.display()));
    match continuation(request) {
        Some(thread) => {
            args.push("-c".into());
            args.push(format!("sandbox_mode={}", toml_string(&settings.sandbox)));
            args.push("resume".into());
            args.extend(images);
            args.extend(["--".to_string(), thread.to_string(), "-".to_string()]);
        }
        None => {
            args.extend(images);
            args.extend(["--".to_string(), "-".to_string()]);
        }
    }
    args
}

pub(crate) use cli_provider::continuation;

/// Attachments codex cannot take as `--image` files, named in the prompt.
fn attachment_lines(message: &Message, taken: &[usize]) -> String {
    message
        .attachments
        .iter()
        .enumerate()
        .filter(|(i, _)| !taken.contains(i))
        .map(|(_, a)| {
            let name = a.name.as_deref().unwrap_or("attachment");
            if a.url.starts_with("data:") {
                format!("\n(Attached file {name} could not be passed to Codex.)")
            } else {
                format!("\nAttached file {name}: {}", a.url)
            }
        })
        .collect()
}

/// The prompt for stdin ([`cli_provider::prompt::transcript`]); `taken`
/// lists, per message, the attachments that went in as `--image` files.
pub(crate) fn prompt(request: &Request, taken: &[Vec<usize>]) -> Result<String, PluginError> {
    let taken_of = |i: usize| taken.get(i).map(Vec::as_slice).unwrap_or(&[]);
    cli_provider::prompt::transcript(request, continuation(request).is_some(), |i, m| {
        attachment_lines(m, taken_of(i))
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use poe_plugin_api::{Attachment, Options, Role};

    fn settings(pairs: &[(&str, &str)]) -> Settings {
        let config: Config = pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        Settings::from_config(&config)
    }

    #[test]
    fn defaults() {
        let s = settings(&[]);
        assert_eq!(
            (s.cli.bin.as_str(), s.sandbox.as_str(), s.approval.as_str()),
            ("codex", "read-only", "never")
        );
        assert!(s.skip_git_check);
        assert!(s.problem.is_none());
        assert!(!settings(&[("CODEX_SKIP_GIT_CHECK", "false")]).skip_git_check);
    }

    #[test]
    fn bad_settings_are_reported() {
        let s = settings(&[
            ("CODEX_SANDBOX_MODE", "yolo"),
            ("CODEX_APPROVAL_POLICY", "never\"; x=1"),
        ]);
        let problem = s.problem.unwrap();
        assert!(problem.contains("CODEX_SANDBOX_MODE"), "{problem}");
        assert!(problem.contains("CODEX_APPROVAL_POLICY"), "{problem}");
    }

    #[test]
    fn new_thread_arguments() {
        let request = Request {
            model: "gpt-5-codex".into(),
            options: Options {
                reasoning_effort: Some("high".into()),
                ..Options::default()
            },
            ..Request::default()
        };
        let args = args(&settings(&[]), &request, &[PathBuf::from("/tmp/a.png")]);
        assert_eq!(
            args,
            [
                "exec",
                "--json",
                "--sandbox=read-only",
                "-c",
                "approval_policy=\"never\"",
                "--skip-git-repo-check",
                "--model=gpt-5-codex",
                "-c",
                "model_reasoning_effort=\"high\"",
                "--image=/tmp/a.png",
                "--",
                "-"
            ]
        );
    }

    #[test]
    fn resume_arguments() {
        let request = Request {
            model: "codex".into(),
            continuation: Some("01a2-thread".into()),
            ..Request::default()
        };
        let args = args(
            &settings(&[
                ("CODEX_SKIP_GIT_CHECK", "false"),
                ("CODEX_SANDBOX_MODE", "workspace-write"),
            ]),
            &request,
            &[],
        );
        assert_eq!(
            args,
            [
                "exec",
                "--json",
                "--sandbox=workspace-write",
                "-c",
                "approval_policy=\"never\"",
                "-c",
                "sandbox_mode=\"workspace-write\"",
                "resume",
                "--",
                "01a2-thread",
                "-"
            ]
        );
    }

    #[test]
    fn prompts() {
        let mut request = Request {
            messages: vec![Message::user("fix the bug")],
            ..Request::default()
        };
        assert_eq!(prompt(&request, &[]).unwrap(), "fix the bug");
        request.messages = vec![
            Message {
                role: Role::System,
                content: "Be terse.".into(),
                attachments: vec![],
                tool_call_id: None,
                tool_calls: vec![],
            },
            Message::user("what is 2+2"),
            Message {
                role: Role::Assistant,
                content: "4".into(),
                attachments: vec![],
                tool_call_id: None,
                tool_calls: vec![],
            },
            Message {
                role: Role::User,
                content: "and times 3?".into(),
                attachments: vec![
                    Attachment {
                        url: "https://x/spec.pdf".into(),
                        content_type: None,
                        name: Some("spec.pdf".into()),
                    },
                    Attachment {
                        url: "data:image/png;base64,AAAA".into(),
                        content_type: None,
                        name: None,
                    },
                ],
                tool_call_id: None,
                tool_calls: vec![],
            },
        ];
        assert_eq!(
            prompt(&request, &[vec![], vec![], vec![], vec![1]]).unwrap(),
            "Be terse.\n\nConversation so far:\nUser: what is 2+2\nAssistant: 4\n\n\
             and times 3?\nAttached file spec.pdf: https://x/spec.pdf"
        );
        request.continuation = Some("t".into());
        assert_eq!(
            prompt(&request, &[vec![], vec![], vec![], vec![1]]).unwrap(),
            "and times 3?\nAttached file spec.pdf: https://x/spec.pdf"
        );
        request.messages.clear();
        assert!(prompt(&request, &[]).is_err());
    }

    #[test]
    fn model_names() {
        assert_eq!(codex_model("codex"), None);
        assert_eq!(codex_model("Codex"), None);
        assert_eq!(codex_model("gpt-5-codex"), Some("gpt-5-codex"));
        assert_eq!(codex_model("codex:gpt-5"), Some("gpt-5"));
        assert_eq!(codex_model("codex:"), None);
    }
}
