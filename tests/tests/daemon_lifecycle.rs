//! The daemon's life as users see it: started by the first shim, shared by
//! all, one per state dir however many shims race, inspected by `status`,
//! stopped by `stop`, and refusing to start shims without credentials.

use std::time::Duration;

use serde_json::{Value, json};
use testkit::client::result_text;
use testkit::{McpClient, TestEnv};

#[tokio::test(flavor = "multi_thread")]
async fn first_shim_starts_the_daemon_and_answers() {
    let env = TestEnv::new(&["echo-plugin"]);
    assert!(env.status().is_none(), "no daemon before the first shim");
    let mut shim = env.shim().await;
    let init = shim.initialize("lifecycle-test").await;
    assert_eq!(init["result"]["serverInfo"]["name"], "poe-code");
    assert_eq!(init["result"]["protocolVersion"], "2025-11-25");
    let answer = shim.ask("echo", "hi there").await;
    assert_eq!(result_text(&answer), "hi there");

    let status = env.status().expect("daemon runs after the first shim");
    assert_eq!(status["plugins"][0]["id"], "echo");
    let sessions = status["sessions"].as_array().unwrap();
    assert_eq!(sessions.len(), 1);
    assert_eq!(sessions[0]["client_name"], "lifecycle-test");
    assert_eq!(sessions[0]["calls"], 1);
    assert!(status["pid"].as_u64().unwrap() > 0);
    assert!(
        shim.non_json.try_recv().is_err(),
        "stdout carried a non-JSON line"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn twenty_shims_started_at_once_share_one_daemon() {
    let env = TestEnv::new(&["echo-plugin"]);
    let shims = futures_join_all((0..20).map(|i| {
        let env = &env;
        async move {
            let mut shim = env.shim().await;
            shim.initialize(&format!("racer-{i}")).await;
            let answer = shim
                .call_tool(
                    "get_bot_response",
                    json!({"bot_name": "echo", "message": format!("racer {i}")}),
                )
                .await;
            assert_eq!(result_text(&answer), format!("racer {i}"));
            shim
        }
    }))
    .await;
    let status = env.status().expect("daemon runs");
    assert_eq!(status["sessions"].as_array().unwrap().len(), 20);
    // Exactly one daemon process for this state dir.
    let daemons = count_daemons_for(&env.home());
    assert_eq!(daemons, 1, "expected one poe-coded for this state dir");
    drop(shims);
}

async fn futures_join_all<F: std::future::Future>(
    futures: impl Iterator<Item = F>,
) -> Vec<F::Output> {
    futures::future::join_all(futures).await
}

fn count_daemons_for(home: &std::path::Path) -> usize {
    let home = home.to_string_lossy().into_owned();
    std::fs::read_dir("/proc")
        .unwrap()
        .filter_map(|e| e.ok())
        .filter(|e| {
            e.file_name()
                .to_string_lossy()
                .chars()
                .all(|c| c.is_ascii_digit())
        })
        .filter(|e| {
            let cmdline = std::fs::read(e.path().join("cmdline")).unwrap_or_default();
            let environ = std::fs::read(e.path().join("environ")).unwrap_or_default();
            let cmdline = String::from_utf8_lossy(&cmdline);
            let environ = String::from_utf8_lossy(&environ);
            cmdline.contains("poe-coded") && environ.contains(&format!("POE_CODE_HOME={home}"))
        })
        .count()
}

#[tokio::test(flavor = "multi_thread")]
async fn missing_credentials_fail_fast_with_the_documented_message() {
    let env = TestEnv::new(&["echo-plugin"]).without_var("POE_API_KEY");
    let out = env.run("poe-code", &["mcp", "run"]);
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(
        String::from_utf8_lossy(&out.stderr).trim(),
        "No credentials found. Run 'poe-code login' first."
    );
    assert!(out.stdout.is_empty(), "stdout is protocol only");
    assert!(env.status().is_none(), "no daemon was started");
}

#[tokio::test(flavor = "multi_thread")]
async fn login_stores_a_private_key_the_shim_then_uses() {
    let env = TestEnv::new(&["echo-plugin"]).without_var("POE_API_KEY");
    let mut login = env.command("poe-code");
    login
        .args(["login", "--api-key-stdin"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped());
    let mut child = login.spawn().unwrap();
    use std::io::Write;
    child
        .stdin
        .take()
        .unwrap()
        .write_all(b"sk-login-test-abcdef987654\n")
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success());
    let said = String::from_utf8_lossy(&out.stderr);
    assert!(said.contains("…7654"), "{said}");
    assert!(
        !said.contains("sk-login-test-abcdef987654"),
        "key printed in full: {said}"
    );
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(env.path("credentials.json"))
        .unwrap()
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o600);

    let mut shim = env.shim().await;
    shim.initialize("after-login").await;
    let status = env.status().unwrap();
    assert_eq!(status["sessions"][0]["api_key"], "…7654");
    let log = env.daemon_log();
    assert!(
        !log.contains("sk-login-test-abcdef987654"),
        "key in the daemon log"
    );

    let out = env.run("poe-code", &["logout"]);
    assert!(out.status.success());
    assert!(!env.path("credentials.json").exists());
}

#[tokio::test(flavor = "multi_thread")]
async fn status_and_stop_report_a_missing_daemon_like_systemctl() {
    let env = TestEnv::new(&["echo-plugin"]);
    let out = env.run("poe-coded", &["status"]);
    assert_eq!(out.status.code(), Some(3));
    assert!(String::from_utf8_lossy(&out.stderr).contains("not running"));

    env.run_ok("poe-coded", &["start"]);
    let out = env.run("poe-coded", &["status"]);
    assert!(out.status.success());
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("echo"), "{text}");
    let out = env.run("poe-coded", &["stop"]);
    assert!(out.status.success());
    assert!(env.status().is_none());
}

