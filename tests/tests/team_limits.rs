//! Team-wide limits: daemons with `[limits] backend = "redis://…"` share one
//! window per key through a real `redis-server`, so together they never
//! exceed the upstream's limit; Redis going away fails no call (each daemon
//! falls back to its own window, says so once in its log and in `status`)
//! and coming back is noticed by itself; a Redis that never answers costs a
//! call at most one short wait.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use testkit::TestEnv;
use testkit::client::result_text;
use testkit::env::TEST_API_KEY;
use testkit::external::{Tool, require};
use testkit::redis::RedisServer as Redis;
use testkit::upstream::{Shared, WindowedUpstream, upstream_with};
use wiremock::MockServer;

fn team_env(server: &MockServer, redis_url: &str, window_secs: u32, limit: u32) -> TestEnv {
    let env = TestEnv::new(&["poe-openai"])
        .with_var("POE_BASE_URL", format!("{}/v1", server.uri()))
        .with_var("POE_CODE_RATE_WINDOW_SECS", window_secs.to_string())
        .with_var("POE_CODE_RATE_LIMITS", format!("poe-openai={limit}"));
    env.write_config(&format!("[limits]\nbackend = \"{redis_url}\"\n"));
    env
}

/// `sessions` sessions on `env`, each asking `calls` times in a row.
async fn ask_many(env: &TestEnv, tag: &str, sessions: usize, calls: usize) {
    let runs = (0..sessions).map(|s| async move {
        let mut shim = env.shim().await;
        shim.initialize(&format!("{tag}-{s}")).await;
        for c in 0..calls {
            let message = format!("{tag} s{s} c{c}");
            let answer = shim.ask("test-bot", &message).await;
            assert_eq!(result_text(&answer), format!("echo {message}"), "{answer}");
        }
    });
    futures::future::join_all(runs).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn two_daemons_on_one_redis_never_exceed_the_limit_together() {
    let test = "two_daemons_on_one_redis_never_exceed_the_limit_together";
    let Some(bin) = require(Tool::Redis, test) else {
        return;
    };
    let redis = Redis::start(&bin);
    // 300 requests per 4 s window (Poe's minute, shortened so the test takes
    // seconds): 600 calls from two daemons, against a stand-in that counts
    // the same window and says 429 past it. Each daemon alone would send
    // its 300 at once, 600 in one window.
    let upstream = Arc::new(WindowedUpstream::new(Duration::from_secs(4), 300));
    let server = upstream_with(Shared(upstream.clone())).await;
    let first = team_env(&server, &redis.url(), 4, 300);
    let second = team_env(&server, &redis.url(), 4, 300);
    tokio::join!(
        ask_many(&first, "a", 10, 30),
        ask_many(&second, "b", 10, 30)
    );
    assert_eq!(server.received_requests().await.unwrap().len(), 600);
    assert_eq!(
        *upstream.rejected.lock().unwrap(),
        0,
        "the upstream never had to say 429"
    );
    let max = *upstream.max_in_window.lock().unwrap();
    assert!(max <= 300, "{max} requests in one window");
    assert_ne!(
        first.status().unwrap()["pid"],
        second.status().unwrap()["pid"]
    );
    let backend = &first.status().unwrap()["limits_backend"];
    assert_eq!(backend["ok"], true, "{backend}");
    assert_eq!(backend["url"], redis.url());

    // Redis holds a hash of the key, never the key.
    let keys = redis.command(&["KEYS", "*"]).unwrap();
    assert!(keys.contains("poe-code:limits:poe-openai:"), "{keys}");
    assert!(!keys.contains(TEST_API_KEY), "{keys}");
    assert!(
        !keys.contains(&TEST_API_KEY[TEST_API_KEY.len() - 4..]),
        "{keys}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn calls_keep_succeeding_while_redis_is_down_and_it_is_used_again_when_back() {
    let test = "calls_keep_succeeding_while_redis_is_down_and_it_is_used_again_when_back";
    let Some(bin) = require(Tool::Redis, test) else {
        return;
    };
    let mut redis = Redis::start(&bin);
    let upstream = Arc::new(WindowedUpstream::new(Duration::from_secs(60), 1000));
    let server = upstream_with(Shared(upstream.clone())).await;
    let env = team_env(&server, &redis.url(), 60, 500);
    ask_many(&env, "up", 2, 5).await;
    assert_eq!(env.status().unwrap()["limits_backend"]["ok"], true);
    let window = redis
        .command(&["KEYS", "poe-code:limits:poe-openai:*:window"])
        .unwrap();
    assert!(window.contains(":window"), "{window}");

    // Killed mid-run: every call still succeeds, on this daemon's own window.
    redis.kill();
    ask_many(&env, "down", 4, 10).await;
    let status = env.status().unwrap();
    let backend = &status["limits_backend"];
    assert_eq!(backend["ok"], false, "{backend}");
    assert!(backend["error"].as_str().is_some_and(|e| !e.is_empty()));
    let log = env.daemon_log();
    assert_eq!(
        log.matches("Redis unreachable").count(),
        1,
        "one warning, not one per call:\n{log}"
    );

    // Back on the same port: the connection comes back by itself.
    let redis = Redis::start_on(&redis.bin.clone(), redis.port);
    let deadline = Instant::now() + Duration::from_secs(20);
    let mut round = 0;
    loop {
        ask_many(&env, &format!("back{round}"), 1, 1).await;
        if env.status().unwrap()["limits_backend"]["ok"] == true {
            break;
        }
        assert!(Instant::now() < deadline, "Redis never used again");
        round += 1;
    }
    assert!(env.daemon_log().contains("Redis answers again"));
    assert_eq!(
        server.received_requests().await.unwrap().len(),
        10 + 40 + round + 1
    );
    drop(redis);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_redis_that_never_answers_fails_no_call() {
    // A listener that takes connections and never says a word: every
    // request to it times out, which must cost a call at most one short
    // wait, never an error.
    let silent = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("redis://{}/0", silent.local_addr().unwrap());
    let held = Arc::new(Mutex::new(Vec::new()));
    std::thread::spawn({
        let held = held.clone();
        move || {
            for stream in silent.incoming().flatten() {
                held.lock().unwrap().push(stream);
            }
        }
    });
    let server = upstream_with(Shared(Arc::new(WindowedUpstream::new(
        Duration::from_secs(60),
        1000,
    ))))
    .await;
    let env = team_env(&server, &url, 60, 500);
    ask_many(&env, "silent", 2, 10).await;
    let backend = &env.status().unwrap()["limits_backend"];
    assert_eq!(backend["ok"], false, "{backend}");
    assert!(
        backend["error"].as_str().is_some_and(|e| !e.is_empty()),
        "{backend}"
    );
    assert_eq!(server.received_requests().await.unwrap().len(), 20);
    assert_eq!(env.daemon_log().matches("Redis unreachable").count(), 1);
}
