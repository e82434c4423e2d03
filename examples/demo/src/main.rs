//! The offline demo: `cargo run -p demo`.
//!
//! Builds poe-code and its plugins, gives them a throwaway state dir, and
//! drives one MCP session through a real `poe-code mcp run` shim into a real
//! `poe-coded` daemon with the real poe-openai plugin, printing what an agent
//! would see; then a script uses the same daemon through its HTTP listener's
//! OpenAI-compatible API, with a token. Without `POE_API_KEY` the upstream is
//! a local stand-in for Poe on 127.0.0.1; with it, the real Poe API answers
//! (and costs points).

use serde_json::{Value, json};
use testkit::TestEnv;
use testkit::client::result_text;

fn show(label: &str, value: &Value) {
    println!(
        "{label}: {}",
        serde_json::to_string_pretty(value).unwrap_or_default()
    );
}

/// `answer` if the tool succeeded; otherwise the demo stops with its error.
fn checked(answer: Value) -> Value {
    if answer["result"]["isError"] == true || answer.get("error").is_some() {
        eprintln!("the call failed: {}", result_text(&answer));
        std::process::exit(1);
    }
    answer
}

#[tokio::main]
async fn main() {
    println!("building poe-code, poe-coded and the plugins…");
    testkit::build::ensure_built();

    let real_key = std::env::var("POE_API_KEY")
        .ok()
        .filter(|k| !k.trim().is_empty());
    let mut _fake = None;
    let env = match &real_key {
        Some(key) => {
            println!("POE_API_KEY is set: talking to the real Poe API");
            TestEnv::new(&[
                "poe-openai",
                "poe-legacy",
                "codex-cli",
                "claude-cli",
                "gemini-cli",
            ])
            .with_var("POE_API_KEY", key.clone())
        }
        None => {
            let fake = fake_poe::FakePoe::start().await;
            println!(
                "no POE_API_KEY: using the local stand-in for Poe at {}",
                fake.base_url()
            );
            let env = TestEnv::new(&[
                "poe-openai",
                "poe-legacy",
                "codex-cli",
                "claude-cli",
                "gemini-cli",
            ])
            .with_var("POE_BASE_URL", fake.base_url())
            .with_var("POE_API_KEY", fake_poe::FAKE_API_KEY)
            .with_var("POE_VIDEO_POLL_MS", "50");
            _fake = Some(fake);
            env
        }
    };
    let text_bot = std::env::var("DEMO_BOT").unwrap_or_else(|_| "Claude-Sonnet-4.5".into());

    // The daemon also listens on HTTP (config.toml [http]), on a free port.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free port")
        .port();
    env.write_config(&format!("[http]\nlisten = \"127.0.0.1:{port}\"\n"));

    // Agent 1 works in a project folder (files it attaches must be inside).
    let project = tempfile::tempdir().expect("tempdir");
    std::fs::write(
        project.path().join("plan.md"),
        "1. one daemon\n2. many agents\n3. shared limits\n",
    )
    .expect("write demo file");

    println!("\n$ poe-code mcp run   (the first shim starts the shared daemon)");
    let mut agent = env.shim_in(project.path()).await;
    let init = agent.initialize("poe-code-demo").await;
    show("initialize", &init["result"]["serverInfo"]);

    let tools = agent.request("tools/list", Value::Null).await;
    let names: Vec<&str> = tools["result"]["tools"]
        .as_array()
        .map(|t| t.iter().filter_map(|t| t["name"].as_str()).collect())
        .unwrap_or_default();
    println!("tools: {}", names.join(", "));

    println!(
        "\n-> get_bot_response({text_bot}), streaming progress (at most one notification per \
         250 ms, none once the answer is in; the local stand-in answers at once):"
    );
    let answer = agent
        .request(
            "tools/call",
            json!({
                "name": "get_bot_response",
                "arguments": {"bot_name": text_bot, "message": "In one sentence: why share one MCP daemon between agents?"},
                "_meta": {"progressToken": "demo"}
            }),
        )
        .await;
    for note in agent.take_notifications("notifications/progress") {
        println!(
            "   progress: {}",
            note["params"]["message"].as_str().unwrap_or_default()
        );
    }
    println!("<- {}", result_text(&answer));
    show("   usage", &answer["result"]["_meta"]);

    println!("\n-> generate_image(default bot)");
    let image = agent
        .call_tool("generate_image", json!({"prompt": "a lighthouse made of circuit boards", "params": {"aspect_ratio": "16:9"}}))
        .await;
    for block in image["result"]["content"].as_array().into_iter().flatten() {
        if block["type"] == "resource_link" {
            println!("<- resource link: {} ({})", block["uri"], block["mimeType"]);
        }
    }

    println!("\n-> a second agent session joins the same daemon");
    let mut second = env.shim().await;
    second.initialize("second-agent").await;

    println!("\n-> agent 1 starts a conversation with chat, attaching plan.md from its folder");
    let first = checked(
        agent
            .call_tool(
                "chat",
                json!({
                    "prompt": "Which step of this plan matters most?",
                    "model": text_bot,
                    "files": ["plan.md"],
                }),
            )
            .await,
    );
    let chat = &first["result"]["structuredContent"];
    let conversation = chat["continuation"]["id"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    println!("<- {}", chat["content"]);
    show("   continuation", &chat["continuation"]);
    show("   metadata", &chat["metadata"]);
    println!("-> agent 2 continues the same conversation (continuation_id {conversation})");
    let next = checked(
        second
            .call_tool(
                "chat",
                json!({"prompt": "And which one is second?", "continuation_id": conversation}),
            )
            .await,
    );
    let chat = &next["result"]["structuredContent"];
    println!("<- {}", chat["content"]);
    show("   continuation", &chat["continuation"]);

    println!(
        "\n-> agent 2 asks three models at once, each refining after seeing the others (consensus)"
    );
    let consensus = checked(
        second
            .call_tool(
                "consensus",
                json!({"prompt": "In one sentence: which sorting algorithm should a standard library use?",
                       "models": ["sonnet", "gpt", "gemini"]}),
            )
            .await,
    );
    let body = &consensus["result"]["structuredContent"];
    println!(
        "<- {}: {} models, {} answered, {} refined",
        body["status"],
        body["models_consulted"],
        body["successful_initial_responses"],
        body["refined_responses"]
    );
    for answer in body["phases"]["refined"].as_array().into_iter().flatten() {
        let text = answer["response"].as_str().unwrap_or_default();
        let first_line = text.lines().next().unwrap_or_default();
        let shown: String = first_line.chars().take(100).collect();
        println!("   {} (refined): {shown}…", answer["model"]);
    }

    println!("\n-> agent 1 starts a job in the background (async: true)");
    let started = agent
        .call_tool(
            "get_bot_response",
            json!({"bot_name": text_bot, "message": "Summarise the benefits of shared rate limits.", "async": true}),
        )
        .await;
    let id = started["result"]["structuredContent"]["continuation_id"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    println!("<- continuation_id {id}");
    println!("-> agent 2 checks it: check_status(continuation_id)");
    let mut status = Value::Null;
    for _ in 0..100 {
        status = second
            .call_tool("check_status", json!({"continuation_id": id}))
            .await["result"]["structuredContent"]
            .clone();
        if status["status"] != "processing" {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    println!(
        "<- {} after {} s: {}",
        status["status"], status["elapsed_seconds"], status["result"]
    );

    let models = second.call_tool("list_models", json!({})).await;
    println!("\n-> list_models\n{}", result_text(&models));

    println!("\n$ poe-code token create demo-script   (for the daemon's HTTP listener)");
    let token = env.create_token("demo-script");
    println!("<- a token, shown once (only its hash is stored)");
    println!(
        "-> POST http://127.0.0.1:{port}/v1/chat/completions, as an OpenAI SDK script would (stream: true)"
    );
    let response = reqwest::Client::new()
        .post(format!("http://127.0.0.1:{port}/v1/chat/completions"))
        .bearer_auth(&token)
        .json(&json!({"model": text_bot, "stream": true,
            "messages": [{"role": "user", "content": "One line on why scripts should share the agents' rate limit."}]}))
        .send()
        .await
        .expect("the HTTP listener answers");
    let status_code = response.status();
    let body = response.text().await.unwrap_or_default();
    if !status_code.is_success() {
        eprintln!("the completion failed ({status_code}): {body}");
        std::process::exit(1);
    }
    let text: String = body
        .lines()
        .filter_map(|l| l.strip_prefix("data: "))
        .filter_map(|d| serde_json::from_str::<Value>(d).ok())
        .filter_map(|c| {
            c["choices"][0]["delta"]["content"]
                .as_str()
                .map(str::to_string)
        })
        .collect();
    let chunks = body.matches("chat.completion.chunk").count();
    println!("<- {chunks} chunks: {text}");

    println!("\n$ poe-coded status");
    let out = env.run("poe-coded", &["status"]);
    print!("{}", String::from_utf8_lossy(&out.stdout));

    drop(second);
    drop(agent);
    println!("\ndemo done (the daemon is stopped and the state dir removed)");
}
