//! poe-code's benchmark. Run it with `cargo run --release -p bench`.
//!
//! Everything is measured in one run on this machine, each figure next to a
//! baseline measured the same way in the same run:
//!
//! 1. shim start: spawn `poe-code mcp run` with the daemon warm and time
//!    until the `initialize` answer arrives; baseline: spawn and reap a
//!    trivial process (`poe-code --version`);
//! 2. call latency: `get_bot_response` through shim + daemon + poe-openai
//!    plugin against the local fake Poe; baseline: the same chat completion
//!    request sent straight to the fake with reqwest. The difference is the
//!    latency poe-code adds; `list_models` (answered by the daemon alone) and
//!    a call to the in-memory echo plugin split it into its parts.
//! 3. cold start: no daemon running, spawn a shim, time to the `initialize`
//!    answer (the shim starts the daemon, which loads the plugin);
//! 4. 50 concurrent sessions: throughput and latency through poe-code vs 50
//!    concurrent direct clients; daemon and shim resident memory;
//! 5. hot reload: a new version of a plugin file settled -> first answer from
//!    it, while a session calls in a loop;
//! 6. one plugin call through the ABI (JSON across the boundary) vs the same
//!    provider called directly in Rust;
//! 7. a `chat` turn with 5 attached files on a conversation of 50 and of
//!    1,000 messages (history from the store, files read and checked, the
//!    turn stored; each turn on its own conversation, so the history is
//!    exactly that long) vs the same request, history and file text
//!    included, sent straight to the fake;
//! 8. a 3-model `consensus` with cross-feedback against a stand-in whose
//!    answers each stream for 1 s: wall time against two parallel rounds;
//! 9. `get_bot_response` over the HTTP listener (a 2025-11-25 session and a
//!    2026-07-28 stateless request) vs the stdio path vs direct, interleaved;
//!    and 1,000 HTTP sessions open on one daemon: memory per session;
//! 10. the shared limiter alone: the wait of a 20-call loop and of a burst of
//!     a whole minute's limit, and what the call after it is told; and a turn
//!     with the limits in Redis against the same turn in process;
//! 11. calls in flight: 500 and 2,000 sessions with one call each that the
//!     stand-in answers after 5 s: wall time against the 5 s, the daemon's
//!     threads and memory while all are in flight; then 2,000 idle sessions.

mod http;
mod in_flight;
mod ledger;
mod limiter;

use std::time::{Duration, Instant};

use serde_json::json;
use testkit::TestEnv;
use testkit::client::result_text;

fn percentile(samples: &mut [Duration], p: f64) -> Duration {
    samples.sort();
    let rank = ((samples.len() as f64 - 1.0) * p).round() as usize;
    samples[rank]
}

fn ms(d: Duration) -> String {
    format!("{:.3} ms", d.as_secs_f64() * 1000.0)
}

struct Summary {
    p50: Duration,
    p99: Duration,
}

fn summarize(mut samples: Vec<Duration>) -> Summary {
    Summary {
        p50: percentile(&mut samples, 0.50),
        p99: percentile(&mut samples, 0.99),
    }
}

