//! The `gemini` command line for one call, and the settings it comes from.
//!
//! Flags verified against Gemini CLI 0.61.0 (`gemini --help`, and runs
//! against a local stand-in of the Gemini API via `GOOGLE_GEMINI_BASE_URL`):
//! - without `-p` and with stdin not a terminal it runs one headless turn
//!   with stdin as the prompt: no `ARG_MAX` limit, nothing in `ps`, and a
//!   prompt starting with `-` stays a prompt;
//! - `--output-format=stream-json` prints JSONL events;
//! - `--approval-mode=<default|auto_edit|yolo|plan>` (`plan` is read-only);
//! - `--skip-trust`: headless runs refuse an untrusted folder otherwise;
//! - `--model=<name>`, `--resume=<session uuid>`,
//!   `--include-directories=<dir>` (the attachments' directory).
//!
//! Every value goes in as `--flag=value`, so none can be read as a flag.

use std::path::Path;

use poe_plugin_api::{Config, Request};

/// The approval modes `gemini --approval-mode` accepts.
pub(crate) const APPROVAL_MODES: &[&str] = &["plan", "default", "auto_edit", "yolo"];

/// How the Gemini CLI is run; from the `open` config.
#[derive(Debug, Clone)]
pub(crate) struct Settings {
    /// `GEMINI_BIN` (default `gemini`, looked up on `PATH`) and
    /// `GEMINI_PASS_ENV`.
    pub(crate) cli: cli_provider::Cli,
    /// `GEMINI_APPROVAL_MODE`, default `plan` (read-only).
    pub(crate) approval_mode: String,
    /// A configuration mistake; every call fails with it (as `unavailable`,
    /// with the fix) rather than the plugin refusing to load.
    pub(crate) problem: Option<String>,
}

/// How to log the Gemini CLI in, for error messages.
pub(crate) const LOGIN_FIX: &str = "run `gemini` once and choose Login with Google (it saves \
     ~/.gemini/oauth_creds.json), or set GEMINI_API_KEY, as the user that runs poe-coded";

use cli_provider::setting as config_value;

impl Settings {
    /// Reads and checks the configuration.
    pub(crate) fn from_config(config: &Config) -> Settings {
        let approval_mode = config_value(config, "GEMINI_APPROVAL_MODE")
            .unwrap_or("plan")
            .to_string();
        let problem = (!APPROVAL_MODES.contains(&approval_mode.as_str())).then(|| {
            format!(
                "GEMINI_APPROVAL_MODE={approval_mode:?} is not one of {}",
                APPROVAL_MODES.join(", ")
            )
        });
        Settings {
            cli: cli_provider::Cli {
                name: "The Gemini CLI",
                bin: config_value(config, "GEMINI_BIN")
                    .unwrap_or("gemini")
                    .to_string(),
                bin_key: "GEMINI_BIN",
                install: "npm install -g @google/gemini-cli",
                login: LOGIN_FIX,
                env: &["GEMINI_*", "GOOGLE_*", "CLOUD_SHELL"],
                pass_env: config_value(config, "GEMINI_PASS_ENV")
                    .map(cli_provider::env::names)
                    .unwrap_or_default(),
            },
            approval_mode,
            problem,
        }
    }
}

/// The Gemini model for a routed name: `gemini-cli` itself means the CLI's
/// configured default; anything else (from `gemini:<model>` or
/// `gemini-cli:<model>`) is passed on. A leftover prefix (a caller that
/// loads the plugin directly) is dropped too.
pub(crate) fn gemini_model(model: &str) -> Option<&str> {
    cli_provider::request::model(model, &["gemini-cli", "gemini"], &["gemini-cli"])
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
        "--output-format=stream-json".to_string(),
        format!("--approval-mode={}", settings.approval_mode),
        "--skip-trust".to_string(),
    ];
    if let Some(model) = gemini_model(&request.model) {
        args.push(format!("--model={model}"));
    }
    if let Some(session) = continuation(request) {
        args.push(format!("--resume={session}"));
    }
    if let Some(dir) = attachments {
        args.push(format!("--include-directories={}", dir.display()));
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
            (s.cli.bin.as_str(), s.approval_mode.as_str()),
            ("gemini", "plan")
        );
        assert!(s.problem.is_none());
        let s = settings(&[("GEMINI_APPROVAL_MODE", "always")]);
        assert!(s.problem.unwrap().contains("GEMINI_APPROVAL_MODE"));
    }

    #[test]
    fn no_value_can_become_a_flag() {
        let request = Request {
            model: "gemini:--yolo".into(),
            continuation: Some("-x".into()),
            ..Request::default()
        };
        let args = args(&settings(&[]), &request, Some(Path::new("/tmp/a")));
        assert_eq!(
            args,
            [
                "--output-format=stream-json",
                "--approval-mode=plan",
                "--skip-trust",
                "--model=--yolo",
                "--resume=-x",
                "--include-directories=/tmp/a",
            ]
        );
        assert_eq!(gemini_model("gemini-cli"), None);
        assert_eq!(
            gemini_model("Gemini-CLI:gemini-2.5-pro"),
            Some("gemini-2.5-pro")
        );
        assert_eq!(gemini_model("gemini-2.5-flash"), Some("gemini-2.5-flash"));
    }
}
