//! Finds the real Codex CLI for the tests that drive it (they skip, saying
//! why, when there is none).

use std::path::PathBuf;

/// The codex to test: `CODEX_BIN` if set, else `codex` found on `PATH`; the
/// error says why there is none.
pub fn find_codex() -> Result<PathBuf, String> {
    if let Some(bin) = std::env::var_os("CODEX_BIN").filter(|b| !b.is_empty()) {
        let bin = PathBuf::from(bin);
        return if bin.is_file() {
            Ok(bin)
        } else {
            Err(format!("CODEX_BIN={} does not exist", bin.display()))
        };
    }
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .map(|dir| dir.join("codex"))
        .find(|candidate| candidate.is_file())
        .ok_or_else(|| "no `codex` on PATH and CODEX_BIN is not set".to_string())
}
