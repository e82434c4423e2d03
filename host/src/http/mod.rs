//! The daemon's HTTP listener (off unless `[http] listen` or `--http` is
//! given): MCP Streamable HTTP at `/mcp` (rmcp's `StreamableHttpService`,
//! both the 2025-11-25 session wire and the 2026-07-28 stateless one) and an
//! OpenAI-compatible API at `/v1` (`openai.rs`), both on the daemon's jobs,
//! plugins and shared limits. Every request first passes `guard.rs`: Host
//! and Origin, the bearer token, the body cap and the session cap.

mod guard;
pub mod openai;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use axum::Router;
use axum::routing::{get, post};
use rmcp::transport::streamable_http_server::session::local::LocalSessionManager;
use rmcp::transport::streamable_http_server::{StreamableHttpServerConfig, StreamableHttpService};
use tokio::net::TcpListener;

use crate::config::Paths;
use crate::config::file::HttpSection;
use crate::config::tokens::TokenCheck;
use crate::daemon::state::DaemonState;
use crate::ipc::status::{HttpStatus, TokenUsage};
use crate::mcp::PoeServer;

pub use guard::Caller;

/// Default cap on MCP sessions open at once.
pub const DEFAULT_MAX_SESSIONS: usize = 1024;
/// Default cap on a request body.
pub const DEFAULT_MAX_BODY: usize = 4 * 1024 * 1024;
/// Default time a client has to send its request head, and again its body.
pub const DEFAULT_READ_TIMEOUT: Duration = Duration::from_secs(30);
/// An MCP session with no request for this long is closed.
const SESSION_IDLE: Duration = Duration::from_secs(30 * 60);

/// What the listener is asked to do, from `[http]` and `--http`.
#[derive(Debug, Clone)]
pub struct Options {
    pub listen: SocketAddr,
    pub require_token: bool,
    pub allowed_hosts: Vec<String>,
    pub allowed_origins: Vec<String>,
    pub max_sessions: usize,
    pub max_body_bytes: usize,
    /// Time to send a request head, and again its body.
    pub read_timeout: Duration,
}

impl Options {
    /// The listener `[http]` (or `--http ADDR`, which wins) asks for; `None`
    /// when neither does. Refuses a non-loopback address unless remote use
    /// is allowed, and no-token mode anywhere but loopback.
    pub fn resolve(
        section: &HttpSection,
        cli_listen: Option<&str>,
        cli_allow_remote: bool,
    ) -> anyhow::Result<Option<Self>> {
        let Some(listen) = cli_listen.or(section.listen.as_deref()) else {
            return Ok(None);
        };
        let listen: SocketAddr = listen.parse().with_context(|| {
            format!("http listen address '{listen}' is not host:port (e.g. 127.0.0.1:8765)")
        })?;
        let remote_ok = cli_allow_remote || section.allow_remote;
        if !listen.ip().is_loopback() && !remote_ok {
            anyhow::bail!(
                "refusing to listen on {listen}, which is not a loopback address: set \
                 [http] allow_remote = true (or pass --allow-remote), and put TLS in front of it"
            );
        }
        let require_token = section.require_token.unwrap_or(true);
        if !require_token && !listen.ip().is_loopback() {
            anyhow::bail!("[http] require_token = false is only allowed on a loopback address");
        }
        Ok(Some(Self {
            listen,
            require_token,
            allowed_hosts: section.allowed_hosts.clone(),
            allowed_origins: section.allowed_origins.clone(),
            max_sessions: section.max_sessions.unwrap_or(DEFAULT_MAX_SESSIONS).max(1),
            max_body_bytes: section.max_body_bytes.unwrap_or(DEFAULT_MAX_BODY).max(1024),
            read_timeout: section
                .read_timeout_secs
                .filter(|s| s.is_finite() && *s > 0.0)
                .map_or(DEFAULT_READ_TIMEOUT, Duration::from_secs_f64),
        }))
    }
}

/// A bound listener, as `status` reports it.
pub struct Listening {
    pub addr: SocketAddr,
    pub options: Options,
    sessions: Arc<LocalSessionManager>,
}

impl Listening {
    pub(crate) fn status(&self, tokens: Vec<TokenUsage>) -> HttpStatus {
        HttpStatus {
            listen: self.addr.to_string(),
            mcp_url: format!("http://{}/mcp", self.addr),
            require_token: self.options.require_token,
            sessions: self
                .sessions
                .sessions
                .try_read()
                .map(|s| s.len())
                .unwrap_or_default(),
            max_sessions: self.options.max_sessions,
            tokens,
        }
    }
}

/// Binds the listener; serving starts with [`serve`].
pub async fn bind(options: &Options) -> anyhow::Result<TcpListener> {
    let listener = TcpListener::bind(options.listen)
        .await
        .with_context(|| format!("cannot listen on http://{}", options.listen))?;
    if !options.listen.ip().is_loopback() {
        tracing::warn!(
            listen = %options.listen,
            "the HTTP listener is reachable from other machines: tokens travel in clear text unless TLS is in front of it"
        );
    }
    Ok(listener)
}

