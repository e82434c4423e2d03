//! Plugin settings from `config.toml`: a daemon opens each plugin with its
//! declared keys from its own environment first, then `[plugins.<id>]` in
//! `$POE_CODE_HOME/config.toml`; `status` shows the values in effect and
//! where each came from (secrets as a fingerprint only); `poe-coded reload`
//! applies an edited file. Driven through the real codex-cli plugin and the
//! fake `codex` of tests/fixtures/fake-codex.py.

use std::path::Path;

use serde_json::{Value, json};
use testkit::TestEnv;
use testkit::client::result_text;
use testkit::env::plugin;
use testkit::fake_codex::{self, argv, runs};

const CODEX_KEYS: &[&str] = &[
    "CODEX_BIN",
    "CODEX_SANDBOX_MODE",
    "CODEX_APPROVAL_POLICY",
    "CODEX_SKIP_GIT_CHECK",
    "CODEX_HOME",
];

/// An env whose daemon sees none of the codex keys from the test's own
/// environment, logging fake codex runs to `log`.
fn env_without_codex_vars(plugins: &[&str], log: &Path) -> TestEnv {
    let mut env = TestEnv::new(plugins)
        .with_var("FAKE_CODEX_LOG", log.display().to_string())
        .with_var("CODEX_PASS_ENV", "FAKE_CODEX_LOG");
    for key in CODEX_KEYS {
        env = env.without_var(key);
    }
    env
}

fn setting<'a>(status: &'a Value, id: &str, key: &str) -> &'a Value {
    plugin(status, id)
        .and_then(|p| p["settings"].as_array())
        .and_then(|s| s.iter().find(|s| s["key"] == key))
        .unwrap_or_else(|| panic!("{id} has no setting {key}: {status}"))
}

async fn ask_codex(shim: &mut testkit::McpClient, message: &str) -> Value {
    let answer = shim.ask("codex", message).await;
    assert!(result_text(&answer).contains("Codex heard"), "{answer}");
    answer
}

#[tokio::test]
async fn codex_settings_come_from_config_toml_and_status_shows_them() {
    let scratch = tempfile::tempdir().unwrap();
    let log = scratch.path().join("runs.jsonl");
    let codex_home = scratch.path().join("codex-home");
    let env = env_without_codex_vars(&["codex-cli", "poe-openai"], &log);
    env.write_config(&format!(
        "[plugins.codex-cli]\n\
             CODEX_BIN = {bin:?}\n\
             CODEX_SANDBOX_MODE = \"workspace-write\"\n\
             CODEX_HOME = {home:?}\n\
             CODEX_SANDBOX = \"a typo\"\n\
             [plugins.poe-openai]\n\
             POE_VIDEO_POLL_MS = 75\n",
        bin = fake_codex::path().display().to_string(),
        home = codex_home.display().to_string(),
    ));
    let mut shim = env.shim().await;
    shim.initialize("settings").await;
    ask_codex(&mut shim, "hello").await;
    let run = runs(&log)
        .pop()
        .expect("fake codex ran: CODEX_BIN came from the file");
    let args = argv(&run);
    assert!(args.contains(&"--sandbox=workspace-write"), "{args:?}");
    assert_eq!(run["codex_home"], codex_home.display().to_string());

    let status = env.status().unwrap();
    let sandbox = setting(&status, "codex-cli", "CODEX_SANDBOX_MODE");
    assert_eq!(sandbox["value"], "workspace-write");
    assert_eq!(sandbox["source"], "config.toml");
    let approval = setting(&status, "codex-cli", "CODEX_APPROVAL_POLICY");
    assert_eq!(approval["source"], "unset");
    assert!(approval["value"].is_null());
    let poll = setting(&status, "poe-openai", "POE_VIDEO_POLL_MS");
    assert_eq!(
        (poll["value"].as_str(), poll["source"].as_str()),
        (Some("75"), Some("config.toml"))
    );
    let codex = plugin(&status, "codex-cli").unwrap();
    assert_eq!(codex["ignored_settings"], json!(["CODEX_SANDBOX"]));

    // The API key the daemon was started with: a fingerprint, never the key.
    let key = setting(&status, "poe-openai", "POE_API_KEY");
    assert_eq!(key["source"], "environment");
    assert_eq!(key["secret"], true);
    assert_eq!(key["value"], "…cdef");
    let human = env.run("poe-coded", &["status"]);
    let human = String::from_utf8_lossy(&human.stdout);
    let json = env.run("poe-coded", &["status", "--json"]);
    for out in [
        human.as_ref(),
        String::from_utf8_lossy(&json.stdout).as_ref(),
    ] {
        assert!(
            !out.contains(testkit::env::TEST_API_KEY),
            "the key leaked: {out}"
        );
    }
    assert!(
        human.contains("CODEX_SANDBOX_MODE=workspace-write (config.toml)"),
        "{human}"
    );
    assert!(human.contains("CODEX_APPROVAL_POLICY unset"), "{human}");
    assert!(human.contains("POE_API_KEY=…cdef (environment)"), "{human}");
    assert!(
        human.contains("has keys it does not read: CODEX_SANDBOX"),
        "{human}"
    );

    // An edited file applies on reload; the running daemon rereads it.
    env.write_config(&format!(
        "[plugins.codex-cli]\nCODEX_BIN = {:?}\nCODEX_SANDBOX_MODE = \"read-only\"\n",
        fake_codex::path().display().to_string()
    ));
    env.run_ok("poe-coded", &["reload", "codex-cli"]);
    ask_codex(&mut shim, "again").await;
    let run = runs(&log).pop().unwrap();
    assert!(argv(&run).contains(&"--sandbox=read-only"), "{run}");
    assert!(run["codex_home"].is_null(), "{run}");
}

#[tokio::test]
async fn the_daemons_environment_wins_over_the_file_and_a_broken_file_is_reported() {
    let scratch = tempfile::tempdir().unwrap();
    let log = scratch.path().join("runs.jsonl");
    let env = env_without_codex_vars(&["codex-cli"], &log)
        .with_var("CODEX_BIN", fake_codex::path().display().to_string())
        .with_var("CODEX_SANDBOX_MODE", "danger-full-access");
    env.write_config("[plugins.codex-cli]\nCODEX_SANDBOX_MODE = \"workspace-write\"\n");
    let mut shim = env.shim().await;
    shim.initialize("precedence").await;
    ask_codex(&mut shim, "hello").await;
    let run = runs(&log).pop().unwrap();
    assert!(
        argv(&run).contains(&"--sandbox=danger-full-access"),
        "{run}"
    );
    let status = env.status().unwrap();
    let sandbox = setting(&status, "codex-cli", "CODEX_SANDBOX_MODE");
    assert_eq!(sandbox["source"], "environment");
    assert_eq!(sandbox["value"], "danger-full-access");

    // A file that no longer parses: reported, and the plugin keeps working.
    env.write_config("[plugins.codex-cli\n");
    env.run_ok("poe-coded", &["reload", "codex-cli"]);
    // `reload` answers once the reload is done, so the report is there now.
    let status = env.status().unwrap();
    assert!(
        status["config_error"]
            .as_str()
            .unwrap()
            .contains("config.toml"),
        "{status}"
    );
    ask_codex(&mut shim, "still works").await;
}
