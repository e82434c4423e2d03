//! The JSON body of a bot query, field for field what fastapi_poe's
//! `get_bot_response` sends: `QueryRequest(...).model_dump()` with
//! `version` "1.2", `type` "query", the `query` message list (each a
//! `ProtocolMessage` dump: role, content, content_type, attachments, ...),
//! empty `user_id` / `conversation_id` / `message_id`, the optional
//! `temperature`, `skip_system_prompt`, `logit_bias`, `stop_sequences`,
//! `adopt_current_bot_name`, and `tools` only when given.
//!
//! A function-calling round ends the conversation with the bot's message
//! that asked for tools and the `tool` answers after it. fastapi_poe sends
//! that round as the query-level `tool_calls` and `tool_results` (its
//! `ToolCallDefinition` / `ToolResultDefinition` dumps) beside the query
//! that led to it, so those messages leave the `query` list and go there.
//!
//! Pydantic's `model_dump()` includes every field with its default, so the
//! defaults are sent too: a bot server written against fastapi_poe sees
//! exactly the shape it would get from the Python client.
//!
//! `Request::params` (custom bot parameters) become the last user message's
//! `parameters`, where Poe's protocol carries parameter-control values;
//! the query-level options fastapi_poe has no other way to pass
//! (`skip_system_prompt`, `logit_bias`, `adopt_current_bot_name`,
//! `language_code`) are taken from `params` by their own names.

use poe_plugin_api::{ErrorKind, Message, PluginError, Request, Role, ToolCall};
use serde_json::{Map, Value, json};

/// fastapi_poe's `PROTOCOL_VERSION`.
pub(crate) const PROTOCOL_VERSION: &str = "1.2";

/// An attachment as the protocol carries it (fastapi_poe's `Attachment`).
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct ProtocolAttachment {
    pub(crate) url: String,
    pub(crate) content_type: String,
    pub(crate) name: String,
}

/// The protocol's role names: `system`, `user`, `bot`, `tool`.
fn role_name(role: Role) -> &'static str {
    match role {
        Role::System => "system",
        Role::User => "user",
        Role::Assistant => "bot",
        Role::Tool => "tool",
    }
}

/// One `ProtocolMessage.model_dump()`.
fn message_json(
    message: &Message,
    attachments: &[ProtocolAttachment],
    parameters: Map<String, Value>,
) -> Value {
    json!({
        "role": role_name(message.role),
        "message_type": null,
        "sender_id": null,
        "sender": null,
        "content": message.content,
        "parameters": parameters,
        "content_type": "text/markdown",
        "timestamp": 0,
        "message_id": "",
        "feedback": [],
        "attachments": attachments.iter().map(|a| json!({
            "url": a.url,
            "content_type": a.content_type,
            "name": a.name,
            "inline_ref": null,
            "parsed_content": null,
        })).collect::<Vec<_>>(),
        "metadata": null,
        "referenced_message": null,
        "reactions": [],
    })
}

fn bad_param(key: &str, expected: &str, value: &str) -> PluginError {
    PluginError::new(
        ErrorKind::InvalidRequest,
        format!("parameter {key} must be {expected}, got {value:?}"),
    )
}

fn bool_param(key: &str, value: &str) -> Result<bool, PluginError> {
    match value.trim().to_ascii_lowercase().as_str() {
        "true" | "1" | "yes" => Ok(true),
        "false" | "0" | "no" => Ok(false),
        _ => Err(bad_param(key, "true or false", value)),
    }
}

