//! The serde types that cross the plugin boundary as JSON: manifest, request,
//! streamed events, result and typed errors.
//!
//! Compatibility rule: a minor version may add optional fields (with
//! `#[serde(default)]`) and new enum variants that older peers skip; it never
//! removes or renames a field. Unknown fields are ignored on both sides.

use std::collections::BTreeMap;
use std::fmt;

use serde::{Deserialize, Serialize};

/// What a plugin declares about itself; returned by `manifest()` before `open`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Manifest {
    /// Stable identifier, e.g. `poe-openai`. One loaded plugin per id.
    pub id: String,
    /// The plugin's own version (its crate version).
    pub version: String,
    #[serde(default)]
    pub description: String,
    /// Model/bot name patterns this plugin serves: exact names, or a prefix
    /// followed by `*` (`legacy:*`, `*`). The most specific match wins.
    pub models: Vec<String>,
    /// What kinds of output the plugin can produce.
    pub capabilities: Vec<Capability>,
    /// Upstream limit the host should apply per API key unless configured otherwise.
    #[serde(default)]
    pub default_rate_limit: Option<RateLimit>,
    /// Environment/config keys the plugin reads from the `open` config.
    #[serde(default)]
    pub config_keys: Vec<String>,
    /// plugin-api version the plugin was built against; filled in by the SDK.
    #[serde(default)]
    pub plugin_api_version: String,
    /// Which [`Options`] fields the plugin passes upstream, by field name
    /// (`temperature`, `tools`, ...). Empty means "not declared": the host
    /// then assumes all of them. Since 0.1.3.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub options: Vec<String>,
    /// Which kinds of [`Attachment`] the plugin can send upstream
    /// ([`attachment_kind`] names: `image`, `pdf`). Empty means "not
    /// declared": the host then sends every kind. Since 0.1.3.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub attachments: Vec<String>,
}

/// Names of attachment kinds in [`Manifest::attachments`].
pub mod attachment_kind {
    /// A picture the model looks at (`image/*`).
    pub const IMAGE: &str = "image";
    /// A PDF document.
    pub const PDF: &str = "pdf";
}

/// A kind of output a plugin can produce.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq, Hash)]
#[serde(rename_all = "snake_case")]
pub enum Capability {
    Text,
    Image,
    Video,
    Audio,
    Tools,
}

/// A request rate.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
pub struct RateLimit {
    pub requests_per_minute: u32,
}

/// Configuration handed to `open`: the values of the manifest's `config_keys`
/// that the host found (environment first, then config.toml).
pub type Config = BTreeMap<String, String>;

/// What the caller wants produced.
#[derive(Debug, Clone, Copy, Default, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum OutputKind {
    #[default]
    Text,
    Image,
    Video,
    Audio,
}

/// Role of a chat message.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    System,
    User,
    Assistant,
    Tool,
}

/// A file or image handed to the model with a message.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Attachment {
    /// `https:` URL or `data:` URL.
    pub url: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub content_type: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
}

/// One message of the conversation sent upstream.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Message {
    pub role: Role,
    pub content: String,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub attachments: Vec<Attachment>,
    /// For `Role::Tool` messages: the call this answers.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tool_call_id: Option<String>,
    /// For `Role::Assistant` messages: the function calls the model asked
    /// for, replayed so the following `Role::Tool` answers have their
    /// calls. Since 0.1.3.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub tool_calls: Vec<ToolCall>,
}

impl Message {
    /// A plain user message.
    pub fn user(content: impl Into<String>) -> Self {
        Self {
            role: Role::User,
            content: content.into(),
            attachments: Vec::new(),
            tool_call_id: None,
            tool_calls: Vec::new(),
        }
    }

    /// A message of `role` with `content` and nothing else.
    pub fn new(role: Role, content: impl Into<String>) -> Self {
        Self {
            role,
            ..Self::user(content)
        }
    }
}

/// Sampling and length options; all optional, passed through as given.
/// [`Options::NAMES`] spells each field for [`Manifest::options`].
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct Options {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub temperature: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub top_p: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_tokens: Option<u32>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub stop: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reasoning_effort: Option<String>,
    /// How terse the answer should be (`low`, `medium`, `high`), for models
    /// that take it. Since 0.1.3.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub verbosity: Option<String>,
    /// OpenAI-style tool definitions, passed through untouched.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tools: Option<serde_json::Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tool_choice: Option<serde_json::Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub parallel_tool_calls: Option<bool>,
}

impl Options {
    /// Every field's name, as [`Manifest::options`] lists them.
    pub const NAMES: [&'static str; 9] = [
        "temperature",
        "top_p",
        "max_tokens",
        "stop",
        "reasoning_effort",
        "verbosity",
        "tools",
        "tool_choice",
        "parallel_tool_calls",
    ];

