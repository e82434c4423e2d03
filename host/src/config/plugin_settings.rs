//! A plugin's settings: the values of the config keys its manifest declares
//! (`CODEX_BIN`, `POE_BASE_URL`, …), handed to its `open`.
//!
//! Each key comes from the daemon's environment when set there (non-empty),
//! else from `[plugins.<plugin id>]` in `config.toml`, else it is unset and
//! the plugin uses its default. The daemon's environment is the one of
//! whatever started it (often the first agent's shim), which is why the file
//! exists: it is the same for every session. Keys in the file that the
//! plugin does not declare are reported, since a typo would otherwise be
//! silently ignored.
//!
//! Values whose key names a secret (`…KEY`, `…TOKEN`, `…SECRET`,
//! `…PASSWORD`) are reported as a fingerprint only.

use std::collections::BTreeMap;

use poe_plugin_api::Config;

use super::credentials::fingerprint;
use super::file::SettingValue;
use crate::ipc::status::PluginSetting;

/// Where a setting's value came from, as `status` names it.
pub const FROM_ENV: &str = "environment";
/// See [`FROM_ENV`].
pub const FROM_FILE: &str = "config.toml";
/// See [`FROM_ENV`].
pub const UNSET: &str = "unset";

/// The settings one plugin is opened with, and how to report them.
#[derive(Debug, Default)]
pub struct Resolved {
    /// What `open` receives.
    pub config: Config,
    /// One row per declared key, secrets fingerprinted.
    pub report: Vec<PluginSetting>,
    /// Keys of the plugin's `[plugins.<id>]` table that it does not declare.
    pub ignored: Vec<String>,
}

/// Resolves `keys` from `env` (the daemon's environment) over `table` (the
/// plugin's table in config.toml, if any).
pub fn resolve(
    keys: &[String],
    table: Option<&BTreeMap<String, SettingValue>>,
    env: impl Fn(&str) -> Option<String>,
) -> Resolved {
    let mut resolved = Resolved::default();
    for key in keys {
        let from_env = env(key).filter(|v| !v.trim().is_empty());
        let (value, source) = match (from_env, table.and_then(|t| t.get(key))) {
            (Some(value), _) => (Some(value), FROM_ENV),
            (None, Some(value)) => (Some(value.to_string()), FROM_FILE),
            (None, None) => (None, UNSET),
        };
        let secret = is_secret(key);
        resolved.report.push(PluginSetting {
            key: key.clone(),
            value: value.as_deref().map(|v| {
                if secret {
                    fingerprint(v)
                } else {
                    v.to_string()
                }
            }),
            source: source.to_string(),
            secret,
        });
        if let Some(value) = value {
            resolved.config.insert(key.clone(), value);
        }
    }
    if let Some(table) = table {
        resolved.ignored = table
            .keys()
            .filter(|k| !keys.contains(k))
            .cloned()
            .collect();
    }
    resolved
}

/// Whether a key's value must never be shown.
pub fn is_secret(key: &str) -> bool {
    let key = key.to_ascii_uppercase();
    ["KEY", "TOKEN", "SECRET", "PASSWORD", "CREDENTIAL"]
        .iter()
        .any(|word| key.contains(word))
}

/// The daemon's environment.
pub fn process_env(key: &str) -> Option<String> {
    std::env::var(key).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn keys(names: &[&str]) -> Vec<String> {
        names.iter().map(|k| k.to_string()).collect()
    }

    #[test]
    fn environment_wins_over_the_file_and_unset_keys_are_reported() {
        let table: BTreeMap<String, SettingValue> = [
            (
                "CODEX_BIN".to_string(),
                SettingValue::String("/opt/codex".into()),
            ),
            (
                "CODEX_SANDBOX_MODE".to_string(),
                SettingValue::String("workspace-write".into()),
            ),
            (
                "CODEX_SKIP_GIT_CHECK".to_string(),
                SettingValue::Boolean(false),
            ),
            (
                "CODEX_SANDBOX".to_string(),
                SettingValue::String("typo".into()),
            ),
        ]
        .into();
        let env = |k: &str| match k {
            "CODEX_SANDBOX_MODE" => Some("read-only".to_string()),
            // Empty counts as unset, so the file's value applies.
            "CODEX_BIN" => Some(" ".to_string()),
            _ => None,
        };
        let r = resolve(
            &keys(&[
                "CODEX_BIN",
                "CODEX_SANDBOX_MODE",
                "CODEX_SKIP_GIT_CHECK",
                "CODEX_APPROVAL_POLICY",
            ]),
            Some(&table),
            env,
        );
        assert_eq!(r.config["CODEX_BIN"], "/opt/codex");
        assert_eq!(r.config["CODEX_SANDBOX_MODE"], "read-only");
        assert_eq!(r.config["CODEX_SKIP_GIT_CHECK"], "false");
        assert!(!r.config.contains_key("CODEX_APPROVAL_POLICY"));
        let sources: Vec<(&str, &str)> = r
            .report
            .iter()
            .map(|s| (s.key.as_str(), s.source.as_str()))
            .collect();
        assert_eq!(
            sources,
            [
                ("CODEX_BIN", FROM_FILE),
                ("CODEX_SANDBOX_MODE", FROM_ENV),
                ("CODEX_SKIP_GIT_CHECK", FROM_FILE),
                ("CODEX_APPROVAL_POLICY", UNSET),
            ]
        );
        assert_eq!(r.ignored, ["CODEX_SANDBOX"]);
    }

    #[test]
    fn secrets_are_reported_as_a_fingerprint_only() {
        let table: BTreeMap<String, SettingValue> = [(
            "POE_API_KEY".to_string(),
            SettingValue::String("sk-poe-from-the-file-9876".into()),
        )]
        .into();
        let r = resolve(
            &keys(&["POE_API_KEY", "POE_BASE_URL"]),
            Some(&table),
            |_| None,
        );
        assert_eq!(r.config["POE_API_KEY"], "sk-poe-from-the-file-9876");
        let key = &r.report[0];
        assert!(key.secret);
        assert_eq!(key.value.as_deref(), Some("…9876"));
        assert!(!r.report[1].secret);
        assert!(is_secret("ANTHROPIC_AUTH_TOKEN") && is_secret("db_password"));
        assert!(!is_secret("CODEX_BIN"));
    }
}
