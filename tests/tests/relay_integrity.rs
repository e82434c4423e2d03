//! The shim relays every byte both ways under load: multi-megabyte requests
//! going in while multi-megabyte answers come out and progress streams, each
//! request answered exactly once with exactly its own answer.
//!
//! This is the scenario of issue 9: a relay that drops a partial line when
//! the other direction wins a `select!` loses requests here.

use std::collections::{HashMap, HashSet};
use std::time::Duration;

use serde_json::{Value, json};
use testkit::TestEnv;
use testkit::client::result_text;

/// Calls whose answers stream slowly (with a progress token).
const SLOW_CALLS: usize = 6;
/// Words per slow answer, and the pause before each.
const SLOW_WORDS: usize = 300;
const SLOW_DELAY_MS: &str = "20";
/// Calls carrying a big message each; the echo plugin answers with it.
const BIG_CALLS: usize = 20;
const BIG_BYTES: usize = 2 * 1024 * 1024;
/// How long one expected message may take on a loaded machine (a bound for
/// a hang, not a performance assertion).
const PATIENCE: Duration = Duration::from_secs(180);

/// A deterministic, mostly printable message of at least `len` bytes for
/// call `seed`, with characters JSON must escape and multi-byte UTF-8.
fn big_message(seed: u64, len: usize) -> String {
    const ALPHABET: &[char] = &[
        'a', 'b', 'c', 'x', 'y', 'z', '0', '9', '"', '\\', '\n', '\r', '\t', '/', '{', '}', 'é',
        '漢', '🦀', '\u{2028}',
    ];
    let mut text = format!("big-{seed}:");
    let mut state = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    while text.len() < len {
        // xorshift64: cheap and reproducible.
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        // An occasional space, so the answer streams in a few pieces.
        if state.is_multiple_of(65536) {
            text.push(' ');
        } else {
            text.push(ALPHABET[(state % ALPHABET.len() as u64) as usize]);
        }
    }
    text
}

fn slow_message(call: usize) -> String {
    (0..SLOW_WORDS)
        .map(|w| format!("slow{call}w{w}"))
        .collect::<Vec<_>>()
        .join(" ")
}

/// A short description of a message for failure output (never megabytes).
fn summary(message: &Value) -> String {
    let text = message.to_string();
    match text.char_indices().nth(300) {
        Some((i, _)) => format!("{}… ({} bytes)", &text[..i], text.len()),
        None => text,
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn megabytes_both_ways_while_progress_streams_lose_nothing() {
    let env = TestEnv::new(&["echo-plugin"])
        // Whole answers, however big, and no hand-off to the background.
        .with_var("MAX_MCP_OUTPUT_TOKENS", "100000000")
        .with_var("POE_CODE_SOFT_DEADLINE", "3600");
    let mut shim = env.shim().await;
    shim.initialize("relay-integrity").await;

    // Expected answer text per request id.
    let mut expected: HashMap<Value, String> = HashMap::new();
    let mut tokens = Vec::new();
    for call in 0..SLOW_CALLS {
        let message = slow_message(call);
        let token = format!("slow-{call}");
        let id = shim
            .send_request(
                "tools/call",
                json!({
                    "name": "get_bot_response",
                    "arguments": {
                        "bot_name": "echo",
                        "message": message,
                        "params": {"delay_ms": SLOW_DELAY_MS}
                    },
                    "_meta": {"progressToken": token}
                }),
            )
            .await;
        expected.insert(id, message);
        tokens.push(token);
    }
    // The big messages go in while progress streams.
    let first = shim
        .wait_for(|m| m["method"] == "notifications/progress")
        .await;
    let mut streamed: HashSet<String> = HashSet::new();
    streamed.extend(
        first["params"]["progressToken"]
            .as_str()
            .map(str::to_string),
    );
    for call in 0..BIG_CALLS {
        let message = big_message(call as u64, BIG_BYTES);
        let id = shim
            .send_request(
                "tools/call",
                json!({
                    "name": "get_bot_response",
                    "arguments": {"bot_name": "echo", "message": message}
                }),
            )
            .await;
        expected.insert(id, message);
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    // Every request gets exactly its own answer, byte for byte.
    let mut pending: HashSet<Value> = expected.keys().cloned().collect();
    while !pending.is_empty() {
        let wanted = pending.clone();
        let Some(response) = shim
            .wait_for_within(PATIENCE, move |m| {
                m.get("method").is_none() && m.get("id").is_some_and(|id| wanted.contains(id))
            })
            .await
        else {
            let mut missing: Vec<String> = pending.iter().map(Value::to_string).collect();
            missing.sort();
            let others: Vec<String> = shim
                .take_all()
                .iter()
                .filter(|m| m["method"] != "notifications/progress")
                .map(summary)
                .collect();
            let exit = shim.wait_exit(Duration::ZERO).await;
            panic!(
                "{} of {} requests never answered (ids {}); shim exit status {exit:?}; other messages: {others:#?}",
                missing.len(),
                expected.len(),
                missing.join(", ")
            );
        };
        let id = response["id"].clone();
        pending.remove(&id);
        assert!(
            response.get("error").is_none(),
            "request {id} failed: {}",
            summary(&response)
        );
        let text = result_text(&response);
        let want = &expected[&id];
        assert!(
            text == *want,
            "request {id}: answer differs from its message ({} vs {} bytes; starts {:?} vs {:?})",
            text.len(),
            want.len(),
            text.chars().take(40).collect::<String>(),
            want.chars().take(40).collect::<String>()
        );
    }

    // A barrier: anything the relay wrote before this answer is buffered now.
    shim.request("ping", Value::Null).await;
    let rest = shim.take_all();
    for message in &rest {
        assert_eq!(
            message["method"],
            "notifications/progress",
            "unexpected message: {}",
            summary(message)
        );
        let token = message["params"]["progressToken"].as_str().unwrap_or("");
        assert!(
            tokens.iter().any(|t| t == token),
            "progress for an unknown token: {}",
            summary(message)
        );
        streamed.insert(token.to_string());
    }
    for token in &tokens {
        assert!(streamed.contains(token), "no progress for {token}");
    }
    assert!(
        shim.non_json.try_recv().is_err(),
        "the shim's stdout carried a line that is not JSON"
    );
}
