//! What a `chat` call (and `get_bot_response`) may ask for, and the checks
//! that refuse a bad value before any upstream request: sampling ranges,
//! stop sequences, reasoning effort and verbosity, the tools schema,
//! tool_choice, and tool results.

use std::collections::{BTreeMap, HashSet};

use poe_plugin_api::Options;
use serde::Deserialize;
use serde_json::Value;

use crate::mcp::errors::Code;

/// Efforts Poe's reasoning models take (`none` and `xhigh` exist on newer GPTs).
pub const REASONING_EFFORTS: [&str; 6] = ["none", "minimal", "low", "medium", "high", "xhigh"];
/// Verbosity levels.
pub const VERBOSITIES: [&str; 3] = ["low", "medium", "high"];
/// OpenAI's cap on stop sequences.
const MAX_STOP: usize = 4;
/// OpenAI's cap on tools per request.
const MAX_TOOLS: usize = 128;

/// Sampling and length parameters shared by `chat` and `get_bot_response`.
#[derive(Debug, Default, Clone, Deserialize)]
pub struct Sampling {
    pub temperature: Option<f64>,
    pub top_p: Option<f64>,
    pub max_tokens: Option<u64>,
    /// A string or a list of strings.
    pub stop: Option<Value>,
    pub reasoning_effort: Option<String>,
    pub verbosity: Option<String>,
}

/// Arguments of `chat`.
#[derive(Debug, Default, Deserialize)]
pub struct ChatArgs {
    #[serde(default)]
    pub prompt: Option<String>,
    pub model: Option<String>,
    #[serde(default)]
    pub files: Vec<String>,
    #[serde(default)]
    pub images: Vec<String>,
    pub continuation_id: Option<String>,
    #[serde(flatten)]
    pub sampling: Sampling,
    pub tools: Option<Value>,
    pub tool_choice: Option<Value>,
    pub parallel_tool_calls: Option<bool>,
    #[serde(default)]
    pub tool_results: Vec<ToolResult>,
    /// Custom bot parameters, passed as given.
    #[serde(default)]
    pub params: BTreeMap<String, String>,
    #[serde(default, rename = "async")]
    pub run_async: bool,
    #[serde(default)]
    pub export: bool,
}

/// The agent's answer to one tool call of the model.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct ToolResult {
    pub tool_call_id: String,
    /// Text, or any JSON (sent as its JSON text).
    pub content: Value,
}

impl ToolResult {
    /// The content as the text sent upstream.
    pub fn text(&self) -> String {
        match &self.content {
            Value::String(s) => s.clone(),
            other => other.to_string(),
        }
    }
}

/// A refused argument: its code and what is wrong.
#[derive(Debug, Clone, PartialEq)]
pub struct Refusal {
    pub code: Code,
    pub message: String,
}

fn invalid(message: impl Into<String>) -> Refusal {
    Refusal {
        code: Code::InvalidArgument,
        message: message.into(),
    }
}

fn bad_tools(message: impl Into<String>) -> Refusal {
    Refusal {
        code: Code::InvalidTools,
        message: message.into(),
    }
}

impl Sampling {
    /// Checks every range and writes the values into `options`.
    pub fn apply(&self, options: &mut Options) -> Result<(), Refusal> {
        if let Some(t) = self.temperature {
            if !(t.is_finite() && (0.0..=2.0).contains(&t)) {
                return Err(invalid(format!(
                    "temperature must be between 0 and 2, got {t}"
                )));
            }
            options.temperature = Some(t);
        }
        if let Some(p) = self.top_p {
            if !(p.is_finite() && p > 0.0 && p <= 1.0) {
                return Err(invalid(format!(
                    "top_p must be more than 0 and at most 1, got {p}"
                )));
            }
            options.top_p = Some(p);
        }
        if let Some(n) = self.max_tokens {
            let n = u32::try_from(n).ok().filter(|n| *n >= 1).ok_or_else(|| {
                invalid(format!(
                    "max_tokens must be between 1 and {}, got {n}",
                    u32::MAX
                ))
            })?;
            options.max_tokens = Some(n);
        }
        if let Some(stop) = &self.stop {
            options.stop = stop_sequences(stop)?;
        }
        if let Some(effort) = &self.reasoning_effort {
            options.reasoning_effort =
                Some(one_of("reasoning_effort", effort, &REASONING_EFFORTS)?);
        }
        if let Some(verbosity) = &self.verbosity {
            options.verbosity = Some(one_of("verbosity", verbosity, &VERBOSITIES)?);
        }
        Ok(())
    }
}

fn one_of(name: &str, value: &str, allowed: &[&str]) -> Result<String, Refusal> {
    let lower = value.trim().to_ascii_lowercase();
    if allowed.contains(&lower.as_str()) {
        Ok(lower)
    } else {
        Err(invalid(format!(
            "{name} must be one of {}, got {value:?}",
            allowed.join(", ")
        )))
    }
}

