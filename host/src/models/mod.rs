//! Which model a call means: aliases, `auto`, the default models and Poe's
//! own names as its `/v1/models` lists them ([`catalog`]).
//!
//! Order of resolution for a written name:
//! 1. none or `auto`: the [auto rule](AUTO_RULE);
//! 2. an alias (`[aliases]` in config.toml over the built-in ones), any case;
//! 3. a name Poe's catalog lists, any case, `owner/id` accepted: sent in
//!    the catalog's spelling;
//! 4. anything else as written (private bots are not in the catalog; Poe
//!    or the plugin answers MODEL_NOT_FOUND for a name that exists nowhere).

pub mod catalog;

use std::collections::BTreeMap;
use std::sync::Arc;

use poe_plugin_api::OutputKind;
use serde_json::{Value, json};

use crate::config::file::ConfigFile;
use crate::mcp::defaults;
pub use catalog::Catalog;

/// Aliases every install has; `[aliases]` adds to and overrides them.
pub const BUILTIN_ALIASES: &[(&str, &str)] = &[
    ("sonnet", "Claude-Sonnet-4.5"),
    ("opus", "Claude-Opus-4.1"),
    ("haiku", "Claude-Haiku-4.5"),
    ("gpt", "GPT-5"),
    ("gemini", "Gemini-2.5-Pro"),
    ("grok", "Grok-4"),
];

/// What `auto` tries after the default text model, unless `[models] auto`
/// gives the list.
pub const BUILTIN_AUTO: &[&str] = &["GPT-5", "Gemini-2.5-Pro"];

/// The `auto` rule in words (shown by `list_models`).
pub const AUTO_RULE: &str = "`auto` (or no model) takes the first model of the preference list \
     (`[models] auto` in config.toml; by default the default text model, then GPT-5, then \
     Gemini-2.5-Pro) that a loaded plugin serves and, once Poe's model list is known, that Poe \
     lists; with images attached it skips models Poe lists without image input, and if none \
     is left takes the first listed model that reads images.";

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

/// Where a default or an alias came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Source {
    BuiltIn,
    Config,
    Env,
}

impl Source {
    fn label(self) -> &'static str {
        match self {
            Self::BuiltIn => "built-in",
            Self::Config => "config.toml",
            Self::Env => "environment",
        }
    }
}

/// Aliases, defaults, the `auto` rule and the catalog.
pub struct Models {
    pub catalog: Arc<Catalog>,
    /// Lower-case alias -> (model, source).
    aliases: BTreeMap<String, (String, Source)>,
    /// Default model and its source, by kind: text, image, video, audio.
    defaults: [(String, Source); 4],
    /// `[models] auto` as written, if given.
    auto: Option<Vec<String>>,
}

/// The environment variable that overrides the default for `kind`.
pub fn env_var(kind: OutputKind) -> &'static str {
    match kind {
        OutputKind::Text => "POE_TEXT_MODEL",
        OutputKind::Image => "POE_IMAGE_MODEL",
        OutputKind::Video => "POE_VIDEO_MODEL",
        OutputKind::Audio => "POE_AUDIO_MODEL",
    }
}

const KINDS: [OutputKind; 4] = [
    OutputKind::Text,
    OutputKind::Image,
    OutputKind::Video,
    OutputKind::Audio,
];

fn index(kind: OutputKind) -> usize {
    KINDS.iter().position(|k| *k == kind).unwrap_or(0)
}

fn kind_name(kind: OutputKind) -> &'static str {
    ["text", "image", "video", "audio"][index(kind)]
}

impl Models {
    /// From config.toml and the process environment (`POE_TEXT_MODEL` etc.).
    pub fn load(file: &ConfigFile, catalog: Arc<Catalog>) -> Self {
        Self::load_with_env(file, catalog, |key| std::env::var(key).ok())
    }

