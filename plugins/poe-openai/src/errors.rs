//! Turns upstream failures into typed [`PluginError`]s the host can act on.
//!
//! Poe's documented error body (<https://creator.poe.com/api-reference/errors>,
//! and the table in <https://creator.poe.com/docs/external-applications/openai-compatible-api>):
//! `{"error": {"message": "...", "type": "...", "code": "..."}}` where `code`
//! is a string (`invalid_api_key`, `model_not_found`, `insufficient_points`,
//! `rate_limit_exceeded`, `internal_error`, ...) or, on the compatibility
//! page, the HTTP status as a number. Statuses: 400 invalid request (including
//! `model_not_found`), 401 bad key, 402 insufficient points, 403 permission /
//! moderation, 404 wrong endpoint or model, 408 model did not start in time,
//! 413 tokens exceed the context window, 429 rate limit (`Retry-After`
//! seconds), 500/502/503/529 upstream trouble.
//!
//! A 429's wait hint comes from [`crate::ratelimit`].
//!
//! Messages are one short line and never contain the API key ([`redact`]).

use std::time::SystemTime;

use futures::StreamExt;
use poe_plugin_api::{ErrorKind, PluginError};
use reqwest::header::HeaderMap;
use serde_json::Value;

use crate::ratelimit;

/// Longest upstream message we pass on; error bodies can be whole HTML pages.
const MAX_MESSAGE: usize = 300;
/// Most of an error body we read before giving up on the rest.
const MAX_ERROR_BODY: usize = 16 * 1024;

/// What a Poe error body says, as far as it says anything.
#[derive(Debug, Default, PartialEq)]
pub(crate) struct ErrorDetail {
    pub(crate) message: Option<String>,
    /// `type` and `code`, lower-cased, for matching.
    pub(crate) kind: String,
    pub(crate) code: String,
}

impl ErrorDetail {
    /// Parses `{"error": {...}}`, `{"error": "text"}`, `{"message": ...}` or
    /// plain text; anything unreadable becomes a (truncated) message.
    pub(crate) fn parse(body: &str) -> Self {
        match serde_json::from_str::<Value>(body) {
            Ok(json) => Self::from_json(&json),
            Err(_) => {
                let trimmed = body.trim();
                // An HTML error page is noise, not a message.
                let message =
                    (!trimmed.is_empty() && !trimmed.starts_with('<')).then(|| one_line(trimmed));
                ErrorDetail {
                    message,
                    ..Default::default()
                }
            }
        }
    }

    /// Reads an error object already parsed as JSON (also used for errors
    /// sent inside an SSE stream).
    pub(crate) fn from_json(json: &Value) -> Self {
        let lower = |v: Option<&Value>| match v {
            Some(Value::String(s)) => s.to_ascii_lowercase(),
            Some(Value::Number(n)) => n.to_string(),
            _ => String::new(),
        };
        let error = json.get("error").unwrap_or(json);
        match error {
            Value::String(s) => ErrorDetail {
                message: Some(one_line(s)),
                ..Default::default()
            },
            Value::Object(_) => ErrorDetail {
                message: error
                    .get("message")
                    .or_else(|| error.get("detail"))
                    .and_then(Value::as_str)
                    .map(one_line),
                kind: lower(error.get("type")),
                code: lower(error.get("code")),
            },
            _ => ErrorDetail::default(),
        }
    }

    fn mentions(&self, needles: &[&str]) -> bool {
        let message = self.message.as_deref().unwrap_or("").to_ascii_lowercase();
        needles
            .iter()
            .any(|n| self.code == *n || self.kind == *n || message.contains(n))
    }

    fn is_context_length(&self) -> bool {
        self.mentions(&[
            "context_length_exceeded",
            "request_too_large",
            "context length",
            "context window",
            "maximum context",
            "too many tokens",
            "prompt is too long",
        ])
    }

    fn is_model_not_found(&self) -> bool {
        self.code == "model_not_found" || self.kind == "model_not_found"
    }
}

/// Maps a non-2xx response to an error, reading (a bounded part of) its body.
pub(crate) async fn from_response(response: reqwest::Response) -> PluginError {
    let status = response.status().as_u16();
    let headers = response.headers().clone();
    let body = read_capped(response, MAX_ERROR_BODY).await;
    classify(status, &headers, &ErrorDetail::parse(&body))
}

/// Reads at most `limit` bytes of a body; transport errors just end the read.
async fn read_capped(response: reqwest::Response, limit: usize) -> String {
    let mut bytes = Vec::new();
    let mut stream = response.bytes_stream();
    while let Some(Ok(chunk)) = stream.next().await {
        bytes.extend_from_slice(&chunk);
        if bytes.len() >= limit {
            bytes.truncate(limit);
            break;
        }
    }
    String::from_utf8_lossy(&bytes).into_owned()
}

