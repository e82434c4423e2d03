//! gemini-cli: the poe-code provider plugin that runs Google's Gemini CLI
//! non-interactively (`gemini --output-format=stream-json`, the prompt on
//! stdin) in the calling session's working directory and turns its event
//! stream into text, progress and usage.
//!
//! Models reach it as `gemini-cli` (the Gemini CLI's configured default,
//! `auto` routing) or `gemini:<model>` / `gemini-cli:<model>` (the rest goes
//! to `--model`, e.g. `gemini:gemini-2.5-pro`). Plain `gemini` stays the
//! built-in alias of Poe's Gemini bot, which users and consensus lists
//! already name. A call's continuation is a Gemini CLI session id: the plugin
//! reports the session of every run and resumes it with `--resume`.
//!
//! Configuration (the daemon's environment, then `[plugins.gemini-cli]` in
//! config.toml): `GEMINI_BIN` (default `gemini`), `GEMINI_APPROVAL_MODE`
//! (default `plan`: read-only), `GEMINI_PASS_ENV` (more variables to pass;
//! it gets only the usual ones such as `PATH` and `HOME`, and `GEMINI_*` and
//! `GOOGLE_*`, so `GEMINI_SANDBOX` reaches it, never the daemon's Poe key).
//! Its login is the user's: Login with Google (`gemini` once, which saves
//! `~/.gemini/oauth_creds.json`), or `GEMINI_API_KEY`.
//!
//! The Gemini CLI refuses to run headless in a folder it does not trust, so
//! the plugin passes `--skip-trust` for the session's directory, the one the
//! calling agent already works in. Every failure is final (a turn may have
//! read or changed files); cancellation and timeouts stop the CLI's whole
//! process group.
//!
//! Module map: `command` builds the command line, `events` reads the
//! stream, `errors` maps failures, `run` drives one run.

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

/// The provider that runs the Gemini CLI.
pub struct GeminiCli {
    settings: Settings,
}

impl AsyncProvider for GeminiCli {
    fn manifest() -> Manifest {
        Manifest {
            id: "gemini-cli".into(),
            version: env!("CARGO_PKG_VERSION").into(),
            description: "Google's Gemini CLI run non-interactively (gemini --output-format \
                          stream-json) in the session's working directory; continuation resumes \
                          the Gemini CLI session"
                .into(),
            models: vec![
                "gemini-cli".into(),
                "gemini-cli:*".into(),
                "gemini:*".into(),
            ],
            capabilities: vec![Capability::Text],
            // A run is a whole agent turn; this only stops a runaway loop of
            // calls from flooding the machine with gemini processes.
            default_rate_limit: Some(RateLimit {
                requests_per_minute: 60,
            }),
            config_keys: vec![
                "GEMINI_BIN".into(),
                "GEMINI_APPROVAL_MODE".into(),
                "GEMINI_PASS_ENV".into(),
            ],
            plugin_api_version: String::new(),
            options: vec![],
            // Saved as files the Gemini CLI reads with its tools.
            attachments: vec![attachment_kind::IMAGE.into(), attachment_kind::PDF.into()],
        }
    }

    fn open(config: Config) -> Result<Self, PluginError> {
        Ok(GeminiCli {
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

export_async_provider!(GeminiCli);
