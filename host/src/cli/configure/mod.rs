//! `poe-code mcp configure [provider]` and `poe-code mcp unconfigure <provider>`:
//! add or remove poe-code in an MCP client's own config file, so nobody has to
//! hand-edit it.
//!
//! The file is the user's. Only our entry (`poe-code`) is touched; every other key,
//! comment and bit of formatting stays. A file that does not parse is refused and
//! left alone. The first write keeps a backup (`<file>.poe-code.bak`), every write
//! is atomic, and an edit that would change nothing writes nothing.

mod atomic;
mod json_file;
mod providers;
mod toml_file;

use std::io::IsTerminal;
use std::path::{Path, PathBuf};

use anyhow::{Context, anyhow, bail};
use clap::builder::PossibleValue;
use serde_json::Value;

use crate::config::Paths;
use crate::config::credentials;
use atomic::ReplaceError;
use providers::{
    DEFAULT_PROVIDER, Format, PROVIDERS, Provider, SERVER_NAME, ServerCommand, Target,
};

/// The environment variable `configure --http` tells clients to read the
/// token from, unless `--token-env` names another.
pub const DEFAULT_TOKEN_ENV: &str = "POE_CODE_TOKEN";

/// `configure --http`: the daemon's HTTP listener instead of a shim.
#[derive(Debug, Clone)]
pub struct HttpTarget {
    /// The MCP URL; default from `[http] listen` in config.toml.
    pub url: Option<String>,
    /// The variable holding the token in the client's environment.
    pub token_env: String,
}

/// The tool timeout written when `--tool-timeout-sec` is not given: long enough
/// for a video generation.
pub const DEFAULT_TOOL_TIMEOUT_SECS: u32 = 600;

/// Why a config file's text could not be edited.
#[derive(Debug, thiserror::Error)]
pub enum EditError {
    /// The file is not valid JSON/TOML.
    #[error("{0}")]
    Parse(String),
    /// It parses, but a key we need holds the wrong kind of value.
    #[error("{0}")]
    Shape(String),
}

/// What an edit did to the file.
#[derive(Debug, PartialEq, Eq)]
enum Outcome {
    /// The file was written; `backup` is where its old bytes went, when this run
    /// made the backup.
    Changed {
        created: bool,
        backup: Option<PathBuf>,
    },
    /// Nothing to do; the file was not touched.
    Unchanged { exists: bool },
}

enum Op<'a> {
    Configure(&'a [(String, Value)]),
    Unconfigure,
}

/// The values clap accepts for `<provider>`, each with its config file as help.
pub fn provider_values() -> Vec<PossibleValue> {
    PROVIDERS
        .iter()
        .map(|p| PossibleValue::new(p.id).help(format!("{} ({})", p.name, p.display_path())))
        .collect()
}

/// `poe-code mcp configure`: adds poe-code to `provider`'s config (asking which
/// provider on a terminal when none is given, or taking the default with `yes`).
pub fn configure(
    paths: &Paths,
    provider: Option<&str>,
    yes: bool,
    tool_timeout_secs: Option<u32>,
    http: Option<HttpTarget>,
) -> anyhow::Result<()> {
    let provider = match provider {
        Some(id) => lookup(id)?,
        None if yes => lookup(DEFAULT_PROVIDER)?,
        None => pick()?,
    };
    let timeout = tool_timeout_secs.unwrap_or(DEFAULT_TOOL_TIMEOUT_SECS);
    let path = provider.config_path(|name| std::env::var_os(name))?;
    if http.is_some() && provider.http_fields.is_none() {
        bail!(
            "{}'s config file cannot name a token without holding it, so poe-code does not \
             write an HTTP entry for it; configure it without --http (it starts the shim)",
            provider.name
        );
    }
    let target = match &http {
        None => Target::Stdio(server_command()?),
        Some(http) => http_target(paths, http)?,
    };
    let fields = provider
        .entry(&target, timeout)
        .ok_or_else(|| anyhow!("{} has no HTTP entry", provider.name))?;
    let shown = path.display();
    match edit_file(provider, &path, &Op::Configure(&fields))? {
        Outcome::Changed { created, backup } => {
            if created {
                eprintln!("Configured poe-code for {}: created {shown}", provider.name);
            } else {
                eprintln!("Configured poe-code for {} in {shown}", provider.name);
            }
            report_backup(backup.as_deref());
            match &target {
                Target::Stdio(server) => {
                    eprintln!("It runs: {} {}", server.command, server.args.join(" "));
                }
                Target::Http { url, token_env } => eprintln!(
                    "It connects to {url} with the token in ${token_env}: set that variable \
                     where {} runs (the file holds only its name). Create a token with \
                     `poe-code token create <name>`; the daemon must be running \
                     (`poe-coded start`).",
                    provider.name
                ),
            }
            eprintln!(
                "Restart {} (or start a new session) to load it.",
                provider.name
            );
        }
        Outcome::Unchanged { .. } => {
            eprintln!(
                "poe-code is already configured for {} in {shown}; nothing changed.",
                provider.name
            );
        }
    }
    if let Some(note) = provider.note {
        eprintln!("{}", note(timeout));
    } else if tool_timeout_secs.is_some() && !provider.writes_timeout() {
        eprintln!(
            "{} has no tool timeout in its config; --tool-timeout-sec was not written.",
            provider.name
        );
    }
    if matches!(credentials::load(paths), Ok(None)) {
        eprintln!("No Poe API key is stored yet: run `poe-code login` before using it.");
    }
    Ok(())
}