#[tokio::test(flavor = "multi_thread")]
async fn daemon_exits_after_its_idle_timeout() {
    let env = TestEnv::new(&["echo-plugin"]).with_var("POE_CODED_IDLE_TIMEOUT", "0.5");
    let mut shim = env.shim().await;
    shim.initialize("idle").await;
    assert!(env.status().is_some());
    shim.close_stdin();
    shim.wait_exit(Duration::from_secs(10))
        .await
        .expect("shim exits on EOF");
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while env.status().is_some() {
        assert!(
            std::time::Instant::now() < deadline,
            "daemon never idled out"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(
        !env.path("run/poe-coded.sock").exists(),
        "socket removed on exit"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn socket_dir_is_private() {
    use std::os::unix::fs::PermissionsExt;
    let env = TestEnv::new(&["echo-plugin"]);
    let mut shim: McpClient = env.shim().await;
    shim.initialize("perm").await;
    let mode = std::fs::metadata(env.path("run"))
        .unwrap()
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o700);
    let value: Value = env.status().unwrap();
    assert!(
        value["socket"]
            .as_str()
            .unwrap()
            .ends_with("run/poe-coded.sock")
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn mcp_prints_client_config_with_absolute_path() {
    let env = TestEnv::new(&[]);
    let out = env.run("poe-code", &["mcp"]);
    assert!(out.status.success());
    let config: Value = serde_json::from_slice(&out.stdout).unwrap();
    let command = config["mcpServers"]["poe-code"]["command"]
        .as_str()
        .unwrap();
    assert!(std::path::Path::new(command).is_absolute());
    assert!(command.ends_with("poe-code"));
    assert_eq!(
        config["mcpServers"]["poe-code"]["args"],
        json!(["mcp", "run"])
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn query_streams_one_answer_to_the_terminal() {
    let env = TestEnv::new(&["echo-plugin"]);
    let out = env.run_ok(
        "poe-code",
        &["query", "echo", "hello", "from", "the", "terminal"],
    );
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        "hello from the terminal\n"
    );
    let out = env.run("poe-code", &["query", "no-such-bot", "hi"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("MODEL_NOT_FOUND"));
    // The session was a client of the shared daemon like any agent.
    assert!(env.status().is_some());
}

#[tokio::test(flavor = "multi_thread")]
async fn a_shim_started_right_after_stop_is_served_by_a_new_daemon() {
    let env = TestEnv::new(&["echo-plugin", "faulty-plugin"]);
    let mut old = env.shim().await;
    old.initialize("before-stop").await;
    // A plugin call that ignores cancellation keeps the stopping daemon busy
    // after its socket is gone; the new daemon must not wait for it.
    old.send_request(
        "tools/call",
        json!({"name": "get_bot_response", "arguments": {"bot_name": "faulty-stubborn-5000", "message": "x"}}),
    )
    .await;
    let status = env.wait_status(Duration::from_secs(30), |s| s["calls_in_flight"] == 1);
    let old_pid = status["pid"].as_u64().unwrap();

    env.run_ok("poe-coded", &["stop"]);
    let mut shim = env.shim().await;
    let init = shim.initialize("after-stop").await;
    assert_eq!(init["result"]["serverInfo"]["name"], "poe-code", "{init}");
    let answer = shim.ask("echo", "a new daemon").await;
    assert_eq!(result_text(&answer), "a new daemon");
    let new_pid = env.status().expect("the new daemon serves")["pid"]
        .as_u64()
        .unwrap();
    assert_ne!(old_pid, new_pid, "the stopped daemon still serves");
}
