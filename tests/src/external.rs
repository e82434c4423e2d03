//! The external tools some end-to-end tests drive (the real Claude Code and
//! Codex CLIs, the official MCP Python SDK), and the one rule for a missing
//! one: the test **fails**, saying how to install the tool, unless
//! `POE_CODE_TEST_SKIP` names it (comma- or space-separated: `claude`,
//! `codex`, `gemini`, `python-mcp`, `python-openai`, `conformance`, `redis`). Then the test prints `SKIPPED <test>: <why>` and
//! passes. `.ci/run` installs every tool and sets the opt-out only for one it
//! could not install, printing the same SKIPPED line where a person sees it.
//! A test never skips silently. [`clean_command`] and [`run_bounded`] run
//! the agent CLIs the same way: a clean environment, a hang guard.

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::Duration;

use crate::build::workspace_root;

/// The environment variable naming the tools whose tests may skip.
pub const SKIP_VAR: &str = "POE_CODE_TEST_SKIP";

/// An external tool a test needs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Tool {
    /// Claude Code (npm `@anthropic-ai/claude-code`): `CLAUDE_BIN`, else
    /// `target/ci-tools`, else `claude` on `PATH`.
    Claude,
    /// The Gemini CLI (npm `@google/gemini-cli`): `GEMINI_BIN`, else
    /// `target/ci-tools`, else `gemini` on `PATH`.
    Gemini,
    /// The Codex CLI (npm `@openai/codex`): `CODEX_BIN`, else
    /// `target/ci-tools`, else `codex` on `PATH`.
    Codex,
    /// `python3` on `PATH` with the official MCP SDK (PyPI `mcp` 2.x).
    PythonMcp,
    /// `python3` on `PATH` with the official `openai` package.
    PythonOpenAi,
    /// The MCP conformance suite (npm `@modelcontextprotocol/conformance`)
    /// in `target/ci-tools`, and Node.js 22 or later to run it:
    /// `CONFORMANCE_NODE`, else the copy `.ci/run` installs, else `node`.
    Conformance,
    /// `redis-server` (Debian package `redis-server`): `REDIS_SERVER_BIN`,
    /// else on `PATH`.
    Redis,
}

impl Tool {
    /// The name `POE_CODE_TEST_SKIP` uses.
    pub fn name(self) -> &'static str {
        match self {
            Tool::Claude => "claude",
            Tool::Gemini => "gemini",
            Tool::Codex => "codex",
            Tool::PythonMcp => "python-mcp",
            Tool::PythonOpenAi => "python-openai",
            Tool::Conformance => "conformance",
            Tool::Redis => "redis",
        }
    }

    fn install_hint(self) -> &'static str {
        match self {
            Tool::Claude => {
                "npm install --prefix target/ci-tools @anthropic-ai/claude-code (as .ci/run does)"
            }
            Tool::Codex => "npm install --prefix target/ci-tools @openai/codex (as .ci/run does)",
            Tool::Gemini => {
                "npm install --prefix target/ci-tools @google/gemini-cli (as .ci/run does)"
            }
            Tool::PythonMcp => "python3 -m pip install 'mcp>=2,<3' (as .ci/run does)",
            Tool::PythonOpenAi => "python3 -m pip install 'openai>=1,<3' (as .ci/run does)",
            Tool::Conformance => {
                "npm install --prefix target/ci-tools @modelcontextprotocol/conformance@<version> \
                 and --prefix target/ci-tools/node22 node@22 (as .ci/run does)"
            }
            Tool::Redis => "apt-get install redis-server (as .ci/run does)",
        }
    }

    /// Where the tool is, or why it cannot be used.
    pub fn find(self) -> Result<PathBuf, String> {
        match self {
            Tool::Claude => find_cli("CLAUDE_BIN", "claude"),
            Tool::Gemini => find_cli("GEMINI_BIN", "gemini"),
            Tool::Codex => find_cli("CODEX_BIN", "codex"),
            Tool::PythonMcp => find_python_package("mcp", "2."),
            Tool::PythonOpenAi => find_python_package("openai", ""),
            Tool::Conformance => find_conformance_node(),
            Tool::Redis => find_redis(),
        }
    }
}

/// The tool for `test`, or `None` when it is missing and the caller opted
/// out (the test then returns). Panics, with the reason and the install
/// command, when it is missing without an opt-out.
pub fn require(tool: Tool, test: &str) -> Option<PathBuf> {
    match tool.find() {
        Ok(path) => Some(path),
        Err(why) if opted_out(tool) => {
            eprintln!("SKIPPED {test}: {why} ({SKIP_VAR} names {})", tool.name());
            None
        }
        Err(why) => panic!(
            "{test} needs {}: {why}.\nInstall it: {}\nor skip this test knowingly with {SKIP_VAR}={}",
            tool.name(),
            tool.install_hint(),
            tool.name()
        ),
    }
}

