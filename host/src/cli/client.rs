//! `poe-code`: log in and out, print the MCP client config, and run the shim.

use std::io::{BufRead, IsTerminal};
use std::process::ExitCode;

use clap::{Parser, Subcommand};

use crate::config::Paths;
use crate::config::credentials::{self, fingerprint};

/// Reach Poe bots and CLI-backed models from any MCP client, through one shared daemon.
#[derive(Debug, Parser)]
#[command(name = "poe-code", version, about)]
pub struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Store your Poe API key (from https://poe.com/api_key).
    Login {
        /// Read the key from standard input instead of prompting.
        #[arg(long)]
        api_key_stdin: bool,
    },
    /// Forget the stored API key.
    Logout,
    /// MCP server: print the client config, or run the stdio server.
    Mcp {
        #[command(subcommand)]
        command: Option<McpCommand>,
    },
    /// Install provider plugins where the daemon finds them.
    Plugins {
        #[command(subcommand)]
        command: PluginsCommand,
    },
    /// Bearer tokens for the daemon's HTTP listener.
    Token {
        #[command(subcommand)]
        command: TokenCommand,
    },
    /// What the calls cost: your Poe balance, then requests, tokens and Poe
    /// points by day, model, client or session, from the daemon's usage ledger.
    Usage {
        /// The period: a duration back from now (7d, 24h, 2w) or a UTC date.
        #[arg(long, default_value = "7d")]
        since: String,
        /// Group by day, model, client or session.
        #[arg(long, default_value = "day", value_parser = ["day", "model", "client", "session"])]
        by: String,
        /// Print the report as JSON.
        #[arg(long)]
        json: bool,
    },
    /// Ask a bot once and stream its answer to the terminal.
    Query {
        /// Poe bot or model (or any name a plugin serves, e.g. codex).
        bot: String,
        /// The message; several words are joined with spaces.
        #[arg(required = true, num_args = 1..)]
        prompt: Vec<String>,
    },
}

#[derive(Debug, Subcommand)]
enum TokenCommand {
    /// Create a token and print it (the only time it is shown).
    Create {
        /// Who or what uses it ("ci", "alice").
        name: String,
        /// Calls under this token use their own Poe API key (asked for, or
        /// read from standard input), not the daemon's.
        #[arg(long)]
        own_key: bool,
    },
    /// List tokens (names, ids, whether they carry a key; never secrets).
    List,
    /// Revoke a token by name or id; the daemon refuses it at once.
    Revoke { name_or_id: String },
}

#[derive(Debug, Subcommand)]
enum PluginsCommand {
    /// Build plugin crates (or take built libraries), check that each loads,
    /// and copy it into the plugin dir; a running daemon hot-reloads it.
    Install {
        /// Plugin crate directories, or built plugin library files.
        #[arg(required = true, value_name = "CRATE_DIR|LIBRARY")]
        sources: Vec<std::path::PathBuf>,
        /// Cargo profile to build crates with.
        #[arg(long, default_value = "release")]
        profile: String,
        /// Install here instead of the first plugin dir
        /// ($POE_CODE_PLUGIN_DIR's first entry, else ~/.poe-code/plugins).
        #[arg(long, value_name = "DIR")]
        dir: Option<std::path::PathBuf>,
    },
}

#[derive(Debug, Subcommand)]
enum McpCommand {
    /// Run the MCP server on stdin/stdout (what MCP clients start).
    Run,
    /// Add poe-code to an agent's MCP config file (asks which agent on a terminal).
    Configure {
        /// The agent whose config to edit.
        #[arg(value_parser = super::configure::provider_values())]
        provider: Option<String>,
        /// Don't ask: with no provider, configure claude-code.
        #[arg(short, long)]
        yes: bool,
        /// Tool-call timeout written for agents that take one from their config
        /// (codex, gemini) [default: 600].
        #[arg(long, value_name = "N", value_parser = clap::value_parser!(u32).range(1..))]
        tool_timeout_sec: Option<u32>,
        /// Connect to the daemon's HTTP listener ([http] listen) instead of
        /// starting a shim; the token comes from the agent's environment.
        #[arg(long)]
        http: bool,
        /// With --http: the MCP URL [default: http://<[http] listen>/mcp].
        #[arg(long, value_name = "URL", requires = "http")]
        url: Option<String>,
        /// With --http: the environment variable the agent reads the token from.
        #[arg(long, value_name = "VAR", requires = "http", default_value = super::configure::DEFAULT_TOKEN_ENV)]
        token_env: String,
    },
    /// Remove poe-code's entry from an agent's MCP config file (nothing else).
    Unconfigure {
        /// The agent whose config to edit.
        #[arg(value_parser = super::configure::provider_values())]
        provider: String,
    },
}

