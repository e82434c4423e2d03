//! What travels over the daemon's socket besides MCP itself.
//!
//! Every connection opens with one [`Hello`] line and gets one [`HelloAck`]
//! line back. An `mcp` connection then carries newline-delimited JSON-RPC
//! (MCP's stdio framing); a `control` connection carries one
//! [`ControlRequest`] line and one reply line.

pub mod lines;
pub mod status;

use serde::{Deserialize, Serialize};

/// Version of this hello/control protocol.
pub const IPC_VERSION: u32 = 1;

/// Largest JSON-RPC message the daemon accepts (rmcp's default limit).
pub const MAX_MESSAGE_BYTES: usize = 16 * 1024 * 1024;

/// What a connection is for.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum ConnectionKind {
    /// An MCP session relayed by a shim.
    Mcp,
    /// One control request (`status`, `stop`).
    Control,
}

/// First line a client sends. Its `Debug` shows the key's fingerprint only.
#[derive(Clone, Serialize, Deserialize)]
pub struct Hello {
    /// [`IPC_VERSION`] of the sender.
    pub ipc: u32,
    pub kind: ConnectionKind,
    /// Version of the sending binary.
    pub version: String,
    /// Process id of the shim/CLI.
    pub pid: u32,
    /// Working directory of the agent session.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cwd: Option<String>,
    /// API key this session uses; never logged.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub api_key: Option<String>,
}

impl Hello {
    /// A hello from this process.
    pub fn new(kind: ConnectionKind, api_key: Option<String>) -> Self {
        Self {
            ipc: IPC_VERSION,
            kind,
            version: crate::VERSION.to_string(),
            pid: std::process::id(),
            cwd: std::env::current_dir()
                .ok()
                .map(|p| p.to_string_lossy().into_owned()),
            api_key,
        }
    }
}

impl std::fmt::Debug for Hello {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Destructured so a new field cannot be forgotten here.
        let Hello {
            ipc,
            kind,
            version,
            pid,
            cwd,
            api_key,
        } = self;
        f.debug_struct("Hello")
            .field("ipc", ipc)
            .field("kind", kind)
            .field("version", version)
            .field("pid", pid)
            .field("cwd", cwd)
            .field(
                "api_key",
                &api_key
                    .as_deref()
                    .map(crate::config::credentials::fingerprint),
            )
            .finish()
    }
}

/// The daemon's answer to a [`Hello`].
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct HelloAck {
    pub ok: bool,
    pub daemon_version: String,
    pub daemon_pid: u32,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// A request on a control connection.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(tag = "cmd", rename_all = "snake_case")]
pub enum ControlRequest {
    /// Report [`status::Status`].
    Status,
    /// Shut the daemon down.
    Stop,
    /// Reload one plugin (by id) or all of them, and pick up new files.
    Reload {
        #[serde(default, skip_serializing_if = "Option::is_none")]
        plugin: Option<String>,
    },
    /// Match Poe's points history to the usage ledger now (through the
    /// key's shared limiter), for requests since `since_ms`, and report the
    /// balance.
    SyncPoints {
        #[serde(default)]
        since_ms: u64,
    },
}

/// The outcome of reloading one plugin file.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ReloadOutcome {
    pub file: String,
    /// The plugin id now served from the file, on success.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub plugin: Option<String>,
    /// Why it was refused (the previous version keeps serving).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// Reply to a [`ControlRequest`].
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct ControlReply {
    pub ok: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status: Option<status::Status>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub reloaded: Vec<ReloadOutcome>,
    /// What [`ControlRequest::SyncPoints`] did.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub points: Option<crate::usage::Synced>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hello_debug_shows_a_fingerprint_not_the_key() {
        let hello = Hello::new(
            ConnectionKind::Mcp,
            Some("sk-poe-secret-abcdef-9876".into()),
        );
        let shown = format!("{hello:?}");
        assert!(!shown.contains("secret"), "{shown}");
        assert!(shown.contains("…9876"), "{shown}");
        assert!(shown.contains(&format!("pid: {}", hello.pid)), "{shown}");
        assert!(shown.contains("kind: Mcp"), "{shown}");
    }
}
