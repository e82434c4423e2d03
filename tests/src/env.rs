//! A private poe-code installation for one test: its own state dir, plugin
//! dir and environment, so tests never share a daemon. Dropping it stops the
//! daemon it started.

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use tempfile::TempDir;

use crate::build;
use crate::client::McpClient;

/// A throwaway state dir, plugin dir and environment.
pub struct TestEnv {
    root: TempDir,
    vars: Vec<(String, String)>,
    /// Daemons started in the foreground, reaped when the env drops.
    foreground: std::sync::Mutex<Vec<std::process::Child>>,
}

/// A scratch dir under the target dir rather than /tmp (Codex refuses to
/// set up its helpers under a temporary dir and warns).
pub fn scratch_dir() -> TempDir {
    let base = build::artifact_dir()
        .parent()
        .expect("artifact dir has a parent")
        .join("tmp");
    std::fs::create_dir_all(&base).expect("target/tmp");
    tempfile::Builder::new()
        .prefix("pc")
        .tempdir_in(base)
        .expect("scratch dir")
}

/// The entry of plugin `id` in a `status --json` answer, if it is loaded.
pub fn plugin<'a>(status: &'a serde_json::Value, id: &str) -> Option<&'a serde_json::Value> {
    status["plugins"].as_array()?.iter().find(|p| p["id"] == id)
}

/// The API key tests send unless they set another.
/// Sends SIGKILL to `pid`.
pub fn kill9(pid: u64) {
    let status = Command::new("kill")
        .args(["-9", &pid.to_string()])
        .status()
        .expect("run kill");
    assert!(status.success(), "kill -9 {pid} failed");
}

pub const TEST_API_KEY: &str = "test-key-0123456789abcdef";

impl TestEnv {
    /// A new environment with the given plugins (crate names) installed.
    pub fn new(plugins: &[&str]) -> Self {
        let root = tempfile::Builder::new()
            .prefix("pc")
            .tempdir()
            .expect("temp dir");
        let env = Self {
            root,
            vars: Vec::new(),
            foreground: std::sync::Mutex::new(Vec::new()),
        };
        std::fs::create_dir_all(env.plugin_dir()).expect("plugin dir");
        for plugin in plugins {
            env.install_plugin(plugin);
        }
        env.with_var("POE_API_KEY", TEST_API_KEY)
    }

    /// Sets an environment variable for every process this env starts.
    pub fn with_var(mut self, key: &str, value: impl Into<String>) -> Self {
        self.vars.retain(|(k, _)| k != key);
        self.vars.push((key.to_string(), value.into()));
        self
    }

    /// Removes a variable (it is also cleared from the inherited environment).
    pub fn without_var(mut self, key: &str) -> Self {
        self.vars.retain(|(k, _)| k != key);
        self.vars.push((key.to_string(), String::new()));
        self
    }

    /// The state dir (`POE_CODE_HOME`).
    pub fn home(&self) -> PathBuf {
        self.root.path().join("home")
    }

    /// The plugin dir (`POE_CODE_PLUGIN_DIR`).
    pub fn plugin_dir(&self) -> PathBuf {
        self.root.path().join("plugins")
    }

    /// Writes `config.toml` in the state dir (creating the dir).
    pub fn write_config(&self, text: &str) {
        std::fs::create_dir_all(self.home()).expect("state dir");
        std::fs::write(self.path("config.toml"), text).expect("write config.toml");
    }

    /// Copies a built plugin into the plugin dir.
    pub fn install_plugin(&self, crate_name: &str) {
        let source = build::plugin_library(crate_name);
        let target = self
            .plugin_dir()
            .join(source.file_name().expect("file name"));
        std::fs::copy(&source, &target)
            .unwrap_or_else(|e| panic!("copy {}: {e}", source.display()));
    }

    /// Writes an arbitrary file into the plugin dir (for refusal tests).
    pub fn write_plugin_file(&self, name: &str, bytes: &[u8]) {
        std::fs::write(self.plugin_dir().join(name), bytes).expect("write plugin file");
    }

    /// A command for one of the built binaries with this environment.
    pub fn command(&self, binary: &str) -> Command {
        let mut command = Command::new(build::binary(binary));
        command
            .env_remove("POE_BASE_URL")
            .env_remove("POE_CODE_LOG");
        for (key, _) in self.vars.iter().filter(|(_, v)| v.is_empty()) {
            command.env_remove(key);
        }
        command.envs(self.shim_env());
        command
    }

    /// The variables a shim of this environment needs, for an external MCP
    /// client (an agent CLI, the Python SDK) to put in its server entry.
    pub fn shim_env(&self) -> Vec<(String, String)> {
        let mut env = vec![
            (
                "POE_CODE_HOME".to_string(),
                self.home().display().to_string(),
            ),
            (
                "POE_CODE_PLUGIN_DIR".to_string(),
                self.plugin_dir().display().to_string(),
            ),
            ("POE_CODED_IDLE_TIMEOUT".to_string(), "60".to_string()),
        ];
        // Poe's model list is fetched only from a stand-in: a test without
        // POE_BASE_URL would otherwise reach api.poe.com.
        if !self
            .vars
            .iter()
            .any(|(k, v)| k == "POE_BASE_URL" && !v.is_empty())
        {
            env.push(("POE_CODE_MODEL_CATALOG".to_string(), "off".to_string()));
        }
        env.extend(self.vars.iter().filter(|(_, v)| !v.is_empty()).cloned());
        env
    }

