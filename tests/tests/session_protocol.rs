//! One MCP session through a real shim and daemon: both protocol lifecycles,
//! progress, cancellation, and every kind of bad input answered with an
//! error while the session keeps working.

use std::time::Duration;

use serde_json::{Value, json};
use testkit::TestEnv;
use testkit::client::{error_code, is_tool_error, result_text};

fn echo_call(message: &str) -> Value {
    json!({"name": "get_bot_response", "arguments": {"bot_name": "echo", "message": message}})
}

#[tokio::test(flavor = "multi_thread")]
async fn lists_the_tools_with_strict_schemas() {
    let env = TestEnv::new(&["echo-plugin"]);
    let mut shim = env.shim().await;
    shim.initialize("tools").await;
    let list = shim.request("tools/list", Value::Null).await;
    let tools = list["result"]["tools"].as_array().unwrap();
    let names: Vec<&str> = tools.iter().map(|t| t["name"].as_str().unwrap()).collect();
    assert_eq!(
        names,
        [
            "get_bot_response",
            "generate_image",
            "generate_video",
            "generate_audio",
            "chat",
            "consensus",
            "check_status",
            "cancel_job",
            "list_models"
        ]
    );
    for tool in tools {
        assert_eq!(tool["inputSchema"]["type"], "object");
        let text = tool["inputSchema"].to_string();
        assert!(!text.contains("\"null\""), "nullable type in {text}");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn stateless_2026_protocol_works_without_initialize() {
    let env = TestEnv::new(&["echo-plugin"]);
    let mut shim = env.shim().await;
    let meta = json!({
        "io.modelcontextprotocol/protocolVersion": "2026-07-28",
        "io.modelcontextprotocol/clientCapabilities": {},
        "io.modelcontextprotocol/clientInfo": {"name": "stateless-client", "version": "2.0"}
    });
    let discover = shim
        .request("server/discover", json!({"_meta": meta}))
        .await;
    let versions = discover["result"]["supportedVersions"].to_string();
    assert!(versions.contains("2026-07-28"), "{discover}");
    assert!(versions.contains("2025-11-25"), "{discover}");

    let call = shim
        .request(
            "tools/call",
            json!({"name": "get_bot_response", "arguments": {"bot_name": "echo", "message": "no handshake"}, "_meta": meta}),
        )
        .await;
    assert_eq!(result_text(&call), "no handshake", "{call}");
    let status = env.status().unwrap();
    assert_eq!(status["sessions"][0]["client_name"], "stateless-client");
}

#[tokio::test(flavor = "multi_thread")]
async fn malformed_first_discover_gets_an_error_and_the_session_lives() {
    let env = TestEnv::new(&["echo-plugin"]);
    let mut shim = env.shim().await;
    let bad = shim
        .request("server/discover", json!({"_meta": "not an object"}))
        .await;
    assert!(bad.get("error").is_some(), "{bad}");
    let bad = shim.request("server/discover", json!({})).await;
    assert!(bad.get("error").is_some(), "{bad}");
    let init = shim.initialize("after-bad-discover").await;
    assert_eq!(init["result"]["serverInfo"]["name"], "poe-code");
}

#[tokio::test(flavor = "multi_thread")]
async fn bad_input_is_answered_and_the_session_keeps_working() {
    let env = TestEnv::new(&["echo-plugin"]);
    let mut shim = env.shim().await;
    shim.initialize("bad-input").await;

    shim.send_line("this is not json").await;
    let reply = shim.wait_for(|m| m["error"]["code"] == -32700).await;
    assert!(reply["id"].is_null());

    shim.send_line(r#"[{"jsonrpc":"2.0","id":99,"method":"ping"}]"#)
        .await;
    let reply = shim
        .wait_for(|m| m["error"]["code"] == -32600 && m["id"].is_null())
        .await;
    assert!(
        reply["error"]["message"]
            .as_str()
            .unwrap()
            .contains("batch")
    );

    let unknown = shim
        .request(
            "tools/call",
            json!({"name": "no_such_tool", "arguments": {}}),
        )
        .await;
    assert_eq!(unknown["error"]["code"], -32602, "{unknown}");

    let wrong_type = shim
        .request(
            "tools/call",
            json!({"name": "get_bot_response", "arguments": {"bot_name": 42, "message": "x"}}),
        )
        .await;
    assert!(is_tool_error(&wrong_type), "{wrong_type}");
    assert_eq!(error_code(&wrong_type).as_deref(), Some("INVALID_ARGUMENT"));

    let missing = shim
        .request(
            "tools/call",
            json!({"name": "get_bot_response", "arguments": {"bot_name": "echo"}}),
        )
        .await;
    assert_eq!(error_code(&missing).as_deref(), Some("INVALID_ARGUMENT"));

    let unknown_model = shim
        .request(
            "tools/call",
            json!({"name": "get_bot_response", "arguments": {"bot_name": "no-such-bot", "message": "x"}}),
        )
        .await;
    assert_eq!(
        error_code(&unknown_model).as_deref(),
        Some("MODEL_NOT_FOUND")
    );

    let bad_params = shim.request("tools/call", json!({"arguments": {}})).await;
    assert_eq!(bad_params["error"]["code"], -32602, "{bad_params}");

    let unknown_method = shim.request("no/such/method", json!({})).await;
    assert_eq!(unknown_method["error"]["code"], -32601, "{unknown_method}");

    // Over rmcp's 16 MiB limit: discarded with an error, not silently.
    let huge = format!(
        r#"{{"jsonrpc":"2.0","id":"huge","method":"tools/call","params":{{"name":"get_bot_response","arguments":{{"bot_name":"echo","message":"{}"}}}}}}"#,
        "x".repeat(17 * 1024 * 1024)
    );
    shim.send_line(&huge).await;
    let reply = shim
        .wait_for(|m| {
            m["error"]["code"] == -32600
                && m["error"]["message"]
                    .as_str()
                    .is_some_and(|s| s.contains("exceeds"))
        })
        .await;
    assert!(reply["id"].is_null());

    let still = shim.request("tools/call", echo_call("still alive")).await;
    assert_eq!(result_text(&still), "still alive");
    assert!(shim.non_json.try_recv().is_err());
}

#[tokio::test(flavor = "multi_thread")]
async fn request_before_initialized_notification_is_tolerated() {
    let env = TestEnv::new(&["echo-plugin"]);
    let mut shim = env.shim().await;
    shim.request(
        "initialize",
        json!({"protocolVersion": "2025-11-25", "capabilities": {}, "clientInfo": {"name": "eager", "version": "1"}}),
    )
    .await;
    // No notifications/initialized yet.
    let answer = shim.request("tools/call", echo_call("eager call")).await;
    assert_eq!(result_text(&answer), "eager call");
}

#[tokio::test(flavor = "multi_thread")]
async fn streamed_text_arrives_as_progress_notifications() {
    let env = TestEnv::new(&["echo-plugin"]);
    let mut shim = env.shim().await;
    shim.initialize("progress").await;
    let mut params = echo_call("one two three four");
    // 300 ms before each word: slower than the 250 ms progress cadence.
    params["arguments"]["params"] = json!({"delay_ms": "300"});
    params["_meta"] = json!({"progressToken": "tok-1"});
    let answer = shim.request("tools/call", params).await;
    assert_eq!(result_text(&answer), "one two three four");
    let progress = shim.take_notifications("notifications/progress");
    let messages: Vec<&str> = progress
        .iter()
        .map(|p| {
            assert_eq!(p["params"]["progressToken"], "tok-1");
            p["params"]["message"].as_str().unwrap()
        })
        .collect();
    // Words arrive one by one; what is still buffered when the answer is
    // ready is not sent (the result carries the whole text).
    assert!(messages.len() >= 2, "{messages:?}");
    assert!(
        "one two three four".starts_with(&messages.concat()),
        "{messages:?}"
    );
    let values: Vec<f64> = progress
        .iter()
        .map(|p| p["params"]["progress"].as_f64().unwrap())
        .collect();
    assert!(
        values.windows(2).all(|w| w[0] < w[1]),
        "progress must increase: {values:?}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn client_cancellation_stops_the_plugin_call() {
    let env = TestEnv::new(&["faulty-plugin", "echo-plugin"]);
    let mut shim = env.shim().await;
    shim.initialize("cancel").await;
    let id = shim
        .send_request(
            "tools/call",
            json!({"name": "get_bot_response", "arguments": {"bot_name": "faulty-slow", "message": "x"}, "_meta": {"progressToken": 7}}),
        )
        .await;
    // Wait until the plugin is streaming.
    shim.wait_for(|m| m["method"] == "notifications/progress")
        .await;
    assert_eq!(env.status().unwrap()["calls_in_flight"], 1);
    shim.send(&json!({"jsonrpc": "2.0", "method": "notifications/cancelled", "params": {"requestId": id, "reason": "user"}}))
        .await;
    env.wait_status(Duration::from_secs(5), |s| s["calls_in_flight"] == 0);
    // Per spec no response follows a cancellation; the session still works.
    let answer = shim.request("tools/call", echo_call("after cancel")).await;
    assert_eq!(result_text(&answer), "after cancel");
    assert!(
        env.daemon_log().contains("call cancelled"),
        "daemon log does not show the cancellation"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn stdin_eof_cancels_the_sessions_calls_and_the_shim_exits() {
    let env = TestEnv::new(&["faulty-plugin"]);
    let mut shim = env.shim().await;
    shim.initialize("eof").await;
    shim.send_request(
        "tools/call",
        json!({"name": "get_bot_response", "arguments": {"bot_name": "faulty-slow", "message": "x"}, "_meta": {"progressToken": 1}}),
    )
    .await;
    shim.wait_for(|m| m["method"] == "notifications/progress")
        .await;
    shim.close_stdin();
    let status = shim
        .wait_exit(Duration::from_secs(5))
        .await
        .expect("shim exits");
    assert!(status.success());
    env.wait_status(Duration::from_secs(15), |s| {
        s["calls_in_flight"] == 0 && s["sessions"].as_array().is_some_and(|v| v.is_empty())
    });
}

#[tokio::test(flavor = "multi_thread")]
async fn a_long_silent_call_keeps_sending_progress_heartbeats() {
    // Clients give up after 60 s without progress; the daemon reports every
    // few seconds (5 s by default; 0.2 s here to keep the test short).
    let env = TestEnv::new(&["faulty-plugin"]).with_var("POE_CODE_PROGRESS_HEARTBEAT", "0.2");
    let mut shim = env.shim().await;
    shim.initialize("heartbeat").await;
    let answer = shim
        .request(
            "tools/call",
            json!({"name": "get_bot_response", "arguments": {"bot_name": "faulty-sleep-1200", "message": "x"}, "_meta": {"progressToken": "hb"}}),
        )
        .await;
    assert_eq!(result_text(&answer), "slept 1200 ms");
    let beats: Vec<Value> = shim
        .take_notifications("notifications/progress")
        .into_iter()
        .filter(|n| {
            n["params"]["message"]
                .as_str()
                .is_some_and(|m| m.starts_with("[poe-code] still working"))
        })
        .collect();
    assert!(
        beats.len() >= 3,
        "expected several heartbeats, got {beats:?}"
    );
    assert!(beats.iter().all(|b| b["params"]["progressToken"] == "hb"));
}
