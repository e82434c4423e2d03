//! The real Codex CLI, offline: a throwaway `CODEX_HOME` whose config sends
//! every model request to a local fake Responses API
//! ([`crate::responses::FakeResponses`]) as a custom provider, and
//! `codex exec` runs in it. Used both where Codex is our MCP client and
//! where our codex-cli plugin runs Codex.

use std::path::{Path, PathBuf};

use serde_json::Value;

use crate::external::{clean_command, run_bounded};

/// Writes `<home>/config.toml` pointing Codex at the fake Responses API at
/// `base_url` with `model`; no retries, so a fake's mistake shows at once.
pub fn write_config(home: &Path, base_url: &str, model: &str) {
    std::fs::create_dir_all(home).expect("codex home");
    std::fs::write(
        home.join("config.toml"),
        format!(
            "model = {}\nmodel_provider = \"fake\"\n\n\
             [model_providers.fake]\nname = \"Fake Responses API\"\n\
             base_url = {}\nwire_api = \"responses\"\n\
             request_max_retries = 0\nstream_max_retries = 0\n",
            toml_string(model),
            toml_string(base_url)
        ),
    )
    .expect("write codex config");
}

/// A TOML basic string (JSON's escapes are all valid TOML).
fn toml_string(s: &str) -> String {
    Value::String(s.to_string()).to_string()
}

/// One Codex installation (`CODEX_HOME`) and a project dir to run it in.
pub struct Codex {
    bin: PathBuf,
    home: PathBuf,
    work: PathBuf,
    /// More variables for every run (e.g. the HTTP token an entry names).
    env: Vec<(String, String)>,
}

/// What one `codex exec --json` run left behind.
#[derive(Debug)]
pub struct CodexRun {
    /// The JSONL events it printed.
    pub events: Vec<Value>,
    /// The last agent message (`-o <file>`).
    pub last_message: String,
    /// Its stderr.
    pub stderr: String,
    /// Whether it exited 0.
    pub success: bool,
}

impl CodexRun {
    /// The `mcp_tool_call` items that completed.
    pub fn mcp_tool_calls(&self) -> Vec<&Value> {
        self.events
            .iter()
            .filter(|e| e["type"] == "item.completed" && e["item"]["type"] == "mcp_tool_call")
            .map(|e| &e["item"])
            .collect()
    }
}

impl Codex {
    /// A Codex whose `CODEX_HOME` and project dir are under `root` (keep
    /// `root` out of /tmp: Codex warns about a home there), configured for
    /// the fake at `base_url` with `model`.
    pub fn new(bin: PathBuf, root: &Path, base_url: &str, model: &str) -> Self {
        let home = root.join("codex-home");
        let work = root.join("codex-project");
        write_config(&home, base_url, model);
        std::fs::create_dir_all(&work).expect("codex project");
        Self {
            bin,
            home,
            work,
            env: Vec::new(),
        }
    }

    /// Sets a variable in the environment of every later run.
    pub fn set_env(&mut self, key: &str, value: &str) {
        self.env.push((key.to_string(), value.to_string()));
    }

    /// Runs `codex <args>` (e.g. `mcp list --json`) with this `CODEX_HOME`.
    pub async fn cli(&self, args: &[&str]) -> std::process::Output {
        let mut command = clean_command(&self.bin, &self.work);
        command
            .args(args)
            .env("HOME", self.home.parent().unwrap_or(&self.home))
            .env("CODEX_HOME", &self.home)
            .envs(self.env.iter().cloned());
        run_bounded(command, "codex").await
    }

    /// `CODEX_HOME`.
    pub fn home(&self) -> &Path {
        &self.home
    }

    /// Appends an `env` table to `[mcp_servers.<server>]` (written before,
    /// e.g. by `poe-code mcp configure codex`): Codex gives MCP servers only
    /// a few variables of its own environment.
    pub fn set_server_env(&self, server: &str, env: &[(String, String)]) {
        let file = self.home.join("config.toml");
        let mut config = std::fs::read_to_string(&file).expect("read codex config");
        assert!(
            config.contains(&format!("[mcp_servers.{server}]")),
            "no [mcp_servers.{server}] in:\n{config}"
        );
        config.push_str(&format!("\n[mcp_servers.{server}.env]\n"));
        for (key, value) in env {
            config.push_str(&format!("{key} = {}\n", toml_string(value)));
        }
        std::fs::write(&file, config).expect("write codex config");
    }

    /// Runs `codex exec --skip-git-repo-check --json -o <file> <prompt>`
    /// with a clean environment (`PATH`, `HOME` = `CODEX_HOME`'s parent,
    /// `CODEX_HOME`).
    pub async fn exec(&self, prompt: &str) -> CodexRun {
        let last = self.home.join("last-message.txt");
        let _ = std::fs::remove_file(&last);
        let mut command = clean_command(&self.bin, &self.work);
        command
            .args(["exec", "--skip-git-repo-check", "--json", "-o"])
            .arg(&last)
            .arg(prompt)
            .env("HOME", self.home.parent().unwrap_or(&self.home))
            .env("CODEX_HOME", &self.home)
            .envs(self.env.iter().cloned());
        let out = run_bounded(command, "codex exec").await;
        CodexRun {
            events: String::from_utf8_lossy(&out.stdout)
                .lines()
                .filter_map(|line| serde_json::from_str(line).ok())
                .collect(),
            last_message: std::fs::read_to_string(&last).unwrap_or_default(),
            stderr: String::from_utf8_lossy(&out.stderr).to_string(),
            success: out.status.success(),
        }
    }
}
