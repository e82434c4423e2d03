//! poe-code: one shared MCP daemon (`poe-coded`) for every AI coding agent of
//! a user, and the CLI/shim (`poe-code`) that agents start.
//!
//! Map of this crate (see ARCHITECTURE.md at the repository root):
//! - [`cli`]: the `poe-code` and `poe-coded` command lines.
//! - [`shim`]: `poe-code mcp run`, the stdio relay into the daemon.
//! - [`daemon`]: socket server, per-connection MCP sessions, control requests.
//! - [`mcp`]: MCP tool definitions and their handlers.
//! - [`plugins`]: finding, loading and routing to provider plugins.
//! - [`ipc`]: what the shim, the CLI and the daemon say to each other.
//! - [`config`]: paths, credentials and settings.

pub mod chat;
pub mod cli;
pub mod config;
pub mod consensus;
pub mod daemon;
pub mod http;
pub mod ipc;
pub mod jobs;
pub mod limits;
pub mod mcp;
pub mod models;
pub mod plugins;
pub mod shim;
pub mod store;
pub mod summaries;
pub mod usage;

/// Version of this build, reported by `status` and in `initialize`.
pub const VERSION: &str = env!("CARGO_PKG_VERSION");
