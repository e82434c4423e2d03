//! The daemon's HTTP listener, driven as a remote client would: every
//! request's checks (token, Host, Origin, body cap, batches, unknown
//! sessions), MCP sessions over HTTP sharing jobs with stdio sessions, a
//! stateless call that outlives its client's connection, and status.

use std::time::Duration;

use serde_json::{Value, json};
use testkit::TestEnv;
use testkit::client::result_text;

const ACCEPT: &str = "application/json, text/event-stream";

fn initialize_body(client: &str) -> Value {
    json!({"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": {
        "protocolVersion": "2025-11-25", "capabilities": {},
        "clientInfo": {"name": client, "version": "1.0"}}})
}

/// The JSON-RPC message with `id` among a response body's SSE events (or
/// the body itself when it is plain JSON).
fn message_with_id(body: &str, id: u64) -> Value {
    if let Ok(value) = serde_json::from_str::<Value>(body) {
        return value;
    }
    body.lines()
        .filter_map(|line| line.strip_prefix("data:"))
        .filter_map(|data| serde_json::from_str::<Value>(data.trim()).ok())
        .find(|m| m["id"] == id)
        .unwrap_or_else(|| panic!("no message with id {id} in {body}"))
}

/// Sends `head` then `body` over a fresh connection (a failed write is fine:
/// the server may close first) and returns the answer's status line and
/// headers.
async fn raw_answer(addr: &str, head: String, body: Vec<u8>) -> String {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    let (mut read, mut write) = stream.into_split();
    let writer = tokio::spawn(async move {
        let _ = write.write_all(head.as_bytes()).await;
        let _ = write.write_all(&body).await;
        write
    });
    let mut seen = Vec::new();
    let mut buf = [0u8; 4096];
    tokio::time::timeout(Duration::from_secs(30), async {
        while !seen.windows(4).any(|w| w == b"\r\n\r\n") {
            match read.read(&mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(n) => seen.extend_from_slice(&buf[..n]),
            }
        }
    })
    .await
    .expect("an answer");
    writer.abort();
    String::from_utf8_lossy(&seen).into_owned()
}

struct Http {
    client: reqwest::Client,
    mcp: String,
    token: String,
}

impl Http {
    fn new(base: &str, token: &str) -> Self {
        Self {
            client: reqwest::Client::new(),
            mcp: format!("{base}/mcp"),
            token: token.to_string(),
        }
    }

    fn post(&self, body: &Value) -> reqwest::RequestBuilder {
        self.client
            .post(&self.mcp)
            .bearer_auth(&self.token)
            .header("accept", ACCEPT)
            .json(body)
    }

    /// A POST in session `session` (its id and protocol version headers).
    fn post_in(&self, session: &str, body: &Value) -> reqwest::RequestBuilder {
        self.post(body)
            .header("mcp-session-id", session)
            .header("mcp-protocol-version", "2025-11-25")
    }

    /// Opens a 2025-11-25 session; returns its id.
    async fn open_session(&self, client: &str) -> String {
        let response = self.post(&initialize_body(client)).send().await.unwrap();
        assert_eq!(response.status(), 200);
        let session = response.headers()["mcp-session-id"]
            .to_str()
            .unwrap()
            .to_string();
        let init = message_with_id(&response.text().await.unwrap(), 1);
        assert_eq!(init["result"]["serverInfo"]["name"], "poe-code", "{init}");
        let initialized = json!({"jsonrpc": "2.0", "method": "notifications/initialized"});
        let response = self.post_in(&session, &initialized).send().await.unwrap();
        assert_eq!(response.status(), 202);
        session
    }

