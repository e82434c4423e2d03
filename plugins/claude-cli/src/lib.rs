//! claude-cli: the poe-code provider plugin that runs Claude Code
//! non-interactively (`claude -p --output-format stream-json --verbose`) in
//! the calling session's working directory and turns its event stream into
//! text, progress and usage.
//!
//! Models reach it as `claude` (Claude Code's configured default model) or
//! `claude:<model>` (the host strips `claude:`; the rest goes to `--model`,
//! e.g. `claude:sonnet` or `claude:claude-opus-4-1`). A call's continuation
//! is a Claude Code session id: the plugin reports the session of every run
//! and resumes it with `--resume` when a later request names it.
//!
//! Configuration (the daemon's environment, then `[plugins.claude-cli]` in
//! config.toml): `CLAUDE_BIN` (default `claude`), `CLAUDE_PERMISSION_MODE`
//! (default `plan`: Claude Code may read and search but edits nothing and
//! runs no commands), `CLAUDE_CONFIG_DIR` (default: Claude Code's own,
//! `~/.claude`), `CLAUDE_PASS_ENV` (more variables to pass; it gets only
//! the usual ones such as `PATH` and `HOME`, and its own `ANTHROPIC_*`,
//! `CLAUDE_*` and cloud-provider variables, never the daemon's Poe key).
//! Its login is the user's: a Claude subscription (`claude` then `/login`)
//! or `ANTHROPIC_API_KEY`; the plugin never prints either.
//!
//! Like every plugin, this one never retries: a turn may have read or
//! changed files, so every failure is final and the host does not rerun it.
//! Cancellation and timeouts stop Claude Code's whole process group.
//!
//! Module map: `command` builds the command line and prompt, `events`
//! reads the stream, `errors` maps failures, `run` drives one run.

mod command;
mod errors;
mod events;
mod run;

use std::sync::Arc;

use poe_plugin_api::{
    AsyncProvider, Capability, Config, Manifest, PluginError, RateLimit, Request, Response, Sink,
    attachment_kind, export_async_provider,
};

use command::Settings;

/// The provider that runs Claude Code.
pub struct ClaudeCli {
    settings: Settings,
}

impl AsyncProvider for ClaudeCli {
    fn manifest() -> Manifest {
        Manifest {
            id: "claude-cli".into(),
            version: env!("CARGO_PKG_VERSION").into(),
            description: "Anthropic's Claude Code run non-interactively (claude -p) in the \
                          session's working directory; continuation resumes the Claude Code \
                          session"
                .into(),
            models: vec!["claude".into(), "claude:*".into()],
            capabilities: vec![Capability::Text],
            // A run is a whole agent turn; this only stops a runaway loop of
            // calls from flooding the machine with claude processes.
            default_rate_limit: Some(RateLimit {
                requests_per_minute: 60,
            }),
            config_keys: vec![
                "CLAUDE_BIN".into(),
                "CLAUDE_PERMISSION_MODE".into(),
                "CLAUDE_CONFIG_DIR".into(),
                "CLAUDE_PASS_ENV".into(),
            ],
            plugin_api_version: String::new(),
            options: vec![],
            // Saved as files Claude Code reads with its Read tool.
            attachments: vec![attachment_kind::IMAGE.into(), attachment_kind::PDF.into()],
        }
    }

    fn open(config: Config) -> Result<Self, PluginError> {
        Ok(ClaudeCli {
            settings: Settings::from_config(&config),
        })
    }

    async fn call(
        self: Arc<Self>,
        request: Request,
        sink: Arc<Sink>,
    ) -> Result<Response, PluginError> {
        run::run(&self.settings, &request, &sink)
            .await
            .map_err(PluginError::not_retryable)
    }
}

export_async_provider!(ClaudeCli);
