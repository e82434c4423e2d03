//! Model names end to end: a real shim and daemon, the real poe-openai
//! plugin and the stand-in's `GET /v1/models`. `list_models` shows aliases,
//! defaults and Poe's list (fetched, searched, cached on disk); aliases,
//! `owner/id`, any case and `auto` (with and without images) reach the
//! upstream as the model Poe lists; `POE_TEXT_MODEL` moves the default.

use fake_poe::FakePoe;
use serde_json::{Value, json};
use testkit::client::result_text;
use testkit::{McpClient, TestEnv};

/// A 1x1 PNG.
const PNG: &[u8] = &[
    0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a, 0x00, 0x00, 0x00, 0x0d, 0x49, 0x48, 0x44, 0x52,
    0x00, 0x00, 0x00, 0x01, 0x00, 0x00, 0x00, 0x01, 0x08, 0x06, 0x00, 0x00, 0x00, 0x1f, 0x15, 0xc4,
    0x89, 0x00, 0x00, 0x00, 0x0d, 0x49, 0x44, 0x41, 0x54, 0x78, 0x9c, 0x63, 0x00, 0x01, 0x00, 0x00,
    0x05, 0x00, 0x01, 0x0d, 0x0a, 0x2d, 0xb4, 0x00, 0x00, 0x00, 0x00, 0x49, 0x45, 0x4e, 0x44, 0xae,
    0x42, 0x60, 0x82,
];

async fn fake_env() -> (FakePoe, TestEnv) {
    let fake = FakePoe::start().await;
    let env = TestEnv::new(&["poe-openai"])
        .with_var("POE_BASE_URL", fake.base_url())
        .with_var("POE_API_KEY", fake_poe::FAKE_API_KEY);
    (fake, env)
}

async fn session(env: &TestEnv) -> McpClient {
    let mut shim = env.shim_in(env.home().parent().unwrap()).await;
    shim.initialize("models-test").await;
    shim
}

fn body(answer: &Value) -> &Value {
    &answer["result"]["structuredContent"]
}

/// The model of the last chat request the stand-in saw.
async fn last_sent_model(fake: &FakePoe) -> String {
    let requests = fake.chat_requests().await;
    requests.last().expect("a chat request")["model"]
        .as_str()
        .unwrap()
        .to_string()
}

#[tokio::test]
async fn list_models_shows_aliases_defaults_and_poes_list() {
    let (_fake, env) = fake_env().await;
    let env = env.with_var("POE_IMAGE_MODEL", "GPT-5");
    env.write_config("[aliases]\nfast = \"gpt-5-mini\"\n");
    let mut shim = session(&env).await;

    let listed = shim
        .call_tool("list_models", json!({"refresh": true}))
        .await;
    let b = body(&listed);
    assert_eq!(b["refresh"]["ok"], true, "{listed}");
    assert_eq!(
        b["catalog"]["total"].as_u64(),
        Some(fake_poe::MODELS.len() as u64)
    );
    let aliases = b["aliases"].as_array().unwrap();
    let alias = |name: &str| aliases.iter().find(|a| a["alias"] == name).cloned();
    assert_eq!(alias("sonnet").unwrap()["model"], "Claude-Sonnet-4.5");
    // A configured alias, in the catalog's spelling.
    let fast = alias("fast").unwrap();
    assert_eq!(
        (&fast["model"], &fast["source"]),
        (&json!("GPT-5-mini"), &json!("config.toml"))
    );
    assert_eq!(b["defaults"]["image"]["model"], "GPT-5");
    assert_eq!(b["defaults"]["image"]["source"], "environment");
    assert_eq!(b["auto"]["preference"][0], "Claude-Sonnet-4.5");
    let text = result_text(&listed);
    assert!(text.contains("sonnet → Claude-Sonnet-4.5"), "{text}");
    assert!(text.contains("Routing:"), "{text}");

    // The fetched list is cached for the next daemon.
    let cache = env.path("cache/models.json");
    assert!(
        std::fs::read_to_string(&cache)
            .unwrap()
            .contains("Gemini-2.5-Pro")
    );

    let found = shim
        .call_tool("list_models", json!({"search": "GEMINI"}))
        .await;
    let models = body(&found)["catalog"]["models"]
        .as_array()
        .unwrap()
        .clone();
    assert_eq!(models.len(), 1, "{found}");
    assert_eq!(models[0]["id"], "Gemini-2.5-Pro");
    assert_eq!(models[0]["context_length"], 200_000);
    assert_eq!(models[0]["input_modalities"], json!(["text", "image"]));
    let text = result_text(&found);
    assert!(
        text.contains("Gemini-2.5-Pro — text+image → text; context 200000 tokens"),
        "{text}"
    );
    assert!(text.contains("prompt 0.000003"), "{text}");

    let refused = shim.call_tool("list_models", json!({"filter": "x"})).await;
    assert!(result_text(&refused).contains("filter"), "{refused}");
}

#[tokio::test]
async fn aliases_owner_names_and_auto_reach_the_upstream_as_poe_lists_them() {
    let (fake, env) = fake_env().await;
    let env = env.with_var("POE_TEXT_MODEL", "Text-Only-Bot");
    env.write_config("[aliases]\nfast = \"GPT-5-mini\"\n");
    std::fs::write(env.home().parent().unwrap().join("pixel.png"), PNG).unwrap();
    let mut shim = session(&env).await;
    shim.call_tool("list_models", json!({"refresh": true}))
        .await;

    let sonnet = shim
        .call_tool("chat", json!({"prompt": "hi", "model": "SONNET"}))
        .await;
    assert_eq!(body(&sonnet)["metadata"]["alias"], "sonnet", "{sonnet}");
    assert_eq!(last_sent_model(&fake).await, "Claude-Sonnet-4.5");

    shim.call_tool("chat", json!({"prompt": "hi", "model": "openai/gpt-5"}))
        .await;
    assert_eq!(last_sent_model(&fake).await, "GPT-5");

    shim.call_tool(
        "get_bot_response",
        json!({"bot_name": "fast", "message": "hi"}),
    )
    .await;
    assert_eq!(last_sent_model(&fake).await, "GPT-5-mini");

    // auto: the default text model (from POE_TEXT_MODEL) first...
    let auto = shim.call_tool("chat", json!({"prompt": "hi"})).await;
    assert_eq!(body(&auto)["metadata"]["auto"], true, "{auto}");
    assert_eq!(last_sent_model(&fake).await, "Text-Only-Bot");
    // ...but it reads no images, so with one attached the next in the list.
    let seeing = shim
        .call_tool(
            "chat",
            json!({"prompt": "what is this?", "model": "auto", "images": ["pixel.png"]}),
        )
        .await;
    assert!(body(&seeing)["content"].is_string(), "{seeing}");
    assert_eq!(last_sent_model(&fake).await, "GPT-5");
}
