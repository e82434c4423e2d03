//! Video generation through Poe's `/v1/videos` (OpenAI Videos API format):
//! create a job, poll it until it is done, and hand back a link.
//!
//! Poe's reference (<https://creator.poe.com/api-reference/createVideo>,
//! getVideo, getVideoContent):
//! - `POST /v1/videos` `{model, prompt, seconds?: integer, size?: "WxH",
//!   input_image?: base64}` answers a video object with status `queued`.
//!   Supported models: Sora-2, Sora-2-Pro, Veo-2, Veo-3, Veo-3-Fast, Veo-3.1,
//!   Veo-3.1-Fast. Other video bots are called through chat completions,
//!   which answer with a link like image bots do.
//! - `GET /v1/videos/{id}`: poll while `status` is `queued` or `in_progress`
//!   (`progress` 0..=100) until `completed` or `failed` (`error`).
//! - `GET /v1/videos/{id}/content`: the MP4, with the same Bearer key.
//!
//! The video object carries no public URL, so the link handed back is the
//! content endpoint itself, `{base}/videos/{id}/content`; fetching it needs
//! the Poe API key, and Poe keeps the file until the object's `expires_at`.

use poe_plugin_api::{ErrorKind, Event, Media, OutputKind, PluginError, Response, Role, Usage};
use serde::Deserialize;
use serde_json::{Map, Value, json};

use crate::{Call, errors, ratelimit};

/// Models Poe serves through `/v1/videos`, by lower-case prefix.
const VIDEOS_API_PREFIXES: &[&str] = &["sora-2", "veo-2", "veo-3"];

/// Whether `model` is one Poe documents for `/v1/videos`.
pub(crate) fn uses_videos_api(model: &str) -> bool {
    let lower = model.to_ascii_lowercase();
    VIDEOS_API_PREFIXES.iter().any(|p| lower.starts_with(p))
}

/// The fields of a video object this plugin reads.
#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct VideoObject {
    id: Option<String>,
    status: Option<String>,
    progress: Option<f64>,
    model: Option<String>,
    error: Option<Value>,
    usage: Option<Value>,
    /// Not in Poe's schema today; used if a future version links the file.
    url: Option<String>,
}

/// The body for `POST /v1/videos`.
fn create_body(call: &Call<'_>) -> Value {
    let request = call.request;
    let last_user = request.messages.iter().rev().find(|m| m.role == Role::User);
    let prompt = last_user.map(|m| m.content.clone()).unwrap_or_default();
    let mut body = Map::new();
    body.insert("model".into(), json!(request.model));
    body.insert("prompt".into(), json!(prompt));
    for (key, value) in &request.params {
        let value = match key.as_str() {
            // Poe documents `seconds` as an integer.
            "seconds" => value
                .trim()
                .parse::<u64>()
                .map(Value::from)
                .unwrap_or_else(|_| json!(value)),
            _ => json!(value),
        };
        // Other parameters ride along top-level; unknown fields are ignored.
        body.insert(key.clone(), value);
    }
    // An attached image (inline) becomes the image-to-video reference.
    if !body.contains_key("input_image")
        && let Some(data) = last_user
            .into_iter()
            .flat_map(|m| &m.attachments)
            .find_map(|a| base64_image(&a.url))
    {
        body.insert("input_image".into(), json!(data));
    }
    Value::Object(body)
}

/// The base64 payload of a `data:image/...;base64,` URL.
fn base64_image(url: &str) -> Option<&str> {
    let rest = url.strip_prefix("data:image/")?;
    let (meta, data) = rest.split_once(',')?;
    meta.ends_with(";base64").then_some(data)
}

/// Video ids go into URL paths; anything but a plain token is refused rather
/// than escaped, since a real id never needs escaping.
fn checked_id(id: Option<String>, status: u16) -> Result<String, PluginError> {
    match id {
        Some(id)
            if !id.is_empty()
                && id
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.'))
                && id != "."
                && id != ".." =>
        {
            Ok(id)
        }
        other => Err(errors::malformed(
            status,
            "JSON",
            format!("unusable video id {other:?}"),
        )),
    }
}

