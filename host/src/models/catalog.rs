//! Poe's model list (`GET {POE_BASE_URL}/models`), fetched in the
//! background, cached in memory and on disk, never waited for by a call.
//!
//! A call reads whatever snapshot is there (perhaps the one cached on disk
//! by an earlier daemon, perhaps none) and, when it is stale, starts one
//! refresh in the background. Failures back off (1 min doubling to 30 min)
//! and are shown by `list_models`; they never fail a call. Set
//! `POE_CODE_MODEL_CATALOG=off` to never fetch (offline machines, tests).

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use arc_swap::ArcSwap;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::config::file::ConfigFile;

/// Poe's OpenAI-compatible API.
pub const DEFAULT_BASE_URL: &str = "https://api.poe.com/v1";
/// How long a fetched list is fresh.
pub const TTL: Duration = Duration::from_secs(6 * 3600);
/// The environment variable that turns fetching off (`off`).
pub const SWITCH_VAR: &str = "POE_CODE_MODEL_CATALOG";

const FIRST_BACKOFF: Duration = Duration::from_secs(60);
const MAX_BACKOFF: Duration = Duration::from_secs(30 * 60);
const FETCH_TIMEOUT: Duration = Duration::from_secs(15);
/// A model list larger than this is refused (Poe's is a few hundred KiB).
const MAX_BODY: usize = 16 * 1024 * 1024;

/// The OpenAI-compatible base URL poe-openai uses: `POE_BASE_URL`, then
/// `[plugins.poe-openai] POE_BASE_URL`, then Poe's.
pub fn base_url(file: &ConfigFile) -> String {
    std::env::var("POE_BASE_URL")
        .ok()
        .filter(|v| !v.trim().is_empty())
        .or_else(|| {
            file.plugins
                .get("poe-openai")
                .and_then(|settings| settings.get("POE_BASE_URL"))
                .map(ToString::to_string)
        })
        .unwrap_or_else(|| DEFAULT_BASE_URL.to_string())
        .trim()
        .trim_end_matches('/')
        .to_string()
}

/// One model as `/v1/models` describes it. Fields Poe does not send are
/// `None`; fields we do not know are dropped.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ModelInfo {
    pub id: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub owned_by: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub input_modalities: Vec<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub output_modalities: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub context_length: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_output_tokens: Option<u64>,
    /// Poe's `pricing` object as sent (strings per token / per request).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pricing: Option<Value>,
}

impl ModelInfo {
    /// Whether the model reads images (unknown counts as no).
    pub fn takes_images(&self) -> bool {
        self.input_modalities.iter().any(|m| m == "image")
    }

    /// Parses one entry of `/v1/models`' `data`; `None` without an id.
    fn from_wire(entry: &Value) -> Option<Self> {
        let id = entry.get("id")?.as_str()?.trim();
        if id.is_empty() {
            return None;
        }
        let strings = |v: Option<&Value>| -> Vec<String> {
            v.and_then(Value::as_array)
                .map(|a| {
                    a.iter()
                        .filter_map(Value::as_str)
                        .map(str::to_ascii_lowercase)
                        .collect()
                })
                .unwrap_or_default()
        };
        let text = |v: Option<&Value>| v.and_then(Value::as_str).map(str::to_string);
        let arch = entry.get("architecture");
        let window = entry.get("context_window");
        let number = |key: &str| window.and_then(|w| w.get(key)).and_then(Value::as_u64);
        Some(Self {
            id: id.to_string(),
            owned_by: text(entry.get("owned_by")),
            description: text(entry.get("description")),
            input_modalities: strings(arch.and_then(|a| a.get("input_modalities"))),
            output_modalities: strings(arch.and_then(|a| a.get("output_modalities"))),
            context_length: number("context_length"),
            max_output_tokens: number("max_output_tokens"),
            pricing: entry.get("pricing").filter(|p| p.is_object()).cloned(),
        })
    }
}

/// One fetched list.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Snapshot {
    /// Unix seconds of the fetch.
    pub fetched_at: u64,
    /// Where it was fetched from.
    pub source: String,
    pub models: Vec<ModelInfo>,
}

