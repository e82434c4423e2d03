//! `poe-code mcp run`: the stdio shim an agent starts. It holds no MCP logic:
//! it checks credentials, reaches the daemon ([`connect`]) and relays lines
//! both ways (client → daemon in `relay`, daemon → client in
//! `downstream`), surviving a daemon restart.

pub mod connect;
mod downstream;
mod relay;

use crate::config::Paths;
use crate::config::credentials;

/// The message printed when no API key is configured.
pub const NO_CREDENTIALS: &str = "No credentials found. Run 'poe-code login' first.";

/// Runs the shim; returns the process exit code.
pub async fn run(paths: Paths) -> i32 {
    let api_key = match credentials::load(&paths) {
        Ok(Some((key, _))) => key,
        Ok(None) => {
            eprintln!("{NO_CREDENTIALS}");
            return 1;
        }
        Err(e) => {
            eprintln!("poe-code: {e}");
            return 1;
        }
    };
    match relay::Relay::start(paths, api_key).await {
        Ok(relay) => relay.run().await,
        Err(e) => {
            eprintln!("poe-code: cannot reach the poe-coded daemon: {e:#}");
            1
        }
    }
}
