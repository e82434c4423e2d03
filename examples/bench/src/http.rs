//! The HTTP listener's part of the benchmark: what a tool call over MCP
//! Streamable HTTP adds compared with the stdio path (shim and socket) and
//! with the same request sent straight to the stand-in Poe, in one run; and
//! what 1,000 open HTTP sessions cost the daemon in memory.

use std::time::{Duration, Instant};

use serde_json::{Value, json};
use testkit::TestEnv;
use testkit::client::result_text;

use crate::{ms, rss_kib, summarize};

const ACCEPT: &str = "application/json, text/event-stream";

/// One MCP client over HTTP: a session (2025-11-25) or none (2026-07-28).
struct HttpClient {
    client: reqwest::Client,
    url: String,
    token: String,
    session: Option<String>,
}

impl HttpClient {
    async fn open(client: &reqwest::Client, url: &str, token: &str, name: &str) -> Self {
        let init = json!({"jsonrpc": "2.0", "id": 0, "method": "initialize", "params": {
            "protocolVersion": "2025-11-25", "capabilities": {},
            "clientInfo": {"name": name, "version": "1"}}});
        let response = client
            .post(url)
            .bearer_auth(token)
            .header("accept", ACCEPT)
            .json(&init)
            .send()
            .await
            .expect("initialize");
        assert!(response.status().is_success(), "{}", response.status());
        let session = response.headers()["mcp-session-id"]
            .to_str()
            .expect("session id")
            .to_string();
        response.bytes().await.expect("initialize body");
        let this = Self {
            client: client.clone(),
            url: url.to_string(),
            token: token.to_string(),
            session: Some(session),
        };
        let initialized = json!({"jsonrpc": "2.0", "method": "notifications/initialized"});
        let response = this.post(&initialized).send().await.expect("initialized");
        assert_eq!(response.status(), 202);
        this
    }

    fn stateless(client: &reqwest::Client, url: &str, token: &str) -> Self {
        Self {
            client: client.clone(),
            url: url.to_string(),
            token: token.to_string(),
            session: None,
        }
    }

    fn post(&self, body: &Value) -> reqwest::RequestBuilder {
        let request = self
            .client
            .post(&self.url)
            .bearer_auth(&self.token)
            .header("accept", ACCEPT);
        match &self.session {
            Some(session) => request
                .header("mcp-session-id", session)
                .header("mcp-protocol-version", "2025-11-25"),
            None => request
                .header("mcp-protocol-version", "2026-07-28")
                .header("mcp-method", body["method"].as_str().unwrap_or_default())
                .header(
                    "mcp-name",
                    body["params"]["name"].as_str().unwrap_or_default(),
                ),
        }
        .json(body)
    }

    /// A tools/call; returns the JSON-RPC response.
    async fn call(&self, id: u64, name: &str, arguments: Value) -> Value {
        let mut params = json!({"name": name, "arguments": arguments});
        if self.session.is_none() {
            params["_meta"] = json!({
                "io.modelcontextprotocol/protocolVersion": "2026-07-28",
                "io.modelcontextprotocol/clientInfo": {"name": "bench", "version": "1"},
                "io.modelcontextprotocol/clientCapabilities": {}});
        }
        let body = json!({"jsonrpc": "2.0", "id": id, "method": "tools/call", "params": params});
        let text = self
            .post(&body)
            .send()
            .await
            .expect("tools/call")
            .text()
            .await
            .expect("tools/call body");
        text.lines()
            .filter_map(|l| l.strip_prefix("data:"))
            .filter_map(|d| serde_json::from_str::<Value>(d.trim()).ok())
            .find(|m| m["id"] == id)
            .unwrap_or_else(|| panic!("no answer in {text}"))
    }

    async fn close(&self) {
        if let Some(session) = &self.session {
            let _ = self
                .client
                .delete(&self.url)
                .bearer_auth(&self.token)
                .header("mcp-session-id", session)
                .header("mcp-protocol-version", "2025-11-25")
                .send()
                .await;
        }
    }
}