    /// A request in session `session`; returns the answer to it.
    async fn call(&self, session: &str, id: u64, method: &str, params: Value) -> Value {
        let body = json!({"jsonrpc": "2.0", "id": id, "method": method, "params": params});
        let response = self.post_in(session, &body).send().await.unwrap();
        assert_eq!(response.status(), 200);
        message_with_id(&response.text().await.unwrap(), id)
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn every_http_request_is_checked_before_anything_runs() {
    let env = TestEnv::new(&["echo-plugin"]);
    let token = env.create_token("alice");
    let base = env.start_http_daemon();
    let http = Http::new(&base, &token);
    let client = reqwest::Client::new();
    let init = initialize_body("checks");

    // No token, a wrong one: 401 with a challenge; only a fingerprint is logged.
    let response = client
        .post(&http.mcp)
        .header("accept", ACCEPT)
        .json(&init)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 401);
    assert!(response.headers().contains_key("www-authenticate"));
    let wrong = format!("{}x", &token[..token.len() - 1]);
    let response = client
        .post(&http.mcp)
        .bearer_auth(&wrong)
        .header("accept", ACCEPT)
        .json(&init)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 401);
    let response = client
        .get(format!("{base}/v1/models"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 401);
    let body: Value = response.json().await.unwrap();
    assert_eq!(
        body["error"]["type"], "authentication_error",
        "OpenAI's error shape under /v1: {body}"
    );

    // A page of another site (Origin) or a rebound name (Host): 403.
    let response = http
        .post(&init)
        .header("origin", "https://evil.example")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 403);
    let response = http
        .post(&init)
        .header("host", "evil.example:80")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 403);

    // Over the body cap (4 MiB by default): 413, read no further. The
    // server may answer and close while the body is still on its way, so
    // the request goes over a raw socket whose write errors do not matter.
    let addr = base.trim_start_matches("http://");
    let head = |framing: &str| {
        format!(
            "POST /mcp HTTP/1.1\r\nHost: {addr}\r\nAuthorization: Bearer {token}\r\n\
             Content-Type: application/json\r\nAccept: {ACCEPT}\r\n{framing}\r\n\r\n"
        )
    };
    let declared = head(&format!("Content-Length: {}", 5 << 20));
    assert!(
        raw_answer(addr, declared, vec![b'x'; 1024])
            .await
            .starts_with("HTTP/1.1 413")
    );
    // The same without a declared length: the cap holds while reading.
    let chunk = vec![b'x'; 5 << 20];
    let mut chunked = format!("{:x}\r\n", chunk.len()).into_bytes();
    chunked.extend_from_slice(&chunk);
    chunked.extend_from_slice(b"\r\n0\r\n\r\n");
    let answer = raw_answer(addr, head("Transfer-Encoding: chunked"), chunked).await;
    assert!(answer.starts_with("HTTP/1.1 413"), "{answer}");

    // A JSON-RPC batch: refused with a JSON-RPC error saying why.
    let response = http
        .post(&json!([init.clone(), init.clone()]))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 400);
    let body: Value = response.json().await.unwrap();
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("batches are not supported"),
        "{body}"
    );

    // A session id the daemon never gave out: 404.
    let ping = json!({"jsonrpc": "2.0", "id": 2, "method": "ping"});
    let response = http.post_in("no-such-session", &ping).send().await.unwrap();
    assert_eq!(response.status(), 404);

    // A malformed OpenAI request: 400 in OpenAI's shape.
    let response = client
        .post(format!("{base}/v1/chat/completions"))
        .bearer_auth(&token)
        .json(&json!({"model": "echo", "messages": "hello"}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 400);
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["error"]["type"], "invalid_request_error", "{body}");
    let response = client
        .post(format!("{base}/v1/chat/completions"))
        .bearer_auth(&token)
        .json(&json!({"model": "no-such-model", "messages": [{"role": "user", "content": "hi"}]}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 404);

    // The right token works, and stops working once revoked.
    let session = http.open_session("checks").await;
    env.run_ok("poe-code", &["token", "revoke", "alice"]);
    let response = http.post_in(&session, &ping).send().await.unwrap();
    assert_eq!(response.status(), 401, "a revoked token is refused at once");

    let log = env.daemon_log();
    // `poe-code_<id>_<secret>`; the secret itself may hold `_`.
    let secret = token.splitn(3, '_').nth(2).unwrap();
    assert!(secret.len() >= 40, "{secret}");
    assert!(!log.contains(secret), "the log holds a token's secret");
    assert!(log.contains("refused an unknown or revoked token"));
}

