//! Runs the real Claude Code CLI offline as an MCP client: a private `HOME`
//! (so `~/.claude.json` is the test's), the Messages API at a local fake
//! ([`crate::anthropic::FakeMessages`]), one `claude -p` per prompt, and the
//! MCP log Claude Code keeps for each server.

use std::path::{Path, PathBuf};

use serde_json::Value;

use crate::external::{clean_command, run_bounded};

/// One Claude Code installation with its own `HOME` and working directory.
pub struct ClaudeCode {
    bin: PathBuf,
    home: PathBuf,
    work: PathBuf,
    base_url: String,
    /// More variables for every run (e.g. the HTTP token an entry names).
    env: Vec<(String, String)>,
}

/// What one `claude -p --output-format json` run left behind.
#[derive(Debug)]
pub struct ClaudeRun {
    /// The JSON result object Claude Code printed (`Null` if none).
    pub output: Value,
    /// Its stdout, as printed.
    pub stdout: String,
    /// Its stderr.
    pub stderr: String,
    /// Whether it exited 0.
    pub success: bool,
}

impl ClaudeRun {
    /// The final text of the run (`result` of the output object).
    pub fn result(&self) -> &str {
        self.output["result"].as_str().unwrap_or_default()
    }
}

impl ClaudeCode {
    /// A Claude Code with `HOME` and a project dir under `root`, talking to
    /// the Messages API at `base_url`.
    pub fn new(bin: PathBuf, root: &Path, base_url: String) -> Self {
        let home = root.join("claude-home");
        let work = root.join("claude-project");
        std::fs::create_dir_all(&home).expect("claude home");
        std::fs::create_dir_all(&work).expect("claude project");
        Self {
            bin,
            home,
            work,
            base_url,
            env: Vec::new(),
        }
    }

    /// Sets a variable in the environment of every later run.
    pub fn set_env(&mut self, key: &str, value: &str) {
        self.env.push((key.to_string(), value.to_string()));
    }

    /// Runs `claude <args>` (e.g. `mcp get poe-code`) with this `HOME`.
    pub async fn cli(&self, args: &[&str]) -> std::process::Output {
        let mut command = clean_command(&self.bin, &self.work);
        command
            .args(args)
            .env("HOME", &self.home)
            .env("CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC", "1")
            .envs(self.env.iter().cloned());
        run_bounded(command, "claude").await
    }

    /// The `HOME` Claude Code runs with (its `.claude.json` is here).
    pub fn home(&self) -> &Path {
        &self.home
    }

    /// Sets `env` on the `mcpServers.<server>` entry of `~/.claude.json`
    /// (which must exist, e.g. written by `poe-code mcp configure`).
    pub fn set_server_env(&self, server: &str, env: &[(String, String)]) {
        let file = self.home.join(".claude.json");
        let text = std::fs::read_to_string(&file)
            .unwrap_or_else(|e| panic!("read {}: {e}", file.display()));
        let mut config: Value = serde_json::from_str(&text).expect(".claude.json is JSON");
        let entry = config["mcpServers"]
            .get_mut(server)
            .unwrap_or_else(|| panic!("no mcpServers.{server} in {text}"));
        entry["env"] = env
            .iter()
            .map(|(k, v)| (k.clone(), Value::String(v.clone())))
            .collect::<serde_json::Map<_, _>>()
            .into();
        std::fs::write(&file, serde_json::to_vec_pretty(&config).expect("JSON"))
            .expect("write .claude.json");
    }

    /// Runs `claude -p <prompt> --output-format json --allowedTools <tools>`
    /// with a clean environment: only `PATH`, this `HOME`, the fake API and
    /// the switches that keep Claude Code offline and deterministic.
    pub async fn run(&self, prompt: &str, allowed_tools: &[&str]) -> ClaudeRun {
        let mut command = clean_command(&self.bin, &self.work);
        command
            .arg("-p")
            .arg(prompt)
            .args(["--output-format", "json", "--allowedTools"])
            .args(allowed_tools)
            .env("HOME", &self.home)
            .env("ANTHROPIC_BASE_URL", &self.base_url)
            .env("ANTHROPIC_API_KEY", "sk-ant-fake-0000")
            .env("CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC", "1")
            .env("ENABLE_TOOL_SEARCH", "false")
            // In `-p` mode Claude Code sends the first request without the
            // tools of a server still connecting (~1 s into its start);
            // this makes it wait, so a cold daemon on a busy machine cannot
            // turn the test into a no-op.
            .env("MCP_CONNECTION_NONBLOCKING", "false")
            .envs(self.env.iter().cloned());
        let out = run_bounded(command, "claude -p").await;
        let stdout = String::from_utf8_lossy(&out.stdout).to_string();
        ClaudeRun {
            output: serde_json::from_str(stdout.trim()).unwrap_or(Value::Null),
            stdout,
            stderr: String::from_utf8_lossy(&out.stderr).to_string(),
            success: out.status.success(),
        }
    }

    /// Every entry of Claude Code's MCP log for `server`
    /// (`~/.cache/claude-cli-nodejs/<project>/mcp-logs-<server>/*.jsonl`),
    /// oldest file first.
    pub fn mcp_log(&self, server: &str) -> Vec<Value> {
        let cache = self.home.join(".cache/claude-cli-nodejs");
        let mut files: Vec<PathBuf> = std::fs::read_dir(&cache)
            .into_iter()
            .flatten()
            .flatten()
            .map(|project| project.path().join(format!("mcp-logs-{server}")))
            .flat_map(|dir| std::fs::read_dir(dir).into_iter().flatten().flatten())
            .map(|file| file.path())
            .filter(|file| file.extension().is_some_and(|e| e == "jsonl"))
            .collect();
        files.sort();
        files
            .iter()
            .flat_map(|file| {
                std::fs::read_to_string(file)
                    .unwrap_or_default()
                    .lines()
                    .map(|line| serde_json::from_str(line).unwrap_or(Value::String(line.into())))
                    .collect::<Vec<_>>()
            })
            .collect()
    }
}
