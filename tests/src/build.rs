//! Builds the workspace artifacts the end-to-end tests run (binaries and
//! plugin cdylibs, which `cargo test` does not build for another package)
//! and finds them in the target directory.

use std::path::PathBuf;
use std::process::Command;
use std::sync::OnceLock;

/// Packages whose artifacts the tests need. Built as a subset of the
/// workspace, they reuse what a workspace build (or the demo's) compiled:
/// tests/workspace-hack gives every subset the same dependency features.
pub const PACKAGES: &[&str] = &[
    "poe-code",
    "poe-openai",
    "poe-legacy",
    "codex-cli",
    "claude-cli",
    "gemini-cli",
    "echo-plugin",
    "faulty-plugin",
    "echo-v2-plugin",
    "future-api-plugin",
    "older-api-plugin",
];

/// Whether this harness was compiled in release mode, so it runs release artifacts.
pub const RELEASE: bool = !cfg!(debug_assertions);

/// The workspace root.
pub fn workspace_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("tests/ has a parent")
        .to_path_buf()
}

/// The directory holding built binaries and libraries for this profile.
pub fn artifact_dir() -> PathBuf {
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .map(|p| {
            if p.is_absolute() {
                p
            } else {
                workspace_root().join(p)
            }
        })
        .unwrap_or_else(|| workspace_root().join("target"));
    target.join(if RELEASE { "release" } else { "debug" })
}

/// Builds the binaries and plugins once per process; panics with cargo's
/// output if the build fails.
pub fn ensure_built() -> &'static PathBuf {
    static BUILT: OnceLock<PathBuf> = OnceLock::new();
    BUILT.get_or_init(|| {
        // For benchmarking already-built artifacts without touching cargo.
        if std::env::var_os("POE_TESTKIT_NO_BUILD").is_some() {
            return artifact_dir();
        }
        let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
        let mut command = Command::new(cargo);
        command
            .current_dir(workspace_root())
            .arg("build")
            .arg("--quiet");
        if RELEASE {
            command.arg("--release");
        }
        for package in PACKAGES {
            command.args(["-p", package]);
        }
        let output = command.output().expect("cannot run cargo build");
        assert!(
            output.status.success(),
            "cargo build failed:\n{}",
            String::from_utf8_lossy(&output.stderr)
        );
        artifact_dir()
    })
}

/// Path of a built binary.
pub fn binary(name: &str) -> PathBuf {
    ensure_built().join(name)
}

/// Path of a built plugin library, by crate name (`echo-plugin`).
pub fn plugin_library(crate_name: &str) -> PathBuf {
    let file = format!(
        "{}{}{}",
        std::env::consts::DLL_PREFIX,
        crate_name.replace('-', "_"),
        std::env::consts::DLL_SUFFIX
    );
    ensure_built().join(file)
}

/// Loads a built plugin through the ABI from a private copy, as the host
/// does (a path loaded once keeps its first mapping).
pub fn load_plugin(crate_name: &str) -> poe_plugin_api::host::Library {
    poe_plugin_api::host::Library::load_copy(&plugin_library(crate_name), &std::env::temp_dir())
        .unwrap_or_else(|e| panic!("{crate_name} loads through the ABI: {e}"))
}
