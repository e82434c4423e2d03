//! `poe-code plugins install` as a plugin author runs it: build a plugin
//! crate, check it, copy it into the plugin dir of a running daemon, and the
//! next call reaches it; anything the daemon would refuse is refused up
//! front and leaves the plugin dir as it was. A newcomer's daemon without
//! plugins says where it looked and how to install them, and picks up a
//! plugin dir that `install` creates after it started.

use std::os::unix::fs::PermissionsExt;
use std::time::Duration;

use testkit::client::{error_code, result_text};
use testkit::env::plugin;
use testkit::{McpClient, TestEnv, build};

fn plugin_dir_files(env: &TestEnv) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(env.plugin_dir())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    names
}

/// Waits until the daemon has loaded plugin `id`; returns that status.
fn wait_loaded(env: &TestEnv, id: &str) -> serde_json::Value {
    env.wait_status(Duration::from_secs(10), |s| plugin(s, id).is_some())
}

/// Waits until the echo plugin is loaded, then checks that `shim` reaches
/// it; returns the status that showed it loaded.
async fn echo_answers(env: &TestEnv, shim: &mut McpClient, message: &str) -> serde_json::Value {
    let status = wait_loaded(env, "echo");
    let answer = shim.ask("echo", message).await;
    assert_eq!(result_text(&answer), message, "{answer}");
    status
}

#[tokio::test]
async fn installing_a_crate_dir_builds_it_and_the_running_daemon_serves_it() {
    let env = TestEnv::new(&[]);
    let mut shim = env.shim().await;
    shim.initialize("author").await;
    let before = shim.ask("echo", "hello there").await;
    assert_eq!(
        error_code(&before).as_deref(),
        Some("MODEL_NOT_FOUND"),
        "{before}"
    );

    let crate_dir = build::workspace_root().join("examples/echo-plugin");
    // The test profile's artifacts are already built, so this stays quick.
    let out = env.run(
        "poe-code",
        &[
            "plugins",
            "install",
            crate_dir.to_str().unwrap(),
            "--profile",
            "dev",
        ],
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    assert!(
        stderr.contains("installed echo 0.1.0 (plugin-api "),
        "{stderr}"
    );
    assert!(out.stdout.is_empty(), "install writes only to stderr");
    let installed = env.plugin_dir().join("libecho_plugin.so");
    let mode = std::fs::metadata(&installed).unwrap().permissions().mode();
    assert_eq!(mode & 0o022, 0, "not writable by others: {mode:o}");
    assert_eq!(plugin_dir_files(&env), ["libecho_plugin.so"]);

    // Hot reload picks the new file up; the same session then reaches it.
    echo_answers(&env, &mut shim, "hello there").await;
}

#[test]
fn what_the_daemon_would_refuse_is_not_installed_and_nothing_else_is_either() {
    let env = TestEnv::new(&["faulty-plugin"]);
    let scratch = tempfile::tempdir().unwrap();
    let junk = scratch.path().join("libjunk.so");
    std::fs::write(&junk, b"not a library").unwrap();
    let future = build::plugin_library("future-api-plugin");
    // Not the echo plugin: the other test rebuilds that file meanwhile.
    let good = build::plugin_library("older-api-plugin");

    let run = |sources: &[&std::path::Path]| {
        let mut args = vec!["plugins", "install"];
        args.extend(sources.iter().map(|p| p.to_str().unwrap()));
        let out = env.run("poe-code", &args);
        assert!(!out.status.success());
        String::from_utf8_lossy(&out.stderr).into_owned()
    };

    let stderr = run(&[&junk]);
    assert!(stderr.contains("libjunk.so was not installed"), "{stderr}");

    let stderr = run(&[&future]);
    assert!(
        stderr.contains("plugin-api 9.0.0, incompatible"),
        "{stderr}"
    );

    // One bad source in a batch: the good one before it is not installed.
    let stderr = run(&[&good, &junk]);
    assert!(stderr.contains("libjunk.so was not installed"), "{stderr}");

    let stderr = run(&[&scratch.path().join("missing")]);
    assert!(
        stderr.contains("no such crate dir or library file"),
        "{stderr}"
    );

    assert_eq!(plugin_dir_files(&env), ["libfaulty_plugin.so"]);
}

#[test]
fn a_plugin_dir_writable_by_others_is_refused() {
    let env = TestEnv::new(&[]);
    let dir = env.plugin_dir();
    std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o777)).unwrap();
    let good = build::plugin_library("older-api-plugin");
    let out = env.run("poe-code", &["plugins", "install", good.to_str().unwrap()]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(stderr.contains("writable by other users"), "{stderr}");
    assert!(plugin_dir_files(&env).is_empty());
}