    /// From config.toml and the variables `env` returns.
    pub fn load_with_env(
        file: &ConfigFile,
        catalog: Arc<Catalog>,
        env: impl Fn(&str) -> Option<String>,
    ) -> Self {
        let mut aliases: BTreeMap<String, (String, Source)> = BUILTIN_ALIASES
            .iter()
            .map(|(a, m)| (a.to_string(), (m.to_string(), Source::BuiltIn)))
            .collect();
        for (alias, model) in &file.aliases {
            let (alias, model) = (alias.trim(), model.trim());
            if !alias.is_empty() && !model.is_empty() {
                aliases.insert(
                    alias.to_ascii_lowercase(),
                    (model.to_string(), Source::Config),
                );
            }
        }
        let section = &file.models;
        let configured = [
            &section.text,
            &section.image,
            &section.video,
            &section.audio,
        ];
        let builtin = [
            defaults::TEXT_BOT,
            defaults::IMAGE_BOT,
            defaults::VIDEO_BOT,
            defaults::AUDIO_BOT,
        ];
        let defaults = KINDS.map(|kind| {
            let i = index(kind);
            let nonempty =
                |v: Option<String>| v.map(|s| s.trim().to_string()).filter(|s| !s.is_empty());
            if let Some(v) = nonempty(env(env_var(kind))) {
                (v, Source::Env)
            } else if let Some(v) = nonempty(configured[i].clone()) {
                (v, Source::Config)
            } else {
                (builtin[i].to_string(), Source::BuiltIn)
            }
        });
        let auto = section.auto.as_ref().map(|list| {
            list.iter()
                .map(|m| m.trim().to_string())
                .filter(|m| !m.is_empty())
                .collect::<Vec<_>>()
        });
        Self {
            catalog,
            aliases,
            defaults,
            auto: auto.filter(|l| !l.is_empty()),
        }
    }

    /// Every alias (lower case), built-in and configured.
    pub fn alias_names(&self) -> impl Iterator<Item = &str> {
        self.aliases.keys().map(String::as_str)
    }

    /// The default model for `kind` (environment, then `[models]`, then
    /// built in), its alias resolved.
    pub fn default_for(&self, kind: OutputKind) -> String {
        let written = &self.defaults[index(kind)].0;
        self.expand(written).0
    }

    /// The `auto` preference list, aliases resolved, without repeats.
    pub fn auto_list(&self) -> Vec<String> {
        let written: Vec<String> = match &self.auto {
            Some(list) => list.clone(),
            None => std::iter::once(self.defaults[0].0.clone())
                .chain(BUILTIN_AUTO.iter().map(|m| m.to_string()))
                .collect(),
        };
        let mut out: Vec<String> = Vec::new();
        for name in written {
            let model = self.expand(&name).0;
            if !out.iter().any(|m| m.eq_ignore_ascii_case(&model)) {
                out.push(model);
            }
        }
        out
    }

    /// An alias's target, or the name itself, in the catalog's spelling
    /// when the catalog lists it; and the alias if one was used.
    fn expand(&self, written: &str) -> (String, Option<String>) {
        let written = written.trim();
        let (name, alias) = match self.aliases.get(&written.to_ascii_lowercase()) {
            Some((model, _)) => (model.as_str(), Some(written.to_ascii_lowercase())),
            None => (written, None),
        };
        let snapshot = self.catalog.snapshot();
        let canonical = snapshot
            .as_ref()
            .as_ref()
            .and_then(|s| s.find(name))
            .map_or_else(|| name.to_string(), |m| m.id.clone());
        (canonical, alias)
    }

    /// Resolves `written` (`None` or `auto` pick by the rule; `needs_vision`
    /// when images are attached; `route` names the plugin that would serve
    /// a name, if any).
    pub fn resolve(
        &self,
        written: Option<&str>,
        needs_vision: bool,
        route: &dyn Fn(&str) -> Option<String>,
    ) -> Result<Resolved, UnknownModel> {
        let written = written.map(str::trim).filter(|w| !w.is_empty());
        match written {
            None => self.auto(needs_vision, route),
            Some(w) if w.eq_ignore_ascii_case("auto") => self.auto(needs_vision, route),
            Some(w) => {
                let (model, alias) = self.expand(w);
                Ok(Resolved {
                    model,
                    via: alias.map_or(Via::Name, Via::Alias),
                })
            }
        }
    }