    /// Names of the fields that are set.
    pub fn set_names(&self) -> Vec<&'static str> {
        let set = [
            self.temperature.is_some(),
            self.top_p.is_some(),
            self.max_tokens.is_some(),
            !self.stop.is_empty(),
            self.reasoning_effort.is_some(),
            self.verbosity.is_some(),
            self.tools.is_some(),
            self.tool_choice.is_some(),
            self.parallel_tool_calls.is_some(),
        ];
        Self::NAMES
            .iter()
            .zip(set)
            .filter_map(|(name, set)| set.then_some(*name))
            .collect()
    }
}

/// One call into a provider. Its `Debug` never shows the API key.
#[derive(Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct Request {
    /// Model or bot name as the user wrote it (routing prefixes already removed).
    pub model: String,
    pub messages: Vec<Message>,
    #[serde(default)]
    pub output: OutputKind,
    /// Custom bot parameters (e.g. `aspect_ratio`), passed the way the
    /// upstream takes them.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub params: BTreeMap<String, String>,
    #[serde(default)]
    pub options: Options,
    /// Stream events through the sink as they arrive (`true`) or only return the result.
    #[serde(default)]
    pub stream: bool,
    /// Upstream API key for this call; `None` means the plugin's configured one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub api_key: Option<String>,
    /// Working directory of the calling agent session, when known.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cwd: Option<String>,
    /// Provider-side conversation/thread to continue, when the provider has one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub continuation: Option<String>,
    /// Deadline the host will enforce; plugins may use it to bound their own waits.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timeout_ms: Option<u64>,
}

impl fmt::Debug for Request {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        /// Stands in for a secret.
        struct Redacted;
        impl fmt::Debug for Redacted {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("<redacted>")
            }
        }
        // Destructured so a new field cannot be forgotten here.
        let Request {
            model,
            messages,
            output,
            params,
            options,
            stream,
            api_key,
            cwd,
            continuation,
            timeout_ms,
        } = self;
        f.debug_struct("Request")
            .field("model", model)
            .field("messages", messages)
            .field("output", output)
            .field("params", params)
            .field("options", options)
            .field("stream", stream)
            .field("api_key", &api_key.as_ref().map(|_| Redacted))
            .field("cwd", cwd)
            .field("continuation", continuation)
            .field("timeout_ms", timeout_ms)
            .finish()
    }
}

impl Request {
    /// The key this call should use: the session's own (`api_key`), else
    /// the plugin's configured one; blank keys count as none.
    pub fn effective_api_key<'a>(&'a self, configured: Option<&'a str>) -> Option<&'a str> {
        self.api_key
            .as_deref()
            .map(str::trim)
            .filter(|k| !k.is_empty())
            .or(configured)
    }
}

/// Token (and Poe point) accounting for one call.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct Usage {
    #[serde(default)]
    pub prompt_tokens: u64,
    #[serde(default)]
    pub completion_tokens: u64,
    #[serde(default)]
    pub total_tokens: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub points: Option<f64>,
}

/// A generated media file.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Media {
    pub url: String,
    pub kind: OutputKind,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mime_type: Option<String>,
}

/// A complete function call requested by the model.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct ToolCall {
    pub id: String,
    pub name: String,
    /// JSON text of the arguments, as the model produced it.
    pub arguments: String,
}

impl ToolCall {
    /// The call in OpenAI's shape, which Poe's APIs and fastapi_poe use too:
    /// `{"id", "type": "function", "function": {"name", "arguments"}}`.
    pub fn openai_json(&self) -> serde_json::Value {
        serde_json::json!({
            "id": self.id,
            "type": "function",
            "function": {"name": self.name, "arguments": self.arguments},
        })
    }
}

/// Log level of a [`Event::Log`].
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum LogLevel {
    Debug,
    Info,
    Warn,
    Error,
}

/// Something that happened while a call runs, sent through the [`crate::Sink`].
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum Event {
    /// More answer text.
    TextDelta { text: String },
    /// A piece of a function call being streamed.
    ToolCallDelta {
        index: u32,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        id: Option<String>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        name: Option<String>,
        #[serde(default)]
        arguments: String,
    },
    /// A media file is ready.
    Media(Media),
    /// Usage so far (the last one wins).
    Usage(Usage),
    /// Human-readable progress ("queued", "rendering 40%").
    Progress { message: String },
    /// A log line for the daemon's log; never shown to the model.
    Log { level: LogLevel, message: String },
    /// The provider's own thread/conversation id, for later continuation.
    Continuation { id: String },
    /// The upstream's view of the caller's request budget (e.g. Poe's
    /// `x-ratelimit-*` headers), so the host's shared limiter can adapt.
    RateLimit {
        #[serde(default, skip_serializing_if = "Option::is_none")]
        limit: Option<u64>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        remaining: Option<u64>,
        /// Milliseconds until the budget resets.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        reset_ms: Option<u64>,
    },
}

