//! Turns raw lines from a session into messages for rmcp, answering the ones
//! rmcp would drop or choke on (non-JSON, batches, over-long lines, wrong
//! shapes) with a JSON-RPC error so the client is never left waiting.

use rmcp::model::ClientJsonRpcMessage;
use serde_json::{Value, json};

/// JSON-RPC "Parse error".
pub const PARSE_ERROR: i64 = -32700;
/// JSON-RPC "Invalid Request".
pub const INVALID_REQUEST: i64 = -32600;
/// JSON-RPC "Invalid params".
pub const INVALID_PARAMS: i64 = -32602;

/// What to do with one inbound line.
#[derive(Debug)]
pub enum Inbound {
    /// Hand to rmcp.
    Message(Box<ClientJsonRpcMessage>),
    /// Answer with this error line and drop the message.
    Reject(Vec<u8>),
    /// Nothing to do (blank line, malformed notification or response).
    Ignore(&'static str),
}

/// A JSON-RPC error response line.
pub fn error_line(id: Value, code: i64, message: &str) -> Vec<u8> {
    serde_json::to_vec(&json!({
        "jsonrpc": "2.0",
        "id": id,
        "error": { "code": code, "message": message }
    }))
    .unwrap_or_default()
}

/// The reply to a line longer than the limit.
pub fn too_long(len: usize, max: usize) -> Vec<u8> {
    error_line(
        Value::Null,
        INVALID_REQUEST,
        &format!("message of {len} bytes exceeds the limit of {max} bytes and was discarded"),
    )
}

/// Classifies one line.
pub fn classify(line: &[u8]) -> Inbound {
    if line.iter().all(u8::is_ascii_whitespace) {
        return Inbound::Ignore("blank line");
    }
    // Fast path: a well-formed message.
    let first_error = match serde_json::from_slice::<ClientJsonRpcMessage>(line) {
        Ok(message) => return check_standard_params(message),
        Err(e) => e,
    };
    let value: Value = match serde_json::from_slice(line) {
        Ok(value) => value,
        Err(e) => {
            return Inbound::Reject(error_line(
                Value::Null,
                PARSE_ERROR,
                &format!("Parse error: not valid JSON ({e})"),
            ));
        }
    };
    let Some(object) = value.as_object() else {
        let message = if value.is_array() {
            "Invalid Request: JSON-RPC batches are not supported; send one message per line"
        } else {
            "Invalid Request: a JSON-RPC message must be an object"
        };
        return Inbound::Reject(error_line(Value::Null, INVALID_REQUEST, message));
    };
    let id = object
        .get("id")
        .filter(|id| id.is_string() || id.is_number())
        .cloned();
    let method = object.get("method").and_then(Value::as_str);
    match (id, method) {
        (Some(id), Some(method)) => {
            let (code, what) = if object.get("jsonrpc").and_then(Value::as_str) != Some("2.0") {
                (
                    INVALID_REQUEST,
                    "Invalid Request: \"jsonrpc\" must be \"2.0\"".to_string(),
                )
            } else {
                (
                    INVALID_PARAMS,
                    format!("Invalid params for {method}: {first_error}"),
                )
            };
            Inbound::Reject(error_line(id, code, &what))
        }
        (None, Some(_)) if object.contains_key("id") => Inbound::Reject(error_line(
            Value::Null,
            INVALID_REQUEST,
            "Invalid Request: id must be a string or a number",
        )),
        (None, Some(_)) => Inbound::Ignore("malformed notification"),
        (Some(id), None) if !object.contains_key("result") && !object.contains_key("error") => {
            Inbound::Reject(error_line(
                id,
                INVALID_REQUEST,
                "Invalid Request: missing \"method\"",
            ))
        }
        (_, None) => Inbound::Ignore("malformed response"),
    }
}

/// MCP methods whose params rmcp parses into typed structs. rmcp turns a
/// request whose params do not fit into a "custom" request and answers
/// "method not found", which hides the real problem from the client.
const STANDARD_METHODS: &[&str] = &[
    "initialize",
    "ping",
    "server/discover",
    "tools/call",
    "tools/list",
    "resources/list",
    "resources/read",
    "resources/templates/list",
    "prompts/get",
    "prompts/list",
    "completion/complete",
    "logging/setLevel",
    "tasks/get",
    "tasks/cancel",
    "tasks/list",
    "tasks/result",
];

fn check_standard_params(message: ClientJsonRpcMessage) -> Inbound {
    use rmcp::model::{
        CallToolRequestParams, ClientRequest, InitializeRequestParams, JsonRpcMessage,
    };
    let JsonRpcMessage::Request(request) = &message else {
        return Inbound::Message(Box::new(message));
    };
    let ClientRequest::CustomRequest(custom) = &request.request else {
        return Inbound::Message(Box::new(message));
    };
    if !STANDARD_METHODS.contains(&custom.method.as_str()) {
        return Inbound::Message(Box::new(message));
    }
    let params = custom.params.clone().unwrap_or(Value::Null);
    let detail = match custom.method.as_str() {
        "tools/call" => serde_json::from_value::<CallToolRequestParams>(params).err(),
        "initialize" => serde_json::from_value::<InitializeRequestParams>(params).err(),
        _ => None,
    }
    .map(|e| e.to_string())
    .unwrap_or_else(|| "params do not match the method's schema".to_string());
    let id = serde_json::to_value(&request.id).unwrap_or(Value::Null);
    Inbound::Reject(error_line(
        id,
        INVALID_PARAMS,
        &format!("Invalid params for {}: {detail}", custom.method),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rejected(line: &str) -> Value {
        match classify(line.as_bytes()) {
            Inbound::Reject(bytes) => serde_json::from_slice(&bytes).unwrap(),
            other => panic!("expected a rejection for {line}, got {other:?}"),
        }
    }

    #[test]
    fn well_formed_request_passes() {
        let line = r#"{"jsonrpc":"2.0","id":1,"method":"tools/list"}"#;
        assert!(matches!(classify(line.as_bytes()), Inbound::Message(_)));
    }

    #[test]
    fn garbage_is_a_parse_error() {
        assert_eq!(rejected("not json")["error"]["code"], PARSE_ERROR);
    }

    #[test]
    fn batch_is_invalid_request() {
        let reply = rejected(r#"[{"jsonrpc":"2.0","id":1,"method":"ping"}]"#);
        assert_eq!(reply["error"]["code"], INVALID_REQUEST);
        assert!(reply["id"].is_null());
    }

    #[test]
    fn tools_call_without_a_name_is_invalid_params() {
        let reply =
            rejected(r#"{"jsonrpc":"2.0","id":3,"method":"tools/call","params":{"arguments":{}}}"#);
        assert_eq!(reply["id"], 3);
        assert_eq!(reply["error"]["code"], INVALID_PARAMS);
        assert!(
            reply["error"]["message"].as_str().unwrap().contains("name"),
            "{reply}"
        );
    }

    #[test]
    fn bad_params_keep_the_id() {
        let reply = rejected(
            r#"{"jsonrpc":"2.0","id":"a","method":"tools/call","params":{"arguments":{}}}"#,
        );
        assert_eq!(reply["id"], "a");
        assert_eq!(reply["error"]["code"], INVALID_PARAMS);
    }
}