    fn auto(
        &self,
        needs_vision: bool,
        route: &dyn Fn(&str) -> Option<String>,
    ) -> Result<Resolved, UnknownModel> {
        let snapshot = self.catalog.snapshot();
        let listed = snapshot.as_ref().as_ref();
        let candidates = self.auto_list();
        // Poe's list only speaks for the names poe-openai serves.
        let usable = |model: &str| -> bool {
            let Some(plugin) = route(model) else {
                return false;
            };
            match listed {
                Some(s) if plugin == "poe-openai" => match s.find(model) {
                    Some(info) => !needs_vision || info.takes_images(),
                    None => false,
                },
                _ => true,
            }
        };
        let chosen = candidates.iter().find(|m| usable(m)).cloned().or_else(|| {
            // Images attached and no preferred model reads them: the first
            // listed text model that does.
            listed.filter(|_| needs_vision).and_then(|s| {
                s.models
                    .iter()
                    .filter(|m| m.takes_images())
                    .filter(|m| {
                        m.output_modalities.is_empty()
                            || m.output_modalities.iter().any(|o| o == "text")
                    })
                    .find(|m| route(&m.id).is_some())
                    .map(|m| m.id.clone())
            })
        });
        // Nothing passes the catalog's checks: still try a routable one,
        // the catalog may be stale.
        let chosen = chosen.or_else(|| candidates.iter().find(|m| route(m).is_some()).cloned());
        match chosen {
            Some(model) => Ok(Resolved {
                model,
                via: Via::Auto,
            }),
            None => Err(UnknownModel(format!(
                "`auto` found no model a loaded plugin serves among {}; name a model, or set \
                 `[models] auto` in config.toml (see `poe-coded status` for the loaded plugins)",
                candidates.join(", ")
            ))),
        }
    }