/// The typed error for an HTTP `status` with error `detail`.
pub(crate) fn classify(status: u16, headers: &HeaderMap, detail: &ErrorDetail) -> PluginError {
    let said = |fallback: &str| {
        detail
            .message
            .clone()
            .unwrap_or_else(|| fallback.to_string())
    };
    let (kind, message) = match status {
        401 => (
            ErrorKind::Auth,
            format!("Poe rejected the API key: {}", said("unauthorized")),
        ),
        403 => (
            ErrorKind::Auth,
            format!("Poe refused the request: {}", said("forbidden")),
        ),
        402 => (
            ErrorKind::Upstream,
            format!(
                "insufficient Poe points: {}",
                said("add points or upgrade the subscription")
            ),
        ),
        404 => (
            ErrorKind::ModelNotFound,
            format!("model not found on Poe: {}", said("not found")),
        ),
        408 => (
            ErrorKind::Timeout,
            format!("Poe timed out: {}", said("the model did not start in time")),
        ),
        413 => (
            ErrorKind::ContextLengthExceeded,
            format!("context length exceeded: {}", said("request too large")),
        ),
        429 => (
            ErrorKind::RateLimited,
            format!("rate limited by Poe: {}", said("too many requests")),
        ),
        _ if detail.is_model_not_found() => (
            ErrorKind::ModelNotFound,
            format!("model not found on Poe: {}", said("unknown model")),
        ),
        400..=499 if detail.is_context_length() => (
            ErrorKind::ContextLengthExceeded,
            format!("context length exceeded: {}", said("request too long")),
        ),
        400..=499 => (
            ErrorKind::InvalidRequest,
            format!("Poe rejected the request: {}", said("bad request")),
        ),
        _ => (
            ErrorKind::Upstream,
            format!("Poe upstream error: {}", said("unexpected response")),
        ),
    };
    let mut error = PluginError::new(kind, truncate(&message, MAX_MESSAGE)).with_status(status);
    if status == 429
        && let Some(ms) = ratelimit::retry_after_ms(headers, SystemTime::now())
    {
        error = error.with_retry_after_ms(ms);
    }
    error
}

/// An error object that arrived inside an otherwise successful SSE stream.
pub(crate) fn from_stream_error(status: u16, json: &Value) -> PluginError {
    let detail = ErrorDetail::from_json(json);
    // Mid-stream errors may carry their own HTTP-like code (Poe's
    // compatibility page documents numeric `code`s).
    let code_status = detail
        .code
        .parse::<u16>()
        .ok()
        .filter(|c| (400..600).contains(c));
    classify(code_status.unwrap_or(500), &HeaderMap::new(), &detail).with_status(status)
}

/// Maps a failure to reach or read from Poe (no usable HTTP status).
pub(crate) fn transport(error: reqwest::Error) -> PluginError {
    let root = root_cause(&error);
    if error.is_timeout() {
        return PluginError::new(ErrorKind::Timeout, "request to Poe timed out");
    }
    let what = if error.is_connect() {
        "cannot connect to Poe"
    } else if error.is_body() || error.is_decode() {
        "connection to Poe broke mid-answer"
    } else {
        "request to Poe failed"
    };
    let message = match root {
        Some(root) => format!("{what}: {root}"),
        None => what.to_string(),
    };
    let mut err = PluginError::new(ErrorKind::Upstream, truncate(&message, MAX_MESSAGE));
    if let Some(status) = error.status() {
        err = err.with_status(status.as_u16());
    }
    if error.is_connect() {
        // The request never reached Poe: sending it again costs nothing.
        err = err.retryable();
    }
    err
}

