//! `poe-coded`: run, start, stop and inspect the shared daemon.

use std::process::ExitCode;
use std::time::{Duration, Instant};

use clap::{Parser, Subcommand};

use crate::config::{self, PLUGIN_DIR_ENV, Paths};
use crate::daemon::{self as server, StartError};
use crate::ipc::lines::{Frame, write_json};
use crate::ipc::status::{PluginDirStatus, Status};
use crate::ipc::{ConnectionKind, ControlReply, ControlRequest, Hello};
use crate::plugins::registry::INSTALL_BUNDLED;
use crate::shim::connect::{ConnectError, connect};

/// Exit code of `status` when no daemon runs (as `systemctl status`).
pub const EXIT_NOT_RUNNING: u8 = 3;

/// The poe-code daemon: one shared MCP server for all agent sessions of a user.
#[derive(Debug, Parser)]
#[command(name = "poe-coded", version, about)]
pub struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run the daemon in the foreground (logs to stderr and the log file).
    Run {
        /// Started by a shim: log to the file only, idle out by default.
        #[arg(long)]
        background: bool,
        /// Exit after this many seconds with no session and no running call
        /// (default: never in the foreground, 600 in the background).
        #[arg(long, value_name = "SECS")]
        idle_timeout: Option<f64>,
        /// Also serve MCP (at /mcp) and the OpenAI-compatible API (at /v1)
        /// over HTTP on this address, e.g. 127.0.0.1:8765 (overrides
        /// [http] listen in config.toml).
        #[arg(long, value_name = "HOST:PORT")]
        http: Option<String>,
        /// Allow --http on an address other machines can reach (put TLS in
        /// front of it).
        #[arg(long)]
        allow_remote: bool,
    },
    /// Start the daemon in the background if it is not running.
    Start,
    /// Stop the running daemon.
    Stop,
    /// Reload one plugin (by id), or all plugins and any new plugin files.
    Reload {
        /// Plugin id, e.g. poe-openai.
        plugin: Option<String>,
    },
    /// Show the running daemon's state; exits 3 when none runs.
    Status {
        /// Print the machine-readable report.
        #[arg(long)]
        json: bool,
    },
}

/// Runs `poe-coded` with the process arguments.
pub fn main() -> ExitCode {
    let cli = Cli::parse();
    let paths = match Paths::from_env() {
        Ok(paths) => paths,
        Err(e) => {
            eprintln!("poe-coded: {e}");
            return ExitCode::FAILURE;
        }
    };
    match cli.command {
        Command::Run {
            background,
            idle_timeout,
            http,
            allow_remote,
        } => run(
            paths,
            background,
            idle_timeout,
            server::HttpFlags {
                listen: http,
                allow_remote,
            },
        ),
        Command::Start => with_runtime(start(paths)),
        Command::Stop => with_runtime(stop(paths)),
        Command::Reload { plugin } => with_runtime(reload(paths, plugin)),
        Command::Status { json } => with_runtime(status(paths, json)),
    }
}

fn with_runtime(fut: impl Future<Output = ExitCode>) -> ExitCode {
    match super::runtime("poe-coded") {
        Ok(runtime) => runtime.block_on(fut),
        Err(code) => code,
    }
}

fn run(
    paths: Paths,
    background: bool,
    idle_timeout: Option<f64>,
    http: server::HttpFlags,
) -> ExitCode {
    let _guard = match super::logging::init_daemon(&paths, !background) {
        Ok(guard) => guard,
        Err(e) => {
            eprintln!("poe-coded: {e:#}");
            return ExitCode::FAILURE;
        }
    };
    crate::daemon::raise_open_file_limit();
    let idle_timeout = idle_timeout
        .filter(|s| s.is_finite() && *s > 0.0)
        .map(Duration::from_secs_f64)
        .or_else(config::idle_timeout_from_env)
        .or(background.then_some(config::DEFAULT_IDLE_TIMEOUT));
    // One thread runs every session: the daemon's own work per call is a few
    // tens of microseconds, and keeping it on one thread saves the hand-offs
    // between workers that dominated call latency (see the benchmark). Plugin
    // calls, the store and plugin loading run on threads of their own.
    let runtime = match super::runtime("poe-coded") {
        Ok(runtime) => runtime,
        Err(code) => return code,
    };
    let outcome = runtime.block_on(server::run(paths, server::Options { idle_timeout, http }));
    // A plugin call that ignores cancellation must not keep the process alive.
    runtime.shutdown_timeout(Duration::from_secs(1));
    match outcome {
        Ok(()) => ExitCode::SUCCESS,
        // Lost a start race: the other daemon serves; that is success.
        Err(StartError::AlreadyRunning(_)) if background => ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!(error = %e, "poe-coded failed");
            eprintln!("poe-coded: {e:#}");
            ExitCode::FAILURE
        }
    }
}