    /// Aliases, defaults, the auto rule and, when known, the catalog
    /// (filtered by `search`), as JSON for `list_models`.
    pub fn describe(&self, search: Option<&str>) -> Value {
        let aliases: Vec<Value> = self
            .aliases
            .iter()
            .map(|(alias, (model, source))| {
                json!({"alias": alias, "model": self.expand(model).0, "source": source.label()})
            })
            .collect();
        let defaults: serde_json::Map<String, Value> = KINDS
            .iter()
            .map(|kind| {
                let (written, source) = &self.defaults[index(*kind)];
                (
                    kind_name(*kind).to_string(),
                    json!({
                        "model": self.expand(written).0,
                        "source": source.label(),
                        "env": env_var(*kind),
                    }),
                )
            })
            .collect();
        let snapshot = self.catalog.snapshot();
        let catalog = match snapshot.as_ref() {
            Some(s) => {
                let models: Vec<&catalog::ModelInfo> = match search {
                    Some(q) => s.search(q),
                    None => s.models.iter().collect(),
                };
                json!({
                    "source": s.source,
                    "fetched_at": s.fetched_at,
                    "total": s.models.len(),
                    "models": models,
                    "last_error": self.catalog.last_error(),
                })
            }
            None => json!({
                "source": self.catalog.base_url(),
                "models": [],
                "enabled": self.catalog.enabled(),
                "last_error": self.catalog.last_error(),
            }),
        };
        json!({
            "aliases": aliases,
            "defaults": defaults,
            "auto": {"rule": AUTO_RULE, "preference": self.auto_list()},
            "catalog": catalog,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn catalog_with(models: Value) -> Arc<Catalog> {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("models.json");
        let snapshot = catalog::Snapshot::parse(
            &serde_json::to_vec(&json!({ "data": models })).unwrap(),
            "http://fake",
        )
        .unwrap();
        std::fs::write(&file, serde_json::to_vec(&snapshot).unwrap()).unwrap();
        Arc::new(Catalog::with_switch("http://fake".into(), file, false))
    }

    fn empty_catalog() -> Arc<Catalog> {
        Arc::new(Catalog::with_switch(
            "http://fake".into(),
            "/nonexistent/models.json".into(),
            false,
        ))
    }

    fn config(text: &str) -> ConfigFile {
        toml::from_str(text).unwrap()
    }

    fn anything(_: &str) -> Option<String> {
        Some("poe-openai".into())
    }

    #[test]
    fn aliases_builtin_and_configured_any_case() {
        let m = Models::load_with_env(
            &config("[aliases]\nfast = \"GPT-5-mini\"\ngpt = \"GPT-5.1\"\n"),
            empty_catalog(),
            |_| None,
        );
        let r = m.resolve(Some("Sonnet"), false, &anything).unwrap();
        assert_eq!(r.model, "Claude-Sonnet-4.5");
        assert_eq!(r.via, Via::Alias("sonnet".into()));
        assert_eq!(
            m.resolve(Some("fast"), false, &anything).unwrap().model,
            "GPT-5-mini"
        );
        assert_eq!(
            m.resolve(Some("gpt"), false, &anything).unwrap().model,
            "GPT-5.1"
        );
        let plain = m
            .resolve(Some("Some-Private-Bot"), false, &anything)
            .unwrap();
        assert_eq!(
            (plain.model.as_str(), plain.via),
            ("Some-Private-Bot", Via::Name)
        );
    }

    #[test]
    fn defaults_env_over_config_over_builtin() {
        let file = config("[models]\ntext = \"GPT-5\"\nimage = \"sonnet\"\n");
        let m = Models::load_with_env(&file, empty_catalog(), |k| {
            (k == "POE_VIDEO_MODEL").then(|| "Sora-2".to_string())
        });
        assert_eq!(m.default_for(OutputKind::Text), "GPT-5");
        assert_eq!(m.default_for(OutputKind::Image), "Claude-Sonnet-4.5");
        assert_eq!(m.default_for(OutputKind::Video), "Sora-2");
        assert_eq!(m.default_for(OutputKind::Audio), defaults::AUDIO_BOT);
        let env = Models::load_with_env(&file, empty_catalog(), |k| {
            (k == "POE_TEXT_MODEL").then(|| "Grok-4".to_string())
        });
        assert_eq!(env.default_for(OutputKind::Text), "Grok-4");
        // auto starts with the default text model.
        assert_eq!(env.resolve(None, false, &anything).unwrap().model, "Grok-4");
    }

    #[test]
    fn catalog_spelling_and_owner_form() {
        let m = Models::load_with_env(
            &ConfigFile::default(),
            catalog_with(json!([{"id": "Claude-Sonnet-4.5", "owned_by": "Anthropic"}])),
            |_| None,
        );
        let r = m
            .resolve(Some("anthropic/claude-sonnet-4.5"), false, &anything)
            .unwrap();
        assert_eq!((r.model.as_str(), r.via), ("Claude-Sonnet-4.5", Via::Name));
    }

    #[test]
    fn auto_follows_the_list_the_catalog_and_vision() {
        let catalog = catalog_with(json!([
            {"id": "Text-Only", "architecture": {"input_modalities": ["text"], "output_modalities": ["text"]}},
            {"id": "Sees", "architecture": {"input_modalities": ["text", "image"], "output_modalities": ["text"]}},
            {"id": "Painter", "architecture": {"input_modalities": ["text", "image"], "output_modalities": ["image"]}}
        ]));
        let m = Models::load_with_env(
            &config("[models]\nauto = [\"Missing\", \"text-only\", \"Sees\"]\n"),
            catalog,
            |_| None,
        );
        let text = m.resolve(Some("auto"), false, &anything).unwrap();
        assert_eq!((text.model.as_str(), text.via), ("Text-Only", Via::Auto));
        assert_eq!(m.resolve(None, true, &anything).unwrap().model, "Sees");

        let vision_fallback = Models::load_with_env(
            &config("[models]\nauto = [\"Text-Only\"]\n"),
            m.catalog.clone(),
            |_| None,
        );
        assert_eq!(
            vision_fallback
                .resolve(None, true, &anything)
                .unwrap()
                .model,
            "Sees"
        );

        // Names a non-Poe plugin serves are not checked against Poe's list.
        let codex = Models::load_with_env(
            &config("[models]\nauto = [\"codex\"]\n"),
            m.catalog.clone(),
            |_| None,
        );
        let via_codex = |name: &str| (name == "codex").then(|| "codex-cli".to_string());
        assert_eq!(
            codex.resolve(None, false, &via_codex).unwrap().model,
            "codex"
        );
        let nothing = |_: &str| None;
        let err = codex.resolve(None, false, &nothing).unwrap_err();
        assert!(err.0.contains("codex"), "{err}");
    }

    #[test]
    fn describe_lists_sources() {
        let m = Models::load_with_env(
            &config("[aliases]\nfast = \"GPT-5-mini\"\n"),
            empty_catalog(),
            |_| None,
        );
        let d = m.describe(None);
        assert!(
            d["aliases"]
                .as_array()
                .unwrap()
                .iter()
                .any(|a| a["alias"] == "fast" && a["source"] == "config.toml")
        );
        assert_eq!(d["defaults"]["text"]["env"], "POE_TEXT_MODEL");
        assert_eq!(d["catalog"]["models"], json!([]));
    }
}
