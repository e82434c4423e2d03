//! `poe-code`: the CLI and the stdio MCP shim. See `poe_code::cli::client`.
fn main() -> std::process::ExitCode {
    poe_code::cli::client::main()
}
