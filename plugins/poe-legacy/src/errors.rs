//! Turns failures of the bot protocol into typed [`PluginError`]s.
//!
//! Three sources:
//! - an HTTP status other than 200 before the stream starts (bad key, unknown
//!   bot, rate limit, server trouble), mapped like the rest of Poe's API;
//! - an `error` event inside the stream. fastapi_poe raises `BotErrorNoRetry`
//!   when its `allow_retry` is false and `BotError` (retried) otherwise, so
//!   `allow_retry: false` becomes an error the host never retries (marked
//!   final), and `allow_retry: true` becomes `upstream` marked retryable: the
//!   bot itself says sending the query again is fine. `error_type` refines the kind where fastapi_poe defines one
//!   (`user_message_too_long`, `insufficient_fund`, `user_caused_error`,
//!   `privacy_authorization_error`);
//! - transport failures and streams that break the protocol.
//!
//! Messages are one short line and never contain the API key ([`redact`]).

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use futures::StreamExt;
use poe_plugin_api::{ErrorKind, PluginError};
use reqwest::header::HeaderMap;
use serde_json::{Map, Value};

/// Longest upstream message we pass on; error bodies can be whole HTML pages.
const MAX_MESSAGE: usize = 300;
/// Most of an error body we read before giving up on the rest.
const MAX_ERROR_BODY: usize = 16 * 1024;
/// Longest retry hint passed on; anything bigger is a broken header.
const MAX_HINT_MS: u64 = 60 * 60 * 1000;

/// Maps a non-200 answer to the query, reading (a bounded part of) its body.
pub(crate) async fn from_response(bot: &str, response: reqwest::Response) -> PluginError {
    let status = response.status().as_u16();
    let headers = response.headers().clone();
    let body = read_capped(response, MAX_ERROR_BODY).await;
    classify(bot, status, &headers, body_message(&body))
}

/// Reads at most `limit` bytes of a body; transport errors just end the read.
pub(crate) async fn read_capped(response: reqwest::Response, limit: usize) -> String {
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

/// The readable message of an error body: FastAPI's `{"detail": ...}`,
/// `{"error": ...}`, `{"message": ...}`, or plain (non-HTML) text.
pub(crate) fn body_message(body: &str) -> Option<String> {
    match serde_json::from_str::<Value>(body) {
        Ok(json) => {
            let inner = json.get("error").unwrap_or(&json);
            let text = match inner {
                Value::String(s) => Some(s.clone()),
                Value::Object(map) => ["message", "detail", "text"]
                    .iter()
                    .find_map(|k| map.get(*k))
                    .map(|v| match v {
                        Value::String(s) => s.clone(),
                        other => other.to_string(),
                    }),
                _ => None,
            };
            text.map(|t| one_line(&t))
        }
        Err(_) => {
            let trimmed = body.trim();
            (!trimmed.is_empty() && !trimmed.starts_with('<')).then(|| one_line(trimmed))
        }
    }
}

/// The typed error for an HTTP `status` from `bot`.
pub(crate) fn classify(
    bot: &str,
    status: u16,
    headers: &HeaderMap,
    said: Option<String>,
) -> PluginError {
    let said = |fallback: &str| said.clone().unwrap_or_else(|| fallback.to_string());
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
            format!("insufficient Poe points: {}", said("add points")),
        ),
        404 => (
            ErrorKind::ModelNotFound,
            format!("no Poe bot named '{bot}': {}", said("not found")),
        ),
        408 => (
            ErrorKind::Timeout,
            format!("bot {bot} timed out: {}", said("request timeout")),
        ),
        413 => (
            ErrorKind::ContextLengthExceeded,
            format!("message too long for {bot}: {}", said("request too large")),
        ),
        429 => (
            ErrorKind::RateLimited,
            format!("rate limited by Poe: {}", said("too many requests")),
        ),
        400..=499 => (
            ErrorKind::InvalidRequest,
            format!("Poe rejected the query to {bot}: {}", said("bad request")),
        ),
        _ => (
            ErrorKind::Upstream,
            format!(
                "Poe upstream error from {bot}: {}",
                said("unexpected response")
            ),
        ),
    };
    let mut error = PluginError::new(kind, truncate(&message, MAX_MESSAGE)).with_status(status);
    if status == 429
        && let Some(ms) = retry_after_ms(headers, SystemTime::now())
    {
        error = error.with_retry_after_ms(ms);
    }
    error
}

