//! `poe-code mcp configure` / `unconfigure` run as a user would: the real binary,
//! a throwaway HOME, and config files that look like the ones Claude Code and
//! Codex write.

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, SystemTime};

use serde_json::{Value, json};

const BIN: &str = env!("CARGO_BIN_EXE_poe-code");

/// A `~/.claude.json` the way Claude Code leaves it: two-space JSON, no final
/// newline, project entries with their own (empty) server tables, and a user
/// server of someone else's.
const CLAUDE_JSON: &str = r#"{
  "numStartups": 184,
  "installMethod": "native",
  "autoUpdates": true,
  "theme": "dark",
  "tipsHistory": {
    "memory-command": 12,
    "shift-enter": 3
  },
  "firstStartTime": "2025-06-02T09:14:51.212Z",
  "userID": "5f1c9d8a3e2b47c6a1d0e9f8b7c6a5d4e3f2a1b0c9d8e7f6a5b4c3d2e1f0a9b8",
  "projects": {
    "/home/ana/src/shop": {
      "allowedTools": [],
      "history": [
        {
          "display": "fix the cart total rounding",
          "pastedContents": {}
        }
      ],
      "mcpContextUris": [],
      "mcpServers": {},
      "enabledMcpjsonServers": [],
      "disabledMcpjsonServers": [],
      "hasTrustDialogAccepted": true,
      "lastCost": 0.4187,
      "lastTotalInputTokens": 51234
    }
  },
  "mcpServers": {
    "github": {
      "type": "stdio",
      "command": "npx",
      "args": [
        "-y",
        "@modelcontextprotocol/server-github"
      ],
      "env": {
        "GITHUB_PERSONAL_ACCESS_TOKEN": "ghp_example"
      }
    }
  },
  "hasCompletedOnboarding": true,
  "lastOnboardingVersion": "2.1.190"
}"#;

/// A `~/.codex/config.toml` with comments, profiles and other servers.
const CODEX_TOML: &str = r#"# ~/.codex/config.toml
model = "gpt-5-codex"
model_reasoning_effort = "high"   # think harder by default
approval_policy = "on-request"
sandbox_mode = "workspace-write"

[sandbox_workspace_write]
network_access = false

# Profiles: `codex --profile fast`
[profiles.fast]
model = "gpt-5-mini"
model_reasoning_effort = 'low'

[profiles.deep]
model = "gpt-5-codex"
model_reasoning_effort = "high"

[mcp_servers.context7]
command = "npx"
args = ["-y", "@upstash/context7-mcp"]
startup_timeout_sec = 20 # slow first start

[mcp_servers.context7.env]
CONTEXT7_API_KEY = "c7-example"

[mcp_servers.playwright]
command = "npx"
args = ["@playwright/mcp@latest"]

[tui]
notifications = ["agent-turn-complete"]
"#;

struct Home {
    dir: tempfile::TempDir,
}

impl Home {
    fn new() -> Self {
        Self {
            dir: tempfile::tempdir().expect("temp home"),
        }
    }

    fn path(&self, relative: &str) -> PathBuf {
        self.dir.path().join(relative)
    }

    fn write(&self, relative: &str, text: &str, mode: u32) -> PathBuf {
        let path = self.path(relative);
        fs::create_dir_all(path.parent().unwrap()).unwrap();
        fs::write(&path, text).unwrap();
        fs::set_permissions(&path, fs::Permissions::from_mode(mode)).unwrap();
        path
    }

    /// Runs `poe-code` with this HOME and no terminal.
    fn run(&self, args: &[&str]) -> Output {
        self.command(args).output().expect("run poe-code")
    }

    fn command(&self, args: &[&str]) -> Command {
        let mut command = Command::new(BIN);
        command
            .args(args)
            .env("HOME", self.dir.path())
            .env("POE_CODE_HOME", self.dir.path().join(".poe-code"))
            .env_remove("CODEX_HOME")
            .env_remove("CLAUDE_CONFIG_DIR")
            .env_remove("POE_API_KEY")
            .stdin(Stdio::null());
        command
    }
}