/// Sends one control request to a running daemon (none is started).
pub(crate) async fn control(
    paths: &Paths,
    request: ControlRequest,
) -> Result<ControlReply, ConnectError> {
    let hello = Hello::new(ConnectionKind::Control, None);
    let mut conn = connect(paths, &hello).await?;
    write_json(&mut conn.writer, &request)
        .await
        .map_err(|e| ConnectError::Other(e.into()))?;
    conn.reader.set_max(64 * 1024 * 1024);
    match conn.reader.next().await {
        Ok(Frame::Line(line)) => serde_json::from_slice(&line)
            .map_err(|e| ConnectError::Other(anyhow::anyhow!("unreadable reply: {e}"))),
        _ => Err(ConnectError::Other(anyhow::anyhow!(
            "the daemon closed the connection without replying"
        ))),
    }
}

async fn start(paths: Paths) -> ExitCode {
    let hello = Hello::new(ConnectionKind::Control, None);
    match crate::shim::connect::connect_or_start(&paths, &hello).await {
        Ok(conn) => {
            println!(
                "poe-coded {} running (pid {}) on {}",
                conn.ack.daemon_version,
                conn.ack.daemon_pid,
                paths.socket().display()
            );
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("poe-coded: {e:#}");
            ExitCode::FAILURE
        }
    }
}

