//! Calls in flight: `n` sessions over the daemon's socket (what `n` shims
//! open), each with one `get_bot_response` that the stand-in Poe answers
//! after 5 s. The wall time from the first call sent to the last answer is
//! set against that 5 s; the daemon's threads and resident memory are read
//! while every call is in flight. Each size runs twice: against the plain
//! HTTP/1.1 stand-in (one connection per call in flight) and behind an HTTPS
//! front with ALPN h2 and a stream limit, which is how api.poe.com is
//! reached. Then sessions that stay idle, on a fresh daemon: memory.

use std::time::{Duration, Instant};

use poe_code::config::Paths;
use poe_code::ipc::lines::{Frame, FrameReader, write_json};
use poe_code::ipc::{ConnectionKind, Hello, MAX_MESSAGE_BYTES};
use poe_code::shim::connect::connect;
use serde_json::{Value, json};
use testkit::TestEnv;
use tokio::net::unix::{OwnedReadHalf, OwnedWriteHalf};

use crate::rss_kib;

/// How long the stand-in takes to answer each call.
const UPSTREAM: Duration = Duration::from_secs(5);

/// The HTTPS front's `SETTINGS_MAX_CONCURRENT_STREAMS`: the low end of what
/// public HTTP/2 servers advertise (Google's front ends say 100, hyper 200,
/// Cloudflare 256), so calls beyond it must go over more connections.
const MAX_STREAMS: u32 = 100;

/// One MCP session straight on the daemon's socket, as a shim relays it.
struct Session {
    reader: FrameReader<OwnedReadHalf>,
    writer: OwnedWriteHalf,
}

impl Session {
    async fn open(paths: &Paths, name: &str) -> Self {
        let hello = Hello::new(ConnectionKind::Mcp, None);
        let connection = connect(paths, &hello).await.expect("connect to daemon");
        let mut reader = connection.reader;
        reader.set_max(MAX_MESSAGE_BYTES);
        let mut session = Session {
            reader,
            writer: connection.writer,
        };
        session
            .send(
                &json!({"jsonrpc": "2.0", "id": 0, "method": "initialize", "params": {
                "protocolVersion": "2025-11-25", "capabilities": {},
                "clientInfo": {"name": name, "version": "1"}}}),
            )
            .await;
        let init = session.answer().await;
        assert!(init["result"].is_object(), "{init}");
        session
            .send(&json!({"jsonrpc": "2.0", "method": "notifications/initialized"}))
            .await;
        session
    }

    async fn send(&mut self, message: &Value) {
        write_json(&mut self.writer, message)
            .await
            .expect("daemon socket");
    }

    /// The next response (notifications, e.g. progress, are skipped).
    async fn answer(&mut self) -> Value {
        loop {
            match self.reader.next().await.expect("daemon socket") {
                Frame::Line(line) => {
                    let message: Value = serde_json::from_slice(&line).expect("JSON-RPC");
                    if message.get("id").is_some() && message.get("method").is_none() {
                        return message;
                    }
                }
                other => panic!("daemon closed the session: {other:?}"),
            }
        }
    }
}

fn threads(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|status| {
            status
                .lines()
                .find_map(|l| l.strip_prefix("Threads:"))
                .and_then(|n| n.trim().parse().ok())
        })
        .unwrap_or(0)
}

fn mib(kib: u64) -> f64 {
    kib as f64 / 1024.0
}

/// Opens `n` sessions, 100 at a time.
async fn open_sessions(paths: &Paths, n: usize, tag: &str) -> Vec<Session> {
    let mut sessions = Vec::with_capacity(n);
    for start in (0..n).step_by(100) {
        let opened = futures::future::join_all(
            (start..n.min(start + 100))
                .map(|i| async move { Session::open(paths, &format!("{tag}{i}")).await }),
        )
        .await;
        sessions.extend(opened);
    }
    sessions
}