fn ok(output: &Output) -> String {
    let stderr = String::from_utf8_lossy(&output.stderr).into_owned();
    assert!(output.status.success(), "failed: {stderr}");
    stderr
}

fn failed(output: &Output) -> String {
    let stderr = String::from_utf8_lossy(&output.stderr).into_owned();
    assert!(!output.status.success(), "should have failed: {stderr}");
    stderr
}

fn our_command() -> String {
    fs::canonicalize(BIN)
        .expect("canonical binary path")
        .to_str()
        .expect("UTF-8 path")
        .to_owned()
}

/// Moves the mtime an hour back, so any rewrite shows even on coarse clocks.
fn age(path: &Path) -> SystemTime {
    let old = SystemTime::now() - Duration::from_secs(3600);
    fs::File::options()
        .write(true)
        .open(path)
        .unwrap()
        .set_modified(old)
        .unwrap();
    fs::metadata(path).unwrap().modified().unwrap()
}

fn mtime(path: &Path) -> SystemTime {
    fs::metadata(path).unwrap().modified().unwrap()
}

fn mode(path: &Path) -> u32 {
    fs::metadata(path).unwrap().permissions().mode() & 0o777
}

fn backup_of(path: &Path) -> PathBuf {
    PathBuf::from(format!("{}.poe-code.bak", path.display()))
}

#[test]
fn claude_code_configure_unconfigure_cycle() {
    let home = Home::new();
    let file = home.write(".claude.json", CLAUDE_JSON, 0o600);

    let stderr = ok(&home.run(&["mcp", "configure", "claude-code"]));
    assert!(
        stderr.contains("Configured poe-code for Claude Code"),
        "{stderr}"
    );
    assert!(stderr.contains("MCP_TOOL_TIMEOUT=600000"), "{stderr}");
    let text = fs::read_to_string(&file).unwrap();
    let mut configured: Value = serde_json::from_str(&text).unwrap();
    assert_eq!(
        configured["mcpServers"]["poe-code"],
        json!({"type": "stdio", "command": our_command(), "args": ["mcp", "run"]})
    );
    // Everything else means what it meant, and is spelled as it was.
    configured["mcpServers"]
        .as_object_mut()
        .unwrap()
        .remove("poe-code");
    assert_eq!(
        configured,
        serde_json::from_str::<Value>(CLAUDE_JSON).unwrap()
    );
    // Byte for byte: our entry after the other server, in Claude's own layout.
    let anchor = "\"ghp_example\"\n      }\n    }";
    let ours = format!(
        ",\n    \"poe-code\": {{\n      \"type\": \"stdio\",\n      \"command\": \"{}\",\n      \"args\": [\n        \"mcp\",\n        \"run\"\n      ]\n    }}",
        our_command()
    );
    assert_eq!(
        text,
        CLAUDE_JSON.replacen(anchor, &format!("{anchor}{ours}"), 1)
    );
    assert!(!text.ends_with('\n'), "no final newline was added");
    assert_eq!(mode(&file), 0o600);
    let backup = backup_of(&file);
    assert_eq!(fs::read_to_string(&backup).unwrap(), CLAUDE_JSON);
    assert_eq!(mode(&backup), 0o600);

    // Again: nothing to do, and the file is not touched.
    let before = age(&file);
    let stderr = ok(&home.run(&["mcp", "configure", "claude-code"]));
    assert!(stderr.contains("already configured"), "{stderr}");
    assert_eq!(mtime(&file), before);
    assert_eq!(fs::read_to_string(&file).unwrap(), text);

    let stderr = ok(&home.run(&["mcp", "unconfigure", "claude-code"]));
    assert!(stderr.contains("Removed poe-code"), "{stderr}");
    assert_eq!(fs::read_to_string(&file).unwrap(), CLAUDE_JSON);

    let before = age(&file);
    let stderr = ok(&home.run(&["mcp", "unconfigure", "claude-code"]));
    assert!(stderr.contains("not configured"), "{stderr}");
    assert_eq!(mtime(&file), before);
    assert_eq!(fs::read_to_string(&file).unwrap(), CLAUDE_JSON);
    // The backup is still the file as poe-code first found it.
    assert_eq!(fs::read_to_string(&backup).unwrap(), CLAUDE_JSON);
}

