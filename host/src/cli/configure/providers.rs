//! The MCP clients `poe-code mcp configure` knows, as data: where each keeps its
//! config, in which format, under which key, and what our entry looks like.
//!
//! Adding a client is one more [`Provider`] in [`PROVIDERS`]; nothing else needs to
//! change. Only clients whose file format was checked against their own docs or
//! binaries are listed.

use std::ffi::OsString;
use std::path::PathBuf;

use serde_json::Value;

/// The name of our entry in every client's server table.
pub const SERVER_NAME: &str = "poe-code";

/// The provider `--yes` picks.
pub const DEFAULT_PROVIDER: &str = "claude-code";

/// How a client's config file is written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// Strict JSON.
    Json,
    /// JSON that may contain `//` and `/* */` comments (read with strip-json-comments).
    Jsonc,
    /// TOML.
    Toml,
}

/// One value in our entry, filled in when configuring.
#[derive(Debug, Clone, Copy)]
pub enum Field {
    /// A fixed string.
    Const(&'static str),
    /// A fixed boolean.
    ConstBool(bool),
    /// The absolute path of this binary.
    Command,
    /// The arguments that start the MCP server (`mcp run`).
    Args,
    /// The binary and its arguments in one array (opencode's `command`).
    CommandLine,
    /// The tool-call timeout in seconds.
    TimeoutSecs,
    /// The tool-call timeout in milliseconds.
    TimeoutMillis,
    /// The daemon's MCP URL (`http://127.0.0.1:<port>/mcp`).
    Url,
    /// The name of the environment variable holding the HTTP token.
    TokenEnv,
    /// `{"Authorization": "Bearer <reference>"}`, the reference to the token's
    /// variable spelled the client's way (`${VAR}`, `{env:VAR}`): a header the
    /// client fills in from its environment, so the token never sits in the file.
    BearerHeaderFromEnv(fn(&str) -> String),
    /// A key of the other transport's entry, removed when switching.
    Remove,
}

/// An MCP client whose config file we can edit.
#[derive(Debug)]
pub struct Provider {
    /// What users type: `poe-code mcp configure <id>`.
    pub id: &'static str,
    /// The product name, for messages.
    pub name: &'static str,
    /// The config file, relative to `HOME`.
    pub home_path: &'static str,
    /// An environment variable naming the client's config directory, and the file's
    /// name inside it. When set, the client reads that file instead of `home_path`,
    /// so we must write there too.
    pub dir_env: Option<(&'static str, &'static str)>,
    /// The file's format.
    pub format: Format,
    /// Keys from the top of the file down to the table of servers.
    pub servers_key: &'static [&'static str],
    /// Our entry's fields, in the order they are written. Keys the user added to our
    /// entry (say `env`) are kept; only these are set.
    pub fields: &'static [(&'static str, Field)],
    /// The entry for the daemon's HTTP listener (`configure --http`), when
    /// the client can reach an HTTP server with a token from its environment.
    pub http_fields: Option<&'static [(&'static str, Field)]>,
    /// Said after a successful configure, when there is something the file cannot do.
    pub note: Option<fn(u32) -> String>,
}

