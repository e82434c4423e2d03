//! The `consensus` tool end to end: real shims, the real daemon and real
//! plugins (poe-openai against the local stand-in for Poe's API, the echo
//! plugin) loaded from their .so files. Three models where one fails;
//! cross-feedback requests that carry the other answers; progress naming
//! who answered; a follow-up round after the daemon is killed; models from
//! two plugins, exported one file per model and phase; cancel mid-phase
//! keeping what arrived; bad input refused before any request; AI titles
//! and summaries on, off and failing, and for a running job.

use std::time::Duration;

use fake_poe::FakePoe;
use serde_json::{Value, json};
use testkit::client::{error_code, result_text};
use testkit::{McpClient, TestEnv};
use wiremock::matchers::{body_partial_json, method, path};
use wiremock::{Mock, ResponseTemplate};

async fn fake_env(plugins: &[&str]) -> (FakePoe, TestEnv) {
    let fake = FakePoe::start().await;
    let env = TestEnv::new(plugins)
        .with_var("POE_BASE_URL", fake.base_url())
        .with_var("POE_API_KEY", fake_poe::FAKE_API_KEY);
    (fake, env)
}

async fn session(env: &TestEnv, name: &str) -> McpClient {
    let mut shim = env.shim().await;
    shim.initialize(name).await;
    shim
}

fn body(answer: &Value) -> &Value {
    &answer["result"]["structuredContent"]
}

/// The text of the last user message of a recorded chat request.
fn last_user_text(request: &Value) -> String {
    request["messages"]
        .as_array()
        .unwrap()
        .iter()
        .rev()
        .find(|m| m["role"] == "user")
        .and_then(|m| m["content"].as_str())
        .unwrap_or_default()
        .to_string()
}

fn models_of(phase: &Value) -> Vec<String> {
    phase
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["model"].as_str().unwrap().to_string())
        .collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn three_models_one_fails_the_others_refine_and_a_later_round_continues_after_a_restart() {
    let (fake, env) = fake_env(&["poe-openai"]).await;
    // fake-404 fails only after a while, so the progress naming who answered
    // is sent while it is still working (a consensus that ends at once
    // sends none: the result carries everything).
    Mock::given(method("POST"))
        .and(path("/v1/chat/completions"))
        .and(body_partial_json(json!({"model": "fake-404"})))
        .respond_with(
            ResponseTemplate::new(404)
                .set_body_json(json!({"error": {"message": "The requested model does not exist",
                                                "type": "not_found_error", "code": "model_not_found"}}))
                .set_delay(Duration::from_millis(1500)),
        )
        .with_priority(1)
        .mount(fake.server())
        .await;
    let mut shim = session(&env, "claude-code").await;
    let answer = shim
        .request(
            "tools/call",
            json!({
                "name": "consensus",
                "arguments": {"prompt": "which sort is stable?",
                              "models": ["GPT-5", {"model": "gemini"}, "fake-404"]},
                "_meta": {"progressToken": "c1"}
            }),
        )
        .await;
    let b = body(&answer);
    assert_eq!(b["status"], "completed_with_errors", "{answer}");
    assert_eq!(b["models_consulted"], 3);
    assert_eq!(b["successful_initial_responses"], 2);
    assert_eq!(b["failed_responses"], 1);
    assert_eq!(b["refined_responses"], 2);
    assert_eq!(
        models_of(&b["phases"]["initial"]),
        ["GPT-5", "Gemini-2.5-Pro"]
    );
    assert_eq!(b["phases"]["failed"][0]["model"], "fake-404");
    assert_eq!(b["phases"]["failed"][0]["phase"], "initial");
    assert_eq!(
        b["phases"]["initial"][0]["response"],
        "Echo from GPT-5: which sort is stable?"
    );
    assert!(
        b["phases"]["initial"][0]["metadata"]["usage"]["total_tokens"]
            .as_u64()
            .unwrap()
            > 0
    );
    assert_eq!(b["settings"]["enable_cross_feedback"], true);
    let text = result_text(&answer);
    assert!(text.contains("## GPT-5 (refined)"), "{text}");
    assert!(text.contains("fake-404"), "{text}");

    // Progress named who answered and who was still working.
    let progress: Vec<String> = shim.take_progress_messages();
    assert!(
        progress
            .iter()
            .any(|p| p.contains("initial answers: ") && p.contains("waiting for fake-404")),
        "{progress:?}"
    );

    // Phase 2: each refinement request carries the other model's answer,
    // and fake-404 (failed in phase 1) is not asked again.
    let requests = fake.chat_requests().await;
    assert_eq!(requests.len(), 5, "3 initial + 2 refinements");
    let refine_gpt = requests
        .iter()
        .find(|r| r["model"] == "GPT-5" && last_user_text(r).contains("Other models"))
        .expect("GPT-5 was asked to refine");
    let feedback = last_user_text(refine_gpt);
    assert!(feedback.contains("--- Gemini-2.5-Pro ---"), "{feedback}");
    assert!(
        feedback.contains("Echo from Gemini-2.5-Pro: which sort is stable?"),
        "{feedback}"
    );
    assert!(!feedback.contains("--- GPT-5 ---"), "not its own answer");
    assert!(!feedback.contains("fake-404"), "{feedback}");

    // The daemon dies; the next round continues from the store.
    let id = b["continuation"]["id"].as_str().unwrap().to_string();
    assert_eq!(
        b["continuation"]["messageCount"], 3,
        "the question and two answers"
    );
    env.kill_daemon();
    let mut again = session(&env, "codex").await;
    let follow = again
        .call_tool(
            "consensus",
            json!({"prompt": "and which is fastest?", "models": ["GPT-5", "Gemini-2.5-Pro"],
                   "continuation_id": id, "enable_cross_feedback": false}),
        )
        .await;
    let b = body(&follow);
    assert_eq!(b["status"], "consensus_complete", "{follow}");
    assert_eq!(b["refined_responses"], 0);
    assert_eq!(b["continuation"]["messageCount"], 6);
    let requests = fake.chat_requests().await;
    let gpt = requests
        .last()
        .filter(|r| r["model"] == "GPT-5")
        .or_else(|| requests.iter().rev().find(|r| r["model"] == "GPT-5"));
    let messages = gpt.unwrap()["messages"].as_array().unwrap().clone();
    let roles: Vec<&str> = messages
        .iter()
        .map(|m| m["role"].as_str().unwrap())
        .collect();
    assert_eq!(roles, ["user", "assistant", "user"]);
    // It sees its own refined answer from the first round.
    assert!(
        messages[1]["content"]
            .as_str()
            .unwrap()
            .starts_with("Echo from GPT-5: Other models answered"),
        "{messages:?}"
    );

    // chat continues the same conversation with one of the models.
    let chat = again
        .call_tool(
            "chat",
            json!({"prompt": "summarise", "continuation_id": id, "model": "GPT-5"}),
        )
        .await;
    assert_eq!(body(&chat)["continuation"]["messageCount"], 8, "{chat}");
}