/// The query body for `request`; `attachments[i]` are the uploaded
/// attachments of `request.messages[i]`.
pub(crate) fn build_body(
    request: &Request,
    attachments: &[Vec<ProtocolAttachment>],
) -> Result<Value, PluginError> {
    let mut skip_system_prompt = false;
    let mut logit_bias = Value::Object(Map::new());
    let mut adopt_current_bot_name = Value::Null;
    let mut language_code = "en".to_string();
    let mut parameters = Map::new();
    for (key, value) in &request.params {
        match key.as_str() {
            "skip_system_prompt" => skip_system_prompt = bool_param(key, value)?,
            "adopt_current_bot_name" => {
                adopt_current_bot_name = Value::Bool(bool_param(key, value)?)
            }
            "logit_bias" => {
                let parsed: Map<String, Value> = serde_json::from_str(value)
                    .map_err(|_| bad_param(key, "a JSON object of token → bias", value))?;
                if !parsed.values().all(Value::is_number) {
                    return Err(bad_param(key, "a JSON object of token → number", value));
                }
                logit_bias = Value::Object(parsed);
            }
            "language_code" => language_code = value.clone(),
            _ => {
                parameters.insert(key.clone(), Value::String(value.clone()));
            }
        }
    }
    let (sent, tool_calls, tool_results) = match tool_round(&request.messages) {
        Some((split, calls, results)) => (&request.messages[..split], calls, results),
        None => (&request.messages[..], Value::Null, Value::Null),
    };
    let last_user = sent.iter().rposition(|m| m.role == Role::User);
    let query: Vec<Value> = sent
        .iter()
        .enumerate()
        .map(|(i, message)| {
            let params = if Some(i) == last_user {
                std::mem::take(&mut parameters)
            } else {
                Map::new()
            };
            let uploaded = attachments.get(i).map(Vec::as_slice).unwrap_or(&[]);
            message_json(message, uploaded, params)
        })
        .collect();
    if query.is_empty() {
        return Err(PluginError::new(
            ErrorKind::InvalidRequest,
            "no messages to send",
        ));
    }
    let options = &request.options;
    let mut body = json!({
        "version": PROTOCOL_VERSION,
        "type": "query",
        "query": query,
        "user_id": "",
        "conversation_id": "",
        "message_id": "",
        "metadata": "",
        "api_key": "<missing>",
        "access_key": "<missing>",
        "temperature": options.temperature,
        "skip_system_prompt": skip_system_prompt,
        "logit_bias": logit_bias,
        "stop_sequences": options.stop,
        "language_code": language_code,
        "adopt_current_bot_name": adopt_current_bot_name,
        "bot_query_id": "",
        "users": [],
        "tools": null,
        "tool_calls": tool_calls,
        "tool_results": tool_results,
        "query_creation_time": null,
        "extra_params": null,
    });
    if let Some(tools) = &options.tools {
        // OpenAI's tool shape is fastapi_poe's ToolDefinition
        // ({type, function: {name, description, parameters}}).
        body["tools"] = tools.clone();
    }
    Ok(body)
}