/// `poe-code mcp unconfigure`: removes poe-code's entry from `provider`'s config;
/// a missing entry or file is success with nothing changed.
pub fn unconfigure(provider: &str) -> anyhow::Result<()> {
    let provider = lookup(provider)?;
    let path = provider.config_path(|name| std::env::var_os(name))?;
    let shown = path.display();
    match edit_file(provider, &path, &Op::Unconfigure)? {
        Outcome::Changed { backup, .. } => {
            eprintln!("Removed poe-code from {}'s config {shown}", provider.name);
            report_backup(backup.as_deref());
        }
        Outcome::Unchanged { exists: true } => eprintln!(
            "poe-code is not configured for {} in {shown}; nothing changed.",
            provider.name
        ),
        Outcome::Unchanged { exists: false } => {
            eprintln!("{shown} does not exist; nothing to remove.");
        }
    }
    Ok(())
}

/// The URL `--http` points a client at: `--url`, else `[http] listen`.
fn http_target(paths: &Paths, http: &HttpTarget) -> anyhow::Result<Target> {
    let token_env = http.token_env.trim();
    if token_env.is_empty()
        || !token_env
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_')
    {
        bail!("--token-env must be an environment variable name (letters, digits, _)");
    }
    let url = match &http.url {
        Some(url) => url.clone(),
        None => {
            let file = crate::config::file::ConfigFile::load(&paths.config_file())
                .map_err(|e| anyhow!("{e}"))?;
            let listen = file.http.listen.ok_or_else(|| {
                anyhow!(
                    "--http needs the daemon's HTTP address: set `[http] listen = \"127.0.0.1:8765\"` in {} \
                     (then restart it: poe-coded stop; poe-coded start), or pass --url",
                    paths.config_file().display()
                )
            })?;
            format!("http://{listen}/mcp")
        }
    };
    if !(url.starts_with("http://") || url.starts_with("https://")) {
        bail!("--url must be an http:// or https:// URL, not {url:?}");
    }
    Ok(Target::Http {
        url,
        token_env: token_env.to_string(),
    })
}

fn report_backup(backup: Option<&Path>) {
    if let Some(backup) = backup {
        eprintln!("The file as it was before is saved in {}", backup.display());
    }
}

fn lookup(id: &str) -> anyhow::Result<&'static Provider> {
    providers::find(id).ok_or_else(|| {
        anyhow!(
            "unknown provider {id:?}; choose one of: {}",
            providers::id_list()
        )
    })
}

/// Asks which provider on the terminal.
fn pick() -> anyhow::Result<&'static Provider> {
    if !(std::io::stdin().is_terminal() && std::io::stderr().is_terminal()) {
        bail!(
            "no provider given and no terminal to ask on. Run `poe-code mcp configure <provider>` \
             with one of: {}; or add --yes for {DEFAULT_PROVIDER}",
            providers::id_list()
        );
    }
    let items: Vec<String> = PROVIDERS
        .iter()
        .map(|p| {
            let path = p
                .config_path(|name| std::env::var_os(name))
                .map_or_else(|_| p.display_path(), |path| path.display().to_string());
            format!("{:<12} {} ({path})", p.id, p.name)
        })
        .collect();
    let default = PROVIDERS
        .iter()
        .position(|p| p.id == DEFAULT_PROVIDER)
        .unwrap_or(0);
    let choice = dialoguer::Select::new()
        .with_prompt("Configure poe-code for which agent? (Enter picks, Esc cancels)")
        .items(&items)
        .default(default)
        .interact_opt()?;
    match choice {
        Some(index) => PROVIDERS
            .get(index)
            .ok_or_else(|| anyhow!("no provider at index {index}")),
        None => bail!("nothing chosen; nothing was changed"),
    }
}

