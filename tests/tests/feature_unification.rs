//! One feature resolution for the whole workspace: building any part of it
//! (the demo, the test harness's binaries and plugins, one plugin for
//! `poe-code plugins install`) asks for the same features of every shared
//! dependency as building all of it, so a second build reuses the first
//! instead of compiling those dependencies again. `tests/workspace-hack`
//! makes it so; this fails, naming what to add there, when a dependency
//! change breaks it.

use std::collections::{BTreeMap, BTreeSet};
use std::process::Command;

use testkit::build;

/// Package (`name vX.Y.Z`) -> the feature sets it is built with.
type Features = BTreeMap<String, BTreeSet<String>>;

/// What `cargo build <selection>` would build (normal and build
/// dependencies, this platform), from `cargo tree`.
fn features(selection: &[&str]) -> Features {
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let out = Command::new(cargo)
        .current_dir(build::workspace_root())
        .args(["tree", "--frozen", "-e", "normal,build", "--prefix", "none"])
        .args(["--format", "{p}|{f}"])
        .args(selection)
        .output()
        .expect("run cargo tree");
    assert!(
        out.status.success(),
        "cargo tree {selection:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let mut map = Features::new();
    for line in String::from_utf8_lossy(&out.stdout).lines() {
        let Some((package, features)) = line.rsplit_once('|') else {
            continue;
        };
        let name: Vec<&str> = package.split_whitespace().take(2).collect();
        let features = features.trim_end_matches(" (*)").to_string();
        map.entry(name.join(" ")).or_default().insert(features);
    }
    map
}

#[test]
fn every_part_of_the_workspace_builds_shared_dependencies_as_the_whole_does() {
    let whole = features(&["--workspace"]);
    let harness: Vec<String> = build::PACKAGES.iter().map(|p| format!("-p{p}")).collect();
    let mut selections: Vec<(String, Vec<String>)> = vec![
        ("the test harness's build".into(), harness),
        ("cargo run -p demo".into(), vec!["-pdemo".into()]),
        ("cargo run -p bench".into(), vec!["-pbench".into()]),
        ("poe-code alone".into(), vec!["-ppoe-code".into()]),
    ];
    for plugin in [
        "poe-openai",
        "poe-legacy",
        "codex-cli",
        "claude-cli",
        "gemini-cli",
        "echo-plugin",
    ] {
        selections.push((
            format!("plugins install {plugin}"),
            vec![format!("-p{plugin}")],
        ));
    }
    let mut differences = Vec::new();
    for (what, args) in &selections {
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        for (package, sets) in features(&args) {
            let expected = whole.get(&package).cloned().unwrap_or_default();
            for set in sets.difference(&expected) {
                differences.push(format!(
                    "{what}: {package} with [{set}], the workspace with {expected:?}"
                ));
            }
        }
    }
    assert!(
        differences.is_empty(),
        "these would compile again with other features; add each package with the \
         workspace's features to tests/workspace-hack/Cargo.toml ([dependencies], and \
         [build-dependencies] for proc macros and build scripts):\n{}",
        differences.join("\n")
    );
}