/// The innermost cause, which says what actually went wrong ("Connection
/// refused") where reqwest's own text only says a request failed.
fn root_cause(error: &(dyn std::error::Error + 'static)) -> Option<String> {
    let mut cause = error.source()?;
    while let Some(next) = cause.source() {
        cause = next;
    }
    Some(one_line(&cause.to_string()))
}

/// The upstream answered 2xx but the body was not what the protocol says.
pub(crate) fn malformed(status: u16, what: &str, detail: impl std::fmt::Display) -> PluginError {
    PluginError::new(
        ErrorKind::Upstream,
        truncate(
            &format!("upstream sent malformed {what}: {detail}"),
            MAX_MESSAGE,
        ),
    )
    .with_status(status)
}

/// Collapses whitespace (including newlines) so messages stay on one short line.
pub(crate) fn one_line(s: &str) -> String {
    truncate(&poe_plugin_api::text::one_line(s), MAX_MESSAGE)
}

pub(crate) use poe_plugin_api::text::truncate;

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_support::headers;

    fn poe_body(message: &str, kind: &str, code: &str) -> ErrorDetail {
        ErrorDetail::parse(
            &serde_json::json!({"error": {"message": message, "type": kind, "code": code}})
                .to_string(),
        )
    }

    #[test]
    fn parses_poe_error_body() {
        let d = poe_body(
            "Invalid API key provided",
            "invalid_request_error",
            "invalid_api_key",
        );
        assert_eq!(d.message.as_deref(), Some("Invalid API key provided"));
        assert_eq!(d.code, "invalid_api_key");
        let numeric = ErrorDetail::parse(
            r#"{"error":{"code":401,"type":"authentication_error","message":"Invalid API key"}}"#,
        );
        assert_eq!(numeric.code, "401");
        assert_eq!(numeric.kind, "authentication_error");
    }

    #[test]
    fn html_bodies_give_no_message() {
        let d = ErrorDetail::parse("<html><body>502 Bad Gateway</body></html>");
        assert_eq!(d.message, None);
        let e = classify(502, &HeaderMap::new(), &d);
        assert_eq!(e.kind, ErrorKind::Upstream);
        assert_eq!(e.status, Some(502));
    }

    #[test]
    fn status_mapping() {
        let none = HeaderMap::new();
        let d = ErrorDetail::default();
        assert_eq!(classify(401, &none, &d).kind, ErrorKind::Auth);
        assert_eq!(classify(403, &none, &d).kind, ErrorKind::Auth);
        let points = classify(402, &none, &d);
        assert_eq!(points.kind, ErrorKind::Upstream);
        assert_eq!(points.status, Some(402));
        assert!(points.message.contains("insufficient Poe points"));
        assert_eq!(classify(404, &none, &d).kind, ErrorKind::ModelNotFound);
        assert_eq!(classify(408, &none, &d).kind, ErrorKind::Timeout);
        assert_eq!(
            classify(413, &none, &d).kind,
            ErrorKind::ContextLengthExceeded
        );
        assert_eq!(classify(422, &none, &d).kind, ErrorKind::InvalidRequest);
        assert_eq!(classify(503, &none, &d).kind, ErrorKind::Upstream);
        assert_eq!(classify(529, &none, &d).status, Some(529));
    }

    #[test]
    fn bad_request_refined_by_code_and_wording() {
        let none = HeaderMap::new();
        let model = poe_body(
            "Model 'x' does not exist",
            "invalid_request_error",
            "model_not_found",
        );
        assert_eq!(classify(400, &none, &model).kind, ErrorKind::ModelNotFound);
        let ctx = poe_body(
            "This model's maximum context length is 8192 tokens",
            "invalid_request_error",
            "invalid_parameter",
        );
        assert_eq!(
            classify(400, &none, &ctx).kind,
            ErrorKind::ContextLengthExceeded
        );
        let ctx_code = poe_body(
            "too big",
            "invalid_request_error",
            "context_length_exceeded",
        );
        assert_eq!(
            classify(400, &none, &ctx_code).kind,
            ErrorKind::ContextLengthExceeded
        );
        let temp = poe_body(
            "Temperature must be between 0 and 2",
            "invalid_request_error",
            "invalid_parameter",
        );
        assert_eq!(classify(400, &none, &temp).kind, ErrorKind::InvalidRequest);
    }

    #[test]
    fn rate_limited_carries_retry_hint() {
        let e = classify(
            429,
            &headers(&[("retry-after", "1")]),
            &poe_body(
                "Rate limit exceeded",
                "rate_limit_error",
                "rate_limit_exceeded",
            ),
        );
        assert_eq!(e.kind, ErrorKind::RateLimited);
        assert_eq!(e.retry_after_ms, Some(1000));
        assert_eq!(e.status, Some(429));
    }

    #[test]
    fn stream_errors_use_their_code() {
        let e = from_stream_error(
            200,
            &serde_json::json!({"error": {"code": 429, "type": "rate_limit_error", "message": "slow down"}}),
        );
        assert_eq!(e.kind, ErrorKind::RateLimited);
        assert_eq!(e.status, Some(200));
        let e = from_stream_error(200, &serde_json::json!({"error": {"message": "boom"}}));
        assert_eq!(e.kind, ErrorKind::Upstream);
    }

    #[test]
    fn messages_are_one_short_line_without_key() {
        let long = "x\n".repeat(1000);
        let e = classify(500, &HeaderMap::new(), &ErrorDetail::parse(&long));
        assert!(!e.message.contains('\n'));
        assert!(e.message.chars().count() <= MAX_MESSAGE + 1);
        let e =
            PluginError::new(ErrorKind::Auth, "key sk-secret-123 is bad").redact("sk-secret-123");
        assert_eq!(e.message, "key [redacted] is bad");
    }
}