fn arg(name: &str, default: usize) -> usize {
    let flag = format!("--{name}");
    let args: Vec<String> = std::env::args().collect();
    args.iter()
        .position(|a| *a == flag)
        .and_then(|i| args.get(i + 1))
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

#[tokio::main]
async fn main() {
    if !testkit::build::RELEASE {
        eprintln!("note: debug build; run `cargo run --release -p bench` for meaningful numbers");
    }
    let spawns = arg("spawns", 200);
    let calls = arg("calls", 2000);
    let sessions = arg("sessions", 50);
    let per_session = arg("per-session", 40);
    let warmup = 50;
    let in_flight = || {
        in_flight::calls_in_flight(
            vec![arg("in-flight-small", 500), arg("in-flight", 2000)],
            arg("idle-sessions", 2000),
        )
    };
    // `--only in-flight`: just that section (it takes a minute on its own).
    if std::env::args().any(|a| a == "in-flight") {
        in_flight().await;
        return;
    }
    if std::env::args().any(|a| a == "ledger") {
        ledger::summaries();
        return;
    }
    if std::env::args().any(|a| a == "limiter") {
        limiter::waits().await;
        limiter::team().await;
        return;
    }

    // No request recording: a long run would otherwise keep every body.
    let fake = fake_poe::FakePoe::start_without_recording().await;
    let env = TestEnv::new(&["poe-openai", "echo-plugin"])
        .with_var("POE_BASE_URL", fake.base_url())
        .with_var("POE_API_KEY", fake_poe::FAKE_API_KEY)
        // Measure poe-code, not the shared limiter's pacing.
        .with_var(
            "POE_CODE_RATE_LIMITS",
            "poe-openai=100000000,echo=100000000",
        );
    println!(
        "poe-code benchmark ({} build)",
        if testkit::build::RELEASE {
            "release"
        } else {
            "debug"
        }
    );

    // Warm the daemon.
    let mut session = env.shim().await;
    session.initialize("bench").await;

    // 1. Shim spawn to initialize answer, daemon warm.
    let mut baseline = Vec::with_capacity(spawns);
    let mut shim_start = Vec::with_capacity(spawns);
    for i in 0..spawns + warmup / 5 {
        let started = Instant::now();
        let status = env
            .command("poe-code")
            .arg("--version")
            .stdout(std::process::Stdio::null())
            .status()
            .expect("spawn");
        let elapsed = started.elapsed();
        assert!(status.success());

        let started = Instant::now();
        let mut shim = env.shim().await;
        let init = shim.initialize("bench-spawn").await;
        let to_init = started.elapsed();
        assert_eq!(init["result"]["serverInfo"]["name"], "poe-code");
        shim.close_stdin();
        shim.wait_exit(Duration::from_secs(5)).await;
        if i >= warmup / 5 {
            baseline.push(elapsed);
            shim_start.push(to_init);
        }
    }
    let base = summarize(baseline);
    let start = summarize(shim_start);
    println!();
    println!("shim spawn -> initialize answered (daemon warm), {spawns} runs");
    println!(
        "  poe-code mcp run + initialize   p50 {}  p99 {}",
        ms(start.p50),
        ms(start.p99)
    );
    println!(
        "  baseline: spawn+exit a process  p50 {}  p99 {}",
        ms(base.p50),
        ms(base.p99)
    );
    println!(
        "  ratio p50 {:.2}x baseline (target: initialize under 5 ms p50)",
        start.p50.as_secs_f64() / base.p50.as_secs_f64()
    );

    // 2. get_bot_response through the stack vs straight to the fake.
    let client = reqwest::Client::new();
    let url = format!("{}/chat/completions", fake.base_url());
    let message = "benchmark message of a few words";
    let body = json!({
        "model": "Claude-Sonnet-4.5",
        "messages": [{"role": "user", "content": message}],
        "stream": true,
        "stream_options": {"include_usage": true}
    });
    let mut direct = Vec::with_capacity(calls);
    let mut through = Vec::with_capacity(calls);
    // Where the added time goes: a tool answered by the daemon alone, and a
    // call to the in-memory echo plugin (job, limiter, ABI, no HTTP).
    let mut protocol = Vec::with_capacity(calls);
    let mut echo = Vec::with_capacity(calls);
    for i in 0..calls + warmup {
        // Interleave the two so drift on the machine hits both equally.
        let started = Instant::now();
        let response = client
            .post(&url)
            .bearer_auth(fake_poe::FAKE_API_KEY)
            .json(&body)
            .send()
            .await
            .expect("direct request");
        let text = response.text().await.expect("direct body");
        let d = started.elapsed();
        assert!(text.contains("[DONE]"));

        let (t, answer) = timed_call(
            &mut session,
            "get_bot_response",
            json!({"bot_name": "Claude-Sonnet-4.5", "message": message}),
        )
        .await;
        assert!(result_text(&answer).contains(message), "{answer}");
        let (p, models) = timed_call(&mut session, "list_models", json!({})).await;
        assert!(result_text(&models).contains("poe-openai"), "{models}");
        let (e, answer) = timed_call(
            &mut session,
            "get_bot_response",
            json!({"bot_name": "echo", "message": message}),
        )
        .await;
        assert!(result_text(&answer).contains(message), "{answer}");
        if i >= warmup {
            direct.push(d);
            through.push(t);
            protocol.push(p);
            echo.push(e);
        }
    }
    let direct = summarize(direct);
    let through = summarize(through);
    println!();
    println!("get_bot_response vs the same request straight to the fake Poe, {calls} calls");
    println!(
        "  shim+daemon+plugin   p50 {}  p99 {}",
        ms(through.p50),
        ms(through.p99)
    );
    println!(
        "  baseline: direct     p50 {}  p99 {}",
        ms(direct.p50),
        ms(direct.p99)
    );
    println!(
        "  added latency        p50 {}  p99 {}  (ratio p50 {:.2}x; target: added under 0.5 ms p50)",
        ms(through.p50.saturating_sub(direct.p50)),
        ms(through.p99.saturating_sub(direct.p99)),
        through.p50.as_secs_f64() / direct.p50.as_secs_f64()
    );
    let protocol = summarize(protocol);
    let echo = summarize(echo);
    println!(
        "  where it goes (p50): shim+daemon+MCP round trip (list_models) {},",
        ms(protocol.p50)
    );
    println!(
        "    + job, limiter and ABI (echo plugin) {}, + HTTP inside the plugin {}",
        ms(echo.p50.saturating_sub(protocol.p50)),
        ms(through.p50.saturating_sub(echo.p50))
    );
    drop(session);

    let cold = cold_start(&env, 10).await;
    println!();
    println!(
        "cold start: no daemon -> first initialize answered (shim starts daemon, plugin loads), 10 runs"
    );
    println!(
        "  p50 {}  p99 {}  (target: well under 1 s)",
        ms(cold.p50),
        ms(cold.p99)
    );

    // Seeding 1,000-message conversations takes 500 calls each: fewer of them.
    chat_turns(&env, &fake.base_url(), 50, arg("chat-calls", 100)).await;
    chat_turns(&env, &fake.base_url(), 1000, arg("chat-calls-long", 20)).await;

    concurrent(&env, &fake.base_url(), sessions, per_session).await;
    drop(env);

    limiter::waits().await;
    limiter::team().await;
    ledger::summaries();
    http::latency(&fake, arg("http-calls", 1000)).await;
    http::many_sessions(arg("http-sessions", 1000)).await;
    in_flight().await;

    consensus_wall(arg("consensus-runs", 5)).await;
    reload_latency(arg("reloads", 10)).await;
    abi_overhead(arg("abi-calls", 200_000));
}

/// One tool call and how long its answer took.
async fn timed_call(
    session: &mut testkit::McpClient,
    tool: &str,
    arguments: serde_json::Value,
) -> (Duration, serde_json::Value) {
    let started = Instant::now();
    let answer = session.call_tool(tool, arguments).await;
    (started.elapsed(), answer)
}

/// What a direct streaming client does to get the answer: read the SSE
/// events as they come and join the chunks' `delta.content`.
async fn read_streamed_answer(response: reqwest::Response) -> String {
    use eventsource_stream::Eventsource;
    use futures::StreamExt;
    let mut events = response
        .bytes_stream()
        .flat_map(|read| futures::stream::iter(poe_plugin_api::chunks::by_line(read)))
        .eventsource();
    let mut answer = String::new();
    while let Some(event) = events.next().await {
        let event = event.expect("SSE event");
        if event.data == "[DONE]" {
            break;
        }
        let chunk: serde_json::Value = serde_json::from_str(&event.data).expect("chunk JSON");
        if let Some(piece) = chunk["choices"][0]["delta"]["content"].as_str() {
            answer.push_str(piece);
        }
    }
    answer
}

/// Seeds a conversation of `history` short messages; returns its id and
/// the same history as OpenAI messages, for the direct requests.
async fn seed_conversation(
    session: &mut testkit::McpClient,
    model: &str,
    history: usize,
) -> (String, Vec<serde_json::Value>) {
    let line = "a message of about this many words in the conversation";
    let mut messages: Vec<serde_json::Value> = Vec::new();
    let mut id: Option<String> = None;
    while messages.len() < history {
        let mut arguments = json!({"prompt": line, "model": model});
        if let Some(id) = &id {
            arguments["continuation_id"] = json!(id);
        }
        let answer = session.call_tool("chat", arguments).await;
        let body = &answer["result"]["structuredContent"];
        id = Some(
            body["continuation"]["id"]
                .as_str()
                .unwrap_or_else(|| panic!("no continuation in {answer}"))
                .to_string(),
        );
        messages.push(json!({"role": "user", "content": line}));
        messages.push(json!({"role": "assistant", "content": body["content"]}));
    }
    (id.expect("a conversation"), messages)
}

/// `chat` turns with five attached files, each on its own conversation that
/// already holds `history` messages (so every measured request is that
/// history plus one message with the files), against the same request
/// straight to the fake.
async fn chat_turns(env: &TestEnv, base_url: &str, history: usize, calls: usize) {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut files = Vec::new();
    for i in 0..5 {
        let name = format!("module{i}.rs");
        let text: String = (0..40)
            .map(|l| format!("fn function_{i}_{l}() -> u32 {{ {l} }}\n"))
            .collect();
        std::fs::write(dir.path().join(&name), &text).expect("write file");
        files.push(name);
    }
    let mut session = env.shim_in(dir.path()).await;
    session.initialize("bench-chat").await;
    let rules = poe_code::chat::files::InputRules {
        cwd: Some(dir.path().to_path_buf()),
        roots: Vec::new(),
        max_file_bytes: 1 << 20,
        max_image_bytes: 10 << 20,
    };
    let model = "Claude-Sonnet-4.5";
    let client = reqwest::Client::new();
    let url = format!("{base_url}/chat/completions");
    let mut direct_raw = Vec::with_capacity(calls);
    let mut direct = Vec::with_capacity(calls);
    let mut through = Vec::with_capacity(calls);
    let mut sent_bytes = 0;
    for i in 0..calls + 3 {
        let (id, mut sent) = seed_conversation(&mut session, model, history).await;
        let prompt = format!("what do these files do? ({i})");
        // The message exactly as poe-code builds it (numbered file blocks).
        let read = poe_code::chat::files::read_files(&files, &rules).expect("read files");
        let content = poe_code::chat::turn::user_row(&prompt, read, Vec::new(), 1).content;
        sent.push(json!({"role": "user", "content": content}));
        let body = json!({
            "model": model, "messages": sent, "stream": true,
            "stream_options": {"include_usage": true}
        });
        sent_bytes = body.to_string().len();
        let post = || {
            client
                .post(&url)
                .bearer_auth(fake_poe::FAKE_API_KEY)
                .json(&body)
                .send()
        };
        let started = Instant::now();
        let response = post().await.expect("direct request");
        let text = response.text().await.expect("direct body");
        let raw = started.elapsed();
        assert!(text.contains("[DONE]"));
        let started = Instant::now();
        let response = post().await.expect("direct request");
        let streamed = read_streamed_answer(response).await;
        let d = started.elapsed();
        assert!(streamed.contains(&prompt));
        let (t, answer) = timed_call(
            &mut session,
            "chat",
            json!({"prompt": prompt, "continuation_id": id, "files": files}),
        )
        .await;
        let content = &answer["result"]["structuredContent"]["content"];
        assert!(
            content.as_str().is_some_and(|c| c.contains(&prompt)),
            "{answer}"
        );
        // The first turns warm caches and connections.
        if i >= 3 {
            direct_raw.push(raw);
            direct.push(d);
            through.push(t);
        }
    }
    let direct_raw = summarize(direct_raw);
    let direct = summarize(direct);
    let through = summarize(through);
    println!();
    println!(
        "chat turn with 5 attached files on a conversation of {history} messages \
         ({calls} conversations, request ~{} KB)",
        sent_bytes / 1024
    );
    println!(
        "  chat through poe-code                         p50 {}  p99 {}",
        ms(through.p50),
        ms(through.p99)
    );
    println!(
        "  baseline: direct, answer read from the stream  p50 {}  p99 {}",
        ms(direct.p50),
        ms(direct.p99)
    );
    println!(
        "  (direct, body read whole without parsing       p50 {}  p99 {})",
        ms(direct_raw.p50),
        ms(direct_raw.p99)
    );
    println!(
        "  added time                                    p50 {}  p99 {}  (target: under 2 ms p50, flat in history length)",
        ms(through.p50.saturating_sub(direct.p50)),
        ms(through.p99.saturating_sub(direct.p99)),
    );
}

/// A 3-model consensus with cross-feedback against a stand-in whose every
/// answer streams for 1 s: the wall time against the 2 s of two rounds run
/// in parallel (and the 6 s of asking one model after another).
async fn consensus_wall(runs: usize) {
    let paced = fake_poe::PacedPoe::start().await;
    let env = TestEnv::new(&["poe-openai"])
        .with_var("POE_BASE_URL", paced.base_url())
        .with_var("POE_API_KEY", fake_poe::FAKE_API_KEY);
    let mut session = env.shim().await;
    session.initialize("bench-consensus").await;
    let upstream = Duration::from_secs(1);
    let mut walls = Vec::with_capacity(runs);
    for i in 0..runs {
        let (t, answer) = timed_call(
            &mut session,
            "consensus",
            json!({"prompt": format!("question {i}"),
                   "models": ["fake-stream-1s", "fake-stream-1000ms", "fake-stream-01s"]}),
        )
        .await;
        let body = &answer["result"]["structuredContent"];
        assert_eq!(body["status"], "consensus_complete", "{answer}");
        assert_eq!(body["refined_responses"], 3, "{answer}");
        walls.push(t);
    }
    let wall = summarize(walls);
    println!();
    println!(
        "consensus of 3 models with cross-feedback, each upstream answer streaming {} ms, {runs} runs",
        upstream.as_millis()
    );
    println!("  wall time p50 {}  p99 {}", ms(wall.p50), ms(wall.p99));
    println!(
        "  ratio p50 {:.2}x two rounds in parallel (2 s; target about 1x), {:.2}x one model after another (6 s)",
        wall.p50.as_secs_f64() / (upstream * 2).as_secs_f64(),
        wall.p50.as_secs_f64() / (upstream * 6).as_secs_f64()
    );
}

/// Time from a plugin file settling to the first answer from the new version.
async fn reload_latency(runs: usize) {
    // The loop below asks as fast as it can until the new version answers:
    // thousands of calls a second, far past echo's declared limit.
    let env = TestEnv::new(&["echo-plugin"]).with_var("POE_CODE_RATE_LIMITS", "echo=100000000");
    let target = env.plugin_dir().join("libecho_plugin.so");
    let versions = [
        testkit::build::plugin_library("echo-v2-plugin"),
        testkit::build::plugin_library("echo-plugin"),
    ];
    let mut shim = env.shim().await;
    shim.initialize("bench-reload").await;
    let mut samples = Vec::with_capacity(runs);
    for run in 0..runs {
        let next = &versions[run % 2];
        let wants_v2 = run % 2 == 0;
        let tmp = target.with_extension("partial");
        std::fs::copy(next, &tmp).expect("copy plugin");
        std::fs::rename(&tmp, &target).expect("rename plugin");
        let written = Instant::now();
        loop {
            let answer = shim
                .call_tool(
                    "get_bot_response",
                    json!({"bot_name": "echo", "message": "ping"}),
                )
                .await;
            if result_text(&answer).starts_with("v2:") == wants_v2 {
                break;
            }
        }
        // The watcher waits for the file to stay unchanged this long first.
        samples.push(written.elapsed().saturating_sub(poe_code_settle()));
    }
    let reload = summarize(samples);
    println!();
    println!(
        "hot reload: file settled -> first answer from the new version, {runs} swaps under a calling session"
    );
    println!(
        "  p50 {}  p99 {}  (plus the {} ms settle wait; target: within 1 s)",
        ms(reload.p50),
        ms(reload.p99),
        poe_code_settle().as_millis()
    );
}

/// The watcher's settle time (host/src/plugins/watcher.rs `SETTLE`).
fn poe_code_settle() -> Duration {
    Duration::from_millis(300)
}

struct NullSink;

impl poe_plugin_api::host::EventSink for NullSink {
    fn emit(&self, _event: poe_plugin_api::Event) {}
    fn is_cancelled(&self) -> bool {
        false
    }
}

/// One call through the ABI vs the same provider called directly.
fn abi_overhead(calls: usize) {
    use poe_plugin_api::{Message, Provider, Request};
    let library = testkit::build::load_plugin("echo-plugin");
    let provider = library.open(&Default::default()).expect("open echo");
    let request = Request {
        model: "echo".into(),
        messages: vec![Message::user("a short benchmark prompt of eight words")],
        ..Request::default()
    };
    let direct = echo_plugin::Echo::open(Default::default()).expect("open direct");
    let sink = poe_plugin_api::Sink::new(NullSink);

    let started = Instant::now();
    for _ in 0..calls {
        let response = provider.invoke(&request, NullSink).expect("abi call");
        std::hint::black_box(response);
    }
    let through_abi = started.elapsed() / calls as u32;
    let started = Instant::now();
    for _ in 0..calls {
        let response = direct.invoke(request.clone(), &sink).expect("direct call");
        std::hint::black_box(response);
    }
    let direct_call = started.elapsed() / calls as u32;
    println!();
    println!("one plugin call (echo, short prompt), {calls} calls each");
    println!(
        "  through the ABI (JSON across)  {:.2} µs",
        through_abi.as_secs_f64() * 1e6
    );
    println!(
        "  direct Rust call               {:.2} µs",
        direct_call.as_secs_f64() * 1e6
    );
    println!(
        "  ABI cost {:.2} µs per call ({:.1}x)",
        (through_abi.saturating_sub(direct_call)).as_secs_f64() * 1e6,
        through_abi.as_secs_f64() / direct_call.as_secs_f64()
    );
}

/// Resident set size of `pid` in KiB, from /proc.
fn rss_kib(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status
        .lines()
        .find(|l| l.starts_with("VmRSS:"))?
        .split_whitespace()
        .nth(1)?
        .parse()
        .ok()
}

async fn cold_start(env: &TestEnv, runs: usize) -> Summary {
    let mut samples = Vec::with_capacity(runs);
    for _ in 0..runs {
        let out = env.run("poe-coded", &["stop"]);
        assert!(out.status.success());
        let started = Instant::now();
        let mut shim = env.shim().await;
        let init = shim.initialize("bench-cold").await;
        samples.push(started.elapsed());
        assert_eq!(init["result"]["serverInfo"]["name"], "poe-code");
        shim.close_stdin();
        shim.wait_exit(Duration::from_secs(5)).await;
    }
    summarize(samples)
}

async fn concurrent(env: &TestEnv, base_url: &str, sessions: usize, per_session: usize) {
    let message = "concurrent benchmark message";
    // Direct: the same number of concurrent clients straight to the fake.
    let client = reqwest::Client::new();
    let url = format!("{base_url}/chat/completions");
    let body = json!({
        "model": "Claude-Sonnet-4.5",
        "messages": [{"role": "user", "content": message}],
        "stream": true,
        "stream_options": {"include_usage": true}
    });
    let started = Instant::now();
    let direct: Vec<Vec<Duration>> = futures_join(sessions, |_| {
        let client = client.clone();
        let url = url.clone();
        let body = body.clone();
        async move {
            let mut samples = Vec::with_capacity(per_session);
            for _ in 0..per_session {
                let t = Instant::now();
                let text = client
                    .post(&url)
                    .bearer_auth(fake_poe::FAKE_API_KEY)
                    .json(&body)
                    .send()
                    .await
                    .expect("direct")
                    .text()
                    .await
                    .expect("body");
                assert!(text.contains("[DONE]"));
                samples.push(t.elapsed());
            }
            samples
        }
    })
    .await;
    let direct_wall = started.elapsed();

    let mut shims = Vec::with_capacity(sessions);
    for i in 0..sessions {
        let mut shim = env.shim().await;
        shim.initialize(&format!("bench-{i}")).await;
        shims.push(shim);
    }
    let status = env.status().expect("daemon runs");
    let daemon_pid = status["pid"].as_u64().unwrap() as u32;
    let daemon_rss = rss_kib(daemon_pid).unwrap_or(0);
    let shim_rss: Vec<u64> = shims
        .iter()
        .filter_map(|s| s.pid().and_then(rss_kib))
        .collect();
    let started = Instant::now();
    let through: Vec<Vec<Duration>> = futures_join_shims(&mut shims, per_session, message).await;
    let through_wall = started.elapsed();
    let daemon_rss_after = rss_kib(daemon_pid).unwrap_or(0);

    let total = (sessions * per_session) as f64;
    let direct = summarize(direct.into_iter().flatten().collect());
    let through = summarize(through.into_iter().flatten().collect());
    println!();
    println!("{sessions} concurrent sessions x {per_session} get_bot_response calls");
    println!(
        "  throughput: poe-code {:.0} calls/s, direct {:.0} calls/s (ratio {:.2})",
        total / through_wall.as_secs_f64(),
        total / direct_wall.as_secs_f64(),
        direct_wall.as_secs_f64() / through_wall.as_secs_f64()
    );
    println!(
        "  latency poe-code     p50 {}  p99 {}",
        ms(through.p50),
        ms(through.p99)
    );
    println!(
        "  latency direct       p50 {}  p99 {}",
        ms(direct.p50),
        ms(direct.p99)
    );
    println!(
        "  added latency        p50 {}  p99 {}",
        ms(through.p50.saturating_sub(direct.p50)),
        ms(through.p99.saturating_sub(direct.p99))
    );
    println!(
        "  daemon RSS with {sessions} sessions: {:.1} MiB idle, {:.1} MiB after the calls",
        daemon_rss as f64 / 1024.0,
        daemon_rss_after as f64 / 1024.0
    );
    if !shim_rss.is_empty() {
        let mean = shim_rss.iter().sum::<u64>() as f64 / shim_rss.len() as f64;
        println!(
            "  shim RSS: {:.1} MiB each (mean of {})",
            mean / 1024.0,
            shim_rss.len()
        );
    }
}

async fn futures_join<F, Fut, T>(n: usize, make: F) -> Vec<T>
where
    F: Fn(usize) -> Fut,
    Fut: std::future::Future<Output = T> + Send + 'static,
    T: Send + 'static,
{
    let handles: Vec<_> = (0..n).map(|i| tokio::spawn(make(i))).collect();
    let mut out = Vec::with_capacity(n);
    for handle in handles {
        out.push(handle.await.expect("task"));
    }
    out
}

async fn futures_join_shims(
    shims: &mut [testkit::McpClient],
    per_session: usize,
    message: &str,
) -> Vec<Vec<Duration>> {
    let runs = shims.iter_mut().map(|shim| async move {
        let mut samples = Vec::with_capacity(per_session);
        for _ in 0..per_session {
            let t = Instant::now();
            let answer = shim
                .call_tool(
                    "get_bot_response",
                    json!({"bot_name": "Claude-Sonnet-4.5", "message": message}),
                )
                .await;
            samples.push(t.elapsed());
            assert!(result_text(&answer).contains(message), "{answer}");
        }
        samples
    });
    futures::future::join_all(runs).await
}