/// This binary by absolute path and the arguments that start the MCP server,
/// taken from the same config `poe-code mcp` prints.
fn server_command() -> anyhow::Result<ServerCommand> {
    let exe = std::env::current_exe().context("cannot find this program's own path")?;
    let exe = exe.canonicalize().unwrap_or(exe);
    if exe.to_str().is_none() {
        bail!(
            "this program's path is not UTF-8 ({}), so no client config can name it",
            exe.display()
        );
    }
    let config = super::client::mcp_config_json()?;
    let server = config
        .get("mcpServers")
        .and_then(|servers| servers.get(SERVER_NAME))
        .ok_or_else(|| anyhow!("the MCP config has no {SERVER_NAME} entry"))?;
    let command = server
        .get("command")
        .and_then(Value::as_str)
        .ok_or_else(|| anyhow!("the MCP config has no command"))?
        .to_owned();
    let args = server
        .get("args")
        .and_then(Value::as_array)
        .map(|args| {
            args.iter()
                .filter_map(|a| a.as_str().map(str::to_owned))
                .collect()
        })
        .unwrap_or_default();
    Ok(ServerCommand { command, args })
}

/// Applies `op` to the file at `path`: read, edit the text, back up once, replace
/// atomically. Retries when the client rewrites the file in the meantime.
fn edit_file(provider: &Provider, path: &Path, op: &Op) -> anyhow::Result<Outcome> {
    const ATTEMPTS: usize = 5;
    let shown = path.display();
    let mut backup = None;
    for _ in 0..ATTEMPTS {
        let original = atomic::read(path).with_context(|| format!("cannot read {shown}"))?;
        let text = match &original {
            Some(bytes) => std::str::from_utf8(bytes)
                .map_err(|e| anyhow!("{shown} is not UTF-8 text ({e}); it was left as it is"))?,
            None => "",
        };
        let edited = match (provider.format, op) {
            (Format::Toml, Op::Configure(fields)) => {
                toml_file::configure(text, provider.servers_key, SERVER_NAME, fields)
            }
            (Format::Toml, Op::Unconfigure) => {
                toml_file::unconfigure(text, provider.servers_key, SERVER_NAME)
            }
            (format, Op::Configure(fields)) => json_file::configure(
                text,
                format == Format::Jsonc,
                provider.servers_key,
                SERVER_NAME,
                fields,
            ),
            (format, Op::Unconfigure) => json_file::unconfigure(
                text,
                format == Format::Jsonc,
                provider.servers_key,
                SERVER_NAME,
            ),
        };
        let edited = edited.map_err(|e| match e {
            EditError::Parse(why) => anyhow!(
                "cannot parse {shown} as {}: {why}\nThe file was left as it is; fix it and run this again.",
                format_name(provider.format)
            ),
            EditError::Shape(why) => {
                anyhow!("cannot edit {shown}: {why}\nThe file was left as it is.")
            }
        })?;
        let Some(new_text) = edited else {
            return Ok(Outcome::Unchanged {
                exists: original.is_some(),
            });
        };
        if let Some(bytes) = &original
            && let Some(written) = atomic::backup_once(path, bytes)
                .with_context(|| format!("cannot back up {shown} (so it was left as it is)"))?
        {
            backup = Some(written);
        }
        match atomic::replace(path, new_text.as_bytes(), original.as_deref()) {
            Ok(()) => {
                return Ok(Outcome::Changed {
                    created: original.is_none(),
                    backup,
                });
            }
            Err(ReplaceError::Changed) => continue,
            Err(ReplaceError::Io(e)) => return Err(anyhow!("cannot write {shown}: {e}")),
        }
    }
    bail!(
        "{shown} kept changing while poe-code edited it (is {} rewriting it?); nothing was written, try again",
        provider.name
    )
}