/// Sends a request and parses the video object it answers.
async fn fetch(
    call: &Call<'_>,
    sent: reqwest::Result<reqwest::Response>,
    what: &str,
) -> Result<VideoObject, PluginError> {
    let response = sent.map_err(errors::transport)?;
    ratelimit::report(call.sink, response.headers());
    let status = response.status().as_u16();
    if !response.status().is_success() {
        let mut err = errors::from_response(response).await;
        if what == "poll" && status == 404 {
            // The model was fine when the job was created; a 404 now means
            // the job itself is gone.
            err.kind = ErrorKind::Upstream;
            err.message = format!("Poe lost the video job: {}", err.message);
        }
        return Err(err);
    }
    let body = response.text().await.map_err(errors::transport)?;
    serde_json::from_str(&body).map_err(|e| {
        errors::malformed(
            status,
            "JSON",
            format!(
                "{e} in video object {:?}",
                errors::truncate(body.trim(), 80)
            ),
        )
    })
}

/// Consecutive failed polls tolerated before giving up on a job.
const POLL_FAILURES_TOLERATED: u32 = 5;

/// Reads job `id` once. A poll is free and changes nothing, so a failure
/// that may pass (429, 5xx, a broken connection) is polled again after a
/// backoff, a few times in a row; each poll waits its turn at the host's
/// limiter, which a 429 has paused for every session on the key.
async fn poll(call: &Call<'_>, id: &str) -> Result<VideoObject, PluginError> {
    let mut failures = 0;
    loop {
        poe_plugin_api::cancel::permit(call.sink).await?;
        let request = call
            .http
            .get(format!("{}/videos/{id}", call.base_url))
            .bearer_auth(call.api_key);
        let err = match fetch(call, request.send().await, "poll").await {
            Ok(video) => return Ok(video),
            Err(err) => err,
        };
        let transient = match err.kind {
            ErrorKind::RateLimited | ErrorKind::Timeout => true,
            ErrorKind::Upstream => err.status.is_none_or(|s| s >= 500),
            _ => false,
        };
        failures += 1;
        if !transient || failures > POLL_FAILURES_TOLERATED {
            return Err(err);
        }
        call.sink.emit(&Event::Log {
            level: poe_plugin_api::LogLevel::Warn,
            message: format!("polling video job {id} failed ({err}); polling again"),
        });
        let backoff = call.video_poll * 2u32.pow(failures.min(5));
        tokio::time::sleep(backoff.min(std::time::Duration::from_secs(30))).await;
    }
}

fn progress_message(video: &VideoObject) -> String {
    let status = video.status.as_deref().unwrap_or("unknown");
    match video.progress {
        Some(p) if p.is_finite() => format!("video {status} {:.0}%", p.clamp(0.0, 100.0)),
        _ => format!("video {status}"),
    }
}

/// Lenient read of the `usage` object (its shape is not documented).
fn usage_of(video: &VideoObject) -> Option<Usage> {
    let usage = video.usage.as_ref()?.as_object()?;
    let n = |k: &str| usage.get(k).and_then(Value::as_u64);
    let points = usage
        .get("points")
        .or_else(|| usage.get("cost_points"))
        .and_then(Value::as_f64);
    let (prompt, completion) = (n("prompt_tokens"), n("completion_tokens"));
    if prompt.is_none() && completion.is_none() && points.is_none() {
        return None;
    }
    let (prompt, completion) = (prompt.unwrap_or(0), completion.unwrap_or(0));
    Some(Usage {
        prompt_tokens: prompt,
        completion_tokens: completion,
        total_tokens: n("total_tokens").unwrap_or(prompt.saturating_add(completion)),
        points,
    })
}