#[tokio::test(flavor = "multi_thread")]
async fn models_from_two_plugins_in_one_consensus() {
    let (_fake, env) = fake_env(&["poe-openai", "echo-plugin"]).await;
    let mut shim = session(&env, "agent").await;
    let answer = shim
        .call_tool(
            "consensus",
            json!({"prompt": "hello", "models": ["echo", "GPT-5"], "export": true}),
        )
        .await;
    let b = body(&answer);
    assert_eq!(b["status"], "consensus_complete", "{answer}");
    // Exported: one response file per model and phase.
    let folder = std::path::PathBuf::from(b["export_path"].as_str().unwrap());
    assert!(folder.ends_with(b["continuation"]["id"].as_str().unwrap()));
    for name in [
        "1_request.txt",
        "1_response_echo_initial.txt",
        "1_response_echo_refined.txt",
        "1_response_GPT-5_initial.txt",
        "1_response_GPT-5_refined.txt",
    ] {
        assert!(
            folder.join(name).is_file(),
            "{name} in {}",
            folder.display()
        );
    }
    let initial = std::fs::read_to_string(folder.join("1_response_GPT-5_initial.txt")).unwrap();
    assert_eq!(initial.trim(), "Echo from GPT-5: hello");
    let metadata: Value =
        serde_json::from_str(&std::fs::read_to_string(folder.join("metadata.json")).unwrap())
            .unwrap();
    assert_eq!(metadata["turns"][0]["answers"].as_array().unwrap().len(), 2);
    let providers: Vec<&str> = b["phases"]["initial"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["provider"].as_str().unwrap())
        .collect();
    assert_eq!(providers, ["echo", "poe-openai"]);
    assert_eq!(b["refined_responses"], 2);
}