/// HTTP tool calls vs the stdio path vs the direct request, interleaved.
pub async fn latency(fake: &fake_poe::FakePoe, calls: usize) {
    let env = TestEnv::new(&["poe-openai"])
        .with_var("POE_BASE_URL", fake.base_url())
        .with_var("POE_API_KEY", fake_poe::FAKE_API_KEY)
        .with_var("POE_CODE_RATE_LIMITS", "poe-openai=100000000");
    let token = env.create_token("bench");
    let base = env.start_http_daemon();
    let url = format!("{base}/mcp");
    let client = reqwest::Client::new();
    let session = HttpClient::open(&client, &url, &token, "bench-http").await;
    let stateless = HttpClient::stateless(&client, &url, &token);
    let mut shim = env.shim().await;
    shim.initialize("bench-stdio").await;

    let message = "benchmark message of a few words";
    let arguments = json!({"bot_name": "Claude-Sonnet-4.5", "message": message});
    let direct_url = format!("{}/chat/completions", fake.base_url());
    let direct_body = json!({
        "model": "Claude-Sonnet-4.5",
        "messages": [{"role": "user", "content": message}],
        "stream": true,
        "stream_options": {"include_usage": true}
    });
    let warmup = 50;
    let (mut direct, mut stdio, mut http, mut http_stateless) =
        (Vec::new(), Vec::new(), Vec::new(), Vec::new());
    for i in 0..calls + warmup {
        let t = Instant::now();
        let text = client
            .post(&direct_url)
            .bearer_auth(fake_poe::FAKE_API_KEY)
            .json(&direct_body)
            .send()
            .await
            .expect("direct")
            .text()
            .await
            .expect("direct body");
        let d = t.elapsed();
        assert!(text.contains("[DONE]"));

        let t = Instant::now();
        let answer = shim.call_tool("get_bot_response", arguments.clone()).await;
        let s = t.elapsed();
        assert!(result_text(&answer).contains(message), "{answer}");

        let t = Instant::now();
        let answer = session
            .call(i as u64 + 1, "get_bot_response", arguments.clone())
            .await;
        let h = t.elapsed();
        assert!(result_text(&answer).contains(message), "{answer}");

        let t = Instant::now();
        let answer = stateless
            .call(i as u64 + 1, "get_bot_response", arguments.clone())
            .await;
        let h2 = t.elapsed();
        assert!(result_text(&answer).contains(message), "{answer}");
        if i >= warmup {
            direct.push(d);
            stdio.push(s);
            http.push(h);
            http_stateless.push(h2);
        }
    }
    let (direct, stdio, http, http_stateless) = (
        summarize(direct),
        summarize(stdio),
        summarize(http),
        summarize(http_stateless),
    );
    println!();
    println!("get_bot_response over HTTP vs stdio vs straight to the fake Poe, {calls} calls each");
    for (name, s) in [
        ("HTTP, 2025-11-25 session ", &http),
        ("HTTP, 2026-07-28 stateless", &http_stateless),
        ("stdio (shim + socket)     ", &stdio),
        ("baseline: direct          ", &direct),
    ] {
        println!("  {name}  p50 {}  p99 {}", ms(s.p50), ms(s.p99));
    }
    println!(
        "  HTTP session adds p50 {} over direct, {} over stdio (ratio to stdio {:.2}x)",
        ms(http.p50.saturating_sub(direct.p50)),
        signed_ms(http.p50, stdio.p50),
        http.p50.as_secs_f64() / stdio.p50.as_secs_f64()
    );
    println!(
        "  HTTP stateless adds p50 {} over direct, {} over stdio",
        ms(http_stateless.p50.saturating_sub(direct.p50)),
        signed_ms(http_stateless.p50, stdio.p50)
    );
    session.close().await;
}

fn signed_ms(a: Duration, b: Duration) -> String {
    if a >= b {
        format!("+{}", ms(a - b))
    } else {
        format!("-{}", ms(b - a))
    }
}

/// `n` HTTP sessions open at once on one daemon: memory per session, and
/// one call in each to show they all serve.
pub async fn many_sessions(n: usize) {
    let env = TestEnv::new(&["echo-plugin"]).with_var("POE_CODE_RATE_LIMITS", "echo=100000000");
    let token = env.create_token("bench");
    let base = env.start_http_daemon();
    let url = format!("{base}/mcp");
    let pid = env.status().expect("daemon")["pid"].as_u64().unwrap() as u32;
    let client = reqwest::Client::builder()
        .pool_max_idle_per_host(256)
        .build()
        .expect("client");
    // One warm session first, so the baseline includes the listener's setup.
    let warm = HttpClient::open(&client, &url, &token, "warm").await;
    warm.call(
        1,
        "get_bot_response",
        json!({"bot_name": "echo", "message": "warm"}),
    )
    .await;
    let before = rss_kib(pid).unwrap_or(0);
    let started = Instant::now();
    let mut sessions = Vec::with_capacity(n);
    for chunk in (0..n).collect::<Vec<_>>().chunks(100) {
        let opened = futures::future::join_all(chunk.iter().map(|i| {
            let (client, url, token) = (&client, &url, &token);
            async move { HttpClient::open(client, url, token, &format!("s{i}")).await }
        }))
        .await;
        sessions.extend(opened);
    }
    let open_time = started.elapsed();
    let open_rss = rss_kib(pid).unwrap_or(0);
    let status = env.status().expect("daemon");
    assert_eq!(status["http"]["sessions"], n + 1, "every session is open");
    let started = Instant::now();
    for chunk in sessions.chunks(100) {
        let answers = futures::future::join_all(chunk.iter().enumerate().map(|(i, s)| {
            s.call(
                2,
                "get_bot_response",
                json!({"bot_name": "echo", "message": format!("hi {i}")}),
            )
        }))
        .await;
        for (i, answer) in answers.iter().enumerate() {
            assert_eq!(result_text(answer), format!("hi {i}"), "{answer}");
        }
    }
    let call_time = started.elapsed();
    let after_calls = rss_kib(pid).unwrap_or(0);
    println!();
    println!("{n} MCP sessions over HTTP on one daemon");
    println!(
        "  opened in {:.2} s; one call in each in {:.2} s",
        open_time.as_secs_f64(),
        call_time.as_secs_f64()
    );
    println!(
        "  daemon RSS {:.1} MiB before, {:.1} MiB with {n} open, {:.1} MiB after a call in each",
        before as f64 / 1024.0,
        open_rss as f64 / 1024.0,
        after_calls as f64 / 1024.0
    );
    println!(
        "  memory per open session: {:.1} KiB ({:.1} KiB after its call)",
        open_rss.saturating_sub(before) as f64 / n as f64,
        after_calls.saturating_sub(before) as f64 / n as f64
    );
    for chunk in sessions.chunks(100) {
        futures::future::join_all(chunk.iter().map(HttpClient::close)).await;
    }
    warm.close().await;
}