fn format_name(format: Format) -> &'static str {
    match format {
        Format::Json => "JSON",
        Format::Jsonc => "JSON with comments",
        Format::Toml => "TOML",
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::fs;
    use std::time::{Duration, SystemTime};

    fn server() -> ServerCommand {
        ServerCommand {
            command: "/opt/poe/bin/poe-code".into(),
            args: vec!["mcp".into(), "run".into()],
        }
    }

    fn mtime(path: &Path) -> SystemTime {
        fs::metadata(path).unwrap().modified().unwrap()
    }

    /// Sets the mtime into the past, so a rewrite would be visible even on
    /// filesystems with coarse timestamps.
    fn age(path: &Path) {
        let old = SystemTime::now() - Duration::from_secs(3600);
        fs::File::options()
            .write(true)
            .open(path)
            .unwrap()
            .set_modified(old)
            .unwrap();
    }

    #[test]
    fn configure_edit_cycle_on_disk() {
        let home = tempfile::tempdir().unwrap();
        let path = home.path().join(".claude.json");
        let original = "{\n  \"numStartups\": 3,\n  \"mcpServers\": {\n    \"a\": {\"command\": \"a\"}\n  }\n}";
        fs::write(&path, original).unwrap();
        let claude = providers::find("claude-code").unwrap();
        let fields = claude.entry(&Target::Stdio(server()), 600).unwrap();

        let first = edit_file(claude, &path, &Op::Configure(&fields)).unwrap();
        let backup = atomic::backup_path(&path);
        assert_eq!(
            first,
            Outcome::Changed {
                created: false,
                backup: Some(backup.clone())
            }
        );
        assert_eq!(fs::read_to_string(&backup).unwrap(), original);

        age(&path);
        let before = mtime(&path);
        let again = edit_file(claude, &path, &Op::Configure(&fields)).unwrap();
        assert_eq!(again, Outcome::Unchanged { exists: true });
        assert_eq!(mtime(&path), before, "a no-op leaves the file untouched");

        let removed = edit_file(claude, &path, &Op::Unconfigure).unwrap();
        assert_eq!(
            removed,
            Outcome::Changed {
                created: false,
                backup: None
            }
        );
        assert_eq!(fs::read_to_string(&path).unwrap(), original);
        assert_eq!(
            edit_file(claude, &path, &Op::Unconfigure).unwrap(),
            Outcome::Unchanged { exists: true }
        );
        // The backup still holds the very first version.
        assert_eq!(fs::read_to_string(&backup).unwrap(), original);
    }

    #[test]
    fn missing_files_are_created_or_left_missing() {
        let home = tempfile::tempdir().unwrap();
        let codex = providers::find("codex").unwrap();
        let path = home.path().join(".codex/config.toml");
        assert_eq!(
            edit_file(codex, &path, &Op::Unconfigure).unwrap(),
            Outcome::Unchanged { exists: false }
        );
        assert!(!path.exists());
        let fields = codex.entry(&Target::Stdio(server()), 120).unwrap();
        assert_eq!(
            edit_file(codex, &path, &Op::Configure(&fields)).unwrap(),
            Outcome::Changed {
                created: true,
                backup: None
            }
        );
        assert_eq!(
            fs::read_to_string(&path).unwrap(),
            "[mcp_servers.poe-code]\ncommand = \"/opt/poe/bin/poe-code\"\nargs = [\"mcp\", \"run\"]\ntool_timeout_sec = 120\ndefault_tools_approval_mode = \"approve\"\n"
        );
        assert!(!atomic::backup_path(&path).exists());
    }

    #[test]
    fn unparsable_files_are_refused_and_left_alone() {
        let home = tempfile::tempdir().unwrap();
        let path = home.path().join("settings.json");
        let broken = "{\n  \"theme\": \"x\",,\n}";
        fs::write(&path, broken).unwrap();
        let gemini = providers::find("gemini").unwrap();
        let fields = gemini.entry(&Target::Stdio(server()), 600).unwrap();
        let err = edit_file(gemini, &path, &Op::Configure(&fields))
            .unwrap_err()
            .to_string();
        assert!(err.contains(&path.display().to_string()), "{err}");
        assert!(err.contains("line 2, column 16"), "{err}");
        assert!(err.contains("left as it is"), "{err}");
        let err = edit_file(gemini, &path, &Op::Unconfigure).unwrap_err();
        assert!(err.to_string().contains("cannot parse"), "{err}");
        assert_eq!(fs::read_to_string(&path).unwrap(), broken);
        assert!(!atomic::backup_path(&path).exists());
        assert_eq!(fs::read_dir(home.path()).unwrap().count(), 1);

        fs::write(&path, b"{\"a\": \"\xff\"}").unwrap();
        let err = edit_file(gemini, &path, &Op::Unconfigure).unwrap_err();
        assert!(err.to_string().contains("not UTF-8"), "{err}");
    }

    #[test]
    fn every_provider_round_trips_a_missing_file() {
        let http = Target::Http {
            url: "http://127.0.0.1:8765/mcp".into(),
            token_env: "POE_CODE_TOKEN".into(),
        };
        let targets = PROVIDERS.iter().flat_map(|p| {
            let stdio = (p, p.entry(&Target::Stdio(server()), 600).unwrap());
            std::iter::once(stdio).chain(p.entry(&http, 600).map(|fields| (p, fields)))
        });
        for (provider, fields) in targets {
            let home = tempfile::tempdir().unwrap();
            let path = home.path().join("sub/config");
            let first = edit_file(provider, &path, &Op::Configure(&fields)).unwrap();
            assert!(matches!(first, Outcome::Changed { created: true, .. }));
            assert_eq!(
                edit_file(provider, &path, &Op::Configure(&fields)).unwrap(),
                Outcome::Unchanged { exists: true },
                "{}",
                provider.id
            );
            assert!(matches!(
                edit_file(provider, &path, &Op::Unconfigure).unwrap(),
                Outcome::Changed { .. }
            ));
        }
    }

    #[test]
    fn switching_transport_swaps_keys_and_keeps_the_users() {
        let http = Target::Http {
            url: "http://127.0.0.1:8765/mcp".into(),
            token_env: "POE_CODE_TOKEN".into(),
        };
        let home = tempfile::tempdir().unwrap();
        let claude = providers::find("claude-code").unwrap();
        let path = home.path().join(".claude.json");
        fs::write(
            &path,
            "{\"mcpServers\": {\"poe-code\": {\"type\": \"stdio\", \"command\": \"x\", \"args\": [], \"env\": {\"A\": \"1\"}}}}",
        )
        .unwrap();
        let to_http = claude.entry(&http, 600).unwrap();
        edit_file(claude, &path, &Op::Configure(&to_http)).unwrap();
        let entry: Value = serde_json::from_str(&fs::read_to_string(&path).unwrap()).unwrap();
        let entry = &entry["mcpServers"]["poe-code"];
        assert_eq!(entry["type"], "http");
        assert_eq!(entry["url"], "http://127.0.0.1:8765/mcp");
        assert_eq!(
            entry["headers"]["Authorization"],
            "Bearer ${POE_CODE_TOKEN}"
        );
        assert!(
            entry.get("command").is_none() && entry.get("args").is_none(),
            "{entry}"
        );
        assert_eq!(entry["env"]["A"], "1", "the user's keys stay");
        let back = claude.entry(&Target::Stdio(server()), 600).unwrap();
        edit_file(claude, &path, &Op::Configure(&back)).unwrap();
        let entry: Value = serde_json::from_str(&fs::read_to_string(&path).unwrap()).unwrap();
        let entry = &entry["mcpServers"]["poe-code"];
        assert_eq!(entry["command"], "/opt/poe/bin/poe-code");
        assert!(
            entry.get("url").is_none() && entry.get("headers").is_none(),
            "{entry}"
        );

        let codex = providers::find("codex").unwrap();
        let path = home.path().join("config.toml");
        let stdio = codex.entry(&Target::Stdio(server()), 600).unwrap();
        edit_file(codex, &path, &Op::Configure(&stdio)).unwrap();
        let to_http = codex.entry(&http, 600).unwrap();
        edit_file(codex, &path, &Op::Configure(&to_http)).unwrap();
        let text = fs::read_to_string(&path).unwrap();
        assert_eq!(
            text,
            "[mcp_servers.poe-code]\ntool_timeout_sec = 600\ndefault_tools_approval_mode = \"approve\"\nurl = \"http://127.0.0.1:8765/mcp\"\nbearer_token_env_var = \"POE_CODE_TOKEN\"\n"
        );
        assert!(!text.contains("secret"));
    }

    #[test]
    fn provider_values_list_every_provider() {
        let names: Vec<_> = provider_values()
            .iter()
            .map(|v| v.get_name().to_owned())
            .collect();
        assert_eq!(
            names,
            [
                "claude-code",
                "codex",
                "gemini",
                "claude-desktop",
                "opencode",
                "kimi",
                "kimi-code",
                "cursor"
            ]
        );
    }
}