impl Snapshot {
    /// Parses a `/v1/models` body.
    pub fn parse(body: &[u8], source: &str) -> Result<Self, String> {
        let value: Value =
            serde_json::from_slice(body).map_err(|e| format!("the model list is not JSON: {e}"))?;
        let data = value
            .get("data")
            .and_then(Value::as_array)
            .ok_or("the model list has no `data` array")?;
        let models: Vec<ModelInfo> = data.iter().filter_map(ModelInfo::from_wire).collect();
        if models.is_empty() {
            return Err("the model list is empty".into());
        }
        Ok(Self {
            fetched_at: now_secs(),
            source: source.to_string(),
            models,
        })
    }

    /// The model `name` means: its id ignoring ASCII case, or `owner/id`
    /// whose owner matches `owned_by` (or is any owner when the id alone
    /// is unique).
    pub fn find(&self, name: &str) -> Option<&ModelInfo> {
        let name = name.trim();
        if let Some(m) = self.models.iter().find(|m| m.id.eq_ignore_ascii_case(name)) {
            return Some(m);
        }
        let (owner, id) = name.split_once('/')?;
        self.models.iter().find(|m| {
            m.id.eq_ignore_ascii_case(id)
                && m.owned_by
                    .as_deref()
                    .is_none_or(|o| o.eq_ignore_ascii_case(owner))
        })
    }

    /// Up to `n` ids closest to `name` (for "did you mean").
    pub fn closest(&self, name: &str, n: usize) -> Vec<String> {
        let wanted = name.to_ascii_lowercase();
        let mut scored: Vec<(f64, &str)> = self
            .models
            .iter()
            .map(|m| {
                let id = m.id.to_ascii_lowercase();
                let mut score = strsim::jaro_winkler(&wanted, &id);
                if id.contains(&wanted) {
                    score += 0.5;
                }
                (score, m.id.as_str())
            })
            .filter(|(score, _)| *score > 0.75)
            .collect();
        scored.sort_by(|a, b| b.0.total_cmp(&a.0).then(a.1.cmp(b.1)));
        scored
            .into_iter()
            .take(n)
            .map(|(_, id)| id.into())
            .collect()
    }

    /// Models whose id, owner or description contains `query` (any case).
    pub fn search(&self, query: &str) -> Vec<&ModelInfo> {
        let q = query.to_lowercase();
        self.models
            .iter()
            .filter(|m| {
                m.id.to_lowercase().contains(&q)
                    || m.owned_by
                        .as_deref()
                        .is_some_and(|o| o.to_lowercase().contains(&q))
                    || m.description
                        .as_deref()
                        .is_some_and(|d| d.to_lowercase().contains(&q))
            })
            .collect()
    }

    fn age(&self) -> Duration {
        Duration::from_secs(now_secs().saturating_sub(self.fetched_at))
    }
}

/// Fetch state shown by `list_models`.
#[derive(Debug, Clone, Default)]
pub struct FetchState {
    /// The last failure, if the last fetch failed.
    pub last_error: Option<String>,
    /// Not before this instant is another background fetch tried.
    retry_after: Option<std::time::Instant>,
    backoff: Duration,
}

/// The cached catalog.
pub struct Catalog {
    base_url: String,
    cache_file: PathBuf,
    enabled: bool,
    snapshot: ArcSwap<Option<Snapshot>>,
    fetching: AtomicBool,
    state: Mutex<FetchState>,
}

impl Catalog {
    /// A catalog fetched from `base_url` and cached in `cache_file`; what
    /// an earlier daemon cached there is read now. `POE_CODE_MODEL_CATALOG=off`
    /// turns fetching off.
    pub fn new(base_url: String, cache_file: PathBuf) -> Self {
        let enabled = !std::env::var(SWITCH_VAR).is_ok_and(|v| v.eq_ignore_ascii_case("off"));
        Self::with_switch(base_url, cache_file, enabled)
    }