#[test]
fn yes_picks_claude_code_and_a_moved_binary_is_updated_in_place() {
    let home = Home::new();
    let moved = CLAUDE_JSON.replace(
        "  \"mcpServers\": {\n    \"github\"",
        "  \"mcpServers\": {\n    \"poe-code\": {\n      \"type\": \"stdio\",\n      \"command\": \"/old/place/poe-code\",\n      \"args\": [\n        \"mcp\",\n        \"run\"\n      ]\n    },\n    \"github\"",
    );
    let file = home.write(".claude.json", &moved, 0o644);
    ok(&home.run(&["mcp", "configure", "--yes"]));
    let text = fs::read_to_string(&file).unwrap();
    assert_eq!(
        text,
        moved.replace("/old/place/poe-code", &our_command()),
        "only the command changed"
    );
    assert_eq!(mode(&file), 0o644);
    // Our entry was first; removing it leaves the rest as Claude wrote it.
    ok(&home.run(&["mcp", "unconfigure", "claude-code"]));
    assert_eq!(fs::read_to_string(&file).unwrap(), CLAUDE_JSON);
}

#[test]
fn codex_configure_unconfigure_cycle() {
    let home = Home::new();
    let file = home.write(".codex/config.toml", CODEX_TOML, 0o600);

    let stderr = ok(&home.run(&["mcp", "configure", "codex", "--tool-timeout-sec", "900"]));
    assert!(stderr.contains("Configured poe-code for Codex"), "{stderr}");
    let text = fs::read_to_string(&file).unwrap();
    let block = format!(
        "[mcp_servers.poe-code]\ncommand = \"{}\"\nargs = [\"mcp\", \"run\"]\ntool_timeout_sec = 900\ndefault_tools_approval_mode = \"approve\"\n",
        our_command()
    );
    // Added after the other servers, with every comment kept.
    assert_eq!(
        text,
        CODEX_TOML.replace(
            "args = [\"@playwright/mcp@latest\"]\n\n",
            &format!("args = [\"@playwright/mcp@latest\"]\n\n{block}\n")
        )
    );
    assert_eq!(fs::read_to_string(backup_of(&file)).unwrap(), CODEX_TOML);

    let before = age(&file);
    let stderr = ok(&home.run(&["mcp", "configure", "codex", "--tool-timeout-sec", "900"]));
    assert!(stderr.contains("already configured"), "{stderr}");
    assert_eq!(mtime(&file), before);

    // Without the flag the default (600) comes back, changed in place.
    ok(&home.run(&["mcp", "configure", "codex"]));
    assert_eq!(
        fs::read_to_string(&file).unwrap(),
        text.replace("tool_timeout_sec = 900", "tool_timeout_sec = 600")
    );

    ok(&home.run(&["mcp", "unconfigure", "codex"]));
    assert_eq!(fs::read_to_string(&file).unwrap(), CODEX_TOML);
    let before = age(&file);
    let stderr = ok(&home.run(&["mcp", "unconfigure", "codex"]));
    assert!(stderr.contains("nothing changed"), "{stderr}");
    assert_eq!(mtime(&file), before);
    assert_eq!(mode(&file), 0o600);
}

#[test]
fn codex_home_is_where_codex_reads_its_config() {
    let home = Home::new();
    let codex_home = home.path("elsewhere");
    let output = home
        .command(&["mcp", "configure", "codex"])
        .env("CODEX_HOME", &codex_home)
        .output()
        .unwrap();
    ok(&output);
    let text = fs::read_to_string(codex_home.join("config.toml")).unwrap();
    assert!(text.contains("tool_timeout_sec = 600"), "{text}");
    assert!(!home.path(".codex").exists());
}