/// `stop` as a list: at most four sequences, none empty or only whitespace
/// (Poe documents that whitespace-only sequences do not work).
fn stop_sequences(stop: &Value) -> Result<Vec<String>, Refusal> {
    let list: Vec<String> = match stop {
        Value::String(s) => vec![s.clone()],
        Value::Array(items) => items
            .iter()
            .map(|v| {
                v.as_str()
                    .map(str::to_string)
                    .ok_or_else(|| invalid(format!("stop must hold strings, got {v}")))
            })
            .collect::<Result<_, _>>()?,
        other => {
            return Err(invalid(format!(
                "stop must be a string or a list of strings, got {other}"
            )));
        }
    };
    if list.len() > MAX_STOP {
        return Err(invalid(format!(
            "stop takes at most {MAX_STOP} sequences, got {}",
            list.len()
        )));
    }
    if let Some(blank) = list.iter().find(|s| s.trim().is_empty()) {
        return Err(invalid(format!(
            "stop sequences must contain a non-whitespace character (Poe ignores whitespace-only ones), got {blank:?}"
        )));
    }
    Ok(list)
}

fn valid_function_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 64
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
}

/// Checks `tools` (OpenAI's function tool list) and `tool_choice`, and
/// returns the tool names.
pub fn check_tools(
    tools: Option<&Value>,
    tool_choice: Option<&Value>,
) -> Result<Vec<String>, Refusal> {
    let mut names = Vec::new();
    if let Some(tools) = tools {
        let list = tools.as_array().ok_or_else(|| {
            bad_tools(
                "tools must be a list of {\"type\": \"function\", \"function\": {...}} objects",
            )
        })?;
        if list.len() > MAX_TOOLS {
            return Err(bad_tools(format!(
                "at most {MAX_TOOLS} tools, got {}",
                list.len()
            )));
        }
        let mut seen = HashSet::new();
        for (i, tool) in list.iter().enumerate() {
            let at = format!("tools[{i}]");
            if tool.get("type").and_then(Value::as_str) != Some("function") {
                return Err(bad_tools(format!("{at}.type must be \"function\"")));
            }
            let function = tool
                .get("function")
                .filter(|f| f.is_object())
                .ok_or_else(|| bad_tools(format!("{at}.function must be an object with a name")))?;
            let name = function
                .get("name")
                .and_then(Value::as_str)
                .ok_or_else(|| bad_tools(format!("{at}.function.name is missing")))?;
            if !valid_function_name(name) {
                return Err(bad_tools(format!(
                    "{at}.function.name {name:?} must be 1-64 letters, digits, '_' or '-'"
                )));
            }
            if !seen.insert(name.to_string()) {
                return Err(bad_tools(format!("{at}: a second tool named {name:?}")));
            }
            if let Some(d) = function.get("description")
                && !d.is_string()
            {
                return Err(bad_tools(format!(
                    "{at}.function.description must be a string"
                )));
            }
            if let Some(params) = function.get("parameters") {
                let is_object_schema =
                    params.is_object() && params.get("type").is_none_or(|t| t == "object");
                if !is_object_schema {
                    return Err(bad_tools(format!(
                        "{at}.function.parameters must be a JSON Schema object with \"type\": \"object\""
                    )));
                }
            }
            names.push(name.to_string());
        }
    }
    if let Some(choice) = tool_choice {
        if names.is_empty() {
            return Err(bad_tools("tool_choice needs tools"));
        }
        match choice {
            Value::String(s) if ["none", "auto", "required"].contains(&s.as_str()) => {}
            Value::Object(_) => {
                let name = choice
                    .get("function")
                    .and_then(|f| f.get("name"))
                    .and_then(Value::as_str)
                    .filter(|_| choice.get("type").and_then(Value::as_str) == Some("function"))
                    .ok_or_else(|| {
                        bad_tools("tool_choice must be \"none\", \"auto\", \"required\" or {\"type\": \"function\", \"function\": {\"name\": ...}}")
                    })?;
                if !names.iter().any(|n| n == name) {
                    return Err(bad_tools(format!(
                        "tool_choice names {name:?}, which is not among the tools"
                    )));
                }
            }
            other => {
                return Err(bad_tools(format!(
                    "tool_choice must be \"none\", \"auto\", \"required\" or a function object, got {other}"
                )));
            }
        }
    }
    Ok(names)
}

