//! `poe-code query <bot> <prompt>`: one question from the terminal, streamed
//! as it arrives. It is an MCP client of the shared daemon like any agent
//! session, so it shares the daemon's limits and shows up in `status`.

use std::io::Write;

use serde_json::{Value, json};

use crate::config::Paths;
use crate::config::credentials;
use crate::ipc::lines::{Frame, write_json};
use crate::ipc::{ConnectionKind, Hello};
use crate::mcp::call::STATUS_PREFIX;
use crate::shim::NO_CREDENTIALS;
use crate::shim::connect::connect_or_start;

/// Asks `bot` and prints the answer; returns the exit code.
pub async fn run(paths: Paths, bot: String, prompt: String) -> anyhow::Result<i32> {
    let Some((key, _)) = credentials::load(&paths)? else {
        eprintln!("{NO_CREDENTIALS}");
        return Ok(1);
    };
    let hello = Hello::new(ConnectionKind::Mcp, Some(key));
    let mut conn = connect_or_start(&paths, &hello).await?;
    let initialize = json!({
        "jsonrpc": "2.0", "id": 1, "method": "initialize",
        "params": {
            "protocolVersion": "2025-11-25",
            "capabilities": {},
            "clientInfo": {"name": "poe-code query", "version": crate::VERSION}
        }
    });
    write_json(&mut conn.writer, &initialize).await?;
    write_json(
        &mut conn.writer,
        &json!({"jsonrpc": "2.0", "method": "notifications/initialized"}),
    )
    .await?;
    let call = json!({
        "jsonrpc": "2.0", "id": 2, "method": "tools/call",
        "params": {
            "name": "get_bot_response",
            "arguments": {"bot_name": bot, "message": prompt},
            "_meta": {"progressToken": "query"}
        }
    });
    write_json(&mut conn.writer, &call).await?;
    let mut stdout = std::io::stdout().lock();
    // What was printed from progress; the result carries the whole text.
    let mut streamed = String::new();
    conn.reader.set_max(1 << 30);
    loop {
        let line = match conn.reader.next().await? {
            Frame::Line(line) => line,
            _ => anyhow::bail!("the daemon closed the connection before answering"),
        };
        let message: Value = serde_json::from_slice(&line)?;
        if message["method"] == "notifications/progress" {
            let text = message["params"]["message"].as_str().unwrap_or_default();
            // Heartbeats and status lines are not part of the answer.
            if !text.starts_with(STATUS_PREFIX) {
                write!(stdout, "{text}")?;
                stdout.flush()?;
                streamed.push_str(text);
            }
            continue;
        }
        if message["id"] != 2 {
            continue;
        }
        if let Some(error) = message.get("error") {
            eprintln!(
                "poe-code: {}",
                error["message"].as_str().unwrap_or("request failed")
            );
            return Ok(1);
        }
        let result = &message["result"];
        let text: Vec<&str> = result["content"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|b| b["text"].as_str())
            .collect();
        if result["isError"] == true {
            eprintln!("poe-code: {}", text.join("\n"));
            return Ok(1);
        }
        // Progress stops before the result, so the answer's tail may not
        // have streamed yet.
        let text = text.join("\n");
        match text.strip_prefix(streamed.as_str()) {
            Some(rest) => write!(stdout, "{rest}")?,
            None if streamed.is_empty() => write!(stdout, "{text}")?,
            None => {}
        }
        writeln!(stdout)?;
        return Ok(0);
    }
}
