//! The usage ledger end to end: two MCP clients call through real shims,
//! the daemon and the real poe-openai plugin (against the local stand-in for
//! Poe), one call is retried until it fails and one is cancelled, and
//! `poe-code usage` (table and `--json`) and `poe-coded status` report each
//! upstream request by client, model and day with the tokens the stand-in
//! counted and the points of the stand-in's points history, matched to the
//! right requests despite its clock running ahead; a usage API that refuses
//! the key or sends a corrupt page leaves the ledger as it was and says why.

use std::time::Duration;

use fake_poe::FakePoe;
use serde_json::{Value, json};
use testkit::client::result_text;
use testkit::{McpClient, TestEnv};
use wiremock::matchers::{method, path};
use wiremock::{Mock, ResponseTemplate};

async fn client(env: &TestEnv, name: &str) -> McpClient {
    let mut shim = env.shim().await;
    shim.initialize(name).await;
    shim
}

fn usage(env: &TestEnv, args: &[&str]) -> Value {
    let mut all = vec!["usage", "--json"];
    all.extend_from_slice(args);
    let out = env.run_ok("poe-code", &all);
    serde_json::from_slice(&out.stdout).expect("usage --json is JSON")
}

fn group<'a>(report: &'a Value, key: &str) -> &'a Value {
    report["groups"]
        .as_array()
        .unwrap()
        .iter()
        .find(|g| g["key"] == key)
        .unwrap_or_else(|| panic!("no group {key} in {report}"))
}