    /// Runs a binary to completion.
    pub fn run(&self, binary: &str, args: &[&str]) -> Output {
        self.command(binary)
            .args(args)
            .stdin(Stdio::null())
            .output()
            .expect("run binary")
    }

    /// Runs a binary to completion and asserts that it succeeded (a failure
    /// shows its stderr).
    pub fn run_ok(&self, binary: &str, args: &[&str]) -> Output {
        let out = self.run(binary, args);
        assert!(
            out.status.success(),
            "{binary} {args:?} failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        out
    }

    /// Runs `poe-code mcp configure <agent>` as a user would, `locate`
    /// pointing it at the agent's config (`HOME` and the like); asserts it
    /// succeeded.
    pub fn configure_agent(&self, agent: &str, locate: impl FnOnce(&mut Command)) {
        let mut command = self.command("poe-code");
        command.args(["mcp", "configure", agent]);
        locate(&mut command);
        let out = command.output().expect("run poe-code mcp configure");
        assert!(
            out.status.success(),
            "configure failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }

    /// Starts a shim (`poe-code mcp run`) and returns a client speaking to it.
    pub async fn shim(&self) -> McpClient {
        let mut command = tokio::process::Command::from(self.command("poe-code"));
        command.args(["mcp", "run"]);
        McpClient::spawn(command).await
    }

    /// A shim started in `cwd`: the session's working directory, which
    /// relative file paths start from.
    pub async fn shim_in(&self, cwd: &Path) -> McpClient {
        let mut command = tokio::process::Command::from(self.command("poe-code"));
        command.args(["mcp", "run"]).current_dir(cwd);
        McpClient::spawn(command).await
    }

    /// Starts the daemon in the foreground with an HTTP listener on a free
    /// loopback port (`poe-coded run --http 127.0.0.1:0`) and returns its
    /// base URL (`http://127.0.0.1:<port>`) once it listens.
    pub fn start_http_daemon(&self) -> String {
        let mut command = self.command("poe-coded");
        command
            .args(["run", "--http", "127.0.0.1:0"])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        // Stopped by `poe-coded stop` when the env drops, then reaped.
        let child = command.spawn().expect("start poe-coded");
        self.foreground.lock().unwrap().push(child);
        let status = self.wait_status(Duration::from_secs(30), |s| s["http"]["listen"].is_string());
        format!(
            "http://{}",
            status["http"]["listen"].as_str().expect("listen")
        )
    }

    /// Creates an HTTP token named `name` and returns it.
    pub fn create_token(&self, name: &str) -> String {
        let out = self.run_ok("poe-code", &["token", "create", name]);
        String::from_utf8(out.stdout)
            .expect("utf-8")
            .trim()
            .to_string()
    }

    /// `poe-coded status --json`, or `None` when no daemon runs.
    pub fn status(&self) -> Option<serde_json::Value> {
        let out = self.run("poe-coded", &["status", "--json"]);
        if out.status.code() == Some(3) {
            return None;
        }
        assert!(
            out.status.success(),
            "status failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        Some(serde_json::from_slice(&out.stdout).expect("status JSON"))
    }

    /// Kills the running daemon with SIGKILL (no cleanup, as a crash) and
    /// waits until it is gone: a line written while the dying daemon still
    /// holds its socket may have been read, so a shim rightly reports it
    /// lost rather than sending it again. Returns the dead daemon's pid.
    pub fn kill_daemon(&self) -> u64 {
        let pid = self.status().expect("a daemon runs")["pid"]
            .as_u64()
            .expect("status has a pid");
        kill9(pid);
        let deadline = Instant::now() + Duration::from_secs(20);
        while self.status().is_some() {
            assert!(Instant::now() < deadline, "the daemon never died");
            std::thread::sleep(Duration::from_millis(20));
        }
        pid
    }

    /// Waits until `status` satisfies `pred`, returning the last status.
    pub fn wait_status(
        &self,
        timeout: Duration,
        pred: impl Fn(&serde_json::Value) -> bool,
    ) -> serde_json::Value {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(status) = self.status()
                && pred(&status)
            {
                return status;
            }
            assert!(
                Instant::now() < deadline,
                "status never matched: {:?}",
                self.status()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// The daemon's log so far.
    pub fn daemon_log(&self) -> String {
        std::fs::read_to_string(self.home().join("logs/poe-coded.log")).unwrap_or_default()
    }

    /// Path inside the state dir.
    pub fn path(&self, rel: impl AsRef<Path>) -> PathBuf {
        self.home().join(rel)
    }
}

impl Drop for TestEnv {
    fn drop(&mut self) {
        if self.home().join("run").exists() {
            let _ = self.run("poe-coded", &["stop"]);
        }
        let children =
            std::mem::take(&mut *self.foreground.lock().unwrap_or_else(|e| e.into_inner()));
        for mut child in children {
            let deadline = Instant::now() + Duration::from_secs(10);
            while matches!(child.try_wait(), Ok(None)) && Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(20));
            }
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}