/// Checks that `results` answer exactly the `pending` calls (ids the
/// model's last answer asked for and nobody answered yet).
pub fn check_tool_results(results: &[ToolResult], pending: &[String]) -> Result<(), Refusal> {
    let unknown = |message: String| Refusal {
        code: Code::UnknownToolCall,
        message,
    };
    let mut answered = HashSet::new();
    for r in results {
        if !pending.contains(&r.tool_call_id) {
            return Err(unknown(if pending.is_empty() {
                format!(
                    "tool_results answer {:?}, but the model is not waiting for any tool call in this conversation",
                    r.tool_call_id
                )
            } else {
                format!(
                    "tool_results answer {:?}, which the model did not ask for (it waits for: {})",
                    r.tool_call_id,
                    pending.join(", ")
                )
            }));
        }
        if !answered.insert(r.tool_call_id.as_str()) {
            return Err(unknown(format!(
                "tool_results answer {:?} twice",
                r.tool_call_id
            )));
        }
    }
    if !results.is_empty() {
        let missing: Vec<&str> = pending
            .iter()
            .filter(|id| !answered.contains(id.as_str()))
            .map(String::as_str)
            .collect();
        if !missing.is_empty() {
            return Err(invalid(format!(
                "tool_results must answer every call of the model's last answer; missing: {}",
                missing.join(", ")
            )));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn sampling(v: Value) -> Result<Options, Refusal> {
        let s: Sampling = serde_json::from_value(v).unwrap();
        let mut o = Options::default();
        s.apply(&mut o).map(|_| o)
    }

    #[test]
    fn ranges_are_checked() {
        let o = sampling(
            json!({"temperature": 2.0, "top_p": 0.5, "max_tokens": 10, "stop": "END",
            "reasoning_effort": "High", "verbosity": "low"}),
        )
        .unwrap();
        assert_eq!(o.temperature, Some(2.0));
        assert_eq!(o.stop, ["END"]);
        assert_eq!(o.reasoning_effort.as_deref(), Some("high"));
        for bad in [
            json!({"temperature": 2.5}),
            json!({"temperature": -0.1}),
            json!({"top_p": 0}),
            json!({"top_p": 1.5}),
            json!({"max_tokens": 0}),
            json!({"max_tokens": 5_000_000_000u64}),
            json!({"stop": ["a", "b", "c", "d", "e"]}),
            json!({"stop": ["  "]}),
            json!({"stop": [1]}),
            json!({"reasoning_effort": "extreme"}),
            json!({"verbosity": "loud"}),
        ] {
            let err = sampling(bad.clone()).unwrap_err();
            assert_eq!(err.code, Code::InvalidArgument, "{bad}");
        }
    }

    fn tool(name: &str) -> Value {
        json!({"type": "function", "function": {"name": name, "parameters": {"type": "object", "properties": {}}}})
    }

    #[test]
    fn tools_and_tool_choice_are_checked() {
        let tools = json!([tool("get_weather"), tool("search")]);
        assert_eq!(
            check_tools(
                Some(&tools),
                Some(&json!({"type": "function", "function": {"name": "search"}}))
            )
            .unwrap(),
            ["get_weather", "search"]
        );
        assert!(check_tools(Some(&tools), Some(&json!("required"))).is_ok());
        for (tools, choice) in [
            (json!({"name": "x"}), None),
            (json!([{"type": "function"}]), None),
            (
                json!([{"type": "retrieval", "function": {"name": "x"}}]),
                None,
            ),
            (json!([tool("has space")]), None),
            (json!([tool("a"), tool("a")]), None),
            (
                json!([{"type": "function", "function": {"name": "a", "parameters": "x"}}]),
                None,
            ),
            (json!([tool("a")]), Some(json!("sometimes"))),
            (
                json!([tool("a")]),
                Some(json!({"type": "function", "function": {"name": "b"}})),
            ),
        ] {
            let err = check_tools(Some(&tools), choice.as_ref()).unwrap_err();
            assert_eq!(err.code, Code::InvalidTools, "{tools} {choice:?}");
        }
        assert_eq!(
            check_tools(None, Some(&json!("auto"))).unwrap_err().code,
            Code::InvalidTools
        );
    }

    #[test]
    fn tool_results_must_answer_exactly_the_pending_calls() {
        let r = |id: &str| ToolResult {
            tool_call_id: id.into(),
            content: json!("ok"),
        };
        let pending = vec!["c1".to_string(), "c2".to_string()];
        assert!(check_tool_results(&[r("c1"), r("c2")], &pending).is_ok());
        assert_eq!(
            check_tool_results(&[r("c3")], &pending).unwrap_err().code,
            Code::UnknownToolCall
        );
        assert_eq!(
            check_tool_results(&[r("c1"), r("c1")], &pending)
                .unwrap_err()
                .code,
            Code::UnknownToolCall
        );
        assert_eq!(
            check_tool_results(&[r("c1")], &[]).unwrap_err().code,
            Code::UnknownToolCall
        );
        let missing = check_tool_results(&[r("c1")], &pending).unwrap_err();
        assert!(missing.message.contains("c2"), "{}", missing.message);
        assert_eq!(r("x").text(), "ok");
        let json_content = ToolResult {
            tool_call_id: "x".into(),
            content: json!({"t": 1}),
        };
        assert_eq!(json_content.text(), "{\"t\":1}");
    }
}
