//! poe-openai over the protocol Poe serves: HTTPS with ALPN h2, here from a
//! stand-in that allows 100 streams per connection (`fake_poe::TlsFront`),
//! trusted through `SSL_CERT_FILE` as a user's own CA would be. A burst of
//! calls opens one connection per 64 calls in flight instead of one per call,
//! and no call waits behind another's stream: every call is at the upstream
//! at once.

use std::time::{Duration, Instant};

use fake_poe::{FAKE_API_KEY, FakePoe, TlsFront};
use serde_json::{Value, json};
use testkit::TestEnv;

/// More calls than two connections carry at 64 streams each, and more than
/// one connection allows at 100.
const CALLS: usize = 130;

#[tokio::test(flavor = "multi_thread")]
async fn a_burst_spreads_over_connections_and_never_queues_for_a_stream() {
    let fake = FakePoe::start_without_recording().await;
    let front = TlsFront::start(&fake.server().uri(), 100).await;
    let env = TestEnv::new(&["poe-openai"])
        .with_var("POE_BASE_URL", format!("{}/v1", front.uri()))
        .with_var("SSL_CERT_FILE", front.ca_file().display().to_string())
        .with_var("POE_API_KEY", FAKE_API_KEY)
        .with_var("POE_CODE_RATE_LIMITS", "poe-openai=100000");
    let base = env.start_http_daemon();
    let token = env.create_token("burst");
    let client = reqwest::Client::new();

    // Each answer takes 10 s upstream: long enough for the whole burst to
    // be sent first, however slow the machine.
    let calls = (0..CALLS).map(|i| {
        let (client, base, token) = (client.clone(), base.clone(), token.clone());
        async move {
            let answer: Value = client
                .post(format!("{base}/v1/chat/completions"))
                .bearer_auth(token)
                .json(&json!({"model": "fake-slow-10000",
                    "messages": [{"role": "user", "content": format!("call {i}")}]}))
                .send()
                .await
                .expect("daemon")
                .json()
                .await
                .expect("JSON answer");
            let text = answer["choices"][0]["message"]["content"]
                .as_str()
                .unwrap_or_default();
            assert!(text.ends_with(&format!("call {i}")), "{answer}");
        }
    });
    let burst = tokio::spawn(futures::future::join_all(calls));

    let deadline = Instant::now() + Duration::from_secs(9);
    while front.in_flight() < CALLS {
        assert!(
            Instant::now() < deadline,
            "only {} of {CALLS} calls reached the upstream; the rest queue behind full connections",
            front.in_flight()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(
        front.connections(),
        CALLS.div_ceil(64) as u64,
        "one connection per 64 calls in flight, not a handshake per call"
    );
    assert!(
        front.peak_streams_per_connection() <= 64,
        "a connection carried {} streams",
        front.peak_streams_per_connection()
    );
    burst.await.expect("every call answered");
}
