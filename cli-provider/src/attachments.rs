//! Attachments for a CLI that cannot take them inline: each `data:`
//! attachment is saved as a file in a directory the run makes readable
//! (e.g. `--add-dir`), and the prompt says where it is.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use base64::Engine;
use poe_plugin_api::{Message, PluginError, Request};

use crate::Cli;

/// Inline (`data:`) attachments saved as files in `dir`, by (message,
/// attachment) index.
pub fn save(request: &Request, dir: &Path) -> HashMap<(usize, usize), PathBuf> {
    let mut saved = HashMap::new();
    for (m, message) in request.messages.iter().enumerate() {
        for (a, attachment) in message.attachments.iter().enumerate() {
            let Some((meta, data)) = attachment
                .url
                .strip_prefix("data:")
                .and_then(|rest| rest.split_once(','))
            else {
                continue;
            };
            let Some(mime) = meta.strip_suffix(";base64") else {
                continue;
            };
            let Ok(bytes) = base64::engine::general_purpose::STANDARD.decode(data.trim()) else {
                continue;
            };
            let ext: String = mime
                .rsplit('/')
                .next()
                .unwrap_or("bin")
                .chars()
                .filter(char::is_ascii_alphanumeric)
                .collect();
            let path = dir.join(format!("attachment-{m}-{a}.{ext}"));
            if std::fs::write(&path, bytes).is_ok() {
                saved.insert((m, a), path);
            }
        }
    }
    saved
}

/// Where message `m`'s attachments are, for the prompt: a saved file's
/// path (the CLI reads it with its own tools), a link as it is.
pub fn notes(
    cli: &Cli,
    m: usize,
    message: &Message,
    saved: &HashMap<(usize, usize), PathBuf>,
) -> String {
    message
        .attachments
        .iter()
        .enumerate()
        .map(|(a, attachment)| {
            let name = attachment.name.as_deref().unwrap_or("attachment");
            match saved.get(&(m, a)) {
                Some(path) => format!("\nAttached file {name} is saved at {}", path.display()),
                None if attachment.url.starts_with("data:") => {
                    format!(
                        "\n(Attached file {name} could not be passed to {}.)",
                        cli.name
                    )
                }
                None => format!("\nAttached file {name}: {}", attachment.url),
            }
        })
        .collect()
}

/// A run's attachments, saved in a private temp dir that lives as long as
/// this value (keep it until the CLI has exited).
pub struct Saved {
    dir: tempfile::TempDir,
    files: HashMap<(usize, usize), PathBuf>,
}

impl Saved {
    /// Saves the inline attachments of `request` for `cli`.
    pub fn new(cli: &Cli, request: &Request) -> Result<Saved, PluginError> {
        let prefix: String = cli.bin_key.trim_end_matches("_BIN").to_ascii_lowercase();
        let dir = tempfile::Builder::new()
            .prefix(&format!("poe-code-{prefix}"))
            .tempdir()
            .map_err(|e| PluginError::internal(format!("cannot create a temp dir: {e}")))?;
        let files = save(request, dir.path());
        Ok(Saved { dir, files })
    }

    /// The directory to make readable, when anything was saved.
    pub fn dir(&self) -> Option<&Path> {
        (!self.files.is_empty()).then(|| self.dir.path())
    }

    /// The prompt ([`crate::prompt::transcript`]) with each message's
    /// attachments named where they are.
    pub fn prompt(
        &self,
        cli: &Cli,
        request: &Request,
        resumed: bool,
    ) -> Result<String, PluginError> {
        crate::prompt::transcript(request, resumed, |m, message| {
            notes(cli, m, message, &self.files)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use poe_plugin_api::{Attachment, Role};

    #[test]
    fn inline_attachments_become_files_the_prompt_names() {
        let dir = tempfile::tempdir().unwrap();
        let message = Message {
            role: Role::User,
            content: "what is this".into(),
            attachments: vec![
                Attachment {
                    url: "https://x/a.png".into(),
                    content_type: None,
                    name: Some("a.png".into()),
                },
                Attachment {
                    url: "data:image/png;base64,aGVsbG8=".into(),
                    content_type: None,
                    name: Some("b.png".into()),
                },
                Attachment {
                    url: "data:image/png;base64,!!".into(),
                    content_type: None,
                    name: Some("broken.png".into()),
                },
            ],
            tool_call_id: None,
            tool_calls: vec![],
        };
        let request = Request {
            messages: vec![message.clone()],
            ..Request::default()
        };
        let saved = save(&request, dir.path());
        assert_eq!(saved.len(), 1);
        let path = &saved[&(0, 1)];
        assert_eq!(std::fs::read(path).unwrap(), b"hello");
        let cli = Cli {
            name: "Demo",
            bin: "demo".into(),
            bin_key: "DEMO_BIN",
            install: "",
            login: "",
            env: &[],
            pass_env: Vec::new(),
        };
        let notes = notes(&cli, 0, &message, &saved);
        assert!(
            notes.contains("Attached file a.png: https://x/a.png"),
            "{notes}"
        );
        assert!(
            notes.contains(&format!("b.png is saved at {}", path.display())),
            "{notes}"
        );
        assert!(
            notes.contains("broken.png could not be passed to Demo"),
            "{notes}"
        );
    }
}