#[tokio::test(flavor = "multi_thread")]
async fn every_upstream_request_is_in_the_ledger_by_client_model_and_day() {
    let fake = FakePoe::start().await;
    let env = TestEnv::new(&["poe-openai"])
        .with_var("POE_BASE_URL", fake.base_url())
        .with_var("POE_API_KEY", fake_poe::FAKE_API_KEY);
    let mut claude = client(&env, "claude-code").await;
    let mut codex = client(&env, "codex").await;

    let a = claude.ask("GPT-5", "first question").await;
    let b = claude.ask("GPT-5", "second question").await;
    let c = codex.ask("Claude-Sonnet-4.5", "third question").await;
    for answer in [&a, &b, &c] {
        assert!(!result_text(answer).is_empty(), "{answer}");
    }
    // A 500 is retried (each attempt may cost, so each is a row) and fails.
    let failed = codex.ask("fake-500", "this one breaks").await;
    assert_eq!(failed["result"]["isError"], true, "{failed}");
    // A cancelled call is a row too.
    let id = codex
        .send_request(
            "tools/call",
            json!({"name": "get_bot_response", "arguments": {"bot_name": "fake-slow", "message": "never mind"}}),
        )
        .await;
    env.wait_status(Duration::from_secs(10), |s| s["calls_in_flight"] == 1);
    codex
        .send(&json!({"jsonrpc": "2.0", "method": "notifications/cancelled", "params": {"requestId": id}}))
        .await;
    env.wait_status(Duration::from_secs(10), |s| s["calls_in_flight"] == 0);

    // The tokens the stand-in reported for the three answers.
    let tokens = |answer: &Value| {
        let usage = &answer["result"]["_meta"]["poe-code/usage"];
        (
            usage["prompt_tokens"].as_u64().unwrap(),
            usage["completion_tokens"].as_u64().unwrap(),
        )
    };
    let (claude_in, claude_out) = (tokens(&a).0 + tokens(&b).0, tokens(&a).1 + tokens(&b).1);

    // The usage API first refuses the key, then sends a corrupt page: each
    // time the report says why and no points are stored.
    Mock::given(method("GET"))
        .and(path("/usage/points_history"))
        .respond_with(ResponseTemplate::new(401).set_body_json(json!({"error": {"message": "no"}})))
        .up_to_n_times(1)
        .with_priority(1)
        .mount(fake.server())
        .await;
    Mock::given(method("GET"))
        .and(path("/usage/points_history"))
        .respond_with(
            ResponseTemplate::new(200).set_body_json(json!({"data": [{"bot_name": "GPT-5"}]})),
        )
        .up_to_n_times(1)
        .with_priority(2)
        .mount(fake.server())
        .await;
    env.wait_status(Duration::from_secs(10), |s| {
        s["usage_today"]["requests"] == 9
    });
    let refused = usage(&env, &[]);
    assert_eq!(refused["points"]["available"], false, "{refused}");
    assert!(
        refused["points"]["reason"]
            .as_str()
            .unwrap()
            .contains("refused the API key"),
        "{refused}"
    );
    assert_eq!(refused["balance"]["available"], true, "{refused}");
    let corrupt = usage(&env, &[]);
    assert!(
        corrupt["points"]["reason"]
            .as_str()
            .unwrap()
            .contains("corrupt points history page was refused"),
        "{corrupt}"
    );
    assert_eq!(corrupt["totals"]["priced"], 0, "{corrupt}");

    // The ledger is written in batches; wait for the last row.
    let report = {
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        loop {
            let report = usage(&env, &["--by", "client"]);
            if report["totals"]["cancelled"] == 1 || std::time::Instant::now() > deadline {
                break report;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    };
    let by_claude = group(&report, "claude-code");
    assert_eq!(by_claude["requests"], 2, "{report}");
    assert_eq!(by_claude["prompt_tokens"], claude_in, "{report}");
    assert_eq!(by_claude["completion_tokens"], claude_out, "{report}");
    let by_codex = group(&report, "codex");
    // One answer, five attempts at fake-500 (the first and four retries),
    // one cancelled call.
    assert_eq!(by_codex["requests"], 7, "{report}");
    assert_eq!(by_codex["errors"], 5, "{report}");
    assert_eq!(by_codex["retried"], 4, "{report}");
    assert_eq!(by_codex["cancelled"], 1, "{report}");
    assert_eq!(report["totals"]["requests"], 9, "{report}");

    // Points: the stand-in charged each answered call (and the cancelled
    // one, which it had started); the 500s cost nothing.
    assert_eq!(report["points"]["available"], true, "{report}");
    let history = fake.points_history();
    assert_eq!(history.len(), 4, "{history:?}");
    let cost = |bots: &[&str]| -> i64 {
        history
            .iter()
            .filter(|e| bots.contains(&e.bot_name.as_str()))
            .map(|e| e.cost_points)
            .sum()
    };
    assert_eq!(by_claude["points"], cost(&["GPT-5"]), "{report}");
    assert_eq!(by_claude["priced"], 2, "{report}");
    assert_eq!(
        by_codex["points"],
        cost(&["Claude-Sonnet-4.5", "fake-slow"]),
        "{report}"
    );
    assert_eq!(by_codex["priced"], 2, "{report}");
    let spent: i64 = history.iter().map(|e| e.cost_points).sum();
    assert_eq!(
        report["balance"]["current_point_balance"],
        fake_poe::STARTING_BALANCE - spent,
        "{report}"
    );
    // Matched once: a second run matches nothing new and changes nothing.
    let again = usage(&env, &["--by", "client"]);
    assert_eq!(again["points"]["matched_now"], 0, "{again}");
    assert_eq!(again["totals"], report["totals"], "{again}");
    // With a daemon running, the daemon reads Poe (through its limiter, with
    // its key): a `poe-code usage` that has no key of its own still gets
    // the balance.
    let mut keyless = env.command("poe-code");
    keyless
        .args(["usage", "--json"])
        .env_remove("POE_API_KEY")
        .env_remove("POE_BASE_URL");
    let out = keyless.output().expect("run poe-code usage");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let via_daemon: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(via_daemon["balance"]["available"], true, "{via_daemon}");
    // check_status shows a finished job's tokens and, now, its points.
    let job = a["result"]["_meta"]["poe-code/continuation_id"]
        .as_str()
        .expect("job id");
    let status = claude
        .call_tool("check_status", json!({"continuation_id": job}))
        .await;
    let job_usage = &status["result"]["structuredContent"]["usage"];
    let first_gpt5 = history.iter().find(|e| e.bot_name == "GPT-5").unwrap();
    assert_eq!(job_usage["points"], first_gpt5.cost_points, "{status}");
    assert_eq!(job_usage["points_priced"], 1, "{status}");
    assert_eq!(job_usage["prompt_tokens"], tokens(&a).0, "{status}");

    let by_model = usage(&env, &["--by", "model"]);
    assert_eq!(group(&by_model, "GPT-5")["requests"], 2, "{by_model}");
    assert_eq!(group(&by_model, "fake-500")["requests"], 5, "{by_model}");
    let by_day = usage(&env, &["--by", "day", "--since", "1d"]);
    assert_eq!(by_day["groups"].as_array().unwrap().len(), 1, "{by_day}");

    // The table, as a person reads it.
    let table =
        String::from_utf8(env.run_ok("poe-code", &["usage", "--by", "client"]).stdout).unwrap();
    assert!(table.contains("claude-code"), "{table}");
    assert!(table.starts_with("Poe balance: "), "{table}");
    assert!(table.contains("4 of 9 requests have Poe points"), "{table}");
    assert!(
        table
            .lines()
            .any(|l| l.starts_with("total") && l.contains(" 9 ")),
        "{table}"
    );
    // Bad input is refused with the reason.
    let bad = env.run("poe-code", &["usage", "--since", "a week"]);
    assert!(!bad.status.success());
    assert!(String::from_utf8_lossy(&bad.stderr).contains("expected e.g. 7d"));

    let status = env.status().expect("daemon");
    assert_eq!(status["usage_today"]["requests"], 9, "{status}");
    let human = String::from_utf8(env.run_ok("poe-coded", &["status"]).stdout).unwrap();
    assert!(human.contains("today:      9 requests"), "{human}");
}

/// An env whose daemon matches points every 300 ms, with `config` written.
async fn budget_env(config: &str) -> (FakePoe, TestEnv) {
    let fake = FakePoe::start().await;
    let env = TestEnv::new(&["poe-openai"])
        .with_var("POE_BASE_URL", fake.base_url())
        .with_var("POE_API_KEY", fake_poe::FAKE_API_KEY)
        .with_var("POE_CODE_POINTS_SYNC_SECS", "0.3");
    env.write_config(config);
    (fake, env)
}

fn error_code(answer: &Value) -> Option<String> {
    testkit::client::error_code(answer)
}

#[tokio::test(flavor = "multi_thread")]
async fn a_daily_budget_refuses_the_next_call_but_not_the_running_one() {
    let (fake, env) = budget_env("[budget]\ndaily_points = 1\n").await;
    let mut agent = client(&env, "claude-code").await;
    // A call that is still running when the budget is reached.
    let running = agent
        .send_request(
            "tools/call",
            json!({"name": "get_bot_response", "arguments": {"bot_name": "fake-slow-4000", "message": "long one"}}),
        )
        .await;
    let first = agent.ask("GPT-5", "a question").await;
    assert!(!result_text(&first).is_empty(), "{first}");
    // The daemon matches Poe's history on its own while calls are made.
    env.wait_status(Duration::from_secs(20), |s| {
        s["usage_today"]["points"].as_i64().unwrap_or(0) >= 1
    });
    let refused = agent.ask("GPT-5", "one more").await;
    assert_eq!(
        error_code(&refused).as_deref(),
        Some("BUDGET_EXCEEDED"),
        "{refused}"
    );
    assert!(
        result_text(&refused).contains("daily budget of 1"),
        "{refused}"
    );
    // The running call finishes with its answer.
    let done = agent.response(&running).await;
    assert_eq!(
        result_text(&done),
        "Echo from fake-slow-4000: long one",
        "{done}"
    );
    // The refused call never reached Poe.
    let asked: Vec<String> = fake
        .chat_requests()
        .await
        .iter()
        .map(|r| r["messages"].to_string())
        .collect();
    assert!(!asked.iter().any(|m| m.contains("one more")), "{asked:?}");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_client_budget_stops_only_that_client() {
    let (_fake, env) =
        budget_env("[budget]\ndaily_points = 1000000\n\n[budget.clients]\nci = 1\n").await;
    let mut ci = client(&env, "ci").await;
    let mut dev = client(&env, "claude-code").await;
    let first = ci.ask("GPT-5", "from ci").await;
    assert!(!result_text(&first).is_empty(), "{first}");
    env.wait_status(Duration::from_secs(20), |s| {
        s["usage_today"]["points"].as_i64().unwrap_or(0) >= 1
    });
    let refused = ci.ask("GPT-5", "from ci again").await;
    assert_eq!(
        error_code(&refused).as_deref(),
        Some("BUDGET_EXCEEDED"),
        "{refused}"
    );
    assert!(result_text(&refused).contains("client ci"), "{refused}");
    let fine = dev.ask("GPT-5", "from a developer").await;
    assert!(!result_text(&fine).is_empty(), "{fine}");
    assert_eq!(fine["result"]["isError"], false, "{fine}");
}

#[tokio::test(flavor = "multi_thread")]
async fn usage_json_keeps_its_shape() {
    let fake = FakePoe::start().await;
    let env = TestEnv::new(&["poe-openai"])
        .with_var("POE_BASE_URL", fake.base_url())
        .with_var("POE_API_KEY", fake_poe::FAKE_API_KEY);
    let mut agent = client(&env, "snapshot-client").await;
    agent.ask("GPT-5", "one two three").await;
    agent.ask("Claude-Sonnet-4.5", "four five").await;
    env.wait_status(Duration::from_secs(10), |s| {
        s["usage_today"]["requests"] == 2
    });
    let report = usage(&env, &["--by", "model"]);
    // Times and durations differ from run to run; everything else is fixed.
    insta::assert_json_snapshot!(report, {
        ".since" => "[since]",
        ".until" => "[until]",
        ".**.duration_ms" => "[ms]",
    });
}
