//! cli-provider: what a poe-code provider plugin that runs an agent CLI
//! (Codex, Claude Code, Gemini CLI, the next one) needs, so each plugin
//! only says which arguments to pass and what the CLI's events mean.
//!
//! - [`run::run`] spawns the CLI in its own process group, with a clean
//!   environment ([`env`]), the prompt on stdin, and hands over each JSON
//!   event it prints ([`lines`] caps a line's length); cancellation and the
//!   call's deadline stop the whole group ([`process`]), so no process
//!   outlives the call;
//! - [`attachments`] saves inline files where the CLI can read them;
//! - [`process::StderrTail`] keeps the last lines of stderr for messages;
//! - [`errors`] gives a missing binary, a missing login and a rejected or
//!   expired login each its own actionable `unavailable` error.
//!
//! Arguments: pass anything a tool call supplies as `--flag=value` or after
//! `--`, and the prompt on stdin, so no argument can be read as a flag.

pub mod attachments;
pub mod env;
pub mod errors;
pub mod lines;
pub mod process;
pub mod prompt;
pub mod request;
pub mod run;

pub use request::{continuation, setting};
pub use run::{Exit, Invocation, note_continuation, parse_event, run, working_dir};

/// One CLI, as its plugin is configured to run it.
#[derive(Debug, Clone)]
pub struct Cli {
    /// How messages name it: "Codex", "Claude Code".
    pub name: &'static str,
    /// The executable (a path, or a name looked up on `PATH`).
    pub bin: String,
    /// The setting that names the executable: `CODEX_BIN`.
    pub bin_key: &'static str,
    /// The command that installs it: `npm install -g @openai/codex`.
    pub install: &'static str,
    /// How to log it in, for error messages.
    pub login: &'static str,
    /// The variables it reads, passed from the daemon's environment on top
    /// of [`env::BASE`] (`*` ends a prefix): `["ANTHROPIC_*", "CLAUDE_*"]`.
    pub env: &'static [&'static str],
    /// More names the user asked to pass (a `*_PASS_ENV` setting).
    pub pass_env: Vec<String>,
}