async fn stop(paths: Paths) -> ExitCode {
    match control(&paths, ControlRequest::Stop).await {
        Ok(_) => {
            // Wait until the socket is gone so a following `start` is clean.
            let deadline = Instant::now() + Duration::from_secs(5);
            while paths.socket().exists() && Instant::now() < deadline {
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            println!("poe-coded stopped");
            ExitCode::SUCCESS
        }
        Err(ConnectError::NotRunning(socket)) => {
            println!("poe-coded is not running ({socket})");
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("poe-coded: {e}");
            ExitCode::FAILURE
        }
    }
}

async fn reload(paths: Paths, plugin: Option<String>) -> ExitCode {
    match control(
        &paths,
        ControlRequest::Reload {
            plugin: plugin.clone(),
        },
    )
    .await
    {
        Ok(reply) => {
            if reply.reloaded.is_empty() {
                eprintln!(
                    "poe-coded: no plugin {} to reload",
                    plugin
                        .as_deref()
                        .map(|p| format!("'{p}'"))
                        .unwrap_or_default()
                );
                return ExitCode::FAILURE;
            }
            for outcome in &reply.reloaded {
                match (&outcome.plugin, &outcome.error) {
                    (_, Some(error)) => println!(
                        "REFUSED {}: {error} (previous version keeps serving)",
                        outcome.file
                    ),
                    (Some(id), None) => println!("reloaded {id} from {}", outcome.file),
                    (None, None) => println!("{}: nothing to do", outcome.file),
                }
            }
            if reply.ok {
                ExitCode::SUCCESS
            } else {
                ExitCode::FAILURE
            }
        }
        Err(ConnectError::NotRunning(socket)) => {
            eprintln!("poe-coded is not running (no daemon listens on {socket})");
            ExitCode::from(EXIT_NOT_RUNNING)
        }
        Err(e) => {
            eprintln!("poe-coded: {e}");
            ExitCode::FAILURE
        }
    }
}

async fn status(paths: Paths, json: bool) -> ExitCode {
    match control(&paths, ControlRequest::Status).await {
        Ok(ControlReply {
            status: Some(status),
            ..
        }) => {
            if json {
                match serde_json::to_string_pretty(&status) {
                    Ok(text) => println!("{text}"),
                    Err(e) => {
                        eprintln!("poe-coded: {e}");
                        return ExitCode::FAILURE;
                    }
                }
            } else {
                print!("{}", render(&status));
            }
            ExitCode::SUCCESS
        }
        Ok(reply) => {
            eprintln!(
                "poe-coded: status failed: {}",
                reply.error.unwrap_or_else(|| "no status in reply".into())
            );
            ExitCode::FAILURE
        }
        Err(ConnectError::NotRunning(socket)) => {
            eprintln!("poe-coded is not running (no daemon listens on {socket})");
            ExitCode::from(EXIT_NOT_RUNNING)
        }
        Err(e) => {
            eprintln!("poe-coded: {e}");
            ExitCode::FAILURE
        }
    }
}

/// One plugin dir's state, for the status report.
fn describe_dir(d: &PluginDirStatus) -> String {
    if let Some(reason) = &d.refused {
        return format!("REFUSED: {reason}");
    }
    let watch = match &d.watching {
        Some(path) if *path == d.path => "watched".to_string(),
        Some(parent) => format!("watching {parent} for it"),
        None => "not watched".to_string(),
    };
    match (d.exists, d.files) {
        (false, _) => format!("missing; {watch}"),
        (true, 1) => format!("1 plugin file; {watch}"),
        (true, n) => format!("{n} plugin files; {watch}"),
    }
}

/// The human-readable status report.
pub fn render(s: &Status) -> String {
    use std::fmt::Write;
    let mut out = String::new();
    let idle = s
        .idle_timeout_secs
        .map(|t| format!("{t} s"))
        .unwrap_or_else(|| "never".into());
    let _ = writeln!(
        out,
        "poe-coded {} — running, pid {}, up {} s",
        s.version, s.pid, s.uptime_secs
    );
    let _ = writeln!(out, "  socket:     {}", s.socket);
    let _ = writeln!(out, "  state dir:  {}", s.state_dir);
    let _ = writeln!(out, "  idle exit:  {idle}");
    let _ = writeln!(
        out,
        "  calls:      {} running, {} served",
        s.calls_in_flight, s.calls_total
    );
    let _ = writeln!(
        out,
        "  jobs:       {} running, {} completed, {} failed, {} cancelled (kept 3 days)",
        s.jobs.running, s.jobs.completed, s.jobs.failed, s.jobs.cancelled
    );
    if let Some(error) = &s.config_error {
        let _ = writeln!(out, "  config:     IGNORED — {error}");
    }
    match (&s.store, &s.store_error) {
        (_, Some(error)) => {
            let _ = writeln!(
                out,
                "  store:      UNUSABLE — {error}; jobs are kept in memory only"
            );
        }
        (Some(path), None) => {
            let _ = writeln!(out, "  store:      {path}");
        }
        (None, None) => {}
    }
    if let Some(t) = &s.usage_today {
        let _ = writeln!(
            out,
            "  today:      {} requests ({} failed, {} cancelled), {} tokens in, {} out, {} Poe points matched so far (UTC day; `poe-code usage` for more)",
            t.requests, t.errors, t.cancelled, t.prompt_tokens, t.completion_tokens, t.points
        );
    }
    if let Some(team) = &s.limits_backend {
        let state = match &team.error {
            None => "team-wide".to_string(),
            Some(error) => format!("UNREACHABLE ({error}); limits are this daemon's own for now"),
        };
        let _ = writeln!(out, "  limits:     {} — {state}", team.url);
    }
    for l in &s.limiters {
        let paused = l
            .paused_for_ms
            .map(|ms| format!(", paused {:.1} s more", ms as f64 / 1000.0))
            .unwrap_or_default();
        let remaining = l
            .upstream_remaining
            .map(|r| format!(", upstream says {r} left"))
            .unwrap_or_default();
        let _ = writeln!(
            out,
            "  limit:      {} key {}: {}/min, {} queued{remaining}{paused}",
            l.plugin, l.key, l.requests_per_minute, l.queued
        );
    }
    let _ = writeln!(
        out,
        "plugins ({}, {} libraries mapped):",
        s.plugins.len(),
        s.libraries_mapped
    );
    for (i, d) in s.plugin_dirs.iter().enumerate() {
        let label = if i == 0 {
            "  searched:   "
        } else {
            "              "
        };
        let _ = writeln!(out, "{label}{} ({})", d.path, describe_dir(d));
    }
    for p in &s.plugins {
        let _ = writeln!(
            out,
            "  {:<12} {:<8} api {:<8} loaded {} (reloads {})  {}",
            p.id, p.version, p.plugin_api_version, p.loaded_at, p.reload_count, p.path
        );
        let latency = match (p.latency_p50_ms, p.latency_p95_ms) {
            (Some(p50), Some(p95)) => format!(", latency p50 {p50:.1} ms p95 {p95:.1} ms"),
            _ => String::new(),
        };
        let errors = if p.errors.is_empty() {
            String::new()
        } else {
            let parts: Vec<String> = p.errors.iter().map(|(k, n)| format!("{k} {n}")).collect();
            format!(", errors: {}", parts.join(", "))
        };
        let _ = writeln!(
            out,
            "               models [{}]; {} upstream requests{errors}{latency}",
            p.models.join(", "),
            p.requests
        );
        if !p.settings.is_empty() {
            let settings: Vec<String> = p
                .settings
                .iter()
                .map(|setting| match &setting.value {
                    Some(value) => format!("{}={value} ({})", setting.key, setting.source),
                    None => format!("{} unset", setting.key),
                })
                .collect();
            let _ = writeln!(out, "               settings: {}", settings.join(", "));
        }
        if !p.ignored_settings.is_empty() {
            let _ = writeln!(
                out,
                "               config.toml [plugins.{}] has keys it does not read: {}",
                p.id,
                p.ignored_settings.join(", ")
            );
        }
        if let Some(error) = &p.last_error {
            let _ = writeln!(out, "               last reload REFUSED: {error}");
        }
    }
    for e in &s.plugin_errors {
        let _ = writeln!(out, "  REFUSED {}: {}", e.path, e.reason);
    }
    if s.plugins_hint.is_some() {
        let _ = writeln!(
            out,
            "  none loaded: install the bundled plugins from the poe-code source dir with\n    \
             {INSTALL_BUNDLED}\n  (or set {PLUGIN_DIR_ENV} to a dir that holds them)"
        );
    }
    let _ = writeln!(out, "sessions ({}):", s.sessions.len());
    for session in &s.sessions {
        let client = match (&session.client_name, &session.client_version) {
            (Some(name), Some(version)) => format!("{name} {version}"),
            (Some(name), None) => name.clone(),
            _ => "(not initialized)".into(),
        };
        let via = match (session.transport.as_str(), &session.token) {
            ("http", Some(token)) => format!("http, token {token}"),
            ("http", None) => "http".to_string(),
            _ => format!("pid {}", session.shim_pid),
        };
        let _ = writeln!(
            out,
            "  #{:<4} {:<28} {:<20} {} calls, connected {} s",
            session.id, client, via, session.calls, session.connected_secs
        );
    }
    if let Some(error) = &s.http_error {
        let _ = writeln!(out, "http: NOT listening — {error}");
    }
    if let Some(http) = &s.http {
        let _ = writeln!(
            out,
            "http: {} ({} of at most {} sessions; tokens {})",
            http.mcp_url,
            http.sessions,
            http.max_sessions,
            if http.require_token {
                "required"
            } else {
                "NOT required"
            }
        );
        for token in &http.tokens {
            let _ = writeln!(
                out,
                "  token {:<20} {} requests, {} calls, last used {} s ago",
                token.name,
                token.requests,
                token.calls,
                token.last_used_secs_ago.unwrap_or(0)
            );
        }
    }
    out
}
