//! One view of the upstream for every session: the shared limiter keeps many
//! sessions under the upstream's limit, a 429 pauses the key for everyone,
//! 5xx are retried with backoff, other 4xx are not. The upstream is a
//! wiremock server on 127.0.0.1 speaking Poe's OpenAI-compatible wire format;
//! the plugin is the real poe-openai library.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::json;
use testkit::TestEnv;
use testkit::client::{error_code, result_text};
use testkit::upstream::{
    Answer, Shared, WindowedUpstream, last_user_message, poe_error, sse_answer, upstream_with,
};
use wiremock::{MockServer, Request, ResponseTemplate};

fn env_for(server: &MockServer) -> TestEnv {
    TestEnv::new(&["poe-openai"]).with_var("POE_BASE_URL", format!("{}/v1", server.uri()))
}

#[tokio::test(flavor = "multi_thread")]
async fn twenty_sessions_share_one_limit_and_never_exceed_the_upstreams() {
    // 60 requests per 2 s window (the window shortened from Poe's minute so
    // the test takes seconds): 500 calls from 20 sessions, against a
    // stand-in that counts the same window and says 429 past it.
    let upstream = Arc::new(WindowedUpstream::new(Duration::from_secs(2), 60));
    let server = upstream_with(Shared(upstream.clone())).await;
    let env = env_for(&server)
        .with_var("POE_CODE_RATE_WINDOW_SECS", "2")
        .with_var("POE_CODE_RATE_LIMITS", "poe-openai=60");
    let sessions = (0..20).map(|s| {
        let env = &env;
        async move {
            let mut shim = env.shim().await;
            shim.initialize(&format!("agent-{s}")).await;
            for c in 0..25 {
                let message = format!("s{s} c{c}");
                let answer = shim.ask("test-bot", &message).await;
                assert_eq!(result_text(&answer), format!("echo {message}"), "{answer}");
            }
            shim
        }
    });
    let shims = futures::future::join_all(sessions).await;
    let requests = server.received_requests().await.unwrap().len();
    assert_eq!(requests, 500, "one upstream request per call");
    assert_eq!(
        *upstream.rejected.lock().unwrap(),
        0,
        "the upstream never had to say 429"
    );
    assert!(*upstream.max_in_window.lock().unwrap() <= 60);
    let status = env.status().unwrap();
    assert_eq!(status["limiters"][0]["plugin"], "poe-openai");
    assert_eq!(status["limiters"][0]["requests_per_minute"], 60);
    assert_eq!(
        status["limiters"][0]["key"], "…cdef",
        "only a fingerprint of the key"
    );
    drop(shims);
}

/// `calls` concurrent calls from as many sessions; their answers.
async fn burst(env: &TestEnv, calls: usize) -> Vec<serde_json::Value> {
    let runs = (0..calls).map(|i| async move {
        let mut shim = env.shim().await;
        shim.initialize(&format!("burst-{i}")).await;
        shim.ask("test-bot", &format!("call {i}")).await
    });
    futures::future::join_all(runs).await
}

#[tokio::test(flavor = "multi_thread")]
async fn the_whole_limit_goes_at_once_and_only_the_next_call_waits() {
    // A wait bound of 1 ms turns any wait for the window into
    // RATE_LIMIT_EXCEEDED, so success proves the call did not wait.
    let server = upstream_with(sse_answer("ok")).await;
    let env = env_for(&server)
        .with_var("POE_CODE_RATE_LIMITS", "poe-openai=40")
        .with_var("POE_CODE_RATE_LIMIT_WAIT", "0.001");
    let mut shim = env.shim().await;
    shim.initialize("sequential").await;
    for c in 0..20 {
        let answer = shim.ask("test-bot", &format!("loop {c}")).await;
        assert_eq!(
            result_text(&answer),
            "ok",
            "a 20-call loop never waits: {answer}"
        );
    }
    let answers = burst(&env, 20).await;
    for answer in &answers {
        assert_eq!(
            result_text(answer),
            "ok",
            "the rest of the limit at once: {answer}"
        );
    }
    let over = shim.ask("test-bot", "the 41st").await;
    assert_eq!(
        error_code(&over).as_deref(),
        Some("RATE_LIMIT_EXCEEDED"),
        "the 41st call of the minute would wait for the window: {over}"
    );
    assert_eq!(server.received_requests().await.unwrap().len(), 40);
}