    /// As [`Catalog::new`], with fetching on or off as given.
    pub fn with_switch(base_url: String, cache_file: PathBuf, enabled: bool) -> Self {
        let cached = std::fs::read(&cache_file)
            .ok()
            .and_then(|bytes| serde_json::from_slice::<Snapshot>(&bytes).ok())
            .filter(|s| s.source == base_url && !s.models.is_empty());
        Self {
            base_url,
            cache_file,
            enabled,
            snapshot: ArcSwap::from_pointee(cached),
            fetching: AtomicBool::new(false),
            state: Mutex::new(FetchState::default()),
        }
    }

    /// Where the list comes from.
    pub fn base_url(&self) -> &str {
        &self.base_url
    }

    /// Whether fetching is on.
    pub fn enabled(&self) -> bool {
        self.enabled
    }

    /// The list as it stands (none before the first fetch).
    pub fn snapshot(&self) -> Arc<Option<Snapshot>> {
        self.snapshot.load_full()
    }

    /// The last fetch's failure, if it failed.
    pub fn last_error(&self) -> Option<String> {
        self.lock_state().last_error.clone()
    }

    /// Starts a fetch in the background when the list is missing or stale,
    /// no fetch runs and no backoff holds. Needs a tokio runtime.
    pub fn refresh_in_background(self: &Arc<Self>) {
        if !self.enabled
            || self
                .snapshot()
                .as_ref()
                .as_ref()
                .is_some_and(|s| s.age() < TTL)
        {
            return;
        }
        if self
            .lock_state()
            .retry_after
            .is_some_and(|t| std::time::Instant::now() < t)
        {
            return;
        }
        let Ok(handle) = tokio::runtime::Handle::try_current() else {
            return;
        };
        if self.fetching.swap(true, Ordering::AcqRel) {
            return;
        }
        let this = self.clone();
        handle.spawn(async move {
            let _ = this.fetch().await;
            this.fetching.store(false, Ordering::Release);
        });
    }

    /// Fetches now (for `list_models` with `refresh: true`); returns the
    /// number of models or why it failed.
    pub async fn refresh_now(&self) -> Result<usize, String> {
        if !self.enabled {
            return Err(format!("fetching the model list is off ({SWITCH_VAR}=off)"));
        }
        self.fetch().await
    }

    async fn fetch(&self) -> Result<usize, String> {
        let result = self.download().await;
        let mut state = self.lock_state();
        match &result {
            Ok(snapshot) => {
                *state = FetchState::default();
                drop(state);
                let count = snapshot.models.len();
                self.save(snapshot);
                self.snapshot.store(Arc::new(Some(snapshot.clone())));
                tracing::info!(models = count, url = %self.base_url, "model list fetched");
                Ok(count)
            }
            Err(e) => {
                state.backoff = if state.backoff.is_zero() {
                    FIRST_BACKOFF
                } else {
                    (state.backoff * 2).min(MAX_BACKOFF)
                };
                state.retry_after = Some(std::time::Instant::now() + state.backoff);
                state.last_error = Some(e.clone());
                tracing::warn!(error = %e, url = %self.base_url, "model list not fetched");
                Err(e.clone())
            }
        }
    }

    async fn download(&self) -> Result<Snapshot, String> {
        let url = format!("{}/models", self.base_url);
        let client = reqwest::Client::builder()
            .timeout(FETCH_TIMEOUT)
            .build()
            .map_err(|e| format!("cannot build an HTTP client: {e}"))?;
        let response = client
            .get(&url)
            .send()
            .await
            .map_err(|e| format!("GET {url} failed: {e}"))?;
        let status = response.status();
        if !status.is_success() {
            return Err(format!("GET {url} answered HTTP {status}"));
        }
        if response
            .content_length()
            .is_some_and(|n| n > MAX_BODY as u64)
        {
            return Err(format!(
                "GET {url}: the model list is larger than {MAX_BODY} bytes"
            ));
        }
        let mut body = Vec::new();
        let mut response = response;
        while let Some(chunk) = response
            .chunk()
            .await
            .map_err(|e| format!("GET {url} broke off: {e}"))?
        {
            if body.len() + chunk.len() > MAX_BODY {
                return Err(format!(
                    "GET {url}: the model list is larger than {MAX_BODY} bytes"
                ));
            }
            body.extend_from_slice(&chunk);
        }
        Snapshot::parse(&body, &self.base_url).map_err(|e| format!("GET {url}: {e}"))
    }

