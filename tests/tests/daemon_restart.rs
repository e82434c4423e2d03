//! A daemon that dies under a live session is replaced without the agent
//! noticing: the request in flight gets an error, the next one works.

use std::time::Duration;

use serde_json::json;
use testkit::TestEnv;
use testkit::client::result_text;

#[tokio::test(flavor = "multi_thread")]
async fn next_request_after_daemon_death_succeeds() {
    let env = TestEnv::new(&["echo-plugin", "faulty-plugin"]);
    let mut shim = env.shim().await;
    shim.initialize("survivor").await;
    let first = env.status().unwrap()["pid"].as_u64().unwrap();

    // A call in flight when the daemon dies gets a JSON-RPC error.
    let id = shim
        .send_request(
            "tools/call",
            json!({"name": "get_bot_response", "arguments": {"bot_name": "faulty-slow", "message": "x"}, "_meta": {"progressToken": 1}}),
        )
        .await;
    shim.wait_for(|m| m["method"] == "notifications/progress")
        .await;
    testkit::env::kill9(first);
    let lost = shim.response(&id).await;
    assert_eq!(lost["error"]["code"], -32603, "{lost}");

    // The next request reaches a new daemon, with the session's handshake replayed.
    let answer = shim.ask("echo", "back again").await;
    assert_eq!(result_text(&answer), "back again");
    let status = env.status().unwrap();
    let second = status["pid"].as_u64().unwrap();
    assert_ne!(first, second);
    assert_eq!(status["sessions"][0]["client_name"], "survivor");
    // Nothing of the replay leaked to the client.
    let stray = shim
        .wait_for_within(Duration::from_millis(200), |m| {
            m["id"].as_str().is_some_and(|id| id.contains("replay"))
        })
        .await;
    assert!(
        stray.is_none(),
        "replayed initialize answer leaked: {stray:?}"
    );
}
