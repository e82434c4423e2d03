//! Control connections: one request (`status`, `stop`, `reload`,
//! `sync_points`), one reply.

use std::sync::Arc;

use tokio::io::{AsyncRead, AsyncWrite};

use super::state::DaemonState;
use crate::ipc::lines::{Frame, FrameReader, write_json};
use crate::ipc::{ControlReply, ControlRequest, ReloadOutcome};

/// Answers one control request.
pub async fn serve<R, W>(mut reader: FrameReader<R>, mut writer: W, daemon: Arc<DaemonState>)
where
    R: AsyncRead + Unpin,
    W: AsyncWrite + Unpin,
{
    let reply = match reader.next().await {
        Ok(Frame::Line(line)) => match serde_json::from_slice::<ControlRequest>(&line) {
            Ok(ControlRequest::Status) => {
                let daemon = daemon.clone();
                // Status reads the store; keep that off the reactor.
                match tokio::task::spawn_blocking(move || daemon.status()).await {
                    Ok(status) => ControlReply {
                        ok: true,
                        status: Some(status),
                        ..ControlReply::default()
                    },
                    Err(e) => ControlReply {
                        error: Some(format!("status failed: {e}")),
                        ..ControlReply::default()
                    },
                }
            }
            Ok(ControlRequest::Stop) => {
                tracing::info!("stop requested");
                daemon.shutdown.cancel();
                ControlReply {
                    ok: true,
                    ..ControlReply::default()
                }
            }
            Ok(ControlRequest::Reload { plugin }) => {
                tracing::info!(plugin = ?plugin, "reload requested");
                let registry = daemon.registry.clone();
                let outcomes =
                    tokio::task::spawn_blocking(move || registry.reload(plugin.as_deref()))
                        .await
                        .unwrap_or_default();
                let reloaded: Vec<ReloadOutcome> = outcomes
                    .into_iter()
                    .map(|(file, outcome)| match outcome {
                        Ok(id) => ReloadOutcome {
                            file,
                            plugin: Some(id),
                            error: None,
                        },
                        Err(e) => ReloadOutcome {
                            file,
                            plugin: None,
                            error: Some(e),
                        },
                    })
                    .collect();
                ControlReply {
                    ok: reloaded.iter().all(|r| r.error.is_none()),
                    reloaded,
                    ..ControlReply::default()
                }
            }
            Ok(ControlRequest::SyncPoints { since_ms }) => match super::budget::sync_now(
                &daemon, since_ms,
            )
            .await
            {
                Some(synced) => ControlReply {
                    ok: true,
                    points: Some(synced),
                    ..ControlReply::default()
                },
                None => ControlReply {
                    error: Some(
                        "this daemon cannot read Poe's points (no store, no poe-openai plugin or no key)"
                            .into(),
                    ),
                    ..ControlReply::default()
                },
            },
            Err(e) => ControlReply {
                error: Some(format!("unknown control request: {e}")),
                ..ControlReply::default()
            },
        },
        _ => return,
    };
    let _ = write_json(&mut writer, &reply).await;
}
