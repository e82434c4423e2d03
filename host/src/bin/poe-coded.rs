//! `poe-coded`: the shared daemon. See `poe_code::cli::daemon`.
fn main() -> std::process::ExitCode {
    poe_code::cli::daemon::main()
}