/// The function-calling round at the end of `messages`: where it starts,
/// the bot's calls and the answers, in fastapi_poe's shapes.
fn tool_round(messages: &[Message]) -> Option<(usize, Value, Value)> {
    let answers = messages
        .iter()
        .rev()
        .take_while(|m| m.role == Role::Tool)
        .count();
    let split = messages.len().checked_sub(answers + 1)?;
    let asked = &messages[split];
    if answers == 0 || asked.role != Role::Assistant || asked.tool_calls.is_empty() {
        return None;
    }
    let calls: Vec<Value> = asked.tool_calls.iter().map(ToolCall::openai_json).collect();
    let results: Vec<Value> = messages[split + 1..]
        .iter()
        .map(|m| {
            let id = m.tool_call_id.clone().unwrap_or_default();
            let name = asked
                .tool_calls
                .iter()
                .find(|c| c.id == id)
                .map(|c| c.name.clone())
                .unwrap_or_default();
            json!({"role": "tool", "name": name, "tool_call_id": id, "content": m.content})
        })
        .collect();
    Some((split, Value::Array(calls), Value::Array(results)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use poe_plugin_api::Options;

    fn request(messages: Vec<Message>) -> Request {
        Request {
            model: "Claude-3-Opus".into(),
            messages,
            ..Request::default()
        }
    }

    #[test]
    fn defaults_match_fastapi_poe_model_dump() {
        let body = build_body(&request(vec![Message::user("hi")]), &[]).unwrap();
        assert_eq!(body["version"], "1.2");
        assert_eq!(body["type"], "query");
        assert_eq!(body["user_id"], "");
        assert_eq!(body["conversation_id"], "");
        assert_eq!(body["message_id"], "");
        assert_eq!(body["temperature"], Value::Null);
        assert_eq!(body["skip_system_prompt"], false);
        assert_eq!(body["logit_bias"], json!({}));
        assert_eq!(body["stop_sequences"], json!([]));
        assert_eq!(body["tools"], Value::Null);
        let m = &body["query"][0];
        assert_eq!(m["role"], "user");
        assert_eq!(m["content"], "hi");
        assert_eq!(m["content_type"], "text/markdown");
        assert_eq!(m["attachments"], json!([]));
        assert_eq!(m["parameters"], json!({}));
    }

    #[test]
    fn roles_options_params_and_attachments() {
        let mut req = request(vec![
            Message {
                role: Role::System,
                content: "be brief".into(),
                attachments: vec![],
                tool_call_id: None,
                tool_calls: vec![],
            },
            Message::user("first"),
            Message {
                role: Role::Assistant,
                content: "ok".into(),
                attachments: vec![],
                tool_call_id: None,
                tool_calls: vec![],
            },
            Message::user("second"),
        ]);
        req.options = Options {
            temperature: Some(0.3),
            stop: vec!["END".into()],
            tools: Some(json!([{"type": "function", "function": {"name": "f"}}])),
            ..Options::default()
        };
        req.params = [
            ("skip_system_prompt".to_string(), "true".to_string()),
            ("logit_bias".to_string(), r#"{"1234": -100}"#.to_string()),
            ("aspect_ratio".to_string(), "16:9".to_string()),
        ]
        .into();
        let uploaded = vec![
            vec![],
            vec![],
            vec![],
            vec![ProtocolAttachment {
                url: "https://pfst.cf2.poecdn.net/x.png".into(),
                content_type: "image/png".into(),
                name: "x.png".into(),
            }],
        ];
        let body = build_body(&req, &uploaded).unwrap();
        let roles: Vec<&str> = body["query"]
            .as_array()
            .unwrap()
            .iter()
            .map(|m| m["role"].as_str().unwrap())
            .collect();
        assert_eq!(roles, ["system", "user", "bot", "user"]);
        assert_eq!(body["temperature"], 0.3);
        assert_eq!(body["stop_sequences"], json!(["END"]));
        assert_eq!(body["skip_system_prompt"], true);
        assert_eq!(body["logit_bias"], json!({"1234": -100}));
        assert_eq!(body["tools"][0]["function"]["name"], "f");
        assert_eq!(body["query"][1]["parameters"], json!({}));
        assert_eq!(
            body["query"][3]["parameters"],
            json!({"aspect_ratio": "16:9"})
        );
        assert_eq!(
            body["query"][3]["attachments"][0],
            json!({"url": "https://pfst.cf2.poecdn.net/x.png", "content_type": "image/png",
                   "name": "x.png", "inline_ref": null, "parsed_content": null})
        );
    }

    #[test]
    fn bad_query_params_are_invalid_requests() {
        let mut req = request(vec![Message::user("hi")]);
        req.params = [("skip_system_prompt".to_string(), "maybe".to_string())].into();
        assert_eq!(
            build_body(&req, &[]).unwrap_err().kind,
            ErrorKind::InvalidRequest
        );
        req.params = [("logit_bias".to_string(), "[1]".to_string())].into();
        assert_eq!(
            build_body(&req, &[]).unwrap_err().kind,
            ErrorKind::InvalidRequest
        );
        assert!(build_body(&request(vec![]), &[]).is_err());
    }

    #[test]
    fn a_tool_round_goes_in_tool_calls_and_tool_results() {
        let mut answer = Message::new(Role::Tool, "sunny");
        answer.tool_call_id = Some("call_1".into());
        let mut asked = Message::new(Role::Assistant, "");
        asked.tool_calls = vec![poe_plugin_api::ToolCall {
            id: "call_1".into(),
            name: "get_weather".into(),
            arguments: r#"{"city":"Paris"}"#.into(),
        }];
        let body = build_body(
            &request(vec![Message::user("weather?"), asked, answer]),
            &[],
        )
        .unwrap();
        assert_eq!(body["query"].as_array().unwrap().len(), 1);
        assert_eq!(body["query"][0]["content"], "weather?");
        assert_eq!(
            body["tool_calls"],
            json!([{"id": "call_1", "type": "function",
                    "function": {"name": "get_weather", "arguments": "{\"city\":\"Paris\"}"}}])
        );
        assert_eq!(
            body["tool_results"],
            json!([{"role": "tool", "name": "get_weather", "tool_call_id": "call_1", "content": "sunny"}])
        );
        // Without a round at the end, both stay null.
        let plain = build_body(&request(vec![Message::user("hi")]), &[]).unwrap();
        assert_eq!(plain["tool_calls"], Value::Null);
        assert_eq!(plain["tool_results"], Value::Null);
    }
}
