//! Harness shared by the end-to-end tests, the demo and the benchmark: build
//! the real binaries and plugins, give each test a private state dir and
//! plugin dir, and speak MCP to real `poe-code mcp run` shims; run the real
//! agent CLIs offline against local fakes of their model APIs.

pub mod anthropic;
pub mod build;
pub mod claude;
pub mod client;
pub mod codex;
pub mod env;
pub mod external;
pub mod fake_codex;
pub mod gemini;
pub mod procs;
pub mod redis;
pub mod responses;
pub mod sse;
pub mod upstream;

pub use client::McpClient;
pub use env::TestEnv;
