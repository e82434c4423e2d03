//! Stable error codes of tool results, and how plugin errors map onto them.
//!
//! A failed tool call is an `isError: true` result whose text starts with the
//! code and whose `structuredContent.error` carries code, kind and details, so
//! both models and programs can read it.

use poe_plugin_api::{ErrorKind, PluginError};
use rmcp::model::{CallToolResult, ContentBlock};
use serde_json::json;

/// A stable code clients can match on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Code {
    ProviderUnavailable,
    ModelNotFound,
    RateLimitExceeded,
    ContextLengthExceeded,
    InvalidArgument,
    Cancelled,
    InternalError,
    /// `continuation_id` names no conversation this daemon knows.
    ConversationNotFound,
    /// The conversation was last used longer ago than its retention.
    ConversationExpired,
    /// Another turn of the same conversation is still running.
    ConversationBusy,
    /// A file or image path is outside the allowed roots (`..`, a symlink
    /// or an absolute path leading out).
    PathNotAllowed,
    /// A file or image path does not exist.
    FileNotFound,
    /// A file or image is over its size cap.
    FileTooLarge,
    /// A file cannot be attached as text or PDF (binary, directory, device).
    UnsupportedFile,
    /// An `images` entry is not an image (by content) or a bad data URL.
    InvalidImage,
    /// The chosen provider cannot take this kind of attachment.
    UnsupportedAttachment,
    /// `tools` or `tool_choice` is malformed.
    InvalidTools,
    /// `tool_results` answer calls the model never made (or already answered).
    UnknownToolCall,
    /// The day's Poe points reached a `[budget]`.
    BudgetExceeded,
}

impl Code {
    /// The wire spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            Code::ProviderUnavailable => "PROVIDER_UNAVAILABLE",
            Code::ModelNotFound => "MODEL_NOT_FOUND",
            Code::RateLimitExceeded => "RATE_LIMIT_EXCEEDED",
            Code::ContextLengthExceeded => "CONTEXT_LENGTH_EXCEEDED",
            Code::InvalidArgument => "INVALID_ARGUMENT",
            Code::Cancelled => "CANCELLED",
            Code::InternalError => "INTERNAL_ERROR",
            Code::ConversationNotFound => "CONVERSATION_NOT_FOUND",
            Code::ConversationExpired => "CONVERSATION_EXPIRED",
            Code::ConversationBusy => "CONVERSATION_BUSY",
            Code::PathNotAllowed => "PATH_NOT_ALLOWED",
            Code::FileNotFound => "FILE_NOT_FOUND",
            Code::FileTooLarge => "FILE_TOO_LARGE",
            Code::UnsupportedFile => "UNSUPPORTED_FILE",
            Code::InvalidImage => "INVALID_IMAGE",
            Code::UnsupportedAttachment => "UNSUPPORTED_ATTACHMENT",
            Code::InvalidTools => "INVALID_TOOLS",
            Code::UnknownToolCall => "UNKNOWN_TOOL_CALL",
            Code::BudgetExceeded => "BUDGET_EXCEEDED",
        }
    }
}

/// The code for a plugin error kind.
pub fn code_for(kind: ErrorKind) -> Code {
    match kind {
        ErrorKind::RateLimited => Code::RateLimitExceeded,
        ErrorKind::InvalidRequest => Code::InvalidArgument,
        ErrorKind::ModelNotFound => Code::ModelNotFound,
        ErrorKind::ContextLengthExceeded => Code::ContextLengthExceeded,
        ErrorKind::Cancelled => Code::Cancelled,
        ErrorKind::Internal => Code::InternalError,
        ErrorKind::Auth | ErrorKind::Upstream | ErrorKind::Timeout | ErrorKind::Unavailable => {
            Code::ProviderUnavailable
        }
    }
}

/// A tool error result with `code` and a human message.
pub fn tool_error(code: Code, message: impl Into<String>) -> CallToolResult {
    let message = message.into();
    let mut result = CallToolResult::error(vec![ContentBlock::text(format!(
        "{}: {message}",
        code.as_str()
    ))]);
    result.structured_content = Some(json!({
        "error": { "code": code.as_str(), "message": message }
    }));
    result
}

/// A tool error result for a failed plugin call.
pub fn plugin_error(err: &PluginError) -> CallToolResult {
    let code = code_for(err.kind);
    let mut message = err.message.clone();
    if err.kind == ErrorKind::Auth {
        message.push_str(" (check your key: run 'poe-code login')");
    }
    if let Some(ms) = err.retry_after_ms {
        message.push_str(&format!(" (retry after {:.1} s)", ms as f64 / 1000.0));
    }
    let mut result = tool_error(code, message.clone());
    result.structured_content = Some(json!({
        "error": {
            "code": code.as_str(),
            "kind": err.kind.as_str(),
            "message": message,
            "status": err.status,
            "retry_after_ms": err.retry_after_ms,
        }
    }));
    result
}
