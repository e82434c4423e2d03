//! codex-cli: the poe-code provider plugin that runs the Codex CLI
//! non-interactively (`codex exec --json`) in the calling session's working
//! directory and turns its JSONL event stream into text, progress and usage.
//!
//! Models reach it as `codex` (Codex's configured default model) or
//! `codex:<model>` (the host strips `codex:`; the rest goes to `--model`).
//! A call's `continuation` is a Codex thread id: the plugin reports the
//! thread of every run (`Event::Continuation`, `Response::continuation`) and
//! resumes it with `codex exec resume` when a later request names it.
//!
//! Configuration (the daemon's environment, then `[plugins.codex-cli]` in
//! config.toml): `CODEX_BIN` (default `codex`), `CODEX_SANDBOX_MODE`
//! (default `read-only`), `CODEX_APPROVAL_POLICY` (default `never`),
//! `CODEX_SKIP_GIT_CHECK` (default true), `CODEX_HOME` (default: inherited
//! from the daemon, as are Codex's credentials), `CODEX_PASS_ENV` (more
//! variables to pass to codex; it gets only the usual ones such as `PATH`
//! and `HOME`, and `CODEX_*` and `OPENAI_*`, never the daemon's Poe key).
//!
//! Like every plugin, this one never retries: a failed run is a typed error
//! and the host decides. Cancellation and timeouts terminate codex's whole
//! process group (the `cli-provider` toolkit runs it), so a cancelled call
//! leaves no process behind.
//!
//! Module map: `command` builds the command line and prompt, `run` drives
//! one run, `events` reads the JSONL stream, `errors` maps failures.

mod command;
mod errors;
mod events;
mod run;

use std::sync::Arc;

use poe_plugin_api::{
    AsyncProvider, Capability, Config, Manifest, PluginError, RateLimit, Request, Response, Sink,
    export_async_provider,
};

use command::Settings;

/// The provider that runs the Codex CLI.
pub struct CodexCli {
    settings: Settings,
}

impl AsyncProvider for CodexCli {
    fn manifest() -> Manifest {
        Manifest {
            id: "codex-cli".into(),
            version: env!("CARGO_PKG_VERSION").into(),
            description: "OpenAI's Codex CLI run non-interactively (codex exec --json) in the \
                          session's working directory; continuation resumes the Codex thread"
                .into(),
            // `codex` uses Codex's configured model; `codex:<model>` picks one.
            models: vec!["codex".into(), "codex:*".into()],
            capabilities: vec![Capability::Text],
            // A run is a whole agent turn; this only stops a runaway loop of
            // calls from flooding the machine with codex processes.
            default_rate_limit: Some(RateLimit {
                requests_per_minute: 60,
            }),
            config_keys: vec![
                "CODEX_BIN".into(),
                "CODEX_SANDBOX_MODE".into(),
                "CODEX_APPROVAL_POLICY".into(),
                "CODEX_SKIP_GIT_CHECK".into(),
                "CODEX_HOME".into(),
                "CODEX_PASS_ENV".into(),
            ],
            plugin_api_version: String::new(),
            // What `codex exec` takes: `-c model_reasoning_effort=…`; the
            // model comes from the route.
            options: vec!["reasoning_effort".into()],
            // `--image` files; codex has no flag for documents.
            attachments: vec![poe_plugin_api::attachment_kind::IMAGE.into()],
        }
    }

    fn open(config: Config) -> Result<Self, PluginError> {
        Ok(CodexCli {
            settings: Settings::from_config(&config),
        })
    }

    async fn call(
        self: Arc<Self>,
        request: Request,
        sink: Arc<Sink>,
    ) -> Result<Response, PluginError> {
        // The run watches the cancel signal and deadline itself, so it can
        // kill codex's process group before returning. Whatever went wrong,
        // a turn that started may have run commands or changed files, so no
        // failure is ever offered for a retry.
        run::run(&self.settings, &request, &sink)
            .await
            .map_err(PluginError::not_retryable)
    }
}

export_async_provider!(CodexCli);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn manifest_declares_codex_routes() {
        let m = CodexCli::manifest();
        assert_eq!(m.id, "codex-cli");
        assert_eq!(m.models, vec!["codex".to_string(), "codex:*".to_string()]);
        assert!(m.config_keys.iter().any(|k| k == "CODEX_BIN"));
    }
}