    /// Writes the cache atomically; a failure is only logged.
    fn save(&self, snapshot: &Snapshot) {
        let write = || -> std::io::Result<()> {
            let dir = self
                .cache_file
                .parent()
                .ok_or_else(|| std::io::Error::other("cache file has no parent"))?;
            std::fs::create_dir_all(dir)?;
            let mut tmp = tempfile::NamedTempFile::new_in(dir)?;
            serde_json::to_writer(&mut tmp, snapshot)?;
            tmp.persist(&self.cache_file).map_err(|e| e.error)?;
            Ok(())
        };
        if let Err(e) = write() {
            tracing::warn!(error = %e, file = %self.cache_file.display(), "model list not cached");
        }
    }

    fn lock_state(&self) -> std::sync::MutexGuard<'_, FetchState> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }
}

fn now_secs() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn body() -> Vec<u8> {
        serde_json::to_vec(&json!({
            "object": "list",
            "data": [
                {"id": "Claude-Sonnet-4.5", "owned_by": "Anthropic", "created": 1_700_000_000_000u64,
                 "description": "Anthropic's balanced model",
                 "architecture": {"input_modalities": ["text", "image"], "output_modalities": ["text"]},
                 "context_window": {"context_length": 200000, "max_output_tokens": 64000},
                 "pricing": {"prompt": "0.0000026", "completion": "0.000013"}},
                {"id": "GPT-5", "owned_by": "OpenAI",
                 "architecture": {"input_modalities": ["text", "image"], "output_modalities": ["text"]}},
                {"id": "Llama-3-70b", "owned_by": "Meta",
                 "architecture": {"input_modalities": ["text"], "output_modalities": ["text"]}},
                {"owned_by": "nobody"}
            ]
        }))
        .unwrap()
    }

    #[test]
    fn parses_poe_shape_and_skips_entries_without_id() {
        let s = Snapshot::parse(&body(), "http://x").unwrap();
        assert_eq!(s.models.len(), 3);
        let sonnet = &s.models[0];
        assert_eq!(sonnet.context_length, Some(200_000));
        assert_eq!(sonnet.max_output_tokens, Some(64_000));
        assert!(sonnet.takes_images());
        assert!(!s.models[2].takes_images());
        assert_eq!(sonnet.pricing.as_ref().unwrap()["prompt"], "0.0000026");
    }

    #[test]
    fn finds_by_any_case_and_owner_form() {
        let s = Snapshot::parse(&body(), "http://x").unwrap();
        assert_eq!(s.find("claude-sonnet-4.5").unwrap().id, "Claude-Sonnet-4.5");
        assert_eq!(
            s.find("anthropic/claude-sonnet-4.5").unwrap().id,
            "Claude-Sonnet-4.5"
        );
        assert!(s.find("openai/claude-sonnet-4.5").is_none());
        assert!(s.find("Claude-Sonnet-9").is_none());
        assert_eq!(s.closest("claude-sonet-4.5", 3)[0], "Claude-Sonnet-4.5");
        assert_eq!(s.search("meta").len(), 1);
    }

    #[test]
    fn refuses_bodies_that_are_not_a_model_list() {
        assert!(Snapshot::parse(b"<html>", "u").is_err());
        assert!(Snapshot::parse(br#"{"data": []}"#, "u").is_err());
        assert!(Snapshot::parse(br#"{"models": []}"#, "u").is_err());
    }

    #[test]
    fn disk_cache_is_read_only_for_the_same_source() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("cache").join("models.json");
        let first = Catalog::with_switch("http://a".into(), file.clone(), false);
        first.save(&Snapshot::parse(&body(), "http://a").unwrap());
        let again = Catalog::with_switch("http://a".into(), file.clone(), false);
        assert_eq!(again.snapshot().as_ref().as_ref().unwrap().models.len(), 3);
        let other = Catalog::with_switch("http://b".into(), file, false);
        assert!(other.snapshot().is_none());
    }
}