#[tokio::test(flavor = "multi_thread")]
async fn the_upstreams_remaining_budget_is_the_truth_for_the_key() {
    // Our own window would allow 500; the upstream says 3 are left (another
    // machine spends the key too). Its answers take 300 ms, so the calls
    // below all ask for their turn before any of them hears back.
    let reports_three_left = sse_answer("ok")
        .set_delay(Duration::from_millis(300))
        .insert_header("x-ratelimit-limit-requests", "500")
        .insert_header("x-ratelimit-remaining-requests", "3")
        .insert_header("x-ratelimit-reset-requests", "60");
    let server = upstream_with(reports_three_left).await;
    let env = env_for(&server).with_var("POE_CODE_RATE_LIMIT_WAIT", "0.001");
    let mut first = env.shim().await;
    first.initialize("first").await;
    assert_eq!(result_text(&first.ask("test-bot", "learn").await), "ok");
    assert_eq!(
        env.status().unwrap()["limiters"][0]["upstream_remaining"],
        3
    );

    let mut shims = Vec::new();
    for i in 0..5 {
        let mut shim = env.shim().await;
        shim.initialize(&format!("s{i}")).await;
        shims.push(shim);
    }
    let answers = futures::future::join_all(
        shims
            .iter_mut()
            .enumerate()
            .map(|(i, shim)| async move { shim.ask("test-bot", &format!("call {i}")).await }),
    )
    .await;
    let refused: Vec<_> = answers.iter().filter_map(error_code).collect();
    assert_eq!(
        refused,
        ["RATE_LIMIT_EXCEEDED", "RATE_LIMIT_EXCEEDED"],
        "3 of 5 fit what the upstream said was left: {answers:?}"
    );
    assert_eq!(server.received_requests().await.unwrap().len(), 4);
}

/// 429 for the first request, then answers; records arrival times.
struct RateLimitedOnce {
    arrivals: Mutex<Vec<Instant>>,
}

