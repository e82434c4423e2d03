//! Pieces of Poe's wire format shared by every fake endpoint: Bearer
//! authentication, the documented error body, and rate-limit headers.
//!
//! Error bodies follow <https://creator.poe.com/api-reference/errors>:
//! `{"error": {"message", "type", "code"}}`. The 429 carries `Retry-After`
//! (seconds) plus the `x-ratelimit-*-requests` headers described at
//! <https://creator.poe.com/api-reference/rate-limits>.

use std::time::{SystemTime, UNIX_EPOCH};

use serde_json::json;
use wiremock::{Request, ResponseTemplate};

use crate::BAD_API_KEY;

/// Poe's documented requests-per-minute limit, echoed in the headers.
const RATE_LIMIT: u32 = 500;

/// `None` when the request carries an acceptable Bearer token, otherwise the
/// 401 Poe would send.
pub(crate) fn check_auth(request: &Request) -> Option<ResponseTemplate> {
    let token = request
        .headers
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .map(str::trim)
        .unwrap_or("");
    if token.is_empty() || token == BAD_API_KEY {
        Some(error(401))
    } else {
        None
    }
}

/// Poe's documented error response for `status`.
pub(crate) fn error(status: u16) -> ResponseTemplate {
    let (message, kind, code) = match status {
        401 => (
            "Invalid API key provided",
            "invalid_request_error",
            "invalid_api_key",
        ),
        402 => (
            "Insufficient points to complete this request",
            "insufficient_quota",
            "insufficient_points",
        ),
        404 => (
            "The requested model does not exist",
            "not_found_error",
            "model_not_found",
        ),
        429 => (
            "Rate limit exceeded. Please try again later.",
            "rate_limit_error",
            "rate_limit_exceeded",
        ),
        _ => (
            "An unexpected error occurred. Please try again.",
            "api_error",
            "internal_error",
        ),
    };
    let template = error_body(status, message, kind, code);
    if status == 429 {
        template
            .insert_header("retry-after", "1")
            .insert_header("x-ratelimit-limit-requests", RATE_LIMIT.to_string())
            .insert_header("x-ratelimit-remaining-requests", "0")
            .insert_header("x-ratelimit-reset-requests", "1")
    } else {
        template
    }
}

/// An error response with an explicit message, type and code.
pub(crate) fn error_body(status: u16, message: &str, kind: &str, code: &str) -> ResponseTemplate {
    ResponseTemplate::new(status).set_body_json(json!({
        "error": { "message": message, "type": kind, "code": code }
    }))
}

/// A successful JSON response with the rate-limit headers Poe sends on every
/// answer.
pub(crate) fn ok_json(body: serde_json::Value) -> ResponseTemplate {
    with_rate_headers(ResponseTemplate::new(200).set_body_json(body))
}

/// Adds the informational `x-ratelimit-*-requests` headers.
pub(crate) fn with_rate_headers(template: ResponseTemplate) -> ResponseTemplate {
    template
        .insert_header("x-ratelimit-limit-requests", RATE_LIMIT.to_string())
        .insert_header(
            "x-ratelimit-remaining-requests",
            (RATE_LIMIT - 1).to_string(),
        )
        .insert_header("x-ratelimit-reset-requests", "1")
}

/// Seconds since the Unix epoch, for `created` fields.
pub(crate) fn now_secs() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}
