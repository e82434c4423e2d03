//! Jobs shared by every session of a daemon: async calls checked and
//! cancelled from another session, calls that outlive the client's timeout,
//! retried calls that pick up the first result, oversized answers, SEP-2663
//! tasks, and jobs that survive a daemon restart.

use std::time::Duration;

use serde_json::{Value, json};
use testkit::client::{error_code, result_text};
use testkit::{McpClient, TestEnv};

fn structured(response: &Value) -> Value {
    response["result"]["structuredContent"].clone()
}

async fn check(shim: &mut McpClient, id: &str) -> Value {
    let r = shim
        .call_tool("check_status", json!({"continuation_id": id}))
        .await;
    structured(&r)
}

async fn wait_for_status(shim: &mut McpClient, id: &str, status: &str) -> Value {
    for _ in 0..200 {
        let seen = check(shim, id).await;
        if seen["status"] == status {
            return seen;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!(
        "job {id} never reached {status}: {:?}",
        check(shim, id).await
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn async_job_started_in_one_session_is_checked_and_cancelled_from_another() {
    let env = TestEnv::new(&["faulty-plugin"]);
    let mut a = env.shim().await;
    a.initialize("session-a").await;
    let started = a
        .call_tool(
            "get_bot_response",
            json!({"bot_name": "faulty-slow", "message": "x", "async": true}),
        )
        .await;
    let started = structured(&started);
    assert_eq!(started["status"], "processing");
    let id = started["continuation_id"].as_str().unwrap().to_string();

    let mut b = env.shim().await;
    b.initialize("session-b").await;
    // B sees A's job streaming.
    let mut seen = check(&mut b, &id).await;
    for _ in 0..100 {
        if seen["progress"]["characters_streamed"]
            .as_u64()
            .unwrap_or(0)
            > 0
        {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
        seen = check(&mut b, &id).await;
    }
    assert_eq!(seen["status"], "processing");
    assert!(
        seen["output"].as_str().unwrap().contains("tick 1"),
        "{seen}"
    );
    let list = structured(&b.call_tool("check_status", json!({})).await);
    assert_eq!(list["jobs"][0]["continuation_id"], id.as_str());

    let cancelled = structured(
        &b.call_tool("cancel_job", json!({"continuation_id": id}))
            .await,
    );
    assert_eq!(cancelled["status"], "cancelled");
    let after = wait_for_status(&mut a, &id, "cancelled").await;
    assert!(after["elapsed_seconds"].as_f64().is_some());
    // What streamed before the cancel is kept.
    let full = structured(
        &a.call_tool(
            "check_status",
            json!({"continuation_id": id, "full_history": true}),
        )
        .await,
    );
    assert!(
        full["output"].as_str().unwrap().contains("tick 1"),
        "{full}"
    );
    env.wait_status(Duration::from_secs(5), |s| s["calls_in_flight"] == 0);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_call_past_the_soft_deadline_keeps_running_and_a_retry_picks_it_up() {
    let count = tempfile::NamedTempFile::new().unwrap();
    let env = TestEnv::new(&["faulty-plugin"])
        .with_var("POE_CODE_SOFT_DEADLINE", "0.3")
        .with_var("FAULTY_COUNT_FILE", count.path().to_string_lossy());
    let mut shim = env.shim().await;
    shim.initialize("impatient").await;
    let args = json!({"bot_name": "faulty-sleep-1500", "message": "same question"});
    let first = shim.call_tool("get_bot_response", args.clone()).await;
    let first = structured(&first);
    assert_eq!(first["status"], "processing", "{first}");
    let id = first["continuation_id"].as_str().unwrap().to_string();
    // The client retries the same call: it waits on the running job
    // (and, being over the deadline again, gets its id once more).
    let second = structured(&shim.call_tool("get_bot_response", args.clone()).await);
    assert_eq!(second["continuation_id"], id.as_str());
    wait_for_status(&mut shim, &id, "completed").await;
    // A retry after completion picks up the answer nobody received... which
    // check_status just delivered, so make the undelivered case explicit:
    let fresh = json!({"bot_name": "faulty-sleep-600", "message": "another"});
    let detached = structured(&shim.call_tool("get_bot_response", fresh.clone()).await);
    let fresh_id = detached["continuation_id"].as_str().unwrap().to_string();
    // It finishes with nobody waiting.
    env.wait_status(Duration::from_secs(10), |s| s["jobs"]["running"] == 0);
    let retried = shim.call_tool("get_bot_response", fresh).await;
    assert_eq!(result_text(&retried), "slept 600 ms");
    let runs = std::fs::read_to_string(count.path()).unwrap();
    assert_eq!(
        runs.lines().count(),
        2,
        "each question paid for once: {runs}"
    );
    let listed = structured(&shim.call_tool("check_status", json!({})).await);
    let ids: Vec<&str> = listed["jobs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|j| j["continuation_id"].as_str().unwrap())
        .collect();
    assert_eq!(ids, [fresh_id.as_str(), id.as_str()]);
}

#[tokio::test(flavor = "multi_thread")]
async fn an_answer_too_large_for_the_client_comes_back_as_head_and_pointer() {
    let env = TestEnv::new(&["echo-plugin"]).with_var("MAX_MCP_OUTPUT_TOKENS", "600");
    let mut shim = env.shim().await;
    shim.initialize("small-client").await;
    let long: String = (0..2000)
        .map(|i| format!("w{i}"))
        .collect::<Vec<_>>()
        .join(" ");
    let answer = shim.ask("echo", &long).await;
    assert_ne!(answer["result"]["isError"], true);
    let blocks = answer["result"]["content"].as_array().unwrap();
    let head = blocks[0]["text"].as_str().unwrap();
    assert_eq!(head.chars().count(), 2400);
    let note = blocks[1]["text"].as_str().unwrap();
    assert!(note.contains("truncated"), "{note}");
    let id = note
        .split('"')
        .find(|s| s.starts_with("job_"))
        .expect("job id in the note")
        .to_string();
    // Page through the stored whole.
    let mut text = String::new();
    let mut offset = 0u64;
    loop {
        let page = structured(
            &shim
                .call_tool(
                    "check_status",
                    json!({"continuation_id": id, "full_history": true, "offset": offset}),
                )
                .await,
        );
        text.push_str(page["output"].as_str().unwrap());
        match page["next_offset"].as_u64() {
            Some(next) => offset = next,
            None => break,
        }
    }
    assert_eq!(text, long);
}

#[tokio::test(flavor = "multi_thread")]
async fn clients_that_speak_tasks_get_a_task_for_async_calls() {
    let env = TestEnv::new(&["faulty-plugin"]);
    let mut shim = env.shim().await;
    shim.request(
        "initialize",
        json!({
            "protocolVersion": "2025-11-25",
            "capabilities": {"extensions": {"io.modelcontextprotocol/tasks": {}}},
            "clientInfo": {"name": "tasks-client", "version": "1"}
        }),
    )
    .await;
    shim.send(&json!({"jsonrpc": "2.0", "method": "notifications/initialized"}))
        .await;
    let created = shim
        .call_tool(
            "get_bot_response",
            json!({"bot_name": "faulty-sleep-300", "message": "x", "async": true}),
        )
        .await;
    assert_eq!(created["result"]["resultType"], "task", "{created}");
    let task_id = created["result"]["taskId"].as_str().unwrap().to_string();
    let mut last = Value::Null;
    for _ in 0..100 {
        last = shim.request("tasks/get", json!({"taskId": task_id})).await;
        if last["result"]["status"] == "completed" {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(last["result"]["status"], "completed", "{last}");
    assert_eq!(
        last["result"]["result"]["content"][0]["text"],
        "slept 300 ms"
    );

    // The same job is visible through check_status too.
    let status = structured(
        &shim
            .call_tool("check_status", json!({"continuation_id": task_id}))
            .await,
    );
    assert_eq!(status["status"], "completed");

    let slow = shim
        .call_tool(
            "get_bot_response",
            json!({"bot_name": "faulty-slow", "message": "y", "async": true}),
        )
        .await;
    let slow_id = slow["result"]["taskId"].as_str().unwrap().to_string();
    let ack = shim
        .request("tasks/cancel", json!({"taskId": slow_id}))
        .await;
    assert!(ack.get("error").is_none(), "{ack}");
    for _ in 0..100 {
        last = shim.request("tasks/get", json!({"taskId": slow_id})).await;
        if last["result"]["status"] == "cancelled" {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(last["result"]["status"], "cancelled", "{last}");
}

/// Whether the store's files (the database and its write-ahead log) hold
/// `needle`: SQLite keeps text as it is, so checkpointed output shows here.
fn store_holds(env: &TestEnv, needle: &str) -> bool {
    ["state.db", "state.db-wal"].iter().any(|file| {
        std::fs::read(env.path(file))
            .unwrap_or_default()
            .windows(needle.len())
            .any(|w| w == needle.as_bytes())
    })
}

#[tokio::test(flavor = "multi_thread")]
async fn jobs_survive_a_daemon_restart() {
    let env = TestEnv::new(&["faulty-plugin", "echo-plugin"]);
    let mut shim = env.shim().await;
    shim.initialize("restart").await;
    let done = shim
        .call_tool(
            "get_bot_response",
            json!({"bot_name": "echo", "message": "kept answer", "async": true}),
        )
        .await;
    let done_id = structured(&done)["continuation_id"]
        .as_str()
        .unwrap()
        .to_string();
    wait_for_status(&mut shim, &done_id, "completed").await;
    let running = shim
        .call_tool(
            "get_bot_response",
            json!({"bot_name": "faulty-slow", "message": "x", "async": true}),
        )
        .await;
    let running_id = structured(&running)["continuation_id"]
        .as_str()
        .unwrap()
        .to_string();
    // Let it stream and checkpoint at least once.
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    while !store_holds(&env, "tick 1") {
        assert!(std::time::Instant::now() < deadline, "never checkpointed");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    testkit::env::kill9(env.status().unwrap()["pid"].as_u64().unwrap());

    let mut after = env.shim().await;
    after.initialize("after-restart").await;
    let kept = check(&mut after, &done_id).await;
    assert_eq!(kept["status"], "completed");
    assert_eq!(kept["result"], "kept answer");
    let lost = check(&mut after, &running_id).await;
    assert_eq!(lost["status"], "failed", "{lost}");
    assert_eq!(lost["error"], "daemon restarted");
    let full = structured(
        &after
            .call_tool(
                "check_status",
                json!({"continuation_id": running_id, "full_history": true}),
            )
            .await,
    );
    assert!(
        full["output"].as_str().unwrap().contains("tick 1"),
        "streamed text kept: {full}"
    );
    let status = env.status().unwrap();
    assert_eq!(status["jobs"]["failed"], 1);
    assert!(status["store"].as_str().unwrap().ends_with("state.db"));
}

#[tokio::test(flavor = "multi_thread")]
async fn a_corrupt_store_is_reported_and_kept_while_calls_still_work() {
    let env = TestEnv::new(&["echo-plugin"]);
    std::fs::create_dir_all(env.home()).unwrap();
    let garbage = vec![7u8; 4096];
    std::fs::write(env.path("state.db"), &garbage).unwrap();
    let mut shim = env.shim().await;
    shim.initialize("corrupt").await;
    let answer = shim.ask("echo", "still works").await;
    assert_eq!(result_text(&answer), "still works");
    let status = env.status().unwrap();
    let error = status["store_error"]
        .as_str()
        .expect("store error reported");
    assert!(error.contains("state.db"), "{error}");
    assert_eq!(
        std::fs::read(env.path("state.db")).unwrap(),
        garbage,
        "never replaced"
    );
    let missing = shim
        .call_tool("check_status", json!({"continuation_id": "job_nope"}))
        .await;
    assert_eq!(error_code(&missing).as_deref(), Some("INVALID_ARGUMENT"));
}
