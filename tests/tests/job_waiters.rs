//! A job shared by identical calls belongs to all their callers: one caller
//! leaving (cancel, disconnect) never stops it for the others, the last one
//! leaving does; a job runs no longer than its deadline and is then not
//! retried; streamed progress is coalesced and never follows the result.

use std::time::Duration;

use serde_json::{Value, json};
use testkit::client::{error_code, result_text};
use testkit::{McpClient, TestEnv};

async fn started_shim(env: &TestEnv, name: &str) -> McpClient {
    let mut shim = env.shim().await;
    shim.initialize(name).await;
    shim
}

fn runs(count: &tempfile::NamedTempFile) -> usize {
    std::fs::read_to_string(count.path())
        .unwrap_or_default()
        .lines()
        .count()
}

/// Waits until the daemon reports a running job with `waiters` callers.
fn wait_for_running(env: &TestEnv, running: u64) {
    env.wait_status(Duration::from_secs(20), |s| {
        s["jobs"]["running"].as_u64() == Some(running)
    });
}

async fn cancel(shim: &mut McpClient, id: &Value) {
    shim.send(&json!({
        "jsonrpc": "2.0",
        "method": "notifications/cancelled",
        "params": {"requestId": id, "reason": "test"}
    }))
    .await;
}

#[tokio::test(flavor = "multi_thread")]
async fn one_caller_leaving_does_not_stop_a_job_another_waits_for() {
    let count = tempfile::NamedTempFile::new().unwrap();
    let env = TestEnv::new(&["faulty-plugin"])
        .with_var("FAULTY_COUNT_FILE", count.path().to_string_lossy());
    let mut a = started_shim(&env, "agent-a").await;
    let mut b = started_shim(&env, "agent-b").await;
    let mut c = started_shim(&env, "agent-c").await;
    let args = json!({"name": "get_bot_response",
        "arguments": {"bot_name": "faulty-sleep-2000", "message": "shared question"}});
    let a_id = a.send_request("tools/call", args.clone()).await;
    wait_for_running(&env, 1);
    let b_id = b.send_request("tools/call", args.clone()).await;
    let c_id = c.send_request("tools/call", args.clone()).await;
    // Let b and c attach before a leaves: the status shows the waiters.
    env.wait_status(Duration::from_secs(20), |s| {
        s["sessions"]
            .as_array()
            .is_some_and(|all| all.iter().filter(|x| x["calls"] == 1).count() == 3)
    });
    cancel(&mut a, &a_id).await;
    // c's client goes away altogether.
    c.close_stdin();
    let _ = c_id;
    let answer = b.response(&b_id).await;
    assert_eq!(result_text(&answer), "slept 2000 ms", "{answer}");
    assert_eq!(runs(&count), 1, "one run served every caller");
}

#[tokio::test(flavor = "multi_thread")]
async fn the_job_stops_when_its_last_caller_leaves() {
    let env = TestEnv::new(&["faulty-plugin"]);
    let mut a = started_shim(&env, "agent-a").await;
    let mut b = started_shim(&env, "agent-b").await;
    let args = json!({"name": "get_bot_response",
        "arguments": {"bot_name": "faulty-slow", "message": "nobody will wait"}});
    let a_id = a.send_request("tools/call", args.clone()).await;
    wait_for_running(&env, 1);
    let b_id = b.send_request("tools/call", args).await;
    env.wait_status(Duration::from_secs(20), |s| {
        s["sessions"]
            .as_array()
            .is_some_and(|all| all.iter().filter(|x| x["calls"] == 1).count() == 2)
    });
    cancel(&mut a, &a_id).await;
    cancel(&mut b, &b_id).await;
    let status = env.wait_status(Duration::from_secs(20), |s| {
        s["jobs"]["running"] == 0 && s["jobs"]["cancelled"] == 1
    });
    assert_eq!(status["jobs"]["completed"], 0, "{status}");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_call_past_its_deadline_fails_once_and_is_not_retried() {
    let count = tempfile::NamedTempFile::new().unwrap();
    let env = TestEnv::new(&["faulty-plugin"])
        .with_var("POE_CODE_DEADLINES", "text=1")
        .with_var("FAULTY_COUNT_FILE", count.path().to_string_lossy());
    let mut shim = started_shim(&env, "patient").await;
    let answer = shim.ask("faulty-sleep-30000", "too slow").await;
    assert_eq!(
        error_code(&answer).as_deref(),
        Some("PROVIDER_UNAVAILABLE"),
        "{answer}"
    );
    let text = result_text(&answer);
    assert!(text.contains("deadline of 1 s"), "{text}");
    assert!(text.contains("[deadlines] \"text\""), "{text}");
    assert_eq!(runs(&count), 1, "a timed-out call is never re-sent");
    let status = env.status().expect("daemon runs");
    assert_eq!(status["jobs"]["failed"], 1, "{status}");
}

#[tokio::test(flavor = "multi_thread")]
async fn streamed_progress_is_coalesced_and_never_follows_the_result() {
    let env = TestEnv::new(&["faulty-plugin"]);
    let mut shim = started_shim(&env, "streamer").await;
    let id = shim
        .send_request(
            "tools/call",
            json!({
                "name": "get_bot_response",
                "arguments": {"bot_name": "faulty-stream-1500", "message": "stream"},
                "_meta": {"progressToken": "p1"}
            }),
        )
        .await;
    let answer = shim.response(&id).await;
    let full = result_text(&answer);
    let deltas = full.lines().count();
    assert!(deltas >= 20, "the plugin streamed {deltas} deltas");
    let progress = shim.take_notifications("notifications/progress");
    let texts: Vec<&str> = progress
        .iter()
        .map(|n| n["params"]["message"].as_str().unwrap_or_default())
        .filter(|m| !m.starts_with("[poe-code]"))
        .collect();
    // One notification per 250 ms at most: a 1.5 s stream gives a handful,
    // not one per delta.
    assert!(
        !texts.is_empty() && texts.len() <= 10,
        "{} text notifications for {deltas} deltas",
        texts.len()
    );
    let streamed: String = texts.concat();
    assert!(
        full.starts_with(&streamed),
        "progress is the answer's beginning: {streamed:?} vs {full:?}"
    );
    let values: Vec<f64> = progress
        .iter()
        .map(|n| n["params"]["progress"].as_f64().unwrap())
        .collect();
    assert!(values.windows(2).all(|w| w[0] < w[1]), "{values:?}");
    // The result waited for the client to answer a ping sent after the
    // last notification, and nothing for that request arrives after it.
    assert_eq!(shim.pings_answered(), 1);
    let ping = shim.request("ping", json!({})).await;
    assert!(ping.get("result").is_some(), "{ping}");
    let late = shim.take_notifications("notifications/progress");
    assert!(late.is_empty(), "progress after the result: {late:?}");
}
