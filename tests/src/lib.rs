//! Harness shared by the end-to-end tests, the demo and the benchmark: build
//! the real binaries and plugins, give each test a private state dir and
//! plugin dir, and speak MCP to real `poe-code mcp run` shims.

pub mod build;
pub mod client;
pub mod codex;
pub mod env;

pub use client::McpClient;
pub use env::TestEnv;