impl Answer for RateLimitedOnce {
    fn answer(&self, request: &Request) -> ResponseTemplate {
        let mut arrivals = self.arrivals.lock().unwrap();
        arrivals.push(Instant::now());
        if arrivals.len() == 1 {
            // Poe documents x-ratelimit-* rather than Retry-After.
            return poe_error(429, "slow down")
                .insert_header("x-ratelimit-limit-requests", "500")
                .insert_header("x-ratelimit-remaining-requests", "0")
                .insert_header("x-ratelimit-reset-requests", "1");
        }
        sse_answer(&format!("echo {}", last_user_message(request)))
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_429_pauses_the_key_for_every_session_until_its_reset() {
    let upstream = Arc::new(RateLimitedOnce {
        arrivals: Mutex::new(Vec::new()),
    });
    let server = upstream_with(Shared(upstream.clone())).await;
    let env = env_for(&server);
    let mut a = env.shim().await;
    a.initialize("a").await;
    let mut b = env.shim().await;
    b.initialize("b").await;
    let first = a
        .send_request("tools/call", json!({"name": "get_bot_response", "arguments": {"bot_name": "test-bot", "message": "from a"}}))
        .await;
    // Wait until the daemon has taken in the 429 (the key's limiter is
    // paused), then let B try. Waiting only for the 429 to leave the
    // upstream raced B against the answer's way back to the limiter.
    while upstream.arrivals.lock().unwrap().is_empty() {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    env.wait_status(Duration::from_secs(10), |s| {
        s["limiters"]
            .as_array()
            .is_some_and(|ls| ls.iter().any(|l| l["paused_for_ms"].as_u64().is_some()))
    });
    let answer_b = b.ask("test-bot", "from b").await;
    let answer_a = a.response(&first).await;
    assert_eq!(result_text(&answer_a), "echo from a");
    assert_eq!(result_text(&answer_b), "echo from b");
    let arrivals = upstream.arrivals.lock().unwrap().clone();
    assert_eq!(arrivals.len(), 3, "one 429, then one request per call");
    for later in &arrivals[1..] {
        assert!(
            later.duration_since(arrivals[0]) >= Duration::from_millis(950),
            "a request reached the upstream before the 429's reset"
        );
    }
}

/// Fails with `status` for the first `failures` requests, then answers.
struct FailingFirst {
    status: u16,
    failures: usize,
    count: Mutex<usize>,
}

impl Answer for FailingFirst {
    fn answer(&self, request: &Request) -> ResponseTemplate {
        let mut count = self.count.lock().unwrap();
        *count += 1;
        if *count <= self.failures {
            return poe_error(self.status, "upstream trouble");
        }
        sse_answer(&format!("echo {}", last_user_message(request)))
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn server_errors_are_retried_with_backoff_then_succeed() {
    let upstream = Arc::new(FailingFirst {
        status: 502,
        failures: 2,
        count: Mutex::new(0),
    });
    let server = upstream_with(Shared(upstream.clone())).await;
    let env = env_for(&server);
    let mut shim = env.shim().await;
    shim.initialize("retry").await;
    let answer = shim.ask("test-bot", "eventually").await;
    assert_eq!(result_text(&answer), "echo eventually", "{answer}");
    assert_eq!(*upstream.count.lock().unwrap(), 3);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_bad_request_is_not_retried() {
    let upstream = Arc::new(FailingFirst {
        status: 400,
        failures: 100,
        count: Mutex::new(0),
    });
    let server = upstream_with(Shared(upstream.clone())).await;
    let env = env_for(&server);
    let mut shim = env.shim().await;
    shim.initialize("no-retry").await;
    let answer = shim.ask("test-bot", "bad").await;
    assert_eq!(
        error_code(&answer).as_deref(),
        Some("INVALID_ARGUMENT"),
        "{answer}"
    );
    assert_eq!(*upstream.count.lock().unwrap(), 1);
}

#[tokio::test(flavor = "multi_thread")]
async fn persistent_server_errors_give_up_with_a_clear_error() {
    let upstream = Arc::new(FailingFirst {
        status: 503,
        failures: 100,
        count: Mutex::new(0),
    });
    let server = upstream_with(Shared(upstream.clone())).await;
    let env = env_for(&server);
    let mut shim = env.shim().await;
    shim.initialize("give-up").await;
    let answer = shim.ask("test-bot", "doomed").await;
    assert_eq!(
        error_code(&answer).as_deref(),
        Some("PROVIDER_UNAVAILABLE"),
        "{answer}"
    );
    assert_eq!(
        *upstream.count.lock().unwrap(),
        5,
        "first try plus four retries"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn config_file_sets_limits_and_a_broken_one_is_reported_not_fatal() {
    let env = TestEnv::new(&["echo-plugin"]);
    env.write_config("[limits]\necho = 321\n");
    let mut shim = env.shim().await;
    shim.initialize("configured").await;
    let answer = shim.ask("echo", "hi").await;
    assert_eq!(result_text(&answer), "hi");
    let status = env.status().unwrap();
    assert_eq!(status["limiters"][0]["requests_per_minute"], 321);
    assert!(status["config_error"].is_null());

    let broken = TestEnv::new(&["echo-plugin"]);
    broken.write_config("[limits\necho = ");
    let mut shim = broken.shim().await;
    shim.initialize("broken-config").await;
    let answer = shim.ask("echo", "still").await;
    assert_eq!(result_text(&answer), "still");
    let status = broken.status().unwrap();
    assert!(
        status["config_error"]
            .as_str()
            .unwrap()
            .contains("config.toml"),
        "{status}"
    );
    assert_eq!(
        std::fs::read_to_string(broken.path("config.toml")).unwrap(),
        "[limits\necho = ",
        "never rewritten"
    );
}