/// Runs `poe-code` with the process arguments.
pub fn main() -> ExitCode {
    let cli = Cli::parse();
    let paths = match Paths::from_env() {
        Ok(paths) => paths,
        Err(e) => {
            eprintln!("poe-code: {e}");
            return ExitCode::FAILURE;
        }
    };
    let result = match cli.command {
        Command::Login { api_key_stdin } => login(&paths, api_key_stdin),
        Command::Logout => logout(&paths),
        Command::Usage { since, by, json } => super::usage::run(&paths, &since, &by, json),
        Command::Token { command } => token(&paths, command),
        Command::Query { bot, prompt } => return query(paths, bot, prompt.join(" ")),
        Command::Plugins {
            command:
                PluginsCommand::Install {
                    sources,
                    profile,
                    dir,
                },
        } => super::plugins::install(&paths, &sources, &profile, dir),
        Command::Mcp { command: None } => print_mcp_config(),
        Command::Mcp {
            command: Some(McpCommand::Run),
        } => return run_shim(paths),
        Command::Mcp {
            command:
                Some(McpCommand::Configure {
                    provider,
                    yes,
                    tool_timeout_sec,
                    http,
                    url,
                    token_env,
                }),
        } => super::configure::configure(
            &paths,
            provider.as_deref(),
            yes,
            tool_timeout_sec,
            http.then_some(super::configure::HttpTarget { url, token_env }),
        ),
        Command::Mcp {
            command: Some(McpCommand::Unconfigure { provider }),
        } => super::configure::unconfigure(&provider),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("poe-code: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn query(paths: Paths, bot: String, prompt: String) -> ExitCode {
    let runtime = match super::runtime("poe-code") {
        Ok(runtime) => runtime,
        Err(code) => return code,
    };
    match runtime.block_on(super::query::run(paths, bot, prompt)) {
        Ok(code) => ExitCode::from(u8::try_from(code).unwrap_or(1)),
        Err(e) => {
            eprintln!("poe-code: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn run_shim(paths: Paths) -> ExitCode {
    let runtime = match super::runtime("poe-code") {
        Ok(runtime) => runtime,
        Err(code) => return code,
    };
    let code = runtime.block_on(crate::shim::run(paths));
    ExitCode::from(u8::try_from(code).unwrap_or(1))
}

fn login(paths: &Paths, from_stdin: bool) -> anyhow::Result<()> {
    let key = read_key(
        from_stdin,
        "Poe API key (input hidden; get one at https://poe.com/api_key): ",
    )?;
    let key = key.as_str();
    credentials::save(paths, key)?;
    eprintln!(
        "Saved API key {} to {}",
        fingerprint(key),
        paths.credentials().display()
    );
    if std::env::var_os(credentials::API_KEY_ENV).is_some() {
        eprintln!(
            "Note: POE_API_KEY is set in this environment and takes precedence over the saved key."
        );
    }
    Ok(())
}

fn read_key(from_stdin: bool, prompt: &str) -> anyhow::Result<String> {
    let key = if from_stdin || !std::io::stdin().is_terminal() {
        let mut line = String::new();
        std::io::stdin().lock().read_line(&mut line)?;
        line
    } else {
        rpassword::prompt_password(prompt)?
    };
    let key = key.trim();
    if key.is_empty() {
        anyhow::bail!("no API key given; nothing was saved");
    }
    if key.chars().any(char::is_whitespace) {
        anyhow::bail!("an API key has no spaces; nothing was saved");
    }
    Ok(key.to_string())
}

fn token(paths: &Paths, command: TokenCommand) -> anyhow::Result<()> {
    use crate::config::tokens;
    match command {
        TokenCommand::Create { name, own_key } => {
            let key = if own_key {
                Some(read_key(
                    false,
                    "Poe API key for this token (input hidden): ",
                )?)
            } else {
                None
            };
            let has_key = key.is_some();
            let (token, secret) = tokens::create(paths, &name, key)?;
            println!("{secret}");
            eprintln!(
                "Created token '{}' (id {}){}. It is shown only now: store it where your client reads it, e.g. export POE_CODE_TOKEN=… and `poe-code mcp configure <agent> --http`.",
                token.name,
                token.id,
                if has_key {
                    ", with its own Poe API key"
                } else {
                    ""
                }
            );
        }
        TokenCommand::List => {
            let all = tokens::list(paths)?;
            if all.is_empty() {
                eprintln!("No tokens. Create one with: poe-code token create <name>");
            }
            for t in all {
                let created = chrono::DateTime::from_timestamp(t.created as i64, 0)
                    .map(|d| d.format("%Y-%m-%d %H:%M UTC").to_string())
                    .unwrap_or_default();
                let key = match &t.poe_api_key {
                    Some(key) => format!("own Poe key {}", fingerprint(key)),
                    None => "the daemon's Poe key".into(),
                };
                println!("{:<20} id {}  created {created}  {key}", t.name, t.id);
            }
        }
        TokenCommand::Revoke { name_or_id } => {
            if tokens::revoke(paths, &name_or_id)? {
                eprintln!("Revoked '{name_or_id}'; the daemon refuses it from now on.");
            } else {
                anyhow::bail!("no token named or with id '{name_or_id}' (poe-code token list)");
            }
        }
    }
    Ok(())
}

fn logout(paths: &Paths) -> anyhow::Result<()> {
    if credentials::delete(paths)? {
        eprintln!("Removed {}", paths.credentials().display());
    } else {
        eprintln!("No stored API key at {}", paths.credentials().display());
    }
    Ok(())
}

/// The JSON an MCP client needs to start this binary as a server.
pub fn mcp_config_json() -> anyhow::Result<serde_json::Value> {
    let exe = std::env::current_exe()?;
    let exe = exe.canonicalize().unwrap_or(exe);
    Ok(serde_json::json!({
        "mcpServers": {
            "poe-code": {
                "command": exe.display().to_string(),
                "args": ["mcp", "run"]
            }
        }
    }))
}

fn print_mcp_config() -> anyhow::Result<()> {
    println!("{}", serde_json::to_string_pretty(&mcp_config_json()?)?);
    Ok(())
}
