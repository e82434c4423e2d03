//! Which model a call means: aliases, `auto`, the default models and Poe's
//! own names as its `/v1/models` lists them ([`catalog`]).
//!
//! TODO(helper models): implement as specified in the module's contract.

pub mod catalog;

use std::sync::Arc;

use poe_plugin_api::OutputKind;

use crate::config::file::ConfigFile;
pub use catalog::Catalog;

/// How a written model name was turned into the one routed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Via {
    /// Written as is (or only its case / `owner/` prefix normalised).
    Name,
    /// An alias (`sonnet`).
    Alias(String),
    /// `auto`, or no model given.
    Auto,
}

/// A resolved model.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Resolved {
    /// The name to route and send.
    pub model: String,
    pub via: Via,
}

/// Why a model name could not be resolved; the message says what exists.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct UnknownModel(pub String);

/// Aliases, defaults, the `auto` rule and the catalog.
pub struct Models {
    pub catalog: Arc<Catalog>,
}

impl Models {
    /// From config.toml and the environment (`POE_TEXT_MODEL` etc.).
    pub fn load(file: &ConfigFile, catalog: Arc<Catalog>) -> Self {
        let _ = file;
        Self { catalog }
    }

    /// The default model for `kind` (environment, then `[models]`, then built in).
    pub fn default_for(&self, kind: OutputKind) -> String {
        crate::mcp::tools::media_tool(match kind {
            OutputKind::Image => crate::mcp::tools::names::GENERATE_IMAGE,
            OutputKind::Video => crate::mcp::tools::names::GENERATE_VIDEO,
            OutputKind::Audio => crate::mcp::tools::names::GENERATE_AUDIO,
            OutputKind::Text => return crate::mcp::defaults::TEXT_BOT.to_string(),
        })
        .map(|(_, bot)| bot.to_string())
        .unwrap_or_default()
    }

    /// Resolves `written` (`None` or `auto` pick by the rule; `needs_vision`
    /// when images are attached; `routable` says whether a loaded plugin
    /// serves a name).
    pub fn resolve(
        &self,
        written: Option<&str>,
        needs_vision: bool,
        route: &dyn Fn(&str) -> Option<String>,
    ) -> Result<Resolved, UnknownModel> {
        // Placeholder until the models module lands: names as written.
        let _ = (needs_vision, route);
        Ok(Resolved {
            model: written
                .unwrap_or(crate::mcp::defaults::TEXT_BOT)
                .to_string(),
            via: Via::Name,
        })
    }
}