/// The wait hint of a 429: `Retry-After` in seconds or as an HTTP date.
pub(crate) fn retry_after_ms(headers: &HeaderMap, now: SystemTime) -> Option<u64> {
    let value = headers.get("retry-after")?.to_str().ok()?.trim();
    let ms = if let Ok(secs) = value.parse::<f64>() {
        (secs.is_finite() && secs >= 0.0).then(|| (secs * 1000.0).ceil() as u64)?
    } else {
        let at = httpdate::parse_http_date(value).ok()?;
        let at = at.duration_since(UNIX_EPOCH).unwrap_or(Duration::ZERO);
        let now = now.duration_since(UNIX_EPOCH).unwrap_or(Duration::ZERO);
        at.saturating_sub(now).as_millis() as u64
    };
    Some(ms.min(MAX_HINT_MS))
}

/// The error an `error` event stands for. `data` is the event's JSON object
/// (`allow_retry`, `text`, `error_type`, `raw_response`); `status` is the
/// HTTP status the stream came with.
pub(crate) fn from_error_event(bot: &str, status: u16, data: &Map<String, Value>) -> PluginError {
    // fastapi_poe: `data.get("allow_retry", True)`.
    let allow_retry = data
        .get("allow_retry")
        .and_then(Value::as_bool)
        .unwrap_or(true);
    let text = data
        .get("text")
        .and_then(Value::as_str)
        .map(one_line)
        .filter(|t| !t.is_empty())
        .unwrap_or_else(|| "the bot reported an error".to_string());
    let error_type = data.get("error_type").and_then(Value::as_str);
    let message = |what: &str| truncate(&format!("{what}: {text}"), MAX_MESSAGE);
    match error_type {
        Some("user_message_too_long") => PluginError::new(
            ErrorKind::ContextLengthExceeded,
            message(&format!("message too long for {bot}")),
        ),
        Some("insufficient_fund") => PluginError::new(
            ErrorKind::Upstream,
            message(&format!("insufficient Poe points for {bot}")),
        )
        .with_status(402),
        Some("user_caused_error") => PluginError::new(
            ErrorKind::InvalidRequest,
            message(&format!("{bot} refused the request")),
        ),
        Some("privacy_authorization_error") => PluginError::new(
            ErrorKind::Upstream,
            message(&format!("{bot} needs privacy authorization on poe.com")),
        )
        .with_status(403),
        _ if allow_retry => PluginError::new(
            ErrorKind::Upstream,
            message(&format!("{bot} reported an error (may be retried)")),
        )
        .retryable(),
        _ => PluginError::new(
            ErrorKind::Upstream,
            message(&format!("{bot} reported an error (no retry allowed)")),
        )
        .with_status(status)
        .not_retryable(),
    }
}

/// Maps a failure to reach or read from Poe (no usable HTTP status).
pub(crate) fn transport(error: reqwest::Error) -> PluginError {
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
    let message = match root_cause(&error) {
        Some(root) => format!("{what}: {root}"),
        None => what.to_string(),
    };
    let err = PluginError::new(ErrorKind::Upstream, truncate(&message, MAX_MESSAGE));
    if error.is_connect() {
        // The request never reached Poe: sending it again costs nothing.
        return err.retryable();
    }
    err
}

