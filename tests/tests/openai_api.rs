//! The daemon's OpenAI-compatible API with the official `openai` Python
//! package as the client, while agents' stdio sessions call the same
//! upstream: one shared limit for both, which the stand-in upstream (Poe's
//! wire format on 127.0.0.1, enforcing a sliding-window limit) never sees
//! exceeded. Needs python3 with `openai` (see `testkit::external`).

use std::process::Command;
use std::sync::Arc;
use std::time::Duration;

use serde_json::Value;
use testkit::TestEnv;
use testkit::client::result_text;
use testkit::external::{Tool, require};
use testkit::upstream::{Shared, WindowedUpstream, upstream_with};

#[tokio::test(flavor = "multi_thread")]
async fn openai_sdk_scripts_and_agents_share_one_limit() {
    let Some(python) = require(
        Tool::PythonOpenAi,
        "openai_sdk_scripts_and_agents_share_one_limit",
    ) else {
        return;
    };
    // 30 requests per 2 s window (the window shortened from Poe's minute so
    // the test takes seconds), counted the same way by the stand-in.
    let upstream = Arc::new(WindowedUpstream::new(Duration::from_secs(2), 30));
    let server = upstream_with(Shared(upstream.clone())).await;
    let env = TestEnv::new(&["poe-openai"])
        .with_var("POE_BASE_URL", format!("{}/v1", server.uri()))
        .with_var("POE_CODE_RATE_WINDOW_SECS", "2")
        .with_var("POE_CODE_RATE_LIMITS", "poe-openai=30");
    let token = env.create_token("script");
    let base = env.start_http_daemon();

    let script = testkit::build::workspace_root().join("tests/python/openai_client.py");
    let mut openai = tokio::process::Command::from({
        let mut command = Command::new(&python);
        command
            .arg(&script)
            .arg(format!("{base}/v1"))
            .arg(&token)
            .arg("30");
        command
    });
    let openai = openai
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("run python3");
    let agents = (0..3).map(|s| {
        let env = &env;
        async move {
            let mut shim = env.shim().await;
            shim.initialize(&format!("agent-{s}")).await;
            for c in 0..10 {
                let message = format!("s{s} c{c}");
                let answer = shim.ask("test-bot", &message).await;
                assert_eq!(result_text(&answer), format!("echo {message}"), "{answer}");
            }
            shim
        }
    });
    let (out, shims) = tokio::join!(openai.wait_with_output(), futures::future::join_all(agents));
    let out = out.expect("python3 ran");
    assert!(
        out.status.success(),
        "openai client failed:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let seen: Value = serde_json::from_slice(&out.stdout).expect("one JSON line");
    let answers = seen["answers"].as_array().unwrap();
    assert_eq!(answers.len(), 30);
    for (i, answer) in answers.iter().enumerate() {
        assert_eq!(answer["text"], format!("echo openai {i}"), "{answer}");
        assert_eq!(answer["streamed"], i % 2 == 0);
    }
    assert_eq!(seen["bad_request"]["status"], 400, "{seen}");
    assert!(
        seen["bad_request"]["message"]
            .as_str()
            .unwrap()
            .contains("n must be 1"),
        "{seen}"
    );
    assert!(
        seen["models"]
            .as_array()
            .unwrap()
            .iter()
            .any(|m| m == "sonnet"),
        "aliases are listed: {seen}"
    );

    let requests = server.received_requests().await.unwrap().len();
    assert_eq!(requests, 60, "one upstream request per completion and call");
    assert_eq!(
        *upstream.rejected.lock().unwrap(),
        0,
        "the upstream never had to say 429"
    );
    assert!(*upstream.max_in_window.lock().unwrap() <= 30);
    let status = env.status().unwrap();
    let limiters = status["limiters"].as_array().unwrap();
    assert_eq!(
        limiters.len(),
        1,
        "one limiter for the one key: {limiters:?}"
    );
    assert_eq!(status["http"]["tokens"][0]["calls"], 30);
    drop(shims);
}