/// The whole section, for each of `counts`.
pub async fn calls_in_flight(counts: Vec<usize>, idle: usize) {
    // The bench holds every session's socket and, in the stand-in, every
    // upstream connection.
    poe_code::daemon::raise_open_file_limit();
    let fake = fake_poe::FakePoe::start_without_recording().await;
    println!();
    println!(
        "Calls in flight (each answered by the stand-in after {} s; one session per call)",
        UPSTREAM.as_secs()
    );
    for &n in &counts {
        for https in [false, true] {
            let front = match https {
                true => Some(fake_poe::TlsFront::start(&fake.server().uri(), MAX_STREAMS).await),
                false => None,
            };
            in_flight(&fake, front.as_ref(), n).await;
        }
    }
    // Idle sessions on a fresh daemon (one that served calls keeps their
    // memory in its allocator's free lists).
    let env = TestEnv::new(&["poe-openai"])
        .with_var("POE_BASE_URL", fake.base_url())
        .with_var("POE_API_KEY", fake_poe::FAKE_API_KEY);
    let mut warm = env.shim().await;
    warm.initialize("warm").await;
    let pid = env.status().expect("daemon")["pid"].as_u64().unwrap() as u32;
    let paths = Paths::at(env.home());
    let before = rss_kib(pid).unwrap_or(0);
    let sessions = open_sessions(&paths, idle, "idle-").await;
    env.wait_status(Duration::from_secs(30), |s| {
        s["sessions"]
            .as_array()
            .is_some_and(|a| a.len() == idle + 1)
    });
    let open = rss_kib(pid).unwrap_or(0);
    println!(
        "  {idle:>5} idle sessions: daemon RSS {:.1} MiB ({:.1} MiB before they opened; {:.1} KiB each), {} threads",
        mib(open),
        mib(before),
        open.saturating_sub(before) as f64 / idle as f64,
        threads(pid)
    );
    drop(sessions);
    drop(warm);
}

/// One size against one upstream, on a fresh daemon so one run's memory does
/// not carry over.
async fn in_flight(fake: &fake_poe::FakePoe, front: Option<&fake_poe::TlsFront>, n: usize) {
    let mut env = TestEnv::new(&["poe-openai"])
        .with_var("POE_API_KEY", fake_poe::FAKE_API_KEY)
        .with_var("POE_CODE_RATE_LIMITS", "poe-openai=100000000");
    let upstream = match front {
        Some(front) => {
            env = env
                .with_var("POE_BASE_URL", format!("{}/v1", front.uri()))
                .with_var("SSL_CERT_FILE", front.ca_file().display().to_string());
            format!("HTTPS h2, {MAX_STREAMS} streams/conn")
        }
        None => {
            env = env.with_var("POE_BASE_URL", fake.base_url());
            "HTTP/1.1".to_string()
        }
    };
    let mut warm = env.shim().await;
    warm.initialize("warm").await;
    let status = env.status().expect("daemon");
    let pid = status["pid"].as_u64().unwrap() as u32;
    let paths = Paths::at(env.home());
    let (threads_idle, rss_idle) = (threads(pid), rss_kib(pid).unwrap_or(0));

    let mut sessions = open_sessions(&paths, n, "in-flight-").await;
    let model = format!("fake-slow-{}", UPSTREAM.as_millis());
    let started = Instant::now();
    for (i, session) in sessions.iter_mut().enumerate() {
        session
            .send(
                &json!({"jsonrpc": "2.0", "id": 1, "method": "tools/call", "params": {
                "name": "get_bot_response",
                "arguments": {"bot_name": model, "message": format!("call {i}")}}}),
            )
            .await;
    }
    let all_in = env.wait_status(Duration::from_secs(60), |s| {
        s["calls_in_flight"].as_u64() == Some(n as u64)
    });
    let (threads_busy, rss_busy) = (threads(pid), rss_kib(pid).unwrap_or(0));
    let answers = futures::future::join_all(sessions.iter_mut().map(Session::answer)).await;
    let wall = started.elapsed();
    for (i, answer) in answers.iter().enumerate() {
        let text = answer["result"]["content"][0]["text"]
            .as_str()
            .unwrap_or("");
        assert!(
            text.ends_with(&format!("call {i}")),
            "call {i} did not get its answer: {answer}"
        );
    }
    drop(all_in);
    let connections = front
        .map(|f| format!("; {} upstream connections", f.connections()))
        .unwrap_or_default();
    println!(
        "  {n:>5} in flight over {upstream}: wall {:.2} s vs upstream {:.2} s ({:.2}x); daemon threads {threads_idle} idle -> {threads_busy} in flight; RSS {:.1} MiB idle -> {:.1} MiB in flight{connections}",
        wall.as_secs_f64(),
        UPSTREAM.as_secs_f64(),
        wall.as_secs_f64() / UPSTREAM.as_secs_f64(),
        mib(rss_idle),
        mib(rss_busy),
    );
    drop(sessions);
    drop(warm);
}