/// Every client we can configure; the first is shown first in the picker.
pub static PROVIDERS: &[Provider] = &[
    // Claude Code keeps user-scope servers in `mcpServers` of ~/.claude.json
    // (`$CLAUDE_CONFIG_DIR/.claude.json` when set); `claude mcp add -s user` writes
    // `type`, `command`, `args`. Its tool timeout is an environment variable only.
    Provider {
        id: "claude-code",
        name: "Claude Code",
        home_path: ".claude.json",
        dir_env: Some(("CLAUDE_CONFIG_DIR", ".claude.json")),
        format: Format::Json,
        servers_key: &["mcpServers"],
        fields: &[
            ("type", Field::Const("stdio")),
            ("command", Field::Command),
            ("args", Field::Args),
            ("url", Field::Remove),
            ("headers", Field::Remove),
        ],
        // `claude mcp add --transport http -s user` writes `type`, `url` and
        // `headers`; Claude Code expands `${VAR}` in both.
        http_fields: Some(&[
            ("type", Field::Const("http")),
            ("url", Field::Url),
            ("headers", Field::BearerHeaderFromEnv(dollar_braces)),
            ("command", Field::Remove),
            ("args", Field::Remove),
        ]),
        note: Some(claude_timeout_note),
    },
    // Codex reads `[mcp_servers.<name>]` from ~/.codex/config.toml
    // (`$CODEX_HOME/config.toml` when set); its default `tool_timeout_sec` is far
    // shorter than a video generation. Codex runs an MCP tool without asking only
    // when it claims to be read-only, and `codex exec` (approval policy `never`)
    // refuses the others outright; `get_bot_response` cannot claim that (it
    // reaches the codex-cli provider, which writes where its own sandbox allows),
    // so the entry approves our tools: configuring poe-code is the consent.
    Provider {
        id: "codex",
        name: "Codex",
        home_path: ".codex/config.toml",
        dir_env: Some(("CODEX_HOME", "config.toml")),
        format: Format::Toml,
        servers_key: &["mcp_servers"],
        fields: &[
            ("command", Field::Command),
            ("args", Field::Args),
            ("tool_timeout_sec", Field::TimeoutSecs),
            ("default_tools_approval_mode", Field::Const("approve")),
            ("url", Field::Remove),
            ("bearer_token_env_var", Field::Remove),
        ],
        // A streamable HTTP server is `url`, with the token read from the
        // variable `bearer_token_env_var` names (an inline token is refused).
        http_fields: Some(&[
            ("url", Field::Url),
            ("bearer_token_env_var", Field::TokenEnv),
            ("tool_timeout_sec", Field::TimeoutSecs),
            ("default_tools_approval_mode", Field::Const("approve")),
            ("command", Field::Remove),
            ("args", Field::Remove),
        ]),
        note: None,
    },
    // Gemini CLI reads `mcpServers` from ~/.gemini/settings.json, which may hold
    // comments; `timeout` is per server, in milliseconds.
    Provider {
        id: "gemini",
        name: "Gemini CLI",
        home_path: ".gemini/settings.json",
        dir_env: None,
        format: Format::Jsonc,
        servers_key: &["mcpServers"],
        fields: &[
            ("command", Field::Command),
            ("args", Field::Args),
            ("timeout", Field::TimeoutMillis),
        ],
        http_fields: None,
        note: None,
    },
    // Claude Desktop reads `mcpServers` of claude_desktop_config.json in its
    // app data dir (Electron's userData: ~/Library/Application Support/Claude
    // on macOS, $XDG_CONFIG_HOME/Claude, else ~/.config/Claude, on Linux).
    // The file takes only servers it starts; remote ones are added in its
    // Settings, so there is no --http form.
    Provider {
        id: "claude-desktop",
        name: "Claude Desktop",
        home_path: if cfg!(target_os = "macos") {
            "Library/Application Support/Claude/claude_desktop_config.json"
        } else {
            ".config/Claude/claude_desktop_config.json"
        },
        dir_env: if cfg!(target_os = "macos") {
            None
        } else {
            Some(("XDG_CONFIG_HOME", "Claude/claude_desktop_config.json"))
        },
        format: Format::Json,
        servers_key: &["mcpServers"],
        fields: &[("command", Field::Command), ("args", Field::Args)],
        http_fields: None,
        note: None,
    },
    // opencode reads ~/.config/opencode/opencode.json ($XDG_CONFIG_HOME), JSON
    // with comments. The flat `mcp.<name>` form is what its V1 releases read
    // and V2 still accepts (V2's own is `mcp.servers.<name>`). A local server
    // is one `command` array; a remote one is `url` with `headers`, where
    // `{env:VAR}` is replaced from the environment; `oauth: false` keeps it
    // from trying OAuth discovery on a token-protected server.
    Provider {
        id: "opencode",
        name: "opencode",
        home_path: ".config/opencode/opencode.json",
        dir_env: Some(("XDG_CONFIG_HOME", "opencode/opencode.json")),
        format: Format::Jsonc,
        servers_key: &["mcp"],
        fields: &[
            ("type", Field::Const("local")),
            ("command", Field::CommandLine),
            ("enabled", Field::ConstBool(true)),
            ("url", Field::Remove),
            ("headers", Field::Remove),
            ("oauth", Field::Remove),
        ],
        http_fields: Some(&[
            ("type", Field::Const("remote")),
            ("url", Field::Url),
            ("headers", Field::BearerHeaderFromEnv(env_braces)),
            ("oauth", Field::ConstBool(false)),
            ("enabled", Field::ConstBool(true)),
            ("command", Field::Remove),
        ]),
        note: None,
    },
    // Kimi CLI (Moonshot's, Python) reads `mcpServers` of ~/.kimi/mcp.json
    // ($KIMI_SHARE_DIR). Its HTTP headers are taken literally (no variables),
    // so a token would have to sit in the file: no --http form.
    Provider {
        id: "kimi",
        name: "Kimi CLI",
        home_path: ".kimi/mcp.json",
        dir_env: Some(("KIMI_SHARE_DIR", "mcp.json")),
        format: Format::Json,
        servers_key: &["mcpServers"],
        fields: &[("command", Field::Command), ("args", Field::Args)],
        http_fields: None,
        note: None,
    },
    // Kimi Code (the Kimi CLI's successor) reads `mcpServers` of
    // ~/.kimi-code/mcp.json ($KIMI_CODE_HOME); an entry with `url` is an HTTP
    // server, and `bearerTokenEnvVar` names the variable holding its token.
    Provider {
        id: "kimi-code",
        name: "Kimi Code",
        home_path: ".kimi-code/mcp.json",
        dir_env: Some(("KIMI_CODE_HOME", "mcp.json")),
        format: Format::Json,
        servers_key: &["mcpServers"],
        fields: &[
            ("command", Field::Command),
            ("args", Field::Args),
            ("url", Field::Remove),
            ("bearerTokenEnvVar", Field::Remove),
        ],
        http_fields: Some(&[
            ("url", Field::Url),
            ("bearerTokenEnvVar", Field::TokenEnv),
            ("command", Field::Remove),
            ("args", Field::Remove),
        ]),
        note: None,
    },
    // Cursor's global servers live in `mcpServers` of ~/.cursor/mcp.json.
    Provider {
        id: "cursor",
        name: "Cursor",
        home_path: ".cursor/mcp.json",
        dir_env: None,
        format: Format::Json,
        servers_key: &["mcpServers"],
        fields: &[("command", Field::Command), ("args", Field::Args)],
        http_fields: None,
        note: None,
    },
];