/// The innermost cause ("Connection refused"), which says what went wrong.
fn root_cause(error: &(dyn std::error::Error + 'static)) -> Option<String> {
    let mut cause = error.source()?;
    while let Some(next) = cause.source() {
        cause = next;
    }
    Some(one_line(&cause.to_string()))
}

/// The bot answered 200 but broke the protocol. fastapi_poe raises
/// `BotErrorNoRetry` for invalid JSON ("retrying immediately probably won't
/// help"), so this keeps the (non-retried) 2xx status.
pub(crate) fn malformed(status: u16, detail: impl std::fmt::Display) -> PluginError {
    PluginError::new(
        ErrorKind::Upstream,
        truncate(
            &format!("bot sent a malformed event stream: {detail}"),
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
    use serde_json::json;

    fn event(value: Value) -> Map<String, Value> {
        value.as_object().cloned().unwrap()
    }

    #[test]
    fn allow_retry_decides_retryability() {
        let no_retry = from_error_event(
            "B",
            200,
            &event(json!({"allow_retry": false, "text": "nope"})),
        );
        assert_eq!(no_retry.kind, ErrorKind::Upstream);
        assert_eq!(
            no_retry.status,
            Some(200),
            "a status below 500: never retried"
        );
        assert!(no_retry.message.contains("nope"));
        let retry = from_error_event("B", 200, &event(json!({"allow_retry": true, "text": "x"})));
        assert_eq!(retry.kind, ErrorKind::Upstream);
        assert_eq!(retry.retryable, Some(true), "the bot allows a retry");
        assert_eq!(no_retry.retryable, Some(false));
        // fastapi_poe's default when the field is missing is to allow retries.
        assert_eq!(
            from_error_event("B", 200, &event(json!({}))).retryable,
            Some(true)
        );
    }

    #[test]
    fn error_types_refine_the_kind() {
        let kind = |t: &str| {
            from_error_event(
                "B",
                200,
                &event(json!({"allow_retry": false, "error_type": t})),
            )
        };
        assert_eq!(
            kind("user_message_too_long").kind,
            ErrorKind::ContextLengthExceeded
        );
        assert_eq!(kind("insufficient_fund").status, Some(402));
        assert_eq!(kind("user_caused_error").kind, ErrorKind::InvalidRequest);
        assert_eq!(kind("privacy_authorization_error").status, Some(403));
    }

    #[test]
    fn http_statuses() {
        let none = HeaderMap::new();
        assert_eq!(classify("B", 401, &none, None).kind, ErrorKind::Auth);
        assert_eq!(
            classify("B", 404, &none, None).kind,
            ErrorKind::ModelNotFound
        );
        assert_eq!(
            classify("B", 422, &none, None).kind,
            ErrorKind::InvalidRequest
        );
        let e = classify("B", 503, &none, Some("down".into()));
        assert_eq!((e.kind, e.status), (ErrorKind::Upstream, Some(503)));
        assert!(e.message.contains("down"));
        let mut headers = HeaderMap::new();
        headers.insert("retry-after", "2".parse().unwrap());
        let e = classify("B", 429, &headers, None);
        assert_eq!(
            (e.kind, e.retry_after_ms),
            (ErrorKind::RateLimited, Some(2000))
        );
    }

    #[test]
    fn error_bodies() {
        assert_eq!(
            body_message(r#"{"detail":"Bot does not exist"}"#).as_deref(),
            Some("Bot does not exist")
        );
        assert_eq!(
            body_message(r#"{"error":{"message":"bad key"}}"#).as_deref(),
            Some("bad key")
        );
        assert_eq!(body_message("<html>502</html>"), None);
        assert_eq!(body_message("plain\ntext").as_deref(), Some("plain text"));
    }

    #[test]
    fn redacts_the_key() {
        let e = PluginError::new(ErrorKind::Auth, "key sk-123456 bad").redact("sk-123456");
        assert_eq!(e.message, "key [redacted] bad");
    }
}