#[tokio::test(flavor = "multi_thread")]
async fn cancel_stops_every_model_still_running_and_keeps_what_arrived() {
    let (_fake, env) = fake_env(&["poe-openai"]).await;
    let mut shim = session(&env, "agent").await;
    let started = shim
        .call_tool(
            "consensus",
            json!({"prompt": "slow one", "models": ["GPT-5", "fake-slow"], "async": true}),
        )
        .await;
    let id = body(&started)["continuation_id"]
        .as_str()
        .unwrap_or_else(|| panic!("no id in {started}"))
        .to_string();
    // check_status shows each model: GPT-5 answered, fake-slow still working.
    let mut status = Value::Null;
    for _ in 0..400 {
        status = shim
            .call_tool("check_status", json!({"continuation_id": id}))
            .await;
        let models = body(&status)["models"]
            .as_array()
            .cloned()
            .unwrap_or_default();
        let state = |m: &str| {
            models
                .iter()
                .find(|e| e["model"] == m)
                .map(|e| e["status"].as_str().unwrap().to_string())
        };
        if state("GPT-5").as_deref() == Some("completed")
            && state("fake-slow").as_deref() == Some("processing")
        {
            break;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    let models = body(&status)["models"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    assert_eq!(models.len(), 2, "{status}");
    assert!(models.iter().all(|m| m["phase"] == "initial"));

    let cancelled = shim
        .call_tool("cancel_job", json!({"continuation_id": id}))
        .await;
    assert!(!result_text(&cancelled).is_empty());
    let mut done = Value::Null;
    for _ in 0..400 {
        done = shim
            .call_tool("check_status", json!({"continuation_id": id}))
            .await;
        if body(&done)["status"] == "cancelled" {
            break;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    let b = body(&done);
    assert_eq!(b["status"], "cancelled", "{done}");
    let kept = b["phases"]["initial"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    assert_eq!(models_of(&json!(kept)), ["GPT-5"], "{done}");
    assert_eq!(b["phases"]["failed"][0]["model"], "fake-slow");
    assert_eq!(b["phases"]["failed"][0]["status"], "cancelled");
    // Every model call ended: nothing is left running.
    let status = env.status().expect("daemon runs");
    assert_eq!(status["jobs"]["running"], 0, "{status}");
}

#[tokio::test(flavor = "multi_thread")]
async fn bad_input_is_refused_before_any_request() {
    let (fake, env) = fake_env(&["echo-plugin"]).await;
    let mut shim = session(&env, "agent").await;
    let cases = [
        (
            json!({"prompt": "x", "models": []}),
            "INVALID_ARGUMENT",
            "at least one",
        ),
        (
            json!({"prompt": "x", "models": ["echo", "no-such-model"]}),
            "MODEL_NOT_FOUND",
            "no-such-model",
        ),
        (
            json!({"prompt": "x", "models": ["echo-1", "echo-2", "echo-3", "echo-4", "echo-5",
                                           "echo-6", "echo-7", "echo-8", "echo-9"]}),
            "INVALID_ARGUMENT",
            "at most 8",
        ),
        (
            json!({"prompt": "x", "models": ["echo"], "temperature": 3}),
            "INVALID_ARGUMENT",
            "temperature",
        ),
        (
            json!({"prompt": "x", "models": ["echo"], "files": ["../../etc/passwd"]}),
            "PATH_NOT_ALLOWED",
            "passwd",
        ),
        (
            json!({"prompt": "x", "models": ["echo"], "continuation_id": "conv_00000000000000000000000000000000"}),
            "CONVERSATION_NOT_FOUND",
            "conv_",
        ),
    ];
    for (arguments, code, needle) in cases {
        let answer = shim.call_tool("consensus", arguments.clone()).await;
        assert_eq!(
            error_code(&answer).as_deref(),
            Some(code),
            "{arguments}: {answer}"
        );
        assert!(
            result_text(&answer).contains(needle),
            "{arguments}: {answer}"
        );
    }
    assert!(fake.chat_requests().await.is_empty());
    let status = env.status().expect("daemon runs");
    assert_eq!(
        status["calls_total"], 0,
        "refused calls start nothing: {status}"
    );

    // Duplicates are asked once, with a note.
    let answer = shim
        .call_tool(
            "consensus",
            json!({"prompt": "x", "models": ["echo", "ECHO", "echo-b"]}),
        )
        .await;
    let b = body(&answer);
    assert_eq!(b["models_consulted"], 2, "{answer}");
    assert!(b["notes"][0].as_str().unwrap().contains("ECHO"), "{answer}");
}

/// Requests the stand-in saw for `model`.
async fn requests_for(fake: &FakePoe, model: &str) -> Vec<Value> {
    fake.chat_requests()
        .await
        .into_iter()
        .filter(|r| r["model"] == model)
        .collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn summaries_on_give_titles_and_summaries_off_give_none_failing_give_snippets() {
    // On: the default model (Claude-Haiku-4.5, echoed by the stand-in) writes them.
    let (fake, env) = fake_env(&["poe-openai"]).await;
    let env = env.with_var("ENABLE_RESPONSE_SUMMARIZATION", "true");
    let mut shim = session(&env, "agent").await;
    let answer = shim
        .call_tool(
            "consensus",
            json!({"prompt": "is quicksort stable?", "models": ["GPT-5", "Gemini-2.5-Pro"]}),
        )
        .await;
    let b = body(&answer);
    assert_eq!(b["status"], "consensus_complete", "{answer}");
    let title = b["title"]
        .as_str()
        .unwrap_or_else(|| panic!("no title: {answer}"));
    assert!(title.chars().count() <= 60, "{title}");
    assert!(
        title.starts_with("Echo from Claude-Haiku-4.5: Write a short"),
        "{title}"
    );
    assert_eq!(b["summary_source"], "model", "{answer}");
    assert!(
        b["final_summary"]
            .as_str()
            .unwrap()
            .starts_with("Echo from Claude-Haiku-4.5: Summarize the answer below"),
        "{answer}"
    );
    let asked = requests_for(&fake, "Claude-Haiku-4.5").await;
    assert_eq!(asked.len(), 2, "a title and a final summary");
    // The summary call saw the models' final answers.
    assert!(last_user_text(&asked[1]).contains("GPT-5: Echo from GPT-5"));
    // check_status lists the consensus with its title.
    let recent = shim.call_tool("check_status", json!({})).await;
    let jobs = body(&recent)["jobs"].as_array().unwrap().clone();
    assert!(
        jobs.iter()
            .any(|j| j["tool"] == "consensus" && j["title"] == title),
        "{recent}"
    );
    // chat gets them too.
    let chat = shim
        .call_tool("chat", json!({"prompt": "hello", "model": "GPT-5"}))
        .await;
    assert!(body(&chat)["title"].is_string(), "{chat}");
    assert_eq!(body(&chat)["content"], "Echo from GPT-5: hello");

    // Failing: the answer is untouched; snippets stand in.
    let (_fake, env) = fake_env(&["poe-openai"]).await;
    let env = env
        .with_var("ENABLE_RESPONSE_SUMMARIZATION", "1")
        .with_var("SUMMARIZATION_MODEL", "fake-401");
    let mut shim = session(&env, "agent").await;
    let answer = shim
        .call_tool(
            "chat",
            json!({"prompt": "tell me about heaps", "model": "GPT-5"}),
        )
        .await;
    let b = body(&answer);
    assert_eq!(
        b["content"], "Echo from GPT-5: tell me about heaps",
        "{answer}"
    );
    assert_eq!(b["title"], "tell me about heaps");
    assert_eq!(b["summary_source"], "snippet");
    assert_eq!(b["final_summary"], "Echo from GPT-5: tell me about heaps");

    // Off (the default): none, and no summarization requests.
    let (fake, env) = fake_env(&["poe-openai"]).await;
    let mut shim = session(&env, "agent").await;
    let answer = shim
        .call_tool(
            "consensus",
            json!({"prompt": "x", "models": ["GPT-5", "Gemini-2.5-Pro"]}),
        )
        .await;
    assert!(body(&answer).get("title").is_none(), "{answer}");
    assert!(body(&answer).get("final_summary").is_none(), "{answer}");
    assert!(requests_for(&fake, "Claude-Haiku-4.5").await.is_empty());
}

#[tokio::test(flavor = "multi_thread")]
async fn check_status_summarizes_a_running_job() {
    let paced = fake_poe::PacedPoe::start().await;
    let env = TestEnv::new(&["poe-openai"])
        .with_var("POE_BASE_URL", paced.base_url())
        .with_var("POE_API_KEY", fake_poe::FAKE_API_KEY)
        .with_var("ENABLE_RESPONSE_SUMMARIZATION", "true")
        .with_var("SUMMARIZATION_MODEL", "GPT-5-mini");
    let mut shim = session(&env, "agent").await;
    let prompt = "explain ".repeat(40);
    let started = shim
        .call_tool(
            "chat",
            json!({"prompt": prompt, "model": "fake-stream-20s", "async": true}),
        )
        .await;
    let id = body(&started)["continuation_id"]
        .as_str()
        .unwrap()
        .to_string();
    let mut status = Value::Null;
    for _ in 0..400 {
        status = shim
            .call_tool("check_status", json!({"continuation_id": id}))
            .await;
        if body(&status)["summary"].is_string() && body(&status)["title"].is_string() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    let b = body(&status);
    assert_eq!(b["status"], "processing", "{status}");
    assert!(
        b["summary"]
            .as_str()
            .unwrap_or_else(|| panic!("no summary: {status}"))
            .starts_with("Echo from GPT-5-mini: The answer below is still being written"),
        "{status}"
    );
    // Polling again at once does not ask again (at most one per 30 s).
    for _ in 0..5 {
        shim.call_tool("check_status", json!({"continuation_id": id}))
            .await;
    }
    let asked: Vec<Value> = paced
        .chat_requests()
        .into_iter()
        .filter(|r| r["model"] == "GPT-5-mini")
        .collect();
    assert_eq!(asked.len(), 2, "the title and one partial summary");
    shim.call_tool("cancel_job", json!({"continuation_id": id}))
        .await;
}
