//! The fake OpenAI-format Videos API that Poe serves under `/v1/videos`
//! (<https://creator.poe.com/api-reference/createVideo>, getVideo,
//! getVideoContent):
//!
//! - `POST /v1/videos` `{model, prompt, seconds?, size?}` creates a job and
//!   answers the video object with status `queued`.
//! - `GET /v1/videos/{id}` answers `in_progress` (50 %) on the first poll and
//!   `completed` (100 %) from the second poll on, so a client that polls
//!   quickly finishes in two polls.
//! - `GET /v1/videos/{id}/content` answers MP4 bytes once completed.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};

use serde_json::{Value, json};
use wiremock::{Request, Respond, ResponseTemplate};

use crate::{files, wire};

/// One fake generation job.
#[derive(Debug, Clone)]
struct Job {
    model: String,
    seconds: Value,
    size: String,
    created_at: u64,
    polls: u32,
}

impl Job {
    fn completed(&self) -> bool {
        self.polls >= 2
    }

    fn object(&self, id: &str) -> Value {
        let (status, progress) = match self.polls {
            0 => ("queued", 0),
            1 => ("in_progress", 50),
            _ => ("completed", 100),
        };
        let completed = self.completed();
        json!({
            "id": id,
            "object": "video",
            "status": status,
            "progress": progress,
            "model": self.model,
            "seconds": self.seconds,
            "size": self.size,
            "created_at": self.created_at,
            "completed_at": if completed { json!(wire::now_secs()) } else { Value::Null },
            "expires_at": Value::Null,
            "remixed_from_video_id": Value::Null,
            "error": Value::Null,
            "usage": Value::Null,
        })
    }
}

/// The jobs of one fake server, shared by its three video endpoints.
#[derive(Debug, Clone, Default)]
pub(crate) struct Jobs(Arc<Mutex<JobTable>>);

#[derive(Debug, Default)]
struct JobTable {
    next: u64,
    jobs: HashMap<String, Job>,
}

impl Jobs {
    fn lock(&self) -> MutexGuard<'_, JobTable> {
        // A panic elsewhere must not wedge the fake for the rest of a test run.
        self.0.lock().unwrap_or_else(|e| e.into_inner())
    }
}

fn not_found() -> ResponseTemplate {
    wire::error_body(404, "Video not found", "not_found_error", "not_found")
}

/// The `{id}` path segment of `/v1/videos/{id}[/content]`.
fn video_id(request: &Request) -> String {
    request
        .url
        .path_segments()
        .and_then(|mut s| s.nth(2))
        .unwrap_or_default()
        .to_string()
}

/// `POST /v1/videos`.
pub(crate) struct CreateVideo(pub(crate) Jobs);

impl Respond for CreateVideo {
    fn respond(&self, request: &Request) -> ResponseTemplate {
        if let Some(denied) = wire::check_auth(request) {
            return denied;
        }
        let body: Value = serde_json::from_slice(&request.body).unwrap_or(Value::Null);
        let (Some(model), Some(_prompt)) = (
            body.get("model").and_then(Value::as_str),
            body.get("prompt").and_then(Value::as_str),
        ) else {
            return wire::error_body(
                400,
                "Missing required parameter: 'model' and 'prompt' are required",
                "invalid_request_error",
                "missing_parameter",
            );
        };
        let job = Job {
            model: model.to_string(),
            seconds: body.get("seconds").cloned().unwrap_or(json!(8)),
            size: body
                .get("size")
                .and_then(Value::as_str)
                .unwrap_or("720x1280")
                .to_string(),
            created_at: wire::now_secs(),
            polls: 0,
        };
        let mut table = self.0.lock();
        table.next += 1;
        let id = format!("video_fake_{}", table.next);
        let object = job.object(&id);
        table.jobs.insert(id, job);
        wire::ok_json(object)
    }
}

/// `GET /v1/videos/{id}`: every call advances the job one step.
pub(crate) struct GetVideo(pub(crate) Jobs);

impl Respond for GetVideo {
    fn respond(&self, request: &Request) -> ResponseTemplate {
        if let Some(denied) = wire::check_auth(request) {
            return denied;
        }
        let id = video_id(request);
        let mut table = self.0.lock();
        match table.jobs.get_mut(&id) {
            Some(job) => {
                job.polls = job.polls.saturating_add(1);
                wire::ok_json(job.object(&id))
            }
            None => not_found(),
        }
    }
}

/// `GET /v1/videos/{id}/content`.
pub(crate) struct VideoContent(pub(crate) Jobs);

impl Respond for VideoContent {
    fn respond(&self, request: &Request) -> ResponseTemplate {
        if let Some(denied) = wire::check_auth(request) {
            return denied;
        }
        let id = video_id(request);
        let table = self.0.lock();
        match table.jobs.get(&id) {
            Some(job) if job.completed() => {
                ResponseTemplate::new(200).set_body_raw(files::MP4.to_vec(), "video/mp4")
            }
            Some(_) => wire::error_body(
                404,
                "Video is not ready yet",
                "not_found_error",
                "not_found",
            ),
            None => not_found(),
        }
    }
}
