//! Poe's model list (`GET {POE_BASE_URL}/models`), fetched in the
//! background, cached in memory and on disk, never waited for by a call.
//!
//! TODO(helper models): implement as specified in the module's contract.

use std::path::PathBuf;

use crate::config::file::ConfigFile;

/// The OpenAI-compatible base URL poe-openai uses: `POE_BASE_URL`, then
/// `[plugins.poe-openai] POE_BASE_URL`, then Poe's.
pub fn base_url(file: &ConfigFile) -> String {
    let _ = file;
    String::new()
}

/// The cached catalog.
pub struct Catalog {}

impl Catalog {
    /// A catalog fetched from `base_url` and cached in `cache_file`.
    pub fn new(base_url: String, cache_file: PathBuf) -> Self {
        let _ = (base_url, cache_file);
        Self {}
    }

    /// Placeholder until the models module lands.
    pub fn refresh_in_background(self: &std::sync::Arc<Self>) {}
}