/// `${VAR}` (Claude Code).
fn dollar_braces(var: &str) -> String {
    format!("${{{var}}}")
}

/// `{env:VAR}` (opencode).
fn env_braces(var: &str) -> String {
    format!("{{env:{var}}}")
}

fn claude_timeout_note(timeout_secs: u32) -> String {
    let millis = u64::from(timeout_secs) * 1000;
    format!(
        "Claude Code takes its tool timeout from the environment, not from this file: \
         for long generations (video) start it with MCP_TOOL_TIMEOUT={millis}."
    )
}

/// The provider called `id`.
pub fn find(id: &str) -> Option<&'static Provider> {
    PROVIDERS.iter().find(|p| p.id == id)
}

/// Every provider id, comma-separated, for messages.
pub fn id_list() -> String {
    PROVIDERS
        .iter()
        .map(|p| p.id)
        .collect::<Vec<_>>()
        .join(", ")
}

/// The command line a client runs to start our MCP server.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServerCommand {
    /// Absolute path of the `poe-code` binary.
    pub command: String,
    /// Its arguments.
    pub args: Vec<String>,
}

/// How the client reaches poe-code.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Target {
    /// It starts the shim (`poe-code mcp run`).
    Stdio(ServerCommand),
    /// It connects to the daemon's HTTP listener with a token from its
    /// environment variable `token_env`.
    Http { url: String, token_env: String },
}

impl Provider {
    /// The config file this provider reads, given a way to look up environment
    /// variables (so tests need not touch the process environment).
    pub fn config_path(&self, env: impl Fn(&str) -> Option<OsString>) -> anyhow::Result<PathBuf> {
        let set = |name: &str| env(name).filter(|value| !value.is_empty());
        if let Some((var, file)) = self.dir_env
            && let Some(dir) = set(var)
        {
            return Ok(PathBuf::from(dir).join(file));
        }
        let home = set("HOME").ok_or_else(|| {
            anyhow::anyhow!(
                "HOME is not set, so {}'s config file (~/{}) cannot be found",
                self.name,
                self.home_path
            )
        })?;
        Ok(PathBuf::from(home).join(self.home_path))
    }

