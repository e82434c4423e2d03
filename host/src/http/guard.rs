//! What every HTTP request passes before it reaches MCP or the OpenAI API:
//! the `Host` allow-list and `Origin` check (403, against DNS rebinding and
//! cross-site pages), the bearer token (401), the body read whole under a
//! size cap (413) and a time limit (408), JSON-RPC batches refused, and the
//! cap on MCP sessions (503). The caller it establishes (token, Poe key) is
//! in the request's extensions and in [`CALLER`] while the request runs.

use std::sync::Arc;
use std::time::Duration;

use axum::body::{Body, Bytes};
use axum::extract::{Request, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use http_body_util::{BodyExt, Limited};
use rmcp::transport::streamable_http_server::session::local::LocalSessionManager;
use serde_json::json;

use crate::config::credentials::{self, fingerprint};
use crate::config::tokens::TokenCheck;
use crate::daemon::state::{DaemonState, TokenRef};

tokio::task_local! {
    /// The checked caller of the request being handled.
    pub(super) static CALLER: Caller;
}

/// Who sent a request that passed the guard.
#[derive(Clone)]
pub struct Caller {
    /// The token it presented (none when the listener needs none).
    pub token: Option<TokenRef>,
    /// The Poe API key its calls use: the token's own, else the daemon's.
    pub api_key: Option<String>,
}

/// The guard's settings and the state it checks against.
pub(super) struct Guard {
    pub daemon: Arc<DaemonState>,
    pub tokens: Arc<TokenCheck>,
    pub require_token: bool,
    /// Host names (or `host:port`) accepted in `Host`.
    pub allowed_hosts: Vec<String>,
    /// Origins accepted in `Origin`, exactly as browsers send them.
    pub allowed_origins: Vec<String>,
    pub max_body: usize,
    pub max_sessions: usize,
    pub sessions: Arc<LocalSessionManager>,
    pub body_timeout: Duration,
}

/// Which error shape a refusal takes.
#[derive(Clone, Copy)]
enum Shape {
    /// `{"error": {"message", "type", "code"}}`, as OpenAI's API answers.
    OpenAi,
    /// A JSON-RPC error with a null id.
    JsonRpc,
}

fn refuse(shape: Shape, status: StatusCode, kind: &str, message: impl Into<String>) -> Response {
    let message = message.into();
    let body = match shape {
        Shape::OpenAi => {
            json!({"error": {"message": message, "type": kind, "code": status.as_u16()}})
        }
        Shape::JsonRpc => json!({
            "jsonrpc": "2.0",
            "id": null,
            "error": {"code": -32600, "message": message, "data": {"kind": kind}},
        }),
    };
    let mut response = (status, axum::Json(body)).into_response();
    if status == StatusCode::UNAUTHORIZED {
        response.headers_mut().insert(
            header::WWW_AUTHENTICATE,
            header::HeaderValue::from_static("Bearer realm=\"poe-code\""),
        );
    }
    response
}

/// The answer for a path the listener does not serve.
pub(super) async fn not_found(request: Request) -> Response {
    refuse(
        shape_of(request.uri().path()),
        StatusCode::NOT_FOUND,
        "not_found_error",
        format!(
            "nothing at {}: MCP is at /mcp, the OpenAI-compatible API at /v1/chat/completions and /v1/models",
            request.uri().path()
        ),
    )
}

fn shape_of(path: &str) -> Shape {
    if path.starts_with("/v1/") {
        Shape::OpenAi
    } else {
        Shape::JsonRpc
    }
}

/// The host part of a `Host` header (`[::1]:80` → `::1`).
fn host_name(authority: &str) -> &str {
    if let Some(rest) = authority.strip_prefix('[') {
        return rest.split(']').next().unwrap_or(rest);
    }
    match authority.rsplit_once(':') {
        Some((host, port)) if port.bytes().all(|b| b.is_ascii_digit()) => host,
        _ => authority,
    }
}

impl Guard {
    fn host_allowed(&self, headers: &HeaderMap) -> Result<(), String> {
        let Some(host) = headers.get(header::HOST).and_then(|h| h.to_str().ok()) else {
            return Err("the request has no Host header".into());
        };
        let host = host.trim().to_ascii_lowercase();
        let name = host_name(&host);
        if self.allowed_hosts.iter().any(|allowed| {
            allowed.eq_ignore_ascii_case(name) || allowed.eq_ignore_ascii_case(&host)
        }) {
            Ok(())
        } else {
            Err(format!(
                "Host '{host}' is not allowed (add it to [http] allowed_hosts if this is intended)"
            ))
        }
    }

    fn origin_allowed(&self, headers: &HeaderMap) -> Result<(), String> {
        let Some(origin) = headers.get(header::ORIGIN) else {
            return Ok(());
        };
        let origin = origin.to_str().unwrap_or_default().trim_end_matches('/');
        if self
            .allowed_origins
            .iter()
            .any(|allowed| allowed.trim_end_matches('/').eq_ignore_ascii_case(origin))
        {
            Ok(())
        } else {
            Err(format!(
                "Origin '{origin}' is not allowed (add it to [http] allowed_origins if this is intended)"
            ))
        }
    }

    fn caller(&self, headers: &HeaderMap) -> Result<Caller, String> {
        let presented = headers
            .get(header::AUTHORIZATION)
            .and_then(|h| h.to_str().ok())
            .and_then(|h| {
                h.strip_prefix("Bearer ")
                    .or_else(|| h.strip_prefix("bearer "))
            })
            .map(str::trim);
        let token = match presented {
            Some(presented) => match self.tokens.verify(presented) {
                Some(token) => Some(token),
                None => {
                    tracing::warn!(token = %fingerprint(presented), "refused an unknown or revoked token");
                    return Err(
                        "the bearer token is unknown or revoked (poe-code token list)".into(),
                    );
                }
            },
            None if self.require_token => {
                return Err(
                    "a bearer token is required: create one with `poe-code token create <name>` \
                     and send it as `Authorization: Bearer <token>`"
                        .into(),
                );
            }
            None => None,
        };
        let own_key = token.as_ref().and_then(|t| t.poe_api_key.clone());
        let api_key = own_key.or_else(|| {
            credentials::load(&self.daemon.paths)
                .ok()
                .flatten()
                .map(|(key, _)| key)
        });
        Ok(Caller {
            token: token.map(|t| TokenRef {
                id: t.id,
                name: t.name,
            }),
            api_key,
        })
    }

    /// Reads the body whole, within the cap and the time limit.
    async fn read_body(&self, body: Body, shape: Shape) -> Result<Bytes, Response> {
        let limited = Limited::new(body, self.max_body);
        match tokio::time::timeout(self.body_timeout, limited.collect()).await {
            Err(_) => Err(refuse(
                shape,
                StatusCode::REQUEST_TIMEOUT,
                "timeout_error",
                format!(
                    "the request body did not arrive within {:?}",
                    self.body_timeout
                ),
            )),
            Ok(Err(e)) if e.is::<http_body_util::LengthLimitError>() => Err(self.too_large(shape)),
            Ok(Err(e)) => Err(refuse(
                shape,
                StatusCode::BAD_REQUEST,
                "invalid_request_error",
                format!("cannot read the request body: {e}"),
            )),
            Ok(Ok(collected)) => Ok(collected.to_bytes()),
        }
    }

    fn too_large(&self, shape: Shape) -> Response {
        refuse(
            shape,
            StatusCode::PAYLOAD_TOO_LARGE,
            "request_too_large",
            format!(
                "the request body is larger than {} bytes ([http] max_body_bytes)",
                self.max_body
            ),
        )
    }

    /// Refuses what rmcp would not answer clearly: batches, and a new
    /// session past the cap.
    async fn check_mcp_post(&self, headers: &HeaderMap, body: &[u8]) -> Result<(), Response> {
        let first = body.iter().find(|b| !b.is_ascii_whitespace());
        if first == Some(&b'[') {
            return Err(refuse(
                Shape::JsonRpc,
                StatusCode::BAD_REQUEST,
                "batch_not_supported",
                "JSON-RPC batches are not supported (MCP removed them in 2025-06-18): send one message per request",
            ));
        }
        if headers.contains_key("mcp-session-id") {
            return Ok(());
        }
        // Only `method` is read; the rest (up to the body cap, e.g. a
        // stateless call's files) is skipped, not built into a tree that
        // rmcp would parse again.
        #[derive(serde::Deserialize)]
        struct Method<'a> {
            #[serde(borrow)]
            method: Option<std::borrow::Cow<'a, str>>,
        }
        let is_initialize = serde_json::from_slice::<Method>(body)
            .is_ok_and(|m| m.method.as_deref() == Some("initialize"));
        if is_initialize {
            let open = self.sessions.sessions.read().await.len();
            if open >= self.max_sessions {
                tracing::warn!(
                    open,
                    max = self.max_sessions,
                    "refused a new MCP session: too many open"
                );
                let mut response = refuse(
                    Shape::JsonRpc,
                    StatusCode::SERVICE_UNAVAILABLE,
                    "too_many_sessions",
                    format!(
                        "this daemon has {open} MCP sessions open, its limit ([http] max_sessions); \
                         close unused sessions or raise the limit"
                    ),
                );
                response
                    .headers_mut()
                    .insert(header::RETRY_AFTER, header::HeaderValue::from_static("30"));
                return Err(response);
            }
        }
        Ok(())
    }
}