#[test]
fn missing_files_are_created_and_never_needed_for_unconfigure() {
    let home = Home::new();
    let stderr = ok(&home.run(&["mcp", "unconfigure", "cursor"]));
    assert!(stderr.contains("does not exist"), "{stderr}");
    assert!(!home.path(".cursor").exists());

    let stderr = ok(&home.run(&["mcp", "configure", "gemini", "--tool-timeout-sec", "1200"]));
    assert!(stderr.contains("created"), "{stderr}");
    let file = home.path(".gemini/settings.json");
    let settings: Value = serde_json::from_slice(&fs::read(&file).unwrap()).unwrap();
    assert_eq!(
        settings,
        json!({"mcpServers": {"poe-code": {
            "command": our_command(), "args": ["mcp", "run"], "timeout": 1_200_000
        }}})
    );
    assert_eq!(mode(&file), 0o600);
    assert!(!backup_of(&file).exists(), "nothing to back up");

    ok(&home.run(&["mcp", "configure", "cursor"]));
    let cursor: Value =
        serde_json::from_slice(&fs::read(home.path(".cursor/mcp.json")).unwrap()).unwrap();
    assert_eq!(
        cursor["mcpServers"]["poe-code"]["command"],
        json!(our_command())
    );
}

#[test]
fn a_file_that_does_not_parse_is_refused_and_left_alone() {
    let home = Home::new();
    let broken = "{\n  \"numStartups\": 3,\n  \"mcpServers\": {\n}\n";
    let file = home.write(".claude.json", broken, 0o600);
    let before = age(&file);
    for args in [
        &["mcp", "configure", "claude-code"][..],
        &["mcp", "unconfigure", "claude-code"][..],
    ] {
        let stderr = failed(&home.run(args));
        assert!(stderr.contains(&file.display().to_string()), "{stderr}");
        assert!(stderr.contains("line 5, column 1"), "{stderr}");
        assert!(stderr.contains("left as it is"), "{stderr}");
    }
    assert_eq!(fs::read_to_string(&file).unwrap(), broken);
    assert_eq!(mtime(&file), before);
    assert!(!backup_of(&file).exists());

    let file = home.write(".codex/config.toml", "[mcp_servers.x\ncommand = 1\n", 0o600);
    let stderr = failed(&home.run(&["mcp", "configure", "codex"]));
    assert!(
        stderr.contains("cannot parse") && stderr.contains("as TOML"),
        "{stderr}"
    );
    assert_eq!(
        fs::read_to_string(&file).unwrap(),
        "[mcp_servers.x\ncommand = 1\n"
    );
}

#[test]
fn without_a_terminal_a_provider_must_be_named() {
    let home = Home::new();
    let stderr = failed(&home.run(&["mcp", "configure"]));
    for id in ["claude-code", "codex", "gemini", "cursor", "--yes"] {
        assert!(stderr.contains(id), "{id} missing from: {stderr}");
    }
    assert!(!home.path(".claude.json").exists());

    let output = home.run(&["mcp", "configure", "vscode"]);
    let stderr = failed(&output);
    assert_eq!(output.status.code(), Some(2), "a usage error");
    assert!(
        stderr.contains("claude-code") && stderr.contains("cursor"),
        "{stderr}"
    );
    failed(&home.run(&["mcp", "unconfigure"]));
    failed(&home.run(&["mcp", "configure", "codex", "--tool-timeout-sec", "0"]));
}

#[test]
fn mcp_alone_still_prints_the_manual_config() {
    let home = Home::new();
    let output = home.run(&["mcp"]);
    ok(&output);
    let config: Value = serde_json::from_slice(&output.stdout).unwrap();
    assert_eq!(
        config,
        json!({"mcpServers": {"poe-code": {"command": our_command(), "args": ["mcp", "run"]}}})
    );
}