#[tokio::test(flavor = "multi_thread")]
async fn http_sessions_share_jobs_with_stdio_sessions_and_show_in_status() {
    let env = TestEnv::new(&["echo-plugin"]);
    let token = env.create_token("ci");
    let base = env.start_http_daemon();
    let http = Http::new(&base, &token);
    let session = http.open_session("remote-agent").await;

    let tools = http.call(&session, 2, "tools/list", json!({})).await;
    let names: Vec<&str> = tools["result"]["tools"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["name"].as_str().unwrap())
        .collect();
    assert!(
        names.contains(&"chat") && names.contains(&"get_bot_response"),
        "{names:?}"
    );

    let answer = http
        .call(
            &session,
            3,
            "tools/call",
            json!({"name": "get_bot_response", "arguments": {"bot_name": "echo", "message": "over http"}}),
        )
        .await;
    assert_eq!(result_text(&answer), "over http", "{answer}");

    // A background job started over HTTP, read from a stdio session.
    let started = http
        .call(
            &session,
            4,
            "tools/call",
            json!({"name": "get_bot_response", "arguments": {
                "bot_name": "echo", "message": "later", "async": true}}),
        )
        .await;
    let job = started["result"]["structuredContent"]["continuation_id"]
        .as_str()
        .unwrap_or_else(|| panic!("{started}"))
        .to_string();
    let mut shim = env.shim().await;
    shim.initialize("local-agent").await;
    let mut status = Value::Null;
    for _ in 0..200 {
        status = shim
            .call_tool("check_status", json!({"continuation_id": job}))
            .await;
        if status["result"]["structuredContent"]["status"] == "completed" {
            break;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    assert_eq!(
        status["result"]["structuredContent"]["status"], "completed",
        "{status}"
    );
    assert!(status.to_string().contains("later"), "{status}");

    let report = env.status().unwrap();
    let listener = &report["http"];
    assert_eq!(listener["mcp_url"], format!("{base}/mcp"));
    assert_eq!(listener["require_token"], true);
    assert_eq!(listener["sessions"], 1);
    let remote = report["sessions"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["transport"] == "http")
        .expect("the HTTP session is listed");
    assert_eq!(remote["client_name"], "remote-agent");
    assert_eq!(remote["token"], "ci");
    assert_eq!(remote["calls"], 2);
    let usage = &listener["tokens"][0];
    assert_eq!(usage["name"], "ci");
    assert_eq!(usage["calls"], 2);
    assert!(usage["requests"].as_u64().unwrap() >= 5, "{usage}");
    let text = String::from_utf8(env.run_ok("poe-coded", &["status"]).stdout).unwrap();
    assert!(text.contains("http, token ci"), "{text}");
    assert!(text.contains(&format!("http: {base}/mcp")), "{text}");

    // DELETE ends the session; the daemon forgets it.
    let response = reqwest::Client::new()
        .delete(&http.mcp)
        .bearer_auth(&token)
        .header("mcp-session-id", &session)
        .header("mcp-protocol-version", "2025-11-25")
        .send()
        .await
        .unwrap();
    assert!(response.status().is_success(), "{}", response.status());
    env.wait_status(Duration::from_secs(10), |s| {
        s["http"]["sessions"] == 0
            && !s["sessions"]
                .as_array()
                .unwrap()
                .iter()
                .any(|s| s["transport"] == "http")
    });
}

#[tokio::test(flavor = "multi_thread")]
async fn a_stateless_call_keeps_running_when_its_client_hangs_up() {
    let env = TestEnv::new(&["echo-plugin"]);
    let token = env.create_token("ci");
    let base = env.start_http_daemon();
    // The 2026-07-28 wire: no session, the protocol in every request.
    let call = json!({"jsonrpc": "2.0", "id": 1, "method": "tools/call", "params": {
        "name": "get_bot_response",
        "arguments": {"bot_name": "echo", "message": "one two three four",
                      "params": {"delay_ms": "300"}},
        "_meta": {
            "io.modelcontextprotocol/protocolVersion": "2026-07-28",
            "io.modelcontextprotocol/clientInfo": {"name": "hangs-up", "version": "1"},
            "io.modelcontextprotocol/clientCapabilities": {}}}});
    let request = reqwest::Client::new()
        .post(format!("{base}/mcp"))
        .bearer_auth(&token)
        .header("accept", ACCEPT)
        .header("mcp-protocol-version", "2026-07-28")
        .header("mcp-method", "tools/call")
        .header("mcp-name", "get_bot_response")
        .json(&call)
        .send();
    // The answer's first bytes come with the result, so the client hangs up
    // while it still waits for them.
    let client = tokio::spawn(request);
    env.wait_status(Duration::from_secs(10), |s| s["jobs"]["running"] == 1);
    client.abort();
    assert!(client.await.unwrap_err().is_cancelled());
    let status = env.wait_status(Duration::from_secs(20), |s| {
        s["jobs"]["running"] == 0 && (s["jobs"]["completed"] == 1 || s["jobs"]["cancelled"] == 1)
    });
    assert_eq!(
        status["jobs"]["completed"], 1,
        "a dropped connection is not a cancel: {status}"
    );
    assert_eq!(status["jobs"]["cancelled"], 0);
}

#[tokio::test(flavor = "multi_thread")]
async fn http_sessions_stream_progress_cancel_on_request_and_are_capped() {
    let env = TestEnv::new(&["echo-plugin"]);
    env.write_config("[http]\nmax_sessions = 2\n");
    let token = env.create_token("ci");
    let base = env.start_http_daemon();
    let http = Http::new(&base, &token);
    let session = http.open_session("progress").await;

    // Progress arrives on the call's own stream, before its result.
    let call = json!({"jsonrpc": "2.0", "id": 7, "method": "tools/call", "params": {
        "name": "get_bot_response",
        "arguments": {"bot_name": "echo", "message": "one two three", "params": {"delay_ms": "200"}},
        "_meta": {"progressToken": "p7"}}});
    let body = http
        .post_in(&session, &call)
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let messages: Vec<Value> = body
        .lines()
        .filter_map(|l| l.strip_prefix("data:"))
        .filter_map(|d| serde_json::from_str(d.trim()).ok())
        .collect();
    let result_at = messages
        .iter()
        .position(|m| m["id"] == 7)
        .expect("a result");
    assert_eq!(result_text(&messages[result_at]), "one two three");
    let progress: Vec<&Value> = messages
        .iter()
        .filter(|m| m["method"] == "notifications/progress")
        .collect();
    assert!(!progress.is_empty(), "{body}");
    assert!(
        progress
            .iter()
            .all(|p| p["params"]["progressToken"] == "p7")
    );
    assert!(
        messages[result_at + 1..].is_empty(),
        "nothing follows the result: {body}"
    );

    // notifications/cancelled stops the call (a session's explicit cancel).
    let slow = json!({"jsonrpc": "2.0", "id": 8, "method": "tools/call", "params": {
        "name": "get_bot_response",
        "arguments": {"bot_name": "echo", "message": "a b c d e f g h", "params": {"delay_ms": "500"}}}});
    let request = http.post_in(&session, &slow).send();
    let pending = tokio::spawn(async move { request.await.unwrap().text().await.unwrap() });
    env.wait_status(Duration::from_secs(10), |s| s["jobs"]["running"] == 1);
    let cancel = json!({"jsonrpc": "2.0", "method": "notifications/cancelled",
        "params": {"requestId": 8, "reason": "changed my mind"}});
    let response = http.post_in(&session, &cancel).send().await.unwrap();
    assert_eq!(response.status(), 202);
    env.wait_status(Duration::from_secs(10), |s| s["jobs"]["cancelled"] == 1);
    pending.abort();

    // The cap: a third session is refused with the reason, the others serve.
    let _second = http.open_session("second").await;
    let response = http.post(&initialize_body("third")).send().await.unwrap();
    assert_eq!(response.status(), 503);
    assert!(response.headers().contains_key("retry-after"));
    let body: Value = response.json().await.unwrap();
    let message = body["error"]["message"].as_str().unwrap();
    assert!(message.contains("max_sessions"), "{message}");
    let tools = http.call(&session, 9, "tools/list", json!({})).await;
    assert!(tools["result"]["tools"].is_array(), "{tools}");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_token_with_its_own_key_is_limited_and_billed_on_that_key() {
    let env = TestEnv::new(&["echo-plugin"]);
    let shared = env.create_token("alice");
    let mut create = env.command("poe-code");
    create
        .args(["token", "create", "bob", "--own-key"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped());
    let mut child = create.spawn().unwrap();
    {
        use std::io::Write;
        let mut stdin = child.stdin.take().unwrap();
        stdin.write_all(b"sk-bobs-own-key-9876\n").unwrap();
    }
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let own = String::from_utf8(out.stdout).unwrap().trim().to_string();
    let listed = String::from_utf8(env.run_ok("poe-code", &["token", "list"]).stdout).unwrap();
    assert!(listed.contains("own Poe key …9876"), "{listed}");
    assert!(
        !listed.contains("sk-bobs"),
        "the key itself is never listed: {listed}"
    );

    let base = env.start_http_daemon();
    let client = reqwest::Client::new();
    for token in [&shared, &own] {
        let answer: Value = client
            .post(format!("{base}/v1/chat/completions"))
            .bearer_auth(token)
            .json(&json!({"model": "echo", "messages": [{"role": "user", "content": "hi"}]}))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        assert_eq!(answer["choices"][0]["message"]["content"], "hi", "{answer}");
    }
    let status = env.status().unwrap();
    let mut keys: Vec<&str> = status["limiters"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| l["key"].as_str().unwrap())
        .collect();
    keys.sort();
    assert_eq!(keys, ["…9876", "…cdef"], "one limiter per key: {status}");
}

#[test]
fn a_listener_others_could_reach_needs_consent() {
    let env = TestEnv::new(&["echo-plugin"]);
    // Asked for on the command line: the daemon does not start.
    let out = env.run("poe-coded", &["run", "--http", "0.0.0.0:0"]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("allow_remote") && err.contains("TLS"), "{err}");
    // Asked for in config.toml: the socket still serves, status says why
    // there is no listener.
    env.write_config("[http]\nlisten = \"0.0.0.0:0\"\n");
    env.run_ok("poe-coded", &["start"]);
    let status = env.status().unwrap();
    assert!(status["http"].is_null(), "{status}");
    assert!(
        status["http_error"]
            .as_str()
            .unwrap()
            .contains("not a loopback address"),
        "{status}"
    );
    let text = String::from_utf8(env.run_ok("poe-coded", &["status"]).stdout).unwrap();
    assert!(text.contains("http: NOT listening"), "{text}");
}

#[tokio::test(flavor = "multi_thread")]
async fn slow_clients_are_dropped() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let env = TestEnv::new(&["echo-plugin"]);
    env.write_config("[http]\nread_timeout_secs = 1\n");
    let token = env.create_token("ci");
    let base = env.start_http_daemon();
    let addr = base.trim_start_matches("http://").to_string();
    let patience = Duration::from_secs(15);

    // A body that stops halfway gets 408 once the read timeout passes.
    let head = format!(
        "POST /mcp HTTP/1.1\r\nHost: {addr}\r\nAuthorization: Bearer {token}\r\n\
         Content-Type: application/json\r\nAccept: {ACCEPT}\r\nContent-Length: 100\r\n\r\n"
    );
    let answer = raw_answer(&addr, head, b"{\"jsonrpc\"".to_vec()).await;
    assert!(answer.starts_with("HTTP/1.1 408"), "{answer}");

    // A request head that never ends: the connection is closed.
    let mut stream = tokio::net::TcpStream::connect(&addr).await.unwrap();
    stream
        .write_all(format!("POST /mcp HTTP/1.1\r\nHost: {addr}\r\n").as_bytes())
        .await
        .unwrap();
    let mut buf = [0u8; 4096];
    let closed = tokio::time::timeout(patience, async {
        loop {
            match stream.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(_) => {}
            }
        }
    })
    .await;
    assert!(closed.is_ok(), "a stalled request head kept its connection");
}