/// The command README gives for the bundled plugins.
const INSTALL_BUNDLED: &str = "poe-code plugins install plugins/poe-openai plugins/poe-legacy plugins/codex-cli plugins/claude-cli plugins/gemini-cli";

#[tokio::test]
async fn without_plugins_calls_and_status_name_the_dirs_searched_and_the_install_command() {
    let env = TestEnv::new(&[]);
    let missing = env.plugin_dir().join("not-yet");
    let env = env.with_var("POE_CODE_PLUGIN_DIR", missing.display().to_string());
    let mut shim = env.shim().await;
    shim.initialize("newcomer").await;
    let answer = shim.ask("Claude-Sonnet-4.5", "hi").await;
    assert_eq!(
        error_code(&answer).as_deref(),
        Some("MODEL_NOT_FOUND"),
        "{answer}"
    );
    let text = result_text(&answer);
    assert!(
        text.contains(&format!("{} (missing)", missing.display())),
        "{text}"
    );
    assert!(text.contains(INSTALL_BUNDLED), "{text}");

    let status = env.status().unwrap();
    let dir = &status["plugin_dirs"][0];
    assert_eq!(dir["path"], missing.display().to_string());
    assert_eq!(dir["exists"], false);
    // Watched through its parent until it exists.
    assert_eq!(dir["watching"], env.plugin_dir().display().to_string());
    assert!(
        status["plugins_hint"]
            .as_str()
            .unwrap()
            .contains(INSTALL_BUNDLED)
    );

    let human = env.run("poe-coded", &["status"]);
    let human = String::from_utf8_lossy(&human.stdout);
    assert!(
        human.contains("plugins (0, 0 libraries mapped):"),
        "{human}"
    );
    assert!(
        human.contains(&format!(
            "searched:   {} (missing; watching {} for it)",
            missing.display(),
            env.plugin_dir().display()
        )),
        "{human}"
    );
    assert!(human.contains(INSTALL_BUNDLED), "{human}");
}

#[tokio::test]
async fn a_plugin_dir_that_install_creates_after_the_daemon_started_is_loaded() {
    let env = TestEnv::new(&[]);
    // Two levels missing: the watch has to follow the dirs as they appear.
    let later = env.plugin_dir().join("later/plugins");
    let env = env.with_var("POE_CODE_PLUGIN_DIR", later.display().to_string());
    let mut shim = env.shim().await;
    shim.initialize("newcomer").await;
    let before = shim.ask("echo", "x").await;
    assert_eq!(
        error_code(&before).as_deref(),
        Some("MODEL_NOT_FOUND"),
        "{before}"
    );

    // `install` creates the dir (it is the first of POE_CODE_PLUGIN_DIR).
    let library = build::plugin_library("echo-plugin");
    env.run_ok(
        "poe-code",
        &["plugins", "install", library.to_str().unwrap()],
    );
    assert!(later.join("libecho_plugin.so").is_file());

    let status = echo_answers(&env, &mut shim, "found it").await;
    assert_eq!(
        status["plugin_dirs"][0]["watching"],
        later.display().to_string()
    );
    assert!(status["plugins_hint"].is_null());

    // Watched itself now: a second plugin dropped in is loaded too.
    env.run_ok(
        "poe-code",
        &[
            "plugins",
            "install",
            build::plugin_library("older-api-plugin").to_str().unwrap(),
        ],
    );
    wait_loaded(&env, "older");

    // The dir moved away: its plugins retire, its parent is watched again,
    // and installing once more brings the dir and the plugin back.
    std::fs::rename(&later, later.with_file_name("plugins.old")).unwrap();
    let status = env.wait_status(Duration::from_secs(10), |s| {
        s["plugins"].as_array().is_some_and(Vec::is_empty)
    });
    assert_eq!(
        status["plugin_dirs"][0]["watching"],
        env.plugin_dir().join("later").display().to_string()
    );
    env.run_ok(
        "poe-code",
        &["plugins", "install", library.to_str().unwrap()],
    );
    echo_answers(&env, &mut shim, "back").await;
}