/// Serves HTTP on `listener` until the daemon shuts down.
pub async fn serve(
    listener: TcpListener,
    options: Options,
    paths: &Paths,
    daemon: Arc<DaemonState>,
) -> anyhow::Result<()> {
    let addr = listener.local_addr()?;
    let sessions = Arc::new({
        let mut manager = LocalSessionManager::default();
        manager.session_config.keep_alive = Some(SESSION_IDLE);
        manager
    });
    let mut loopback = vec![
        "localhost".to_string(),
        "127.0.0.1".to_string(),
        "::1".to_string(),
    ];
    loopback.extend(options.allowed_hosts.iter().cloned());
    // A page the listener itself could serve (same scheme, host and port)
    // is same-origin; every other Origin must be listed.
    let mut origins: Vec<String> = loopback
        .iter()
        .map(|host| {
            if host.parse::<std::net::Ipv6Addr>().is_ok() {
                format!("http://[{host}]:{}", addr.port())
            } else if host.contains(':') {
                format!("http://{host}") // already host:port
            } else {
                format!("http://{host}:{}", addr.port())
            }
        })
        .collect();
    origins.extend(options.allowed_origins.iter().cloned());
    let mut config = StreamableHttpServerConfig::default()
        .with_allowed_hosts(loopback.clone())
        .with_allowed_origins(origins.clone())
        .enforce_origin_validation()
        .with_max_request_body_bytes(options.max_body_bytes)
        .with_cancellation_token(daemon.shutdown.child_token());
    config.sse_keep_alive = Some(Duration::from_secs(15));
    let factory = {
        let daemon = daemon.clone();
        move || {
            // The guard runs every request inside the caller's scope, and
            // rmcp builds a session's server while handling its request.
            let caller = guard::CALLER
                .try_with(Clone::clone)
                .map_err(|_| std::io::Error::other("request without a checked caller"))?;
            Ok(PoeServer::for_http(daemon.clone(), &caller))
        }
    };
    let mcp = StreamableHttpService::new(factory, sessions.clone(), config);
    let state = guard::Guard {
        daemon: daemon.clone(),
        tokens: Arc::new(TokenCheck::new(paths)),
        require_token: options.require_token,
        allowed_hosts: loopback,
        allowed_origins: origins,
        max_body: options.max_body_bytes,
        max_sessions: options.max_sessions,
        sessions: sessions.clone(),
        body_timeout: options.read_timeout,
    };
    let app = Router::new()
        .route_service("/mcp", mcp)
        .route("/v1/chat/completions", post(openai::chat_completions))
        .route("/v1/models", get(openai::models))
        .fallback(guard::not_found)
        .layer(axum::middleware::from_fn_with_state(
            Arc::new(state),
            guard::check,
        ))
        .with_state(daemon.clone());
    let _ = daemon.http.set(Listening {
        addr,
        options: options.clone(),
        sessions,
    });
    tracing::info!(url = %format!("http://{addr}/mcp"), require_token = options.require_token, "http listening");

    let service = hyper_util::service::TowerToHyperService::new(app);
    let mut builder = hyper::server::conn::http1::Builder::new();
    builder
        .timer(hyper_util::rt::TokioTimer::new())
        .header_read_timeout(options.read_timeout);
    let shutdown = daemon.shutdown.clone();
    loop {
        let (stream, _) = tokio::select! {
            _ = shutdown.cancelled() => break,
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(e) => {
                    tracing::warn!(error = %e, "http accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
        };
        let _ = stream.set_nodelay(true);
        let connection =
            builder.serve_connection(hyper_util::rt::TokioIo::new(stream), service.clone());
        let shutdown = shutdown.clone();
        tokio::spawn(async move {
            tokio::select! {
                _ = connection => {}
                _ = shutdown.cancelled() => {}
            }
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn section(text: &str) -> HttpSection {
        toml::from_str(text).unwrap()
    }

    #[test]
    fn the_listener_is_off_loopback_only_with_consent() {
        assert!(
            Options::resolve(&section(""), None, false)
                .unwrap()
                .is_none()
        );
        let on = Options::resolve(&section("listen = \"127.0.0.1:8765\""), None, false)
            .unwrap()
            .unwrap();
        assert!(on.require_token);
        assert_eq!(on.max_sessions, DEFAULT_MAX_SESSIONS);
        // --http wins over the file.
        let cli = Options::resolve(&section("listen = \"127.0.0.1:1\""), Some("[::1]:2"), false)
            .unwrap()
            .unwrap();
        assert_eq!(cli.listen.to_string(), "[::1]:2");

        let err = Options::resolve(&section("listen = \"0.0.0.0:8765\""), None, false)
            .unwrap_err()
            .to_string();
        assert!(err.contains("allow_remote"), "{err}");
        assert!(Options::resolve(&section("listen = \"0.0.0.0:8765\""), None, true).is_ok());
        assert!(
            Options::resolve(
                &section("listen = \"0.0.0.0:8765\"\nallow_remote = true\nrequire_token = false"),
                None,
                false
            )
            .is_err(),
            "no tokens only on loopback"
        );
        let err = Options::resolve(&section("listen = \"localhost\""), None, false)
            .unwrap_err()
            .to_string();
        assert!(err.contains("host:port"), "{err}");
    }
}