    /// The config file as users know it (`~/.claude.json`), for help text.
    pub fn display_path(&self) -> String {
        format!("~/{}", self.home_path)
    }

    /// Our entry's fields with their values filled in, in order (`null`:
    /// remove the key); `None` when the client cannot take `target`.
    pub fn entry(&self, target: &Target, timeout_secs: u32) -> Option<Vec<(String, Value)>> {
        let fields = match target {
            Target::Stdio(_) => self.fields,
            Target::Http { .. } => self.http_fields?,
        };
        let (server, url, token_env) = match target {
            Target::Stdio(server) => (Some(server), None, None),
            Target::Http { url, token_env } => (None, Some(url), Some(token_env)),
        };
        let fields = fields
            .iter()
            .map(|(key, field)| {
                let value = match field {
                    Field::Const(text) => Value::from(*text),
                    Field::ConstBool(b) => Value::from(*b),
                    Field::Command => Value::from(server.map(|s| s.command.clone())),
                    Field::CommandLine => Value::from(server.map(|s| {
                        std::iter::once(s.command.clone())
                            .chain(s.args.iter().cloned())
                            .collect::<Vec<_>>()
                    })),
                    Field::Args => Value::from(server.map(|s| s.args.clone())),
                    Field::TimeoutSecs => Value::from(timeout_secs),
                    Field::TimeoutMillis => Value::from(u64::from(timeout_secs) * 1000),
                    Field::Url => Value::from(url.cloned()),
                    Field::TokenEnv => Value::from(token_env.cloned()),
                    Field::BearerHeaderFromEnv(reference) => serde_json::json!({
                        "Authorization": format!("Bearer {}", reference(token_env.map_or("", |v| v.as_str())))
                    }),
                    Field::Remove => Value::Null,
                };
                ((*key).to_string(), value)
            })
            .collect();
        Some(fields)
    }