/// Runs a `/v1/videos` job to completion.
///
/// Once Poe has accepted the job, the render runs (and is billed) upstream
/// whatever happens to this call, so every failure after that point is final
/// for the host's retry layer: a retry would start, and pay for, a second
/// render. Each poll asks the host's shared rate limiter first.
pub(crate) async fn run(call: &Call<'_>) -> Result<Response, PluginError> {
    let url = format!("{}/videos", call.base_url);
    let create = call
        .send_json(
            || call.http.post(&url).bearer_auth(call.api_key),
            create_body(call),
        )
        .await;
    let video = fetch(call, create, "create").await?;
    let id = checked_id(video.id.clone(), 200).map_err(PluginError::not_retryable)?;
    poll_until_done(call, &id, video).await.map_err(|err| {
        let mut err = err.not_retryable();
        if err.kind != ErrorKind::Cancelled {
            err.message = errors::truncate(
                &format!(
                    "{} (video job {id}; not retried, so it is not paid for twice)",
                    err.message
                ),
                400,
            );
        }
        err
    })
}

/// Polls job `id` until it completed, and links its content.
async fn poll_until_done(
    call: &Call<'_>,
    id: &str,
    mut video: VideoObject,
) -> Result<Response, PluginError> {
    call.sink.emit(&Event::Progress {
        message: progress_message(&video),
    });
    loop {
        match video.status.as_deref() {
            Some("completed") => break,
            Some("failed") => {
                let detail = video
                    .error
                    .as_ref()
                    .map(errors::ErrorDetail::from_json)
                    .and_then(|d| d.message)
                    .unwrap_or_else(|| "no reason given".into());
                return Err(PluginError::new(
                    ErrorKind::Upstream,
                    errors::truncate(&format!("video generation failed: {detail}"), 300),
                ));
            }
            // queued, in_progress, or a status this version does not know:
            // keep polling; the host's deadline and cancel bound the wait.
            _ => {}
        }
        tokio::time::sleep(call.video_poll).await;
        video = poll(call, id).await?;
        call.sink.emit(&Event::Progress {
            message: progress_message(&video),
        });
    }
    let url = video
        .url
        .clone()
        .filter(|u| u.starts_with("https://") || u.starts_with("http://"))
        .unwrap_or_else(|| format!("{}/videos/{id}/content", call.base_url));
    let media = Media {
        url: url.clone(),
        kind: OutputKind::Video,
        mime_type: Some("video/mp4".into()),
    };
    call.sink.emit(&Event::Media(media.clone()));
    Ok(Response {
        text: url,
        media: vec![media],
        usage: usage_of(&video),
        finish_reason: Some("stop".into()),
        model: Some(video.model.unwrap_or_else(|| call.request.model.clone())),
        ..Response::default()
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn documented_models_use_the_videos_api() {
        for m in [
            "Sora-2",
            "sora-2-pro",
            "Veo-3.1",
            "veo-3.1-fast",
            "VEO-2",
            "Veo-3-Fast",
        ] {
            assert!(uses_videos_api(m), "{m}");
        }
        for m in ["Kling-2.1", "Runway-Gen-4-Turbo", "Pika", "GPT-4o"] {
            assert!(!uses_videos_api(m), "{m}");
        }
    }

    #[test]
    fn ids_must_be_plain_tokens() {
        assert!(checked_id(Some("video_123-abc".into()), 200).is_ok());
        assert!(checked_id(Some("../x".into()), 200).is_err());
        assert!(checked_id(Some("a/b".into()), 200).is_err());
        assert!(checked_id(Some("..".into()), 200).is_err());
        assert!(checked_id(None, 200).is_err());
    }

    #[test]
    fn data_urls_give_base64() {
        assert_eq!(base64_image("data:image/png;base64,AAAA"), Some("AAAA"));
        assert_eq!(base64_image("https://x/y.png"), None);
        assert_eq!(base64_image("data:image/png,raw"), None);
    }

    #[test]
    fn progress_text() {
        let v = VideoObject {
            status: Some("in_progress".into()),
            progress: Some(42.4),
            ..Default::default()
        };
        assert_eq!(progress_message(&v), "video in_progress 42%");
        assert_eq!(progress_message(&VideoObject::default()), "video unknown");
    }
}