/// The middleware: checks a request and runs the rest within its caller.
pub(super) async fn check(
    State(guard): State<Arc<Guard>>,
    request: Request,
    next: Next,
) -> Response {
    let shape = shape_of(request.uri().path());
    let headers = request.headers();
    if let Err(why) = guard
        .host_allowed(headers)
        .and_then(|()| guard.origin_allowed(headers))
    {
        tracing::warn!(%why, "refused an HTTP request");
        return refuse(shape, StatusCode::FORBIDDEN, "permission_error", why);
    }
    let caller = match guard.caller(headers) {
        Ok(caller) => caller,
        Err(why) => return refuse(shape, StatusCode::UNAUTHORIZED, "authentication_error", why),
    };
    if let Some(token) = &caller.token {
        guard.daemon.count_token(&token.name, false);
    }
    let declared = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|len| len > guard.max_body as u64) {
        return guard.too_large(shape);
    }
    let (mut parts, body) = request.into_parts();
    let body = if parts.method == axum::http::Method::POST {
        let bytes = match guard.read_body(body, shape).await {
            Ok(bytes) => bytes,
            Err(response) => return response,
        };
        if parts.uri.path() == "/mcp"
            && let Err(response) = guard.check_mcp_post(&parts.headers, &bytes).await
        {
            return response;
        }
        Body::from(bytes)
    } else {
        body
    };
    parts.extensions.insert(caller.clone());
    let request = Request::from_parts(parts, body);
    CALLER.scope(caller, next.run(request)).await
}

#[cfg(test)]
mod tests {
    use super::host_name;

    #[test]
    fn host_names_drop_the_port_and_brackets() {
        assert_eq!(host_name("127.0.0.1:8765"), "127.0.0.1");
        assert_eq!(host_name("localhost"), "localhost");
        assert_eq!(host_name("[::1]:80"), "::1");
        assert_eq!(host_name("evil.example"), "evil.example");
    }
}