    /// Whether this provider's config carries a tool timeout we write.
    pub fn writes_timeout(&self) -> bool {
        self.fields
            .iter()
            .any(|(_, f)| matches!(f, Field::TimeoutSecs | Field::TimeoutMillis))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env_of(vars: &[(&str, &str)]) -> impl Fn(&str) -> Option<OsString> {
        let vars: Vec<(String, String)> = vars
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        move |name| {
            vars.iter()
                .find(|(k, _)| k == name)
                .map(|(_, v)| OsString::from(v))
        }
    }

    #[test]
    fn ids_are_unique_and_default_exists() {
        for (i, p) in PROVIDERS.iter().enumerate() {
            assert!(PROVIDERS[i + 1..].iter().all(|q| q.id != p.id), "{}", p.id);
        }
        assert!(find(DEFAULT_PROVIDER).is_some());
        assert!(find("nope").is_none());
    }

    #[test]
    fn new_clients_live_where_their_docs_say() {
        let env = env_of(&[("HOME", "/h")]);
        let path = |id: &str| find(id).unwrap().config_path(&env).unwrap();
        assert_eq!(
            path("opencode"),
            PathBuf::from("/h/.config/opencode/opencode.json")
        );
        assert_eq!(path("kimi"), PathBuf::from("/h/.kimi/mcp.json"));
        assert_eq!(path("kimi-code"), PathBuf::from("/h/.kimi-code/mcp.json"));
        if cfg!(target_os = "linux") {
            assert_eq!(
                path("claude-desktop"),
                PathBuf::from("/h/.config/Claude/claude_desktop_config.json")
            );
            let env = env_of(&[("HOME", "/h"), ("XDG_CONFIG_HOME", "/x")]);
            assert_eq!(
                find("claude-desktop").unwrap().config_path(&env).unwrap(),
                PathBuf::from("/x/Claude/claude_desktop_config.json")
            );
        }
    }

    #[test]
    fn paths_follow_home_and_the_clients_own_variables() {
        let claude = find("claude-code").unwrap();
        let codex = find("codex").unwrap();
        let env = env_of(&[("HOME", "/h")]);
        assert_eq!(
            claude.config_path(&env).unwrap(),
            PathBuf::from("/h/.claude.json")
        );
        assert_eq!(
            codex.config_path(&env).unwrap(),
            PathBuf::from("/h/.codex/config.toml")
        );
        let env = env_of(&[
            ("HOME", "/h"),
            ("CODEX_HOME", "/c"),
            ("CLAUDE_CONFIG_DIR", "/cc"),
        ]);
        assert_eq!(
            codex.config_path(&env).unwrap(),
            PathBuf::from("/c/config.toml")
        );
        assert_eq!(
            claude.config_path(&env).unwrap(),
            PathBuf::from("/cc/.claude.json")
        );
        // An empty variable counts as unset.
        let env = env_of(&[("HOME", "/h"), ("CODEX_HOME", "")]);
        assert_eq!(
            codex.config_path(&env).unwrap(),
            PathBuf::from("/h/.codex/config.toml")
        );
        let err = claude.config_path(env_of(&[])).unwrap_err().to_string();
        assert!(err.contains("HOME is not set"), "{err}");
    }

    #[test]
    fn entries_carry_the_timeout_in_each_clients_unit() {
        let server = ServerCommand {
            command: "/bin/poe-code".into(),
            args: vec!["mcp".into(), "run".into()],
        };
        let stdio = Target::Stdio(server);
        let codex = find("codex").unwrap().entry(&stdio, 600).unwrap();
        assert_eq!(codex[2], ("tool_timeout_sec".to_string(), Value::from(600)));
        assert_eq!(
            codex[3],
            (
                "default_tools_approval_mode".to_string(),
                Value::from("approve")
            )
        );
        let gemini = find("gemini").unwrap().entry(&stdio, 30).unwrap();
        assert_eq!(gemini[2], ("timeout".to_string(), Value::from(30_000)));
        let claude = find("claude-code").unwrap().entry(&stdio, 600).unwrap();
        assert_eq!(
            claude,
            vec![
                ("type".to_string(), Value::from("stdio")),
                ("command".to_string(), Value::from("/bin/poe-code")),
                ("args".to_string(), serde_json::json!(["mcp", "run"])),
                ("url".to_string(), Value::Null),
                ("headers".to_string(), Value::Null),
            ]
        );
        let http = Target::Http {
            url: "http://127.0.0.1:8765/mcp".into(),
            token_env: "POE_CODE_TOKEN".into(),
        };
        let claude = find("claude-code").unwrap().entry(&http, 600).unwrap();
        assert_eq!(claude[0].1, "http");
        assert_eq!(claude[1].1, "http://127.0.0.1:8765/mcp");
        assert_eq!(
            claude[2].1,
            serde_json::json!({"Authorization": "Bearer ${POE_CODE_TOKEN}"})
        );
        assert!(claude[3].1.is_null() && claude[4].1.is_null());
        let codex = find("codex").unwrap().entry(&http, 600).unwrap();
        assert_eq!(
            codex[1],
            (
                "bearer_token_env_var".to_string(),
                Value::from("POE_CODE_TOKEN")
            )
        );
        assert!(find("cursor").unwrap().entry(&http, 600).is_none());

        // opencode: one command array locally, `{env:VAR}` remotely.
        let opencode = find("opencode").unwrap();
        let local = opencode.entry(&stdio, 600).unwrap();
        assert_eq!(local[0].1, "local");
        assert_eq!(
            local[1].1,
            serde_json::json!(["/bin/poe-code", "mcp", "run"])
        );
        assert_eq!(local[2].1, true);
        let remote = opencode.entry(&http, 600).unwrap();
        assert_eq!(remote[0].1, "remote");
        assert_eq!(
            remote[2].1,
            serde_json::json!({"Authorization": "Bearer {env:POE_CODE_TOKEN}"})
        );
        assert_eq!(remote[3], ("oauth".to_string(), Value::from(false)));
        // Kimi Code names the variable; Kimi CLI and Claude Desktop cannot.
        let kimi_code = find("kimi-code").unwrap().entry(&http, 600).unwrap();
        assert_eq!(
            kimi_code[1],
            (
                "bearerTokenEnvVar".to_string(),
                Value::from("POE_CODE_TOKEN")
            )
        );
        assert!(find("kimi").unwrap().entry(&http, 600).is_none());
        assert!(find("claude-desktop").unwrap().entry(&http, 600).is_none());
        assert!(!find("claude-code").unwrap().writes_timeout());
        assert!(find("codex").unwrap().writes_timeout());
    }
}