/// What a finished call returns.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct Response {
    /// The whole answer text.
    pub text: String,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub media: Vec<Media>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub tool_calls: Vec<ToolCall>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub usage: Option<Usage>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub finish_reason: Option<String>,
    /// Model that actually answered, when the upstream says.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub model: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub continuation: Option<String>,
}

/// Kind of failure; the host maps these to retries and MCP error codes.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq, Hash)]
#[serde(rename_all = "snake_case")]
pub enum ErrorKind {
    /// Missing or rejected credentials.
    Auth,
    /// The upstream said to slow down.
    RateLimited,
    /// The request itself is wrong; retrying will not help.
    InvalidRequest,
    ModelNotFound,
    ContextLengthExceeded,
    /// The upstream failed (5xx, garbage, or another status in `status`).
    Upstream,
    Timeout,
    Cancelled,
    /// The provider cannot run at all (binary missing, not logged in).
    Unavailable,
    /// A bug, including a panic inside the plugin.
    Internal,
}

impl ErrorKind {
    /// The snake_case name used on the wire.
    pub fn as_str(self) -> &'static str {
        match self {
            ErrorKind::Auth => "auth",
            ErrorKind::RateLimited => "rate_limited",
            ErrorKind::InvalidRequest => "invalid_request",
            ErrorKind::ModelNotFound => "model_not_found",
            ErrorKind::ContextLengthExceeded => "context_length_exceeded",
            ErrorKind::Upstream => "upstream",
            ErrorKind::Timeout => "timeout",
            ErrorKind::Cancelled => "cancelled",
            ErrorKind::Unavailable => "unavailable",
            ErrorKind::Internal => "internal",
        }
    }
}

/// A typed failure of a plugin call.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, thiserror::Error)]
pub struct PluginError {
    pub kind: ErrorKind,
    pub message: String,
    /// HTTP status from the upstream, when there was one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status: Option<u16>,
    /// How long the upstream asked us to wait, for `rate_limited`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retry_after_ms: Option<u64>,
    /// Whether running the request again is safe and may succeed. `None`
    /// lets the host decide from `kind` and `status`; `Some(false)` forbids
    /// a retry (e.g. an agent turn that may already have changed files).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retryable: Option<bool>,
}

impl PluginError {
    /// An error of `kind` with `message`.
    pub fn new(kind: ErrorKind, message: impl Into<String>) -> Self {
        Self {
            kind,
            message: message.into(),
            status: None,
            retry_after_ms: None,
            retryable: None,
        }
    }

    /// An `internal` error.
    pub fn internal(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::Internal, message)
    }

    /// The call was cancelled by the host.
    pub fn cancelled() -> Self {
        Self::new(ErrorKind::Cancelled, "cancelled")
    }

    /// Attach the upstream HTTP status.
    pub fn with_status(mut self, status: u16) -> Self {
        self.status = Some(status);
        self
    }

    /// Replaces every occurrence of `secret` (an API key) in the message.
    pub fn redact(mut self, secret: &str) -> Self {
        // Very short strings would match innocent text and are no secret anyway.
        if secret.len() >= 4 && self.message.contains(secret) {
            self.message = self.message.replace(secret, "[redacted]");
        }
        self
    }

    /// Forbid the host from retrying this failure.
    pub fn not_retryable(mut self) -> Self {
        self.retryable = Some(false);
        self
    }

    /// Tells the host a retry is safe even where it would not assume so
    /// (the request never reached the upstream, e.g. connection refused).
    pub fn retryable(mut self) -> Self {
        self.retryable = Some(true);
        self
    }

    /// Attach a retry hint.
    pub fn with_retry_after_ms(mut self, ms: u64) -> Self {
        self.retry_after_ms = Some(ms);
        self
    }
}

impl fmt::Display for PluginError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.kind.as_str(), self.message)?;
        if let Some(status) = self.status {
            write!(f, " (HTTP {status})")?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn request_debug_redacts_the_api_key_and_keeps_the_rest() {
        let request = Request {
            model: "echo".into(),
            messages: vec![Message::user("hello")],
            api_key: Some("sk-poe-secret-abcdef-9876".into()),
            cwd: Some("/work".into()),
            timeout_ms: Some(1500),
            ..Request::default()
        };
        let shown = format!("{request:?}");
        assert!(!shown.contains("secret"), "{shown}");
        assert!(!shown.contains("9876"), "{shown}");
        assert!(shown.contains("api_key: Some(<redacted>)"), "{shown}");
        for part in [
            "model: \"echo\"",
            "hello",
            "cwd: Some(\"/work\")",
            "timeout_ms: Some(1500)",
        ] {
            assert!(shown.contains(part), "{part} missing from {shown}");
        }
        let none = format!("{:?}", Request::default());
        assert!(none.contains("api_key: None"), "{none}");
    }
}