fn opted_out(tool: Tool) -> bool {
    std::env::var(SKIP_VAR).is_ok_and(|list| {
        list.split([',', ' '])
            .any(|name| name.trim() == tool.name())
    })
}

/// `$var` if set (it must exist), else the copy `.ci/run` installs, else
/// `name` on `PATH`.
fn find_cli(var: &str, name: &str) -> Result<PathBuf, String> {
    if let Some(bin) = std::env::var_os(var).filter(|b| !b.is_empty()) {
        let bin = PathBuf::from(bin);
        return if bin.is_file() {
            Ok(bin)
        } else {
            Err(format!("{var}={} does not exist", bin.display()))
        };
    }
    let ci = workspace_root()
        .join("target/ci-tools/node_modules/.bin")
        .join(name);
    if ci.is_file() {
        return Ok(ci);
    }
    on_path(name).ok_or_else(|| {
        format!(
            "{var} is not set, {} does not exist and there is no `{name}` on PATH",
            ci.display()
        )
    })
}

fn find_redis() -> Result<PathBuf, String> {
    if let Some(bin) = std::env::var_os("REDIS_SERVER_BIN").filter(|b| !b.is_empty()) {
        let bin = PathBuf::from(bin);
        return if is_executable(&bin) {
            Ok(bin)
        } else {
            Err(format!("REDIS_SERVER_BIN={} does not exist", bin.display()))
        };
    }
    on_path("redis-server")
        .ok_or_else(|| "REDIS_SERVER_BIN is not set and there is no redis-server on PATH".into())
}

fn on_path(name: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .map(|dir| dir.join(name))
        .find(|candidate| is_executable(candidate))
}

fn is_executable(path: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(path).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
}

/// The conformance suite's entry script, as `.ci/run` installs it.
pub fn conformance_script() -> PathBuf {
    workspace_root()
        .join("target/ci-tools/node_modules/@modelcontextprotocol/conformance/dist/index.js")
}

/// A Node.js that runs the conformance suite (it needs 22 or later).
fn find_conformance_node() -> Result<PathBuf, String> {
    let script = conformance_script();
    if !script.is_file() {
        return Err(format!("{} does not exist", script.display()));
    }
    let ci = workspace_root().join("target/ci-tools/node22/node_modules/.bin/node");
    let node = match std::env::var_os("CONFORMANCE_NODE").filter(|v| !v.is_empty()) {
        Some(node) => PathBuf::from(node),
        None if ci.is_file() => ci,
        None => on_path("node").ok_or("there is no `node` on PATH")?,
    };
    let out = Command::new(&node)
        .arg("--version")
        .output()
        .map_err(|e| format!("{} does not run: {e}", node.display()))?;
    let version = String::from_utf8_lossy(&out.stdout).trim().to_string();
    let major: u32 = version
        .trim_start_matches('v')
        .split('.')
        .next()
        .and_then(|m| m.parse().ok())
        .unwrap_or(0);
    if major < 22 {
        return Err(format!(
            "the conformance suite needs Node.js 22 or later, {} is {version}",
            node.display()
        ));
    }
    Ok(node)
}

/// `python3` with `package` installed at a version starting with `major`.
fn find_python_package(package: &str, major: &str) -> Result<PathBuf, String> {
    let python = on_path("python3").ok_or("there is no `python3` on PATH")?;
    let out = Command::new(&python)
        .args([
            "-c",
            &format!("import importlib.metadata as m; print(m.version('{package}'))"),
        ])
        .output()
        .map_err(|e| format!("{} does not run: {e}", python.display()))?;
    if !out.status.success() {
        return Err(format!("the Python package `{package}` is not installed"));
    }
    let version = String::from_utf8_lossy(&out.stdout).trim().to_string();
    if !version.starts_with(major) {
        return Err(format!(
            "need the Python package {package} {major}x, found {version}"
        ));
    }
    Ok(python)
}

/// Longest a single agent CLI run may take before the test fails (a hang
/// guard, far above the seconds a run takes).
const RUN_LIMIT: Duration = Duration::from_secs(300);

/// A command for the CLI `bin` run in `dir` with a clean environment (only
/// `PATH`; the caller adds what the tool needs).
pub fn clean_command(bin: &Path, dir: &Path) -> tokio::process::Command {
    let mut command = tokio::process::Command::new(bin);
    command
        .current_dir(dir)
        .env_clear()
        .env("PATH", std::env::var_os("PATH").unwrap_or_default());
    command
}

/// Runs `command` to completion with no stdin and its output captured;
/// fails the test when `what` runs longer than [`RUN_LIMIT`].
pub async fn run_bounded(mut command: tokio::process::Command, what: &str) -> Output {
    command
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    let child = command
        .spawn()
        .unwrap_or_else(|e| panic!("spawn {what}: {e}"));
    tokio::time::timeout(RUN_LIMIT, child.wait_with_output())
        .await
        .unwrap_or_else(|_| panic!("{what} ran longer than {RUN_LIMIT:?}"))
        .unwrap_or_else(|e| panic!("wait for {what}: {e}"))
}
